//! What the lifecycle, scalability and isolation documents show (their `scenario_data`),
//! computed once in the [table model](super::model) as titled tables, sentences and lists, so
//! that every format says the same: the terminal (what `hvbench lifecycle`, `scale` and
//! `isolation` print at the end of a run and `hvbench report` prints again), Markdown, HTML and
//! CSV.
//!
//! A guest without a result is its outcome's word in its cell (`DNR`, `did not start`,
//! `skipped`), never a number, a zero or a blank; the reason is kept with the cell
//! ([`Cell::why`], a `title` in HTML) and every such guest is listed with its reason and console
//! tail below the tables ([`Block::Failures`]).

use super::model::{tail_excerpt, Block, Cell, FailureItem, Table};
use crate::results::*;

/// The tables of one scenario document, in reading order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ScenarioView {
    /// `lifecycle`, `scalability` or `isolation` (the HTML section's id).
    pub id: &'static str,
    /// A short heading for the shareable reports.
    pub title: String,
    /// What was run and how to read it, one sentence a line.
    pub intro: Vec<String>,
    pub blocks: Vec<Block>,
}

/// The view of any scenario's tables.
pub(crate) fn view(data: &ScenarioData) -> ScenarioView {
    match data {
        ScenarioData::Lifecycle(d) => lifecycle(d),
        ScenarioData::Scalability(d) => scalability(d),
        ScenarioData::Isolation(d) => isolation(d),
    }
}

/// A table with `header`, `right[i]` saying which columns hold numbers.
fn grid(title: impl Into<String>, header: &[&str], right: &[bool]) -> Table {
    Table {
        title: title.into(),
        ..Table::new(header, right)
    }
}

fn tail_of(tail: Option<&str>) -> Vec<String> {
    tail.map(tail_excerpt).unwrap_or_default()
}

/// A number with three significant digits or so.
pub(crate) fn num(v: f64) -> String {
    let a = v.abs();
    if a >= 1000.0 {
        format!("{v:.0}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

// ----- isolation -----

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

// ----- scalability -----

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

// ----- lifecycle -----

pub(crate) fn lifecycle(d: &LifecycleData) -> ScenarioView {
    let intro = vec![format!(
        "Lifecycle of {} guests ({} boot(s) per vCPU count; idle window {:.0} s after {:.0} s of \
         settling)",
        d.backend, d.boots, d.idle_window_s, d.settle_s
    )];
    let fmt_sum = |x: &Option<hvbench_stats::Summary>| match x {
        Some(x) => format!("{:.2} [{:.2}, {:.2}]", x.median, x.ci_low, x.ci_high),
        None => "-".into(),
    };
    // Why a row has no number at all: none of its guests booted.
    // The cell says the first failure's word (`did not start`).
    let no_boot = |r: &LifecycleRow| {
        (!r.boots.is_empty() && r.boots.iter().all(|b| b.boot_s.is_none())).then(|| {
            let first = r.boots.iter().find_map(|b| b.failure.as_ref());
            let why = format!(
                "no guest booted: {}",
                first.map(Failure::first_line).unwrap_or_default()
            );
            let word = first.map_or("DNR", |f| f.kind.label());
            Cell::bad(word, why)
        })
    };

    let mut boots = grid(
        "Boot time, seconds: median [95% interval]",
        &[
            "vCPUs",
            "booted",
            "launch→hello (host)",
            "range",
            "guest uptime at hello",
        ],
        &[true, true, true, true, true],
    );
    for r in &d.rows {
        let ok: Vec<f64> = r.boots.iter().filter_map(|b| b.boot_s).collect();
        let booted = format!("{}/{}", ok.len(), r.boots.len());
        match no_boot(r) {
            Some(c) => boots.push(vec![
                r.vcpus.to_string().into(),
                booted.into(),
                c.clone(),
                c.clone(),
                c,
            ]),
            None => boots.push_text(vec![
                r.vcpus.to_string(),
                booted,
                fmt_sum(&r.boot_s),
                if ok.is_empty() {
                    "-".into()
                } else {
                    format!(
                        "{:.2}–{:.2}",
                        ok.iter().copied().fold(f64::INFINITY, f64::min),
                        ok.iter().copied().fold(0.0, f64::max)
                    )
                },
                fmt_sum(&r.guest_uptime_s),
            ]),
        }
    }

    let mut idle = grid(
        "Idle guest: host CPU, % of one core",
        &[
            "vCPUs",
            "window mean %",
            "1-s slices median [interval]",
            "window s",
            "metered by",
        ],
        &[true, true, true, true, false],
    );
    for r in &d.rows {
        let cells: Vec<Cell> = match (&r.idle, no_boot(r)) {
            (Some(i), _) => vec![
                r.vcpus.to_string().into(),
                format!("{:.2}", i.cpu_pct_of_core).into(),
                i.summary
                    .as_ref()
                    .map_or("-".into(), |x| {
                        format!("{:.2} [{:.2}, {:.2}]", x.median, x.ci_low, x.ci_high)
                    })
                    .into(),
                format!("{:.1}", i.window_s).into(),
                i.method.clone().into(),
            ],
            (None, Some(c)) => vec![
                r.vcpus.to_string().into(),
                c.clone(),
                c,
                "-".into(),
                "-".into(),
            ],
            (None, None) => {
                let mut cells = vec![Cell::from("-"); 5];
                cells[0] = r.vcpus.to_string().into();
                cells
            }
        };
        idle.push(cells);
    }

    let mut memory = grid(
        "Memory, MiB",
        &[
            "vCPUs",
            "configured",
            "guest MemTotal",
            "guest used",
            "guest RAM backed",
            "backed − used",
            "VMM own",
            "VMM own RSS",
            "host PSS",
            "host RSS",
            "processes",
        ],
        &[true; 11],
    );
    let mib = |k: u64| num(k as f64 / 1024.0);
    let opt = |k: Option<u64>| k.map_or("-".into(), mib);
    let signed = |k: Option<i64>| k.map_or("-".into(), |o| num(o as f64 / 1024.0));
    for r in &d.rows {
        let cells: Vec<Cell> = match (&r.memory, no_boot(r)) {
            (Some(m), _) => vec![
                r.vcpus.to_string(),
                m.configured_mib.to_string(),
                opt(m.guest_mem_total_kib),
                opt(m.guest_used_kib),
                opt(m.guest_ram_backed_kib),
                signed(m.backed_minus_used_kib),
                opt(m.vmm_own_kib),
                opt(m.vmm_own_rss_kib),
                mib(m.host_pss_kib),
                mib(m.host_rss_kib),
                m.host_pids.len().to_string(),
            ]
            .into_iter()
            .map(Cell::from)
            .collect(),
            (None, Some(c)) => {
                let mut cells = vec![c; 11];
                cells[0] = r.vcpus.to_string().into();
                cells[1] = r.memory_mib.to_string().into();
                for i in [2, 3, 10] {
                    cells[i] = "-".into();
                }
                cells
            }
            (None, None) => {
                let mut cells = vec![Cell::from("-"); 11];
                cells[0] = r.vcpus.to_string().into();
                cells
            }
        };
        memory.push(cells);
    }

    // The VMM's own memory by part: only the parts some row has.
    let parts: Vec<&str> = crate::smaps::OwnPart::ALL
        .iter()
        .map(|p| p.name())
        .filter(|name| {
            d.rows
                .iter()
                .filter_map(|r| r.memory.as_ref())
                .any(|m| m.vmm_parts.iter().any(|p| p.part == *name))
        })
        .collect();
    let mut own = grid(
        "VMM own memory by part, MiB: PSS (reserved)",
        &std::iter::once("vCPUs")
            .chain(parts.iter().copied())
            .collect::<Vec<_>>(),
        &vec![true; parts.len() + 1],
    );
    for r in &d.rows {
        let Some(m) = r.memory.as_ref().filter(|m| !m.vmm_parts.is_empty()) else {
            continue;
        };
        let mut cells = vec![r.vcpus.to_string()];
        for name in &parts {
            cells.push(match m.vmm_parts.iter().find(|p| p.part == *name) {
                Some(p) => format!("{} ({})", mib(p.pss_kib), mib(p.size_kib)),
                None => "-".into(),
            });
        }
        own.push_text(cells);
    }

    let mut largest = grid(
        "Largest mappings of the VMM's own memory",
        &[
            "vCPUs", "process", "part", "mapping", "perms", "size MiB", "PSS MiB",
        ],
        &[true, false, false, false, false, true, true],
    );
    largest.detail = true;
    for r in &d.rows {
        for l in r.memory.iter().flat_map(|m| &m.largest_mappings) {
            largest.push_text(vec![
                r.vcpus.to_string(),
                format!("{} ({})", l.process, l.pid),
                l.part.clone(),
                if l.name.is_empty() {
                    "[anonymous]".into()
                } else {
                    l.name.clone()
                },
                l.perms.clone(),
                mib(l.size_kib),
                mib(l.pss_kib),
            ]);
        }
    }

    let mut every = grid(
        "Every boot",
        &[
            "vCPUs",
            "boot",
            "launch→hello s",
            "guest uptime s",
            "guest CPUs",
        ],
        &[true, false, true, true, true],
    );
    every.detail = true;
    for r in &d.rows {
        for b in &r.boots {
            let secs = |v: Option<f64>| match (v, &b.failure) {
                (Some(t), _) => Cell::from(format!("{t:.3}")),
                (None, Some(f)) => Cell::bad(f.kind.label(), f.first_line()),
                (None, None) => "-".into(),
            };
            every.push(vec![
                r.vcpus.to_string().into(),
                b.label.clone().into(),
                secs(b.boot_s),
                secs(b.guest_uptime_s),
                b.cpus.map_or("-".into(), |c| c.to_string()).into(),
            ]);
        }
    }

    let mut blocks = vec![
        Block::Table(boots),
        Block::Table(idle),
        Block::Table(memory),
    ];
    if !own.is_empty() {
        blocks.push(Block::Table(own));
    }
    if !largest.is_empty() {
        blocks.push(Block::Table(largest));
    }
    if !every.is_empty() {
        blocks.push(Block::Table(every));
    }
    let failures: Vec<FailureItem> = d
        .rows
        .iter()
        .flat_map(|r| &r.boots)
        .filter_map(|b| {
            b.failure.as_ref().map(|f| FailureItem {
                who: b.label.clone(),
                reason: format!("{}: {}", f.kind.describe(), f.first_line()),
                tail: tail_of(f.console_tail.as_deref()),
            })
        })
        .collect();
    if !failures.is_empty() {
        blocks.push(Block::Failures {
            title: "Boots that failed".into(),
            items: failures,
        });
    }
    let mut notes: Vec<String> = Vec::new();
    for n in d
        .rows
        .iter()
        .flat_map(|r| {
            r.notes
                .iter()
                .chain(r.memory.as_ref().and_then(|m| m.note.as_ref()))
        })
        .chain(&d.notes)
    {
        if !notes.contains(n) {
            notes.push(n.clone());
        }
    }
    let measured: Vec<&MemoryRecord> = d.rows.iter().filter_map(|r| r.memory.as_ref()).collect();
    for g in measured.iter().filter_map(|m| m.guest_ram.as_ref()) {
        let n = format!("guest RAM backed: the PSS of {g}; VMM own: the PSS of everything else");
        if !notes.contains(&n) {
            notes.push(n);
        }
    }
    if !measured.is_empty() {
        notes.push(
            "the former `overhead` column (host PSS − guest used) mixed the VMM's own memory with \
             guest RAM the host backs but the guest does not use; it is no longer shown (it \
             stays in the document as overhead_kib): VMM own and backed − used tell them apart"
                .into(),
        );
    }
    if !notes.is_empty() {
        blocks.push(Block::Notes(notes));
    }
    ScenarioView {
        id: "lifecycle",
        title: "Lifecycle".into(),
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
