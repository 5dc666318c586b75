//! Comparing two result documents honestly (`hvbench compare A.json B.json`).
//!
//! Differences in the host, the versions, the settings and the backends' configurations come
//! first: a new kernel, another CPU governor or a different QEMU explains most changes between two
//! runs, and a reader should see that before any number. Then, per workload and backend measured
//! in both, the medians, the relative change, and the p-value of a permutation test of the
//! medians ([`hvbench_stats::permutation_test`], with the same resample count and seed as every
//! interval, so a comparison is reproducible). A change gets a verdict (`faster`, `slower`) only
//! when `p < 0.01` *and* it exceeds the noise threshold; anything else is "no significant change".
//!
//! Two runs are minutes apart, and a shared host's own speed moves in between: repetitions of one
//! run do not see that. So a verdict must also beat the host's movement ([`crate::drift`]): when
//! both documents carry the reference probe, a change no larger than the widest movement of the
//! probe between the two runs is "within host drift"; when earlier runs of the same
//! configuration are given (`--history`), a change must also be significant against the spread
//! of the runs' medians ([`hvbench_stats::between_run_test`]). The test is documented in
//! docs/results.md; `hvbench ab` (one run, both configurations interleaved) avoids the problem.
//!
//! Everything here is pure: [`compare`] builds a [`Comparison`] from two documents and
//! [`Comparison::render`] prints it; the command line only reads the files.

use std::fmt::Write;

use hvbench_stats::{
    between_run_test, permutation_test, BetweenRunTest, Samples, BOOTSTRAP_RESAMPLES, SEED,
};
use serde_json::Value;

use super::view::{self, brief};
use super::{fmt_sig, Table};
use crate::drift::DriftBand;
use crate::results::{GuestRecord, RunDocument, RunRecord};

/// A change is significant only below this p-value.
pub const SIGNIFICANCE: f64 = 0.01;

/// Default noise threshold: changes smaller than 5% are never reported, however small `p` is.
pub const DEFAULT_NOISE: f64 = 0.05;

/// What changed between two runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// Run id, version and revision of the first document (the baseline of every change).
    pub a: String,
    /// The same for the second document.
    pub b: String,
    /// The noise threshold used, as a fraction (0.05 = 5%).
    pub noise: f64,
    /// Differences in versions, host, settings and backend configuration.
    pub differences: Vec<Difference>,
    /// One per (backend, workload) present in both documents, in the first document's order.
    pub changes: Vec<MetricChange>,
    /// `backend/workload` measured only in the first document.
    pub only_in_a: Vec<String>,
    /// `backend/workload` measured only in the second document.
    pub only_in_b: Vec<String>,
    /// How far the host moved between the two runs, from their reference probes.
    pub drift: Option<DriftBand>,
    /// Why there is no drift band, when there is none (an older document, another probe).
    pub drift_missing: Option<String>,
    /// Runs of the history (`--history`, A among them) that gave the between-run spread.
    pub history_runs: usize,
    /// Whether A and B are different runs (a document compared with itself is not).
    pub separate_runs: bool,
    /// The backends measured in both, for the `hvbench ab` line the comparison suggests.
    pub backends: Vec<String>,
}

/// One field whose value differs between the two documents.
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    /// Where the field is: `host.kernel`, `settings.reps`, `backends.qemu-tcg.guest.versions.qemu`.
    pub field: String,
    /// Its value in the first document (`(none)` when absent).
    pub a: String,
    /// Its value in the second document.
    pub b: String,
}

/// The change of one metric from the first document to the second.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricChange {
    pub backend: String,
    pub workload: String,
    pub unit: String,
    pub higher_is_better: bool,
    pub median_a: Option<f64>,
    pub median_b: Option<f64>,
    pub n_a: usize,
    pub n_b: usize,
    /// The outcome of the test, when both sides have at least two samples.
    pub test: Option<SampleChange>,
    /// The change against the spread of the history's medians (`--history`), when it has
    /// at least three runs of this workload.
    pub between_runs: Option<BetweenRunTest>,
    pub verdict: ChangeVerdict,
}

/// A permutation test of two sample sets and what it allows one to say.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleChange {
    /// Relative change of the median, `(median(b) - median(a)) / |median(a)|`.
    pub change: f64,
    /// Two-sided p-value of the permutation test.
    pub p_value: f64,
    /// Whether these sample counts can reach `p < SIGNIFICANCE` at all.
    pub can_be_significant: bool,
    pub verdict: ChangeVerdict,
}

/// What a comparison allows one to say about a metric.
#[derive(Debug, Clone, PartialEq)]
pub enum ChangeVerdict {
    /// Significant, beyond the noise threshold, in the good direction.
    Faster,
    /// Significant, beyond the noise threshold, in the bad direction.
    Slower,
    /// Not significant or within the noise threshold.
    NoSignificantChange,
    /// One side has no samples to test (skipped, DNR, failed, fewer than two).
    NotComparable { reason: String },
    /// Significant against the repetitions of the two runs, but no larger than the host's
    /// own movement between them: never reported as faster or slower.
    WithinHostDrift { evidence: DriftEvidence },
}

/// What showed that a change is no larger than the host's own movement.
#[derive(Debug, Clone, PartialEq)]
pub enum DriftEvidence {
    /// The reference probe moved by up to `band` (a fraction) around the workload.
    Probe { band: f64 },
    /// Not significant against the spread of the probe over both runs (`spread`: standard
    /// deviation of its log levels).
    ProbeSpread { spread: f64, p_value: f64 },
    /// Not significant against the spread of the medians of `runs` runs of this configuration.
    History { runs: usize, p_value: f64 },
}

impl std::fmt::Display for ChangeVerdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChangeVerdict::Faster => f.write_str("faster"),
            ChangeVerdict::Slower => f.write_str("slower"),
            ChangeVerdict::NoSignificantChange => f.write_str("no significant change"),
            ChangeVerdict::NotComparable { reason } => write!(f, "not comparable: {reason}"),
            ChangeVerdict::WithinHostDrift {
                evidence: DriftEvidence::Probe { band },
            } => write!(f, "within host drift (±{:.1}%)", band * 100.0),
            ChangeVerdict::WithinHostDrift {
                evidence: DriftEvidence::ProbeSpread { spread, p_value },
            } => write!(
                f,
                "within host drift (host sd {:.1}%, p {p_value:.3})",
                spread * 100.0
            ),
            ChangeVerdict::WithinHostDrift {
                evidence: DriftEvidence::History { runs, p_value },
            } => write!(f, "within host drift (between {runs} runs, p {p_value:.3})"),
        }
    }
}

/// Compares two documents; `noise` is a fraction (0.05 = 5%).
pub fn compare(a: &RunDocument, b: &RunDocument, noise: f64) -> Comparison {
    compare_with_history(a, b, noise, &[])
}

/// Compares two documents, with earlier runs of A's configuration on the same host
/// (`history`, A/A runs) whose medians give each workload's between-run spread.
pub fn compare_with_history(
    a: &RunDocument,
    b: &RunDocument,
    noise: f64,
    history: &[RunDocument],
) -> Comparison {
    let (drift, drift_missing) = match (&a.host_drift, &b.host_drift) {
        (Some(x), Some(y)) => match DriftBand::between(x, y) {
            Some(band) => (Some(band), None),
            None => (
                None,
                Some(format!(
                    "the runs' reference probes differ ({} and {}) or are empty",
                    x.probe, y.probe
                )),
            ),
        },
        (x, y) => {
            let who = match (x.is_none(), y.is_none()) {
                (true, true) => "neither A nor B has",
                (true, false) => "A has",
                _ => "B has",
            };
            (
                None,
                Some(format!(
                    "{who} a reference probe: made before hvbench measured the host's drift, \
                     or not an efficiency run"
                )),
            )
        }
    };
    let same_host: Vec<&RunDocument> = history
        .iter()
        .filter(|h| h.host.hostname == a.host.hostname && h.run_id != b.run_id)
        .collect();
    let mut changes = Vec::new();
    let mut only_in_a = Vec::new();
    for ra in &a.runs {
        match b.run(&ra.backend, &ra.workload) {
            Some(rb) => {
                let mut medians: Vec<f64> =
                    view::measured(ra).map(|s| s.median).into_iter().collect();
                for h in same_host.iter().filter(|h| h.run_id != a.run_id) {
                    if let Some(s) = h.run(&ra.backend, &ra.workload).and_then(view::measured) {
                        medians.push(s.median);
                    }
                }
                let around = match (&a.host_drift, &b.host_drift) {
                    (Some(x), Some(y)) => DriftBand::around(x, y, &ra.workload),
                    _ => None,
                };
                changes.push(temper(
                    metric_change(ra, rb, noise),
                    around.as_ref(),
                    drift.as_ref(),
                    &medians,
                ))
            }
            None => only_in_a.push(format!("{}/{}", ra.backend, ra.workload)),
        }
    }
    let only_in_b = b
        .runs
        .iter()
        .filter(|rb| a.run(&rb.backend, &rb.workload).is_none())
        .map(|rb| format!("{}/{}", rb.backend, rb.workload))
        .collect();
    let mut backends: Vec<String> = Vec::new();
    for c in &changes {
        if !backends.contains(&c.backend) {
            backends.push(c.backend.clone());
        }
    }
    let history_runs = changes
        .iter()
        .filter_map(|c| c.between_runs.map(|t| t.runs))
        .max()
        .unwrap_or(0);
    Comparison {
        a: describe(a),
        b: describe(b),
        noise,
        differences: differences(a, b),
        changes,
        only_in_a,
        only_in_b,
        drift,
        drift_missing,
        history_runs,
        separate_runs: a.run_id != b.run_id,
        backends,
    }
}

/// A faster or slower verdict stands only when the change also exceeds the host's own
/// movement: the probe's movement around the workload (`around`), the spread of the probe over
/// both runs (`whole`, a t test), and (with at least three runs of history) the spread of the
/// runs' medians.
fn temper(
    mut c: MetricChange,
    around: Option<&DriftBand>,
    whole: Option<&DriftBand>,
    run_medians: &[f64],
) -> MetricChange {
    if let (Some(ma), Some(mb)) = (c.median_a, c.median_b) {
        c.between_runs = between_run_test(run_medians, ma, mb);
    }
    if !matches!(c.verdict, ChangeVerdict::Faster | ChangeVerdict::Slower) {
        return c;
    }
    let Some(change) = c.test.as_ref().map(|t| t.change) else {
        return c;
    };
    if let Some(band) = around.filter(|d| d.contains(change)) {
        c.verdict = ChangeVerdict::WithinHostDrift {
            evidence: DriftEvidence::Probe { band: band.band },
        };
    } else if let Some(w) = whole.filter(|w| w.spread_p_value(change) >= SIGNIFICANCE) {
        c.verdict = ChangeVerdict::WithinHostDrift {
            evidence: DriftEvidence::ProbeSpread {
                spread: w.spread,
                p_value: w.spread_p_value(change),
            },
        };
    } else if let Some(t) = c.between_runs.filter(|t| t.p_value >= SIGNIFICANCE) {
        c.verdict = ChangeVerdict::WithinHostDrift {
            evidence: DriftEvidence::History {
                runs: t.runs,
                p_value: t.p_value,
            },
        };
    }
    c
}

fn describe(d: &RunDocument) -> String {
    format!(
        "{} (hvbench {}, {})",
        d.run_id, d.hvbench_version, d.git_revision
    )
}

fn metric_change(a: &RunRecord, b: &RunRecord, noise: f64) -> MetricChange {
    let median = |r: &RunRecord| view::measured(r).map(|s| s.median);
    let side = |r: &RunRecord| -> Result<Samples, String> {
        if view::measured(r).is_none() {
            return Err(view::status_label(r).to_string());
        }
        Samples::new(r.samples.clone()).map_err(|e| e.to_string())
    };
    let test = if a.unit != b.unit {
        Err(format!("units differ ({} and {})", a.unit, b.unit))
    } else {
        match (side(a), side(b)) {
            (Ok(sa), Ok(sb)) => Ok(compare_samples(&sa, &sb, a.higher_is_better, noise)),
            (Err(e), _) => Err(format!("first run {e}")),
            (_, Err(e)) => Err(format!("second run {e}")),
        }
    };
    let (test, verdict) = match test {
        Ok(t) => {
            let verdict = t.verdict.clone();
            (Some(t), verdict)
        }
        Err(reason) => (None, ChangeVerdict::NotComparable { reason }),
    };
    MetricChange {
        backend: a.backend.clone(),
        workload: a.workload.clone(),
        unit: a.unit.clone(),
        higher_is_better: a.higher_is_better,
        median_a: median(a),
        median_b: median(b),
        n_a: a.samples.len(),
        n_b: b.samples.len(),
        test,
        between_runs: None,
        verdict,
    }
}

/// Tests `b` against `a` and gives a verdict only when `p < SIGNIFICANCE` and the relative
/// change of the median exceeds `noise` (a fraction); the direction of goodness decides between
/// faster and slower.
pub fn compare_samples(
    a: &Samples,
    b: &Samples,
    higher_is_better: bool,
    noise: f64,
) -> SampleChange {
    let t = permutation_test(a, b, BOOTSTRAP_RESAMPLES, SEED);
    let verdict = if t.p_value < SIGNIFICANCE && t.observed.abs() > noise {
        if (t.observed > 0.0) == higher_is_better {
            ChangeVerdict::Faster
        } else {
            ChangeVerdict::Slower
        }
    } else {
        ChangeVerdict::NoSignificantChange
    };
    SampleChange {
        change: t.observed,
        p_value: t.p_value,
        can_be_significant: smallest_p_value(a.len(), b.len()) < SIGNIFICANCE,
        verdict,
    }
}

/// The smallest p-value a permutation test of groups of these sizes can give: the observed split
/// (and its mirror image when the groups are of equal size) among all `C(n_a + n_b, n_a)` splits.
fn smallest_p_value(n_a: usize, n_b: usize) -> f64 {
    let k = n_a.min(n_b);
    let mut splits = 1.0f64;
    for i in 0..k {
        splits = splits * (n_a + n_b - i) as f64 / (i + 1) as f64;
    }
    let extreme = if n_a == n_b { 2.0 } else { 1.0 };
    extreme / splits
}

/// Fields that differ between the documents: versions, host, settings, then backends.
pub fn differences(a: &RunDocument, b: &RunDocument) -> Vec<Difference> {
    let mut out = Vec::new();
    let mut field = |name: &str, x: Value, y: Value| diff_values(name, &x, &y, &mut out);
    field(
        "hvbench_version",
        a.hvbench_version.clone().into(),
        b.hvbench_version.clone().into(),
    );
    field(
        "git_revision",
        a.git_revision.clone().into(),
        b.git_revision.clone().into(),
    );
    field(
        "agent.sha256",
        a.agent.sha256.clone().into(),
        b.agent.sha256.clone().into(),
    );
    field(
        "agent.version",
        a.agent.version.clone().into(),
        b.agent.version.clone().into(),
    );
    field(
        "scenario",
        a.scenario.clone().into(),
        b.scenario.clone().into(),
    );
    field("host", json(&a.host), json(&b.host));
    field("settings", json(&a.settings), json(&b.settings));
    let mut names: Vec<&str> = a.backends.iter().map(|x| x.name.as_str()).collect();
    for x in &b.backends {
        if !names.contains(&x.name.as_str()) {
            names.push(&x.name);
        }
    }
    for name in names {
        let prefix = format!("backends.{name}");
        let ba = a.backends.iter().find(|x| x.name == name);
        let bb = b.backends.iter().find(|x| x.name == name);
        let (ba, bb) = match (ba, bb) {
            (Some(x), Some(y)) => (x, y),
            (x, y) => {
                let show = |r: Option<&crate::results::BackendRecord>| {
                    r.map(|_| "considered").unwrap_or("(not in this run)")
                };
                out.push(Difference {
                    field: prefix,
                    a: show(x).into(),
                    b: show(y).into(),
                });
                continue;
            }
        };
        diff_values(
            &format!("{prefix}.technique"),
            &ba.technique.clone().into(),
            &bb.technique.clone().into(),
            &mut out,
        );
        diff_values(
            &format!("{prefix}.availability"),
            &json(&ba.availability),
            &json(&bb.availability),
            &mut out,
        );
        diff_values(
            &format!("{prefix}.launches"),
            &ba.guests.len().into(),
            &bb.guests.len().into(),
            &mut out,
        );
        let (ga, gb) = (representative(&ba.guests), representative(&bb.guests));
        diff_values(
            &format!("{prefix}.guest"),
            &ga.map(guest_config).unwrap_or(Value::Null),
            &gb.map(guest_config).unwrap_or(Value::Null),
            &mut out,
        );
    }
    out
}

/// The guest whose configuration stands for the backend: the first that said hello, else the
/// first launched.
fn representative(guests: &[GuestRecord]) -> Option<&GuestRecord> {
    guests
        .iter()
        .find(|g| g.boot_s.is_some())
        .or_else(|| guests.first())
}

/// What shapes a guest's numbers: its configuration and what it saw of itself, without the
/// measurements (boot time) and with per-run work directories masked.
fn guest_config(g: &GuestRecord) -> Value {
    let mut config = json(&g.config);
    if let Some(Value::Array(args)) = config.get_mut("command_line") {
        for arg in args.iter_mut() {
            if let Value::String(s) = arg {
                *s = mask_work_dirs(s);
            }
        }
    }
    serde_json::json!({
        "config": config,
        "kernel": g.kernel,
        "cpus": g.cpus,
        "mem_total_kib": g.mem_total_kib,
        "clocksource": g.clocksource,
        "cpu_accounting": g.cpu_accounting,
    })
}

/// Replaces the process id and counter of hvbench work directories (`hvbench-<pid>-<n>-`),
/// which differ in every run and explain nothing.
fn mask_work_dirs(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find("hvbench-") {
        out.push_str(&rest[..at + "hvbench-".len()]);
        rest = &rest[at + "hvbench-".len()..];
        let digits = |t: &str| t.bytes().take_while(u8::is_ascii_digit).count();
        let pid = digits(rest);
        if pid > 0 && rest[pid..].starts_with('-') {
            let n = digits(&rest[pid + 1..]);
            if n > 0 && rest[pid + 1 + n..].starts_with('-') {
                out.push_str("<pid>-<n>");
                rest = &rest[pid + 1 + n..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// Walks two JSON values together and records the leaves that differ.
fn diff_values(field: &str, a: &Value, b: &Value, out: &mut Vec<Difference>) {
    if a == b {
        return;
    }
    if let (Value::Object(x), Value::Object(y)) = (a, b) {
        let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
        keys.sort();
        keys.dedup();
        for k in keys {
            let null = Value::Null;
            diff_values(
                &format!("{field}.{k}"),
                x.get(k).unwrap_or(&null),
                y.get(k).unwrap_or(&null),
                out,
            );
        }
        return;
    }
    out.push(Difference {
        field: field.to_string(),
        a: show(a),
        b: show(b),
    });
}

fn show(v: &Value) -> String {
    match v {
        Value::Null => "(none)".into(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::String(s) if s.is_empty() || s.contains(char::is_whitespace) => {
                    format!("'{s}'")
                }
                other => show(other),
            })
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string(),
    }
}

/// `+4.1%`.
fn fmt_change(c: f64) -> String {
    format!("{:+.1}%", c * 100.0)
}

impl Comparison {
    pub fn faster(&self) -> usize {
        self.count(&ChangeVerdict::Faster)
    }

    pub fn slower(&self) -> usize {
        self.count(&ChangeVerdict::Slower)
    }

    fn count(&self, v: &ChangeVerdict) -> usize {
        self.changes.iter().filter(|c| &c.verdict == v).count()
    }

    /// The comparison as text: differences first, then the changes, then what is in one only.
    pub fn render(&self) -> String {
        let mut out = format!("A: {}\nB: {}\n\n", self.a, self.b);
        if self.differences.is_empty() {
            out.push_str(
                "No differences in versions, host, settings or backend configuration.\n\n",
            );
        } else {
            out.push_str("Differences between the runs (they explain most changes):\n");
            for d in &self.differences {
                if d.a.chars().count() + d.b.chars().count() <= 72
                    && !d.a.contains('\n')
                    && !d.b.contains('\n')
                {
                    let _ = writeln!(out, "  {}: {} → {}", d.field, d.a, d.b);
                } else {
                    let _ = writeln!(out, "  {}:", d.field);
                    let _ = writeln!(out, "    A: {}", d.a.replace('\n', "\n       "));
                    let _ = writeln!(out, "    B: {}", d.b.replace('\n', "\n       "));
                }
            }
            out.push('\n');
        }
        out.push_str(&self.render_drift());
        let mut t = Table::new(
            &[
                "Backend", "Workload", "Unit", "Median A", "Median B", "Change", "p", "Verdict",
            ],
            &[false, false, false, true, true, true, true, false],
        );
        let mut underpowered = Vec::new();
        for c in &self.changes {
            let median = |m: Option<f64>| m.map(fmt_sig).unwrap_or_else(|| "-".into());
            let (change, p) = match &c.test {
                Some(s) => (fmt_change(s.change), format!("{:.4}", s.p_value)),
                None => (String::new(), String::new()),
            };
            if c.test.as_ref().is_some_and(|s| !s.can_be_significant) {
                underpowered.push(format!(
                    "{}/{} ({} and {} samples)",
                    c.backend, c.workload, c.n_a, c.n_b
                ));
            }
            t.row(vec![
                c.backend.clone(),
                c.workload.clone(),
                format!("{} {}", c.unit, if c.higher_is_better { "↑" } else { "↓" }),
                median(c.median_a),
                median(c.median_b),
                change,
                p,
                brief(&c.verdict.to_string(), 80),
            ]);
        }
        let _ = writeln!(
            out,
            "Changes from A to B (permutation test of the medians, {BOOTSTRAP_RESAMPLES} resamples; \
             a verdict needs p < {SIGNIFICANCE} and a change beyond {:.1}%):",
            self.noise * 100.0
        );
        if t.is_empty() {
            out.push_str("  no workload was measured on the same backend in both runs\n");
        } else {
            out.push_str(&t.render());
        }
        out.push('\n');
        for (label, list) in [
            ("Only in A", &self.only_in_a),
            ("Only in B", &self.only_in_b),
        ] {
            if !list.is_empty() {
                let _ = writeln!(out, "{label}: {}", list.join(", "));
            }
        }
        if !underpowered.is_empty() {
            let _ = writeln!(
                out,
                "Too few samples for any change to reach p < {SIGNIFICANCE} (use more --reps): {}",
                underpowered.join(", ")
            );
        }
        let _ = writeln!(
            out,
            "Summary: {} faster, {} slower, {} within host drift, {} without significant change, \
             {} not comparable.",
            self.faster(),
            self.slower(),
            self.within_drift(),
            self.count(&ChangeVerdict::NoSignificantChange),
            self.changes
                .iter()
                .filter(|c| matches!(c.verdict, ChangeVerdict::NotComparable { .. }))
                .count()
        );
        if self.separate_runs {
            let backend = self
                .backends
                .iter()
                .find(|b| b.as_str() != "native")
                .map(String::as_str)
                .unwrap_or("<backend>");
            let _ = writeln!(
                out,
                "A and B are separate runs, and the host's speed moves between runs. To evaluate \
                 a change, measure both configurations in one run, interleaved repetition by \
                 repetition: hvbench ab --backend {backend} --a '<options of A>' --b '<options \
                 of B>'"
            );
        }
        out
    }

    /// Changes significant within the runs but no larger than the host's own movement.
    pub fn within_drift(&self) -> usize {
        self.changes
            .iter()
            .filter(|c| matches!(c.verdict, ChangeVerdict::WithinHostDrift { .. }))
            .count()
    }

    /// The host's movement between and within the two runs.
    fn render_drift(&self) -> String {
        let mut out = String::new();
        match &self.drift {
            None => {
                let _ = writeln!(
                    out,
                    "Host drift: not measured ({}); verdicts cannot tell the host's own movement \
                     from a change.\n",
                    self.drift_missing.as_deref().unwrap_or("no probe")
                );
            }
            Some(d) => {
                let _ = writeln!(
                    out,
                    "Host drift (the reference probe, {}, at the start, middle and end of each \
                     run; time per pass, lower is faster):",
                    crate::drift::PROBE
                );
                for (name, shift) in &d.shift {
                    let within = |m: &std::collections::BTreeMap<String, f64>| {
                        m.get(name)
                            .map(|w| format!("{:.1}%", w * 100.0))
                            .unwrap_or_else(|| "-".into())
                    };
                    let _ = writeln!(
                        out,
                        "  {name}: {} from A to B; moved {} within A, {} within B",
                        fmt_change(*shift),
                        within(&d.within_a),
                        within(&d.within_b)
                    );
                }
                let _ = writeln!(
                    out,
                    "  Over the whole runs the probe moved up to ±{:.1}% (standard deviation of \
                     its log speed over {} points: {:.1}%). A change is within host drift when \
                     it is no larger than the probe's movement around the workload (the points \
                     right before and after it, in both runs), or when it is not significant \
                     (p >= {SIGNIFICANCE}) against two random states of a host with that \
                     spread.\n",
                    d.band * 100.0,
                    d.points,
                    d.spread * 100.0
                );
            }
        }
        if self.history_runs >= 3 {
            let _ = writeln!(
                out,
                "Between-run spread: from the medians of up to {} runs of A's configuration \
                 (--history); a change must also be significant against it.\n",
                self.history_runs
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(v: &[f64]) -> Samples {
        Samples::new(v.to_vec()).unwrap()
    }

    #[test]
    fn the_drift_warning_uses_the_default_noise_threshold() {
        assert_eq!(crate::drift::WARN_MOVEMENT, DEFAULT_NOISE);
    }

    const A: [f64; 8] = [100.0, 101.0, 99.0, 100.5, 99.5, 100.2, 100.8, 99.8];

    #[test]
    fn a_clear_rise_in_throughput_is_faster() {
        let b: Vec<f64> = A.iter().map(|v| v * 1.2).collect();
        let c = compare_samples(&samples(&A), &samples(&b), true, DEFAULT_NOISE);
        assert!(c.p_value < SIGNIFICANCE, "{c:?}");
        assert!((c.change - 0.2).abs() < 1e-9, "{c:?}");
        assert_eq!(c.verdict, ChangeVerdict::Faster);
    }

    #[test]
    fn a_clear_rise_in_time_per_operation_is_slower() {
        let b: Vec<f64> = A.iter().map(|v| v * 1.2).collect();
        let c = compare_samples(&samples(&A), &samples(&b), false, DEFAULT_NOISE);
        assert_eq!(c.verdict, ChangeVerdict::Slower);
        let c = compare_samples(&samples(&b), &samples(&A), false, DEFAULT_NOISE);
        assert_eq!(c.verdict, ChangeVerdict::Faster);
    }

    #[test]
    fn a_significant_change_within_the_noise_threshold_has_no_verdict() {
        let b: Vec<f64> = A.iter().map(|v| v * 1.03).collect();
        let c = compare_samples(&samples(&A), &samples(&b), true, DEFAULT_NOISE);
        assert!(c.p_value < SIGNIFICANCE, "{c:?}");
        assert_eq!(c.verdict, ChangeVerdict::NoSignificantChange);
        let c = compare_samples(&samples(&A), &samples(&b), true, 0.01);
        assert_eq!(c.verdict, ChangeVerdict::Faster);
    }

    #[test]
    fn a_large_change_in_noisy_overlapping_samples_has_no_verdict() {
        let a = [100.0, 150.0, 60.0, 130.0, 80.0];
        let b = [120.0, 170.0, 70.0, 140.0, 95.0];
        let c = compare_samples(&samples(&a), &samples(&b), true, DEFAULT_NOISE);
        assert!(c.change > DEFAULT_NOISE);
        assert!(c.p_value >= SIGNIFICANCE, "{c:?}");
        assert_eq!(c.verdict, ChangeVerdict::NoSignificantChange);
    }

    #[test]
    fn three_samples_each_can_never_be_significant() {
        let c = compare_samples(
            &samples(&[1.0, 1.1, 1.05]),
            &samples(&[10.0, 11.0, 10.5]),
            true,
            DEFAULT_NOISE,
        );
        assert!(!c.can_be_significant);
        assert_eq!(c.verdict, ChangeVerdict::NoSignificantChange);
        assert!((smallest_p_value(5, 5) - 2.0 / 252.0).abs() < 1e-12);
        assert!(smallest_p_value(5, 5) < SIGNIFICANCE);
    }

    #[test]
    fn work_directories_are_masked_and_nothing_else() {
        assert_eq!(
            mask_work_dirs("path=/tmp/hvbench-9468-1-run/qemu-tcg-0/agent.sock,server=on"),
            "path=/tmp/hvbench-<pid>-<n>-run/qemu-tcg-0/agent.sock,server=on"
        );
        assert_eq!(mask_work_dirs("hvbench-agent"), "hvbench-agent");
        assert_eq!(mask_work_dirs("/x/hvbench-12-x"), "/x/hvbench-12-x");
    }

    #[test]
    fn nested_fields_are_reported_by_path() {
        let mut out = Vec::new();
        diff_values(
            "host",
            &serde_json::json!({"kernel": "6.1", "mitigations": {"mds": "x", "l1tf": "y"}}),
            &serde_json::json!({"kernel": "6.1", "mitigations": {"mds": "z"}}),
            &mut out,
        );
        assert_eq!(
            out,
            vec![
                Difference {
                    field: "host.mitigations.l1tf".into(),
                    a: "y".into(),
                    b: "(none)".into()
                },
                Difference {
                    field: "host.mitigations.mds".into(),
                    a: "x".into(),
                    b: "z".into()
                },
            ]
        );
    }
}
