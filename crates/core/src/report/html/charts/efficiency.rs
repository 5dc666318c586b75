//! The efficiency chart: per workload, one bar per guest backend at its score as a share of the
//! host's, with the bootstrap interval of that ratio as whiskers.

use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{
    backend_color, draw_legend, label_area, label_style, small_style, Drawn, Rows, Ticks, INK,
    WIDTH,
};
use crate::report::fmt_pct;
use crate::report::view::{self, measured};
use crate::results::RunDocument;

/// Grouped horizontal bars: per workload, one bar per guest backend at its efficiency (guest
/// score / host score), whiskers at the bootstrap interval, a dashed line at 100%. Bars whose
/// interval contains 100% are pale: no measurable overhead. Bars beyond the right edge are cut
/// and labelled with their value. `None` when no guest backend ran.
pub(in crate::report::html) fn efficiency(doc: &RunDocument) -> Option<Drawn> {
    let guests: Vec<&str> = view::guest_backends(doc)
        .iter()
        .map(|b| b.name.as_str())
        .collect();
    let workloads: Vec<&str> = view::workloads(doc)
        .into_iter()
        .filter(|w| guests.iter().any(|g| doc.run(g, w).is_some()))
        .collect();
    if guests.is_empty() || workloads.is_empty() {
        return None;
    }
    Some(draw_efficiency(doc, &guests, &workloads))
}

fn draw_efficiency(doc: &RunDocument, guests: &[&str], workloads: &[&str]) -> Drawn {
    let rows = Rows::new(workloads);
    let (k, bar_px) = (guests.len() as u32, 18);
    let group_px = k * bar_px + 16;
    let legend_px = 34;
    let height = legend_px + 16 + workloads.len() as u32 * group_px + 50;
    let label_px = label_area(workloads);
    let top = doc
        .efficiency
        .iter()
        .filter(|e| {
            workloads.contains(&e.workload.as_str()) && guests.contains(&e.backend.as_str())
        })
        .map(|e| e.ci_high.max(e.ratio))
        .fold(1.0f64, f64::max);
    let xmax = (top * 1.15).clamp(1.25, 2.0);
    let step = if xmax <= 1.5 { 0.1 } else { 0.2 };
    let ticks: Vec<f64> = (0..)
        .map(|i| i as f64 * step)
        .take_while(|t| *t <= xmax + 1e-9)
        .collect();

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let (legend, plot) = root.split_vertically(legend_px);
        let names: Vec<(&str, RGBColor)> =
            guests.iter().map(|g| (*g, backend_color(doc, g))).collect();
        draw_legend(&legend, label_px as i32 + 8, &names)?;

        let mut chart = ChartBuilder::on(&plot)
            .margin_top(16)
            .margin_right(28)
            .margin_left(8)
            .x_label_area_size(50)
            .y_label_area_size(label_px)
            .build_cartesian_2d(
                Ticks {
                    range: 0.0..xmax,
                    points: ticks,
                },
                rows.axis(),
            )?;
        let name_at = |y: &f64| rows.name_at(*y);
        let percent = |x: &f64| format!("{:.0}%", x * 100.0);
        chart
            .configure_mesh()
            .disable_y_mesh()
            .x_label_formatter(&percent)
            .y_label_formatter(&name_at)
            .label_style(label_style())
            .axis_desc_style(label_style())
            .bold_line_style(BLACK.mix(0.1))
            .x_desc(
                "efficiency: guest score / host score (for times host / guest); 100% = no overhead",
            )
            .draw()?;

        let plot_px = f64::from(chart.plotting_area().dim_in_pixel().0.max(1));
        let slot = 0.76 / k as f64;
        for (i, w) in workloads.iter().enumerate() {
            let group_top = rows.center(i) + 0.38;
            for (j, g) in guests.iter().enumerate() {
                let color = backend_color(doc, g);
                let top = group_top - j as f64 * slot;
                let (bottom, mid) = (top - slot * 0.86, top - slot * 0.43);
                let e = doc
                    .efficiency
                    .iter()
                    .find(|e| e.workload == *w && e.backend == *g);
                let Some(e) = e else {
                    let why = match doc.run(g, w) {
                        Some(r) if measured(r).is_some() => "no baseline to compare with",
                        Some(r) => view::status_label(r),
                        None => "not run",
                    };
                    chart.draw_series(std::iter::once(Text::new(
                        why.to_string(),
                        (xmax * 0.006, mid),
                        small_style()
                            .color(&color)
                            .pos(Pos::new(HPos::Left, VPos::Center)),
                    )))?;
                    continue;
                };
                let pale = e.ci_low <= 1.0 && e.ci_high >= 1.0;
                let fill = if pale {
                    color.mix(0.35).filled()
                } else {
                    color.filled()
                };
                let end = e.ratio.min(xmax);
                chart.draw_series([
                    Rectangle::new([(0.0, bottom), (end, top)], fill),
                    Rectangle::new([(0.0, bottom), (end, top)], color.stroke_width(1)),
                ])?;
                let (lo, hi) = (e.ci_low.min(xmax), e.ci_high.min(xmax));
                let cap = slot * 0.28;
                let mut whisker = vec![PathElement::new(vec![(lo, mid), (hi, mid)], INK)];
                for x in [e.ci_low, e.ci_high].into_iter().filter(|x| *x <= xmax) {
                    whisker.push(PathElement::new(vec![(x, mid - cap), (x, mid + cap)], INK));
                }
                chart.draw_series(whisker)?;
                let label = if e.ratio > xmax {
                    Text::new(
                        format!("{} ▸", fmt_pct(e.ratio)),
                        (xmax * 0.995, mid),
                        small_style()
                            .color(&WHITE)
                            .pos(Pos::new(HPos::Right, VPos::Center)),
                    )
                } else {
                    // Right of the whisker, but never past the right edge, where it would be cut.
                    let text = fmt_pct(e.ratio);
                    let room = (text.chars().count() as f64 * 7.0 + 6.0) / plot_px * xmax;
                    Text::new(
                        text,
                        ((hi + xmax * 0.008).min(xmax - room), mid),
                        small_style().pos(Pos::new(HPos::Left, VPos::Center)),
                    )
                };
                chart.draw_series(std::iter::once(label))?;
            }
        }
        chart.draw_series(std::iter::once(DashedPathElement::new(
            vec![(1.0, 0.0), (1.0, rows.len())],
            6,
            4,
            INK.stroke_width(2),
        )))?;
        root.present()?;
    }
    Ok(svg)
}
