//! Host CPU time consumed by the processes that make a guest.
//!
//! Throughput alone misleads (seed 002 measured 4-6x more host CPU per I/O in guests than on bare
//! metal behind near-native throughput), so every repetition records the CPU time the guest's
//! host processes used. The best source is a cgroup of the guest's own (exact, nanoseconds,
//! children included); without one, the process tree in /proc (per-thread `schedstat` in
//! nanoseconds for live tasks, plus the clock-tick `cutime`/`cstime` of reaped children).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How CPU time of a guest is read. Recorded in the result, because the methods differ in
/// resolution.
#[derive(Debug)]
pub enum CpuMeter {
    /// A cgroup created for this guest; removed on drop.
    Cgroup {
        dir: PathBuf,
        usage_file: PathBuf,
        v2: bool,
    },
    /// The process tree under these roots.
    ProcTree { roots: Vec<u32> },
}

impl CpuMeter {
    /// Puts `pid` (and its threads) in a new cgroup when the host allows it, else meters its
    /// process tree.
    pub fn for_process(pid: u32, label: &str) -> CpuMeter {
        match Self::cgroup(label) {
            Some(mut m) => {
                m.add(pid);
                m
            }
            None => CpuMeter::ProcTree { roots: vec![pid] },
        }
    }

    /// Creates an empty cgroup for a guest about to be launched, when the host allows it.
    /// Processes join it at spawn time (see [`CpuMeter::procs_file`]), so that children forked
    /// right away (`unshare --fork`) are metered too.
    pub fn cgroup(label: &str) -> Option<CpuMeter> {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("hvbench-{}-{n}-{label}", std::process::id());
        // cgroup v2 with the cpu controller enabled at the root, or v1 cpuacct.
        let candidates = [
            (PathBuf::from("/sys/fs/cgroup"), "cpu.stat", true),
            (PathBuf::from("/sys/fs/cgroup/unified"), "cpu.stat", true),
            (
                PathBuf::from("/sys/fs/cgroup/cpuacct"),
                "cpuacct.usage",
                false,
            ),
            (
                PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"),
                "cpuacct.usage",
                false,
            ),
        ];
        for (base, usage, v2) in candidates {
            if !base.join("cgroup.procs").exists() {
                continue;
            }
            let dir = base.join(&name);
            if fs::create_dir(&dir).is_err() {
                continue;
            }
            let usage_file = dir.join(usage);
            let writable = fs::OpenOptions::new()
                .write(true)
                .open(dir.join("cgroup.procs"))
                .is_ok();
            if usage_file.exists() && writable {
                return Some(CpuMeter::Cgroup {
                    dir,
                    usage_file,
                    v2,
                });
            }
            let _ = fs::remove_dir(&dir);
        }
        None
    }

    /// The `cgroup.procs` file a process writes `0` to in order to join this meter's cgroup.
    pub fn procs_file(&self) -> Option<PathBuf> {
        match self {
            CpuMeter::Cgroup { dir, .. } => Some(dir.join("cgroup.procs")),
            CpuMeter::ProcTree { .. } => None,
        }
    }

    /// Adds another process to meter (a helper the backend started).
    pub fn add(&mut self, pid: u32) {
        match self {
            CpuMeter::Cgroup { dir, .. } => {
                let _ = fs::write(dir.join("cgroup.procs"), pid.to_string());
            }
            CpuMeter::ProcTree { roots } => roots.push(pid),
        }
    }

    /// Short name of the method, for the result document.
    pub fn method(&self) -> &'static str {
        match self {
            CpuMeter::Cgroup { v2: true, .. } => "cgroup2 cpu.stat",
            CpuMeter::Cgroup { v2: false, .. } => "cgroup1 cpuacct.usage",
            CpuMeter::ProcTree { .. } => "proc tree schedstat",
        }
    }

    /// CPU time used so far (user + system), or `None` when it cannot be read.
    pub fn read(&self) -> Option<Duration> {
        match self {
            CpuMeter::Cgroup {
                usage_file,
                v2: true,
                ..
            } => {
                let text = fs::read_to_string(usage_file).ok()?;
                let usec = text
                    .lines()
                    .find_map(|l| l.strip_prefix("usage_usec "))?
                    .trim()
                    .parse::<u64>()
                    .ok()?;
                Some(Duration::from_micros(usec))
            }
            CpuMeter::Cgroup {
                usage_file,
                v2: false,
                ..
            } => {
                let ns = fs::read_to_string(usage_file)
                    .ok()?
                    .trim()
                    .parse::<u64>()
                    .ok()?;
                Some(Duration::from_nanos(ns))
            }
            CpuMeter::ProcTree { roots } => {
                let mut total = Duration::ZERO;
                let mut seen = 0;
                for &r in roots {
                    if let Some(t) = tree_cpu(r, 0) {
                        total += t;
                        seen += 1;
                    }
                }
                (seen > 0).then_some(total)
            }
        }
    }
}

impl Drop for CpuMeter {
    fn drop(&mut self) {
        if let CpuMeter::Cgroup { dir, .. } = self {
            // The processes are gone by now (the guest kills them before dropping its meter);
            // a cgroup with members cannot be removed, which is harmless but worth a retry.
            for _ in 0..20 {
                if fs::remove_dir(&*dir).is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// CPU time of `pid`, its live descendants, and the reaped children it waited for.
fn tree_cpu(pid: u32, depth: u32) -> Option<Duration> {
    if depth > 64 {
        return Some(Duration::ZERO);
    }
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let stat = fs::read_to_string(proc_dir.join("stat")).ok()?;
    let mut total = Duration::ZERO;
    // Live threads: schedstat's first field is nanoseconds on CPU.
    let mut children = Vec::new();
    if let Ok(tasks) = fs::read_dir(proc_dir.join("task")) {
        for t in tasks.flatten() {
            if let Ok(s) = fs::read_to_string(t.path().join("schedstat")) {
                if let Some(ns) = s
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                {
                    total += Duration::from_nanos(ns);
                }
            }
            if let Ok(c) = fs::read_to_string(t.path().join("children")) {
                children.extend(c.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
            }
        }
    }
    // Reaped children: cutime + cstime (fields 16 and 17), in clock ticks.
    if let Some(reaped) = parse_reaped_ticks(&stat) {
        total += Duration::from_nanos(reaped * 1_000_000_000 / clock_ticks_per_second());
    }
    for c in children {
        if let Some(t) = tree_cpu(c, depth + 1) {
            total += t;
        }
    }
    Some(total)
}

/// Extracts cutime + cstime from a /proc/PID/stat line (the command may contain spaces and
/// parentheses, so fields are counted after the last ')').
fn parse_reaped_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3 of the full line, so field N is fields[N - 3].
    let cutime = fields.get(16 - 3)?.parse::<u64>().ok()?;
    let cstime = fields.get(17 - 3)?.parse::<u64>().ok()?;
    Some(cutime + cstime)
}

/// Resident memory of a process tree, from /proc/PID/smaps_rollup (RSS and PSS, KiB).
pub fn tree_memory_kib(pid: u32) -> Option<(u64, u64)> {
    let text = fs::read_to_string(
        Path::new("/proc")
            .join(pid.to_string())
            .join("smaps_rollup"),
    )
    .ok()?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    };
    Some((field("Rss:")?, field("Pss:")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reaped_ticks_survive_odd_command_names() {
        let line = "42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 11 13 20 0 1 0 100 0 0";
        assert_eq!(parse_reaped_ticks(line), Some(24));
    }

    #[test]
    fn own_process_tree_has_cpu_time() {
        let meter = CpuMeter::ProcTree {
            roots: vec![std::process::id()],
        };
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = std::hint::black_box(x.wrapping_add(i));
        }
        assert!(meter.read().is_some_and(|t| t > Duration::ZERO));
    }
}
