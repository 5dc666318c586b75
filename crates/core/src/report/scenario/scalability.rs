//! The scalability document's view: aggregate throughput by guest count, where it stops
//! rising, each guest's result, and the guests that did not return, grouped by reason.

use super::{grid, num, tail_of, ScenarioView};
use crate::report::model::{Block, Cell, FailureItem};
use crate::results::*;

pub(crate) fn scalability(d: &ScalabilityData) -> ScenarioView {
    let intro = vec![format!(
        "Scalability: {} on {} ({} vCPU, {} MiB per guest; {} repetitions per guest)",
        d.workload, d.backend, d.vcpus, d.memory_mib, d.reps
    )];
    let agg = format!("aggregate {}", d.aggregate_unit);
    let per = format!("per guest {}", d.aggregate_unit);
    let mut main = grid(
        "Aggregate throughput by guest count (DNR: guests that did not return)",
        &[
            "guests",
            "returned",
            "DNR",
            &agg,
            &per,
            "range",
            "scaling",
            "start-up s",
        ],
        &[true, true, true, true, true, true, true, true],
    );
    for st in &d.steps {
        let ok: Vec<f64> = st.per_guest.iter().filter_map(|g| g.throughput).collect();
        let (min, max) = ok
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
                (a.min(v), b.max(v))
            });
        // A cell without a number: the first failed guest's word (`DNR`, `did not start`), or
        // `skipped` when none failed.
        let without = st
            .per_guest
            .iter()
            .find(|g| g.outcome.is_failed())
            .or_else(|| st.per_guest.iter().find(|g| !g.outcome.is_ok()));
        let none = |why: &str| match without {
            Some(g) if g.outcome.is_failed() => Cell::bad(g.outcome.label(), why),
            Some(g) => Cell::with_why(g.outcome.label(), why),
            None if st.per_guest.is_empty() => Cell::bad("DNR", why),
            None => Cell::with_why("skipped", why),
        };
        let why = without
            .and_then(|g| g.outcome.describe())
            .map(|r| format!("no guest returned a result: {r}"))
            .unwrap_or_default();
        main.push(vec![
            st.guests.to_string().into(),
            ok.len().to_string().into(),
            st.failed.to_string().into(),
            st.aggregate.map_or_else(|| none(&why), |a| num(a).into()),
            if ok.is_empty() {
                none(&why)
            } else {
                num(ok.iter().sum::<f64>() / ok.len() as f64).into()
            },
            if ok.is_empty() {
                none(&why)
            } else {
                format!("{}–{}", num(min), num(max)).into()
            },
            st.scaling_efficiency
                .map_or("-".into(), |e| format!("{:.0}%", e * 100.0))
                .into(),
            st.startup_s
                .map_or("-".into(), |t| format!("{t:.1}"))
                .into(),
        ]);
    }
    let mut blocks = vec![Block::Table(main)];
    blocks.push(Block::Sentence(match d.saturation_guests {
        Some(n) => format!(
            "Aggregate throughput stops rising (by more than {:.0}%) beyond {n} guest(s).",
            d.rise_threshold * 100.0
        ),
        None => "Too few guest counts measured to tell where the aggregate stops rising.".into(),
    }));

    let median = format!(
        "median {} {}",
        d.unit,
        if d.higher_is_better { "↑" } else { "↓" }
    );
    let throughput = format!("throughput {}", d.aggregate_unit);
    let mut guests = grid(
        "Each guest's result",
        &[
            "guests",
            "guest",
            &median,
            "CV",
            &throughput,
            "boot s",
            "host CPU s",
        ],
        &[true, false, true, true, true, true, true],
    );
    guests.detail = true;
    for st in &d.steps {
        for g in &st.per_guest {
            let secs = |v: Option<f64>| v.map_or("-".into(), |t| format!("{t:.3}"));
            let measured = g
                .summary
                .as_ref()
                .filter(|_| g.outcome.is_ok() && g.throughput.is_some());
            let (value, cv, tp): (Cell, Cell, Cell) = match measured {
                Some(s) => (
                    num(s.median).into(),
                    format!("{:.1}%", s.cv * 100.0).into(),
                    g.throughput.map_or("-".into(), num).into(),
                ),
                None => (
                    Cell::outcome(&g.outcome),
                    "-".into(),
                    g.throughput
                        .map_or_else(|| Cell::outcome(&g.outcome), |t| num(t).into()),
                ),
            };
            guests.push(vec![
                st.guests.to_string().into(),
                g.label.clone().into(),
                value,
                cv,
                tp,
                secs(g.boot_s).into(),
                secs(g.host_cpu_s).into(),
            ]);
        }
    }
    if !guests.is_empty() {
        blocks.push(Block::Table(guests));
    }

    // Guests without a result, grouped per step by reason (the first one's console tail).
    let mut failures = Vec::new();
    for st in &d.steps {
        let mut groups: Vec<(String, Vec<&GuestResult>)> = Vec::new();
        for g in st.per_guest.iter().filter(|g| !g.outcome.is_ok()) {
            let key = match &g.outcome {
                Outcome::Failed(f) => f.describe(),
                other => format!("skipped: {}", other.reason().unwrap_or_default()),
            };
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, v)) => v.push(g),
                None => groups.push((key, vec![g])),
            }
        }
        for (key, gs) in groups {
            let who = if gs.len() == 1 {
                gs[0].label.clone()
            } else {
                format!(
                    "{} guests ({} … {})",
                    gs.len(),
                    gs[0].label,
                    gs[gs.len() - 1].label
                )
            };
            failures.push(FailureItem {
                who: format!("{who}, step of {}", st.guests),
                reason: key,
                tail: tail_of(gs[0].outcome.console_tail()),
            });
        }
    }
    if !failures.is_empty() {
        blocks.push(Block::Failures {
            title: "Guests that did not return (DNR) or were not measured".into(),
            items: failures,
        });
    }
    if !d.notes.is_empty() {
        blocks.push(Block::Notes(d.notes.clone()));
    }
    ScenarioView {
        id: "scalability",
        title: "Scalability".into(),
        intro,
        blocks,
    }
}
