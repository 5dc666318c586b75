//! What the lifecycle, scalability and isolation documents show (their `scenario_data`),
//! computed once as titled tables, sentences and lists, so that every format says the same: the
//! terminal (what `hvbench lifecycle`, `scale` and `isolation` print at the end of a run and
//! `hvbench report` prints again, [`text`]), Markdown and HTML.
//!
//! A guest that did not return is `DNR` in its cell, never a number, a zero or a blank; the
//! reason is kept with the cell ([`Grid::why`], a `title` in HTML) and every such guest is listed
//! with its reason and console tail below the tables ([`Block::Failures`]).

use std::collections::BTreeMap;

use crate::results::*;
use crate::scenario::isolation::is_dnr;
use crate::scenario::scale::{first_line, num, table, tail_excerpt};

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

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Block {
    Table(Grid),
    /// A conclusion drawn from the tables (where the aggregate stops rising).
    Sentence(String),
    /// Guests that did not return (or boots that failed), with why.
    Failures {
        title: String,
        items: Vec<Failure>,
    },
    Notes(Vec<String>),
}

/// A titled table of plain-text cells.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Grid {
    pub title: String,
    pub header: Vec<String>,
    /// `right[i]`: column i holds numbers (aligned right in Markdown and HTML).
    pub right: Vec<bool>,
    pub rows: Vec<Vec<String>>,
    /// Why a cell says `DNR` or `skipped`, by (row, column).
    pub why: BTreeMap<(usize, usize), String>,
    /// Only in the shareable reports: one line per guest or boot is too long for a terminal.
    pub detail: bool,
}

impl Grid {
    fn new(title: impl Into<String>, header: &[&str], right: &[bool]) -> Grid {
        Grid {
            title: title.into(),
            header: header.iter().map(|h| h.to_string()).collect(),
            right: right.to_vec(),
            rows: Vec::new(),
            why: BTreeMap::new(),
            detail: false,
        }
    }

    /// Adds a row; `why` gives the reason of some of its cells, by column.
    fn push(&mut self, cells: Vec<String>, why: Vec<(usize, String)>) {
        let row = self.rows.len();
        for (col, reason) in why {
            if !reason.is_empty() {
                self.why.insert((row, col), reason);
            }
        }
        self.rows.push(cells);
    }
}

/// One guest (or boot) that did not return or was not measured.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Failure {
    /// The guest, and where: `native-g2 under fork (normal)`.
    pub who: String,
    pub reason: String,
    /// The telling lines of its console tail.
    pub tail: Vec<String>,
}

/// The view of any scenario's tables.
pub(crate) fn view(data: &ScenarioData) -> ScenarioView {
    match data {
        ScenarioData::Lifecycle(d) => lifecycle(d),
        ScenarioData::Scalability(d) => scalability(d),
        ScenarioData::Isolation(d) => isolation(d),
    }
}

/// The terminal rendering: the intro, then every table that is not a detail, with its title.
pub(crate) fn text(v: &ScenarioView) -> String {
    let mut s = String::new();
    for line in &v.intro {
        s.push_str(line);
        s.push('\n');
    }
    s.push('\n');
    let mut first = true;
    for b in &v.blocks {
        match b {
            Block::Table(t) if t.detail => continue,
            Block::Table(t) => {
                if !first {
                    s.push('\n');
                }
                s.push_str(&t.title);
                s.push('\n');
                let header: Vec<&str> = t.header.iter().map(String::as_str).collect();
                s.push_str(&table(&header, &t.rows));
            }
            Block::Sentence(x) => {
                s.push('\n');
                s.push_str(x);
                s.push('\n');
            }
            Block::Failures { items, .. } => {
                for f in items {
                    s.push_str(&format!("  {}: {}\n", f.who, f.reason));
                    for l in &f.tail {
                        s.push_str(&format!("      | {l}\n"));
                    }
                }
            }
            Block::Notes(notes) => {
                for n in notes {
                    s.push_str(&format!("Note: {n}\n"));
                }
            }
        }
        first = false;
    }
    s
}

/// The console tail kept after `; console tail:` in a launch error, as its telling lines.
fn error_tail(text: &str) -> Vec<String> {
    text.split_once("; console tail:\n")
        .map(|(_, t)| tail_excerpt(t).into_iter().map(String::from).collect())
        .unwrap_or_default()
}

fn tail_of(tail: Option<&str>) -> Vec<String> {
    tail.map(|t| tail_excerpt(t).into_iter().map(String::from).collect())
        .unwrap_or_default()
}

/// `DNR` or `skipped` for a guest without a result.
fn status_word(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Failed => "DNR",
        RunStatus::Skipped => "skipped",
        RunStatus::Ok => "-",
    }
}

// ----- isolation -----

/// A degradation cell: `DNR`, the percentage, or `-`.
fn pct_cell(pct: Option<f64>, dnr: bool) -> String {
    match (dnr, pct) {
        (true, _) => "DNR".into(),
        (false, Some(p)) => format!("{p:.1}%"),
        (false, None) => "-".into(),
    }
}

/// `label: reason` of a guest that did not return.
fn guest_reason(g: &IsolationGuest) -> String {
    format!(
        "{}: {}",
        g.label,
        g.reason.as_deref().unwrap_or("did not return (DNR)")
    )
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
    let mut main = Grid::new(
        "Degradation under each stressor",
        &["stressor", "stressed guest", "normal guests", "note"],
        &[false, true, true, false],
    );
    for r in &d.rows {
        if r.status == StressStatus::Skipped {
            let why = r.reason.clone().unwrap_or_default();
            main.push(
                vec![
                    r.stressor.clone(),
                    "skipped".into(),
                    "skipped".into(),
                    why.clone(),
                ],
                vec![(1, why.clone()), (2, why)],
            );
            continue;
        }
        let stressed_why = r
            .guests
            .first()
            .filter(|g| is_dnr(g))
            .map(guest_reason)
            .unwrap_or_default();
        let normals: Vec<&IsolationGuest> = r.guests.iter().skip(1).collect();
        let normal = if r.normal_dnr > 0 {
            let of = if normals.is_empty() {
                String::new()
            } else {
                format!(" of {}", normals.len())
            };
            match r.normal_pct {
                Some(p) => format!("DNR ({}{of}), others {p:.1}%", r.normal_dnr),
                None => format!("DNR ({}{of})", r.normal_dnr),
            }
        } else {
            pct_cell(r.normal_pct, false)
        };
        let normal_why = normals
            .iter()
            .filter(|g| is_dnr(g))
            .map(|g| guest_reason(g))
            .collect::<Vec<_>>()
            .join("; ");
        let interrupted = (r.status == StressStatus::Interrupted).then(|| match &r.reason {
            Some(why) => format!("interrupted: {why}"),
            None => "interrupted".to_string(),
        });
        let note = [interrupted, r.note.clone()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join("; ");
        main.push(
            vec![
                r.stressor.clone(),
                pct_cell(r.stressed_pct, r.stressed_dnr),
                normal,
                note,
            ],
            vec![(1, stressed_why), (2, normal_why)],
        );
    }
    let mut blocks = vec![Block::Table(main)];

    let mut detail = Grid::new(
        "Per workload: stressed guest, then each normal guest (%)",
        &["stressor", "workload", "stressed", "normal guests"],
        &[false, false, true, true],
    );
    for r in d.rows.iter().filter(|r| r.status != StressStatus::Skipped) {
        let stressed_why = r
            .guests
            .first()
            .filter(|g| is_dnr(g))
            .map(guest_reason)
            .unwrap_or_default();
        for w in &r.per_workload {
            // A normal guest without a number did not return in this phase or in its baseline.
            let lost = w
                .normal_per_guest
                .iter()
                .enumerate()
                .filter(|(_, v)| v.is_none())
                .filter_map(|(i, _)| {
                    let i = i + 1;
                    r.guests
                        .get(i)
                        .filter(|g| is_dnr(g))
                        .or_else(|| r.baseline.get(i).filter(|g| is_dnr(g)))
                        .map(guest_reason)
                })
                .collect::<Vec<_>>()
                .join("; ");
            detail.push(
                vec![
                    r.stressor.clone(),
                    w.workload.clone(),
                    pct_cell(w.stressed_pct, r.stressed_dnr),
                    w.normal_per_guest
                        .iter()
                        .map(|v| v.map_or("DNR".into(), |p| format!("{p:.1}")))
                        .collect::<Vec<_>>()
                        .join(" / "),
                ],
                vec![(2, stressed_why.clone()), (3, lost)],
            );
        }
    }
    if !detail.rows.is_empty() {
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
        let mut base = Grid::new(
            "Baseline: each guest's median before any stressor",
            &header,
            &right,
        );
        for g in &d.baseline {
            let mut row = vec![g.label.clone()];
            let mut why = Vec::new();
            for (i, w) in d.steady.iter().enumerate() {
                if is_dnr(g) {
                    row.push("DNR".into());
                    why.push((i + 1, guest_reason(g)));
                } else {
                    row.push(g.medians.get(&w.name).map_or("-".into(), |&v| num(v)));
                }
            }
            base.push(row, why);
        }
        blocks.push(Block::Table(base));
    }

    let failure = |g: &IsolationGuest, where_: String| Failure {
        who: format!("{} {where_}", g.label),
        reason: g.reason.clone().unwrap_or_else(|| "did not return".into()),
        tail: tail_of(g.console_tail.as_deref()),
    };
    let mut failures: Vec<Failure> = d
        .baseline
        .iter()
        .filter(|g| is_dnr(g))
        .map(|g| failure(g, "in the first baseline".into()))
        .collect();
    for r in &d.rows {
        for g in r.baseline.iter().filter(|g| is_dnr(g)) {
            failures.push(failure(g, format!("in the baseline before {}", r.stressor)));
        }
        for g in r.guests.iter().filter(|g| is_dnr(g)) {
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
    let mut main = Grid::new(
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
        let none = if st.failed > 0 || st.per_guest.is_empty() {
            "DNR"
        } else {
            "skipped"
        };
        let why = st
            .per_guest
            .iter()
            .find(|g| g.status != RunStatus::Ok)
            .and_then(|g| g.reason.clone())
            .map(|r| format!("no guest returned a result: {r}"))
            .unwrap_or_default();
        let mut why_cells = Vec::new();
        if st.aggregate.is_none() {
            why_cells.push((3, why.clone()));
        }
        if ok.is_empty() {
            why_cells.push((4, why.clone()));
            why_cells.push((5, why));
        }
        main.push(
            vec![
                st.guests.to_string(),
                ok.len().to_string(),
                st.failed.to_string(),
                st.aggregate.map_or(none.into(), num),
                if ok.is_empty() {
                    none.into()
                } else {
                    num(ok.iter().sum::<f64>() / ok.len() as f64)
                },
                if ok.is_empty() {
                    none.into()
                } else {
                    format!("{}–{}", num(min), num(max))
                },
                st.scaling_efficiency
                    .map_or("-".into(), |e| format!("{:.0}%", e * 100.0)),
                st.startup_s.map_or("-".into(), |t| format!("{t:.1}")),
            ],
            why_cells,
        );
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
    let mut guests = Grid::new(
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
                .filter(|_| g.status == RunStatus::Ok && g.throughput.is_some());
            let (value, cv, tp, why) = match measured {
                Some(s) => (
                    num(s.median),
                    format!("{:.1}%", s.cv * 100.0),
                    g.throughput.map_or("-".into(), num),
                    Vec::new(),
                ),
                None => {
                    let word = status_word(g.status);
                    let why = g.reason.clone().unwrap_or_default();
                    (
                        word.to_string(),
                        "-".into(),
                        g.throughput.map_or(word.into(), num),
                        vec![(2, why.clone()), (4, why)],
                    )
                }
            };
            guests.push(
                vec![
                    st.guests.to_string(),
                    g.label.clone(),
                    value,
                    cv,
                    tp,
                    secs(g.boot_s),
                    secs(g.host_cpu_s),
                ],
                why,
            );
        }
    }
    if !guests.rows.is_empty() {
        blocks.push(Block::Table(guests));
    }

    // Guests that did not return, grouped per step by reason (the first one's console tail).
    let mut failures = Vec::new();
    for st in &d.steps {
        let mut groups: Vec<(String, Vec<&GuestResult>)> = Vec::new();
        for g in st.per_guest.iter().filter(|g| g.status != RunStatus::Ok) {
            let reason = g.reason.as_deref().unwrap_or("");
            let key = match g.status {
                RunStatus::Failed if reason.contains("DNR") => reason.to_string(),
                RunStatus::Failed => format!("DNR: {reason}"),
                _ => format!("skipped: {reason}"),
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
            failures.push(Failure {
                who: format!("{who}, step of {}", st.guests),
                reason: key,
                tail: tail_of(gs[0].console_tail.as_deref()),
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
    let no_boot = |r: &LifecycleRow| {
        (!r.boots.is_empty() && r.boots.iter().all(|b| b.boot_s.is_none())).then(|| {
            let first = r
                .boots
                .iter()
                .find_map(|b| b.failure.as_deref())
                .map(first_line)
                .unwrap_or_default();
            format!("no guest booted: {first}")
        })
    };

    let mut boots = Grid::new(
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
            Some(why) => boots.push(
                vec![
                    r.vcpus.to_string(),
                    booted,
                    "DNR".into(),
                    "DNR".into(),
                    "DNR".into(),
                ],
                vec![(2, why.clone()), (3, why.clone()), (4, why)],
            ),
            None => boots.push(
                vec![
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
                ],
                Vec::new(),
            ),
        }
    }

    let mut idle = Grid::new(
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
        let (cells, why) = match (&r.idle, no_boot(r)) {
            (Some(i), _) => (
                vec![
                    r.vcpus.to_string(),
                    format!("{:.2}", i.cpu_pct_of_core),
                    i.summary.as_ref().map_or("-".into(), |x| {
                        format!("{:.2} [{:.2}, {:.2}]", x.median, x.ci_low, x.ci_high)
                    }),
                    format!("{:.1}", i.window_s),
                    i.method.clone(),
                ],
                Vec::new(),
            ),
            (None, Some(why)) => (
                vec![
                    r.vcpus.to_string(),
                    "DNR".into(),
                    "DNR".into(),
                    "-".into(),
                    "-".into(),
                ],
                vec![(1, why.clone()), (2, why)],
            ),
            (None, None) => (
                vec![
                    r.vcpus.to_string(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                ],
                Vec::new(),
            ),
        };
        idle.push(cells, why);
    }

    let mut memory = Grid::new(
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
        let (cells, why) = match (&r.memory, no_boot(r)) {
            (Some(m), _) => (
                vec![
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
                ],
                Vec::new(),
            ),
            (None, Some(why)) => {
                let mut cells = vec!["DNR".to_string(); 11];
                cells[0] = r.vcpus.to_string();
                cells[1] = r.memory_mib.to_string();
                for c in [2, 3, 10] {
                    cells[c] = "-".into();
                }
                (cells, (4..10).map(|c| (c, why.clone())).collect())
            }
            (None, None) => {
                let mut cells = vec!["-".to_string(); 11];
                cells[0] = r.vcpus.to_string();
                (cells, Vec::new())
            }
        };
        memory.push(cells, why);
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
    let mut own = Grid::new(
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
        own.push(cells, Vec::new());
    }

    let mut largest = Grid::new(
        "Largest mappings of the VMM's own memory",
        &[
            "vCPUs", "process", "part", "mapping", "perms", "size MiB", "PSS MiB",
        ],
        &[true, false, false, false, false, true, true],
    );
    largest.detail = true;
    for r in &d.rows {
        for l in r.memory.iter().flat_map(|m| &m.largest_mappings) {
            largest.push(
                vec![
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
                ],
                Vec::new(),
            );
        }
    }

    let mut every = Grid::new(
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
            let why = b.failure.as_deref().map(first_line).unwrap_or_default();
            let secs = |v: Option<f64>| match (v, &b.failure) {
                (Some(t), _) => format!("{t:.3}"),
                (None, Some(_)) => "DNR".into(),
                (None, None) => "-".into(),
            };
            every.push(
                vec![
                    r.vcpus.to_string(),
                    b.label.clone(),
                    secs(b.boot_s),
                    secs(b.guest_uptime_s),
                    b.cpus.map_or("-".into(), |c| c.to_string()),
                ],
                vec![(2, why.clone()), (3, why)],
            );
        }
    }

    let mut blocks = vec![
        Block::Table(boots),
        Block::Table(idle),
        Block::Table(memory),
    ];
    if !own.rows.is_empty() {
        blocks.push(Block::Table(own));
    }
    if !largest.rows.is_empty() {
        blocks.push(Block::Table(largest));
    }
    if !every.rows.is_empty() {
        blocks.push(Block::Table(every));
    }
    let failures: Vec<Failure> = d
        .rows
        .iter()
        .flat_map(|r| &r.boots)
        .filter_map(|b| {
            b.failure.as_deref().map(|f| Failure {
                who: b.label.clone(),
                reason: format!("did not boot: {}", first_line(f)),
                tail: error_tail(f),
            })
        })
        .collect();
    if !failures.is_empty() {
        blocks.push(Block::Failures {
            title: "Boots that failed (DNR)".into(),
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
    fn a_dnr_cell_is_never_a_number() {
        assert_eq!(pct_cell(Some(0.0), true), "DNR");
        assert_eq!(pct_cell(None, false), "-");
        assert_eq!(pct_cell(Some(12.34), false), "12.3%");
    }
}
