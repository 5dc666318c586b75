//! The efficiency scenario end to end on the mock backend (scripted guests in threads, no
//! processes): a clean run, and each way a guest fails — silent (did not return), crashed in
//! the middle of a job (did not return, console tail kept apart), garbage (bad output), another
//! agent version (refused), no hello (did not start) — recorded as typed outcomes in the
//! document, with the other backends measured as usual. Properties only, never timings.
//!
//! ```text
//! cargo test -p hvbench-core --test efficiency_mock
//! ```

use std::path::PathBuf;
use std::time::Duration;

use hvbench_core::agent::AgentBinary;
use hvbench_core::backends::mock::{Fault, Mock, CRASH_CONSOLE_LINE, OTHER_VERSION};
use hvbench_core::backends::{Availability, Backend};
use hvbench_core::devices::DevicePlan;
use hvbench_core::results::*;
use hvbench_core::scenario::efficiency::{self, Plan};
use hvbench_core::scenario::NoProgress;

/// The bound on a guest's silence during a job: short, as the mock answers at once.
const SILENCE: Duration = Duration::from_millis(400);

fn settings(workloads: &[&str], reps: u32) -> Settings {
    Settings {
        suite: None,
        workloads: workloads.iter().map(|s| s.to_string()).collect(),
        reps,
        warmup: 1,
        target_s: 0.01,
        copies: 1,
        cv_threshold: 0.035,
        max_reps: reps,
        vcpus: 1,
        memory_mib: 64,
        confidence: 0.95,
        bootstrap_resamples: 200,
        bootstrap_seed: 1,
        devices: Default::default(),
        pinning: None,
        params: Default::default(),
    }
}

fn out_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "hvbench-efficiency-mock-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn available(b: Mock) -> (Box<dyn Backend>, Availability) {
    let a = Availability::Available {
        detail: "scripted".into(),
    };
    (Box::new(b), a)
}

/// Runs `workloads` on a healthy baseline (100 ns/op) and `guest`; returns the document.
fn run(name: &str, guest: Mock, workloads: &[&str]) -> efficiency::Finished {
    let plan = Plan {
        backends: vec![
            available(Mock::new("mock-host", 100.0).baseline()),
            available(guest),
        ],
        workloads: workloads
            .iter()
            .map(|w| hvbench_workloads::find(w).expect("a registered workload"))
            .collect(),
        settings: settings(workloads, 3),
        kernel: None,
        out_dir: out_dir(name),
        command_line: vec!["test".into()],
        timeout: Some(SILENCE),
        devices: DevicePlan::default(),
        explain: false,
    };
    let agent = AgentBinary {
        path: "/nonexistent/hvbench-agent".into(),
        sha256: String::new(),
        size: 0,
    };
    efficiency::run(plan, &agent, &NoProgress).expect("the scenario runs")
}

fn record<'a>(doc: &'a RunDocument, backend: &str, workload: &str) -> &'a RunRecord {
    doc.runs
        .iter()
        .find(|r| r.backend == backend && r.workload == workload)
        .unwrap_or_else(|| panic!("no run of {workload} on {backend}"))
}

fn failure(r: &RunRecord) -> &Failure {
    match &r.outcome {
        Outcome::Failed(f) => f,
        other => panic!(
            "{} on {}: expected a failure, got {other:?}",
            r.workload, r.backend
        ),
    }
}

fn guests<'a>(doc: &'a RunDocument, backend: &str) -> &'a [GuestRecord] {
    &doc.backends
        .iter()
        .find(|b| b.name == backend)
        .expect("the backend's record")
        .guests
}

/// The baseline is measured whatever became of the guest.
fn assert_baseline_measured(doc: &RunDocument, workload: &str) {
    let host = record(doc, "mock-host", workload);
    assert_eq!(host.outcome, Outcome::Ok { note: None });
    assert_eq!(host.samples.len(), 3);
}

const W: &str = "sys.getppid";

#[test]
fn a_healthy_guest_is_measured_and_compared() {
    let finished = run("healthy", Mock::new("mock-guest", 125.0), &[W]);
    let doc = &finished.document;
    assert!(!doc.interrupted);
    assert_baseline_measured(doc, W);
    let guest = record(doc, "mock-guest", W);
    assert_eq!(guest.outcome, Outcome::Ok { note: None });
    assert_eq!(guest.samples.len(), 3);
    assert_eq!(
        guest.iterations,
        Some(hvbench_core::backends::mock::MOCK_ITERATIONS)
    );
    // ns/op, lower is better: 100 on the host and 125 in the guest is 80%, an overhead.
    let eff = doc
        .efficiency
        .iter()
        .find(|e| e.backend == "mock-guest" && e.workload == W)
        .expect("an efficiency for the guest");
    assert!((eff.ratio - 0.8).abs() < 0.01, "{}", eff.ratio);
    assert_eq!(eff.verdict, Verdict::Overhead);
    let g = guests(doc, "mock-guest");
    assert_eq!(g.len(), 1);
    assert!(g[0].failure.is_none() && g[0].boot_s.is_some());
    // Every sample went to the journal as it arrived, and the document was written.
    let journal = std::fs::read_to_string(&finished.journal).unwrap();
    assert_eq!(
        journal.matches("\"type\":\"sample\"").count(),
        6,
        "{journal}"
    );
    assert!(finished.path.exists());
}

#[test]
fn a_guest_that_goes_silent_did_not_return() {
    let guest = Mock::new("mock-guest", 100.0).with_faults(vec![Some(Fault::SilentAfter(1))]);
    let doc = run("silent", guest, &[W]).document;
    assert_baseline_measured(&doc, W);
    let r = record(&doc, "mock-guest", W);
    let f = failure(r);
    assert_eq!(f.kind, FailureKind::DidNotReturn);
    assert!(f.reason.contains("silent"), "{}", f.reason);
    assert!(r.samples.is_empty());
    // The guest's record says it was lost, in the same terms.
    let g = guests(&doc, "mock-guest");
    assert_eq!(
        g[0].failure.as_ref().map(|f| f.kind),
        Some(FailureKind::DidNotReturn)
    );
    // No efficiency is made up for it.
    assert!(doc.efficiency.iter().all(|e| e.backend != "mock-guest"));
}

#[test]
fn a_guest_that_crashes_mid_job_did_not_return_with_its_console_tail_apart() {
    let guest = Mock::new("mock-guest", 100.0).with_faults(vec![Some(Fault::CrashAfter(2))]);
    let doc = run("crash", guest, &[W]).document;
    assert_baseline_measured(&doc, W);
    let r = record(&doc, "mock-guest", W);
    let f = failure(r);
    assert_eq!(f.kind, FailureKind::DidNotReturn);
    assert_eq!(f.console_tail.as_deref(), Some(CRASH_CONSOLE_LINE));
    assert!(!f.reason.contains(CRASH_CONSOLE_LINE), "{}", f.reason);
    // The one repetition it finished before the crash is kept.
    assert_eq!(r.samples.len(), 1);
}

#[test]
fn a_guest_that_sends_garbage_gave_bad_output() {
    let guest = Mock::new("mock-guest", 100.0).with_faults(vec![Some(Fault::GarbageAfter(1))]);
    let doc = run("garbage", guest, &[W]).document;
    assert_baseline_measured(&doc, W);
    let f = failure(record(&doc, "mock-guest", W));
    assert_eq!(f.kind, FailureKind::BadOutput);
    let g = guests(&doc, "mock-guest");
    assert_eq!(
        g[0].failure.as_ref().map(|f| f.kind),
        Some(FailureKind::BadOutput)
    );
}

#[test]
fn an_agent_of_another_version_is_refused() {
    // Every launch: a backend that fails to start is tried again, up to three times a run.
    let guest = Mock::new("mock-guest", 100.0).with_faults(vec![Some(Fault::WrongVersion); 3]);
    let doc = run("refused", guest, &[W]).document;
    assert_baseline_measured(&doc, W);
    let f = failure(record(&doc, "mock-guest", W));
    assert_eq!(f.kind, FailureKind::Refused);
    assert!(f.reason.contains(OTHER_VERSION), "{}", f.reason);
    let g = guests(&doc, "mock-guest");
    assert_eq!(
        g.len(),
        2,
        "launched before the first workload and once more for it"
    );
    for g in g {
        assert!(g.boot_s.is_none());
        assert_eq!(
            g.failure.as_ref().map(|f| f.kind),
            Some(FailureKind::Refused)
        );
    }
}

#[test]
fn a_guest_without_hello_did_not_start() {
    let guest = Mock::new("mock-guest", 100.0)
        .with_faults(vec![Some(Fault::NoHello); 3])
        .with_hello_timeout(SILENCE);
    let doc = run("no-hello", guest, &[W]).document;
    assert_baseline_measured(&doc, W);
    let f = failure(record(&doc, "mock-guest", W));
    assert_eq!(f.kind, FailureKind::DidNotStart);
    assert!(f.reason.contains("no hello"), "{}", f.reason);
}

#[test]
fn a_guest_that_failed_to_start_is_launched_again() {
    let guest = Mock::new("mock-guest", 100.0).with_faults(vec![Some(Fault::WrongVersion)]);
    let doc = run("boot-retry", guest, &[W]).document;
    assert_eq!(
        record(&doc, "mock-guest", W).outcome,
        Outcome::Ok { note: None }
    );
    let g = guests(&doc, "mock-guest");
    assert_eq!(g.len(), 2);
    assert_eq!(
        g[0].failure.as_ref().map(|f| f.kind),
        Some(FailureKind::Refused)
    );
    assert!(g[1].failure.is_none());
}

#[test]
fn a_lost_guest_is_replaced_for_the_next_workload() {
    let guest = Mock::new("mock-guest", 100.0).with_faults(vec![Some(Fault::CrashAfter(1))]);
    let doc = run("relaunch", guest, &[W, "sys.pipe"]).document;
    assert_eq!(
        failure(record(&doc, "mock-guest", W)).kind,
        FailureKind::DidNotReturn
    );
    let next = record(&doc, "mock-guest", "sys.pipe");
    assert_eq!(next.outcome, Outcome::Ok { note: None });
    assert_eq!(next.samples.len(), 3);
    let g = guests(&doc, "mock-guest");
    assert_eq!(g.len(), 2, "one lost guest, one that finished");
    assert_eq!(
        g[0].failure.as_ref().map(|f| f.kind),
        Some(FailureKind::DidNotReturn)
    );
    assert!(g[1].failure.is_none());
}
