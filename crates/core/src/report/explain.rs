//! Renderings of a document's `explain` section: terminal, Markdown, CSV and an HTML page with
//! one stacked bar per workload and backend (measured extra time beside the predicted extra
//! time, by class).

use std::fmt::Write;

use super::fmt_pct;
use crate::report::html::escape;
use crate::results::{ExplainRecord, ExplainTerm};

/// A duration in the unit that suits it: `840 ns`, `2.31 µs`, `1.20 ms`, `3.40 s`.
pub fn fmt_time(s: f64) -> String {
    let a = s.abs();
    let (v, unit) = if a >= 1.0 {
        (s, "s")
    } else if a >= 1e-3 {
        (s * 1e3, "ms")
    } else if a >= 1e-6 {
        (s * 1e6, "µs")
    } else {
        (s * 1e9, "ns")
    };
    format!("{} {unit}", super::fmt_sig(v))
}

/// A per-event extra cost, signed: `+2.90 µs`, `-40.0 ns`.
fn fmt_cost(t: &ExplainTerm) -> String {
    if t.class == "cpu_user" {
        return format!("×{:.3} CPU", 1.0 + t.extra_ns);
    }
    let s = fmt_time(t.extra_ns * 1e-9);
    if t.extra_ns >= 0.0 {
        format!("+{s}")
    } else {
        s
    }
}

fn fmt_per_unit(t: &ExplainTerm) -> String {
    if t.class == "cpu_user" {
        format!("{} user", fmt_time(t.per_unit))
    } else {
        super::fmt_sig(t.per_unit)
    }
}

/// The guest's own count of a class, where it counted one that differs from the native count
/// by more than 1%.
fn guest_count(t: &ExplainTerm) -> Option<f64> {
    let g = t.guest_per_unit?;
    ((g - t.per_unit).abs() > 0.01 * t.per_unit.abs().max(1e-12)).then_some(g)
}

/// The second prediction, from the guest's own counts, as a sentence; `None` without one.
fn with_guest_counts(r: &ExplainRecord) -> Option<String> {
    let p = r.predicted_with_guest_counts.as_ref()?;
    let moved: Vec<String> = r
        .terms
        .iter()
        .filter_map(|t| {
            guest_count(t).map(|g| {
                format!(
                    "{} {} per unit, native {}",
                    t.class,
                    super::fmt_sig(g),
                    super::fmt_sig(t.per_unit)
                )
            })
        })
        .collect();
    let which = if moved.is_empty() {
        "the same counts as native within 1%".to_string()
    } else {
        moved.join("; ")
    };
    Some(format!(
        "with {}'s own counts where its kernel counted them: predicted {} [{}–{}] ({which})",
        r.backend,
        fmt_pct(p.value),
        fmt_pct(p.ci_low),
        fmt_pct(p.ci_high)
    ))
}

/// The prediction with the prices measured after each of the workload's repetitions, as a
/// sentence naming the prices that moved the extra time by more than 5% of the measured extra;
/// `None` without one.
fn with_round_prices(r: &ExplainRecord) -> Option<String> {
    let p = r.predicted_with_round_prices.as_ref()?;
    let moved: Vec<String> = r
        .terms
        .iter()
        .filter_map(|t| {
            let round = t.round_extra_ns?;
            let delta_s = (round - t.extra_ns) * 1e-9 * t.per_unit;
            (t.class != "cpu_user" && delta_s.abs() > 0.05 * r.measured_extra_s.abs()).then(|| {
                let each = ExplainTerm {
                    extra_ns: round,
                    ..t.clone()
                };
                format!("{} {} each", t.class, fmt_cost(&each))
            })
        })
        .collect();
    let which = if moved.is_empty() {
        String::new()
    } else {
        format!(" ({})", moved.join(", "))
    };
    Some(format!(
        "with prices measured after each of its repetitions: predicted {} [{}–{}]{which}",
        fmt_pct(p.value),
        fmt_pct(p.ci_low),
        fmt_pct(p.ci_high)
    ))
}

fn bar(share: f64, width: usize) -> String {
    let n = (share.clamp(0.0, 1.0) * width as f64).round() as usize;
    "█".repeat(n)
}

/// The one-line verdict of a record.
pub fn headline(r: &ExplainRecord) -> String {
    let explained = match r.explained_share {
        Some(s) => format!("explains {:.0}% of the extra time", s * 100.0),
        None => "no measurable overhead to explain".into(),
    };
    format!(
        "{} on {}: measured {} [{}–{}], predicted {} [{}–{}]: {explained}",
        r.workload,
        r.backend,
        fmt_pct(r.measured.value),
        fmt_pct(r.measured.ci_low),
        fmt_pct(r.measured.ci_high),
        fmt_pct(r.predicted.value),
        fmt_pct(r.predicted.ci_low),
        fmt_pct(r.predicted.ci_high),
    )
}

/// The breakdown for a terminal.
pub fn terminal(records: &[ExplainRecord]) -> String {
    if records.is_empty() {
        return "\nExplain: nothing to explain (no workload was counted natively; run with \
                --explain and an application or synth.events)\n"
            .into();
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nExplain: native event counts × extra cost per event in each backend (docs/explain.md)"
    );
    for r in records {
        let _ = writeln!(out, "\n{}", headline(r));
        let _ = writeln!(
            out,
            "  native {} per unit of work; extra measured {}, predicted {}",
            fmt_time(r.native_s),
            fmt_time(r.measured_extra_s),
            fmt_time(r.predicted_extra_s)
        );
        for line in with_guest_counts(r).into_iter().chain(with_round_prices(r)) {
            let _ = writeln!(out, "  {line}");
        }
        let _ = writeln!(
            out,
            "  {:<16} {:>14}   {:>12}  {:>10}  share of the measured extra",
            "class", "per unit", "extra each", "extra time"
        );
        // Shares of the measured extra time only where there is one to share out.
        let share = |x: f64| match r.explained_share {
            Some(_) => format!(
                "{:<20} {:>5.0}%",
                bar(x / r.measured_extra_s, 20),
                x / r.measured_extra_s * 100.0
            ),
            None => format!("{:<20} {:>6}", "", "–"),
        };
        for t in &r.terms {
            let _ = writeln!(
                out,
                "  {:<16} {:>14} × {:>12}  {:>10}  {}",
                t.class,
                fmt_per_unit(t),
                fmt_cost(t),
                fmt_time(t.extra_s),
                share(t.extra_s)
            );
        }
        let sign = if r.residual_s < 0.0 {
            "  (negative: the model predicts more than was measured)"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "  {:<16} {:>14}   {:>12}  {:>10}  {}{sign}",
            "unexplained",
            "",
            "",
            fmt_time(r.residual_s),
            share(r.residual_s)
        );
        for m in &r.missing {
            let _ = writeln!(out, "  not in the model: {m}");
        }
    }
    let _ = writeln!(out, "\nUnit costs from run {}", records[0].costs_from);
    out
}

/// The breakdown as Markdown: a summary table, then one table per record.
pub fn markdown(records: &[ExplainRecord]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "## Explain\n");
    let _ = writeln!(
        out,
        "| Workload | Backend | Measured | 95% CI | Predicted | 95% CI | Explained |"
    );
    let _ = writeln!(out, "|---|---|---:|---|---:|---|---:|");
    for r in records {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {}–{} | {} | {}–{} | {} |",
            r.workload,
            r.backend,
            fmt_pct(r.measured.value),
            fmt_pct(r.measured.ci_low),
            fmt_pct(r.measured.ci_high),
            fmt_pct(r.predicted.value),
            fmt_pct(r.predicted.ci_low),
            fmt_pct(r.predicted.ci_high),
            r.explained_share
                .map_or("–".into(), |s| format!("{:.0}%", s * 100.0))
        );
    }
    for r in records {
        let _ = writeln!(out, "\n### {} on {}\n", r.workload, r.backend);
        let _ = writeln!(
            out,
            "| Class | Per unit | Extra each | Extra time | Share of measured extra |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|");
        for t in &r.terms {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {:.0}% |",
                t.class,
                fmt_per_unit(t),
                fmt_cost(t),
                fmt_time(t.extra_s),
                t.extra_s / r.measured_extra_s * 100.0
            );
        }
        let _ = writeln!(
            out,
            "| unexplained | | | {} | {:.0}% |",
            fmt_time(r.residual_s),
            r.residual_s / r.measured_extra_s * 100.0
        );
        for line in with_guest_counts(r).into_iter().chain(with_round_prices(r)) {
            let _ = writeln!(out, "\n{}{}.", line[..1].to_uppercase(), &line[1..]);
        }
        for m in &r.missing {
            let _ = writeln!(out, "\nNot in the model: {m}");
        }
    }
    out
}

/// The header of [`csv`].
pub const CSV_COLUMNS: [&str; 14] = [
    "workload",
    "backend",
    "class",
    "per_unit",
    "guest_per_unit",
    "extra_ns",
    "extra_s",
    "measured_efficiency",
    "predicted_efficiency",
    "predicted_ci_low",
    "predicted_ci_high",
    "predicted_with_guest_counts",
    "round_extra_ns",
    "predicted_with_round_prices",
];

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// One row per term and one `unexplained` row per record (empty cells: not applicable).
pub fn csv(records: &[ExplainRecord]) -> String {
    let mut out = CSV_COLUMNS.join(",");
    out.push('\n');
    for r in records {
        let tail = format!(
            "{},{},{},{},{}",
            r.measured.value,
            r.predicted.value,
            r.predicted.ci_low,
            r.predicted.ci_high,
            r.predicted_with_guest_counts
                .as_ref()
                .map_or(String::new(), |p| p.value.to_string())
        );
        let round = r
            .predicted_with_round_prices
            .as_ref()
            .map_or(String::new(), |p| p.value.to_string());
        for t in &r.terms {
            let _ = writeln!(
                out,
                "{},{},{},{},{},{},{},{tail},{},{round}",
                csv_field(&r.workload),
                csv_field(&r.backend),
                csv_field(&t.class),
                t.per_unit,
                t.guest_per_unit.map_or(String::new(), |g| g.to_string()),
                t.extra_ns,
                t.extra_s,
                t.round_extra_ns.map_or(String::new(), |g| g.to_string()),
            );
        }
        let _ = writeln!(
            out,
            "{},{},unexplained,,,,{},{tail},,{round}",
            csv_field(&r.workload),
            csv_field(&r.backend),
            r.residual_s
        );
    }
    out
}

const COLORS: &[&str] = &[
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac", "#86bcb6",
];

/// A self-contained HTML page: per workload and backend, a bar of the measured extra time and
/// a stacked bar of the predicted extra time by class, both relative to the native time.
pub fn html(records: &[ExplainRecord]) -> String {
    let mut classes: Vec<&str> = Vec::new();
    for t in records.iter().flat_map(|r| &r.terms) {
        if !classes.contains(&t.class.as_str()) {
            classes.push(&t.class);
        }
    }
    let color = |c: &str| {
        let i = classes.iter().position(|x| *x == c).unwrap_or(0);
        COLORS[i % COLORS.len()]
    };
    // Scale: the largest extra (measured or predicted) over native time gets the full width.
    let max = records
        .iter()
        .flat_map(|r| {
            let pos: f64 = r.terms.iter().map(|t| t.extra_s.max(0.0)).sum();
            [r.measured_extra_s / r.native_s, pos / r.native_s]
        })
        .filter(|x| x.is_finite())
        .fold(0.0f64, f64::max)
        .max(1e-9);
    let (left, width, row_h) = (260.0, 640.0, 44.0);
    let height = 40.0 + row_h * records.len() as f64;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\" \
         font-family=\"sans-serif\" font-size=\"12\">",
        left + width + 20.0
    );
    let _ = write!(
        svg,
        "<text x=\"{left}\" y=\"16\">extra time per unit of work, in native times (0 … {:.1}×): \
         upper bar measured, lower bar predicted by class</text>",
        max
    );
    for (i, r) in records.iter().enumerate() {
        let y = 30.0 + row_h * i as f64;
        let _ = write!(
            svg,
            "<text x=\"4\" y=\"{}\">{} · {}</text><text x=\"4\" y=\"{}\" fill=\"#555\">measured {} · predicted {}</text>",
            y + 14.0,
            escape(&r.workload),
            escape(&r.backend),
            y + 30.0,
            fmt_pct(r.measured.value),
            fmt_pct(r.predicted.value)
        );
        let w = (r.measured_extra_s / r.native_s / max).clamp(0.0, 1.0) * width;
        let _ = write!(
            svg,
            "<rect x=\"{left}\" y=\"{y}\" width=\"{w:.1}\" height=\"16\" fill=\"#888\"><title>measured extra {}</title></rect>",
            fmt_time(r.measured_extra_s)
        );
        let mut x = left;
        for t in r.terms.iter().filter(|t| t.extra_s > 0.0) {
            let w = (t.extra_s / r.native_s / max).clamp(0.0, 1.0) * width;
            let _ = write!(
                svg,
                "<rect x=\"{x:.1}\" y=\"{}\" width=\"{w:.1}\" height=\"16\" fill=\"{}\"><title>{}: {}</title></rect>",
                y + 18.0,
                color(&t.class),
                escape(&t.class),
                fmt_time(t.extra_s)
            );
            x += w;
        }
    }
    svg.push_str("</svg>");
    let mut legend = String::new();
    for c in &classes {
        let _ = write!(
            legend,
            "<span style=\"margin-right:1em\"><span style=\"display:inline-block;width:12px;\
             height:12px;background:{}\"></span> {}</span>",
            color(c),
            escape(c)
        );
    }
    let mut rows = String::new();
    for r in records {
        let _ = write!(rows, "<li>{}</li>", escape(&headline(r)));
        for m in &r.missing {
            let _ = write!(rows, "<ul><li>not in the model: {}</li></ul>", escape(m));
        }
    }
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>hvbench explain</title></head>\
         <body style=\"font-family:sans-serif\"><h1>Where the overhead comes from</h1>\
         <p>Predicted extra time = native event counts × extra cost per event in the backend \
         (micro workloads of the same run) + user time × (CPU factor − 1). Grey: measured.</p>\
         {svg}<p>{legend}</p><ul>{rows}</ul></body></html>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::Interval;

    fn record() -> ExplainRecord {
        let iv = |v| Interval {
            value: v,
            ci_low: v - 0.02,
            ci_high: v + 0.02,
        };
        ExplainRecord {
            workload: "synth.events".into(),
            backend: "gvisor".into(),
            costs_from: "run-1".into(),
            native_s: 10e-6,
            measured: iv(0.1),
            predicted: iv(0.125),
            measured_extra_s: 90e-6,
            predicted_extra_s: 70e-6,
            explained_share: Some(70.0 / 90.0),
            residual_s: 20e-6,
            terms: vec![ExplainTerm {
                class: "syscalls.other".into(),
                per_unit: 100.0,
                extra_ns: 700.0,
                cost_from: "sys.getppid".into(),
                extra_s: 70e-6,
                guest_per_unit: Some(130.0),
                round_extra_ns: Some(900.0),
            }],
            missing: vec!["disk_ios: not counted (x)".into()],
            predicted_with_guest_counts: Some(iv(0.1)),
            predicted_with_round_prices: Some(iv(0.1)),
        }
    }

    #[test]
    fn every_format_shows_the_terms_and_the_residual() {
        let r = vec![record()];
        let t = terminal(&r);
        assert!(t.contains("synth.events on gvisor: measured 10.0%"), "{t}");
        assert!(t.contains("explains 78% of the extra time"), "{t}");
        assert!(
            t.contains("syscalls.other") && t.contains("+700.0 ns"),
            "{t}"
        );
        assert!(t.contains("unexplained") && t.contains("20.00 µs"), "{t}");
        assert!(t.contains("not in the model: disk_ios"), "{t}");
        assert!(
            t.contains("own counts where its kernel counted them: predicted 10.0%")
                && t.contains("syscalls.other 130.0 per unit, native 100.0"),
            "{t}"
        );
        // Round prices: 200 ns more per call × 100 calls is 20 µs, 22% of the measured extra.
        assert!(
            t.contains("with prices measured after each of its repetitions: predicted 10.0%")
                && t.contains("(syscalls.other +900.0 ns each)"),
            "{t}"
        );
        let m = markdown(&r);
        assert!(m.contains("| synth.events | gvisor | 10.0% |"), "{m}");
        assert!(m.contains("With gvisor's own counts"), "{m}");
        let c = csv(&r);
        assert_eq!(c.lines().count(), 3);
        assert!(
            c.lines().all(|l| l.split(',').count() == CSV_COLUMNS.len()),
            "{c}"
        );
        let h = html(&r);
        assert!(h.contains("<svg") && h.contains("syscalls.other"));
    }

    #[test]
    fn times_pick_their_unit() {
        assert_eq!(fmt_time(840e-9), "840.0 ns");
        assert_eq!(fmt_time(2.31e-6), "2.310 µs");
        assert_eq!(fmt_time(-0.0012), "-1.200 ms");
    }
}
