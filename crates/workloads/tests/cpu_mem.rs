//! The cpu and mem workloads: each runs, calibrates and passes its own checks.
//!
//! No timing assertions: the machine is shared and noisy. Two ignored tests are measurement
//! helpers for release builds:
//!
//! ```text
//! cargo test --release -p hvbench-workloads --test cpu_mem -- \
//!     --ignored --nocapture --test-threads 1
//! ```
//!
//! `primes_against_sysbench` runs `sysbench cpu --cpu-max-prime=10000 --threads=1 --time=10 run`
//! when sysbench is installed and prints its events/s beside `cpu.primes`'s;
//! `repeatability_of_cpu_and_mem_workloads` prints the coefficient of variation of 10
//! repetitions of 0.2 s of each workload (after calibration and one warm-up).

use std::time::Duration;

use hvbench_workloads::{calibrate, cpu, find, mem, registry, run_rep, Params, WorkloadError};

/// Small buffers and corpora, so that debug builds stay quick.
fn small_params(name: &str) -> Params {
    let mut p = Params::new();
    if name.starts_with("mem.") {
        p.insert("buffer_mib".into(), 4.into());
    }
    if name == "cpu.compress" {
        p.insert("corpus_kib".into(), 64.into());
    }
    p
}

fn ours() -> impl Iterator<Item = &'static hvbench_workloads::WorkloadInfo> {
    cpu::WORKLOADS.iter().chain(mem::WORKLOADS)
}

fn supported(r: &Result<hvbench_workloads::RepResult, WorkloadError>) -> bool {
    !matches!(r, Err(WorkloadError::Unsupported(_)))
}

#[test]
fn every_workload_runs_a_few_iterations() {
    for w in ours() {
        let params = small_params(w.name);
        for iterations in [1, 2, 3] {
            let r = run_rep(w, &params, iterations, 1);
            if !supported(&r) {
                continue;
            }
            let r = r.unwrap_or_else(|e| panic!("{} x{iterations}: {e}", w.name));
            assert!(
                r.value.is_finite() && r.value > 0.0,
                "{} x{iterations}: {}",
                w.name,
                r.value
            );
            assert_eq!(r.iterations, iterations);
        }
    }
}

#[test]
fn every_workload_calibrates_and_runs() {
    for w in ours() {
        let params = small_params(w.name);
        let iterations = match calibrate(w, &params, Duration::from_millis(20)) {
            Err(WorkloadError::Unsupported(_)) => continue,
            r => r.unwrap_or_else(|e| panic!("{}: calibrate: {e}", w.name)),
        };
        assert!(iterations >= 1);
        let r = run_rep(w, &params, iterations, 1)
            .unwrap_or_else(|e| panic!("{} x{iterations}: {e}", w.name));
        assert!(
            r.value.is_finite() && r.value > 0.0,
            "{}: {}",
            w.name,
            r.value
        );
    }
}

#[test]
fn default_parameters_work() {
    // The full-size defaults once each: 64 MiB buffers, 1 MiB corpus, max_prime 10000.
    for w in ours() {
        let r = run_rep(w, &Params::new(), 1, 1);
        if supported(&r) {
            let r = r.unwrap_or_else(|e| panic!("{}: {e}", w.name));
            assert!(
                r.value.is_finite() && r.value > 0.0,
                "{}: {}",
                w.name,
                r.value
            );
        }
    }
}

#[test]
fn zero_iterations_is_a_bad_parameter() {
    for w in ours() {
        match (w.run)(&small_params(w.name), 0) {
            Err(WorkloadError::BadParam(_)) => {}
            other => panic!("{}: {other:?}", w.name),
        }
    }
}

#[test]
fn dhrystone_reports_dmips_from_its_own_rate() {
    let w = find("cpu.dhrystone").unwrap();
    let r = run_rep(w, &Params::new(), 10_000, 1).unwrap();
    let dmips = r.extras["dmips"];
    assert!(
        (dmips - r.value / 1757.0).abs() <= 1e-9 * dmips,
        "{dmips} vs {}",
        r.value
    );
}

#[test]
fn primes_accepts_sysbench_limits_and_rejects_nonsense() {
    let w = find("cpu.primes").unwrap();
    for max in [1u64, 3, 100, 100_000] {
        let mut p = Params::new();
        p.insert("max_prime".into(), max.into());
        run_rep(w, &p, 1, 1).unwrap_or_else(|e| panic!("max_prime {max}: {e}"));
    }
    for bad in [
        serde_json::json!(0),
        serde_json::json!(-5),
        serde_json::json!("ten"),
    ] {
        let mut p = Params::new();
        p.insert("max_prime".into(), bad.clone());
        assert!(
            matches!((w.run)(&p, 1), Err(WorkloadError::BadParam(_))),
            "max_prime {bad}"
        );
    }
}

#[test]
fn oversized_buffers_are_refused_not_allocated() {
    let mut p = Params::new();
    p.insert("buffer_mib".into(), (1u64 << 20).into()); // 1 TiB
    for w in mem::WORKLOADS {
        match (w.run)(&p, 1) {
            Err(WorkloadError::Unsupported(m)) => assert!(m.contains("buffer_mib"), "{m}"),
            other => panic!("{}: {other:?}", w.name),
        }
    }
}

#[test]
fn compress_checks_its_round_trip_at_the_default_size() {
    // run() decompresses the first output and compares it with the corpus; a failure is an Err.
    let w = find("cpu.compress").unwrap();
    let r = run_rep(w, &Params::new(), 2, 1).unwrap();
    assert_eq!(r.work, 2.0 * 1024.0 * 1024.0);
}

#[test]
fn registry_rows_are_unique_and_documented() {
    let mut names: Vec<_> = registry().map(|w| w.name).collect();
    names.sort_unstable();
    let before = names.len();
    names.dedup();
    assert_eq!(names.len(), before, "duplicate workload names");

    for w in cpu::WORKLOADS {
        assert!(w.name.starts_with("cpu."), "{}", w.name);
        assert_eq!(w.suites, ["quick", "full", "cpu"], "{}", w.name);
    }
    for w in mem::WORKLOADS {
        assert!(w.name.starts_with("mem."), "{}", w.name);
        assert_eq!(w.suites, ["quick", "full", "mem"], "{}", w.name);
    }
    for w in ours() {
        assert!(
            w.description.len() > 40,
            "{}: description too short",
            w.name
        );
        assert!(!w.description.contains('\n'), "{}: one line", w.name);
        assert!(!w.unit.is_empty() && w.setup_timeout_s >= 10, "{}", w.name);
        let lower = matches!(w.metric, hvbench_workloads::Metric::TimePerOp { .. });
        assert_eq!(
            w.higher_is_better, !lower,
            "{}: direction vs metric",
            w.name
        );
        assert_eq!(find(w.name).map(|f| f.name), Some(w.name));
    }
    let expected = [
        "cpu.dhrystone",
        "cpu.whetstone",
        "cpu.primes",
        "cpu.compress",
        "cpu.cpuid",
        "mem.read",
        "mem.write",
        "mem.copy",
        "mem.latency",
    ];
    assert_eq!(ours().map(|w| w.name).collect::<Vec<_>>(), expected);
}

// ----- Measurement helpers (release builds, run by hand) ------------------------------------

fn cv(values: &[f64]) -> f64 {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    var.sqrt() / mean
}

/// `sysbench cpu --cpu-max-prime=10000 --threads=1 --time=10 run`: its events per second, or
/// `None` when sysbench is not installed.
fn sysbench_cpu_events_per_s() -> Option<f64> {
    let out = std::process::Command::new("sysbench")
        .args([
            "cpu",
            "--cpu-max-prime=10000",
            "--threads=1",
            "--time=10",
            "run",
        ])
        .output()
        .ok()?;
    assert!(out.status.success(), "sysbench failed: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let eps = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("events per second:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("sysbench printed no 'events per second'");
    Some(eps)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[test]
#[ignore = "measurement helper: run with --release --ignored --nocapture"]
fn primes_against_sysbench() {
    let w = find("cpu.primes").unwrap();
    let params = Params::new();
    let iterations = calibrate(w, &params, Duration::from_secs(1)).unwrap();
    run_rep(w, &params, iterations, 1).unwrap();
    // After a warm-up, rounds of ten seconds each, alternating, so that drift of a shared machine
    // hits both.
    let mut ratios = Vec::new();
    for round in 1..=3 {
        let ours: Vec<f64> = (0..10)
            .map(|_| run_rep(w, &params, iterations, 1).unwrap().value)
            .collect();
        let spread = cv(&ours) * 100.0;
        let ours = median(ours);
        let Some(theirs) = sysbench_cpu_events_per_s() else {
            println!("cpu.primes: {ours:.2} events/s; sysbench is not installed");
            return;
        };
        println!(
            "round {round}: cpu.primes {ours:.2} events/s (median of 10 x 1 s, cv {spread:.1}%), \
             sysbench {theirs:.2} events/s: {:.1}%",
            ours / theirs * 100.0
        );
        ratios.push(ours / theirs);
    }
    println!(
        "cpu.primes / sysbench, median of rounds: {:.1}%",
        median(ratios) * 100.0
    );
}

#[test]
#[ignore = "measurement helper: run with --release --ignored --nocapture"]
fn repeatability_of_cpu_and_mem_workloads() {
    for w in ours() {
        let params = Params::new();
        let iterations = match calibrate(w, &params, Duration::from_millis(200)) {
            Err(WorkloadError::Unsupported(m)) => {
                println!("{}: unsupported: {m}", w.name);
                continue;
            }
            r => r.unwrap(),
        };
        run_rep(w, &params, iterations, 1).unwrap(); // warm-up
        let values: Vec<f64> = (0..10)
            .map(|_| run_rep(w, &params, iterations, 1).unwrap().value)
            .collect();
        let (min, max) = values
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        println!(
            "{:14} {:>12.2} {:8} cv {:5.2}%  min {:.2} max {:.2}  ({} iterations/rep)",
            w.name,
            values.iter().sum::<f64>() / values.len() as f64,
            w.unit,
            cv(&values) * 100.0,
            min,
            max,
            iterations
        );
    }
}
