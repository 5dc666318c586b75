//! Disk workloads (suite `io`): direct I/O against a file or device the host attached.
//!
//! I/O is where virtualization costs most. A guest's read crosses the guest block layer and its
//! driver, a VM exit or a doorbell (virtio notification), the device model in the hypervisor
//! (QEMU's virtio-blk, an emulated IDE disk, UML's ubd thread, gVisor's gofer), the host's own
//! filesystem and block layer, and an interrupt injected back on completion. The CPU and memory
//! workloads run at native speed under hardware virtualization; these are where the exits, the
//! copies and the extra scheduling show.
//!
//! - `io.randread`, `io.randwrite`: 4 KiB I/Os at uniformly random block-aligned offsets, in
//!   IOPS. At queue depth 1 (the default) each I/O waits for the previous one, so the rate is
//!   the inverse of the latency of one I/O through the whole virtual I/O path: the fixed cost
//!   per request that databases and small-file work pay. `lat_p50_us` and `lat_p99_us` give
//!   its distribution, where a hypervisor's occasional stalls show even when the mean hides
//!   them. With `iodepth` N several I/Os are in flight, which shows whether the virtual device
//!   can overlap requests (multiple queues, an I/O thread) or serialises them.
//! - `io.fsync`: `io.randwrite`'s write followed by `fdatasync`, at queue depth 1, in syncs
//!   per second: what one durable commit costs (a database's WAL flush, dbench's and
//!   app.files' fsync), the device's cache flush included. A guest whose virtual disk acknowledges
//!   flushes from the host's page cache (UML's ubd, a QEMU disk with `cache=unsafe`) is faster
//!   here than the host: that is what it is, and `explain` prices applications' fsyncs with it.
//! - `io.seqread`, `io.seqwrite`: 1 MiB I/Os in order, in MB/s (10^6 bytes per second):
//!   throughput, where the per-request cost is amortised and copies and bandwidth dominate.
//!   Each run starts at a random block and wraps around at the end of the target.
//!
//! Every I/O uses O_DIRECT, so that neither the guest's nor the agent's page cache answers:
//! a cached read would measure memory, not the virtual disk. Only where the filesystem refuses
//! O_DIRECT (EINVAL at open: tmpfs before Linux 6.6, some 9p and FUSE set-ups) does the
//! workload fall back to buffered I/O, and it says so in its labels. What happens below the
//! guest (the cache mode of the disk image on the host) is the host's configuration, outside
//! what the agent can see.
//!
//! Parameters:
//! - `path` (string): the file or block device. The workload never creates, truncates or
//!   resizes it; the host makes one with [`create_target_file`] and attaches it to the guest.
//! - `allow_write` (bool, default false): the write workloads refuse to run without it. This
//!   is the agent's safety net; the host only sets it for disks it created, or when told to
//!   with `--allow-destructive-writes`.
//! - `block` (bytes, a multiple of 512; default 4096 for the random and 1 MiB for the
//!   sequential workloads).
//! - `iodepth` (default 1, at most 256): 1 is synchronous pread/pwrite; above 1 the I/Os go
//!   through io_uring, or, where io_uring cannot be set up (kernels before 5.6, seccomp
//!   profiles such as Docker's default, gVisor), through that many threads of pread/pwrite.
//!
//! `iterations` is the number of I/Os (random) or of blocks (sequential). The measured
//! interval excludes opening the target, filling buffers and starting threads. Writes carry
//! non-zero pseudo-random data, so that no layer can detect and skip zero blocks.
//!
//! Labels: `engine` (`psync`, `io_uring`, `psync-threads`), `direct` (`true`/`false`),
//! `direct_fallback` (why not direct), `fallback` (why not io_uring), `target` (`file` or
//! `block device`), `iodepth`. Extras: `lat_p50_us`, `lat_p99_us` (per-I/O latency in µs,
//! submission to completion).

mod engine;
mod latency;
mod target;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

pub use target::create_target_file;

use crate::cpu::{check_iterations, SplitMix64};
use crate::{param_u64, Kind, Metric, Needs, Outcome, Params, WorkloadError, WorkloadInfo};
use engine::{Offsets, Op, Plan};

const SUITES: &[&str] = &["io"];
/// Opening, sizing and filling buffers are quick; a slow virtual disk may take a while to
/// answer the first I/Os.
const SETUP_TIMEOUT_S: u32 = 30;
const DEFAULT_RANDOM_BLOCK: u64 = 4096;
const DEFAULT_SEQUENTIAL_BLOCK: u64 = 1 << 20;
const MAX_BLOCK: u64 = 64 << 20;
const MAX_IODEPTH: u64 = 256;
/// Bound on the buffers of one run (block × iodepth), for small guests.
const MAX_BUFFERS: u64 = 256 << 20;

pub static WORKLOADS: &[WorkloadInfo] = &[
    WorkloadInfo {
        name: "io.randread",
        unit: "IOPS",
        higher_is_better: true,
        description: "4 KiB random O_DIRECT reads (queue depth 1 by default): the latency of one \
                      request through the whole virtual I/O path, exits and device model included",
        kind: Kind::Micro,
        needs: Needs::DISK_READ,
        suites: SUITES,
        metric: Metric::Rate { scale: 1.0 },
        setup_timeout_s: SETUP_TIMEOUT_S,
        run: run_randread,
    },
    WorkloadInfo {
        name: "io.randwrite",
        unit: "IOPS",
        higher_is_better: true,
        description: "4 KiB random O_DIRECT writes of non-zero data (queue depth 1 by default): \
                      per-request cost of the virtual write path; needs a writable disk",
        kind: Kind::Micro,
        needs: Needs::DISK_WRITE,
        suites: SUITES,
        metric: Metric::Rate { scale: 1.0 },
        setup_timeout_s: SETUP_TIMEOUT_S,
        run: run_randwrite,
    },
    WorkloadInfo {
        name: "io.fsync",
        unit: "syncs/s",
        higher_is_better: true,
        description: "a 4 KiB O_DIRECT write at a random offset, then fdatasync (queue depth \
                      1): one durable commit (a database's WAL flush, dbench's fsync) through \
                      the virtual disk's write and cache-flush path; needs a writable disk",
        kind: Kind::Micro,
        needs: Needs::DISK_WRITE,
        suites: SUITES,
        metric: Metric::Rate { scale: 1.0 },
        setup_timeout_s: SETUP_TIMEOUT_S,
        run: run_fsync,
    },
    WorkloadInfo {
        name: "io.seqread",
        unit: "MB/s",
        higher_is_better: true,
        description: "1 MiB sequential O_DIRECT reads: throughput of the virtual disk, where \
                      copies and bandwidth matter more than the per-request cost",
        kind: Kind::Micro,
        needs: Needs::DISK_READ,
        suites: SUITES,
        metric: Metric::Rate { scale: 1e-6 },
        setup_timeout_s: SETUP_TIMEOUT_S,
        run: run_seqread,
    },
    WorkloadInfo {
        name: "io.seqwrite",
        unit: "MB/s",
        higher_is_better: true,
        description: "1 MiB sequential O_DIRECT writes of non-zero data: write throughput of \
                      the virtual disk; needs a writable disk",
        kind: Kind::Micro,
        needs: Needs::DISK_WRITE,
        suites: SUITES,
        metric: Metric::Rate { scale: 1e-6 },
        setup_timeout_s: SETUP_TIMEOUT_S,
        run: run_seqwrite,
    },
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Random,
    Sequential,
}

fn run_randread(params: &Params, iterations: u64) -> Result<Outcome, WorkloadError> {
    run(params, iterations, Op::Read, Access::Random, false)
}

fn run_randwrite(params: &Params, iterations: u64) -> Result<Outcome, WorkloadError> {
    run(params, iterations, Op::Write, Access::Random, false)
}

fn run_fsync(params: &Params, iterations: u64) -> Result<Outcome, WorkloadError> {
    run(params, iterations, Op::Write, Access::Random, true)
}

fn run_seqread(params: &Params, iterations: u64) -> Result<Outcome, WorkloadError> {
    run(params, iterations, Op::Read, Access::Sequential, false)
}

fn run_seqwrite(params: &Params, iterations: u64) -> Result<Outcome, WorkloadError> {
    run(params, iterations, Op::Write, Access::Sequential, false)
}

/// The parameters of one run, checked.
#[derive(Debug)]
struct Job {
    path: PathBuf,
    block: u64,
    iodepth: u32,
}

impl Job {
    fn from_params(params: &Params, op: Op, access: Access) -> Result<Self, WorkloadError> {
        let path = match params.get("path") {
            None => {
                return Err(WorkloadError::Unsupported(
                    "no disk attached to this guest (no `path` parameter): run with a disk \
                     (hvbench attaches one for the io suite)"
                        .into(),
                ))
            }
            Some(serde_json::Value::String(s)) if !s.is_empty() => PathBuf::from(s),
            Some(v) => {
                return Err(WorkloadError::BadParam(format!(
                    "path must be a non-empty string, got {v}"
                )))
            }
        };
        let allow_write = match params.get("allow_write") {
            None => false,
            Some(serde_json::Value::Bool(b)) => *b,
            Some(v) => {
                return Err(WorkloadError::BadParam(format!(
                    "allow_write must be true or false, got {v}"
                )))
            }
        };
        if op == Op::Write && !allow_write {
            return Err(WorkloadError::Unsupported(format!(
                "writes refused: the host did not allow writes to {} (allow_write is not set); \
                 hvbench only writes to disks it created, or with --allow-destructive-writes",
                path.display()
            )));
        }
        let default_block = match access {
            Access::Random => DEFAULT_RANDOM_BLOCK,
            Access::Sequential => DEFAULT_SEQUENTIAL_BLOCK,
        };
        let block = param_u64(params, "block", default_block)?;
        if block == 0 || block % 512 != 0 || block > MAX_BLOCK {
            return Err(WorkloadError::BadParam(format!(
                "block must be a positive multiple of 512 bytes up to {MAX_BLOCK}, got {block}"
            )));
        }
        let iodepth = param_u64(params, "iodepth", 1)?;
        if !(1..=MAX_IODEPTH).contains(&iodepth) {
            return Err(WorkloadError::BadParam(format!(
                "iodepth must be in 1..={MAX_IODEPTH}, got {iodepth}"
            )));
        }
        if block * iodepth > MAX_BUFFERS {
            return Err(WorkloadError::BadParam(format!(
                "block × iodepth = {} bytes of buffers, more than the {MAX_BUFFERS} allowed",
                block * iodepth
            )));
        }
        Ok(Job {
            path,
            block,
            iodepth: iodepth as u32,
        })
    }
}

/// A seed that differs between runs (the clock, the process, a counter), so that repetitions
/// do not visit the same blocks: a second visit could be answered by a cache below the guest
/// (the host's page cache, a disk's own cache) that the first visit filled.
pub(crate) fn run_seed() -> u64 {
    static RUNS: AtomicU64 = AtomicU64::new(0);
    let clock = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let local = 0u8;
    let mut mix = SplitMix64::new(
        clock
            ^ (u64::from(std::process::id()) << 32)
            ^ RUNS.fetch_add(1, Ordering::Relaxed).wrapping_mul(0x9e37_79b9_7f4a_7c15)
            // The stack address varies with ASLR, even where the clock starts at the epoch.
            ^ (&local as *const u8 as u64),
    );
    mix.next_u64()
}

/// `sync`: an fdatasync after every write, part of its latency (queue depth 1 only).
fn run(
    params: &Params,
    iterations: u64,
    op: Op,
    access: Access,
    sync: bool,
) -> Result<Outcome, WorkloadError> {
    let iterations = check_iterations(iterations)?;
    let job = Job::from_params(params, op, access)?;
    if sync && job.iodepth != 1 {
        return Err(WorkloadError::BadParam(format!(
            "a write followed by its fdatasync is one request at a time: iodepth must be 1, got \
             {}",
            job.iodepth
        )));
    }
    let target = target::open(&job.path, op == Op::Write)?;
    if let (Some(sector), None) = (target.sector, &target.direct_fallback) {
        if job.block % sector != 0 {
            return Err(WorkloadError::BadParam(format!(
                "block {} is not a multiple of the {sector}-byte sectors of {}",
                job.block,
                job.path.display()
            )));
        }
    }
    let blocks = target.size / job.block;
    if blocks == 0 {
        return Err(WorkloadError::Failed(format!(
            "{} holds {} bytes, less than one block of {} bytes",
            job.path.display(),
            target.size,
            job.block
        )));
    }
    if target.direct_fallback.is_some() {
        target::drop_cache(&target.file);
    }

    let mut rng = SplitMix64::new(run_seed());
    let offsets = match access {
        Access::Random => Offsets::Random {
            rng: SplitMix64::new(rng.next_u64()),
            blocks,
            block: job.block,
        },
        Access::Sequential => Offsets::Sequential {
            next: rng.below(blocks),
            step: 1,
            blocks,
            block: job.block,
        },
    };
    let plan = Plan {
        op,
        block: job.block as usize,
        iterations,
        offsets,
        fill_seed: rng.next_u64(),
        sync,
    };

    let mut labels = std::collections::BTreeMap::new();
    let measured = if job.iodepth == 1 {
        labels.insert("engine".to_string(), "psync".to_string());
        engine::psync(&target.file, plan)?
    } else {
        match engine::uring_setup(job.iodepth) {
            Ok(ring) => {
                labels.insert("engine".to_string(), "io_uring".to_string());
                engine::uring(ring, &target.file, job.iodepth as usize, plan)?
            }
            Err(reason) => {
                labels.insert("engine".to_string(), "psync-threads".to_string());
                labels.insert("fallback".to_string(), reason);
                engine::threads(&target.file, job.iodepth, plan, &mut rng)?
            }
        }
    };

    if measured.latency.count() != iterations {
        return Err(WorkloadError::Failed(format!(
            "{} I/Os timed for {iterations} asked",
            measured.latency.count()
        )));
    }
    labels.insert(
        "direct".to_string(),
        target.direct_fallback.is_none().to_string(),
    );
    if let Some(reason) = target.direct_fallback {
        labels.insert("direct_fallback".to_string(), reason);
    }
    labels.insert("target".to_string(), target.kind.label().to_string());
    if sync {
        labels.insert("sync".to_string(), "fdatasync".to_string());
    }

    let work = match access {
        Access::Random => iterations as f64,
        Access::Sequential => iterations as f64 * job.block as f64,
    };
    let mut out = Outcome::new(work, measured.elapsed);
    out.labels = labels;
    for (key, q) in [("lat_p50_us", 0.50), ("lat_p99_us", 0.99)] {
        if let Some(ns) = measured.latency.quantile_ns(q) {
            out.extras.insert(key.to_string(), ns / 1e3);
        }
    }
    // A setting, not a measurement: a label, so reports do not print it as a metric.
    out.labels
        .insert("iodepth".to_string(), job.iodepth.to_string());
    Ok(out)
}
