//! QEMU guests end to end: boot the agent under TCG, run a job, shut down, leave nothing behind;
//! and the KVM probe answers in bounded time whatever /dev/kvm does.
//!
//! Skipped (with a message) when qemu-system-x86_64 or a kernel in /boot is missing.

mod support;
use support::agent;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hvbench_core::backends::qemu::{Accel, QemuConfig, QemuCustom, QemuKvm, QemuTcg};
use hvbench_core::backends::{Availability, Backend, GuestSpec};
use hvbench_core::guest::{Guest, GuestError, JobEnd};
use hvbench_core::image::KernelImage;
use hvbench_core::workdir::WorkDir;
use hvbench_protocol::Job;

fn qemu_present() -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("qemu-system-x86_64").is_file()))
        .unwrap_or(false)
}

fn can_boot() -> bool {
    if !qemu_present() {
        eprintln!(
            "skipping: qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)"
        );
        return false;
    }
    if let Err(e) = KernelImage::find(None) {
        eprintln!("skipping: {e}");
        return false;
    }
    true
}

/// PIDs of live processes whose command line contains `needle`.
fn processes_mentioning(needle: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        if String::from_utf8_lossy(&cmd).contains(needle) {
            found.push(pid);
        }
    }
    found
}

fn spec(workdir: &Path, label: &str) -> GuestSpec {
    GuestSpec {
        vcpus: 1,
        memory_mib: 256,
        kernel: None,
        agent: agent(),
        workdir: workdir.to_path_buf(),
        label: label.into(),
        devices: Default::default(),
    }
}

#[test]
fn tcg_guest_runs_a_job_and_leaves_nothing_behind() {
    if !can_boot() {
        return;
    }
    let backend = QemuTcg;
    let avail = backend.probe(&agent());
    assert!(avail.is_available(), "{avail:?}");
    let wd = WorkDir::new("qemu-test").unwrap();
    let marker = wd.path().display().to_string();
    let mut guest = Guest::start(
        &backend,
        &spec(wd.path(), "qemu-tcg-test"),
        backend.hello_timeout(),
    )
    .unwrap_or_else(|e| panic!("guest did not start: {e}"));
    eprintln!(
        "qemu-tcg boot to hello: {:?}; notes: {:?}",
        guest.boot, guest.hello.setup_notes
    );
    assert!(
        guest.hello.is_init,
        "the agent should be init of the guest kernel"
    );
    assert!(guest.hello.uptime_s.is_some_and(|u| u > 0.0));
    assert!(
        guest
            .hello
            .setup_notes
            .iter()
            .any(|n| n.starts_with("loaded ")),
        "{:?}",
        guest.hello.setup_notes
    );
    assert!(guest.config.command_line.iter().any(|a| a == "-nodefaults"));
    assert!(guest.config.versions.contains_key("qemu"));

    let job = Job {
        id: 0,
        workload: "sys.getppid".into(),
        params: BTreeMap::new(),
        iterations: None,
        target_s: 0.05,
        warmup: 0,
        reps: 2,
        copies: 1,
    };
    let mut samples = Vec::new();
    let end = guest
        .run_job(job, Duration::from_secs(60), |s| samples.push(s))
        .expect("the job ran");
    assert!(matches!(end, JobEnd::Done { .. }), "{end:?}");
    assert_eq!(samples.len(), 2);
    for s in &samples {
        assert!(!s.msg.warmup);
        assert!(s.msg.value.is_finite() && s.msg.value > 0.0, "{s:?}");
        assert!(s.msg.iterations > 0 && s.msg.elapsed_ns > 0);
    }
    assert!(
        !processes_mentioning(&marker).is_empty(),
        "qemu should be running now"
    );
    let pids = guest.host_pids();
    guest.shutdown(Duration::from_secs(10));
    for pid in pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "qemu {pid} is still there"
        );
    }
    assert_eq!(
        processes_mentioning(&marker),
        Vec::<u32>::new(),
        "a qemu of this test remains"
    );
}

#[test]
fn bad_kernel_path_is_a_clear_error() {
    if !qemu_present() {
        return;
    }
    let wd = WorkDir::new("qemu-test").unwrap();
    let mut s = spec(wd.path(), "qemu-tcg-badkernel");
    s.kernel = Some(PathBuf::from("/nonexistent/vmlinuz-0"));
    let t0 = Instant::now();
    let e = Guest::start(&QemuTcg, &s, Duration::from_secs(60))
        .err()
        .expect("no guest with a missing kernel");
    let msg = e.to_string();
    assert!(matches!(e, GuestError::Launch(_)), "{msg}");
    assert!(
        msg.contains("/nonexistent/vmlinuz-0") && msg.contains("--kernel"),
        "{msg}"
    );
    assert!(t0.elapsed() < Duration::from_secs(5));
}

#[test]
fn kvm_probe_answers_in_bounded_time() {
    if !can_boot() {
        return;
    }
    let a = agent();
    let t0 = Instant::now();
    let avail = QemuKvm.probe(&a);
    let took = t0.elapsed();
    eprintln!("qemu-kvm probe: {avail:?} in {took:?}");
    assert!(
        took < Duration::from_secs(20),
        "the KVM probe took {took:?}"
    );
    if let Availability::Unavailable { reason, hint } = &avail {
        assert!(!reason.is_empty() && !hint.is_empty());
    }
    // Cached for the process: the second answer is immediate and the same.
    let t1 = Instant::now();
    assert_eq!(QemuKvm.probe(&a), avail);
    assert!(t1.elapsed() < Duration::from_millis(100));
    // The probe guest is gone.
    let marker = format!("hvbench-{}-", std::process::id());
    let left: Vec<u32> = processes_mentioning(&marker)
        .into_iter()
        .filter(|p| processes_mentioning("qemu-kvm-probe").contains(p))
        .collect();
    assert!(left.is_empty(), "probe qemu left running: {left:?}");
}

#[test]
fn hanging_guest_is_killed_and_reported() {
    if !can_boot() {
        return;
    }
    // `-S`: QEMU starts with the CPU stopped, so the guest never says hello.
    fn paused(cfg: &mut QemuConfig) {
        cfg.extra_args.push("-S".into());
    }
    let backend = QemuCustom {
        name: "qemu-tcg-paused",
        accel: Accel::Tcg,
        adjust: paused,
    };
    assert!(backend.probe(&agent()).is_available());
    let wd = WorkDir::new("qemu-test").unwrap();
    let marker = wd.path().display().to_string();
    let t0 = Instant::now();
    let e = Guest::start(
        &backend,
        &spec(wd.path(), "qemu-tcg-hang"),
        Duration::from_secs(2),
    )
    .err()
    .expect("a paused guest says no hello");
    assert!(matches!(e, GuestError::NoHello { .. }), "{e}");
    assert!(
        t0.elapsed() < Duration::from_secs(8),
        "took {:?}",
        t0.elapsed()
    );
    assert_eq!(
        processes_mentioning(&marker),
        Vec::<u32>::new(),
        "the hung qemu remains"
    );
}
