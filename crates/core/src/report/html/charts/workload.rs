//! A workload's chart: every repetition of each backend as a strip of dots with its median and
//! interval, beside the host CPU each backend spent per unit of work.

use std::error::Error;

use plotters::coord::combinators::IntoLogRange;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{
    backend_color, jitter, label_area, label_style, small_style, tick, Drawn, Rows, OUTLIER, WIDTH,
};
use crate::report::fmt_sig;
use crate::report::view::{self, measured};
use crate::results::RunDocument;

/// One workload: on the left every repetition's value per backend (dots, outliers ringed in
/// red), the median (a bar) and its interval (a band); on the right the host CPU each backend
/// spent per unit of work, so cost sits beside throughput.
pub(in crate::report::html) fn workload(doc: &RunDocument, workload: &str) -> Drawn {
    let runs: Vec<_> = doc
        .backends
        .iter()
        .filter_map(|b| doc.run(&b.name, workload))
        .collect();
    let names: Vec<&str> = runs.iter().map(|r| r.backend.as_str()).collect();
    let rows = Rows::new(&names);
    let height = 30 + runs.len() as u32 * 36 + 50;
    let label_px = label_area(&names);
    let Some(first) = runs.first() else {
        return Err("no run of this workload".into());
    };

    let mut values: Vec<f64> = Vec::new();
    for r in &runs {
        values.extend(r.samples.iter().copied().filter(|v| v.is_finite()));
        if let Some(s) = measured(r) {
            values.extend([s.ci_low, s.ci_high]);
        }
    }
    let caption = format!(
        "{workload}: repetitions ({}, {} is better)",
        first.unit,
        if first.higher_is_better {
            "higher"
        } else {
            "lower"
        }
    );

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let (left, right) = root.split_horizontally(620);
        let strips = Strips {
            doc,
            runs: &runs,
            rows: &rows,
            caption,
            label_px,
        };
        match log_range(&values) {
            Some((lo, hi)) => strips.draw(
                &left,
                (lo..hi).log_scale(),
                lo,
                format!("{} (log scale)", first.unit),
            )?,
            None => {
                let (lo, hi) = padded_range(&values);
                strips.draw(&left, lo..hi, lo, first.unit.clone())?
            }
        }
        draw_host_cpu(doc, &right, &runs, &rows)?;
        root.present()?;
    }
    Ok(svg)
}

/// The left panel of a workload's chart: one strip of repetitions per backend.
struct Strips<'a> {
    doc: &'a RunDocument,
    runs: &'a [&'a crate::results::RunRecord],
    rows: &'a Rows,
    caption: String,
    label_px: u32,
}

impl Strips<'_> {
    /// Draws on a linear or a logarithmic value axis; `left` is its smallest value.
    fn draw<DB, X>(
        &self,
        area: &DrawingArea<DB, plotters::coord::Shift>,
        x: X,
        left: f64,
        x_desc: String,
    ) -> Result<(), Box<dyn Error>>
    where
        DB: DrawingBackend,
        DB::ErrorType: 'static,
        X: plotters::coord::ranged1d::AsRangedCoord<Value = f64>,
        X::CoordDescType: plotters::coord::ranged1d::ValueFormatter<f64>,
    {
        let rows = self.rows;
        let mut chart = ChartBuilder::on(area)
            .caption(&self.caption, label_style())
            .margin(8)
            .margin_right(20)
            .x_label_area_size(40)
            .y_label_area_size(self.label_px)
            .build_cartesian_2d(x, rows.axis())?;
        let name_at = |y: &f64| rows.name_at(*y);
        let number = |x: &f64| tick(*x);
        chart
            .configure_mesh()
            .disable_y_mesh()
            .x_labels(6)
            .x_label_formatter(&number)
            .y_label_formatter(&name_at)
            .label_style(label_style())
            .axis_desc_style(label_style())
            .bold_line_style(BLACK.mix(0.1))
            .light_line_style(WHITE.mix(0.0))
            .x_desc(x_desc)
            .draw()?;
        for (i, r) in self.runs.iter().enumerate() {
            let y = rows.center(i);
            let color = backend_color(self.doc, &r.backend);
            let Some(s) = measured(r) else {
                chart.draw_series(std::iter::once(Text::new(
                    match r.outcome.describe() {
                        Some(reason) => view::brief(&reason, 90),
                        None => view::status_label(r).to_string(),
                    },
                    (left, y),
                    small_style()
                        .color(&color)
                        .pos(Pos::new(HPos::Left, VPos::Center)),
                )))?;
                continue;
            };
            chart.draw_series([Rectangle::new(
                [(s.ci_low, y - 0.32), (s.ci_high, y + 0.32)],
                color.mix(0.16).filled(),
            )])?;
            chart.draw_series([PathElement::new(
                vec![(s.median, y - 0.4), (s.median, y + 0.4)],
                color.stroke_width(3),
            )])?;
            chart.draw_series(
                r.samples
                    .iter()
                    .enumerate()
                    .filter(|(_, v)| v.is_finite())
                    .map(|(k, v)| Circle::new((*v, y + jitter(k)), 3, color.mix(0.75).filled())),
            )?;
            chart.draw_series(
                s.outliers
                    .iter()
                    .filter_map(|k| r.samples.get(*k).map(|v| (*k, *v)))
                    .map(|(k, v)| Circle::new((v, y + jitter(k)), 6, OUTLIER.stroke_width(1))),
            )?;
        }
        Ok(())
    }
}

/// Values spanning more than a factor of 20 (a syscall under gVisor beside the host's) are
/// drawn on a logarithmic axis, or the fast backends' strips would be squeezed into one pixel.
/// `None` when a linear axis serves, or when a value is not positive.
fn log_range(values: &[f64]) -> Option<(f64, f64)> {
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(0.0f64, f64::max);
    (lo.is_finite() && lo > 0.0 && hi / lo > 20.0).then(|| (lo / 1.2, hi * 1.2))
}

/// The value range of a strip plot, widened a little so no dot sits on the frame.
fn padded_range(values: &[f64]) -> (f64, f64) {
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !lo.is_finite() || !hi.is_finite() {
        return (0.0, 1.0);
    }
    let span = hi - lo;
    let pad = if span > 0.0 {
        span * 0.06
    } else if lo != 0.0 {
        lo.abs() * 0.05
    } else {
        1.0
    };
    (lo - pad, hi + pad)
}

fn draw_host_cpu<DB: DrawingBackend>(
    doc: &RunDocument,
    area: &DrawingArea<DB, plotters::coord::Shift>,
    runs: &[&crate::results::RunRecord],
    rows: &Rows,
) -> Result<(), Box<dyn Error>>
where
    DB::ErrorType: 'static,
{
    let unit = runs
        .iter()
        .find_map(|r| r.host_cpu_per_op.as_ref().map(|c| c.unit.clone()))
        .unwrap_or_else(|| "µs/op".into());
    let top = runs
        .iter()
        .filter_map(|r| r.host_cpu_per_op.as_ref().map(|c| c.value))
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    let xmax = if top > 0.0 { top * 1.45 } else { 1.0 };
    let mut chart = ChartBuilder::on(area)
        .caption("host CPU per unit of work", label_style())
        .margin(8)
        .margin_right(16)
        .x_label_area_size(40)
        .y_label_area_size(label_area(&[]).max(24))
        .build_cartesian_2d(0f64..xmax, rows.axis())?;
    let number = |x: &f64| tick(*x);
    let name_at = |y: &f64| rows.name_at(*y);
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_labels(4)
        .x_label_formatter(&number)
        .y_label_formatter(&name_at)
        .label_style(small_style())
        .axis_desc_style(label_style())
        .bold_line_style(BLACK.mix(0.1))
        .light_line_style(WHITE.mix(0.0))
        .x_desc(format!("host CPU, {unit}"))
        .draw()?;
    for (i, r) in runs.iter().enumerate() {
        let y = rows.center(i);
        let color = backend_color(doc, &r.backend);
        match r.host_cpu_per_op.as_ref().filter(|c| c.value.is_finite()) {
            Some(c) => {
                chart.draw_series([Rectangle::new(
                    [(0.0, y - 0.28), (c.value, y + 0.28)],
                    color.filled(),
                )])?;
                chart.draw_series(std::iter::once(Text::new(
                    format!("{} ({:.2} cores)", fmt_sig(c.value), c.cores_busy),
                    (c.value + xmax * 0.01, y),
                    small_style().pos(Pos::new(HPos::Left, VPos::Center)),
                )))?;
            }
            None => {
                chart.draw_series(std::iter::once(Text::new(
                    "not metered".to_string(),
                    (xmax * 0.01, y),
                    small_style()
                        .color(&color)
                        .pos(Pos::new(HPos::Left, VPos::Center)),
                )))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_values_spanning_a_factor_of_20_get_a_log_axis() {
        assert_eq!(log_range(&[100.0, 1500.0]), None);
        assert!(log_range(&[200.0, 28_000.0]).is_some());
        assert_eq!(log_range(&[0.0, 28_000.0]), None);
        assert_eq!(log_range(&[]), None);
    }

    #[test]
    fn a_strip_plot_of_equal_values_still_has_a_range() {
        assert_eq!(padded_range(&[]), (0.0, 1.0));
        let (lo, hi) = padded_range(&[10.0, 10.0]);
        assert!(lo < 10.0 && hi > 10.0);
        let (lo, hi) = padded_range(&[0.0]);
        assert!(lo < 0.0 && hi > 0.0);
    }
}
