//! End-to-end tests of the `hvbench` command line on the native backend.
//!
//! They assert properties that hold on any machine (a document exists and parses, every
//! workload is present with the requested samples, medians lie in their intervals, errors name
//! the fix), never timings.

mod support;
use support::{hvbench, only_document, text, tmpdir};

use std::path::PathBuf;

#[test]
fn list_shows_every_workload_with_unit_and_direction() {
    let o = hvbench().arg("list").output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    for w in [
        "sys.getppid",
        "cpu.dhrystone",
        "cpu.primes",
        "mem.latency",
        "proc.fork",
    ] {
        let line = out
            .lines()
            .find(|l| l.starts_with(w))
            .unwrap_or_else(|| panic!("{w} missing:\n{out}"));
        assert!(line.contains("higher") || line.contains("lower"), "{line}");
    }
}

#[test]
fn native_run_writes_a_complete_document() {
    let out = tmpdir("cli-test", "native");
    let workloads = [
        "sys.getppid",
        "cpu.primes",
        "sched.ctxswitch.same",
        "proc.fork",
    ];
    let mut cmd = hvbench();
    cmd.args([
        "run",
        "--backend",
        "native",
        "--reps",
        "3",
        "--warmup",
        "0",
        "--duration",
        "0.02",
        "-q",
        "--out",
    ])
    .arg(&out);
    for w in workloads {
        cmd.args(["--workload", w]);
    }
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("Result document:"), "{stdout}");
    let doc = only_document(&out);
    assert_eq!(doc["schema_version"], hvbench_core::results::SCHEMA_VERSION);
    assert_eq!(doc["interrupted"], false);
    assert!(
        doc["efficiency"].as_array().unwrap().is_empty(),
        "only native ran"
    );
    let runs = doc["runs"].as_array().unwrap();
    for w in workloads {
        let r = runs
            .iter()
            .find(|r| r["workload"] == w)
            .unwrap_or_else(|| panic!("{w} missing"));
        assert_eq!(r["backend"], "native");
        assert_eq!(r["status"], "ok", "{r}");
        let samples = r["samples"].as_array().unwrap();
        assert!(samples.len() >= 3, "{w}: {} samples", samples.len());
        assert!(samples.iter().all(|s| s.as_f64().unwrap() > 0.0));
        let s = &r["summary"];
        let (lo, med, hi) = (
            s["ci_low"].as_f64().unwrap(),
            s["median"].as_f64().unwrap(),
            s["ci_high"].as_f64().unwrap(),
        );
        assert!(
            lo <= med && med <= hi,
            "{w}: median {med} outside [{lo}, {hi}]"
        );
        assert_eq!(r["sample_details"].as_array().unwrap().len(), samples.len());
    }
    // The journal holds every measured sample too.
    let journal = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".journal.jsonl"))
        .expect("a journal");
    let lines = std::fs::read_to_string(journal).unwrap();
    assert!(
        lines
            .lines()
            .filter(|l| l.contains("\"type\":\"sample\""))
            .count()
            >= 12
    );
    let _ = std::fs::remove_dir_all(out);
}

#[test]
fn report_renders_a_document_again() {
    let out = tmpdir("cli-test", "report");
    let o = hvbench()
        .args([
            "run",
            "--backend",
            "native",
            "--workload",
            "sys.getppid",
            "--reps",
            "2",
            "--warmup",
            "0",
            "--duration",
            "0.01",
            "-q",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let doc = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .unwrap();
    let r = hvbench().arg("report").arg(&doc).output().unwrap();
    assert!(r.status.success(), "{}", text(&r));
    assert!(String::from_utf8_lossy(&r.stdout).contains("sys.getppid"));
    let _ = std::fs::remove_dir_all(out);
}

#[test]
fn bad_input_is_refused_before_anything_runs() {
    let cases: [(&[&str], &str); 5] = [
        (&["run", "--workload", "sys.nosuch"], "valid workloads: "),
        (
            &["run", "--backend", "vmware-magic"],
            "valid backends: native",
        ),
        (&["run", "--reps", "0"], "--reps must be at least 2"),
        (&["run", "--suite", "nosuch"], "unknown suite"),
        (&["run", "--duration=0"], "--duration"),
    ];
    for (args, needle) in cases {
        let o = hvbench().args(args).output().unwrap();
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(
            text(&o).contains(needle),
            "{args:?}: expected {needle:?} in:\n{}",
            text(&o)
        );
    }
}

#[test]
fn unwritable_output_directory_is_refused() {
    let dir = tmpdir("cli-test", "ro");
    let file = dir.join("a-file");
    std::fs::write(&file, b"x").unwrap();
    // A path under a regular file can never be created, even by root.
    let o = hvbench()
        .args(["run", "--workload", "sys.getppid", "--out"])
        .arg(file.join("sub"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(text(&o).contains("output directory"), "{}", text(&o));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn report_refuses_files_that_are_not_documents() {
    let dir = tmpdir("cli-test", "notdoc");
    let cases = [
        ("garbage.json", "this is not json", "not JSON"),
        ("other.json", "{\"hello\": 1}", "schema_version"),
        ("newer.json", "{\"schema_version\": 999}", "newer"),
    ];
    for (name, content, needle) in cases {
        let p = dir.join(name);
        std::fs::write(&p, content).unwrap();
        let o = hvbench().arg("report").arg(&p).output().unwrap();
        assert!(!o.status.success());
        let t = text(&o);
        assert!(t.contains(needle) && t.contains(name), "{name}: {t}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// SIGINT in the middle of a run: exit code 130, a valid partial document marked interrupted,
/// the samples measured so far kept, and no agent process left behind.
#[test]
fn interrupted_run_keeps_a_valid_partial_document() {
    let out = tmpdir("cli-test", "sigint");
    // Inherited by every process the run starts, so leftovers can be found by their environment.
    let mark = format!("sigint-{}", std::process::id());
    let child = hvbench()
        .args([
            "run",
            "--backend",
            "native",
            "--suite",
            "quick",
            "--reps",
            "50",
            "--max-reps",
            "50",
            "--warmup",
            "0",
            "--duration",
            "0.05",
            "-q",
            "--out",
        ])
        .arg(&out)
        .env("HVBENCH_TEST_MARK", &mark)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the journal shows measured samples.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let journal = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().ends_with(".jsonl"));
        if let Some(j) = journal {
            if std::fs::read_to_string(j)
                .unwrap()
                .matches("\"type\":\"sample\"")
                .count()
                >= 3
            {
                break;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no samples within 60 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // SAFETY: plain kill(2) of our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", text(&o));
    let doc = only_document(&out);
    assert_eq!(doc["interrupted"], true);
    let n: usize = doc["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["samples"].as_array().unwrap().len())
        .sum();
    assert!(
        n >= 3,
        "the samples measured before the stop are kept ({n})"
    );
    // No process of that run is left.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let needle = format!("HVBENCH_TEST_MARK={mark}");
    let orphans: Vec<PathBuf> = std::fs::read_dir("/proc")
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            std::fs::read(p.join("environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|v| v == needle.as_bytes()))
        })
        .collect();
    assert!(orphans.is_empty(), "left behind: {orphans:?}");
    let _ = std::fs::remove_dir_all(out);
}

#[test]
fn pinned_native_run_records_the_pinning_and_refuses_cpus_it_may_not_use() {
    let out = tmpdir("cli-test", "pinned");
    let o = hvbench()
        .args([
            "run",
            "--backend",
            "native",
            "--workload",
            "sys.getppid",
            "--reps",
            "2",
            "--warmup",
            "0",
            "--duration",
            "0.02",
            "--pin",
            "--placement",
            "spread",
            "-q",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("pinned, spread on CPUs"),
        "{}",
        text(&o)
    );
    let doc = only_document(&out);
    assert_eq!(doc["settings"]["pinning"]["placement"], "spread");
    assert!(!doc["host"]["topology"]["cpus"]
        .as_array()
        .unwrap()
        .is_empty());
    let native = &doc["backends"][0]["guests"][0]["config"]["settings"]["pinning"];
    assert!(native.as_str().unwrap().starts_with("CPUs "), "{native}");

    let o = hvbench()
        .args(["run", "--backend", "native", "--pin", "4095", "-q", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        text(&o).contains("is not one this process may use"),
        "{}",
        text(&o)
    );
}
