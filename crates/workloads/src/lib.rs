//! Workloads: what hvbench measures.
//!
//! Every workload is one [`WorkloadInfo`] row in a registry table: its name, unit, direction,
//! suites, timeout and the function that runs it. Micro workloads run natively in this crate; the
//! agent calls [`run_rep`] for each repetition the host asks for, on the host and in every
//! guest alike.
//!
//! A workload function runs a given number of iterations and returns an [`Outcome`]: how much
//! work it did and the interval it measured. The metric is computed from those by the row's
//! [`Metric`], so that `--copies N` can aggregate any workload the same way: the sum of the work
//! of all copies over the wall time from their common start to the last one's end.
//!
//! ```
//! let w = hvbench_workloads::find("sys.getppid").unwrap();
//! assert_eq!(w.unit, "ns/op");
//! assert!(!w.higher_is_better);
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub mod app;
pub mod copies;
pub mod cpu;
pub mod io;
pub mod kept;
pub mod kernel;
pub mod mem;
pub mod net;
pub mod stress;
pub mod synthetic;

/// Parameters of one job, as sent by the host (`max_prime`, `buffer_mib`, ...).
pub type Params = BTreeMap<String, serde_json::Value>;

/// The parameter the agent sets (to `true`) on a warm-up repetition. A warm-up exists to fill
/// caches (the page cache with a toolchain, a database's buffers), not to be measured; a
/// workload whose repetition is a whole one-shot job (a compile: minutes under binary
/// translation) may do only the part that fills them.
pub const WARMUP_PARAM: &str = "warmup_rep";

/// Whether `params` are those of a warm-up repetition ([`WARMUP_PARAM`]).
pub fn is_warmup(params: &Params) -> bool {
    params.get(WARMUP_PARAM).and_then(|v| v.as_bool()) == Some(true)
}

/// Reads an unsigned integer parameter, with a default when it is absent.
pub fn param_u64(params: &Params, name: &str, default: u64) -> Result<u64, WorkloadError> {
    match params.get(name) {
        None => Ok(default),
        Some(v) => v.as_u64().ok_or_else(|| {
            WorkloadError::BadParam(format!("{name} must be a non-negative integer, got {v}"))
        }),
    }
}

/// How a workload's [`Outcome`] becomes its metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Metric {
    /// `work × scale / seconds`: a rate (loops/s with scale 1, MB/s with work in bytes and
    /// scale 1e-6, MWIPS with scale 1e-6).
    Rate { scale: f64 },
    /// `nanoseconds / work × scale`: a time per operation (ns/op with scale 1, µs/op with 1e-3).
    TimePerOp { scale: f64 },
    /// `work` itself, whatever the time: a level a search found (the most web sessions that
    /// meet QoS), higher is better.
    Level,
}

impl Metric {
    /// The metric value of `work` units done in `elapsed`.
    pub fn value(self, work: f64, elapsed: Duration) -> f64 {
        let secs = elapsed.as_secs_f64();
        match self {
            Metric::Rate { scale } => work * scale / secs,
            Metric::TimePerOp { scale } => secs * 1e9 / work * scale,
            Metric::Level => work,
        }
    }
}

/// Which kind of workload a row is: what a scenario may do with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Native Rust inside the agent: a measured micro workload.
    Micro,
    /// An application (a database, a compile, a web server) in a root file system.
    App,
    /// A load for the isolation scenario, not a measurement of its own.
    Stressor,
    /// A reading a scenario takes (memory in use, a host reference), not a benchmark.
    Probe,
}

/// How a workload uses the guest's disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskUse {
    None,
    /// Reads only: a user's disk may be named (`--disk`).
    Read,
    /// Writes: only to a disk hvbench created or the user allowed to be destroyed.
    Write,
}

/// What a workload needs from the guest it runs in, declared by the workload itself so that
/// no scenario guesses it from the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Needs {
    pub disk: DiskUse,
    /// A network to the host and a host peer for each job.
    pub network: bool,
    /// A root file system with the applications (`hvbench image build`).
    pub rootfs: bool,
}

impl Needs {
    pub const NONE: Needs = Needs {
        disk: DiskUse::None,
        network: false,
        rootfs: false,
    };
    pub const DISK_READ: Needs = Needs {
        disk: DiskUse::Read,
        ..Needs::NONE
    };
    pub const DISK_WRITE: Needs = Needs {
        disk: DiskUse::Write,
        ..Needs::NONE
    };
    pub const NETWORK: Needs = Needs {
        network: true,
        ..Needs::NONE
    };
}

/// What a workload function reports for one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Units of work done (loops, bytes, operations), in the unit the row's [`Metric`] expects.
    pub work: f64,
    /// The measured interval, set-up excluded.
    pub elapsed: Duration,
    /// Secondary metrics (`p99_ns`, ...), already in their final unit.
    pub extras: BTreeMap<String, f64>,
    /// Text facts of the run (`engine=io_uring`, the reason of a fallback).
    pub labels: BTreeMap<String, String>,
}

impl Outcome {
    pub fn new(work: f64, elapsed: Duration) -> Self {
        Self {
            work,
            elapsed,
            extras: BTreeMap::new(),
            labels: BTreeMap::new(),
        }
    }
}

/// Why a workload did not produce a result.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WorkloadError {
    /// It cannot run here; the run reports it as skipped with this reason.
    #[error("unsupported here: {0}")]
    Unsupported(String),
    /// It ran and something failed (a check, a system call).
    #[error("failed: {0}")]
    Failed(String),
    /// A parameter is out of range.
    #[error("bad parameter: {0}")]
    BadParam(String),
}

impl WorkloadError {
    /// A failed system call, with errno text.
    pub fn os(what: &str) -> Self {
        WorkloadError::Failed(format!("{what}: {}", std::io::Error::last_os_error()))
    }
}

/// Runs `iterations` iterations of a workload with `params`.
pub type RunFn = fn(&Params, u64) -> Result<Outcome, WorkloadError>;

/// One row of the registry.
#[derive(Debug)]
pub struct WorkloadInfo {
    /// `group.name`, e.g. `sys.getppid`.
    pub name: &'static str,
    /// Unit of the metric, e.g. `ns/op`, `MB/s`, `loops/s`.
    pub unit: &'static str,
    pub higher_is_better: bool,
    /// One line: what it measures and why it matters for virtualization.
    pub description: &'static str,
    pub kind: Kind,
    /// The disk, network or root file system it needs.
    pub needs: Needs,
    /// Suites that include it (`quick`, `full`, `cpu`, ...).
    pub suites: &'static [&'static str],
    pub metric: Metric,
    /// Bound on one repetition beyond the target duration, in seconds (set-up such as filling
    /// a large buffer); the host gives up on a silent guest after target + this.
    pub setup_timeout_s: u32,
    pub run: RunFn,
}

/// Every workload, in the order `hvbench list` shows them.
pub fn registry() -> impl Iterator<Item = &'static WorkloadInfo> {
    cpu::WORKLOADS
        .iter()
        .chain(mem::WORKLOADS)
        .chain(kernel::WORKLOADS)
        .chain(io::WORKLOADS)
        .chain(net::WORKLOADS)
        .chain(stress::WORKLOADS)
        .chain(app::WORKLOADS)
        .chain(synthetic::WORKLOADS)
}

/// Finds a workload by name.
pub fn find(name: &str) -> Option<&'static WorkloadInfo> {
    registry().find(|w| w.name == name)
}

/// Finds the number of iterations that makes one run last about `target`.
///
/// Starts at one iteration and grows geometrically until a run takes at least a tenth of the
/// target, then scales linearly. Cheap workloads are thus measured over enough iterations that
/// timer resolution and call overhead vanish, and slow ones (a guest under binary translation)
/// are not run for minutes.
pub fn calibrate(
    w: &WorkloadInfo,
    params: &Params,
    target: Duration,
) -> Result<u64, WorkloadError> {
    if w.kind == Kind::App {
        // An application runs for a duration (pgbench -T) or once; never probed: its first
        // run pays for the set-up (a database loaded, a root mounted).
        return Ok(target.as_secs_f64().round().max(1.0) as u64);
    }
    let mut iterations: u64 = 1;
    loop {
        let out = (w.run)(params, iterations)?;
        let t = out.elapsed.max(Duration::from_nanos(1));
        if t >= target / 10 || iterations >= 1 << 40 {
            let scaled = iterations as f64 * target.as_secs_f64() / t.as_secs_f64();
            return Ok(scaled.round().clamp(1.0, (1u64 << 50) as f64) as u64);
        }
        // Grow faster while far from the target, but never overshoot it tenfold.
        let factor = (target.as_secs_f64() / 10.0 / t.as_secs_f64()).clamp(2.0, 100.0);
        iterations = (iterations as f64 * factor).ceil() as u64;
    }
}

/// The result of one repetition: the metric and what it was computed from.
#[derive(Debug, Clone, PartialEq)]
pub struct RepResult {
    pub value: f64,
    pub iterations: u64,
    /// Units of work of all copies together.
    pub work: f64,
    /// The measured interval (for copies, common start to last end).
    pub elapsed: Duration,
    /// The whole repetition, set-up included.
    pub wall: Duration,
    pub extras: BTreeMap<String, f64>,
    pub labels: BTreeMap<String, String>,
}

/// Runs one repetition of `w` with `copies` concurrent instances.
pub fn run_rep(
    w: &WorkloadInfo,
    params: &Params,
    iterations: u64,
    copies: u32,
) -> Result<RepResult, WorkloadError> {
    let start = Instant::now();
    let out = if w.kind == Kind::App {
        // Applications have their own concurrency (pgbench's clients, make's jobs).
        let mut p = params.clone();
        if copies > 1 {
            p.entry("clients".to_string()).or_insert(copies.into());
        }
        (w.run)(&p, iterations)?
    } else if copies <= 1 {
        (w.run)(params, iterations)?
    } else {
        copies::run_copies(w, params, iterations, copies)?
    };
    let wall = start.elapsed();
    if out.work.is_nan() || out.work <= 0.0 || out.elapsed.is_zero() {
        return Err(WorkloadError::Failed(format!(
            "{} measured nothing ({} units in {:?})",
            w.name, out.work, out.elapsed
        )));
    }
    let value = w.metric.value(out.work, out.elapsed);
    let mut extras = out.extras;
    // JSON has no NaN or infinity (they would reach the host as null and break the sample):
    // a secondary figure that could not be computed is left out.
    extras.retain(|_, v| v.is_finite());
    Ok(RepResult {
        value,
        iterations,
        work: out.work,
        elapsed: out.elapsed,
        wall,
        extras,
        labels: out.labels,
    })
}
