//! `kill -9` of hvbench leaves nothing behind: while a guest of each backend is measuring,
//! hvbench is SIGKILLed; within 2 s no process it started remains (its watchdog killed the
//! guest's cgroup and process groups), and neither its work directory nor its cgroups do.
//! When the watchdog is killed too, the next start removes the leftovers and says so.
//!
//! Processes are recognised by a marker variable in the environment of everything the test's
//! hvbench starts; each run gets a private TMPDIR, so its work directories are countable.

mod support;
use support::{ci, hvbench, text, tmpdir};

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

const MARKER_VAR: &str = "HVBENCH_KILL_TEST";

/// One run at a time: the marker scan and the cgroup check look at the whole machine.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Processes whose environment holds `marker`, with their command lines.
fn marked(marker: &str) -> Vec<(u32, String)> {
    let needle = format!("{MARKER_VAR}={marker}");
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(env) = std::fs::read(e.path().join("environ")) else {
            continue;
        };
        if env.split(|&b| b == 0).any(|kv| kv == needle.as_bytes()) {
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            // A zombie has no environment left; one that still reads is alive.
            v.push((pid, cmd));
        }
    }
    v
}

/// Entries named `hvbench-<pid>-…` under `dir`.
fn owned_by(dir: &Path, pid: u32) -> Vec<PathBuf> {
    let prefix = format!("hvbench-{pid}-");
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Starts `hvbench run` on `backend` with a long job, in `tmp`, marked with `marker`.
fn start_run(backend: &str, tmp: &Path, out: &Path, marker: &str) -> Child {
    hvbench()
        .args([
            "run",
            "--backend",
            backend,
            "--workload",
            "sys.getppid",
            "--reps",
            "40",
            "--warmup",
            "0",
            "--duration",
            "0.2",
            "-q",
            "--out",
        ])
        .arg(out)
        .env("TMPDIR", tmp)
        .env(MARKER_VAR, marker)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until the journal in `out` has a sample from `backend`: its guest is up and measuring.
/// `None` with the run's output when the run ended first (the backend is unavailable here).
fn wait_for_guest(child: &mut Child, out: &Path, backend: &str) -> Result<(), String> {
    let needle = format!("\"backend\":\"{backend}\"");
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                use std::io::Read;
                let _ = e.read_to_string(&mut err);
            }
            return Err(format!("hvbench ended first ({status}): {err}"));
        }
        let journals = std::fs::read_dir(out).into_iter().flatten().flatten();
        for j in journals.filter(|e| e.file_name().to_string_lossy().ends_with(".jsonl")) {
            let text = std::fs::read_to_string(j.path()).unwrap_or_default();
            if text
                .lines()
                .any(|l| l.contains("\"type\":\"sample\"") && l.contains(&needle))
            {
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err("no sample within 120 s".into())
}

fn cgroups_of(pid: u32) -> Vec<PathBuf> {
    [
        "/sys/fs/cgroup",
        "/sys/fs/cgroup/unified",
        "/sys/fs/cgroup/cpuacct",
    ]
    .iter()
    .flat_map(|r| owned_by(Path::new(r), pid))
    .collect()
}

/// Polls until `done` or the time is up; true when done.
fn within(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    loop {
        if done() {
            return true;
        }
        if t0.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn kill9(pid: u32) {
    // SAFETY: kill has no memory-safety preconditions; `pid` is a child of this test (or its
    // watchdog, identified by the marker in its environment).
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGKILL);
    }
}

fn killed_mid_run(backend: &str, required: bool) {
    let _one = serial();
    let tmp = tmpdir("killed", &format!("{backend}-tmp"));
    let out = tmpdir("killed", &format!("{backend}-out"));
    let marker = format!("{backend}-{}", std::process::id());
    let mut child = start_run(backend, &tmp, &out, &marker);
    let pid = child.id();
    if let Err(why) = wait_for_guest(&mut child, &out, backend) {
        let _ = child.kill();
        let _ = child.wait();
        assert!(!(required && ci()), "{backend} must run in CI: {why}");
        eprintln!("skipping {backend}: {why}");
        return;
    }
    let before = marked(&marker);
    assert!(
        before.len() > 2,
        "{backend}: hvbench, its watchdog and the guest's processes should be marked: {before:?}"
    );
    kill9(pid);
    let _ = child.wait();
    let t0 = Instant::now();
    let guests_gone = within(Duration::from_secs(2), || {
        marked(&marker)
            .iter()
            .all(|(_, cmd)| cmd.contains(" watchdog "))
    });
    let took = t0.elapsed();
    assert!(
        guests_gone,
        "{backend}: guest processes still there 2 s after kill -9: {:?}",
        marked(&marker)
    );
    eprintln!("{backend}: guest processes gone {took:?} after kill -9");
    assert!(
        within(Duration::from_secs(10), || marked(&marker).is_empty()),
        "{backend}: the watchdog did not finish: {:?}",
        marked(&marker)
    );
    assert_eq!(
        owned_by(&tmp, pid),
        Vec::<PathBuf>::new(),
        "{backend}: work directories"
    );
    assert_eq!(cgroups_of(pid), Vec::<PathBuf>::new(), "{backend}: cgroups");
    let _ = std::fs::remove_dir_all(&tmp);
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn kill_9_during_a_namespace_run_leaves_nothing() {
    killed_mid_run("namespace", true);
}

#[test]
fn kill_9_during_a_gvisor_run_leaves_nothing() {
    killed_mid_run("gvisor", true);
}

#[test]
fn kill_9_during_a_uml_run_leaves_nothing() {
    killed_mid_run("uml", true);
}

#[test]
fn kill_9_during_a_qemu_tcg_run_leaves_nothing() {
    killed_mid_run("qemu-tcg", false);
}

/// With its watchdog killed as well, a run's leftovers stay until the next start, which
/// removes them and says so in one line.
#[test]
fn the_next_start_removes_what_a_run_killed_with_its_watchdog_left() {
    let _one = serial();
    let tmp = tmpdir("killed", "sweep-tmp");
    let out = tmpdir("killed", "sweep-out");
    let marker = format!("sweep-{}", std::process::id());
    let mut child = start_run("namespace", &tmp, &out, &marker);
    let pid = child.id();
    if let Err(why) = wait_for_guest(&mut child, &out, "namespace") {
        let _ = child.kill();
        let _ = child.wait();
        assert!(!ci(), "namespace must run in CI: {why}");
        eprintln!("skipping: {why}");
        return;
    }
    // The watchdog first, so that it cannot clean up.
    for (p, cmd) in marked(&marker) {
        if cmd.contains(" watchdog ") {
            kill9(p);
        }
    }
    kill9(pid);
    let _ = child.wait();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !owned_by(&tmp, pid).is_empty(),
        "the killed run left no work directory to sweep"
    );
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
        .env("TMPDIR", &tmp)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let said = text(&o);
    let line = said
        .lines()
        .find(|l| l.contains("removed what killed hvbench runs left"))
        .unwrap_or_else(|| panic!("no sweep line: {said}"));
    assert!(line.contains(&format!("pid {pid} (")), "{line}");
    assert!(marked(&marker).is_empty(), "{:?}", marked(&marker));
    assert_eq!(owned_by(&tmp, pid), Vec::<PathBuf>::new());
    assert_eq!(cgroups_of(pid), Vec::<PathBuf>::new());
    let _ = std::fs::remove_dir_all(&tmp);
    let _ = std::fs::remove_dir_all(&out);
}
