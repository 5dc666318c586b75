//! The terminal report: what `hvbench run` prints and `hvbench report` prints again; for a
//! lifecycle, scalability or isolation document, the tables its command printed.

use std::fmt::Write;

use super::{fmt_pct, fmt_sig, scenario, Table};
use crate::backends::Availability;
use crate::results::{RunDocument, RunStatus, Verdict};

/// Renders the whole terminal report of a document.
pub fn terminal(doc: &RunDocument) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "hvbench {} ({}) · {} · host: {} · {} CPUs · {} MiB · {}{}",
        doc.hvbench_version,
        doc.git_revision,
        doc.run_id,
        doc.host.cpu_model,
        doc.host.cpus,
        doc.host.memory_kib / 1024,
        if doc.host.virtualization == "none" {
            "bare metal".to_string()
        } else {
            format!(
                "host is a {} VM (guests are nested)",
                doc.host.virtualization
            )
        },
        if doc.interrupted {
            " · INTERRUPTED: partial results"
        } else {
            ""
        },
    );
    let s = &doc.settings;
    // A scenario document without runs describes its own settings above its tables (its
    // repetitions may be boots, its duration an idle window).
    if doc.scenario_data.is_none() || !doc.runs.is_empty() {
        let _ = writeln!(
            out,
            "{} rep(s) after {} warm-up(s), {:.2} s each, {} cop{}; CI {:.0}% bootstrap of the median\n",
            s.reps,
            s.warmup,
            s.target_s,
            s.copies,
            if s.copies == 1 { "y" } else { "ies" },
            s.confidence * 100.0
        );
    } else {
        out.push('\n');
    }
    for line in super::view::placement_lines(doc) {
        let _ = writeln!(out, "{line}");
    }
    out.push('\n');
    out.push_str(&backends_table(doc));
    out.push('\n');
    for b in &doc.backends {
        if b.availability.is_available() && doc.runs.iter().any(|r| r.backend == b.name) {
            out.push_str(&scores_table(doc, &b.name));
            out.push('\n');
        }
    }
    let baseline = doc
        .backends
        .first()
        .map(|b| b.name.as_str())
        .unwrap_or("native");
    for b in doc.backends.iter().skip(1) {
        if doc.runs.iter().any(|r| r.backend == b.name) {
            out.push_str(&efficiency_table(doc, &b.name, baseline));
            out.push('\n');
        }
    }
    let compared: Vec<&str> = doc
        .backends
        .iter()
        .skip(1)
        .filter(|b| doc.runs.iter().any(|r| r.backend == b.name))
        .map(|b| b.name.as_str())
        .collect();
    if !compared.is_empty() {
        out.push_str(&efficiency_matrix(doc, &compared));
        out.push('\n');
    }
    let apps = [
        super::view::applications_table(doc),
        super::view::qos_table(doc),
    ];
    for t in apps.into_iter().flatten() {
        let header: Vec<&str> = t.header.iter().map(String::as_str).collect();
        let mut table = Table::new(&header, &t.right);
        for r in t.rows {
            table.row(r);
        }
        let _ = writeln!(out, "{}", t.title);
        out.push_str(&table.render());
        out.push('\n');
    }
    // The lifecycle, scalability and isolation tables, as their commands printed them.
    if let Some(data) = &doc.scenario_data {
        out.push_str(&scenario::text(&scenario::view(data)));
        out.push('\n');
    }
    if !doc.warnings.is_empty() {
        out.push_str("Notes:\n");
        for w in &doc.warnings {
            let _ = writeln!(out, "  - {w}");
        }
    }
    out
}

fn backends_table(doc: &RunDocument) -> String {
    let mut t = Table::new(
        &["Backend", "Technique", "Status", "Boot", "Detail"],
        &[false, false, false, true, false],
    );
    for b in &doc.backends {
        let (status, detail) = match &b.availability {
            Availability::Available { detail } => ("available".to_string(), detail.clone()),
            Availability::Unavailable { reason, hint } => {
                ("unavailable".to_string(), format!("{reason} (fix: {hint})"))
            }
        };
        let boot = b
            .guests
            .iter()
            .find_map(|g| g.boot_s)
            .map(|s| format!("{:.3} s", s))
            .unwrap_or_else(|| "-".into());
        let failure = b
            .guests
            .iter()
            .filter_map(|g| g.failure.as_deref())
            .next()
            .map(first_line);
        let status = if failure.is_some() {
            format!("{status}, guest failed")
        } else {
            status
        };
        t.row(vec![
            b.name.clone(),
            b.technique.clone(),
            status,
            boot,
            failure.unwrap_or(detail),
        ]);
    }
    format!("Backends\n{}", t.render())
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").to_string()
}

fn scores_table(doc: &RunDocument, backend: &str) -> String {
    let mut t = Table::new(
        &[
            "Workload", "Unit", "Median", "95% CI", "CV", "Runs", "Host CPU", "Notes",
        ],
        &[false, false, true, true, true, true, true, false],
    );
    for r in doc.runs.iter().filter(|r| r.backend == backend) {
        let unit = format!("{}{}", r.unit, if r.higher_is_better { " ↑" } else { " ↓" });
        match (&r.status, &r.summary) {
            (RunStatus::Ok, Some(s)) => {
                let mut notes = Vec::new();
                if !s.outliers.is_empty() {
                    notes.push(format!("{} outlier(s)", s.outliers.len()));
                }
                if r.extra_reps > 0 {
                    notes.push(format!("+{} reps (noisy)", r.extra_reps));
                }
                if r.sample_details.iter().any(|d| d.clock_flag) {
                    notes.push("clock disagreement".into());
                }
                for (k, v) in &r.extras {
                    notes.push(format!("{k} {}", fmt_sig(*v)));
                }
                t.row(vec![
                    r.workload.clone(),
                    unit,
                    fmt_sig(s.median),
                    format!("{} – {}", fmt_sig(s.ci_low), fmt_sig(s.ci_high)),
                    format!("{:.1}%", s.cv * 100.0),
                    r.samples.len().to_string(),
                    r.host_cpu_per_op
                        .as_ref()
                        .map(|c| format!("{} {}", fmt_sig(c.value), c.unit))
                        .unwrap_or_else(|| "-".into()),
                    notes.join(", "),
                ]);
            }
            (status, _) => {
                let label = match status {
                    RunStatus::Skipped => "skipped",
                    RunStatus::Failed if r.reason.as_deref().is_some_and(|x| x.contains("DNR")) => {
                        "DNR"
                    }
                    _ => "failed",
                };
                t.row(vec![
                    r.workload.clone(),
                    unit,
                    label.into(),
                    String::new(),
                    String::new(),
                    r.samples.len().to_string(),
                    String::new(),
                    first_line(r.reason.as_deref().unwrap_or("")),
                ]);
            }
        }
    }
    format!("Scores on {backend}\n{}", t.render())
}

fn efficiency_table(doc: &RunDocument, backend: &str, baseline: &str) -> String {
    let mut t = Table::new(
        &[
            "Workload",
            "Efficiency",
            "95% CI",
            "Verdict",
            &format!("{backend} score"),
            &format!("{baseline} score"),
            "Unit",
            "Host CPU/op",
        ],
        &[false, true, true, false, true, true, false, true],
    );
    for r in doc.runs.iter().filter(|r| r.backend == backend) {
        let host = doc.run(baseline, &r.workload);
        let score = |x: Option<&crate::results::RunRecord>| {
            x.and_then(|x| x.summary.as_ref().filter(|_| x.status == RunStatus::Ok))
                .map(|s| fmt_sig(s.median))
                .unwrap_or_else(|| match x.map(|x| x.status) {
                    Some(RunStatus::Skipped) => "skipped".into(),
                    Some(RunStatus::Failed) => "DNR".into(),
                    _ => "-".into(),
                })
        };
        let e = doc
            .efficiency
            .iter()
            .find(|e| e.backend == backend && e.workload == r.workload);
        let (eff, ci, verdict) = match e {
            Some(e) => (
                fmt_pct(e.ratio),
                format!("{} – {}", fmt_pct(e.ci_low), fmt_pct(e.ci_high)),
                match e.verdict {
                    Verdict::Overhead => "overhead",
                    Verdict::NoMeasurableOverhead => "no measurable overhead",
                    Verdict::Faster => "faster than host (explain)",
                }
                .to_string(),
            ),
            None => (
                "-".into(),
                String::new(),
                first_line(r.reason.as_deref().unwrap_or("not comparable")),
            ),
        };
        t.row(vec![
            r.workload.clone(),
            eff,
            ci,
            verdict,
            score(Some(r)),
            score(host),
            r.unit.clone(),
            cpu_cost_ratio(r, host),
        ]);
    }
    format!(
        "Efficiency of {backend} (guest score / host score; for times host / guest)\n{}",
        t.render()
    )
}

/// Host CPU per operation in the guest against on the host (`4.2×`): the cost a near-native
/// throughput can hide.
fn cpu_cost_ratio(
    guest: &crate::results::RunRecord,
    host: Option<&crate::results::RunRecord>,
) -> String {
    let g = guest
        .host_cpu_per_op
        .as_ref()
        .filter(|_| guest.status == RunStatus::Ok);
    let h = host
        .filter(|h| h.status == RunStatus::Ok)
        .and_then(|h| h.host_cpu_per_op.as_ref());
    match (g, h) {
        (Some(g), Some(h)) if h.value > 0.0 && g.unit == h.unit => {
            format!("{}×", fmt_sig(g.value / h.value))
        }
        _ => "-".into(),
    }
}

/// One table, one column per guest backend: the efficiency of every workload at a glance.
/// `≈` marks an interval that contains 100% (no measurable overhead); `DNR` a guest that did
/// not return; `skipped` a workload that cannot run there.
fn efficiency_matrix(doc: &RunDocument, backends: &[&str]) -> String {
    let mut header = vec!["Workload"];
    header.extend_from_slice(backends);
    let right: Vec<bool> = header.iter().enumerate().map(|(i, _)| i > 0).collect();
    let mut t = Table::new(&header, &right);
    for w in &doc.settings.workloads {
        let mut row = vec![w.clone()];
        for b in backends {
            let cell = match doc
                .efficiency
                .iter()
                .find(|e| e.backend == *b && &e.workload == w)
            {
                Some(e) => format!(
                    "{}{}",
                    fmt_pct(e.ratio),
                    if e.verdict == Verdict::NoMeasurableOverhead {
                        " ≈"
                    } else {
                        "  "
                    }
                ),
                None => match doc.run(b, w).map(|r| r.status) {
                    Some(RunStatus::Skipped) => "skipped".into(),
                    Some(RunStatus::Failed) => "DNR".into(),
                    _ => "-".into(),
                },
            };
            row.push(cell);
        }
        t.row(row);
    }
    format!(
        "Virtualization efficiency (guest / host; ≈: 95% CI contains 100%, no measurable overhead)\n{}",
        t.render()
    )
}
