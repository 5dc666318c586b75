//! The lifecycle document's view: boot times, the idle guest's host CPU, memory (the VMM's own
//! by part, its largest mappings), every boot, and the boots that failed.

use super::{grid, num, tail_of, ScenarioView};
use crate::report::model::{Block, Cell, FailureItem};
use crate::results::*;

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
