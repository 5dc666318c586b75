//! Application workloads (suite `app`): real programs in the applications' root file system
//! (`hvbench image build`), driven by the agent, measured like every other workload.
//!
//! The source documents' headline results are applications: a database (seed 000's pgbench),
//! a compile (seeds 001 and 004), a file-system load (seed 001's dbench). Their overhead under
//! virtualization is not the sum of the micro workloads' (seed 003's claim): they mix system
//! calls, page faults, context switches between processes, disk flushes and plain computation
//! in proportions of their own.
//!
//! Parameters every application takes (set by the host for the guest, see
//! `hvbench_core::devices`):
//! - `rootfs`: the root file system's tree as the agent sees it;
//! - `app_dir`: a writable directory on the guest's disk, where the root is mounted
//!   (`app_dir/root`) and the applications keep their data (`app_dir/data`, `/mnt` inside);
//! - or, in a kernel guest (QEMU, UML), `rootfs_dev` and `app_dev`: the block devices of the
//!   root file system's ext4 image (mounted read-only) and of an ext4 disk hvbench made for
//!   the applications, which the agent (PID 1) mounts itself.
//!
//! - `cpus`: how many CPUs the applications may use (the guests' vCPUs): the agent confines
//!   every program it starts to the first that many CPUs of its own affinity, so that the
//!   native baseline of a 1-vCPU guest is the host on one CPU. In a kernel guest that is every
//!   CPU it has. gVisor applies it inside the sandbox only (its Sentry is not confined).
//!
//! Once mounted, the root stays for the agent's life, and so does a started database server:
//! the first repetition pays for the set-up (the host's warm-up), later ones only measure.
//! `iterations` is the target duration in whole seconds (what `pgbench -T` takes); the
//! one-shot applications (a build, a pass over a file tree) ignore it.

mod compile;
mod files;
pub mod pgbench;
pub mod root;
mod spawn;
pub mod web;

use std::process::{Command, Stdio};
use std::sync::Mutex;

use crate::{Kind, Metric, Needs, Outcome, Params, WorkloadError, WorkloadInfo};
use root::AppRoot;

const SUITES: &[&str] = &["app", "app-full"];

/// What an agent keeps between an application's repetitions.
#[derive(Debug)]
pub struct App {
    pub root: AppRoot,
    pg: Option<pgbench::Server>,
    web: Option<web::Server>,
}

static APP: Mutex<Option<App>> = Mutex::new(None);

/// Where a kernel guest's agent mounts the root file system's disk and the applications' disk.
const GUEST_TREE: &str = "/hvb/tree";
const GUEST_APP_DIR: &str = "/hvb/app";

fn param_str<'a>(params: &'a Params, name: &str) -> Option<&'a str> {
    params.get(name).and_then(|v| v.as_str())
}

/// The root file system's tree and the application directory a job names: a kernel guest's
/// mount points when the job names its disks, else the paths it gives.
fn tree_and_dir(params: &Params) -> (Option<&str>, Option<&str>) {
    match (
        param_str(params, "rootfs_dev"),
        param_str(params, "app_dev"),
    ) {
        (Some(_), Some(_)) => (Some(GUEST_TREE), Some(GUEST_APP_DIR)),
        _ => (param_str(params, "rootfs"), param_str(params, "app_dir")),
    }
}

/// The applications' root file system (its tree: the same files the root mounts) of a job
/// that names one and whose tree is there (in a kernel guest, once an application mounted it).
pub fn tree_of(params: &Params) -> Option<std::path::PathBuf> {
    let tree = std::path::PathBuf::from(tree_and_dir(params).0?);
    tree.join("usr/bin").is_dir().then_some(tree)
}

/// Runs `f` with this agent's application root, mounting it the first time.
pub(crate) fn with_app<T>(
    params: &Params,
    f: impl FnOnce(&mut App) -> Result<T, WorkloadError>,
) -> Result<T, WorkloadError> {
    let devices = (
        param_str(params, "rootfs_dev"),
        param_str(params, "app_dev"),
    );
    let (tree, app_dir) = tree_and_dir(params);
    let (Some(tree), Some(app_dir)) = (tree, app_dir) else {
        return Err(WorkloadError::Unsupported(
            "no root file system attached to this guest (hvbench attaches the one of `hvbench \
             image build` when an application is selected)"
                .into(),
        ));
    };
    let mut guard = APP.lock().unwrap_or_else(|e| e.into_inner());
    let same = guard
        .as_ref()
        .is_some_and(|a| a.root.tree == std::path::Path::new(tree));
    if !same {
        if let (Some(rootfs_dev), Some(app_dev)) = devices {
            root::mount_devices(
                rootfs_dev,
                app_dev,
                GUEST_TREE.as_ref(),
                GUEST_APP_DIR.as_ref(),
            )?;
        }
        *guard = Some(App {
            root: root::prepare(tree.as_ref(), app_dir.as_ref())?,
            pg: None,
            web: None,
        });
    }
    let app = guard.as_mut().expect("set above");
    app.root.cpus = params
        .get("cpus")
        .and_then(|v| v.as_u64())
        .map(|n| root::first_cpus(n as usize));
    f(app)
}

/// The last lines of a program's output, on one line, for an error message.
pub(crate) fn output_tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = &lines[lines.len().saturating_sub(6)..];
    let joined = tail.join(" | ");
    if joined.len() > 1200 {
        let cut = joined.len() - 1200;
        let cut = (cut..joined.len())
            .find(|&i| joined.is_char_boundary(i))
            .unwrap_or(joined.len());
        format!("...{}", &joined[cut..])
    } else {
        joined
    }
}

/// Runs `cmd` to its end; its standard output, or a failure naming `what` with the tail of
/// what it printed.
pub(crate) fn run_checked(cmd: &mut Command, what: &str) -> Result<String, WorkloadError> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| WorkloadError::Failed(format!("{what}: {e}")))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(WorkloadError::Failed(format!(
            "{what} failed ({}): {}",
            out.status,
            output_tail(&format!("{stdout}\n{stderr}"))
        )));
    }
    Ok(stdout)
}

fn run_pgbench_ro(p: &Params, seconds: u64) -> Result<Outcome, WorkloadError> {
    pgbench::run(p, seconds, true)
}

fn run_pgbench_rw(p: &Params, seconds: u64) -> Result<Outcome, WorkloadError> {
    pgbench::run(p, seconds, false)
}

const APP_NEEDS: Needs = Needs {
    rootfs: true,
    ..Needs::NONE
};

pub static WORKLOADS: &[WorkloadInfo] = &[
    WorkloadInfo {
        name: "app.pgbench.ro",
        unit: "tps",
        higher_is_better: true,
        description: "PostgreSQL, pgbench -S (select only), prepared, 1 client by default: \
                      short transactions over a Unix socket, two processes taking turns",
        kind: Kind::App,
        needs: APP_NEEDS,
        suites: SUITES,
        metric: Metric::Rate { scale: 1.0 },
        setup_timeout_s: 1200,
        run: run_pgbench_ro,
    },
    WorkloadInfo {
        name: "app.pgbench.rw",
        unit: "tps",
        higher_is_better: true,
        description: "PostgreSQL, pgbench TPC-B-like read-write mix, prepared: every commit \
                      waits for a flush of the write-ahead log to the guest's disk",
        kind: Kind::App,
        needs: APP_NEEDS,
        suites: SUITES,
        metric: Metric::Rate { scale: 1.0 },
        setup_timeout_s: 1200,
        run: run_pgbench_rw,
    },
    WorkloadInfo {
        name: "app.compile",
        unit: "s",
        higher_is_better: false,
        description: "configure --static + make -j<CPUs> of zlib (library, example, minigzip) from a clean tree: process \
                      creation, page faults and compiler CPU",
        kind: Kind::App,
        needs: APP_NEEDS,
        suites: SUITES,
        metric: Metric::TimePerOp { scale: 1e-9 },
        setup_timeout_s: compile::TIMEOUT.as_secs() as u32,
        run: compile::run_zlib,
    },
    WorkloadInfo {
        name: "app.compile.xz",
        unit: "s",
        higher_is_better: false,
        description: "configure + make -j<CPUs> of xz-utils (an autoconf configure of hundreds \
                      of checks, a library and its tools): a longer compile",
        kind: Kind::App,
        needs: APP_NEEDS,
        suites: &["app-full"],
        metric: Metric::TimePerOp { scale: 1e-9 },
        setup_timeout_s: compile::TIMEOUT.as_secs() as u32,
        run: compile::run_xz,
    },
    WorkloadInfo {
        name: "app.compile.kernel",
        unit: "s",
        higher_is_better: false,
        description: "make tinyconfig + make -j<CPUs> of the Linux kernel from the release's \
                      linux-source, from a clean tree: seed 004's kernel compile (minutes \
                      natively, tens of minutes under binary translation)",
        kind: Kind::App,
        needs: APP_NEEDS,
        suites: &["app-full"],
        metric: Metric::TimePerOp { scale: 1e-9 },
        setup_timeout_s: compile::KERNEL_TIMEOUT.as_secs() as u32,
        run: compile::run_kernel,
    },
    WorkloadInfo {
        name: "app.web",
        unit: "sessions",
        higher_is_better: true,
        description: "nginx serving a SPECweb-Support-like file set to the host's load \
                      generator: the most simultaneous sessions that meet QoS (95% of requests \
                      within 60 ms, 99% within 100 ms, 100 ms think time)",
        kind: Kind::App,
        needs: Needs {
            rootfs: true,
            network: true,
            ..Needs::NONE
        },
        suites: SUITES,
        metric: Metric::Level,
        setup_timeout_s: 600,
        run: web::run,
    },
    WorkloadInfo {
        name: "app.files",
        unit: "ops/s",
        higher_is_better: true,
        description: "dbench-like file-system load: create, fsync, stat, read and delete a \
                      2000-file source-like tree on the guest's disk",
        kind: Kind::App,
        needs: APP_NEEDS,
        suites: SUITES,
        metric: Metric::Rate { scale: 1.0 },
        setup_timeout_s: 600,
        run: files::run,
    },
    WorkloadInfo {
        name: "fs.fsync",
        unit: "syncs/s",
        higher_is_better: true,
        description: "create a file on the applications' disk, write 4 KiB, fsync: one durable \
                      write through the guest's file system and disk (prices fsyncs for explain)",
        kind: Kind::Micro,
        needs: APP_NEEDS,
        suites: &["explain-costs"],
        metric: Metric::Rate { scale: 1.0 },
        setup_timeout_s: 600,
        run: files::run_fsync,
    },
    WorkloadInfo {
        name: "fs.open",
        unit: "ns/op",
        higher_is_better: false,
        description: "open an existing file by its path on the applications' disk, fstat it, \
                      close it: the lookup a web server or a compiler makes before each read \
                      (prices path calls for explain)",
        kind: Kind::Micro,
        needs: APP_NEEDS,
        suites: &["explain-costs"],
        metric: Metric::TimePerOp { scale: 1.0 },
        setup_timeout_s: 600,
        run: files::run_open,
    },
    WorkloadInfo {
        name: "fs.create",
        unit: "ns/op",
        higher_is_better: false,
        description: "create a new empty file by its path on the applications' disk, close it, \
                      remove it: a directory entry and an inode made and freed, as app.files \
                      and a compiler's temporary files do (prices creating calls for explain; \
                      param unlink=0 times the creations alone)",
        kind: Kind::Micro,
        needs: APP_NEEDS,
        suites: &["explain-costs"],
        metric: Metric::TimePerOp { scale: 1.0 },
        setup_timeout_s: 600,
        run: files::run_create,
    },
    WorkloadInfo {
        name: "fs.sendfile",
        unit: "ns/op",
        higher_is_better: false,
        description: "sendfile a 32 KiB file of the applications' disk into a TCP connection \
                      over the guest's loopback: how a web server sends a response (prices \
                      sendfile calls for explain)",
        kind: Kind::Micro,
        needs: APP_NEEDS,
        suites: &["explain-costs"],
        metric: Metric::TimePerOp { scale: 1.0 },
        setup_timeout_s: 600,
        run: files::run_sendfile,
    },
    WorkloadInfo {
        name: "proc.spawn",
        unit: "µs/op",
        higher_is_better: false,
        description: "fork, chroot into the applications' root, exec the dynamically linked \
                      /usr/bin/true, wait: a program started as a build starts its compilers \
                      (prices execs for explain)",
        kind: Kind::Micro,
        needs: APP_NEEDS,
        suites: &["explain-costs"],
        metric: Metric::TimePerOp { scale: 1e-3 },
        setup_timeout_s: 600,
        run: spawn::run,
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_root_an_application_is_unsupported() {
        for w in WORKLOADS {
            match (w.run)(&Params::new(), 1) {
                Err(WorkloadError::Unsupported(m)) => assert!(m.contains("root file system")),
                other => panic!("{}: {other:?}", w.name),
            }
        }
    }

    #[test]
    fn tails_are_short_and_keep_the_end() {
        let text: String = (0..100).map(|i| format!("line {i}\n")).collect();
        let t = output_tail(&text);
        assert!(t.ends_with("line 99"));
        assert!(!t.contains("line 90 "));
        let long = "x".repeat(5000);
        assert!(output_tail(&long).len() <= 1203);
    }
}
