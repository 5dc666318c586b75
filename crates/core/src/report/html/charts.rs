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
//!
//! Each kind of chart has its module: the efficiency bars, a workload's repetitions beside its
//! host CPU, the boot times, the scalability line and app.web's QoS curves. This module holds
//! what they share: the colours, the text styles, the axes ([`Ticks`], [`Rows`]), the legend and
//! the tick labels.

use std::error::Error;

use std::ops::Range;

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::super::fmt_sig;
use crate::results::RunDocument;

mod boot;
mod efficiency;
mod qos;
mod scalability;
mod workload;

pub(super) use boot::boot_times;
pub(super) use efficiency::efficiency;
pub(super) use qos::qos_curves;
pub(super) use scalability::scalability;
pub(super) use workload::workload;

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
