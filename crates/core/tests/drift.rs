//! `compare` against the host's own drift, on synthetic documents (issue 17): identical runs on a
//! host whose speed moved are "within host drift", a real change of one workload is flagged.

use std::collections::BTreeMap;
use std::path::Path;

use hvbench_core::drift::{HostDrift, ProbePoint, PROBE};
use hvbench_core::report::compare::{self, ChangeVerdict, DriftEvidence};
use hvbench_core::results::{RunDocument, RunRecord};

/// Workloads of the synthetic runs: name, unit, higher is better, base value.
const WORKLOADS: [(&str, &str, bool, f64); 6] = [
    ("cpu.primes", "events/s", true, 2000.0),
    ("cpu.dhrystone", "loops/s", true, 4.0e7),
    ("mem.read", "MB/s", true, 9000.0),
    ("sys.getppid", "ns/op", false, 80.0),
    ("sig.catch", "ns/op", false, 900.0),
    ("proc.exec", "µs/op", false, 300.0),
];

/// A deterministic spread of about ±1% around 1, different for each workload and repetition.
fn jitter(workload: usize, rep: usize, run: usize) -> f64 {
    let x = ((workload * 31 + rep * 17 + run * 7) % 11) as f64 / 10.0;
    1.0 + (x - 0.5) * 0.02
}

/// A run of every workload, 8 repetitions each, on a host that is `host_slowdown` slower (1.0:
/// as in run 0), with workload `changed` (if any) changed by `real` (a factor on its time per
/// unit of work: 1.2 is 20% slower).
fn document(run: usize, host_slowdown: f64, changed: Option<(&str, f64)>) -> RunDocument {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/native.json");
    let mut doc = RunDocument::read(&path).expect("fixture");
    doc.run_id = format!("20260101-00000{run}-efficiency");
    let template = doc.runs[0].clone();
    doc.runs = WORKLOADS
        .iter()
        .enumerate()
        .map(|(i, &(name, unit, higher, base))| {
            let real = match changed {
                Some((w, f)) if w == name => f,
                _ => 1.0,
            };
            // Slower means more time per unit: a time grows, a rate shrinks.
            let factor = host_slowdown * real;
            let samples: Vec<f64> = (0..8)
                .map(|r| {
                    let v = base * jitter(i, r, run);
                    if higher {
                        v / factor
                    } else {
                        v * factor
                    }
                })
                .collect();
            RunRecord {
                workload: name.into(),
                unit: unit.into(),
                higher_is_better: higher,
                samples: samples.clone(),
                sample_details: Vec::new(),
                summary: Some(hvbench_core::stats::summarize(
                    &hvbench_core::stats::Samples::new(samples).unwrap(),
                )),
                ..template.clone()
            }
        })
        .collect();
    doc.efficiency.clear();
    doc.host_drift = Some(probe(run, host_slowdown));
    doc
}

/// The reference probe of a run: start, middle and end, each loop a little noisy, all scaled by
/// the host's slowdown.
fn probe(run: usize, host_slowdown: f64) -> HostDrift {
    HostDrift {
        probe: PROBE.into(),
        points: ["start", "middle", "end"]
            .iter()
            .enumerate()
            .map(|(p, at)| ProbePoint {
                at: (*at).into(),
                before: None,
                offset_s: 20.0 * p as f64,
                passes_ms: BTreeMap::from([
                    (
                        "cpu".to_string(),
                        (0..5)
                            .map(|k| 25.0 * host_slowdown * jitter(p, k, run))
                            .collect(),
                    ),
                    (
                        "mem".to_string(),
                        (0..5)
                            .map(|k| 30.0 * host_slowdown * jitter(p + 3, k, run))
                            .collect(),
                    ),
                ]),
            })
            .collect(),
    }
}

fn verdict_of<'a>(c: &'a compare::Comparison, workload: &str) -> &'a ChangeVerdict {
    &c.changes
        .iter()
        .find(|m| m.workload == workload)
        .expect("compared")
        .verdict
}

#[test]
fn identical_runs_on_a_host_that_moved_are_within_host_drift() {
    let a = document(0, 1.0, None);
    let b = document(1, 1.15, None);
    let c = compare::compare(&a, &b, compare::DEFAULT_NOISE);
    assert_eq!(c.faster() + c.slower(), 0, "{}", c.render());
    assert_eq!(c.within_drift(), WORKLOADS.len(), "{}", c.render());
    assert!(c.drift.as_ref().is_some_and(|d| d.band > 0.15));
    assert!(c.render().contains("hvbench ab"), "{}", c.render());

    // The same documents without their probes: every workload is reported slower, which is
    // exactly the false alarm the probe prevents.
    let (mut a0, mut b0) = (a, b);
    a0.host_drift = None;
    b0.host_drift = None;
    let blind = compare::compare(&a0, &b0, compare::DEFAULT_NOISE);
    assert_eq!(blind.slower(), WORKLOADS.len(), "{}", blind.render());
}

#[test]
fn a_real_change_of_one_workload_is_flagged_and_nothing_else() {
    let a = document(0, 1.0, None);
    let b = document(1, 1.0, Some(("sig.catch", 1.2)));
    let c = compare::compare(&a, &b, compare::DEFAULT_NOISE);
    assert_eq!(verdict_of(&c, "sig.catch"), &ChangeVerdict::Slower);
    assert_eq!(c.slower() + c.faster(), 1, "{}", c.render());
}

#[test]
fn a_real_change_on_top_of_host_drift_is_still_flagged() {
    // The host is 8% slower in B and cpu.primes 20% slower on top of that: the others move with
    // the host, cpu.primes beyond it.
    let a = document(0, 1.0, None);
    let b = document(1, 1.08, Some(("cpu.primes", 1.2)));
    let c = compare::compare(&a, &b, compare::DEFAULT_NOISE);
    assert_eq!(
        verdict_of(&c, "cpu.primes"),
        &ChangeVerdict::Slower,
        "{}",
        c.render()
    );
    assert_eq!(c.slower() + c.faster(), 1, "{}", c.render());
    assert!(matches!(
        verdict_of(&c, "mem.read"),
        ChangeVerdict::WithinHostDrift {
            evidence: DriftEvidence::Probe { .. }
        }
    ));
}

#[test]
fn a_change_within_the_spread_of_earlier_runs_is_within_host_drift() {
    // Runs of one configuration whose medians spread by ±12% on a host whose probe saw nothing
    // (another tenant slowed only this workload): B's +10% is within that history.
    let a = document(0, 1.0, None);
    let history: Vec<RunDocument> = [0.9, 1.12, 1.05, 0.95]
        .iter()
        .enumerate()
        .map(|(i, &f)| document(2 + i, 1.0, Some(("proc.exec", f))))
        .collect();
    let b = document(1, 1.0, Some(("proc.exec", 1.1)));
    let without = compare::compare(&a, &b, compare::DEFAULT_NOISE);
    assert_eq!(verdict_of(&without, "proc.exec"), &ChangeVerdict::Slower);
    let with = compare::compare_with_history(&a, &b, compare::DEFAULT_NOISE, &history);
    assert!(
        matches!(
            verdict_of(&with, "proc.exec"),
            ChangeVerdict::WithinHostDrift {
                evidence: DriftEvidence::History { .. }
            }
        ),
        "{}",
        with.render()
    );
    // A change far beyond the history's spread stays flagged.
    let far = document(1, 1.0, Some(("proc.exec", 2.0)));
    let c = compare::compare_with_history(&a, &far, compare::DEFAULT_NOISE, &history);
    assert_eq!(
        verdict_of(&c, "proc.exec"),
        &ChangeVerdict::Slower,
        "{}",
        c.render()
    );
}

#[test]
fn a_document_without_a_probe_still_compares_and_says_so() {
    let mut a = document(0, 1.0, None);
    a.host_drift = None;
    let json = serde_json::to_string(&a).unwrap();
    assert!(
        !json.contains("host_drift"),
        "an absent probe is not written"
    );
    let b = document(1, 1.0, Some(("sig.catch", 1.2)));
    let c = compare::compare(&a, &b, compare::DEFAULT_NOISE);
    assert!(c.drift.is_none());
    assert!(
        c.render().contains("Host drift: not measured"),
        "{}",
        c.render()
    );
    assert_eq!(verdict_of(&c, "sig.catch"), &ChangeVerdict::Slower);
}
