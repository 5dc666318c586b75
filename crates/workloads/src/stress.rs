//! Stressors for the isolation scenario, and a memory probe for the lifecycle scenario.
//!
//! The benchvm paper measured performance isolation with one guest under an extreme load of one
//! resource (memory, fork, CPU, disk, network) beside guests running a steady workload. Here a
//! stressor is a `stress.*` workload: with the parameter `steady` naming another workload, one
//! run starts the stressor in the background, runs `steady` for `iterations` in the foreground
//! (its outcome is the run's outcome, so the host computes the steady workload's own metric from
//! `work` and `elapsed`), then stops the stressor. Without `steady`, a run holds the stress for
//! `iterations` milliseconds (unit `ms/s`), so a stressed guest can keep the stress on while the
//! other guests finish.
//!
//! Every stressor is bounded. A supervisor process (its own process group, a child subreaper)
//! forks the workers and restarts any that die (the OOM killer picks memory workers first:
//! `oom_score_adj` 1000); it stops when the run closes its stop pipe, kills its workers, reaps
//! every descendant and exits. Workers and supervisor die with their parent
//! (`PR_SET_PDEATHSIG`) and after `max_s` seconds at the latest (`alarm`). Memory is bounded by
//! `mem_pct` of the guest's MemTotal and `mem_max_mib`, forks by `fork_cap` live processes, disk
//! writes by `disk_mib` per worker in a file unlinked as soon as it is opened, or, with `device`
//! (a disk the host attached and allowed writes to), in a region of that disk per worker.
//!
//! The network stressors (`stress.net-send`, `stress.net-recv`) need the guest's network: the
//! parameter `listen` is the agent's listening address, as for the `net.*` workloads (without
//! it they are unsupported), and a host peer ([`crate::net::peer::Peer`]) must connect to it.
//! Before forking, a run accepts one connection from the peer and asks for an unbounded stream
//! ([`crate::net::wire::UNBOUNDED`]): the peer sinks what the guest sends (`net-send`) or
//! sources what the guest receives (`net-recv`) until the run closes the connection. One worker
//! moves the bytes, on that one connection: a single TCP stream already saturates a guest's NIC
//! (and whatever user-space device model or stack stands behind it), and a second stream would
//! need a second peer connection, which the peer (one connection at a time) does not serve. The
//! extras `stress_net_bytes` and `stress_net_gbit_s` say how much moved (what the worker's
//! sends or receives returned: one that completes as the worker is killed at the end is not
//! counted, so a little less than the peer saw, by at most one buffer). A stream that breaks
//! during the run (the peer left) fails the run: the stress was not held.
//!
//! Code that runs in forked children allocates nothing and only makes system calls, so the
//! stressors are safe to start from a multi-threaded process (a test) too.
//!
//! `probe.meminfo` reads `/proc/meminfo` and reports MemTotal, MemAvailable and their
//! difference (the memory the guest uses) as extras: the lifecycle scenario's view from inside.

use std::ffi::CString;
use std::hint::black_box;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::kernel::os;
use crate::{param_u64, Kind, Metric, Needs, Outcome, Params, WorkloadError, WorkloadInfo};

/// Workers of one stressor at most.
const MAX_WORKERS: usize = 64;
/// Memory chunks a memory worker maps (4 MiB each, so at most 4 GiB per worker).
const MAX_CHUNKS: usize = 1024;
const CHUNK: usize = 4 << 20;
const PAGE: usize = 4096;
/// Bytes per disk write.
const DISK_BLOCK: usize = 1 << 20;
/// Bytes per send or receive of a network worker (a buffer on its stack).
const NET_BUF: usize = 128 * 1024;
/// The network worker's error cell: the stream ended with end of file, not an errno.
const NET_EOF: u64 = u64::MAX;
const TMPFS_MAGIC: i64 = 0x0102_1994;
const RAMFS_MAGIC: i64 = 0x8584_58f6;

pub static WORKLOADS: &[WorkloadInfo] = &[
    stress_row(
        "stress.cpu",
        "Isolation stressor: a busy loop on every online CPU (with `steady`: that workload's \
         outcome under the stress; without: the stress held for `iterations` ms)",
        Needs::NONE,
        run_cpu,
    ),
    stress_row(
        "stress.memory",
        "Isolation stressor: allocate and keep touching more than the guest's RAM \
         (mem_pct of MemTotal, bounded by mem_max_mib); workers are the OOM killer's first pick",
        Needs::NONE,
        run_memory,
    ),
    stress_row(
        "stress.fork",
        "Isolation stressor: a fork storm, at most fork_cap live processes",
        Needs::NONE,
        run_fork,
    ),
    stress_row(
        "stress.disk",
        "Isolation stressor: sequential 1 MiB writes (O_DIRECT where allowed) to the attached \
         disk `device` (with `allow_write`), else to an unlinked file in `dir` (default the \
         temporary directory)",
        Needs::DISK_WRITE,
        run_disk,
    ),
    stress_row(
        "stress.net-send",
        "Isolation stressor: one TCP stream from the guest to a host peer for as long as the run \
         lasts (`listen`: the agent's listening address; one stream saturates a guest's NIC)",
        Needs::NETWORK,
        run_net_send,
    ),
    stress_row(
        "stress.net-recv",
        "Isolation stressor: one TCP stream from a host peer into the guest for as long as the \
         run lasts (`listen`: the agent's listening address; one stream saturates a guest's NIC)",
        Needs::NETWORK,
        run_net_recv,
    ),
    WorkloadInfo {
        name: "probe.meminfo",
        unit: "reads/s",
        higher_is_better: true,
        description: "Reads /proc/meminfo; extras: mem_total_kib, mem_available_kib, \
                      mem_used_kib (total - available). The lifecycle scenario's view of the \
                      memory a guest uses",
        kind: Kind::Probe,
        needs: Needs::NONE,
        suites: &[],
        metric: Metric::Rate { scale: 1.0 },
        setup_timeout_s: 10,
        run: run_meminfo,
    },
];

const fn stress_row(
    name: &'static str,
    description: &'static str,
    needs: Needs,
    run: crate::RunFn,
) -> WorkloadInfo {
    WorkloadInfo {
        name,
        unit: "work/s",
        higher_is_better: true,
        description,
        kind: Kind::Stressor,
        needs,
        suites: &[],
        metric: Metric::Rate { scale: 1.0 },
        setup_timeout_s: 60,
        run,
    }
}

/// Which resource a stressor loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stressor {
    Cpu,
    Memory,
    Fork,
    Disk,
    /// The guest sends to the host peer.
    NetSend,
    /// The host peer sends to the guest.
    NetRecv,
}

impl Stressor {
    fn is_net(self) -> bool {
        matches!(self, Stressor::NetSend | Stressor::NetRecv)
    }
}

fn run_cpu(params: &Params, iterations: u64) -> Result<Outcome, WorkloadError> {
    run_stressed(Stressor::Cpu, params, iterations)
}
fn run_memory(params: &Params, iterations: u64) -> Result<Outcome, WorkloadError> {
    run_stressed(Stressor::Memory, params, iterations)
}
fn run_fork(params: &Params, iterations: u64) -> Result<Outcome, WorkloadError> {
    run_stressed(Stressor::Fork, params, iterations)
}
fn run_disk(params: &Params, iterations: u64) -> Result<Outcome, WorkloadError> {
    run_stressed(Stressor::Disk, params, iterations)
}
fn run_net_send(params: &Params, iterations: u64) -> Result<Outcome, WorkloadError> {
    run_stressed(Stressor::NetSend, params, iterations)
}
fn run_net_recv(params: &Params, iterations: u64) -> Result<Outcome, WorkloadError> {
    run_stressed(Stressor::NetRecv, params, iterations)
}

/// Everything a stressor's processes need, prepared before any fork.
struct Config {
    kind: Stressor,
    workers: usize,
    max_s: u32,
    /// Memory: bytes each worker maps and touches.
    mem_bytes_per_worker: usize,
    /// Fork: live children per worker.
    forks_per_worker: u32,
    /// Disk: the file of each worker, and the bytes written before wrapping around.
    disk_paths: Vec<CString>,
    disk_dir: std::path::PathBuf,
    disk_bytes: usize,
    disk_direct: bool,
    /// Disk: the workers write to `device` (a disk the host attached and allowed writes to),
    /// each in its own region of `disk_bytes`, instead of to unlinked files in `disk_dir`.
    disk_device: bool,
    /// Network: the connection to the host peer (its header already sent), owned here and
    /// closed when the run drops the configuration, after the workers are gone.
    net_stream: Option<std::net::TcpStream>,
    /// Its descriptor, for the workers.
    net_fd: i32,
}

/// Counters shared with every process of the stressor (an anonymous shared mapping).
struct Shared {
    ptr: *mut AtomicU64,
}

impl Shared {
    fn new() -> Result<Shared, WorkloadError> {
        // SAFETY: an anonymous shared mapping of one page; checked for failure below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(WorkloadError::os("mmap of the stress counters"));
        }
        Ok(Shared { ptr: p.cast() })
    }
    /// Counter 0: operations (loops, pages touched, forks, MiB written, sends or receives);
    /// 1: worker restarts; 2: network bytes moved; 3: the network stream's end (an errno, or
    /// [`NET_EOF`]; 0 while it lasts).
    fn counter(&self, i: usize) -> &AtomicU64 {
        assert!(i < 4);
        // SAFETY: the mapping is one zero-filled page, aligned and large enough for four u64s,
        // and lives as long as `self`.
        unsafe { &*self.ptr.add(i) }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // SAFETY: the mapping was made in `new` with this length.
        unsafe { libc::munmap(self.ptr.cast(), PAGE) };
    }
}

fn online_cpus() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    (n.max(1) as usize).min(MAX_WORKERS)
}

/// MemTotal, MemAvailable and Shmem of /proc/meminfo, KiB.
pub fn meminfo() -> Result<(u64, u64, u64), WorkloadError> {
    let text = std::fs::read_to_string("/proc/meminfo")
        .map_err(|e| WorkloadError::Unsupported(format!("cannot read /proc/meminfo: {e}")))?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    };
    let total = field("MemTotal:")
        .ok_or_else(|| WorkloadError::Failed("no MemTotal in /proc/meminfo".into()))?;
    let available = field("MemAvailable:")
        .or_else(|| field("MemFree:"))
        .ok_or_else(|| WorkloadError::Failed("no MemAvailable in /proc/meminfo".into()))?;
    Ok((total, available, field("Shmem:").unwrap_or(0)))
}

fn run_meminfo(_params: &Params, iterations: u64) -> Result<Outcome, WorkloadError> {
    let iterations = crate::cpu::check_iterations(iterations)?;
    let start = Instant::now();
    let mut last = (0, 0, 0);
    for _ in 0..iterations {
        last = meminfo()?;
    }
    let mut out = Outcome::new(
        iterations as f64,
        start.elapsed().max(Duration::from_nanos(1)),
    );
    let (total, available, shmem) = last;
    out.extras.insert("mem_total_kib".into(), total as f64);
    out.extras
        .insert("mem_available_kib".into(), available as f64);
    out.extras.insert(
        "mem_used_kib".into(),
        total.saturating_sub(available) as f64,
    );
    out.extras.insert("shmem_kib".into(), shmem as f64);
    Ok(out)
}

impl Config {
    fn new(kind: Stressor, params: &Params) -> Result<Config, WorkloadError> {
        let cpus = online_cpus();
        // One stream, so one worker: see the module docs.
        let default_workers = if kind.is_net() { 1 } else { cpus as u64 };
        let workers = param_u64(params, "workers", default_workers)?;
        if kind.is_net() && workers != 1 {
            return Err(WorkloadError::BadParam(format!(
                "a network stressor moves one TCP stream with one worker, got workers = {workers}"
            )));
        }
        if workers == 0 || workers > MAX_WORKERS as u64 {
            return Err(WorkloadError::BadParam(format!(
                "workers must be between 1 and {MAX_WORKERS}, got {workers}"
            )));
        }
        let workers = workers as usize;
        let max_s = param_u64(params, "max_s", 600)?.clamp(1, 86_400) as u32;
        let mut cfg = Config {
            kind,
            workers,
            max_s,
            mem_bytes_per_worker: 0,
            forks_per_worker: 0,
            disk_paths: Vec::new(),
            disk_dir: std::path::PathBuf::new(),
            disk_bytes: 0,
            disk_direct: false,
            disk_device: false,
            net_stream: None,
            net_fd: -1,
        };
        match kind {
            Stressor::Cpu => {}
            Stressor::Memory => {
                let (total, _, _) = meminfo()?;
                let pct = param_u64(params, "mem_pct", 110)?.clamp(1, 400);
                let max_mib = param_u64(params, "mem_max_mib", 2048)?.clamp(1, 4096 * 16);
                let bytes = (total * 1024 / 100 * pct).min(max_mib << 20);
                let per = (bytes as usize / workers).min(MAX_CHUNKS * CHUNK);
                cfg.mem_bytes_per_worker = per.max(CHUNK);
            }
            Stressor::Fork => {
                let cap = param_u64(params, "fork_cap", 256)?.clamp(1, 4096);
                cfg.forks_per_worker = (cap / workers as u64).max(1) as u32;
            }
            Stressor::Disk if params.contains_key("device") => {
                disk_on_device(&mut cfg, params, workers)?;
            }
            Stressor::Disk => {
                let dir = match params.get("dir").and_then(|v| v.as_str()) {
                    Some(d) => std::path::PathBuf::from(d),
                    None => std::env::temp_dir(),
                };
                std::fs::create_dir_all(&dir).map_err(|e| {
                    WorkloadError::Unsupported(format!("cannot create {}: {e}", dir.display()))
                })?;
                let (_, available, _) = meminfo().unwrap_or((0, u64::MAX / 4096, 0));
                // On a RAM file system the file is memory: at most an eighth of what is free.
                let default_mib = (available / 1024 / 8 / workers as u64).clamp(1, 64);
                let mib = param_u64(params, "disk_mib", default_mib)?.clamp(1, 4096);
                cfg.disk_bytes = (mib as usize) << 20;
                cfg.disk_dir = dir.clone();
                for i in 0..workers {
                    let p = dir.join(format!("hvbench-stress-{}-{i}", std::process::id()));
                    let c = CString::new(p.as_os_str().as_encoded_bytes().to_vec())
                        .map_err(|_| WorkloadError::BadParam("dir contains a NUL byte".into()))?;
                    cfg.disk_paths.push(c);
                }
                // Check that the directory takes a file, and whether O_DIRECT works there.
                let probe = &cfg.disk_paths[0];
                for direct in [true, false] {
                    let flags = libc::O_CREAT
                        | libc::O_WRONLY
                        | libc::O_TRUNC
                        | libc::O_CLOEXEC
                        | if direct { libc::O_DIRECT } else { 0 };
                    // SAFETY: `probe` is a NUL-terminated path.
                    let fd = unsafe { libc::open(probe.as_ptr(), flags, 0o600) };
                    if fd >= 0 {
                        // SAFETY: fd was just opened; the path is ours.
                        unsafe {
                            libc::close(fd);
                            libc::unlink(probe.as_ptr());
                        }
                        cfg.disk_direct = direct;
                        break;
                    }
                    if !direct {
                        return Err(WorkloadError::Unsupported(format!(
                            "cannot write in {}: {}",
                            dir.display(),
                            std::io::Error::last_os_error()
                        )));
                    }
                }
            }
            Stressor::NetSend | Stressor::NetRecv => {
                // The guest sends: the peer sinks. The guest receives: the peer sources.
                let op = if kind == Stressor::NetSend {
                    crate::net::wire::Op::Sink
                } else {
                    crate::net::wire::Op::Source
                };
                let (stream, _listen) =
                    crate::net::accept_with_header(params, op, crate::net::wire::UNBOUNDED)?;
                cfg.net_fd = stream.as_raw_fd();
                cfg.net_stream = Some(stream);
            }
        }
        Ok(cfg)
    }
}

/// Prepares the disk stressor for writing to the attached disk `device`: each worker gets a
/// region of its own (`disk_mib`, at most the disk's size shared among the workers), written
/// with O_DIRECT where the device allows it.
fn disk_on_device(cfg: &mut Config, params: &Params, workers: usize) -> Result<(), WorkloadError> {
    let device = params
        .get("device")
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| WorkloadError::BadParam("device must be a path".into()))?;
    if params.get("allow_write").and_then(|v| v.as_bool()) != Some(true) {
        return Err(WorkloadError::Unsupported(format!(
            "writes refused: the host did not allow writes to {device}"
        )));
    }
    let c = CString::new(device)
        .map_err(|_| WorkloadError::BadParam("device contains a NUL byte".into()))?;
    let mut size = 0u64;
    for direct in [true, false] {
        let flags = libc::O_WRONLY | libc::O_CLOEXEC | if direct { libc::O_DIRECT } else { 0 };
        // SAFETY: `c` is a NUL-terminated path; no O_CREAT, so no mode is read.
        let fd = unsafe { libc::open(c.as_ptr(), flags) };
        if fd >= 0 {
            // SAFETY: fd was just opened and is closed right after.
            size = unsafe {
                let end = libc::lseek(fd, 0, libc::SEEK_END);
                libc::close(fd);
                end.max(0) as u64
            };
            cfg.disk_direct = direct;
            break;
        }
        if !direct {
            return Err(WorkloadError::Failed(format!(
                "cannot open {device} for writing: {}",
                std::io::Error::last_os_error()
            )));
        }
    }
    let share = (size / workers as u64) / DISK_BLOCK as u64 * DISK_BLOCK as u64;
    let mib = param_u64(params, "disk_mib", share >> 20)?.clamp(1, 4096);
    cfg.disk_bytes = ((mib << 20).min(share)) as usize;
    if cfg.disk_bytes < DISK_BLOCK {
        return Err(WorkloadError::Unsupported(format!(
            "{device} holds {size} bytes: less than one {DISK_BLOCK}-byte block per worker"
        )));
    }
    cfg.disk_device = true;
    cfg.disk_paths = (0..workers).map(|_| c.clone()).collect();
    Ok(())
}

/// Whether `dir` is a RAM file system (tmpfs, ramfs): then "disk" writes are memory writes.
fn on_ram_fs(dir: &std::path::Path) -> bool {
    let Ok(c) = CString::new(dir.as_os_str().as_encoded_bytes().to_vec()) else {
        return false;
    };
    // SAFETY: statfs is a plain C struct, all zeroes is valid; `c` is NUL-terminated.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return false;
    }
    let t = st.f_type;
    t == TMPFS_MAGIC || t == RAMFS_MAGIC
}

/// Runs `steady` (or a pause) under the stressor `kind`.
fn run_stressed(
    kind: Stressor,
    params: &Params,
    iterations: u64,
) -> Result<Outcome, WorkloadError> {
    let iterations = crate::cpu::check_iterations(iterations)?;
    let steady = match params.get("steady") {
        None => None,
        Some(v) => {
            let name = v.as_str().ok_or_else(|| {
                WorkloadError::BadParam(format!("steady must be a name, got {v}"))
            })?;
            let w = crate::find(name).ok_or_else(|| {
                WorkloadError::BadParam(format!("steady names no workload: {name:?}"))
            })?;
            if w.kind == Kind::Stressor {
                return Err(WorkloadError::BadParam(
                    "steady cannot be another stressor".into(),
                ));
            }
            if kind.is_net() && w.needs.network {
                return Err(WorkloadError::BadParam(format!(
                    "steady cannot be a network workload ({name}) under a network stressor: the \
                     host peer serves one connection at a time, and the stressor holds it"
                )));
            }
            Some(w)
        }
    };
    let cfg = Config::new(kind, params)?;
    let shared = Shared::new()?;
    let started = Instant::now();
    let supervisor = Supervisor::start(&cfg, &shared)?;
    let result = match steady {
        Some(w) => (w.run)(params, iterations),
        None => {
            let start = Instant::now();
            std::thread::sleep(Duration::from_millis(iterations));
            Ok(Outcome::new(iterations as f64, start.elapsed()))
        }
    };
    let stopped = supervisor.stop();
    let stress_elapsed = started.elapsed();
    let mut out = result?;
    stopped?;
    if kind.is_net() {
        let bytes = shared.counter(2).load(Ordering::Relaxed);
        match shared.counter(3).load(Ordering::Relaxed) {
            0 => {}
            end => {
                let how = if end == NET_EOF {
                    "the peer closed it".to_string()
                } else {
                    std::io::Error::from_raw_os_error(end as i32).to_string()
                };
                return Err(WorkloadError::Failed(format!(
                    "the stressor's stream to the host peer ended during the run, after {bytes} \
                     bytes ({how}): the stress was not held"
                )));
            }
        }
        out.extras.insert("stress_net_bytes".into(), bytes as f64);
        out.extras.insert(
            "stress_net_gbit_s".into(),
            bytes as f64 * 8e-9 / stress_elapsed.as_secs_f64().max(1e-9),
        );
    }
    out.extras.insert(
        "stress_ops".into(),
        shared.counter(0).load(Ordering::Relaxed) as f64,
    );
    out.extras.insert(
        "stress_restarts".into(),
        shared.counter(1).load(Ordering::Relaxed) as f64,
    );
    out.extras
        .insert("stress_workers".into(), cfg.workers as f64);
    if kind == Stressor::Disk {
        // Where the writes went and how: words, not numbers (they are not measured).
        let target = if cfg.disk_device {
            "device"
        } else if on_ram_fs(&cfg.disk_dir) {
            "ram_fs"
        } else {
            "directory"
        };
        out.labels.insert("disk_target".into(), target.into());
        let io = if cfg.disk_direct {
            "direct"
        } else {
            "buffered"
        };
        out.labels.insert("disk_io".into(), io.into());
    }
    if kind == Stressor::Memory {
        out.extras.insert(
            "stress_mem_mib".into(),
            ((cfg.mem_bytes_per_worker * cfg.workers) >> 20) as f64,
        );
    }
    // A network stressor's connection closes here, after its workers are gone: the peer sees
    // the stream's end.
    drop(cfg);
    Ok(out)
}

/// The running supervisor: its process and the write end of its stop pipe.
struct Supervisor {
    child: os::Child,
    stop_w: Option<std::os::fd::OwnedFd>,
}

impl Supervisor {
    fn start(cfg: &Config, shared: &Shared) -> Result<Supervisor, WorkloadError> {
        let (stop_r, stop_w) = os::pipe()?;
        let (ready_r, ready_w) = os::pipe()?;
        let fds = (
            stop_r.as_raw_fd(),
            stop_w.as_raw_fd(),
            ready_r.as_raw_fd(),
            ready_w.as_raw_fd(),
        );
        // SAFETY: getpid has no preconditions.
        let parent = unsafe { libc::getpid() };
        let child = os::fork_child(|| supervisor_main(cfg, shared, fds, parent))?;
        drop(stop_r);
        drop(ready_w);
        let mut byte = [0u8; 1];
        let ready = os::read_exact_or_eof(&ready_r, &mut byte, "waiting for the stressor")?;
        let mut sup = Supervisor {
            child,
            stop_w: Some(stop_w),
        };
        if !ready {
            let status = sup.child.wait()?;
            return Err(WorkloadError::Failed(format!(
                "the stressor's supervisor {} before starting",
                os::describe_status(status)
            )));
        }
        Ok(sup)
    }

    /// Closes the stop pipe and waits for the supervisor, which reaps everything it started.
    fn stop(mut self) -> Result<(), WorkloadError> {
        self.stop_w.take();
        self.child.wait_success("the stressor's supervisor")
    }
}

/// The supervisor process. Only system calls from here on (see the module docs).
fn supervisor_main(
    cfg: &Config,
    shared: &Shared,
    (stop_r, stop_w, ready_r, ready_w): (i32, i32, i32, i32),
    parent: libc::pid_t,
) -> i32 {
    os::close_raw(stop_w);
    os::close_raw(ready_r);
    close_inherited(&mut [stop_r, ready_w, cfg.net_fd]);
    // SAFETY: plain system calls on this process.
    unsafe {
        libc::setpgid(0, 0);
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
        if libc::getppid() != parent {
            return 5;
        }
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong);
        libc::alarm(cfg.max_s);
    }
    let mut pids = [0 as libc::pid_t; MAX_WORKERS];
    for (i, slot) in pids.iter_mut().enumerate().take(cfg.workers) {
        *slot = spawn_worker(cfg, shared, i);
    }
    // SAFETY: `ready_w` is open in this process; one byte from a valid buffer.
    unsafe {
        libc::write(ready_w, [1u8].as_ptr().cast(), 1);
    }
    os::close_raw(ready_w);
    loop {
        let mut pfd = libc::pollfd {
            fd: stop_r,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, 100) };
        if n > 0 && pfd.revents != 0 {
            break;
        }
        // Reap what ended (workers, or their orphaned children) and restart dead workers.
        loop {
            let mut status = 0;
            // SAFETY: `status` is a valid place for the wait status.
            let p = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if p <= 0 {
                break;
            }
            if let Some(i) = pids[..cfg.workers].iter().position(|&w| w == p) {
                shared.counter(1).fetch_add(1, Ordering::Relaxed);
                pids[i] = spawn_worker(cfg, shared, i);
            }
        }
    }
    for &p in &pids[..cfg.workers] {
        if p > 0 {
            // SAFETY: `p` is our own child (not yet reaped, so not reused).
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
    }
    // Reap every descendant: workers, and their children that were reparented to us.
    loop {
        let mut status = 0;
        // SAFETY: as above.
        let p = unsafe { libc::waitpid(-1, &mut status, 0) };
        if p < 0 {
            if os::errno() == libc::EINTR {
                continue;
            }
            break;
        }
    }
    0
}

/// Closes every descriptor from 3 up but `keep` (negative entries are ignored), so that the
/// stressor's processes hold nothing of their parent's beyond what they use: a connection the
/// parent closes (in a test binary, another test's) really closes. Best effort: without
/// close_range (Linux before 5.9) the descriptors stay open. No allocation (see the module docs).
fn close_inherited(keep: &mut [i32]) {
    keep.sort_unstable();
    let close = |lo: u32, hi: u32| {
        // SAFETY: close_range only closes descriptors of this (forked) process; none of them
        // backs anything this process still uses, since `keep` holds all it needs.
        unsafe {
            libc::syscall(
                libc::SYS_close_range,
                libc::c_ulong::from(lo),
                libc::c_ulong::from(hi),
                0 as libc::c_ulong,
            )
        };
    };
    let mut lo: u32 = 3;
    for &k in keep.iter() {
        let Ok(k) = u32::try_from(k) else { continue };
        if k > lo {
            close(lo, k - 1);
        }
        lo = lo.max(k.saturating_add(1));
    }
    close(lo, u32::MAX);
}

/// Forks one worker; returns its pid (0 when fork failed: retried at the next restart round
/// only if it was a worker that died, so a failed fork just means one worker fewer).
fn spawn_worker(cfg: &Config, shared: &Shared, index: usize) -> libc::pid_t {
    // SAFETY: fork has no memory-safety preconditions; the child only runs `worker_main`, which
    // makes system calls, and then `_exit`s.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: plain system calls; `_exit` never returns.
        unsafe {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
            worker_main(cfg, shared, index);
            libc::_exit(0);
        }
    }
    pid.max(0)
}

fn worker_main(cfg: &Config, shared: &Shared, index: usize) {
    let ops = shared.counter(0);
    match cfg.kind {
        Stressor::Cpu => {
            let mut x: u64 = index as u64 + 1;
            loop {
                for _ in 0..(1 << 20) {
                    x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
                ops.fetch_add(1, Ordering::Relaxed);
            }
        }
        Stressor::Memory => {
            // The OOM killer's first choice, so that the agent survives an overcommitted guest.
            let path = c"/proc/self/oom_score_adj";
            // SAFETY: a NUL-terminated path and a valid buffer.
            unsafe {
                let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd >= 0 {
                    libc::write(fd, b"1000".as_ptr().cast(), 4);
                    libc::close(fd);
                }
            }
            let mut chunks = [std::ptr::null_mut::<u8>(); MAX_CHUNKS];
            let want = cfg.mem_bytes_per_worker.div_ceil(CHUNK).min(MAX_CHUNKS);
            let mut have = 0;
            let mut round: u8 = 0;
            loop {
                if have < want {
                    // SAFETY: an anonymous private mapping; checked below.
                    let p = unsafe {
                        libc::mmap(
                            std::ptr::null_mut(),
                            CHUNK,
                            libc::PROT_READ | libc::PROT_WRITE,
                            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                            -1,
                            0,
                        )
                    };
                    if p != libc::MAP_FAILED {
                        chunks[have] = p.cast();
                        have += 1;
                    } else {
                        // SAFETY: a plain sleep.
                        unsafe { libc::usleep(10_000) };
                    }
                }
                round = round.wrapping_add(1);
                for &c in &chunks[..have] {
                    for off in (0..CHUNK).step_by(PAGE) {
                        // SAFETY: `c` is a live mapping of CHUNK bytes; `off` is inside it.
                        unsafe { std::ptr::write_volatile(c.add(off), round) };
                    }
                    ops.fetch_add((CHUNK / PAGE) as u64, Ordering::Relaxed);
                }
            }
        }
        Stressor::Fork => {
            let mut live = 0u32;
            loop {
                while live < cfg.forks_per_worker {
                    // SAFETY: the child only sleeps and `_exit`s.
                    let p = unsafe { libc::fork() };
                    if p == 0 {
                        // SAFETY: plain system calls.
                        unsafe {
                            libc::usleep(20_000);
                            libc::_exit(0);
                        }
                    }
                    if p < 0 {
                        break;
                    }
                    live += 1;
                    ops.fetch_add(1, Ordering::Relaxed);
                }
                let mut status = 0;
                // SAFETY: waits for one of this worker's children.
                let p = unsafe { libc::waitpid(-1, &mut status, 0) };
                if p > 0 {
                    live = live.saturating_sub(1);
                } else if live == 0 || os::errno() == libc::ECHILD {
                    live = 0;
                    // SAFETY: a plain sleep (fork failed and nothing is left to wait for).
                    unsafe { libc::usleep(10_000) };
                }
            }
        }
        Stressor::Disk => {
            let path = &cfg.disk_paths[index];
            let direct = if cfg.disk_direct { libc::O_DIRECT } else { 0 };
            // On the attached disk: its own region, nothing created or truncated.
            let (flags, base) = if cfg.disk_device {
                (
                    libc::O_WRONLY | libc::O_CLOEXEC | direct,
                    index * cfg.disk_bytes,
                )
            } else {
                (
                    libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC | libc::O_CLOEXEC | direct,
                    0,
                )
            };
            // SAFETY: a NUL-terminated path prepared before the fork.
            let fd = unsafe { libc::open(path.as_ptr(), flags, 0o600) };
            if fd < 0 {
                return;
            }
            if !cfg.disk_device {
                // Unlinked at once: the space goes back when the worker dies, whatever kills it.
                // SAFETY: as above.
                unsafe { libc::unlink(path.as_ptr()) };
            }
            // SAFETY: an anonymous mapping: page-aligned, as O_DIRECT needs.
            let buf = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    DISK_BLOCK,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            if buf == libc::MAP_FAILED {
                return;
            }
            // SAFETY: `buf` is DISK_BLOCK writable bytes.
            unsafe { std::ptr::write_bytes(buf.cast::<u8>(), 0x5a, DISK_BLOCK) };
            let mut off = 0usize;
            loop {
                // SAFETY: `buf` holds DISK_BLOCK bytes; `fd` is open.
                let n = unsafe { libc::pwrite(fd, buf, DISK_BLOCK, (base + off) as libc::off_t) };
                if n <= 0 {
                    // SAFETY: a plain sleep (a full file system).
                    unsafe { libc::usleep(10_000) };
                    off = 0;
                    continue;
                }
                ops.fetch_add(1, Ordering::Relaxed);
                off += DISK_BLOCK;
                if off >= cfg.disk_bytes {
                    off = 0;
                    // SAFETY: `fd` is open.
                    unsafe { libc::fdatasync(fd) };
                }
            }
        }
        Stressor::NetSend | Stressor::NetRecv => net_worker(cfg, shared),
    }
}

/// Sends to or receives from the host peer on the run's connection until killed. On the
/// stream's end it records why (counter 3) and waits to be killed: a restart would find the
/// same dead stream.
fn net_worker(cfg: &Config, shared: &Shared) {
    let fd = cfg.net_fd;
    let send = cfg.kind == Stressor::NetSend;
    let mut buf = [0x5au8; NET_BUF];
    loop {
        let n = if send {
            // SAFETY: `buf` holds NET_BUF bytes; `fd` is the connection, inherited open.
            // MSG_NOSIGNAL: a closed stream is an error here, not a SIGPIPE.
            unsafe { libc::send(fd, buf.as_ptr().cast(), NET_BUF, libc::MSG_NOSIGNAL) }
        } else {
            // SAFETY: as above, `buf` is writable.
            unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), NET_BUF, 0) }
        };
        if n > 0 {
            shared.counter(0).fetch_add(1, Ordering::Relaxed);
            shared.counter(2).fetch_add(n as u64, Ordering::Relaxed);
            continue;
        }
        let end = if n == 0 {
            NET_EOF
        } else {
            match os::errno() {
                // Interrupted, or the stall timeout of the socket: try again.
                libc::EINTR | libc::EAGAIN => continue,
                e => e as u64,
            }
        };
        let _ = shared
            .counter(3)
            .compare_exchange(0, end, Ordering::Relaxed, Ordering::Relaxed);
        loop {
            // SAFETY: a plain wait for the supervisor's SIGKILL.
            unsafe { libc::pause() };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(steady: Option<&str>) -> Params {
        let mut p = Params::new();
        if let Some(s) = steady {
            p.insert("steady".into(), serde_json::json!(s));
        }
        p.insert("workers".into(), serde_json::json!(2));
        p.insert("mem_max_mib".into(), serde_json::json!(16));
        p.insert("fork_cap".into(), serde_json::json!(8));
        p.insert("disk_mib".into(), serde_json::json!(2));
        p
    }

    #[test]
    fn every_stressor_runs_a_steady_workload_and_stops() {
        for name in ["stress.cpu", "stress.memory", "stress.fork", "stress.disk"] {
            let w = crate::find(name).unwrap();
            let out = (w.run)(&params(Some("cpu.primes")), 20).unwrap();
            assert!(out.work > 0.0, "{name}");
            assert!(out.extras.contains_key("stress_ops"), "{name}");
            // Holding the stress alone works too.
            let out = (w.run)(&params(None), 50).unwrap();
            assert_eq!(out.work, 50.0, "{name}");
        }
    }

    #[test]
    fn the_disk_stressor_writes_only_its_regions_of_an_attached_disk_and_only_when_allowed() {
        let dir = std::env::temp_dir().join(format!("hvb-stress-dev-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let dev = dir.join("disk.img");
        // 8 MiB of 0x11; two workers with 2 MiB each may write the first 4 MiB only.
        std::fs::write(&dev, vec![0x11u8; 8 << 20]).unwrap();
        let w = crate::find("stress.disk").unwrap();
        let mut p = params(Some("cpu.primes"));
        p.insert("device".into(), serde_json::json!(dev.to_str().unwrap()));
        let refused = (w.run)(&p, 20).unwrap_err();
        assert!(
            matches!(refused, WorkloadError::Unsupported(ref m) if m.contains("writes refused"))
        );
        assert!(std::fs::read(&dev).unwrap().iter().all(|&b| b == 0x11));
        p.insert("allow_write".into(), serde_json::json!(true));
        let out = (w.run)(&p, 2000).unwrap();
        assert_eq!(out.labels["disk_target"], "device");
        let data = std::fs::read(&dev).unwrap();
        assert_eq!(data.len(), 8 << 20, "never grown or truncated");
        assert!(
            data[4 << 20..].iter().all(|&b| b == 0x11),
            "beyond the regions: untouched"
        );
        if out.extras["stress_ops"] > 0.0 {
            assert!(
                data[..4 << 20].iter().any(|&b| b != 0x11),
                "the regions were written"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_stressor_refuses_a_stressor_as_steady() {
        let w = crate::find("stress.cpu").unwrap();
        assert!(matches!(
            (w.run)(&params(Some("stress.fork")), 1),
            Err(WorkloadError::BadParam(_))
        ));
    }

    #[test]
    fn meminfo_reports_used_memory() {
        let w = crate::find("probe.meminfo").unwrap();
        let out = (w.run)(&Params::new(), 1).unwrap();
        let total = out.extras["mem_total_kib"];
        let used = out.extras["mem_used_kib"];
        assert!(total > 0.0 && used > 0.0 && used <= total);
    }
}
