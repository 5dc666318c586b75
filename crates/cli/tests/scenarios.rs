//! The `lifecycle`, `scale` and `isolation` commands end to end on the native backend, and what
//! Ctrl-C and SIGTERM leave behind: no process, no temporary directory, a valid partial
//! document, exit code 130. Properties only, never timings.

mod support;
use support::{ci, documents, hvbench, only_document, text, tmpdir};

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn lifecycle_runs_end_to_end_and_prints_its_tables() {
    let out = tmpdir("cli-scenarios", "lifecycle");
    let o = hvbench()
        .args([
            "lifecycle",
            "--backend",
            "native",
            "--vcpus",
            "1",
            "--boots",
            "2",
        ])
        .args([
            "--idle-seconds",
            "1",
            "--settle-seconds",
            "0",
            "-q",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("Boot time") && stdout.contains("Idle guest") && stdout.contains("Memory")
    );
    let doc = only_document(&out);
    assert_eq!(doc["scenario"], "lifecycle");
    assert_eq!(doc["scenario_data"]["kind"], "lifecycle");
    assert_eq!(
        doc["scenario_data"]["rows"][0]["boots"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let _ = std::fs::remove_dir_all(out);
}

/// `hvbench lifecycle` on `backend` (one vCPU count, two boots, a short idle window): the
/// idle guest's host memory is split into guest RAM backed and the VMM's own (issue 18).
/// Skipped where the backend cannot start, which CI forbids.
fn lifecycle_splits_memory(backend: &str, own_kernel: bool) {
    let out = tmpdir("cli-scenarios", &format!("lifecycle-memory-{backend}"));
    let o = hvbench()
        .args(["lifecycle", "--backend", backend, "--vcpus", "1"])
        .args([
            "--boots",
            "2",
            "--idle-seconds",
            "1",
            "--settle-seconds",
            "0",
        ])
        .args(["-q", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let doc = only_document(&out);
    if doc["backends"][0]["availability"]["status"] != "available" {
        assert!(!ci(), "{backend} must run in CI: {}", doc["backends"][0]);
        eprintln!("{backend} unavailable here: skipped");
        let _ = std::fs::remove_dir_all(out);
        return;
    }
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("VMM own") && stdout.contains("guest RAM backed"),
        "{stdout}"
    );
    let m = &doc["scenario_data"]["rows"][0]["memory"];
    let kib = |f: &str| {
        m[f].as_u64()
            .unwrap_or_else(|| panic!("{backend}: {f} missing in {m}"))
    };
    let (own, backed) = (kib("vmm_own_kib"), kib("guest_ram_backed_kib"));
    assert!(own > 0 && backed > 0, "{m}");
    assert!(
        kib("vmm_own_rss_kib") >= own,
        "RSS counts shared pages whole: {m}"
    );
    assert!(m["guest_ram"].as_str().is_some_and(|g| !g.is_empty()));
    let parts = m["vmm_parts"].as_array().unwrap();
    let sum: u64 = parts.iter().map(|p| p["pss_kib"].as_u64().unwrap()).sum();
    assert_eq!(sum, own, "the parts add up to the VMM's own memory: {m}");
    let largest = m["largest_mappings"].as_array().unwrap();
    assert!(!largest.is_empty());
    assert!(largest
        .iter()
        .all(|l| l["pss_kib"].as_u64().unwrap() <= own));
    let per_process: u64 = m["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["own_pss_kib"].as_u64().unwrap() + p["guest_ram_pss_kib"].as_u64().unwrap())
        .sum();
    assert_eq!(per_process, own + backed);
    if own_kernel {
        let used = kib("guest_used_kib") as i64;
        assert_eq!(
            m["backed_minus_used_kib"].as_i64(),
            Some(backed as i64 - used)
        );
    } else {
        assert!(m["backed_minus_used_kib"].is_null());
    }
    if backend == "qemu-tcg" {
        // QEMU's RAM block is exactly the configured memory; TCG's code buffer is its own.
        assert_eq!(kib("guest_ram_mapped_kib"), 256 * 1024);
        assert!(parts.iter().any(|p| p["part"] == "jit_code"), "{m}");
    }
    let _ = std::fs::remove_dir_all(out);
}

#[test]
fn lifecycle_splits_memory_on_qemu_tcg() {
    lifecycle_splits_memory("qemu-tcg", true);
}

#[test]
fn lifecycle_splits_memory_on_uml() {
    lifecycle_splits_memory("uml", true);
}

#[test]
fn lifecycle_splits_memory_on_gvisor() {
    // gVisor reports the host's MemTotal, but its own use from the sentry's accounting.
    lifecycle_splits_memory("gvisor", true);
}

#[test]
fn lifecycle_splits_memory_on_namespace() {
    lifecycle_splits_memory("namespace", false);
}

#[test]
fn scale_runs_end_to_end_and_reports_every_guest() {
    let out = tmpdir("cli-scenarios", "scale");
    let o = hvbench()
        .args([
            "scale",
            "--backend",
            "native",
            "--guests",
            "1,2",
            "--workload",
            "cpu.primes",
        ])
        .args([
            "--reps",
            "2",
            "--warmup",
            "0",
            "--duration",
            "0.05",
            "-q",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("aggregate events/s"));
    let doc = only_document(&out);
    let d = &doc["scenario_data"];
    assert_eq!(d["kind"], "scalability");
    let steps = d["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2);
    for (step, n) in steps.iter().zip([1, 2]) {
        assert_eq!(step["guests"], n);
        assert_eq!(step["per_guest"].as_array().unwrap().len(), n);
        assert_eq!(step["failed"], 0);
        let sum: f64 = step["per_guest"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["throughput"].as_f64().unwrap())
            .sum();
        assert!((step["aggregate"].as_f64().unwrap() - sum).abs() <= 1e-9 * sum);
    }
    let _ = std::fs::remove_dir_all(out);
}

#[test]
fn isolation_runs_end_to_end() {
    let out = tmpdir("cli-scenarios", "isolation");
    let o = hvbench()
        .args([
            "isolation",
            "--backend",
            "native",
            "--guests",
            "2",
            "--stress",
            "fork,net-recv,disk",
        ])
        .args([
            "--steady",
            "cpu.primes",
            "--reps",
            "2",
            "--duration",
            "0.05",
            "-q",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("stressed guest"));
    let doc = only_document(&out);
    let rows = doc["scenario_data"]["rows"].as_array().unwrap();
    // Native guests have the host's loopback: net-recv streams from a host peer; and a
    // scratch disk of their own, which the disk stressor writes to.
    for name in ["fork", "net-recv", "disk"] {
        let row = rows.iter().find(|r| r["stressor"] == name).unwrap();
        assert_eq!(row["status"], "ran", "{name}: {row}");
        assert!(
            row["stressed_pct"].is_number() && row["normal_pct"].is_number(),
            "{name}: {row}"
        );
    }
    let disk = rows.iter().find(|r| r["stressor"] == "disk").unwrap();
    assert!(
        disk["note"].as_str().unwrap().contains("own scratch disk"),
        "{disk}"
    );
    assert_eq!(
        disk["guests"][0]["stress_labels"]["disk_target"], "device",
        "{disk}"
    );
    let _ = std::fs::remove_dir_all(out);
}

/// The network namespaces of a process, by the prefix `hvb<pid>-` hvbench names them with.
fn netns_of(pid: u32) -> Vec<String> {
    let o = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&format!("hvb{pid}-")))
        .map(str::to_string)
        .collect()
}

/// Namespace guests get a veth pair each (root only): both net stressors stream between the
/// stressed guest and a host peer inside its namespaces, and no namespace outlives the run.
#[test]
fn isolation_net_stressors_run_in_namespace_guests_and_leave_no_namespace() {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let ip = Command::new("ip")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if !root || !ip {
        eprintln!("skipped: needs root and iproute2");
        return;
    }
    let out = tmpdir("cli-scenarios", "isolation-net");
    let child = hvbench()
        .args([
            "isolation",
            "--backend",
            "namespace",
            "--guests",
            "2",
            "--stress",
            "net-send,net-recv",
        ])
        .args([
            "--steady",
            "cpu.primes",
            "--reps",
            "2",
            "--warmup",
            "0",
            "--duration",
            "0.05",
            "-q",
            "--out",
        ])
        .arg(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let doc = only_document(&out);
    let d = &doc["scenario_data"];
    if d["notes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n.as_str().unwrap().contains("namespace is unavailable"))
    {
        eprintln!("skipped: the namespace backend is unavailable here");
        let _ = std::fs::remove_dir_all(out);
        return;
    }
    let rows = d["rows"].as_array().unwrap();
    for name in ["net-send", "net-recv"] {
        let row = rows.iter().find(|r| r["stressor"] == name).unwrap();
        assert_eq!(row["status"], "ran", "{name}: {row}");
        // A number, or DNR: never a number without the stream.
        let stressed = &row["guests"][0];
        if row["stressed_dnr"] == false {
            assert!(row["stressed_pct"].is_number(), "{name}: {row}");
            assert!(
                stressed["stress_extras"]["stress_net_bytes"]
                    .as_f64()
                    .unwrap()
                    > 0.0,
                "{name}: {row}"
            );
        } else {
            assert!(row["stressed_pct"].is_null(), "{name}: {row}");
        }
    }
    let left = netns_of(pid);
    assert!(left.is_empty(), "network namespaces left behind: {left:?}");
    let _ = std::fs::remove_dir_all(out);
}

#[test]
fn bad_arguments_are_refused_before_anything_runs() {
    let out = tmpdir("cli-scenarios", "bad");
    for args in [
        vec!["isolation", "--backend", "native", "--stress", "gpu"],
        vec!["isolation", "--backend", "native", "--guests", "1"],
        vec!["scale", "--backend", "native", "--guests", "0"],
        vec!["scale", "--backend", "nope"],
        vec!["scale", "--backend", "native", "--workload", "stress.cpu"],
        vec!["lifecycle", "--backend", "native", "--boots", "1"],
    ] {
        let o = hvbench()
            .args(&args)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        assert!(!o.status.success(), "{args:?} succeeded");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("error"), "{args:?}: {err}");
        assert!(documents(&out).is_empty(), "{args:?} wrote a document");
    }
    let o = hvbench()
        .args(["isolation", "--backend", "native", "--stress", "gpu"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("net-send"));
    let _ = std::fs::remove_dir_all(out);
}

/// Live processes whose environment holds `marker`.
fn processes_with(marker: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) {
            if env
                .split(|&b| b == 0)
                .any(|kv| kv == format!("HVBENCH_SIGNAL_TEST={marker}").as_bytes())
            {
                found.push(pid);
            }
        }
    }
    found
}

fn stop_mid_run(signal: libc::c_int, name: &str) {
    let out = tmpdir("cli-scenarios", &format!("{name}-out"));
    let tmp = tmpdir("cli-scenarios", &format!("{name}-tmp"));
    let marker = format!("{}-{name}", std::process::id());
    let mut child = hvbench()
        .args([
            "scale",
            "--backend",
            "native",
            "--guests",
            "3",
            "--workload",
            "cpu.primes",
        ])
        .args([
            "--reps",
            "1000",
            "--warmup",
            "0",
            "--duration",
            "0.05",
            "-q",
            "--out",
        ])
        .arg(&out)
        .env("TMPDIR", &tmp)
        .env("HVBENCH_SIGNAL_TEST", &marker)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the guests are measuring (their samples are in the journal).
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let journal = std::fs::read_dir(&out)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().ends_with(".journal.jsonl"));
        let text = journal
            .and_then(|j| std::fs::read_to_string(j).ok())
            .unwrap_or_default();
        if text.contains("\"guests\":3,\"label\"") {
            break;
        }
        assert!(Instant::now() < deadline, "no sample arrived");
        assert!(child.try_wait().unwrap().is_none(), "hvbench ended early");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!processes_with(&marker).is_empty());
    // SAFETY: kill has no memory-safety preconditions; the pid is our child.
    unsafe { libc::kill(child.id() as libc::pid_t, signal) };
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", text(&o));
    let doc = only_document(&out);
    assert_eq!(doc["interrupted"], true);
    let steps = doc["scenario_data"]["steps"].as_array().unwrap();
    // The partial step is kept with what it measured.
    assert_eq!(steps.len(), 1);
    assert_eq!(steps[0]["guests"], 3);
    assert!(steps[0]["per_guest"]
        .as_array()
        .unwrap()
        .iter()
        .any(|g| !g["samples"].as_array().unwrap().is_empty()));
    // Nothing left behind: no process, no temporary directory.
    assert!(processes_with(&marker).is_empty(), "processes left behind");
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "left in TMPDIR: {left:?}");
    let _ = std::fs::remove_dir_all(out);
    let _ = std::fs::remove_dir_all(tmp);
}

#[test]
fn sigint_stops_every_guest_and_keeps_a_partial_document() {
    stop_mid_run(libc::SIGINT, "sigint");
}

#[test]
fn sigterm_stops_every_guest_and_keeps_a_partial_document() {
    stop_mid_run(libc::SIGTERM, "sigterm");
}
