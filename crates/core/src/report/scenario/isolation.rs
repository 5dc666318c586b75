//! The isolation document's view: the degradation of the stressed guest and of the normal
//! guests under each stressor, per workload, each guest's baseline, and the guests that did not
//! return.

use super::{grid, num, tail_of, ScenarioView};
use crate::report::model::{Block, Cell, FailureItem};
use crate::results::*;

/// A degradation cell: the percentage, or `-`.
fn pct_cell(pct: Option<f64>) -> String {
    match pct {
        Some(p) => format!("{p:.1}%"),
        None => "-".into(),
    }
}

/// `label: reason` of a guest without a result.
fn guest_reason(g: &IsolationGuest) -> String {
    format!(
        "{}: {}",
        g.label,
        g.outcome
            .describe()
            .unwrap_or_else(|| "did not return (DNR)".into())
    )
}

fn failed(g: &&IsolationGuest) -> bool {
    g.outcome.is_failed()
}

fn failed_ref(g: &&&IsolationGuest) -> bool {
    g.outcome.is_failed()
}

/// The stressed guest's cell: its outcome's word when it failed, else its degradation.
fn stressed_cell(r: &IsolationRow, pct: Option<f64>) -> Cell {
    match r.guests.first().filter(failed) {
        Some(g) => Cell::bad(g.outcome.label(), guest_reason(g)),
        None if r.stressed_dnr => Cell::bad("DNR", ""),
        None => pct_cell(pct).into(),
    }
}

pub(crate) fn isolation(d: &IsolationData) -> ScenarioView {
    let steady: Vec<&str> = d.steady.iter().map(|w| w.name.as_str()).collect();
    let intro = vec![
        format!(
            "Performance isolation on {}: {} guests ({} vCPU, {} MiB), steady workloads {}; {} \
             repetitions",
            d.backend,
            d.guests,
            d.vcpus,
            d.memory_mib,
            steady.join(", "),
            d.reps
        ),
        "% degradation against each guest's baseline (higher is worse; DNR: did not return)".into(),
    ];
    let mut main = grid(
        "Degradation under each stressor",
        &["stressor", "stressed guest", "normal guests", "note"],
        &[false, true, true, false],
    );
    for r in &d.rows {
        if r.status == StressStatus::Skipped {
            let why = r.reason.clone().unwrap_or_default();
            main.push(vec![
                r.stressor.clone().into(),
                Cell::with_why("skipped", why.clone()),
                Cell::with_why("skipped", why.clone()),
                why.into(),
            ]);
            continue;
        }
        let normals: Vec<&IsolationGuest> = r.guests.iter().skip(1).collect();
        let normal = if r.normal_dnr > 0 {
            let of = if normals.is_empty() {
                String::new()
            } else {
                format!(" of {}", normals.len())
            };
            let word = normals
                .iter()
                .find(failed_ref)
                .map_or("DNR", |g| g.outcome.label());
            let text = match r.normal_pct {
                Some(p) => format!("{word} ({}{of}), others {p:.1}%", r.normal_dnr),
                None => format!("{word} ({}{of})", r.normal_dnr),
            };
            let why = normals
                .iter()
                .filter(failed_ref)
                .map(|g| guest_reason(g))
                .collect::<Vec<_>>()
                .join("; ");
            Cell::bad(text, why)
        } else {
            pct_cell(r.normal_pct).into()
        };
        let interrupted = (r.status == StressStatus::Interrupted).then(|| match &r.reason {
            Some(why) => format!("interrupted: {why}"),
            None => "interrupted".to_string(),
        });
        let note = [interrupted, r.note.clone()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join("; ");
        main.push(vec![
            r.stressor.clone().into(),
            stressed_cell(r, r.stressed_pct),
            normal,
            note.into(),
        ]);
    }
    let mut blocks = vec![Block::Table(main)];

    let mut detail = grid(
        "Per workload: stressed guest, then each normal guest (%)",
        &["stressor", "workload", "stressed", "normal guests"],
        &[false, false, true, true],
    );
    for r in d.rows.iter().filter(|r| r.status != StressStatus::Skipped) {
        for w in &r.per_workload {
            // A normal guest without a number did not return in this phase or in its baseline.
            let lost_guest = |i: usize| {
                r.guests
                    .get(i + 1)
                    .filter(failed)
                    .or_else(|| r.baseline.get(i + 1).filter(failed))
            };
            let lost: Vec<String> = w
                .normal_per_guest
                .iter()
                .enumerate()
                .filter(|(_, v)| v.is_none())
                .filter_map(|(i, _)| lost_guest(i).map(guest_reason))
                .collect();
            let normals = w
                .normal_per_guest
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Some(p) => format!("{p:.1}"),
                    None => lost_guest(i).map_or("DNR", |g| g.outcome.label()).into(),
                })
                .collect::<Vec<_>>()
                .join(" / ");
            let normals = if lost.is_empty() {
                Cell::from(normals)
            } else {
                Cell::bad(normals, lost.join("; "))
            };
            detail.push(vec![
                r.stressor.clone().into(),
                w.workload.clone().into(),
                stressed_cell(r, w.stressed_pct),
                normals,
            ]);
        }
    }
    if !detail.is_empty() {
        blocks.push(Block::Table(detail));
    }

    if !d.baseline.is_empty() {
        let heads: Vec<String> = d
            .steady
            .iter()
            .map(|w| format!("{} {}", w.name, w.unit))
            .collect();
        let mut header = vec!["guest"];
        header.extend(heads.iter().map(String::as_str));
        let right: Vec<bool> = (0..header.len()).map(|i| i > 0).collect();
        let mut base = grid(
            "Baseline: each guest's median before any stressor",
            &header,
            &right,
        );
        for g in &d.baseline {
            let mut row: Vec<Cell> = vec![g.label.clone().into()];
            for w in &d.steady {
                row.push(if g.outcome.is_failed() {
                    Cell::bad(g.outcome.label(), guest_reason(g))
                } else {
                    g.medians
                        .get(&w.name)
                        .map_or("-".into(), |&v| num(v))
                        .into()
                });
            }
            base.push(row);
        }
        blocks.push(Block::Table(base));
    }

    let failure = |g: &IsolationGuest, where_: String| FailureItem {
        who: format!("{} {where_}", g.label),
        reason: g
            .outcome
            .describe()
            .unwrap_or_else(|| "did not return".into()),
        tail: tail_of(g.outcome.console_tail()),
    };
    let mut failures: Vec<FailureItem> = d
        .baseline
        .iter()
        .filter(failed)
        .map(|g| failure(g, "in the first baseline".into()))
        .collect();
    for r in &d.rows {
        for g in r.baseline.iter().filter(failed) {
            failures.push(failure(g, format!("in the baseline before {}", r.stressor)));
        }
        for g in r.guests.iter().filter(failed) {
            failures.push(failure(g, format!("under {} ({})", r.stressor, g.role)));
        }
    }
    if !failures.is_empty() {
        blocks.push(Block::Failures {
            title: "Guests that did not return (DNR)".into(),
            items: failures,
        });
    }
    if !d.notes.is_empty() {
        blocks.push(Block::Notes(d.notes.clone()));
    }
    ScenarioView {
        id: "isolation",
        title: "Performance isolation".into(),
        intro,
        blocks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guest_without_a_result_is_its_outcome_never_a_number() {
        let mut row = IsolationRow {
            stressor: "fork".into(),
            status: StressStatus::Ran,
            reason: None,
            note: None,
            stressed_pct: Some(0.0),
            stressed_dnr: true,
            normal_pct: None,
            normal_dnr: 0,
            per_workload: Vec::new(),
            guests: Vec::new(),
            baseline: Vec::new(),
        };
        assert_eq!(stressed_cell(&row, Some(0.0)).text, "DNR");
        row.guests.push(IsolationGuest {
            label: "g0".into(),
            role: "stressed".into(),
            outcome: Outcome::failed(FailureKind::DidNotStart, "no hello"),
            medians: Default::default(),
            samples: Default::default(),
            stress_extras: Default::default(),
            stress_labels: Default::default(),
        });
        let c = stressed_cell(&row, Some(0.0));
        assert_eq!((c.text.as_str(), c.bad), ("did not start", true));
        assert_eq!(c.why.as_deref(), Some("g0: did not start: no hello"));
        assert_eq!(pct_cell(Some(12.34)), "12.3%");
    }
}
