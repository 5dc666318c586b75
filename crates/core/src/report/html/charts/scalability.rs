//! The scalability chart: aggregate throughput against the number of guests running at once,
//! the guests that did not return, and where the aggregate stops rising.

use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{backend_color, label_style, small_style, tick, Drawn, Ticks, INK, OUTLIER, WIDTH};
use crate::report::fmt_sig;
use crate::results::{RunDocument, ScalabilityData, ScaleStep};

/// Aggregate throughput (the sum over the guests that returned) against the number of guests
/// running at once: a line through the measured steps, each point labelled with its value, the
/// guests that did not return in red below it (a step where none returned is a red `DNR` on the
/// axis), and a dashed vertical line where the aggregate stops rising. Guest counts spanning a
/// factor of 4 or more are spaced logarithmically (1, 2, 4, 8, … evenly). `None` when no step
/// has an aggregate.
pub(in crate::report::html) fn scalability(
    doc: &RunDocument,
    d: &ScalabilityData,
) -> Option<Drawn> {
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
