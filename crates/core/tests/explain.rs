//! The explain model on documents whose answer is known: a workload made of exactly the events
//! the micro workloads price must be predicted exactly; what was not counted or cannot be
//! priced is named, never filled in.

use hvbench_core::explain::explain;
use hvbench_core::results::*;
use hvbench_core::scenario::efficiency::efficiency_records;
use serde_json::json;

fn run(backend: &str, workload: &str, unit: &str, samples: &[f64]) -> RunRecord {
    serde_json::from_value(json!({
        "backend": backend, "workload": workload, "unit": unit, "higher_is_better": false,
        "status": "ok", "reason": null, "iterations": 1000, "copies": 1,
        "samples": samples, "sample_details": [], "summary": null, "extra_reps": 0,
        "host_cpu_per_op": null, "extras": {}
    }))
    .unwrap()
}

/// A workload's records on native and gVisor, each three samples around its value.
fn both(workload: &str, unit: &str, native: f64, gvisor: f64) -> [RunRecord; 2] {
    let around = |v: f64| [v - 1.0, v, v + 1.0];
    [
        run("native", workload, unit, &around(native)),
        run("gvisor", workload, unit, &around(gvisor)),
    ]
}

/// synth.events natively: 12 µs per op, of which 2 µs user time, 100 system calls and 10 page
/// faults. In the guest each call costs 2 µs more and each fault 1 µs more: 222 µs per op.
fn document(counts: serde_json::Value) -> RunDocument {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/guests.json");
    let mut doc = RunDocument::read(&path).unwrap();
    let mut native = run("native", "synth.events", "µs/op", &[11.9, 12.0, 12.1]);
    native.counted = Some(CountedRecord {
        reps: (0..3)
            .map(|_| CountedRep {
                value: 12.5,
                work: 1000.0,
                elapsed_s: 0.0125,
                wall_s: 0.013,
                counts: serde_json::from_value(counts.clone()).unwrap(),
                clock_pass: false,
            })
            .collect(),
        not_counted: [("disk".to_string(), "no application directory".to_string())].into(),
    });
    doc.runs = vec![
        native,
        run("gvisor", "synth.events", "µs/op", &[221.0, 222.0, 223.0]),
        run("native", "sys.getppid", "ns/op", &[99.0, 100.0, 101.0]),
        run("gvisor", "sys.getppid", "ns/op", &[2099.0, 2100.0, 2101.0]),
        run("native", "mm.pagefault", "ns/page", &[199.0, 200.0, 201.0]),
        run(
            "gvisor",
            "mm.pagefault",
            "ns/page",
            &[1199.0, 1200.0, 1201.0],
        ),
    ];
    doc.efficiency = efficiency_records(&doc.runs, "native");
    doc
}

/// synth.events counted as 100 calls of class `other`, 10 faults and 2 µs of user time per op.
fn priced_events() -> RunDocument {
    document(json!({
        "syscalls": 100_000.0, "syscalls.other": 100_000.0, "syscalls.file": 0.0,
        "syscalls.net": 0.0, "syscalls.mm": 0.0, "syscalls.sched": 0.0,
        "syscalls.process": 0.0, "faults_minor": 10_000.0, "user_s": 0.002
    }))
}

/// Counts by class (none of a class unless `counts` says otherwise), 10 faults and 2 µs of
/// user time per op.
fn classed(counts: serde_json::Value) -> serde_json::Value {
    let mut all = json!({
        "syscalls.file": 0.0, "syscalls.net": 0.0, "syscalls.mm": 0.0, "syscalls.sched": 0.0,
        "syscalls.process": 0.0, "syscalls.other": 0.0, "faults_minor": 10_000.0,
        "user_s": 0.002
    });
    for (k, v) in counts.as_object().expect("an object") {
        all[k] = v.clone();
    }
    all
}

/// The prediction equals the measurement (to rounding).
fn assert_predicted_exactly(r: &hvbench_core::results::ExplainRecord) {
    let rel = (r.predicted.value - r.measured.value).abs() / r.measured.value;
    assert!(
        rel < 1e-6,
        "predicted {} measured {}",
        r.predicted.value,
        r.measured.value
    );
}

#[test]
fn a_workload_made_of_priced_events_is_predicted_exactly() {
    let doc = priced_events();
    let out = explain(&doc, &doc);
    assert_eq!(out.len(), 1, "{out:?}");
    let r = &out[0];
    assert_eq!(
        (r.workload.as_str(), r.backend.as_str()),
        ("synth.events", "gvisor")
    );
    assert!((r.measured.value - 12.0 / 222.0).abs() < 1e-9, "{r:?}");
    assert_predicted_exactly(r);
    assert!((r.explained_share.unwrap() - 1.0).abs() < 1e-6);
    assert!(r.residual_s.abs() < 1e-9);
    assert!(r.predicted.ci_low <= r.predicted.value && r.predicted.value <= r.predicted.ci_high);
    let term = |c: &str| r.terms.iter().find(|t| t.class == c).unwrap();
    assert!((term("syscalls.other").extra_s - 200e-6).abs() < 1e-12);
    assert!((term("page_faults").extra_s - 10e-6).abs() < 1e-12);
    // Context switches were not counted, and sys.pipe, sched.ctxswitch.same and the CPU
    // workloads did not run: named as missing, not priced at zero.
    let missing = r.missing.join("\n");
    assert!(missing.contains("ctx_switches: not counted"), "{missing}");
    assert!(
        missing.contains("cpu_user: no cost for gvisor"),
        "{missing}"
    );
}

#[test]
fn costs_from_another_run_and_uncounted_syscalls_are_reported() {
    // Only the total of system calls counted, no classes: priced as getppid.
    let doc = document(json!({"syscalls": 100_000.0, "faults_minor": 10_000.0}));
    let r = &explain(&doc, &doc)[0];
    assert!(r.terms.iter().any(|t| t.class == "syscalls"));
    assert_predicted_exactly(r);
    // A cost document without the backend's micro workloads prices nothing.
    let mut costs = doc.clone();
    costs.runs.retain(|r| r.backend == "native");
    costs.run_id = "other".into();
    let r = &explain(&doc, &costs)[0];
    assert_eq!(r.costs_from, "other");
    assert!(r.terms.is_empty(), "{:?}", r.terms);
    assert!((r.predicted.value - 1.0).abs() < 1e-12);
    assert!(r
        .missing
        .iter()
        .any(|m| m.starts_with("page_faults: no cost")));
}

/// 4 execs and 6 forks per op beside 100 other calls and 10 faults, proc.exec (400 µs native,
/// 600 in gVisor) and proc.fork (300 and 400 µs), `more` runs besides; gVisor measured at
/// `guest_us` per op.
fn with_processes(guest_us: f64, more: Vec<RunRecord>) -> RunDocument {
    let mut doc = document(classed(json!({
        "syscalls": 100_000.0, "syscalls.other": 100_000.0,
        "syscalls.exec": 4_000.0, "syscalls.fork": 6_000.0
    })));
    let g = [guest_us - 1.0, guest_us, guest_us + 1.0];
    doc.runs[1] = run("gvisor", "synth.events", "µs/op", &g);
    doc.runs.extend([
        run("native", "proc.exec", "µs/op", &[399.0, 400.0, 401.0]),
        run("gvisor", "proc.exec", "µs/op", &[599.0, 600.0, 601.0]),
        run("native", "proc.fork", "µs/op", &[299.0, 300.0, 301.0]),
        run("gvisor", "proc.fork", "µs/op", &[399.0, 400.0, 401.0]),
    ]);
    doc.runs.extend(more);
    doc.efficiency = efficiency_records(&doc.runs, "native");
    doc
}

#[test]
fn process_creation_is_priced_by_the_process_micro_workloads() {
    // Per op: 4 execs (each with its fork) and 2 forks without an exec. proc.exec costs 400 µs
    // natively and 600 µs in gVisor, proc.fork 300 and 400 µs: 4 × 200 + 2 × 100 = 1000 µs
    // extra per op, beside the other calls' 200 µs and the faults' 10 µs; the guest's time
    // is made to be exactly that: 12 + 200 + 10 + 1000 = 1222 µs.
    let doc = with_processes(1222.0, vec![]);
    let r = &explain(&doc, &doc)[0];
    let term = |c: &str| r.terms.iter().find(|t| t.class == c).unwrap();
    assert!(
        (term("syscalls.exec").extra_s - 800e-6).abs() < 1e-9,
        "{r:?}"
    );
    assert!(
        (term("syscalls.fork").extra_s - 200e-6).abs() < 1e-9,
        "{r:?}"
    );
    assert_predicted_exactly(r);
}

#[test]
fn fsyncs_are_priced_by_fs_fsync_and_background_writes_are_not_priced() {
    // Per op: 3 file calls (create, write, close), 1 fsync, 5 disk writes and a flush on the
    // device, no reads. sys.pipe costs 2 µs more per call in gVisor (4 µs per op of two calls);
    // fs.fsync 1 ms natively and 1.25 ms in gVisor: 250 µs extra, less its three calls' 6 µs,
    // is 244 µs per fsync. The writes are the fsync's own or written back in the background:
    // io.randread's +1 ms would add 5 ms per op if they were priced. Guest time: 12 + 200
    // (other calls) + 10 (faults) + 6 (file calls) + 244 (fsync) = 472 µs.
    let mut doc = document(classed(json!({
        "syscalls": 104_000.0, "syscalls.other": 100_000.0, "syscalls.file": 3_000.0,
        "syscalls.sync": 1_000.0, "disk_reads": 0.0, "disk_writes": 5_000.0,
        "disk_flushes": 1_000.0
    })));
    doc.runs[1] = run("gvisor", "synth.events", "µs/op", &[471.0, 472.0, 473.0]);
    doc.runs.extend([
        run("native", "sys.pipe", "ns/op", &[3999.0, 4000.0, 4001.0]),
        run("gvisor", "sys.pipe", "ns/op", &[7999.0, 8000.0, 8001.0]),
        run("native", "fs.fsync", "syncs/s", &[999.0, 1000.0, 1001.0]),
        run("gvisor", "fs.fsync", "syncs/s", &[799.0, 800.0, 801.0]),
        run("native", "io.randread", "IOPS", &[9999.0, 10000.0, 10001.0]),
        run("gvisor", "io.randread", "IOPS", &[499.0, 500.0, 501.0]),
    ]);
    doc.efficiency = efficiency_records(&doc.runs, "native");
    let r = &explain(&doc, &doc)[0];
    let term = |c: &str| r.terms.iter().find(|t| t.class == c);
    let sync = term("syscalls.sync").expect("an fsync class");
    assert!((sync.extra_s - 244e-6).abs() < 1e-9, "{r:?}");
    assert!(
        term("disk_ios").is_none() && term("disk_reads").is_none(),
        "{r:?}"
    );
    assert_predicted_exactly(r);

    // A guest whose fsync is cheaper than the host's is predicted faster, not clamped.
    doc.runs[1] = run("gvisor", "synth.events", "µs/op", &[11.0, 11.5, 12.0]);
    let last = doc.runs.len() - 3;
    doc.runs[last] = run("gvisor", "fs.fsync", "syncs/s", &[1999.0, 2000.0, 2001.0]);
    doc.efficiency = efficiency_records(&doc.runs, "native");
    let r = &explain(&doc, &doc)[0];
    let sync = r.terms.iter().find(|t| t.class == "syscalls.sync").unwrap();
    assert!((sync.extra_s - (-506e-6)).abs() < 1e-9, "{r:?}");
}

#[test]
fn execs_are_priced_by_proc_spawn_less_its_loading_faults_when_it_ran() {
    // As above, with proc.spawn beside proc.exec: 1 ms natively (50 faults per op counted
    // natively), 2 ms in gVisor. Its faults cost 50 × 1 µs more there and are counted in the
    // application's own faults already: an exec is 1000 − 50 = 950 µs extra. Guest time:
    // 12 + 200 + 10 + 4 × 950 + 2 × 100 = 4222 µs.
    let mut spawn = run("native", "proc.spawn", "µs/op", &[999.0, 1000.0, 1001.0]);
    spawn.extras.insert("faults_per_op".into(), 50.0);
    let doc = with_processes(
        4222.0,
        vec![
            spawn,
            run("gvisor", "proc.spawn", "µs/op", &[1999.0, 2000.0, 2001.0]),
        ],
    );
    let r = &explain(&doc, &doc)[0];
    let exec = r.terms.iter().find(|t| t.class == "syscalls.exec").unwrap();
    assert!((exec.extra_s - 3800e-6).abs() < 1e-9, "{r:?}");
    assert_eq!(exec.cost_from, "proc.spawn − 50 × mm.pagefault");
    assert_predicted_exactly(r);
}

#[test]
fn a_web_servers_capacity_is_predicted_from_its_cpu_time_per_request() {
    // app.web's value is the most sessions within QoS: 900 natively, 200 in gVisor. Its counted
    // fixed load answered 10,000 requests with 0.2 s of the server's CPU (20 µs each), 30 kB
    // sent per request. A byte costs 0.8 ns more in gVisor (net.stream.tx: 40 Gbit/s native, 8
    // in gVisor): 24 µs per request; a round trip 50 µs more (net.rr: 20,000 and 10,000
    // trans/s), less its send and receive at getppid's +2 µs: 46 µs. Predicted capacity:
    // 20 / (20 + 24 + 46) = 2/9 of the native one, as measured.
    let mut doc = document(json!({}));
    let level = |backend: &str, samples: &[f64]| RunRecord {
        higher_is_better: true,
        ..run(backend, "app.web", "sessions", samples)
    };
    let mut native = level("native", &[890.0, 900.0, 910.0]);
    let counts = json!({
        "user_s": 0.15, "sys_s": 0.05,
        "net_round_trips": 10_000.0, "net_tx_bytes": 3.0e8
    });
    native.counted = Some(CountedRecord {
        reps: (0..2)
            .map(|_| CountedRep {
                value: 900.0,
                work: 10_000.0,
                elapsed_s: 1.2,
                wall_s: 1.5,
                counts: serde_json::from_value(counts.clone()).unwrap(),
                clock_pass: false,
            })
            .collect(),
        not_counted: Default::default(),
    });
    let rate = |backend: &str, workload: &str, unit: &str, v: f64| RunRecord {
        higher_is_better: true,
        ..run(backend, workload, unit, &[v * 0.99, v, v * 1.01])
    };
    doc.runs.retain(|r| r.workload == "sys.getppid");
    doc.runs.extend([
        native,
        level("gvisor", &[199.0, 200.0, 201.0]),
        rate("native", "net.stream.tx", "Gbit/s", 40.0),
        rate("gvisor", "net.stream.tx", "Gbit/s", 8.0),
        rate("native", "net.rr", "trans/s", 20_000.0),
        rate("gvisor", "net.rr", "trans/s", 10_000.0),
    ]);
    doc.efficiency = efficiency_records(&doc.runs, "native");
    let out = explain(&doc, &doc);
    let r = out
        .iter()
        .find(|r| r.workload == "app.web")
        .expect("app.web is explained");
    assert!((r.native_s - 20e-6).abs() < 1e-12, "{r:?}");
    assert!((r.measured.value - 2.0 / 9.0).abs() < 1e-9, "{r:?}");
    let term = |c: &str| r.terms.iter().find(|t| t.class == c).unwrap();
    assert!((term("net_tx_bytes").extra_s - 24e-6).abs() < 1e-9, "{r:?}");
    assert!(
        (term("net_round_trips").extra_s - 46e-6).abs() < 1e-9,
        "{r:?}"
    );
    assert!((r.predicted.value - 2.0 / 9.0).abs() < 1e-3, "{r:?}");
}

#[test]
fn path_lookups_are_priced_by_fs_open_less_its_close() {
    // Per op: 10 path calls and 10 faults. fs.open (an openat and a newfstatat, and a close)
    // costs 40 µs more in gVisor; a pipe call 2 µs more (sys.pipe: 4 µs more for its two
    // calls): a path call is (40 − 2) / 2 = 19 µs more, 190 µs per op, and the faults 10 µs:
    // 12 µs natively, 212 µs in gVisor.
    let mut doc = document(classed(json!({
        "syscalls": 10_000.0, "syscalls.path": 10_000.0
    })));
    doc.runs
        .retain(|r| !(r.backend == "gvisor" && r.workload == "synth.events"));
    doc.runs.extend([
        run("gvisor", "synth.events", "µs/op", &[211.0, 212.0, 213.0]),
        run("native", "fs.open", "ns/op", &[1999.0, 2000.0, 2001.0]),
        run("gvisor", "fs.open", "ns/op", &[41999.0, 42000.0, 42001.0]),
        run("native", "sys.pipe", "ns/op", &[499.0, 500.0, 501.0]),
        run("gvisor", "sys.pipe", "ns/op", &[4499.0, 4500.0, 4501.0]),
    ]);
    doc.efficiency = efficiency_records(&doc.runs, "native");
    let r = &explain(&doc, &doc)[0];
    let path = r.terms.iter().find(|t| t.class == "syscalls.path").unwrap();
    assert!((path.extra_ns - 19_000.0).abs() < 1e-6, "{path:?}");
    assert_eq!(path.cost_from, "fs.open − 0.5 × sys.pipe");
    assert_predicted_exactly(r);
}

#[test]
fn creating_calls_are_priced_by_fs_create_less_its_close() {
    // Per op: 4 path calls, 6 creating calls and 10 faults. fs.open costs 40 µs more in
    // gVisor (a lookup 19 µs more, as above); fs.create (a creating openat, a close and an
    // unlinkat) 100 µs more: a creating call is (100 − 2) / 2 = 49 µs more. Guest time: 12 +
    // 4 × 19 + 6 × 49 + 10 (faults) µs.
    let guest = 12.0 + 4.0 * 19.0 + 6.0 * 49.0 + 10.0;
    let mut doc = document(classed(json!({
        "syscalls": 10_000.0, "syscalls.path": 4_000.0, "syscalls.create": 6_000.0
    })));
    doc.runs
        .retain(|r| !(r.backend == "gvisor" && r.workload == "synth.events"));
    doc.runs.push(run(
        "gvisor",
        "synth.events",
        "µs/op",
        &[guest - 1.0, guest, guest + 1.0],
    ));
    doc.runs.extend(both("fs.open", "ns/op", 2000.0, 42000.0));
    doc.runs
        .extend(both("fs.create", "ns/op", 10000.0, 110000.0));
    doc.runs.extend(both("sys.pipe", "ns/op", 500.0, 4500.0));
    doc.efficiency = efficiency_records(&doc.runs, "native");
    let r = &explain(&doc, &doc)[0];
    let term = |c: &str| r.terms.iter().find(|t| t.class == c).unwrap();
    assert!(
        (term("syscalls.create").extra_ns - 49_000.0).abs() < 1e-6,
        "{r:?}"
    );
    assert_eq!(
        term("syscalls.create").cost_from,
        "fs.create − 0.5 × sys.pipe"
    );
    assert!(
        (term("syscalls.path").extra_ns - 19_000.0).abs() < 1e-6,
        "{r:?}"
    );
    assert_predicted_exactly(r);

    // Without fs.create the creating calls are priced as lookups, which each of them makes.
    doc.runs.retain(|r| r.workload != "fs.create");
    doc.efficiency = efficiency_records(&doc.runs, "native");
    let r = &explain(&doc, &doc)[0];
    let create = r
        .terms
        .iter()
        .find(|t| t.class == "syscalls.create")
        .unwrap();
    assert_eq!(create.cost_from, "fs.open − 0.5 × sys.pipe");
}

#[test]
fn a_sendfile_is_priced_by_fs_sendfile_less_its_bytes() {
    // Per op: one sendfile and 10 faults. fs.sendfile (32 KiB into a loopback socket) costs
    // 100 µs more in gVisor; a byte sent 0.8 ns more (net.stream.tx: 40 Gbit/s native, 8 in
    // gVisor), priced in the response bytes' class: the call is 100 − 26.2144 µs more. Guest
    // time: 12 + 73.7856 + 10 (faults) µs.
    let guest = 12.0 + 100.0 - 0.8e-3 * 32768.0 + 10.0;
    let mut doc = document(classed(json!({
        "syscalls": 1_000.0, "syscalls.sendfile": 1_000.0
    })));
    doc.runs
        .retain(|r| !(r.backend == "gvisor" && r.workload == "synth.events"));
    let gbit = |backend: &str, v: f64| RunRecord {
        higher_is_better: true,
        ..run(backend, "net.stream.tx", "Gbit/s", &[v, v, v])
    };
    doc.runs.extend([
        run(
            "gvisor",
            "synth.events",
            "µs/op",
            &[guest - 1.0, guest, guest + 1.0],
        ),
        run(
            "native",
            "fs.sendfile",
            "ns/op",
            &[10_000.0, 10_000.0, 10_000.0],
        ),
        run(
            "gvisor",
            "fs.sendfile",
            "ns/op",
            &[110_000.0, 110_000.0, 110_000.0],
        ),
        gbit("native", 40.0),
        gbit("gvisor", 8.0),
    ]);
    doc.efficiency = efficiency_records(&doc.runs, "native");
    let r = &explain(&doc, &doc)[0];
    let term = r.terms.iter().find(|t| t.class == "syscalls.sendfile");
    let extra = term.expect("priced").extra_ns;
    assert!((extra - 73_785.6).abs() < 1e-6, "{extra}");
    assert_predicted_exactly(r);
}

#[test]
fn prices_measured_after_each_repetition_give_a_second_prediction() {
    // The run's getppid costs 2 µs more in gVisor; measured after each of synth.events' own
    // repetitions it cost 3 µs more (3.1 µs against 0.1 µs natively): 100 calls × 3 µs + 10
    // faults × 1 µs = 310 µs extra, 322 µs in all.
    let mut doc = priced_events();
    let set = |doc: &mut RunDocument, backend: &str, v: f64| {
        let r = doc
            .runs
            .iter_mut()
            .find(|r| r.backend == backend && r.workload == "synth.events")
            .unwrap();
        r.round_prices
            .insert("sys.getppid".into(), vec![v - 1.0, v, v + 1.0]);
    };
    set(&mut doc, "native", 100.0);
    set(&mut doc, "gvisor", 3100.0);
    let r = &explain(&doc, &doc)[0];
    // The first prediction keeps the run's prices, and is exact.
    assert_predicted_exactly(r);
    let round = r
        .predicted_with_round_prices
        .as_ref()
        .expect("a second prediction");
    assert!((round.value - 12.0 / 322.0).abs() < 1e-9, "{round:?}");
    let term = r
        .terms
        .iter()
        .find(|t| t.class == "syscalls.other")
        .unwrap();
    assert_eq!(term.round_extra_ns, Some(3000.0));
    // Pages were not priced again: the round price is the run's.
    let faults = r.terms.iter().find(|t| t.class == "page_faults").unwrap();
    assert_eq!(faults.round_extra_ns, Some(faults.extra_ns));

    // Prices from another run (`--costs`) are used as they are, without a second prediction.
    let mut other = doc.clone();
    other.run_id = "another".into();
    assert!(explain(&doc, &other)[0]
        .predicted_with_round_prices
        .is_none());
    // Nor is there one with round prices on one side only.
    for r in doc.runs.iter_mut().filter(|r| r.backend == "native") {
        r.round_prices.clear();
    }
    assert!(explain(&doc, &doc)[0].predicted_with_round_prices.is_none());
}

#[test]
fn clock_reads_come_from_their_own_repetition_and_are_priced_by_a_clock_read() {
    // 50 clock reads per op, counted in a repetition of their own that ran 10x slower (100 ops
    // in it, not 1000) and counted nothing else; a read costs the guest 2 µs more.
    let mut doc = priced_events();
    let native = &mut doc.runs[0];
    native.counted.as_mut().unwrap().reps.push(CountedRep {
        value: 125.0,
        work: 100.0,
        elapsed_s: 0.0125,
        wall_s: 0.013,
        counts: [
            ("clock_reads".to_string(), 5_000.0),
            ("clock_reads.gettimeofday".to_string(), 5_000.0),
        ]
        .into(),
        clock_pass: true,
    });
    doc.runs[1] = run("gvisor", "synth.events", "µs/op", &[321.0, 322.0, 323.0]);
    doc.runs.push(run(
        "native",
        "time.clock_gettime",
        "ns/op",
        &[19.0, 20.0, 21.0],
    ));
    doc.runs.push(run(
        "gvisor",
        "time.clock_gettime",
        "ns/op",
        &[2019.0, 2020.0, 2021.0],
    ));
    doc.efficiency = efficiency_records(&doc.runs, "native");
    let r = &explain(&doc, &doc)[0];
    assert_predicted_exactly(r);
    let term = |c: &str| r.terms.iter().find(|t| t.class == c).unwrap();
    assert!((term("clock_reads").per_unit - 50.0).abs() < 1e-9, "{r:?}");
    assert!((term("clock_reads").extra_s - 100e-6).abs() < 1e-12);
    // The clock pass counted no calls: the calls per op are those of the other repetitions.
    assert!((term("syscalls.other").per_unit - 100.0).abs() < 1e-9);
    assert!((term("page_faults").per_unit - 10.0).abs() < 1e-9);

    // Where the clock pass could not count, the class is named as missing, not priced at zero.
    let native = &mut doc.runs[0];
    let counted = native.counted.as_mut().unwrap();
    counted.reps.retain(|r| !r.clock_pass);
    counted
        .not_counted
        .insert("clock_reads".into(), "no uprobe events".into());
    let r = &explain(&doc, &doc)[0];
    assert!(r.terms.iter().all(|t| t.class != "clock_reads"));
    let missing = r.missing.join("\n");
    assert!(
        missing.contains("clock_reads: not counted (no uprobe events)"),
        "{missing}"
    );
}
