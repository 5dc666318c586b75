//! The `ab` scenario: two configurations (A and B) of a backend measured in one run, their
//! repetitions interleaved round by round, and the change of each workload from A to B.
//!
//! Two runs on a shared host are minutes apart, and the host's own speed moves in between
//! (`crate::drift`); two configurations measured in the same rounds share whatever the host did
//! during each round. This is how Firecracker's A/B tests avoid drift, and the recommended way to
//! evaluate a change. The run itself is the efficiency scenario's
//! ([`super::efficiency::run`]: native, A, B, native, B, A, ...), with each configuration a
//! backend of its own ([`Arm`]: another NIC or disk model, kernel, agent build, or backend);
//! [`ab_record`] then tests each workload with a paired permutation test: the labels A and B are
//! exchanged within rounds only (sign flips of the per-round log ratios), so the spread between
//! rounds, not within them, is what a change must beat.

use std::path::PathBuf;

use hvbench_stats::{paired_permutation_test, BOOTSTRAP_RESAMPLES, SEED};

use super::efficiency::{self, Finished, Plan, ScenarioError};
use super::Progress;
use crate::agent::AgentBinary;
use crate::backends::{Availability, Backend, BackendError, GuestSpec, Launched};
use crate::devices::{DiskModel, NicModel};
use crate::report::compare::{DEFAULT_NOISE, SIGNIFICANCE};
use crate::results::*;

/// Repetitions `hvbench ab` makes by default: sign flips of `n` rounds reach at best
/// `p = 2 / 2^n`, below 0.01 only from 8 rounds on.
pub const DEFAULT_REPS: u32 = 10;

/// What makes one configuration differ from the backend's defaults.
#[derive(Debug, Clone, Default)]
pub struct ArmOptions {
    pub nic: Option<NicModel>,
    pub disk_model: Option<DiskModel>,
    pub kernel: Option<PathBuf>,
    pub agent: Option<AgentBinary>,
}

/// One configuration as a backend of its own: the wrapped backend, launched with the arm's
/// options in place of the run's.
pub struct Arm {
    name: &'static str,
    label: &'static str,
    inner: Box<dyn Backend>,
    options: ArmOptions,
}

impl Arm {
    /// `label` is `a` or `b`; the arm is named `<backend>.<label>` in the document.
    pub fn new(label: &'static str, inner: Box<dyn Backend>, options: ArmOptions) -> Arm {
        // A backend's name is `&'static str` everywhere; an arm's is made once per run.
        let name: &'static str = Box::leak(format!("{}.{label}", inner.name()).into_boxed_str());
        Arm {
            name,
            label,
            inner,
            options,
        }
    }

    pub fn label(&self) -> &'static str {
        self.label
    }

    /// The guest spec with this arm's options applied.
    pub fn apply(&self, spec: &GuestSpec) -> GuestSpec {
        let mut spec = spec.clone();
        if let Some(k) = &self.options.kernel {
            spec.kernel = Some(k.clone());
        }
        if let (Some(nic), Some(net)) = (self.options.nic, spec.devices.net.as_mut()) {
            net.nic = nic;
        }
        if let (Some(model), Some(disk)) = (self.options.disk_model, spec.devices.disk.as_mut()) {
            disk.model = model;
        }
        if let Some(agent) = &self.options.agent {
            spec.agent = agent.clone();
        }
        spec
    }
}

impl Backend for Arm {
    fn name(&self) -> &'static str {
        self.name
    }

    fn technique(&self) -> &'static str {
        self.inner.technique()
    }

    fn probe(&self, agent: &AgentBinary) -> Availability {
        self.inner
            .probe(self.options.agent.as_ref().unwrap_or(agent))
    }

    fn launch(&self, spec: &GuestSpec) -> Result<Launched, BackendError> {
        self.inner.launch(&self.apply(spec))
    }

    fn hello_timeout(&self) -> std::time::Duration {
        self.inner.hello_timeout()
    }
}

/// Runs the two arms (`plan.backends`: the baseline, then arm A, then arm B) interleaved and
/// adds the `ab` section; the document is named `<time>-ab.json`.
pub fn run(
    plan: Plan,
    options: (Vec<String>, Vec<String>),
    agent: &AgentBinary,
    progress: &dyn Progress,
) -> Result<Finished, ScenarioError> {
    let names: Vec<&'static str> = plan.backends.iter().map(|(b, _)| b.name()).collect();
    let (Some(&name_a), Some(&name_b)) = (names.get(1), names.get(2)) else {
        return Err(ScenarioError::NoBaseline);
    };
    let finished = efficiency::run(plan, agent, progress)?;
    let mut document = finished.document;
    let arm = |label: &str, backend: &str, options: Vec<String>| AbArm {
        label: label.into(),
        backend: backend.into(),
        options,
    };
    document.ab = Some(ab_record(
        &document.runs,
        arm("a", name_a, options.0),
        arm("b", name_b, options.1),
        DEFAULT_NOISE,
    ));
    document.scenario = "ab".into();
    let old_id = document.run_id.clone();
    document.run_id = old_id.replace("-efficiency", "-ab");
    let path = finished
        .path
        .with_file_name(format!("{}.json", document.run_id));
    let journal = finished
        .journal
        .with_file_name(format!("{}.journal.jsonl", document.run_id));
    document
        .write_atomic(&path)
        .map_err(|e| ScenarioError::Output {
            path: path.clone(),
            source: e,
        })?;
    if path != finished.path {
        let _ = std::fs::remove_file(&finished.path);
        let _ = std::fs::rename(&finished.journal, &journal);
    }
    Ok(Finished {
        document,
        path,
        journal,
    })
}

/// The change of every workload measured in both arms, in the order of `runs`.
pub fn ab_record(runs: &[RunRecord], a: AbArm, b: AbArm, noise: f64) -> AbRecord {
    let mut changes = Vec::new();
    for ra in runs.iter().filter(|r| r.backend == a.backend) {
        let rb = runs
            .iter()
            .find(|r| r.backend == b.backend && r.workload == ra.workload);
        changes.push(ab_change(ra, rb, noise));
    }
    AbRecord {
        a,
        b,
        significance: SIGNIFICANCE,
        noise,
        changes,
    }
}

fn ab_change(a: &RunRecord, b: Option<&RunRecord>, noise: f64) -> AbChange {
    let median = |r: &RunRecord| efficiency::median(&r.samples);
    let mut out = AbChange {
        workload: a.workload.clone(),
        unit: a.unit.clone(),
        higher_is_better: a.higher_is_better,
        median_a: median(a),
        median_b: b.and_then(median),
        pairs: 0,
        change: None,
        round_change: None,
        round_spread: None,
        p_value: None,
        verdict: AbVerdict::NoSignificantChange,
    };
    let side = |r: &RunRecord, which: &str| -> Result<(), String> {
        match &r.outcome {
            o if o.is_ok() && r.samples.len() >= 2 => Ok(()),
            o if o.is_ok() => Err(format!("{which} has fewer than two samples")),
            o => Err(format!(
                "{which} {}",
                o.describe().as_deref().unwrap_or("did not run")
            )),
        }
    };
    let b = match b {
        Some(b) => b,
        None => {
            out.verdict = AbVerdict::NotComparable {
                reason: "B did not measure it".into(),
            };
            return out;
        }
    };
    if let Err(reason) = side(a, "A").and_then(|()| side(b, "B")) {
        out.verdict = AbVerdict::NotComparable { reason };
        return out;
    }
    if let (Some(ma), Some(mb)) = (out.median_a, out.median_b) {
        if ma != 0.0 {
            out.change = Some(mb / ma - 1.0);
        }
    }
    let Some(test) = paired_permutation_test(&a.samples, &b.samples, BOOTSTRAP_RESAMPLES, SEED)
    else {
        out.verdict = AbVerdict::NotComparable {
            reason: "values that are not positive cannot be tested as ratios".into(),
        };
        return out;
    };
    out.pairs = test.pairs;
    out.p_value = Some(test.p_value);
    out.round_change = Some(test.median_change);
    out.round_spread = round_spread(&a.samples, &b.samples);
    let change = out.change.unwrap_or(test.median_change);
    out.verdict = if test.smallest_p >= SIGNIFICANCE {
        AbVerdict::TooFewRounds { pairs: test.pairs }
    } else if test.p_value < SIGNIFICANCE && change.abs() > noise {
        if (change > 0.0) == a.higher_is_better {
            AbVerdict::Faster
        } else {
            AbVerdict::Slower
        }
    } else {
        AbVerdict::NoSignificantChange
    };
    out
}

/// Standard deviation of `ln(b_i / a_i)` over the rounds.
fn round_spread(a: &[f64], b: &[f64]) -> Option<f64> {
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| (y / x).ln()).collect();
    if d.len() < 2 || d.iter().any(|x| !x.is_finite()) {
        return None;
    }
    let n = d.len() as f64;
    let mean = d.iter().sum::<f64>() / n;
    Some((d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(backend: &str, workload: &str, samples: Vec<f64>) -> RunRecord {
        RunRecord {
            backend: backend.into(),
            workload: workload.into(),
            unit: "Gbit/s".into(),
            higher_is_better: true,
            outcome: Outcome::ok(),
            iterations: Some(1),
            copies: 1,
            samples,
            sample_details: Vec::new(),
            summary: None,
            extra_reps: 0,
            host_cpu_per_op: None,
            extras: Default::default(),
            labels: Default::default(),
            counted: None,
            round_prices: Default::default(),
        }
    }

    fn arm(label: &str, backend: &str) -> AbArm {
        AbArm {
            label: label.into(),
            backend: backend.into(),
            options: vec![],
        }
    }

    #[test]
    fn a_change_that_holds_in_every_round_is_found_through_heavy_drift() {
        // The host's speed swings by up to 2x between rounds; B is 20% faster on net.rr only.
        let drift = [1.0, 1.5, 0.7, 1.9, 1.1, 1.6, 0.8, 1.3, 1.7, 1.2];
        let scaled = |f: f64| drift.iter().map(|d| 10.0 * d * f).collect::<Vec<_>>();
        let runs = vec![
            record("q.a", "net.rr", scaled(1.0)),
            record("q.b", "net.rr", scaled(1.2)),
            record("q.a", "net.stream.tx", scaled(1.0)),
            record("q.b", "net.stream.tx", scaled(1.0)),
        ];
        let ab = ab_record(&runs, arm("a", "q.a"), arm("b", "q.b"), DEFAULT_NOISE);
        assert_eq!(
            ab.changes[0].verdict,
            AbVerdict::Faster,
            "{:?}",
            ab.changes[0]
        );
        assert_eq!(ab.changes[1].verdict, AbVerdict::NoSignificantChange);
        assert_eq!(ab.changes[0].pairs, drift.len());
    }

    #[test]
    fn five_rounds_say_so_instead_of_a_verdict() {
        let runs = vec![
            record("q.a", "net.rr", vec![1.0, 1.0, 1.0, 1.0, 1.0]),
            record("q.b", "net.rr", vec![2.0, 2.0, 2.0, 2.0, 2.0]),
        ];
        let ab = ab_record(&runs, arm("a", "q.a"), arm("b", "q.b"), DEFAULT_NOISE);
        assert_eq!(ab.changes[0].verdict, AbVerdict::TooFewRounds { pairs: 5 });
    }

    #[test]
    fn a_failed_arm_is_not_comparable() {
        let mut b = record("q.b", "net.rr", vec![]);
        b.outcome = Outcome::failed(FailureKind::DidNotReturn, "the guest went silent");
        let runs = vec![record("q.a", "net.rr", vec![1.0; 10]), b];
        let ab = ab_record(&runs, arm("a", "q.a"), arm("b", "q.b"), DEFAULT_NOISE);
        assert!(matches!(
            ab.changes[0].verdict,
            AbVerdict::NotComparable { .. }
        ));
    }

    #[test]
    fn an_arm_applies_its_options_to_the_guest() {
        let arm = Arm::new(
            "b",
            Box::new(crate::backends::native::Native),
            ArmOptions {
                nic: Some(NicModel::E1000),
                kernel: Some("/boot/other".into()),
                ..Default::default()
            },
        );
        assert_eq!(arm.name(), "native.b");
        let spec = GuestSpec {
            vcpus: 1,
            memory_mib: 64,
            kernel: None,
            agent: AgentBinary {
                path: "/nonexistent/hvbench-agent".into(),
                sha256: String::new(),
                size: 0,
            },
            workdir: "/tmp".into(),
            label: "x".into(),
            devices: crate::devices::Devices {
                net: Some(Default::default()),
                ..Default::default()
            },
        };
        let applied = arm.apply(&spec);
        assert_eq!(applied.kernel, Some(PathBuf::from("/boot/other")));
        assert_eq!(applied.devices.net.unwrap().nic, NicModel::E1000);
    }
}
