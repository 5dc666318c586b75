//! app.web's QoS curves: the share of requests good against the number of simultaneous
//! sessions, a line per backend, with the 95% QoS threshold.

use plotters::coord::combinators::IntoLogRange;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{backend_color, draw_legend, label_style, small_style, tick, Drawn, INK, WIDTH};
use crate::report::view;
use crate::results::RunDocument;

/// The web workload's QoS curves: the share of requests good against the number of sessions,
/// a line per backend through the loads its searches tried (sessions on a log scale), and the
/// 95% QoS threshold dashed. `None` without `app.web`.
pub(in crate::report::html) fn qos_curves(doc: &RunDocument) -> Option<Drawn> {
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
