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
//!
//! The verdict of each change is decided in `verdict`, the fields that differ between the
//! documents are found in `diff`, and the text is written in `render`.

use hvbench_stats::BetweenRunTest;

use super::view;
use crate::drift::DriftBand;
use crate::results::RunDocument;

mod diff;
mod render;
mod verdict;

pub use diff::differences;
pub use verdict::compare_samples;
use verdict::{metric_change, temper};

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

fn describe(d: &RunDocument) -> String {
    format!(
        "{} (hvbench {}, {})",
        d.run_id, d.hvbench_version, d.git_revision
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_drift_warning_uses_the_default_noise_threshold() {
        assert_eq!(crate::drift::WARN_MOVEMENT, DEFAULT_NOISE);
    }
}
