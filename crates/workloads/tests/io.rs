//! The io workloads: they do the I/Os asked, label how they did them truthfully, never write
//! without `allow_write`, never modify a target they only read, and fall back from io_uring
//! and from O_DIRECT where those are unavailable.
//!
//! No timing assertions: the machine is shared and noisy. Targets are small files in /var/tmp
//! (a disk filesystem, where O_DIRECT works) and /dev/shm (tmpfs, where it works only since
//! Linux 6.6), removed at the end of each test.
//!
//! `native_measurement` (ignored) prints the rates of a short native run for a sanity check:
//!
//! ```text
//! cargo test --release -p hvbench-workloads --test io -- --ignored --nocapture
//! ```

use std::collections::hash_map::DefaultHasher;
use std::fs::OpenOptions;
use std::hash::Hasher;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use hvbench_workloads::io::{create_target_file, WORKLOADS};
use hvbench_workloads::{calibrate, find, run_rep, Metric, Outcome, Params, WorkloadError};

const MIB: u64 = 1 << 20;

/// A file in `dir` with a unique name, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn name_in(dir: &Path, tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("hvbench-io-test-{}-{n}-{tag}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        TempFile(path)
    }

    /// A target made by `create_target_file`.
    fn target_in(dir: &Path, tag: &str, size: u64) -> Self {
        let f = Self::name_in(dir, tag);
        create_target_file(&f.0, size).expect("create target file");
        f
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn path_str(&self) -> &str {
        self.0.to_str().expect("utf-8 temp path")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A directory on a disk filesystem: /var/tmp, as /tmp may be tmpfs.
fn disk_dir() -> PathBuf {
    let var_tmp = PathBuf::from("/var/tmp");
    if var_tmp.is_dir() {
        var_tmp
    } else {
        std::env::temp_dir()
    }
}

fn params(path: &str, extra: &[(&str, serde_json::Value)]) -> Params {
    let mut p = Params::new();
    p.insert("path".into(), path.into());
    for (k, v) in extra {
        p.insert((*k).into(), v.clone());
    }
    p
}

fn run(name: &str, p: &Params, iterations: u64) -> Result<Outcome, WorkloadError> {
    let w = find(name).expect("registered");
    (w.run)(p, iterations)
}

fn checksum(path: &Path) -> u64 {
    let mut f = std::fs::File::open(path).expect("open for checksum");
    let mut h = DefaultHasher::new();
    let mut buf = vec![0u8; MIB as usize];
    loop {
        let n = f.read(&mut buf).expect("read for checksum");
        if n == 0 {
            break;
        }
        h.write(&buf[..n]);
    }
    h.finish()
}

/// Whether `dir`'s filesystem accepts O_DIRECT, asked the same way the workload does.
fn direct_works(file: &Path) -> bool {
    match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(file)
    {
        Ok(_) => true,
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => false,
        Err(e) => panic!("probing O_DIRECT on {}: {e}", file.display()),
    }
}

/// Whether this process can use io_uring with the opcodes the workloads need.
fn uring_works() -> bool {
    let Ok(ring) = io_uring::IoUring::new(4) else {
        return false;
    };
    let mut probe = io_uring::Probe::new();
    ring.submitter().register_probe(&mut probe).is_ok()
        && probe.is_supported(io_uring::opcode::Read::CODE)
        && probe.is_supported(io_uring::opcode::Write::CODE)
}

fn label<'a>(out: &'a Outcome, key: &str) -> &'a str {
    out.labels
        .get(key)
        .unwrap_or_else(|| panic!("label {key} missing: {:?}", out.labels))
}

/// The properties every successful run has.
fn check_outcome(name: &str, out: &Outcome, iterations: u64, block: u64, iodepth: u64) {
    let expected = if name.starts_with("io.seq") {
        (iterations * block) as f64
    } else {
        iterations as f64
    };
    assert_eq!(out.work, expected, "{name}: work");
    assert!(out.elapsed > Duration::ZERO, "{name}: elapsed");
    let p50 = out.extras["lat_p50_us"];
    let p99 = out.extras["lat_p99_us"];
    assert!(p50 > 0.0 && p50 <= p99, "{name}: p50 {p50} p99 {p99}");
    assert_eq!(out.labels["iodepth"], iodepth.to_string(), "{name}");
    let engine = label(out, "engine");
    if iodepth == 1 {
        assert_eq!(engine, "psync", "{name}");
    } else {
        assert!(
            engine == "io_uring" || engine == "psync-threads",
            "{name}: {engine}"
        );
    }
    assert!(["true", "false"].contains(&label(out, "direct")), "{name}");
    assert_eq!(
        label(out, "direct") == "false",
        out.labels.contains_key("direct_fallback"),
        "{name}: a fallback and its reason go together: {:?}",
        out.labels
    );
    assert_eq!(label(out, "target"), "file");
}

#[test]
fn rows_are_in_the_io_suite_only_with_their_units() {
    let names: Vec<_> = WORKLOADS.iter().map(|w| w.name).collect();
    assert_eq!(
        names,
        [
            "io.randread",
            "io.randwrite",
            "io.fsync",
            "io.seqread",
            "io.seqwrite"
        ]
    );
    for w in WORKLOADS {
        assert_eq!(w.suites, ["io"], "{}", w.name);
        assert!(w.higher_is_better, "{}", w.name);
        assert!(
            w.description.len() > 40 && !w.description.contains('\n'),
            "{}",
            w.name
        );
        assert!(w.setup_timeout_s >= 10, "{}", w.name);
        if w.name.starts_with("io.seq") {
            assert_eq!(w.unit, "MB/s");
            assert_eq!(w.metric, Metric::Rate { scale: 1e-6 });
        } else if w.name == "io.fsync" {
            assert_eq!(w.unit, "syncs/s");
            assert_eq!(w.metric, Metric::Rate { scale: 1.0 });
        } else {
            assert_eq!(w.unit, "IOPS");
            assert_eq!(w.metric, Metric::Rate { scale: 1.0 });
        }
        assert!(find(w.name).is_some(), "{} is in the registry", w.name);
    }
}

#[test]
fn every_workload_runs_at_depth_1_and_4() {
    let file = TempFile::target_in(&disk_dir(), "all", 16 * MIB);
    let direct = direct_works(file.path());
    for w in WORKLOADS {
        let (iterations, block) = if w.name.starts_with("io.seq") {
            (6, MIB)
        } else {
            (64, 4096)
        };
        for iodepth in [1, 4] {
            let p = params(
                file.path_str(),
                &[("allow_write", true.into()), ("iodepth", iodepth.into())],
            );
            if w.name == "io.fsync" && iodepth > 1 {
                // A write and its fdatasync are one request at a time.
                let e = run(w.name, &p, iterations).expect_err("io.fsync at depth 4");
                assert!(e.to_string().contains("iodepth must be 1"), "{e}");
                continue;
            }
            let out = run(w.name, &p, iterations)
                .unwrap_or_else(|e| panic!("{} at depth {iodepth}: {e}", w.name));
            check_outcome(w.name, &out, iterations, block, iodepth);
            assert_eq!(label(&out, "direct"), direct.to_string(), "{}", w.name);
            if w.name == "io.fsync" {
                assert_eq!(label(&out, "sync"), "fdatasync");
            }
        }
        // Through the agent's entry point too: a positive rate.
        let p = params(file.path_str(), &[("allow_write", true.into())]);
        let rep = run_rep(w, &p, iterations, 1).expect("run_rep");
        assert!(rep.value > 0.0 && rep.value.is_finite(), "{}", w.name);
    }
    assert_eq!(
        std::fs::metadata(file.path()).expect("stat").len(),
        16 * MIB,
        "the workloads never resize"
    );
}

#[test]
fn depth_4_uses_io_uring_when_the_kernel_allows_it() {
    let file = TempFile::target_in(&disk_dir(), "uring", 16 * MIB);
    let p = params(file.path_str(), &[("iodepth", 4.into())]);
    let out = run("io.randread", &p, 100).expect("randread");
    check_outcome("io.randread", &out, 100, 4096, 4);
    if uring_works() {
        assert_eq!(label(&out, "engine"), "io_uring", "{:?}", out.labels);
        assert!(!out.labels.contains_key("fallback"));
    } else {
        assert_eq!(label(&out, "engine"), "psync-threads");
        assert!(label(&out, "fallback").contains("io_uring"));
    }
}

/// A seccomp filter on the calling thread only (no TSYNC) that makes io_uring_setup fail with
/// ENOSYS, as on a kernel without io_uring; threads it spawns inherit it.
#[cfg(target_arch = "x86_64")]
fn deny_io_uring_in_this_thread() -> std::io::Result<()> {
    const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
    const ARCH_OFFSET: u32 = 4; // offsetof(struct seccomp_data, arch)
    const NR_OFFSET: u32 = 0; // offsetof(struct seccomp_data, nr)
    let stmt = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let jump = |k: u32, jt: u8, jf: u8| libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt,
        jf,
        k,
    };
    let load = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    let ret = libc::BPF_RET | libc::BPF_K;
    let mut filter = [
        stmt(load, ARCH_OFFSET),
        jump(AUDIT_ARCH_X86_64, 0, 3), // another ABI: allow
        stmt(load, NR_OFFSET),
        jump(libc::SYS_io_uring_setup as u32, 0, 1),
        stmt(ret, libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32),
        stmt(ret, libc::SECCOMP_RET_ALLOW),
    ];
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_mut_ptr(),
    };
    // SAFETY: PR_SET_NO_NEW_PRIVS takes integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `prog` points to `filter`, a valid classic BPF program that outlives the call
    // (the kernel copies it).
    let rc = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &prog as *const libc::sock_fprog,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(target_arch = "x86_64")]
#[test]
fn without_io_uring_depth_4_falls_back_to_threads_and_says_why() {
    let file = TempFile::target_in(&disk_dir(), "seccomp", 16 * MIB);
    let path = file.path_str().to_string();
    let uring_before = uring_works();
    let outcomes = std::thread::spawn(move || {
        deny_io_uring_in_this_thread().expect("install the seccomp filter");
        // The filter works: io_uring_setup now fails with ENOSYS in this thread.
        match io_uring::IoUring::new(4) {
            Ok(_) => panic!("io_uring_setup must be denied in this thread"),
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::ENOSYS)),
        }
        let p = params(
            &path,
            &[("iodepth", 4.into()), ("allow_write", true.into())],
        );
        ["io.randread", "io.seqread", "io.randwrite"].map(|name| {
            (
                name,
                run(name, &p, if name == "io.seqread" { 6 } else { 50 }),
            )
        })
    })
    .join()
    .expect("filtered thread");
    for (name, out) in outcomes {
        let out = out.unwrap_or_else(|e| panic!("{name}: {e}"));
        let (iterations, block) = if name == "io.seqread" {
            (6, MIB)
        } else {
            (50, 4096)
        };
        check_outcome(name, &out, iterations, block, 4);
        assert_eq!(label(&out, "engine"), "psync-threads", "{name}");
        let why = label(&out, "fallback");
        assert!(why.contains("io_uring"), "{name}: {why}");
        assert!(
            why.contains("not implemented"),
            "{name}: the OS error: {why}"
        );
    }
    // The filter stayed in its thread: the rest of the process is unaffected.
    assert_eq!(uring_works(), uring_before);
}

#[test]
fn on_tmpfs_the_direct_label_tells_the_truth() {
    let shm = Path::new("/dev/shm");
    if !shm.is_dir() {
        eprintln!("no /dev/shm: skipped");
        return;
    }
    let file = TempFile::target_in(shm, "tmpfs", 4 * MIB);
    let direct = direct_works(file.path());
    for name in ["io.randread", "io.seqwrite"] {
        let p = params(file.path_str(), &[("allow_write", true.into())]);
        let out = run(name, &p, 4).unwrap_or_else(|e| panic!("{name}: {e}"));
        check_outcome(
            name,
            &out,
            4,
            if name == "io.seqwrite" { MIB } else { 4096 },
            1,
        );
        if direct {
            // Linux 6.6 and later: tmpfs accepts O_DIRECT.
            assert_eq!(label(&out, "direct"), "true");
        } else {
            assert_eq!(label(&out, "direct"), "false");
            assert!(label(&out, "direct_fallback").contains("O_DIRECT"));
        }
    }
}

#[test]
fn writes_are_refused_without_allow_write_and_change_nothing() {
    let file = TempFile::target_in(&disk_dir(), "refused", 4 * MIB);
    let before = checksum(file.path());
    for name in ["io.randwrite", "io.seqwrite"] {
        for extra in [vec![], vec![("allow_write", false.into())]] {
            let p = params(file.path_str(), &extra);
            match run(name, &p, 16) {
                Err(WorkloadError::Unsupported(m)) => {
                    assert!(m.contains(file.path_str()), "{name}: names the path: {m}");
                    assert!(m.contains("allow_write"), "{name}: names the flag: {m}");
                }
                other => panic!("{name} with {extra:?}: {other:?}"),
            }
        }
    }
    assert_eq!(checksum(file.path()), before);
}

#[test]
fn reads_never_modify_the_target() {
    let file = TempFile::target_in(&disk_dir(), "reads", 8 * MIB);
    let before = checksum(file.path());
    for name in ["io.randread", "io.seqread"] {
        for iodepth in [1, 4] {
            // allow_write does not make a read workload write.
            let p = params(
                file.path_str(),
                &[("iodepth", iodepth.into()), ("allow_write", true.into())],
            );
            run(name, &p, 20).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
    assert_eq!(checksum(file.path()), before);
}

#[test]
fn allowed_writes_write_non_zero_data_in_place() {
    let file = TempFile::target_in(&disk_dir(), "writes", 4 * MIB);
    let mut last = checksum(file.path());
    for name in ["io.randwrite", "io.seqwrite"] {
        let p = params(file.path_str(), &[("allow_write", true.into())]);
        run(name, &p, 8).unwrap_or_else(|e| panic!("{name}: {e}"));
        let now = checksum(file.path());
        assert_ne!(now, last, "{name} wrote nothing");
        last = now;
    }
    assert_eq!(std::fs::metadata(file.path()).expect("stat").len(), 4 * MIB);
    assert_no_zero_block(file.path());
}

#[test]
fn sequential_runs_wrap_around_the_end() {
    // 3 blocks, 10 I/Os: at least three wraps whatever the start.
    let file = TempFile::target_in(&disk_dir(), "wrap", 3 * MIB);
    let p = params(file.path_str(), &[]);
    let out = run("io.seqread", &p, 10).expect("seqread");
    check_outcome("io.seqread", &out, 10, MIB, 1);
}

#[test]
fn missing_or_bad_targets_and_params_are_clear_errors() {
    // No path: the guest has no disk.
    match run("io.randread", &Params::new(), 1) {
        Err(WorkloadError::Unsupported(m)) => assert!(m.contains("disk"), "{m}"),
        other => panic!("{other:?}"),
    }
    // A path that does not exist.
    let gone = TempFile::name_in(&disk_dir(), "absent");
    for (name, extra) in [
        ("io.randread", vec![]),
        ("io.seqwrite", vec![("allow_write", true.into())]),
    ] {
        match run(name, &params(gone.path_str(), &extra), 1) {
            Err(WorkloadError::Failed(m) | WorkloadError::Unsupported(m)) => {
                assert!(m.contains(gone.path_str()), "{m}")
            }
            other => panic!("{name}: {other:?}"),
        }
        assert!(!gone.path().exists(), "{name} created its target");
    }
    // Neither a file nor a block device.
    match run("io.randread", &params("/dev/null", &[]), 1) {
        Err(WorkloadError::Failed(m)) => assert!(m.contains("/dev/null"), "{m}"),
        other => panic!("{other:?}"),
    }
    // Smaller than one block.
    let small = TempFile::target_in(&disk_dir(), "small", MIB);
    let p = params(small.path_str(), &[("block", (2 * MIB).into())]);
    match run("io.seqread", &p, 1) {
        Err(WorkloadError::Failed(m)) => {
            assert!(
                m.contains("less than one block") && m.contains(small.path_str()),
                "{m}"
            )
        }
        other => panic!("{other:?}"),
    }
    // Bad parameters.
    for (key, value) in [
        ("block", serde_json::Value::from(1000)),
        ("block", 0.into()),
        ("iodepth", 0.into()),
        ("iodepth", 100_000.into()),
        ("allow_write", "yes".into()),
    ] {
        let p = params(small.path_str(), &[(key, value.clone())]);
        assert!(
            matches!(run("io.randread", &p, 1), Err(WorkloadError::BadParam(_))),
            "{key}={value}"
        );
    }
    let mut p = Params::new();
    p.insert("path".into(), 5.into());
    assert!(matches!(
        run("io.randread", &p, 1),
        Err(WorkloadError::BadParam(_))
    ));
    assert!(matches!(
        run("io.randread", &params(small.path_str(), &[]), 0),
        Err(WorkloadError::BadParam(_))
    ));
}

#[test]
fn other_block_sizes() {
    let file = TempFile::target_in(&disk_dir(), "blocks", 4 * MIB);
    for (name, block) in [
        ("io.randread", 512u64),
        ("io.randread", 65536),
        ("io.seqread", 8192),
    ] {
        let p = params(file.path_str(), &[("block", block.into())]);
        let out = run(name, &p, 10).unwrap_or_else(|e| panic!("{name} block {block}: {e}"));
        check_outcome(name, &out, 10, block, 1);
    }
}

fn assert_no_zero_block(path: &Path) {
    let data = std::fs::read(path).expect("read target");
    for (i, block) in data.chunks(4096).enumerate() {
        assert!(block.iter().any(|&b| b != 0), "block {i} is all zeros");
    }
}

#[test]
fn create_target_file_makes_a_full_new_file_and_never_overwrites() {
    let file = TempFile::target_in(&disk_dir(), "create", 3 * MIB / 2);
    let meta = std::fs::metadata(file.path()).expect("stat");
    assert_eq!(meta.len(), 2 * MIB, "rounded up to a whole MiB");
    // No holes: every block is allocated (st_blocks counts 512-byte units).
    use std::os::unix::fs::MetadataExt;
    assert!(
        meta.blocks() * 512 >= meta.len(),
        "{} blocks",
        meta.blocks()
    );
    assert_no_zero_block(file.path());

    let before = checksum(file.path());
    let err = create_target_file(file.path(), MIB).expect_err("must refuse an existing file");
    assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
    assert_eq!(checksum(file.path()), before);
    assert_eq!(std::fs::metadata(file.path()).expect("stat").len(), 2 * MIB);

    let empty = TempFile::name_in(&disk_dir(), "empty");
    assert!(create_target_file(empty.path(), 0).is_err());
    assert!(!empty.path().exists());
}

#[test]
fn calibration_finds_a_count() {
    let file = TempFile::target_in(&disk_dir(), "calibrate", 16 * MIB);
    let w = find("io.randread").expect("registered");
    let n =
        calibrate(w, &params(file.path_str(), &[]), Duration::from_millis(50)).expect("calibrate");
    assert!(n >= 1);
}

/// Prints rates of a short native run on /var/tmp, to sanity-check the numbers.
#[test]
#[ignore]
fn native_measurement() {
    let file = TempFile::target_in(&disk_dir(), "measure", 256 * MIB);
    let cases: &[(&str, u64)] = &[
        ("io.randread", 1),
        ("io.randread", 4),
        ("io.randwrite", 1),
        ("io.randwrite", 4),
        ("io.seqread", 1),
        ("io.seqwrite", 1),
    ];
    for &(name, iodepth) in cases {
        let w = find(name).expect("registered");
        let p = params(
            file.path_str(),
            &[("iodepth", iodepth.into()), ("allow_write", true.into())],
        );
        let n = calibrate(w, &p, Duration::from_millis(500)).expect("calibrate");
        for _ in 0..3 {
            let r = run_rep(w, &p, n, 1).expect("run");
            println!(
                "{name:13} qd{iodepth} {:>10.1} {:5} p50 {:>7.1} us p99 {:>7.1} us  {:?}",
                r.value, w.unit, r.extras["lat_p50_us"], r.extras["lat_p99_us"], r.labels
            );
        }
    }
}
