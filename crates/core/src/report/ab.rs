//! The `ab` section of a document as text: each workload's change from configuration A to B,
//! measured in one run (`crate::scenario::ab`).

use std::fmt::Write;

use super::{fmt_sig, Table};
use crate::results::{AbRecord, AbVerdict};

/// The A/B table and what the test was.
pub fn terminal(ab: &AbRecord) -> String {
    let mut out = String::new();
    let show = |arm: &crate::results::AbArm| {
        if arm.options.is_empty() {
            format!("{} (the backend's defaults)", arm.backend)
        } else {
            format!("{} ({})", arm.backend, arm.options.join(" "))
        }
    };
    let _ = writeln!(
        out,
        "A/B in one run: A = {}, B = {}",
        show(&ab.a),
        show(&ab.b)
    );
    let mut t = Table::new(
        &[
            "Workload",
            "Unit",
            "Median A",
            "Median B",
            "Change",
            "Rounds",
            "Round spread",
            "p",
            "Verdict",
        ],
        &[false, false, true, true, true, true, true, true, false],
    );
    for c in &ab.changes {
        let num = |v: Option<f64>| v.map(fmt_sig).unwrap_or_else(|| "-".into());
        let pct = |v: Option<f64>| v.map(|x| format!("{:+.1}%", x * 100.0)).unwrap_or_default();
        t.row(vec![
            c.workload.clone(),
            format!("{} {}", c.unit, if c.higher_is_better { "↑" } else { "↓" }),
            num(c.median_a),
            num(c.median_b),
            pct(c.change),
            c.pairs.to_string(),
            c.round_spread
                .map(|s| format!("{:.1}%", s * 100.0))
                .unwrap_or_default(),
            c.p_value.map(|p| format!("{p:.4}")).unwrap_or_default(),
            c.verdict.to_string(),
        ]);
    }
    out.push_str(&t.render());
    let count = |v: &AbVerdict| ab.changes.iter().filter(|c| &c.verdict == v).count();
    let _ = writeln!(
        out,
        "Paired permutation test per workload: the labels A and B swapped within rounds only \
         (sign flips of ln(B/A) per round), so a change must hold against the spread between \
         rounds; a verdict needs p < {} and a change beyond {:.1}%.",
        ab.significance,
        ab.noise * 100.0
    );
    let _ = writeln!(
        out,
        "Summary: B faster on {}, B slower on {}, no significant change on {}.",
        count(&AbVerdict::Faster),
        count(&AbVerdict::Slower),
        count(&AbVerdict::NoSignificantChange)
    );
    out
}
