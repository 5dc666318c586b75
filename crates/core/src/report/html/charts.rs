//! The page's charts, drawn by plotters into SVG strings that are inlined into the page.
//!
//! plotters' SVG backend writes text as `<text>` elements that the browser lays out with its own
//! fonts, so no font file is read here (the `ttf` feature is off) and the page needs none. Text
//! from the document reaches the SVG only through plotters, which escapes it.
//!
//! Conventions shared by every chart: one colour per backend, the same in every chart and in the
//! page's tables ([`backend_color`]); categories (workloads, backends) run down the vertical axis,
//! first at the top, so that long names stay readable whatever their number; values run along
//! the horizontal axis.

use std::error::Error;

use std::ops::Range;

use plotters::coord::combinators::IntoLogRange;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::super::view::{self, measured};
use super::super::{fmt_pct, fmt_sig};
use crate::results::{RunDocument, ScalabilityData, ScaleStep};

pub(super) type Drawn = Result<String, Box<dyn Error>>;

/// Okabe–Ito colours, distinguishable with the common colour-vision deficiencies.
const PALETTE: [RGBColor; 6] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(213, 94, 0),
    RGBColor(86, 180, 233),
];
/// The baseline (the host) is grey: it is the reference, not a contender.
const BASELINE: RGBColor = RGBColor(96, 96, 96);
const INK: RGBColor = RGBColor(34, 34, 34);
const OUTLIER: RGBColor = RGBColor(200, 0, 0);

/// plotters' SVG backend writes `size / 1.24` as the font size; these give 12 and 11 px.
const FONT: &str = "sans-serif";
const LABEL_SIZE: f64 = 15.0;
const SMALL_SIZE: f64 = 13.6;

const WIDTH: u32 = 960;

/// The colour of a backend: grey for the baseline, then the palette in the document's order.
pub(super) fn backend_color(doc: &RunDocument, backend: &str) -> RGBColor {
    match doc.backends.iter().position(|b| b.name == backend) {
        Some(0) => BASELINE,
        Some(i) => PALETTE[(i - 1) % PALETTE.len()],
        None => INK,
    }
}

/// `#rrggbb` for CSS.
pub(super) fn css(c: RGBColor) -> String {
    format!("#{:02x}{:02x}{:02x}", c.0, c.1, c.2)
}

fn label_style() -> TextStyle<'static> {
    (FONT, LABEL_SIZE).into_font().color(&INK)
}

fn small_style() -> TextStyle<'static> {
    (FONT, SMALL_SIZE).into_font().color(&INK)
}

/// Room for the longest category name left of the axis, by plotters' own width estimate.
fn label_area(names: &[&str]) -> u32 {
    let longest = names.iter().map(|n| n.chars().count()).max().unwrap_or(4) as u32;
    (longest * 7 + 16).clamp(60, 240)
}

/// A linear axis with ticks exactly where asked (row centres, round percentages), labelled by
/// each chart's own formatter.
struct Ticks {
    range: Range<f64>,
    points: Vec<f64>,
}

impl Ranged for Ticks {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let span = self.range.end - self.range.start;
        let t = if span > 0.0 {
            (value - self.range.start) / span
        } else {
            0.0
        };
        limit.0 + ((limit.1 - limit.0) as f64 * t).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.points.clone()
        }
    }

    fn range(&self) -> Range<f64> {
        self.range.clone()
    }
}

/// Rows of categories down the vertical axis: row 0 at the top, its centre at `n - 0.5`.
struct Rows {
    names: Vec<String>,
}

impl Rows {
    fn new<S: AsRef<str>>(names: &[S]) -> Rows {
        Rows {
            names: names.iter().map(|s| s.as_ref().to_string()).collect(),
        }
    }

    fn len(&self) -> f64 {
        self.names.len() as f64
    }

    /// The vertical centre of row `i`.
    fn center(&self, i: usize) -> f64 {
        self.len() - i as f64 - 0.5
    }

    /// The vertical axis, with a tick (and label) at each row's centre only.
    fn axis(&self) -> Ticks {
        Ticks {
            range: 0.0..self.len(),
            points: (0..self.names.len()).map(|i| self.center(i)).collect(),
        }
    }

    /// The name of the row whose centre is at `y`.
    fn name_at(&self, y: f64) -> String {
        let i = (self.len() - 0.5 - y).round();
        if i >= 0.0 {
            self.names.get(i as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    }
}

/// Grouped horizontal bars: per workload, one bar per guest backend at its efficiency (guest
/// score / host score), whiskers at the bootstrap interval, a dashed line at 100%. Bars whose
/// interval contains 100% are pale: no measurable overhead. Bars beyond the right edge are cut
/// and labelled with their value. `None` when no guest backend ran.
pub(super) fn efficiency(doc: &RunDocument) -> Option<Drawn> {
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

/// A row of colour swatches with backend names, starting at `x` pixels.
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    mut x: i32,
    names: &[(&str, RGBColor)],
) -> Result<(), Box<dyn Error>>
where
    DB::ErrorType: 'static,
{
    for (name, color) in names {
        area.draw(&Rectangle::new([(x, 12), (x + 14, 26)], color.filled()))?;
        area.draw(&Text::new(
            name.to_string(),
            (x + 20, 19),
            label_style().pos(Pos::new(HPos::Left, VPos::Center)),
        ))?;
        x += 20 + name.chars().count() as i32 * 8 + 26;
    }
    Ok(())
}

/// A deterministic vertical offset for the `k`-th dot of a row, so equal values stay visible;
/// the first dot sits on the row's centre line.
fn jitter(k: usize) -> f64 {
    ((k as f64 * 0.618_033_988_75 + 0.5).fract() - 0.5) * 0.36
}

/// An axis tick: [`fmt_sig`] without trailing zeros (`500`, `0.5`, `1.2e4`).
fn tick(v: f64) -> String {
    let s = fmt_sig(v);
    if s.contains('e') || !s.contains('.') {
        return s;
    }
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.into()
    }
}

/// One workload: on the left every repetition's value per backend (dots, outliers ringed in
/// red), the median (a bar) and its interval (a band); on the right the host CPU each backend
/// spent per unit of work, so cost sits beside throughput.
pub(super) fn workload(doc: &RunDocument, workload: &str) -> Drawn {
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

/// Launch to the agent's hello for every guest of every backend, timed by the host, on a
/// logarithmic axis (a namespace starts in milliseconds, an emulated machine in seconds).
/// Backends whose guests never said hello are listed with their failed launches. `None` when
/// no guest said hello.
pub(super) fn boot_times(doc: &RunDocument) -> Option<Drawn> {
    let backends: Vec<_> = doc
        .backends
        .iter()
        .filter(|b| !b.guests.is_empty())
        .collect();
    let names: Vec<&str> = backends.iter().map(|b| b.name.as_str()).collect();
    let rows = Rows::new(&names);
    let times: Vec<f64> = backends
        .iter()
        .flat_map(|b| b.guests.iter().filter_map(|g| g.boot_s))
        .filter(|t| t.is_finite() && *t > 0.0)
        .collect();
    let lo = times.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = times.iter().copied().fold(0.0f64, f64::max);
    if !(lo.is_finite() && lo > 0.0) {
        return None;
    }
    let (lo, hi) = (lo / 2.0, hi * 3.0);
    let height = 20 + names.len() as u32 * 34 + 50;
    let label_px = label_area(&names);
    let draw = || -> Drawn {
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
            root.fill(&WHITE)?;
            let mut chart = ChartBuilder::on(&root)
                .margin(10)
                .margin_right(30)
                .x_label_area_size(40)
                .y_label_area_size(label_px)
                .build_cartesian_2d((lo..hi).log_scale(), rows.axis())?;
            let name_at = |y: &f64| rows.name_at(*y);
            let tick = |x: &f64| seconds(*x);
            chart
                .configure_mesh()
                .disable_y_mesh()
                .x_label_formatter(&tick)
                .y_label_formatter(&name_at)
                .label_style(label_style())
                .axis_desc_style(label_style())
                .bold_line_style(BLACK.mix(0.1))
                .light_line_style(WHITE.mix(0.0))
                .x_desc("launch to the agent's hello, timed by the host (log scale)")
                .draw()?;
            for (i, b) in backends.iter().enumerate() {
                let y = rows.center(i);
                let color = backend_color(doc, &b.name);
                let boots: Vec<f64> = b.guests.iter().filter_map(|g| g.boot_s).collect();
                chart.draw_series(
                    boots
                        .iter()
                        .enumerate()
                        .filter(|(_, t)| **t > 0.0)
                        .map(|(k, t)| Circle::new((*t, y + jitter(k)), 4, color.filled())),
                )?;
                let failed = b.guests.iter().filter(|g| g.failure.is_some()).count();
                let label = match boots.iter().copied().reduce(f64::max) {
                    Some(most) => {
                        let mut label = seconds(most);
                        if boots.len() > 1 {
                            label = format!("{} launches, slowest {label}", boots.len());
                        }
                        if failed > 0 {
                            label.push_str(&format!(", {failed} failed"));
                        }
                        Text::new(
                            label,
                            (most * 1.15, y),
                            small_style().pos(Pos::new(HPos::Left, VPos::Center)),
                        )
                    }
                    None => Text::new(
                        format!(
                            "never said hello ({} launch{} failed)",
                            b.guests.len(),
                            if b.guests.len() == 1 { "" } else { "es" }
                        ),
                        (lo * 1.05, y),
                        small_style()
                            .color(&color)
                            .pos(Pos::new(HPos::Left, VPos::Center)),
                    ),
                };
                chart.draw_series(std::iter::once(label))?;
            }
            root.present()?;
        }
        Ok(svg)
    };
    Some(draw())
}

/// Aggregate throughput (the sum over the guests that returned) against the number of guests
/// running at once: a line through the measured steps, each point labelled with its value, the
/// guests that did not return in red below it (a step where none returned is a red `DNR` on the
/// axis), and a dashed vertical line where the aggregate stops rising. Guest counts spanning a
/// factor of 4 or more are spaced logarithmically (1, 2, 4, 8, … evenly). `None` when no step
/// has an aggregate.
pub(super) fn scalability(doc: &RunDocument, d: &ScalabilityData) -> Option<Drawn> {
    let mut steps: Vec<&ScaleStep> = d.steps.iter().filter(|s| s.guests > 0).collect();
    steps.sort_by_key(|s| s.guests);
    let top = steps
        .iter()
        .filter_map(|s| s.aggregate)
        .filter(|a| a.is_finite())
        .fold(0.0f64, f64::max);
    if top <= 0.0 {
        return None;
    }
    Some(draw_scalability(doc, d, &steps, top))
}

fn draw_scalability(
    doc: &RunDocument,
    d: &ScalabilityData,
    steps: &[&ScaleStep],
    top: f64,
) -> Drawn {
    let mut counts: Vec<u32> = steps.iter().map(|s| s.guests).collect();
    counts.dedup();
    let (first, last) = (f64::from(counts[0]), f64::from(counts[counts.len() - 1]));
    let log = last / first >= 4.0;
    let pos = |n: f64| if log { n.log2() } else { n };
    let (lo, hi) = if counts.len() < 2 {
        (pos(first) - 1.0, pos(last) + 1.0)
    } else {
        let span = pos(last) - pos(first);
        (pos(first) - span * 0.06, pos(last) + span * 0.06)
    };
    let ymax = top * 1.22;
    let color = backend_color(doc, &d.backend);
    let height = 420;

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .margin_right(30)
            .x_label_area_size(50)
            .y_label_area_size(80)
            .build_cartesian_2d(
                Ticks {
                    range: lo..hi,
                    points: counts.iter().map(|&n| pos(f64::from(n))).collect(),
                },
                0.0..ymax,
            )?;
        let guests = |x: &f64| {
            let n = if log { x.exp2() } else { *x };
            format!("{}", n.round())
        };
        let value = |y: &f64| tick(*y);
        chart
            .configure_mesh()
            .x_label_formatter(&guests)
            .y_label_formatter(&value)
            .label_style(label_style())
            .axis_desc_style(label_style())
            .bold_line_style(BLACK.mix(0.1))
            .light_line_style(WHITE.mix(0.0))
            .x_desc(if log {
                "guests running at once (log scale)"
            } else {
                "guests running at once"
            })
            .y_desc(format!("aggregate throughput, {}", d.aggregate_unit))
            .draw()?;

        let points: Vec<(f64, f64)> = steps
            .iter()
            .filter_map(|s| {
                s.aggregate
                    .filter(|a| a.is_finite())
                    .map(|a| (pos(f64::from(s.guests)), a))
            })
            .collect();
        chart.draw_series(std::iter::once(PathElement::new(
            points.clone(),
            color.stroke_width(2),
        )))?;
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 5, color.filled())))?;
        if let Some(n) = d.saturation_guests {
            let x = pos(f64::from(n));
            chart.draw_series(std::iter::once(DashedPathElement::new(
                vec![(x, 0.0), (x, ymax)],
                6,
                4,
                INK.stroke_width(2),
            )))?;
            let right = x < (lo + hi) / 2.0;
            chart.draw_series(std::iter::once(Text::new(
                format!("stops rising beyond {n}"),
                (
                    x + (hi - lo) * if right { 0.01 } else { -0.01 },
                    ymax * 0.97,
                ),
                small_style().pos(Pos::new(
                    if right { HPos::Left } else { HPos::Right },
                    VPos::Top,
                )),
            )))?;
        }
        for s in steps {
            let x = pos(f64::from(s.guests));
            // Labels right of their point (left of the last one), clear of the dashed line.
            let last_point = s.guests == counts[counts.len() - 1] && counts.len() > 1;
            let (dx, h) = if last_point {
                (-(hi - lo) * 0.012, HPos::Right)
            } else {
                ((hi - lo) * 0.012, HPos::Left)
            };
            match s.aggregate.filter(|a| a.is_finite()) {
                Some(a) => {
                    chart.draw_series(std::iter::once(Text::new(
                        fmt_sig(a),
                        (x + dx, a + ymax * 0.015),
                        small_style().pos(Pos::new(h, VPos::Bottom)),
                    )))?;
                    if s.failed > 0 {
                        chart.draw_series(std::iter::once(Text::new(
                            format!("{} DNR", s.failed),
                            (x + dx, a - ymax * 0.015),
                            small_style().color(&OUTLIER).pos(Pos::new(h, VPos::Top)),
                        )))?;
                    }
                }
                None => {
                    chart.draw_series(std::iter::once(Cross::new(
                        (x, 0.0),
                        6,
                        OUTLIER.stroke_width(2),
                    )))?;
                    chart.draw_series(std::iter::once(Text::new(
                        if s.failed > 0 {
                            format!("DNR ({} of {})", s.failed, s.guests)
                        } else {
                            "not measured".to_string()
                        },
                        (x, ymax * 0.04),
                        small_style()
                            .color(&OUTLIER)
                            .pos(Pos::new(HPos::Center, VPos::Bottom)),
                    )))?;
                }
            }
        }
        root.present()?;
    }
    Ok(svg)
}

/// The web workload's QoS curves: the share of requests good against the number of sessions,
/// a line per backend through the loads its searches tried (sessions on a log scale), and the
/// 95% QoS threshold dashed. `None` without `app.web`.
pub(super) fn qos_curves(doc: &RunDocument) -> Option<Drawn> {
    let curves = view::qos_curves(doc);
    let all: Vec<f64> = curves
        .iter()
        .flat_map(|(_, c)| c.iter().map(|&(n, _)| f64::from(n)))
        .collect();
    let lo = all.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = all.iter().copied().fold(0.0f64, f64::max);
    if !(lo.is_finite() && hi >= lo && lo >= 1.0) {
        return None;
    }
    let floor = curves
        .iter()
        .flat_map(|(_, c)| c.iter().map(|&(_, g)| g))
        .fold(100.0f64, f64::min);
    let ymin = ((floor - 5.0) / 10.0).floor().clamp(0.0, 9.0) * 10.0;
    let names: Vec<&str> = curves.iter().map(|(b, _)| b.as_str()).collect();
    let draw = || -> Drawn {
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (WIDTH, 440)).into_drawing_area();
            root.fill(&WHITE)?;
            let mut chart = ChartBuilder::on(&root)
                .margin(12)
                .margin_top(40)
                .margin_right(30)
                .x_label_area_size(50)
                .y_label_area_size(70)
                .build_cartesian_2d((lo / 1.3..hi * 1.3).log_scale(), ymin..100.5)?;
            let sessions = |x: &f64| tick(x.round());
            let pct = |y: &f64| format!("{}%", tick(*y));
            chart
                .configure_mesh()
                .x_label_formatter(&sessions)
                .y_label_formatter(&pct)
                .label_style(label_style())
                .axis_desc_style(label_style())
                .bold_line_style(BLACK.mix(0.1))
                .light_line_style(WHITE.mix(0.0))
                .x_desc("simultaneous sessions (log scale)")
                .y_desc("requests within TIME_GOOD")
                .draw()?;
            chart.draw_series(std::iter::once(DashedPathElement::new(
                vec![(lo / 1.3, 95.0), (hi * 1.3, 95.0)],
                6,
                4,
                INK.stroke_width(1),
            )))?;
            chart.draw_series(std::iter::once(Text::new(
                "QoS: 95% good",
                (lo / 1.25, 95.3),
                small_style().pos(Pos::new(HPos::Left, VPos::Bottom)),
            )))?;
            for (b, c) in &curves {
                let color = backend_color(doc, b);
                let points: Vec<(f64, f64)> = c
                    .iter()
                    .map(|&(n, g)| (f64::from(n), g.max(ymin)))
                    .collect();
                chart.draw_series(std::iter::once(PathElement::new(
                    points.clone(),
                    color.stroke_width(2),
                )))?;
                chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
            }
            let legend: Vec<(&str, RGBColor)> =
                names.iter().map(|&b| (b, backend_color(doc, b))).collect();
            draw_legend(&root, 80, &legend)?;
            root.present()?;
        }
        Ok(svg)
    };
    Some(draw())
}

/// `3.026 s`, `22.6 ms`, `450 µs`.
fn seconds(s: f64) -> String {
    if s >= 1.0 {
        format!("{} s", tick(s))
    } else if s >= 1e-3 {
        format!("{} ms", tick(s * 1e3))
    } else {
        format!("{} µs", tick(s * 1e6))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_put_the_first_category_at_the_top() {
        let rows = Rows::new(&["a", "b", "c"]);
        assert_eq!(rows.center(0), 2.5);
        assert_eq!(rows.name_at(2.5), "a");
        assert_eq!(rows.name_at(0.5), "c");
        assert_eq!(rows.name_at(3.5), "");
        assert_eq!(rows.name_at(-0.5), "");
    }

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

    #[test]
    fn seconds_pick_a_readable_unit() {
        assert_eq!(seconds(3.026), "3.026 s");
        assert_eq!(seconds(0.0226), "22.6 ms");
        assert_eq!(seconds(0.000450), "450 µs");
        assert_eq!(seconds(1.0), "1 s");
    }

    #[test]
    fn ticks_drop_trailing_zeros_only() {
        assert_eq!(tick(500.0), "500");
        assert_eq!(tick(0.0), "0");
        assert_eq!(tick(0.5), "0.5");
        assert_eq!(tick(2500.0), "2500");
        assert_eq!(tick(-0.0), "0");
        assert_eq!(tick(1.5e10), "1.500e10");
    }

    #[test]
    fn the_first_dot_of_a_row_is_on_its_centre() {
        assert_eq!(jitter(0), 0.0);
        assert!((1..50).all(|k| jitter(k).abs() <= 0.18));
    }
}
