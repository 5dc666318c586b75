//! The boot-time chart: launch to the agent's hello of every guest of every backend, timed by
//! the host, on a logarithmic axis.

use plotters::coord::combinators::IntoLogRange;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{
    backend_color, jitter, label_area, label_style, seconds, small_style, Drawn, Rows, WIDTH,
};
use crate::results::RunDocument;

/// Launch to the agent's hello for every guest of every backend, timed by the host, on a
/// logarithmic axis (a namespace starts in milliseconds, an emulated machine in seconds).
/// Backends whose guests never said hello are listed with their failed launches. `None` when
/// no guest said hello.
pub(in crate::report::html) fn boot_times(doc: &RunDocument) -> Option<Drawn> {
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
