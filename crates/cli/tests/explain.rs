//! `explain` end to end, and its honesty check: `synth.events` does per operation 100
//! `getppid` calls and 8 first-touch page faults, exactly what `sys.getppid` and `mm.pagefault`
//! price, so its efficiency in every guest must be predicted from the native event counts and
//! those two workloads' costs. Both sides are measured in the same run, repetitions
//! interleaved, so the band allows for the noise of a shared two-CPU host, not for a model
//! error: a prediction off by a factor (a missed class of events, counts of the wrong process
//! tree, a cost per op instead of per event) fails it.

mod support;
use support::{available, ci, hvbench, only_document, text, tmpdir};

use serde_json::Value;

/// The explanation of `synth.events` on `backend`.
fn explained<'a>(doc: &'a Value, backend: &str) -> &'a Value {
    doc["explain"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["backend"] == backend && r["workload"] == "synth.events")
        .unwrap_or_else(|| panic!("no explain record for {backend}: {}", doc["explain"]))
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Relative distance between prediction and measurement allowed (30%); twice that when the
/// run itself could not tell them apart (their intervals overlap: a loaded host). A missing
/// class of events or counts of the wrong process tree are off by a factor, far beyond either.
const BAND: f64 = 0.30;

fn overlap(r: &Value) -> bool {
    let f = |a: &str, b: &str| r[a][b].as_f64().unwrap();
    f("predicted", "ci_low") <= f("measured", "ci_high")
        && f("measured", "ci_low") <= f("predicted", "ci_high")
}

#[test]
fn explain_needs_a_counted_workload() {
    let out = tmpdir("cli-explain", "refused");
    let o = hvbench()
        .args([
            "run",
            "--workload",
            "sys.getppid",
            "--explain",
            "-q",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        text(&o).contains("--explain needs an application"),
        "{}",
        text(&o)
    );
    let _ = std::fs::remove_dir_all(out);
}

/// One run of the synthetic workload with its explanation on `backends`: the run directory and
/// its document.
fn synthetic_run(attempt: u32, backends: &[&str]) -> (std::path::PathBuf, Value) {
    let out = tmpdir("cli-explain", &format!("synthetic-{attempt}"));
    let mut cmd = hvbench();
    cmd.arg("run");
    for b in backends {
        cmd.args(["--backend", b]);
    }
    let o = cmd
        .args([
            "--workload",
            "synth.events",
            "--explain",
            "--reps",
            "6",
            "--max-reps",
            "10",
            "--duration",
            "0.3",
            "-q",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("Explain: native event counts"), "{stdout}");
    let doc = only_document(&out);
    native_counts_are_the_mix(&doc);
    (out, doc)
}

/// The native counts are those of the mix: at least 100 system calls and 8 page faults per op
/// (plus the agent's own few), every repetition.
fn native_counts_are_the_mix(doc: &Value) {
    let native = doc["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["backend"] == "native" && r["workload"] == "synth.events")
        .unwrap();
    let reps = native["counted"]["reps"].as_array().unwrap();
    assert!(!reps.is_empty(), "{}", native["counted"]);
    for rep in reps {
        let work = rep["work"].as_f64().unwrap();
        let per_op = |k: &str| {
            rep["counts"][k]
                .as_f64()
                .unwrap_or_else(|| panic!("{k}: {rep}"))
                / work
        };
        assert!((100.0..101.0).contains(&per_op("syscalls")), "{rep}");
        assert!((8.0..9.0).contains(&per_op("faults_minor")), "{rep}");
    }
}

/// Whether `backend`'s prediction in `doc` is within its band of the measurement, and if not,
/// by how much it missed.
fn within_band(doc: &Value, backend: &str) -> Result<(), String> {
    let r = explained(doc, backend);
    let measured = r["measured"]["value"].as_f64().unwrap();
    let predicted = r["predicted"]["value"].as_f64().unwrap();
    let off = (predicted - measured).abs() / measured;
    eprintln!(
        "{backend}: measured {measured:.4}, predicted {predicted:.4}, off by {:.1}%",
        off * 100.0
    );
    let band = if overlap(r) { 2.0 * BAND } else { BAND };
    if off > band {
        return Err(format!(
            "{backend}: predicted {predicted:.4} against measured {measured:.4} ({:.0}% off): {r}",
            off * 100.0
        ));
    }
    Ok(())
}

#[test]
fn the_synthetic_workload_is_predicted_on_namespace_gvisor_and_uml() {
    if !is_root() {
        assert!(!ci(), "CI runs as root");
        eprintln!("counting kernel events needs root: skipped");
        return;
    }
    // A prediction and a measurement tens of seconds apart on a shared host: a burst of
    // load between them can move one and not the other, and gVisor's price of a system call
    // itself moves by a factor between runs here (its systrap platform answers fast while the
    // Sentry's thread still polls, slowly once it slept: sys.getppid cost +4.0, +5.1 and
    // +19.5 µs in three runs of one CI job). So each backend gets five attempts, a later one
    // running only the backends that missed (all three had to meet their band in the same
    // attempt before, and a CI job missed five times in a row on gVisor or UML in turn); every
    // miss says why, and a model that is wrong misses all of them.
    let mut pending: Vec<&str> = Vec::new();
    let mut first: Option<(std::path::PathBuf, Value)> = None;
    let mut misses = Vec::new();
    for attempt in 0..5 {
        let backends: &[&str] = if attempt == 0 {
            &["namespace", "gvisor", "uml"]
        } else {
            &pending
        };
        let (out, doc) = synthetic_run(attempt, backends);
        let mut missed = Vec::new();
        for &b in backends {
            if !available(&doc, b) {
                assert!(!ci(), "{b} must run in CI");
                eprintln!("{b} unavailable here: skipped");
                continue;
            }
            if let Err(miss) = within_band(&doc, b) {
                eprintln!("attempt {attempt}: {miss}");
                misses.push(miss);
                missed.push(b);
            }
        }
        pending = missed;
        if first.is_none() {
            first = Some((out, doc));
        } else {
            let _ = std::fs::remove_dir_all(out);
        }
        if pending.is_empty() {
            break;
        }
    }
    assert!(
        pending.is_empty(),
        "{pending:?} missed five attempts: {}",
        misses.join(" || ")
    );
    // The first attempt ran every backend: its document is checked and rendered.
    let (out, doc) = first.unwrap();
    let checked = ["namespace", "gvisor", "uml"]
        .iter()
        .filter(|b| available(&doc, b))
        .count();
    guests_counted_their_own_faults(&doc);

    // Rendered again from the document alone, in every format.
    let path = support::documents(&out).pop().unwrap();
    let again = hvbench().arg("explain").arg(&path).output().unwrap();
    assert!(again.status.success(), "{}", text(&again));
    let again = String::from_utf8_lossy(&again.stdout);
    if checked > 0 {
        assert!(again.contains("synth.events on "), "{again}");
    }
    let csv = hvbench()
        .arg("explain")
        .arg(&path)
        .arg("--csv")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&csv.stdout).starts_with("workload,backend,class,"));
    let md = hvbench()
        .arg("explain")
        .arg(&path)
        .arg("--markdown")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&md.stdout).contains("| Workload | Backend | Measured |"));
    let html = hvbench()
        .arg("explain")
        .arg(&path)
        .arg("--html")
        .arg(&out)
        .output()
        .unwrap();
    assert!(html.status.success(), "{}", text(&html));
    assert!(std::fs::read_to_string(out.join("explain.html"))
        .unwrap()
        .contains("<svg"));
    let _ = std::fs::remove_dir_all(out);
}

/// Each guest counted one repetition itself: UML's kernel (no perf) through /proc sees the
/// same 8 first-touch faults per operation; gVisor, whose /proc keeps no fault counts, says
/// so instead of reporting zero.
fn guests_counted_their_own_faults(doc: &serde_json::Value) {
    for b in ["uml", "gvisor"] {
        if !available(doc, b) {
            continue;
        }
        let run = doc["runs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["backend"] == b && r["workload"] == "synth.events")
            .unwrap();
        let counted = &run["counted"];
        let reps = counted["reps"].as_array().expect("a guest counts too");
        assert!(!reps.is_empty(), "{b}: {counted}");
        // A second prediction from the guest's counts exactly when the guest counted faults
        // (the only class these two kernels count of synth.events).
        let faults = reps.iter().all(|r| r["counts"]["faults_minor"].is_number());
        let r = explained(doc, b);
        assert_eq!(
            r["predicted_with_guest_counts"].is_object(),
            faults,
            "{b}: {r}"
        );
        for rep in reps {
            match rep["counts"]["faults_minor"].as_f64() {
                Some(f) => {
                    let per_op = f / rep["work"].as_f64().unwrap();
                    assert!((8.0..12.0).contains(&per_op), "{b}: {per_op} per op: {rep}");
                }
                None => assert!(
                    counted["not_counted"]["faults_minor"].is_string(),
                    "{b}: neither counted nor said why: {counted}"
                ),
            }
        }
    }
}
