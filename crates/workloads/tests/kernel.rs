//! The kernel microbenchmarks and `--copies`: every row runs and returns a sane value, errors
//! are reported, and no child process is left behind. No timing assertions: the machine is
//! shared and noisy.
//!
//! The tests fork, install signal handlers and pin threads, so they run one at a time (one
//! lock); each checks for zombie children while it still holds the lock.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use hvbench_workloads::copies::run_copies;
use hvbench_workloads::{
    calibrate, find, kernel, registry, run_rep, Kind, Outcome, Params, WorkloadError, WorkloadInfo,
};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn no_params() -> Params {
    BTreeMap::new()
}

/// Children of this process (pid and state), from /proc/*/stat. The harness itself starts
/// none, so once a test has finished every child it made must be gone, zombies above all.
fn children() -> Vec<String> {
    let me = std::process::id().to_string();
    let mut zombies = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may contain spaces and parentheses.
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let fields: Vec<&str> = after.split_whitespace().collect();
        if fields.len() >= 2 && fields[1] == me {
            zombies.push(format!("{pid} in state {}", fields[0]));
        }
    }
    zombies
}

fn assert_no_zombies() {
    let left = children();
    assert!(left.is_empty(), "children left behind: {left:?}");
}

fn allowed_cpus() -> usize {
    // SAFETY: all zeroes is a valid empty cpu_set_t, filled by sched_getaffinity.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid cpu_set_t of the size passed.
    let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) };
    assert_eq!(rc, 0, "sched_getaffinity");
    // SAFETY: `set` is a valid, initialised cpu_set_t.
    (unsafe { libc::CPU_COUNT(&set) }) as usize
}

fn check_value(w: &WorkloadInfo, iterations: u64, copies: u32) {
    let r = run_rep(w, &no_params(), iterations, copies)
        .unwrap_or_else(|e| panic!("{} x{iterations} ({copies} copies): {e}", w.name));
    assert!(
        r.value.is_finite() && r.value > 0.0,
        "{} x{iterations}: value {}",
        w.name,
        r.value
    );
}

fn is_cross_without_cpus(w: &WorkloadInfo) -> bool {
    w.name == "sched.ctxswitch.cross" && allowed_cpus() < 2
}

#[test]
fn registry_rows_are_well_formed() {
    let names: Vec<&str> = kernel::WORKLOADS.iter().map(|w| w.name).collect();
    assert_eq!(
        names,
        [
            "sys.getppid",
            "sys.pipe",
            "time.clock_gettime",
            "sched.ctxswitch.same",
            "sched.ctxswitch.unix",
            "sched.ctxswitch.cross",
            "fault.divzero",
            "fault.segv",
            "sig.catch",
            "mm.pagefault",
            "proc.fork",
            "proc.exec",
        ]
    );
    for w in kernel::WORKLOADS {
        assert_eq!(w.kind, Kind::Micro, "{}", w.name);
        // The Unix-socket switch prices an application's switches for `--explain`: not in the
        // quick suite, which the default run measures.
        let suites: &[&str] = if w.name == "sched.ctxswitch.unix" {
            &["full", "kernel"]
        } else {
            &["quick", "full", "kernel"]
        };
        assert_eq!(w.suites, suites, "{}", w.name);
        assert!(!w.higher_is_better, "{}", w.name);
        assert!(!w.description.is_empty() && !w.description.contains('\n'));
        assert!(w.setup_timeout_s >= 5, "{}", w.name);
        assert!(std::ptr::eq(find(w.name).unwrap(), w), "{}", w.name);
        assert_eq!(registry().filter(|r| r.name == w.name).count(), 1);
    }
    assert_eq!(find("proc.fork").unwrap().unit, "µs/op");
    assert_eq!(find("sys.getppid").unwrap().unit, "ns/op");
}

#[test]
fn every_row_runs_with_few_and_calibrated_iterations() {
    let _serial = serial();
    for w in kernel::WORKLOADS {
        if is_cross_without_cpus(w) {
            continue;
        }
        for iterations in [1, 2, 3, 7] {
            check_value(w, iterations, 1);
        }
        let n = calibrate(w, &no_params(), Duration::from_millis(20))
            .unwrap_or_else(|e| panic!("calibrating {}: {e}", w.name));
        assert!(n >= 1, "{}", w.name);
        check_value(w, n, 1);
        assert_no_zombies();
    }
    assert_no_zombies();
}

#[test]
fn ctxswitch_cross_is_unsupported_exactly_without_two_cpus() {
    let _serial = serial();
    let w = find("sched.ctxswitch.cross").unwrap();
    let result = (w.run)(&no_params(), 10);
    if allowed_cpus() < 2 {
        assert!(
            matches!(result, Err(WorkloadError::Unsupported(ref m)) if m.contains("needs 2 CPUs")),
            "{result:?}"
        );
    } else {
        let out = result.unwrap();
        assert_eq!(out.work, 20.0, "a round trip is two switches");
    }
    assert_no_zombies();
}

#[test]
fn ctxswitch_cross_is_unsupported_when_pinned_to_one_cpu() {
    let _serial = serial();
    // SAFETY: all zeroes is a valid empty cpu_set_t, filled by sched_getaffinity.
    let mut saved: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of_val(&saved);
    // SAFETY: `saved` is a valid cpu_set_t of the size passed.
    assert_eq!(unsafe { libc::sched_getaffinity(0, size, &mut saved) }, 0);
    let first = (0..8 * size)
        // SAFETY: every index is below the number of bits in the set.
        .find(|&c| unsafe { libc::CPU_ISSET(c, &saved) })
        .unwrap();
    // SAFETY: all zeroes is a valid empty cpu_set_t.
    let mut one: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `first` is below the number of bits in the set.
    unsafe { libc::CPU_SET(first, &mut one) };
    // SAFETY: `one` is a valid cpu_set_t; this pins only the calling (test) thread.
    assert_eq!(unsafe { libc::sched_setaffinity(0, size, &one) }, 0);
    let result = (find("sched.ctxswitch.cross").unwrap().run)(&no_params(), 10);
    let same = (find("sched.ctxswitch.same").unwrap().run)(&no_params(), 10);
    // SAFETY: `saved` is the mask sched_getaffinity gave us.
    assert_eq!(unsafe { libc::sched_setaffinity(0, size, &saved) }, 0);
    assert!(
        matches!(&result, Err(WorkloadError::Unsupported(m)) if m.starts_with("needs 2 CPUs")),
        "{result:?}"
    );
    assert_eq!(same.unwrap().work, 20.0);
    assert_no_zombies();
}

#[test]
fn ctxswitch_restores_the_affinity_mask() {
    let _serial = serial();
    let before = allowed_cpus();
    (find("sched.ctxswitch.same").unwrap().run)(&no_params(), 5).unwrap();
    assert_eq!(allowed_cpus(), before);
    assert_no_zombies();
}

#[test]
fn work_counts_ops() {
    let _serial = serial();
    for (name, iterations, work) in [
        ("sys.getppid", 1000, 1000.0),
        ("sys.pipe", 100, 100.0),
        ("fault.divzero", 100, 100.0),
        ("fault.segv", 100, 100.0),
        ("sig.catch", 100, 100.0),
        ("sched.ctxswitch.same", 50, 100.0),
        ("sched.ctxswitch.unix", 50, 100.0),
        ("proc.fork", 3, 3.0),
        ("proc.exec", 3, 3.0),
    ] {
        let out = (find(name).unwrap().run)(&no_params(), iterations).unwrap();
        assert_eq!(out.work, work, "{name}");
        assert!(!out.elapsed.is_zero(), "{name}");
    }
    assert_no_zombies();
}

#[test]
fn pagefault_spans_several_mappings() {
    let _serial = serial();
    let w = find("mm.pagefault").unwrap();
    let mut params = no_params();
    params.insert("chunk_mib".into(), 1.into());
    // SAFETY: sysconf has no memory-safety preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64;
    let per_chunk = (1 << 20) / page;
    for pages in [
        1,
        per_chunk - 1,
        per_chunk,
        per_chunk + 1,
        3 * per_chunk + 5,
    ] {
        let out = (w.run)(&params, pages).unwrap();
        assert_eq!(out.work, pages as f64);
    }
    params.insert("chunk_mib".into(), 0.into());
    assert!(matches!(
        (w.run)(&params, 1),
        Err(WorkloadError::BadParam(_))
    ));
    params.insert("chunk_mib".into(), "big".into());
    assert!(matches!(
        (w.run)(&params, 1),
        Err(WorkloadError::BadParam(_))
    ));
}

/// The current disposition of `sig`.
fn handler_of(sig: libc::c_int) -> libc::sighandler_t {
    // SAFETY: all zeroes is a valid sigaction to be filled in.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: a null new action only queries; `old` is valid.
    let rc = unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) };
    assert_eq!(rc, 0);
    old.sa_sigaction
}

#[test]
fn fault_workloads_restore_previous_handlers() {
    let _serial = serial();
    let signals = [libc::SIGFPE, libc::SIGSEGV, libc::SIGUSR1];
    let before: Vec<_> = signals.iter().map(|&s| handler_of(s)).collect();
    for name in ["fault.divzero", "fault.segv", "sig.catch"] {
        (find(name).unwrap().run)(&no_params(), 10).unwrap();
    }
    let after: Vec<_> = signals.iter().map(|&s| handler_of(s)).collect();
    assert_eq!(before, after);
}

#[test]
fn proc_exec_removes_its_program() {
    let _serial = serial();
    let prefix = format!("hvbench-noop-{}-", std::process::id());
    (find("proc.exec").unwrap().run)(&no_params(), 2).unwrap();
    for dir in [
        std::env::temp_dir(),
        "/tmp".into(),
        "/dev/shm".into(),
        "/".into(),
    ] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            assert!(
                !name.starts_with(&prefix),
                "left behind: {}",
                e.path().display()
            );
        }
    }
    assert_no_zombies();
}

#[test]
fn copies_aggregate_the_work_of_every_copy() {
    let _serial = serial();
    let w = find("sys.getppid").unwrap();
    let out = run_copies(w, &no_params(), 1000, 2).unwrap();
    assert_eq!(out.work, 2000.0);
    assert!(!out.elapsed.is_zero());
    let (min, max) = (out.extras["copy_min"], out.extras["copy_max"]);
    assert!(min.is_finite() && min > 0.0 && min <= max, "{min} {max}");

    let out = run_copies(w, &no_params(), 1, 3).unwrap();
    assert_eq!(out.work, 3.0);

    let r = run_rep(w, &no_params(), 500, 2).unwrap();
    assert!(r.value.is_finite() && r.value > 0.0);
    assert_no_zombies();
}

#[test]
fn copies_run_every_kernel_row() {
    let _serial = serial();
    for w in kernel::WORKLOADS {
        if is_cross_without_cpus(w) {
            continue;
        }
        let out = run_copies(w, &no_params(), 3, 2).unwrap_or_else(|e| panic!("{}: {e}", w.name));
        let per_copy = (w.run)(&no_params(), 3).unwrap().work;
        assert_eq!(out.work, 2.0 * per_copy, "{}", w.name);
    }
    assert_no_zombies();
}

fn unsupported(_: &Params, _: u64) -> Result<Outcome, WorkloadError> {
    Err(WorkloadError::Unsupported("not on this machine".into()))
}

fn failing(_: &Params, iterations: u64) -> Result<Outcome, WorkloadError> {
    Err(WorkloadError::Failed(format!(
        "check failed after {iterations}"
    )))
}

fn panicking(_: &Params, _: u64) -> Result<Outcome, WorkloadError> {
    panic!("boom")
}

fn dying(_: &Params, _: u64) -> Result<Outcome, WorkloadError> {
    // SAFETY: only ever called in a forked copy, which this ends.
    unsafe { libc::_exit(7) }
}

/// A counter shared by all forked copies (MAP_SHARED survives fork).
fn shared_counter() -> &'static std::sync::atomic::AtomicU32 {
    static PTR: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let addr = *PTR.get_or_init(|| {
        // SAFETY: a fresh shared anonymous mapping; it aliases nothing and is never unmapped.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        p as usize
    });
    // SAFETY: the mapping is page-aligned, zero-filled, readable and writable, and lives for
    // the rest of the process (and of its forks); AtomicU32 has the layout of a u32.
    unsafe { &*(addr as *const std::sync::atomic::AtomicU32) }
}

/// The first copy to start fails at once; the others would sleep for a minute.
fn first_fails_others_hang(_: &Params, _: u64) -> Result<Outcome, WorkloadError> {
    if shared_counter().fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
        return Err(WorkloadError::Failed("early".into()));
    }
    std::thread::sleep(Duration::from_secs(60));
    Ok(Outcome::new(1.0, Duration::from_secs(1)))
}

fn fake(name: &'static str, run: hvbench_workloads::RunFn) -> WorkloadInfo {
    let model = find("sys.getppid").unwrap();
    WorkloadInfo {
        name,
        unit: model.unit,
        higher_is_better: false,
        description: "test",
        kind: Kind::Micro,
        needs: model.needs,
        suites: &[],
        metric: model.metric,
        setup_timeout_s: 1,
        run,
    }
}

#[test]
fn copies_report_child_errors_and_reap_everything() {
    let _serial = serial();
    let p = no_params();
    let r = run_copies(&fake("unsupported", unsupported), &p, 1, 3);
    assert_eq!(
        r,
        Err(WorkloadError::Unsupported("not on this machine".into()))
    );
    let r = run_copies(&fake("failing", failing), &p, 5, 2);
    assert!(
        matches!(&r, Err(WorkloadError::Failed(m)) if m.contains("check failed after 5")),
        "{r:?}"
    );
    let r = run_copies(&fake("panicking", panicking), &p, 1, 2);
    assert!(
        matches!(&r, Err(WorkloadError::Failed(m)) if m.contains("boom")),
        "{r:?}"
    );
    let r = run_copies(&fake("dying", dying), &p, 1, 2);
    assert!(
        matches!(&r, Err(WorkloadError::Failed(m)) if m.contains("exited with status 7")),
        "{r:?}"
    );
    assert!(matches!(
        run_copies(&fake("zero", failing), &p, 1, 0),
        Err(WorkloadError::BadParam(_))
    ));
    assert_no_zombies();
}

#[test]
fn a_failing_copy_does_not_wait_for_the_others() {
    let _serial = serial();
    shared_counter().store(0, std::sync::atomic::Ordering::SeqCst);
    let start = std::time::Instant::now();
    let r = run_copies(&fake("hang", first_fails_others_hang), &no_params(), 1, 4);
    assert!(
        matches!(&r, Err(WorkloadError::Failed(m)) if m.contains("early")),
        "{r:?}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "waited for the sleeping copies"
    );
    assert_no_zombies();
}

/// Compares `sys.getppid` with a C loop: run with `cargo test --release -p hvbench-workloads
/// --test kernel -- --ignored --nocapture`.
#[test]
#[ignore]
fn print_getppid_ns() {
    let _serial = serial();
    let w = find("sys.getppid").unwrap();
    let n = calibrate(w, &no_params(), Duration::from_millis(500)).unwrap();
    let mut values: Vec<f64> = (0..7)
        .map(|_| run_rep(w, &no_params(), n, 1).unwrap().value)
        .collect();
    values.sort_by(f64::total_cmp);
    println!(
        "sys.getppid: {n} calls per rep, ns/op sorted: {values:.1?}, median {:.1}",
        values[3]
    );
    for w in kernel::WORKLOADS {
        if is_cross_without_cpus(w) {
            continue;
        }
        let n = calibrate(w, &no_params(), Duration::from_millis(200)).unwrap();
        let mut values: Vec<f64> = (0..5)
            .map(|_| run_rep(w, &no_params(), n, 1).unwrap().value)
            .collect();
        values.sort_by(f64::total_cmp);
        println!(
            "{:24} {:>10.1} {} (min {:.1}, max {:.1}, n {n})",
            w.name, values[2], w.unit, values[0], values[4]
        );
    }
    for name in [
        "sys.getppid",
        "sched.ctxswitch.same",
        "fault.divzero",
        "proc.fork",
    ] {
        let w = find(name).unwrap();
        let n = calibrate(w, &no_params(), Duration::from_millis(200)).unwrap();
        for copies in [2, 16] {
            let r = run_rep(w, &no_params(), n, copies).unwrap();
            println!(
                "{name:24} x{copies:<2} {:>10.1} {} aggregate (copies {:.1} .. {:.1})",
                r.value, w.unit, r.extras["copy_min"], r.extras["copy_max"]
            );
        }
    }
}
