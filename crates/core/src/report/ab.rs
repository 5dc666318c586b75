//! The `ab` section of a document in the [table model](super::model): each workload's change
//! from configuration A to B, measured in one run (`crate::scenario::ab`), and what the test
//! was. Every format shows it through [`super::view::document_tables`] and
//! [`super::view::notes`].

use super::fmt_sig;
use super::model::Table;
use crate::results::{AbArm, AbRecord, AbVerdict};

fn show(arm: &AbArm) -> String {
    if arm.options.is_empty() {
        format!("{} (the backend's defaults)", arm.backend)
    } else {
        format!("{} ({})", arm.backend, arm.options.join(" "))
    }
}

/// The A/B table: medians of both arms, the change, the spread between rounds and the verdict.
pub(crate) fn table(ab: &AbRecord) -> Table {
    let mut t = Table::titled(
        format!("A/B in one run: A = {}, B = {}", show(&ab.a), show(&ab.b)),
        &[
            ("Workload", false),
            ("Unit", false),
            ("Median A", true),
            ("Median B", true),
            ("Change", true),
            ("Rounds", true),
            ("Round spread", true),
            ("p", true),
            ("Verdict", false),
        ],
    );
    t.id = Some("ab".into());
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
    t
}

/// What the test was, and the count of each verdict.
pub(crate) fn notes(ab: &AbRecord) -> Vec<String> {
    let count = |v: &AbVerdict| ab.changes.iter().filter(|c| &c.verdict == v).count();
    vec![
        format!(
            "A/B: paired permutation test per workload: the labels A and B swapped within rounds \
             only (sign flips of ln(B/A) per round), so a change must hold against the spread \
             between rounds; a verdict needs p < {} and a change beyond {:.1}%.",
            ab.significance,
            ab.noise * 100.0
        ),
        format!(
            "A/B summary: B faster on {}, B slower on {}, no significant change on {}.",
            count(&AbVerdict::Faster),
            count(&AbVerdict::Slower),
            count(&AbVerdict::NoSignificantChange)
        ),
    ]
}
