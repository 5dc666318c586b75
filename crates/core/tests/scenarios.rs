//! The multi-guest and lifecycle scenarios: the arithmetic of degradation and aggregation on
//! fixed samples, and fault handling end to end on the native backend (a guest killed in the
//! middle of a scenario becomes DNR while the others finish). Properties only, never timings.
//!
//! Signal handling (Ctrl-C, SIGTERM) is tested through the command line in
//! `crates/cli/tests/scenarios.rs`: a stop request is process-wide and would end every test here.
//!
//! ```text
//! cargo test -p hvbench-core --test scenarios
//! ```

mod support;
use support::agent;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use hvbench_core::agent::AgentBinary;
use hvbench_core::backends::native::Native;
use hvbench_core::backends::{Availability, Backend, BackendError, GuestSpec, Launched};
use hvbench_core::report::text::render_scenario_data;
use hvbench_core::results::*;
use hvbench_core::scenario::isolation::{self, degradation, degradation_pct, IsolationPlan};
use hvbench_core::scenario::lifecycle::{
    self, cpu_pct_of_core, memory_overhead_kib, LifecyclePlan,
};
use hvbench_core::scenario::scale::{
    self, aggregate, saturation, scaling_efficiency, throughput, ScalePlan,
};
use hvbench_core::scenario::NoProgress;
use hvbench_workloads::Metric;

fn out_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "hvbench-scenarios-test-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn settings(workloads: &[&str], reps: u32) -> Settings {
    Settings {
        suite: None,
        workloads: workloads.iter().map(|s| s.to_string()).collect(),
        reps,
        warmup: 0,
        target_s: 0.05,
        copies: 1,
        cv_threshold: 0.035,
        max_reps: reps,
        vcpus: 1,
        memory_mib: 64,
        confidence: 0.95,
        bootstrap_resamples: 1000,
        bootstrap_seed: 1,
        devices: Default::default(),
        pinning: None,
        params: Default::default(),
    }
}

fn native() -> (Box<dyn Backend>, Availability) {
    (
        Box::new(Native),
        Availability::Available {
            detail: "the host".into(),
        },
    )
}

fn kill_all(pids: &[u32]) {
    for &p in pids {
        // SAFETY: kill has no memory-safety preconditions; these are the guest's own processes.
        unsafe { libc::kill(p as libc::pid_t, libc::SIGKILL) };
    }
}

// ----- arithmetic on fixed samples -----

#[test]
fn degradation_is_positive_when_worse_in_either_direction() {
    assert_eq!(degradation_pct(100.0, 75.0, true), 25.0);
    assert_eq!(degradation_pct(100.0, 125.0, true), -25.0);
    assert_eq!(degradation_pct(100.0, 150.0, false), 50.0);
    assert_eq!(degradation_pct(200.0, 100.0, false), -50.0);
}

fn iso_guest(label: &str, values: &[(&str, f64)], outcome: Outcome) -> IsolationGuest {
    IsolationGuest {
        label: label.into(),
        role: "x".into(),
        outcome,
        medians: values.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        samples: BTreeMap::new(),
        stress_extras: BTreeMap::new(),
        stress_labels: BTreeMap::new(),
    }
}

fn lost() -> Outcome {
    Outcome::failed(FailureKind::DidNotReturn, "gone")
}

fn steady() -> Vec<SteadyWorkload> {
    vec![
        SteadyWorkload {
            name: "rate".into(),
            unit: "events/s".into(),
            higher_is_better: true,
        },
        SteadyWorkload {
            name: "time".into(),
            unit: "ns/op".into(),
            higher_is_better: false,
        },
    ]
}

#[test]
fn degradation_of_a_phase_averages_each_guest_against_its_own_baseline() {
    let ok = Outcome::ok;
    let baseline = vec![
        iso_guest("g0", &[("rate", 100.0), ("time", 10.0)], ok()),
        iso_guest("g1", &[("rate", 200.0), ("time", 20.0)], ok()),
        iso_guest("g2", &[("rate", 50.0), ("time", 5.0)], ok()),
    ];
    let phase = vec![
        // Stressed: half the rate (50%), twice the time (100%).
        iso_guest("g0", &[("rate", 50.0), ("time", 20.0)], ok()),
        // Normal: 10% slower on rate, 10% slower on time.
        iso_guest("g1", &[("rate", 180.0), ("time", 22.0)], ok()),
        // Normal: unchanged.
        iso_guest("g2", &[("rate", 50.0), ("time", 5.0)], ok()),
    ];
    let (per, stressed, stressed_dnr, normal, normal_dnr) =
        degradation(&steady(), &baseline, &phase);
    assert!(!stressed_dnr);
    assert_eq!(normal_dnr, 0);
    assert!((stressed.unwrap() - 75.0).abs() < 1e-9);
    assert!((normal.unwrap() - 5.0).abs() < 1e-9);
    assert_eq!(per.len(), 2);
    assert!((per[0].stressed_pct.unwrap() - 50.0).abs() < 1e-9);
    assert!((per[1].stressed_pct.unwrap() - 100.0).abs() < 1e-9);
    assert!((per[0].normal_per_guest[0].unwrap() - 10.0).abs() < 1e-9);
    assert!((per[0].normal_per_guest[1].unwrap()).abs() < 1e-9);
}

#[test]
fn a_guest_that_did_not_return_is_dnr_never_a_number() {
    let ok = Outcome::ok;
    let baseline = vec![
        iso_guest("g0", &[("rate", 100.0), ("time", 10.0)], ok()),
        iso_guest("g1", &[("rate", 100.0), ("time", 10.0)], ok()),
        iso_guest("g2", &[("rate", 100.0), ("time", 10.0)], ok()),
    ];
    // The stressed guest died after one workload; one normal guest died too.
    let phase = vec![
        iso_guest("g0", &[("rate", 10.0)], lost()),
        iso_guest("g1", &[("rate", 100.0)], lost()),
        iso_guest("g2", &[("rate", 90.0), ("time", 10.0)], ok()),
    ];
    let (per, stressed, stressed_dnr, normal, normal_dnr) =
        degradation(&steady(), &baseline, &phase);
    assert!(stressed_dnr);
    assert_eq!(stressed, None);
    assert_eq!(normal_dnr, 1);
    // Only the guest that returned counts: 10% and 0%.
    assert!((normal.unwrap() - 5.0).abs() < 1e-9);
    assert_eq!(per[0].stressed_pct, None);
    assert_eq!(per[0].normal_per_guest[0], None);
}

#[test]
fn aggregation_sums_the_guests_that_returned() {
    assert_eq!(aggregate(&[Some(1.0), Some(2.5), None]), Some(3.5));
    assert_eq!(aggregate(&[None, None]), None);
    assert_eq!(aggregate(&[]), None);
    // Times per operation become operations per second: 500 ns/op is 2 million ops/s.
    assert_eq!(throughput(Metric::TimePerOp { scale: 1.0 }, 500.0), 2e6);
    assert_eq!(throughput(Metric::Rate { scale: 1e-6 }, 123.0), 123.0);
    // Four guests that each kept the single guest's rate scale perfectly.
    assert_eq!(scaling_efficiency(400.0, 4, 100.0), Some(1.0));
    assert_eq!(scaling_efficiency(200.0, 4, 100.0), Some(0.5));
    assert_eq!(scaling_efficiency(200.0, 0, 100.0), None);
}

#[test]
fn saturation_is_the_last_guest_count_that_raised_the_aggregate() {
    let curve = [
        (1, Some(100.0)),
        (2, Some(198.0)),
        (4, Some(200.0)),
        (8, Some(201.0)),
        (16, None),
    ];
    assert_eq!(saturation(&curve, 0.05), Some(2));
    // Order does not matter; a steadily rising curve saturates at its end.
    assert_eq!(
        saturation(
            &[(4, Some(400.0)), (1, Some(100.0)), (2, Some(200.0))],
            0.05
        ),
        Some(4)
    );
    assert_eq!(saturation(&[(1, Some(100.0)), (2, None)], 0.05), None);
}

#[test]
fn idle_cpu_and_memory_overhead_arithmetic() {
    assert_eq!(cpu_pct_of_core(0.05, 5.0), 1.0);
    assert_eq!(cpu_pct_of_core(1.0, 0.0), 0.0);
    assert_eq!(memory_overhead_kib(300_000, 50_000), 250_000);
    assert_eq!(memory_overhead_kib(10, 50), -40);
}

#[test]
fn scenario_data_round_trips_through_a_document() {
    let data = ScenarioData::Scalability(ScalabilityData {
        backend: "native".into(),
        workload: "cpu.primes".into(),
        unit: "events/s".into(),
        higher_is_better: true,
        aggregate_unit: "events/s".into(),
        vcpus: 1,
        memory_mib: 64,
        reps: 2,
        launch_parallelism: 8,
        steps: vec![],
        saturation_guests: None,
        rise_threshold: 0.05,
        notes: vec![],
    });
    let json = serde_json::to_value(&data).unwrap();
    assert_eq!(json["kind"], "scalability");
    let back: ScenarioData = serde_json::from_value(json).unwrap();
    assert_eq!(back, data);
}

// ----- fault handling, end to end on the native backend -----

#[test]
fn a_guest_killed_mid_scale_is_dnr_while_the_others_finish() {
    let (backend, availability) = native();
    let dir = out_dir("scale-kill");
    let killed: &'static Mutex<Option<String>> = Box::leak(Box::new(Mutex::new(None)));
    let plan = ScalePlan {
        backend,
        availability,
        workload: hvbench_workloads::find("cpu.primes").unwrap(),
        counts: vec![3],
        settings: settings(&["cpu.primes"], 3),
        kernel: None,
        out_dir: dir.clone(),
        command_line: vec!["test".into()],
        timeout: None,
        launch_parallelism: 2,
        on_start: Some(Box::new(move |guests| {
            let (label, pids) = &guests[1];
            kill_all(pids);
            *killed.lock().unwrap() = Some(label.clone());
        })),
        rootfs: None,
    };
    let finished = scale::run(plan, &agent(), &NoProgress).unwrap();
    let killed = killed.lock().unwrap().clone().expect("the hook ran");
    let doc = RunDocument::read(&finished.path).unwrap();
    assert_eq!(doc.scenario, "scalability");
    assert!(!doc.interrupted);
    let Some(ScenarioData::Scalability(d)) = &doc.scenario_data else {
        panic!("no scalability data");
    };
    let step = &d.steps[0];
    assert_eq!(step.guests, 3);
    assert_eq!(step.failed, 1);
    for g in &step.per_guest {
        if g.label == killed {
            let f = g.outcome.failure().expect("the killed guest failed");
            assert_eq!(f.kind, FailureKind::DidNotReturn, "{f:?}");
            assert!(g.samples.is_empty() && g.throughput.is_none());
        } else {
            assert!(g.outcome.is_ok(), "{:?}", g.outcome);
            assert_eq!(g.samples.len(), 3);
            assert!(g.throughput.unwrap() > 0.0);
        }
    }
    // The aggregate is the sum of the two survivors, not of three.
    let sum: f64 = step.per_guest.iter().filter_map(|g| g.throughput).sum();
    assert_eq!(step.aggregate, Some(sum));
    // The guest's record says why it failed.
    let rec = doc.backends[0]
        .guests
        .iter()
        .find(|g| g.label == killed)
        .unwrap();
    assert!(rec.failure.is_some());
    // The journal holds the loss.
    let journal = std::fs::read_to_string(&finished.journal).unwrap();
    assert!(journal.contains("guest_lost"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_normal_guest_killed_mid_isolation_is_dnr_and_is_restarted_for_the_next_phase() {
    let (backend, availability) = native();
    let dir = out_dir("isolation-kill");
    let plan = IsolationPlan {
        backend,
        availability,
        guests: 3,
        stressors: vec!["cpu".into()],
        steady: vec![hvbench_workloads::find("cpu.primes").unwrap()],
        settings: settings(&["cpu.primes"], 2),
        kernel: None,
        out_dir: dir.clone(),
        command_line: vec!["test".into()],
        timeout: None,
        launch_parallelism: 3,
        // Killed before the baseline: its baseline is DNR.
        on_start: Some(Box::new(|guests| kill_all(&guests[2].1))),
        net: Default::default(),
    };
    let finished = isolation::run(plan, &agent(), &NoProgress).unwrap();
    let doc = RunDocument::read(&finished.path).unwrap();
    let Some(ScenarioData::Isolation(d)) = &doc.scenario_data else {
        panic!("no isolation data");
    };
    assert_eq!(d.baseline.len(), 3);
    assert!(
        d.baseline[2].outcome.did_not_return(),
        "{:?}",
        d.baseline[2].outcome
    );
    assert!(d.baseline[0].outcome.is_ok());
    assert!(d.baseline[1].outcome.is_ok());
    let cpu = d.rows.iter().find(|r| r.stressor == "cpu").unwrap();
    assert_eq!(cpu.status, StressStatus::Ran);
    // The restarted guest got a fresh baseline right before the stressor, so it has a number;
    // the row records the baseline it was compared with.
    assert!(cpu.guests[2].outcome.is_ok());
    assert_eq!(cpu.baseline.len(), 3);
    assert!(cpu.baseline.iter().all(|g| g.outcome.is_ok()));
    assert!(cpu.per_workload[0].normal_per_guest[1].is_some());
    assert!(cpu.stressed_pct.is_some());
    assert!(cpu.per_workload[0].normal_per_guest[0].is_some());
    // Four launches: three, then the killed one again.
    assert_eq!(doc.backends[0].guests.len(), 4);
    let _ = std::fs::remove_dir_all(dir);
}

fn net_isolation_plan(
    backend: Box<dyn Backend>,
    stressors: &[&str],
    dir: &std::path::Path,
) -> IsolationPlan {
    IsolationPlan {
        backend,
        availability: Availability::Available {
            detail: "the host".into(),
        },
        guests: 2,
        stressors: stressors.iter().map(|s| s.to_string()).collect(),
        steady: vec![hvbench_workloads::find("cpu.primes").unwrap()],
        settings: settings(&["cpu.primes"], 2),
        kernel: None,
        out_dir: dir.to_path_buf(),
        command_line: vec!["test".into()],
        timeout: None,
        launch_parallelism: 2,
        on_start: None,
        net: Default::default(),
    }
}

fn isolation_data(finished: &hvbench_core::scenario::efficiency::Finished) -> IsolationData {
    let doc = RunDocument::read(&finished.path).unwrap();
    match doc.scenario_data {
        Some(ScenarioData::Isolation(d)) => d,
        _ => panic!("no isolation data"),
    }
}

/// Native guests get the host's loopback: the net stressors stream to a host peer for real.
#[test]
fn net_stressors_stream_between_the_stressed_guest_and_a_host_peer() {
    let dir = out_dir("isolation-net");
    let plan = net_isolation_plan(Box::new(Native), &["net-send", "net-recv"], &dir);
    let finished = isolation::run(plan, &agent(), &NoProgress).unwrap();
    let d = isolation_data(&finished);
    for name in ["net-send", "net-recv"] {
        let row = d.rows.iter().find(|r| r.stressor == name).unwrap();
        assert_eq!(row.status, StressStatus::Ran, "{name}: {:?}", row.reason);
        assert!(!row.stressed_dnr, "{name}: {:?}", row.guests[0].outcome);
        assert!(
            row.stressed_pct.is_some() && row.normal_pct.is_some(),
            "{name}"
        );
        let extras = &row.guests[0].stress_extras;
        assert!(extras["stress_net_bytes"] > 0.0, "{name}: {extras:?}");
        assert!(row.note.as_deref().unwrap().contains("Gbit/s"), "{name}");
        // Only the stressed guest streams.
        assert!(!row.guests[1].stress_extras.contains_key("stress_net_bytes"));
    }
    // One host peer per net stressor, for the stressed guest only.
    let journal = std::fs::read_to_string(&finished.journal).unwrap();
    assert_eq!(journal.matches("\"type\":\"peer\"").count(), 2, "{journal}");
    let _ = std::fs::remove_dir_all(dir);
}

/// Native guests whose network set-up fails (as namespaces and taps do without root), or that
/// ignore the request (as backends without a network do).
struct NetlessNative {
    fail: bool,
}

impl Backend for NetlessNative {
    fn name(&self) -> &'static str {
        "netless"
    }
    fn technique(&self) -> &'static str {
        "native guests without a network (test)"
    }
    fn probe(&self, agent: &AgentBinary) -> Availability {
        Native.probe(agent)
    }
    fn launch(&self, spec: &GuestSpec) -> Result<Launched, BackendError> {
        if spec.devices.net.is_none() {
            return Native.launch(spec);
        }
        if self.fail {
            return Err(BackendError::Setup(
                "a guest network in its own namespace needs root (test)".into(),
            ));
        }
        let mut spec = spec.clone();
        spec.devices.net = None;
        Native.launch(&spec)
    }
}

#[test]
fn net_stressors_are_skipped_with_the_reason_when_guests_have_no_network() {
    for (fail, reason) in [
        (
            true,
            "could not be set up: a guest network in its own namespace needs root",
        ),
        (false, "the netless backend gives its guests no network"),
    ] {
        let dir = out_dir(&format!("isolation-netless-{fail}"));
        let plan = net_isolation_plan(
            Box::new(NetlessNative { fail }),
            &["net-send", "cpu", "net-recv"],
            &dir,
        );
        let finished = isolation::run(plan, &agent(), &NoProgress).unwrap();
        let d = isolation_data(&finished);
        // The guests started (without a network) and the other stressors ran.
        assert!(d.baseline.iter().all(|g| g.outcome.is_ok()));
        let cpu = d.rows.iter().find(|r| r.stressor == "cpu").unwrap();
        assert_eq!(cpu.status, StressStatus::Ran);
        for name in ["net-send", "net-recv"] {
            let row = d.rows.iter().find(|r| r.stressor == name).unwrap();
            assert_eq!(row.status, StressStatus::Skipped, "{name}");
            assert!(row.stressed_pct.is_none() && row.normal_pct.is_none());
            let why = row.reason.as_deref().unwrap();
            assert!(why.contains(reason), "{name}: {why}");
        }
        assert_eq!(
            d.notes.iter().any(|n| n.contains("could not be set up")),
            fail,
            "{:?}",
            d.notes
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[test]
fn lifecycle_on_the_host_reports_start_times_and_raw_memory() {
    let (backend, availability) = native();
    let dir = out_dir("lifecycle");
    let plan = LifecyclePlan {
        backend,
        availability,
        vcpus: vec![1],
        boots: 3,
        idle_window_s: 1.0,
        settle_s: 0.0,
        settings: settings(&["probe.meminfo"], 3),
        kernel: None,
        out_dir: dir.clone(),
        command_line: vec!["test".into()],
    };
    let finished = lifecycle::run(plan, &agent(), &NoProgress).unwrap();
    let doc = RunDocument::read(&finished.path).unwrap();
    let Some(ScenarioData::Lifecycle(d)) = &doc.scenario_data else {
        panic!("no lifecycle data");
    };
    let row = &d.rows[0];
    assert_eq!(row.boots.len(), 3);
    assert_eq!(row.failed_boots, 0);
    let s = row.boot_s.as_ref().unwrap();
    assert!(s.ci_low <= s.median && s.median <= s.ci_high);
    // The host's uptime is not a guest's.
    assert!(row.boots.iter().all(|b| b.guest_uptime_s.is_none()));
    let idle = row.idle.as_ref().unwrap();
    assert!(idle.cpu_pct_of_core >= 0.0 && idle.window_s > 0.0);
    let mem = row.memory.as_ref().unwrap();
    assert!(mem.host_rss_kib > 0 && mem.host_pss_kib > 0);
    // A guest on the host's kernel has no separable overhead: raw numbers and a reason.
    assert_eq!(mem.overhead_kib, None);
    assert!(mem.note.is_some());
    // The native "guest" is the agent process alone: all of it is the guest's, none a VMM's.
    assert!(mem.guest_ram_backed_kib.is_some_and(|k| k > 0));
    assert_eq!(mem.vmm_own_kib, Some(0));
    assert_eq!(mem.backed_minus_used_kib, None);
    let text = render_scenario_data(doc.scenario_data.as_ref().unwrap());
    assert!(text.contains("Boot time") && text.contains("Memory"));
    let _ = std::fs::remove_dir_all(dir);
}
