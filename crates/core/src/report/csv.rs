//! The CSV exporter of the [table model](super::model): one row per raw sample, for
//! spreadsheets and notebooks (`hvbench report RUN.json --csv`). The rows are built as a
//! [`Table`] and written by [`table`], which writes any table of the model as CSV (the header is
//! its column names; a cell's text, quoted as RFC 4180 says); `--csv qos` writes app.web's QoS
//! curve ([`qos_curve`]).
//!
//! Columns: `backend, workload, unit, higher_is_better, rep, value, guest_elapsed_s,
//! host_elapsed_s, host_cpu_s, clock_flag`. `rep` is the sample's 0-based index in measuring
//! order (the index `summary.outliers` uses); numbers are written with every digit the document
//! holds (shortest round-trip form); a missing value is an empty cell. Runs that were skipped or
//! did not return have no samples and so no rows. Fields are quoted as RFC 4180 says; lines end
//! with a plain LF, which every spreadsheet reads and which line-based tools (`cut`, `awk`) want.
//!
//! A lifecycle, scalability or isolation document (one with `scenario_data`) has no runs; its
//! CSV has other columns ([`SCENARIO_COLUMNS`]), one row per measurement of each guest:
//! `scenario, backend, step, guest, role, metric, unit, rep, value, status, reason`.
//!
//! - scalability: `step` is the guest count; one row per repetition of each guest (`metric` the
//!   workload, `value` its raw metric value).
//! - isolation: `step` is `baseline` (the first baseline) or the stressor; `role` is `baseline`
//!   (the baseline measured right before the stressor), `stressed` or `normal`; one row per
//!   repetition of each steady workload of each guest. A stressor that could not run is one row
//!   with status `skipped` (or `interrupted`) and its reason.
//! - lifecycle: `step` is the vCPU count; per boot, `boot_s` and `guest_uptime_s` (`rep` is the
//!   boot's index); per idle window, `idle_cpu_pct_of_core` (`rep` is the one-second slice);
//!   `host_rss_kib`, `host_pss_kib`, `guest_used_kib`, `overhead_kib`, `guest_ram_backed_kib`,
//!   `backed_minus_used_kib`, `vmm_own_kib`, `vmm_own_rss_kib` of the idle guest, and `vmm_own_part_kib` per part
//!   of the VMM's own memory (the part in `role`).
//!
//! `status` is `ok`, `skipped`, `interrupted`, or a failure's word: `DNR` (the guest did not
//! return), `did not start`, `refused`, `bad output`, `failed`; `reason` then says why. A guest
//! without a result has one row per metric with its status, its reason, and an empty `value`:
//! never a zero.

use super::model::Table;
use super::view::{self, number};
use crate::results::{
    GuestResult, IsolationData, IsolationGuest, LifecycleData, RunDocument, ScalabilityData,
    ScenarioData, StressStatus,
};

/// The header row's column names, in order.
pub const COLUMNS: [&str; 10] = [
    "backend",
    "workload",
    "unit",
    "higher_is_better",
    "rep",
    "value",
    "guest_elapsed_s",
    "host_elapsed_s",
    "host_cpu_s",
    "clock_flag",
];

/// The header row of a scenario document's CSV, in order.
pub const SCENARIO_COLUMNS: [&str; 11] = [
    "scenario", "backend", "step", "guest", "role", "metric", "unit", "rep", "value", "status",
    "reason",
];

/// Renders every sample of a document as CSV, header first; for a lifecycle, scalability or
/// isolation document, every measurement of its guests ([`SCENARIO_COLUMNS`]).
pub fn render(doc: &RunDocument) -> String {
    if let Some(data) = &doc.scenario_data {
        return table(&scenario(data));
    }
    let mut t = Table::plain("samples", &COLUMNS);
    for r in &doc.runs {
        for (rep, value) in r.samples.iter().enumerate() {
            let detail = r.sample_details.get(rep);
            t.push_text(
                [
                    r.backend.clone(),
                    r.workload.clone(),
                    r.unit.clone(),
                    r.higher_is_better.to_string(),
                    rep.to_string(),
                    number(*value),
                    detail
                        .map(|d| number(d.guest_elapsed_s))
                        .unwrap_or_default(),
                    detail.map(|d| number(d.host_elapsed_s)).unwrap_or_default(),
                    detail
                        .and_then(|d| d.host_cpu_s)
                        .map(number)
                        .unwrap_or_default(),
                    detail.map(|d| d.clock_flag.to_string()).unwrap_or_default(),
                ]
                .to_vec(),
            );
        }
    }
    table(&t)
}

/// app.web's QoS curve as CSV: one row per load its searches tried, in each repetition on each
/// backend (`backend, rep, sessions, good_pct, req_per_s, p99_ms, chosen`; see
/// `view::qos_points_table`). `None` when the document has no app.web run with a curve.
pub fn qos_curve(doc: &RunDocument) -> Option<String> {
    view::qos_points_table(doc).map(|t| table(&t))
}

/// The host probe's passes as CSV: one row per timed pass of each loop at each point of the
/// run (`at, before, offset_s, loop, pass, ms`; see [`crate::drift`]). `None` when the document
/// has no probe (written before it existed, or a scenario document).
pub fn host_drift(doc: &RunDocument) -> Option<String> {
    doc.host_drift
        .as_ref()
        .filter(|d| !d.points.is_empty())
        .map(|d| table(&super::drift::passes_table(d)))
}

/// Any table of the model as CSV: the column names, then each row's cell texts.
pub fn table(t: &Table) -> String {
    let mut out = String::new();
    push_row(&mut out, t.header().into_iter().map(str::to_string));
    for row in &t.rows {
        push_row(&mut out, row.iter().map(|c| c.text.clone()));
    }
    out
}

/// One row of a scenario's CSV.
#[derive(Default)]
struct Row<'a> {
    step: String,
    guest: &'a str,
    role: &'a str,
    metric: &'a str,
    unit: &'a str,
    rep: Option<usize>,
    value: Option<f64>,
    status: &'a str,
    reason: Option<String>,
}

fn scenario(data: &ScenarioData) -> Table {
    let mut t = Table::plain("measurements", &SCENARIO_COLUMNS);
    let (kind, backend) = match data {
        ScenarioData::Lifecycle(d) => ("lifecycle", d.backend.as_str()),
        ScenarioData::Scalability(d) => ("scalability", d.backend.as_str()),
        ScenarioData::Isolation(d) => ("isolation", d.backend.as_str()),
    };
    let mut emit = |r: Row| {
        t.push_text(
            [
                kind.to_string(),
                backend.to_string(),
                r.step,
                r.guest.to_string(),
                r.role.to_string(),
                r.metric.to_string(),
                r.unit.to_string(),
                r.rep.map(|i| i.to_string()).unwrap_or_default(),
                r.value.map(number).unwrap_or_default(),
                r.status.to_string(),
                r.reason.unwrap_or_default(),
            ]
            .to_vec(),
        )
    };
    match data {
        ScenarioData::Scalability(d) => scalability_rows(d, &mut emit),
        ScenarioData::Isolation(d) => isolation_rows(d, &mut emit),
        ScenarioData::Lifecycle(d) => lifecycle_rows(d, &mut emit),
    }
    t
}

fn scalability_rows<'a>(d: &'a ScalabilityData, emit: &mut dyn FnMut(Row<'a>)) {
    for st in &d.steps {
        for g in &st.per_guest {
            let base = |g: &'a GuestResult| Row {
                step: st.guests.to_string(),
                guest: &g.label,
                metric: &d.workload,
                unit: &d.unit,
                status: g.outcome.csv_status(),
                reason: g.outcome.describe(),
                ..Row::default()
            };
            if !g.outcome.is_ok() || g.samples.is_empty() {
                emit(base(g));
                continue;
            }
            for (rep, v) in g.samples.iter().enumerate() {
                emit(Row {
                    rep: Some(rep),
                    value: Some(*v),
                    ..base(g)
                });
            }
        }
    }
}

fn isolation_rows<'a>(d: &'a IsolationData, emit: &mut dyn FnMut(Row<'a>)) {
    let phase = |step: &str, guests: &'a [IsolationGuest], emit: &mut dyn FnMut(Row<'a>)| {
        for g in guests {
            for w in &d.steady {
                let base = || Row {
                    step: step.to_string(),
                    guest: &g.label,
                    role: &g.role,
                    metric: &w.name,
                    unit: &w.unit,
                    status: g.outcome.csv_status(),
                    reason: g.outcome.describe(),
                    ..Row::default()
                };
                let samples = g.samples.get(&w.name).filter(|_| g.outcome.is_ok());
                match samples.filter(|s| !s.is_empty()) {
                    Some(samples) => {
                        for (rep, v) in samples.iter().enumerate() {
                            emit(Row {
                                rep: Some(rep),
                                value: Some(*v),
                                ..base()
                            });
                        }
                    }
                    None => emit(base()),
                }
            }
        }
    };
    phase("baseline", &d.baseline, emit);
    for r in &d.rows {
        if r.guests.is_empty() && r.baseline.is_empty() {
            emit(Row {
                step: r.stressor.clone(),
                status: match r.status {
                    StressStatus::Skipped => "skipped",
                    StressStatus::Interrupted => "interrupted",
                    StressStatus::Ran => "ok",
                },
                reason: r.reason.clone(),
                ..Row::default()
            });
            continue;
        }
        phase(&r.stressor, &r.baseline, emit);
        phase(&r.stressor, &r.guests, emit);
    }
}

fn lifecycle_rows<'a>(d: &'a LifecycleData, emit: &mut dyn FnMut(Row<'a>)) {
    for r in &d.rows {
        let step = r.vcpus.to_string();
        for (i, b) in r.boots.iter().enumerate() {
            let reason = b.failure.as_ref().map(|f| f.first_line().to_string());
            let state = b.failure.as_ref().map_or("ok", |f| f.kind.label());
            for (metric, value) in [("boot_s", b.boot_s), ("guest_uptime_s", b.guest_uptime_s)] {
                if value.is_none() && b.failure.is_none() {
                    continue;
                }
                emit(Row {
                    step: step.clone(),
                    guest: &b.label,
                    metric,
                    unit: "s",
                    rep: Some(i),
                    value,
                    status: state,
                    reason: reason.clone(),
                    ..Row::default()
                });
            }
        }
        // The idle and memory measurements are of the first guest that booted.
        let guest = r
            .boots
            .iter()
            .find(|b| b.boot_s.is_some())
            .map_or("", |b| b.label.as_str());
        if let Some(idle) = &r.idle {
            for (i, v) in idle.slices_pct.iter().enumerate() {
                emit(Row {
                    step: step.clone(),
                    guest,
                    metric: "idle_cpu_pct_of_core",
                    unit: "%",
                    rep: Some(i),
                    value: Some(*v),
                    status: "ok",
                    ..Row::default()
                });
            }
        }
        if let Some(m) = &r.memory {
            for (metric, value) in [
                ("host_rss_kib", Some(m.host_rss_kib as f64)),
                ("host_pss_kib", Some(m.host_pss_kib as f64)),
                ("guest_used_kib", m.guest_used_kib.map(|v| v as f64)),
                ("overhead_kib", m.overhead_kib.map(|v| v as f64)),
                (
                    "guest_ram_backed_kib",
                    m.guest_ram_backed_kib.map(|v| v as f64),
                ),
                (
                    "backed_minus_used_kib",
                    m.backed_minus_used_kib.map(|v| v as f64),
                ),
                ("vmm_own_kib", m.vmm_own_kib.map(|v| v as f64)),
                ("vmm_own_rss_kib", m.vmm_own_rss_kib.map(|v| v as f64)),
            ] {
                if let Some(v) = value {
                    emit(Row {
                        step: step.clone(),
                        guest,
                        metric,
                        unit: "KiB",
                        value: Some(v),
                        status: "ok",
                        ..Row::default()
                    });
                }
            }
            // The VMM's own memory by part: the part is the row's role.
            for p in &m.vmm_parts {
                emit(Row {
                    step: step.clone(),
                    guest,
                    role: &p.part,
                    metric: "vmm_own_part_kib",
                    unit: "KiB",
                    value: Some(p.pss_kib as f64),
                    status: "ok",
                    ..Row::default()
                });
            }
        }
    }
}

fn push_row(out: &mut String, fields: impl Iterator<Item = String>) {
    for (i, f) in fields.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&field(&f));
    }
    out.push('\n');
}

/// A field quoted when it holds a separator, a quote or a line break.
fn field(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\"")).into()
    } else {
        s.into()
    }
}

#[cfg(test)]
mod tests {
    use super::field;

    #[test]
    fn fields_with_separators_or_quotes_are_quoted() {
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("two\nlines"), "\"two\nlines\"");
    }
}
