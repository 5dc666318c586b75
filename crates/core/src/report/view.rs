//! The tables of an efficiency document (`hvbench run`), built once in the [table
//! model](super::model): every format exports these, so a number reads the same everywhere
//! (`fmt_sig`, `fmt_pct`, the same verdict words) and no format has a column the others lack.

use super::model::{Cell, Table};
use super::{fmt_pct, fmt_sig};
use crate::backends::Availability;
use crate::results::{BackendRecord, RunDocument, RunRecord, SampleDetail, Verdict};

/// The tables of an efficiency document in reading order, as the terminal and Markdown show
/// them: the backends, each backend's scores, each guest backend's efficiency, the efficiency
/// of every workload at a glance, the applications, app.web's QoS curve, an A/B run's changes
/// and the host's drift during the run.
pub(crate) fn document_tables(doc: &RunDocument) -> Vec<Table> {
    let mut tables = vec![backends_table(doc)];
    for b in &doc.backends {
        if b.availability.is_available() && doc.runs.iter().any(|r| r.backend == b.name) {
            tables.push(scores_table(doc, &b.name));
        }
    }
    let guests = guest_backends(doc);
    for b in &guests {
        tables.push(efficiency_table(doc, &b.name));
    }
    if !guests.is_empty() {
        tables.push(efficiency_matrix(doc, &guests));
    }
    tables.extend(applications_table(doc));
    tables.extend(qos_table(doc));
    tables.extend(doc.ab.as_ref().map(super::ab::table));
    tables.extend(doc.host_drift.as_ref().and_then(super::drift::table));
    tables
}

/// The notes below the tables: the document's warnings, then what an A/B run's test was.
pub(crate) fn notes(doc: &RunDocument) -> Vec<String> {
    let mut out = doc.warnings.clone();
    out.extend(doc.ab.as_ref().map(super::ab::notes).unwrap_or_default());
    out
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
            let which = if p.backends.is_empty() {
                String::new()
            } else {
                format!(" (only {}; the others unpinned)", p.backends.join(", "))
            };
            lines.push(format!(
                "Placement: {host}; pinned, {} on CPUs {}{which}",
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

/// `skipped`, `DNR`, `did not start`, ... for a run without a summary.
pub(crate) fn status_label(r: &RunRecord) -> &'static str {
    if r.outcome.is_ok() {
        "no summary"
    } else {
        r.outcome.label()
    }
}

/// The cell of a run without a summary: its status word, with why.
pub(crate) fn status_cell(r: &RunRecord) -> Cell {
    Cell {
        text: status_label(r).into(),
        ..Cell::outcome(&r.outcome)
    }
}

/// Why a run has no number (its failure with the kind's words), on one line.
pub(crate) fn reason_text(r: &RunRecord, max: usize) -> String {
    brief(&r.outcome.describe().unwrap_or_default(), max)
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
    r.summary.as_ref().filter(|_| r.outcome.is_ok())
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

pub(crate) fn backends_table(doc: &RunDocument) -> Table {
    let mut t = Table::titled(
        "Backends",
        &[
            ("Backend", false),
            ("Technique", false),
            ("Status", false),
            ("Boot", true),
            ("Detail", false),
        ],
    );
    for b in &doc.backends {
        let (status, detail) = availability_text(&b.availability);
        let failure = b.guests.iter().find_map(|g| g.failure.as_ref());
        let status = match failure {
            Some(_) => format!("{status}, guest failed"),
            None => status.to_string(),
        };
        let detail = match failure {
            Some(f) => Cell::bad(brief(&f.describe(), 160), f.describe()),
            None => Cell::from(detail),
        };
        t.push(vec![
            b.name.clone().into(),
            b.technique.clone().into(),
            status.into(),
            boot_text(b).into(),
            detail,
        ]);
    }
    t
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

pub(crate) fn scores_table(doc: &RunDocument, backend: &str) -> Table {
    let mut t = Table::titled(
        format!("Scores on {backend}"),
        &[
            ("Workload", false),
            ("Unit", false),
            ("Median", true),
            ("95% CI", true),
            ("CV", true),
            ("Runs", true),
            ("Host CPU", true),
            ("Notes", false),
        ],
    );
    for r in doc.runs.iter().filter(|r| r.backend == backend) {
        let runs = r.samples.len().to_string();
        t.push(match measured(r) {
            Some(s) => vec![
                r.workload.clone().into(),
                unit_with_direction(r).into(),
                fmt_sig(s.median).into(),
                format!("{} – {}", fmt_sig(s.ci_low), fmt_sig(s.ci_high)).into(),
                format!("{:.1}%", s.cv * 100.0).into(),
                runs.into(),
                host_cpu_text(r).into(),
                run_notes(r).into(),
            ],
            None => vec![
                r.workload.clone().into(),
                unit_with_direction(r).into(),
                status_cell(r),
                Cell::default(),
                Cell::default(),
                runs.into(),
                Cell::default(),
                reason_text(r, 160).into(),
            ],
        });
    }
    t
}

/// The median of a run, or why there is none.
fn score_cell(r: Option<&RunRecord>) -> Cell {
    match r {
        Some(r) => measured(r)
            .map(|s| Cell::from(fmt_sig(s.median)))
            .unwrap_or_else(|| status_cell(r)),
        None => "-".into(),
    }
}

/// Host CPU per operation in the guest against on the host (`4.2×`): the cost a near-native
/// throughput can hide.
fn cpu_cost_ratio(guest: &RunRecord, host: Option<&RunRecord>) -> String {
    let g = guest
        .host_cpu_per_op
        .as_ref()
        .filter(|_| guest.outcome.is_ok());
    let h = host
        .filter(|h| h.outcome.is_ok())
        .and_then(|h| h.host_cpu_per_op.as_ref());
    match (g, h) {
        (Some(g), Some(h)) if h.value > 0.0 && g.unit == h.unit => {
            format!("{}×", fmt_sig(g.value / h.value))
        }
        _ => "-".into(),
    }
}

pub(crate) fn efficiency_table(doc: &RunDocument, backend: &str) -> Table {
    let baseline = baseline(doc);
    let guest_score = format!("{backend} score");
    let host_score = format!("{baseline} score");
    let mut t = Table::titled(
        format!("Efficiency of {backend} (guest score / host score; for times host / guest)"),
        &[
            ("Workload", false),
            ("Efficiency", true),
            ("95% CI", true),
            ("Verdict", false),
            (guest_score.as_str(), true),
            (host_score.as_str(), true),
            ("Unit", false),
            ("Host CPU/op", true),
        ],
    );
    for r in doc.runs.iter().filter(|r| r.backend == backend) {
        let host = doc.run(baseline, &r.workload);
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
            None if r.outcome.is_ok() => ("-".into(), String::new(), "not comparable".into()),
            None => ("-".into(), String::new(), reason_text(r, 160)),
        };
        t.push(vec![
            r.workload.clone().into(),
            eff.into(),
            ci.into(),
            verdict.into(),
            score_cell(Some(r)),
            score_cell(host),
            r.unit.clone().into(),
            cpu_cost_ratio(r, host).into(),
        ]);
    }
    t
}

/// One table, one column per guest backend: the efficiency of every workload at a glance.
/// `≈` marks an interval that contains 100% (no measurable overhead); `DNR` a guest that did
/// not return, `did not start` one that never said hello; `skipped` a workload that cannot run
/// there.
pub(crate) fn efficiency_matrix(doc: &RunDocument, backends: &[&BackendRecord]) -> Table {
    let mut columns = vec![("Workload", false)];
    columns.extend(backends.iter().map(|b| (b.name.as_str(), true)));
    let mut t = Table::titled(
        "Virtualization efficiency (guest / host; ≈: 95% CI contains 100%, no measurable overhead)",
        &columns,
    );
    for w in workloads(doc) {
        let mut row: Vec<Cell> = vec![w.into()];
        for b in backends {
            let e = doc
                .efficiency
                .iter()
                .find(|e| e.backend == b.name && e.workload == w);
            row.push(match (e, doc.run(&b.name, w)) {
                (Some(e), _) => {
                    let same = e.verdict == Verdict::NoMeasurableOverhead;
                    format!("{}{}", fmt_pct(e.ratio), if same { " ≈" } else { "  " }).into()
                }
                (None, Some(r)) if !r.outcome.is_ok() => Cell::outcome(&r.outcome),
                (None, _) => "-".into(),
            });
        }
        t.push(row);
    }
    t
}

/// The applications of a run (workloads named `app.*`), one row per application and backend:
/// the score, the efficiency with its interval, and what explains the score (a database's
/// latency, a build's configure and make times, a file load's fsyncs). `None` without any.
pub(crate) fn applications_table(doc: &RunDocument) -> Option<Table> {
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
                reason_text(r, 100)
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
                Cell::from(*w),
                b.name.clone().into(),
                score_cell(Some(r)),
                unit_with_direction(r).into(),
                eff.into(),
                ci.into(),
                detail.into(),
            ]);
        }
    }
    let mut t = Table::titled(
        "Applications (median of each backend; efficiency against the host running the same \
         binaries on as many CPUs as a guest has vCPUs)",
        &[
            ("Application", false),
            ("Backend", false),
            ("Score", true),
            ("Unit", false),
            ("Efficiency", true),
            ("95% CI", true),
            ("What it is made of", false),
        ],
    );
    t.rows = rows;
    Some(t)
}

/// The loads of one app.web repetition's search, from its sample's `qos_curve` label
/// (`N:pct,N:pct`): (sessions, % of requests good), by sessions.
fn qos_points(d: &SampleDetail) -> Vec<(u32, f64)> {
    let Some(curve) = d.labels.get("qos_curve") else {
        return Vec::new();
    };
    curve
        .split(',')
        .filter_map(|p| {
            let mut parts = p.split(':');
            let n = parts.next()?.trim().parse::<u32>().ok()?;
            let pct = parts.next()?.trim().parse::<f64>().ok()?;
            Some((n, pct))
        })
        .collect()
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
        for (n, pct) in r.sample_details.iter().flat_map(qos_points) {
            let e = points.entry(n).or_insert((0.0, 0));
            e.0 += pct;
            e.1 += 1;
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

/// Every load app.web's searches tried, one row per load of each repetition on each backend:
/// `backend, rep, sessions, good_pct` and, for the load the repetition settled on (its value,
/// `chosen`), that load's `req_per_s` and `p99_ms` (the sample's extras; empty for the other
/// loads, whose throughput and latency the sample does not keep). `None` without `app.web`.
pub(crate) fn qos_points_table(doc: &RunDocument) -> Option<Table> {
    let mut t = Table::plain(
        "QoS curve of app.web",
        &[
            "backend",
            "rep",
            "sessions",
            "good_pct",
            "req_per_s",
            "p99_ms",
            "chosen",
        ],
    );
    for r in doc.runs.iter().filter(|r| r.workload == "app.web") {
        for (rep, d) in r.sample_details.iter().enumerate() {
            let value = r.samples.get(rep).copied();
            for (n, pct) in qos_points(d) {
                let chosen = value == Some(f64::from(n));
                let extra = |k: &str| {
                    d.extras
                        .get(k)
                        .filter(|_| chosen)
                        .map(|v| number(*v))
                        .unwrap_or_default()
                };
                t.push_text(vec![
                    r.backend.clone(),
                    rep.to_string(),
                    n.to_string(),
                    number(pct),
                    extra("req_per_s"),
                    extra("p99_ms"),
                    chosen.to_string(),
                ]);
            }
        }
    }
    (!t.is_empty()).then_some(t)
}

/// A number with every digit the document holds (shortest round-trip form); empty when not
/// finite.
pub(crate) fn number(v: f64) -> String {
    if v.is_finite() {
        v.to_string()
    } else {
        String::new()
    }
}

/// The QoS curves as a table: a row per backend, its most sessions meeting QoS and the loads
/// its searches tried. `None` without `app.web`.
pub(crate) fn qos_table(doc: &RunDocument) -> Option<Table> {
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
    let mut t = Table::titled(
        format!(
            "QoS curve of app.web (share of requests good at each load the search tried; {rules})"
        ),
        &[
            ("Backend", false),
            ("Max sessions", true),
            ("Sessions: % good", false),
        ],
    );
    for (b, points) in &curves {
        let best = doc.run(b, "app.web").map(|r| score_cell(Some(r)));
        t.push(vec![
            b.clone().into(),
            best.unwrap_or_default(),
            points
                .iter()
                .map(|(n, pct)| format!("{n}: {pct:.1}%"))
                .collect::<Vec<_>>()
                .join(", ")
                .into(),
        ]);
    }
    Some(t)
}
