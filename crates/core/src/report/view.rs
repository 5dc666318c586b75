//! What the shareable reports (Markdown, HTML) show, computed once as rows of cells.
//!
//! Each export formats these rows in its own syntax, so a number reads the same in every format
//! (`fmt_sig`, `fmt_pct`, the same verdict words as the terminal report).

use super::{fmt_pct, fmt_sig};
use crate::backends::Availability;
use crate::results::{BackendRecord, RunDocument, RunRecord, RunStatus, Verdict};

/// A titled table: header cells, which columns hold numbers, and rows of plain text cells.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TableView {
    pub title: String,
    pub header: Vec<String>,
    /// `right[i]`: column i holds numbers (aligned right).
    pub right: Vec<bool>,
    pub rows: Vec<Vec<String>>,
}

/// Where guests ran on the host's CPUs, as lines: the host's topology and the run's pinning,
/// then, when pinned, one line per guest (`qemu-tcg-0: CPU 0/TCG→0, ...`).
pub(crate) fn placement_lines(doc: &RunDocument) -> Vec<String> {
    let topo = &doc.host.topology;
    let mut lines = Vec::new();
    let host = if topo.cpus.is_empty() {
        "topology not recorded".to_string()
    } else {
        topo.describe()
    };
    match &doc.settings.pinning {
        None => lines.push(format!(
            "Placement: {host}; unpinned (the host's scheduler placed guests and the native agent)"
        )),
        Some(p) => {
            lines.push(format!(
                "Placement: {host}; pinned, {} on CPUs {}",
                p.placement.name(),
                crate::placement::format_cpu_list(&p.cpus)
            ));
            for b in &doc.backends {
                for g in &b.guests {
                    if let Some(pin) = g.config.settings.get("pinning") {
                        lines.push(format!("  {}: {pin}", g.label));
                    }
                }
            }
        }
    }
    lines
}

/// The backend every other one is compared with: the first one listed (native).
pub(crate) fn baseline(doc: &RunDocument) -> &str {
    doc.backends
        .first()
        .map(|b| b.name.as_str())
        .unwrap_or("native")
}

/// Backends other than the baseline that have at least one run: the ones with an efficiency.
pub(crate) fn guest_backends(doc: &RunDocument) -> Vec<&BackendRecord> {
    doc.backends
        .iter()
        .skip(1)
        .filter(|b| doc.runs.iter().any(|r| r.backend == b.name))
        .collect()
}

/// Workloads in the order the run was asked for, then any other one found among the runs.
pub(crate) fn workloads(doc: &RunDocument) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    let listed = doc.settings.workloads.iter().map(String::as_str);
    for w in listed.chain(doc.runs.iter().map(|r| r.workload.as_str())) {
        if !out.contains(&w) && doc.runs.iter().any(|r| r.workload == w) {
            out.push(w);
        }
    }
    out
}

/// The words for an efficiency verdict; an interval containing 100% is never read as a gain.
pub(crate) fn verdict_text(v: Verdict) -> &'static str {
    match v {
        Verdict::Overhead => "overhead",
        Verdict::NoMeasurableOverhead => "no measurable overhead",
        Verdict::Faster => "faster than host (explain)",
    }
}

/// `skipped`, `DNR` or `failed` for a run without a summary.
pub(crate) fn status_label(r: &RunRecord) -> &'static str {
    match r.status {
        RunStatus::Ok => "no summary",
        RunStatus::Skipped => "skipped",
        RunStatus::Failed if r.reason.as_deref().is_some_and(|x| x.contains("DNR")) => "DNR",
        RunStatus::Failed => "failed",
    }
}

/// The unit with the direction of goodness: `ns/op ↓`.
pub(crate) fn unit_with_direction(r: &RunRecord) -> String {
    format!("{} {}", r.unit, if r.higher_is_better { "↑" } else { "↓" })
}

/// Text on one line, whitespace collapsed, cut to about `max` characters with an ellipsis.
pub(crate) fn brief(s: &str, max: usize) -> String {
    let words: Vec<&str> = s.split_whitespace().collect();
    let one_line = words.join(" ");
    if one_line.chars().count() <= max {
        return one_line;
    }
    let cut: String = one_line.chars().take(max.saturating_sub(1)).collect();
    format!("{}…", cut.trim_end())
}

/// The summary of a run that was measured, if any.
pub(crate) fn measured(r: &RunRecord) -> Option<&hvbench_stats::Summary> {
    r.summary.as_ref().filter(|_| r.status == RunStatus::Ok)
}

/// Boot time of a backend's first guest that said hello.
pub(crate) fn boot_text(b: &BackendRecord) -> String {
    b.guests
        .iter()
        .find_map(|g| g.boot_s)
        .map(|s| format!("{s:.3} s"))
        .unwrap_or_else(|| "-".into())
}

/// `available` or `unavailable`, and the probe's detail or the reason with its fix.
pub(crate) fn availability_text(a: &Availability) -> (&'static str, String) {
    match a {
        Availability::Available { detail } => ("available", detail.clone()),
        Availability::Unavailable { reason, hint } => {
            ("unavailable", format!("{reason} (fix: {hint})"))
        }
    }
}

pub(crate) fn backends_table(doc: &RunDocument) -> TableView {
    let rows = doc
        .backends
        .iter()
        .map(|b| {
            let (status, detail) = availability_text(&b.availability);
            let failure = b.guests.iter().find_map(|g| g.failure.as_deref());
            let status = match failure {
                Some(_) => format!("{status}, guest failed"),
                None => status.to_string(),
            };
            vec![
                b.name.clone(),
                b.technique.clone(),
                status,
                boot_text(b),
                failure.map(|f| brief(f, 160)).unwrap_or(detail),
            ]
        })
        .collect();
    TableView {
        title: "Backends".into(),
        header: strings(&["Backend", "Technique", "Status", "Boot", "Detail"]),
        right: vec![false, false, false, true, false],
        rows,
    }
}

/// Notes on a measured run: outliers, extra repetitions, clock disagreement, secondary metrics.
pub(crate) fn run_notes(r: &RunRecord) -> String {
    let mut notes = Vec::new();
    if let Some(s) = measured(r) {
        if !s.outliers.is_empty() {
            notes.push(format!("{} outlier(s)", s.outliers.len()));
        }
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
    notes.join(", ")
}

/// Host CPU per unit of work, `-` when not metered.
pub(crate) fn host_cpu_text(r: &RunRecord) -> String {
    r.host_cpu_per_op
        .as_ref()
        .map(|c| format!("{} {}", fmt_sig(c.value), c.unit))
        .unwrap_or_else(|| "-".into())
}

pub(crate) fn scores_table(doc: &RunDocument, backend: &str) -> TableView {
    let rows = doc
        .runs
        .iter()
        .filter(|r| r.backend == backend)
        .map(|r| match measured(r) {
            Some(s) => vec![
                r.workload.clone(),
                unit_with_direction(r),
                fmt_sig(s.median),
                format!("{} – {}", fmt_sig(s.ci_low), fmt_sig(s.ci_high)),
                format!("{:.1}%", s.cv * 100.0),
                r.samples.len().to_string(),
                host_cpu_text(r),
                run_notes(r),
            ],
            None => vec![
                r.workload.clone(),
                unit_with_direction(r),
                status_label(r).into(),
                String::new(),
                String::new(),
                r.samples.len().to_string(),
                String::new(),
                brief(r.reason.as_deref().unwrap_or(""), 160),
            ],
        })
        .collect();
    TableView {
        title: format!("Scores on {backend}"),
        header: strings(&[
            "Workload", "Unit", "Median", "95% CI", "CV", "Runs", "Host CPU", "Notes",
        ]),
        right: vec![false, false, true, true, true, true, true, false],
        rows,
    }
}

/// The median of a run, or why there is none.
pub(crate) fn score_text(r: Option<&RunRecord>) -> String {
    match r {
        Some(r) => measured(r)
            .map(|s| fmt_sig(s.median))
            .unwrap_or_else(|| status_label(r).into()),
        None => "-".into(),
    }
}

pub(crate) fn efficiency_table(doc: &RunDocument, backend: &str) -> TableView {
    let baseline = baseline(doc);
    let rows = doc
        .runs
        .iter()
        .filter(|r| r.backend == backend)
        .map(|r| {
            let e = doc
                .efficiency
                .iter()
                .find(|e| e.backend == backend && e.workload == r.workload);
            let (eff, ci, verdict) = match e {
                Some(e) => (
                    fmt_pct(e.ratio),
                    format!("{} – {}", fmt_pct(e.ci_low), fmt_pct(e.ci_high)),
                    verdict_text(e.verdict).to_string(),
                ),
                None => (
                    "-".into(),
                    String::new(),
                    brief(r.reason.as_deref().unwrap_or("not comparable"), 160),
                ),
            };
            vec![
                r.workload.clone(),
                eff,
                ci,
                verdict,
                score_text(Some(r)),
                score_text(doc.run(baseline, &r.workload)),
                r.unit.clone(),
            ]
        })
        .collect();
    TableView {
        title: format!(
            "Efficiency of {backend} (guest score / host score; for times host / guest)"
        ),
        header: vec![
            "Workload".into(),
            "Efficiency".into(),
            "95% CI".into(),
            "Verdict".into(),
            format!("{backend} score"),
            format!("{baseline} score"),
            "Unit".into(),
        ],
        right: vec![false, true, true, false, true, true, false],
        rows,
    }
}

/// The applications of a run (workloads named `app.*`), one row per application and backend:
/// the score, the efficiency with its interval, and what explains the score (a database's
/// latency, a build's configure and make times, a file load's fsyncs). `None` without any.
pub(crate) fn applications_table(doc: &RunDocument) -> Option<TableView> {
    let base = baseline(doc);
    let apps: Vec<&str> = workloads(doc)
        .into_iter()
        .filter(|w| w.starts_with("app."))
        .collect();
    if apps.is_empty() {
        return None;
    }
    let mut rows = Vec::new();
    for w in &apps {
        for b in &doc.backends {
            let Some(r) = doc.run(&b.name, w) else {
                continue;
            };
            let eff = doc
                .efficiency
                .iter()
                .find(|e| e.backend == b.name && e.workload == *w);
            let (eff, ci) = match (b.name == base, eff) {
                (true, _) => ("baseline".to_string(), String::new()),
                (false, Some(e)) => (
                    fmt_pct(e.ratio),
                    format!("{} – {}", fmt_pct(e.ci_low), fmt_pct(e.ci_high)),
                ),
                (false, None) => ("-".to_string(), String::new()),
            };
            let x = |k: &str| r.extras.get(k).copied();
            let detail = if measured(r).is_none() {
                brief(r.reason.as_deref().unwrap_or(""), 100)
            } else if let (Some(avg), Some(p99)) = (x("lat_avg_ms"), x("lat_p99_ms")) {
                format!("latency avg {} ms, p99 {} ms", fmt_sig(avg), fmt_sig(p99))
            } else if let (Some(c), Some(m)) = (x("configure_s"), x("make_s")) {
                format!("configure {} s + make {} s", fmt_sig(c), fmt_sig(m))
            } else if let Some(f) = x("fsyncs") {
                format!("{} fsyncs per pass", fmt_sig(f))
            } else if let (Some(rps), Some(p99)) = (x("req_per_s"), x("p99_ms")) {
                format!(
                    "{} requests/s, p99 {} ms at that load",
                    fmt_sig(rps),
                    fmt_sig(p99)
                )
            } else {
                String::new()
            };
            rows.push(vec![
                w.to_string(),
                b.name.clone(),
                score_text(Some(r)),
                unit_with_direction(r),
                eff,
                ci,
                detail,
            ]);
        }
    }
    Some(TableView {
        title: "Applications (median of each backend; efficiency against the host running the \
                same binaries on as many CPUs as a guest has vCPUs)"
            .into(),
        header: strings(&[
            "Application",
            "Backend",
            "Score",
            "Unit",
            "Efficiency",
            "95% CI",
            "What it is made of",
        ]),
        right: vec![false, false, true, false, true, true, false],
        rows,
    })
}

/// The web workload's QoS curves: for each backend that ran `app.web`, every load its searches
/// tried, as (sessions, % of requests good), the repetitions' loads of the same size averaged,
/// by sessions. From each sample's `qos_curve` label (`N:pct,N:pct`).
pub(crate) fn qos_curves(doc: &RunDocument) -> Vec<(String, Vec<(u32, f64)>)> {
    let mut curves = Vec::new();
    for b in &doc.backends {
        let Some(r) = doc.run(&b.name, "app.web") else {
            continue;
        };
        let mut points: std::collections::BTreeMap<u32, (f64, u32)> = Default::default();
        for d in &r.sample_details {
            let Some(curve) = d.labels.get("qos_curve") else {
                continue;
            };
            for (n, pct) in curve.split(',').filter_map(|p| {
                let (n, pct) = p.split_once(':')?;
                Some((
                    n.trim().parse::<u32>().ok()?,
                    pct.trim().parse::<f64>().ok()?,
                ))
            }) {
                let e = points.entry(n).or_insert((0.0, 0));
                e.0 += pct;
                e.1 += 1;
            }
        }
        if !points.is_empty() {
            let curve = points
                .into_iter()
                .map(|(n, (sum, k))| (n, sum / f64::from(k)))
                .collect();
            curves.push((b.name.clone(), curve));
        }
    }
    curves
}

/// The QoS curves as a table: a row per backend, its most sessions meeting QoS and the loads
/// its searches tried. `None` without `app.web`.
pub(crate) fn qos_table(doc: &RunDocument) -> Option<TableView> {
    let curves = qos_curves(doc);
    if curves.is_empty() {
        return None;
    }
    let rules = doc
        .runs
        .iter()
        .find(|r| r.workload == "app.web")
        .and_then(|r| r.labels.get("qos_rules"))
        .map(|r| r.split(" | ").next().unwrap_or(r).to_string())
        .unwrap_or_default();
    let rows = curves
        .iter()
        .map(|(b, points)| {
            let best = doc.run(b, "app.web").map(|r| score_text(Some(r)));
            vec![
                b.clone(),
                best.unwrap_or_default(),
                points
                    .iter()
                    .map(|(n, pct)| format!("{n}: {pct:.1}%"))
                    .collect::<Vec<_>>()
                    .join(", "),
            ]
        })
        .collect();
    Some(TableView {
        title: format!(
            "QoS curve of app.web (share of requests good at each load the search tried; {rules})"
        ),
        header: strings(&["Backend", "Max sessions", "Sessions: % good"]),
        right: vec![false, true, false],
        rows,
    })
}

fn strings(s: &[&str]) -> Vec<String> {
    s.iter().map(|s| s.to_string()).collect()
}
