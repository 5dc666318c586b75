//! Where guests run on the host's CPUs: the host's topology, a placement policy, and pinning
//! of a guest's threads.
//!
//! Seed 002 measured two vCPUs on one socket against two across sockets and got different
//! results (METHODOLOGY experiment 17): placement is a parameter of a result, so it is
//! controlled (`--pin`, `--placement`) and recorded. Unpinned stays the default: the host's
//! scheduler places threads, and the document says so.
//!
//! Pinning is applied after a guest said hello, to every thread of every process that makes it
//! (found from its process groups' leaders down through /proc): QEMU's vCPU threads (named
//! `CPU <n>/TCG` or `CPU <n>/KVM` with `-name ...,debug-threads=on`) one to one on the guest's
//! CPUs, every other thread (QEMU's main loop and I/O threads, UML's kernel process and its
//! helpers, runsc's sandbox and gofer, the agent) on the guest's whole set. Threads and
//! processes created later inherit the set from their creator.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// One logical CPU and where it sits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuPlace {
    pub cpu: u32,
    /// `physical_package_id`.
    pub socket: u32,
    /// `core_id` (unique within a socket).
    pub core: u32,
    /// The NUMA node, where the host has nodes.
    #[serde(default)]
    pub node: Option<u32>,
    /// Logical CPUs on the same core (itself included): `thread_siblings_list`.
    pub siblings: Vec<u32>,
}

/// The host's online CPUs, from sysfs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topology {
    pub cpus: Vec<CpuPlace>,
}

impl Topology {
    /// The topology of this host.
    pub fn detect() -> Topology {
        Topology::from_sysfs(Path::new("/sys/devices/system"))
    }

    /// The topology under a sysfs `devices/system` directory (tests pass a fake one).
    pub fn from_sysfs(system: &Path) -> Topology {
        let online = fs::read_to_string(system.join("cpu/online"))
            .ok()
            .and_then(|s| parse_cpu_list(s.trim()))
            .unwrap_or_default();
        let nodes = node_of_cpus(&system.join("node"));
        let cpus = online
            .into_iter()
            .map(|cpu| {
                let t = system.join(format!("cpu/cpu{cpu}/topology"));
                let num = |f: &str| {
                    fs::read_to_string(t.join(f))
                        .ok()
                        .and_then(|s| s.trim().parse::<i64>().ok())
                        .map_or(0, |v| v.max(0) as u32)
                };
                let siblings = fs::read_to_string(t.join("thread_siblings_list"))
                    .ok()
                    .and_then(|s| parse_cpu_list(s.trim()))
                    .unwrap_or_else(|| vec![cpu]);
                CpuPlace {
                    cpu,
                    socket: num("physical_package_id"),
                    core: num("core_id"),
                    node: nodes
                        .iter()
                        .find(|(_, c)| c.contains(&cpu))
                        .map(|(n, _)| *n),
                    siblings,
                }
            })
            .collect();
        Topology { cpus }
    }

    /// Distinct sockets, cores (socket, core) and NUMA nodes.
    pub fn counts(&self) -> (usize, usize, usize) {
        let sockets: BTreeSet<u32> = self.cpus.iter().map(|c| c.socket).collect();
        let cores: BTreeSet<(u32, u32)> = self.cpus.iter().map(|c| (c.socket, c.core)).collect();
        let nodes: BTreeSet<u32> = self.cpus.iter().filter_map(|c| c.node).collect();
        (sockets.len(), cores.len(), nodes.len())
    }

    /// `2 sockets, 8 cores, 16 CPUs (SMT 2), 2 NUMA nodes`.
    pub fn describe(&self) -> String {
        let (sockets, cores, nodes) = self.counts();
        let smt = self
            .cpus
            .iter()
            .map(|c| c.siblings.len())
            .max()
            .unwrap_or(1);
        let mut s = format!(
            "{sockets} socket{}, {cores} core{}, {} CPU{}",
            plural(sockets),
            plural(cores),
            self.cpus.len(),
            plural(self.cpus.len())
        );
        if smt > 1 {
            s.push_str(&format!(" (SMT {smt})"));
        }
        if nodes > 0 {
            s.push_str(&format!(", {nodes} NUMA node{}", plural(nodes)));
        }
        s
    }

    fn place(&self, cpu: u32) -> Option<&CpuPlace> {
        self.cpus.iter().find(|c| c.cpu == cpu)
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// `nodeN/cpulist` of every NUMA node.
fn node_of_cpus(dir: &Path) -> Vec<(u32, Vec<u32>)> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<(u32, Vec<u32>)> = entries
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_str()?.strip_prefix("node")?.parse().ok()?;
            let list = fs::read_to_string(e.path().join("cpulist")).ok()?;
            Some((n, parse_cpu_list(list.trim())?))
        })
        .collect();
    v.sort();
    v
}

/// A kernel CPU list (`0-3,8,10-11`) as CPU numbers, in order; `None` when malformed.
pub fn parse_cpu_list(list: &str) -> Option<Vec<u32>> {
    let mut v = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
                if a > b || b - a > 65_536 {
                    return None;
                }
                v.extend(a..=b);
            }
            None => v.push(part.parse().ok()?),
        }
    }
    v.sort_unstable();
    v.dedup();
    Some(v)
}

/// A CPU list written the kernel's way: `0-3,8`.
pub fn format_cpu_list(cpus: &[u32]) -> String {
    let mut sorted = cpus.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j + 1 < sorted.len() && sorted[j + 1] == sorted[j] + 1 {
            j += 1;
        }
        parts.push(if i == j {
            sorted[i].to_string()
        } else {
            format!("{}-{}", sorted[i], sorted[j])
        });
        i = j + 1;
    }
    parts.join(",")
}

/// How a guest's vCPUs are laid on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    /// As close as possible: SMT siblings of one core, then other cores of the same socket
    /// (NUMA node), then the next socket.
    Pack,
    /// As far apart as possible: one socket after the other, distinct cores before SMT
    /// siblings.
    Spread,
}

impl Placement {
    pub fn name(self) -> &'static str {
        match self {
            Placement::Pack => "pack",
            Placement::Spread => "spread",
        }
    }
}

/// A run's pinning: the host CPUs guests may use and how vCPUs are laid on them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinPolicy {
    pub placement: Placement,
    /// The host CPUs to pin to (`--pin LIST`; all online CPUs this process may use by default).
    pub cpus: Vec<u32>,
    /// The backends whose guests are pinned (`--pin-backend`); empty: every one, the native
    /// agent included. Backends differ in what pinning does to them: UML's guest and kernel
    /// processes hand over at every trap and gain from sharing a CPU, gVisor's Sentry polls
    /// for system calls on a second core and loses it (docs/explain.md).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<String>,
}

impl PinPolicy {
    /// Whether guests of `backend` are pinned under this policy.
    pub fn applies_to(&self, backend: &str) -> bool {
        self.backends.is_empty() || self.backends.iter().any(|b| b == backend)
    }

    /// The allowed CPUs in the order the placement fills them.
    pub fn order(&self, topo: &Topology) -> Vec<u32> {
        let key = |cpu: u32| {
            let p = topo.place(cpu);
            let socket = p.map_or(0, |p| p.socket);
            let core = p.map_or(cpu, |p| p.core);
            // The position of this CPU among its SMT siblings (0: the first thread of a core).
            let thread = p.map_or(0, |p| {
                p.siblings.iter().position(|&s| s == cpu).unwrap_or(0) as u32
            });
            (socket, core, thread)
        };
        let mut cpus = self.cpus.clone();
        match self.placement {
            Placement::Pack => cpus.sort_by_key(|&c| (key(c), c)),
            Placement::Spread => {
                // Round robin over sockets, first threads of every core before second threads.
                let mut by_socket: std::collections::BTreeMap<u32, Vec<u32>> = Default::default();
                let mut sorted = cpus.clone();
                sorted.sort_by_key(|&c| {
                    let (s, core, t) = key(c);
                    (t, s, core, c)
                });
                for c in sorted {
                    by_socket.entry(key(c).0).or_default().push(c);
                }
                let mut queues: Vec<std::collections::VecDeque<u32>> =
                    by_socket.into_values().map(Into::into).collect();
                cpus.clear();
                while queues.iter().any(|q| !q.is_empty()) {
                    for q in queues.iter_mut() {
                        if let Some(c) = q.pop_front() {
                            cpus.push(c);
                        }
                    }
                }
            }
        }
        cpus
    }

    /// The CPUs of the guest in `slot` (guests that run at the same time take consecutive
    /// slots; guests that take turns share slot 0) with `vcpus` vCPUs: the next `vcpus` CPUs
    /// of the order, wrapping around when the host has fewer.
    pub fn cpus_for(&self, topo: &Topology, slot: usize, vcpus: u32) -> Vec<u32> {
        let order = self.order(topo);
        if order.is_empty() {
            return Vec::new();
        }
        let n = vcpus.max(1) as usize;
        (0..n)
            .map(|i| order[(slot * n + i) % order.len()])
            .collect()
    }
}

/// One thread as it was pinned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedThread {
    pub pid: u32,
    pub tid: u32,
    /// The thread's name (`CPU 0/TCG`, `linux.uml`, `exe`).
    pub comm: String,
    pub cpus: Vec<u32>,
}

/// The vCPU index of a QEMU vCPU thread name (`CPU 1/TCG` → 1, `CPU 0/KVM` → 0); `None` for
/// every other thread, QEMU's single-threaded TCG (`ALL CPUs/TCG`) included.
pub fn vcpu_index(comm: &str) -> Option<usize> {
    let rest = comm.strip_prefix("CPU ")?;
    let (n, accel) = rest.split_once('/')?;
    (!accel.is_empty()).then_some(())?;
    n.parse().ok()
}

/// The processes below `roots` (themselves included), from the parent links in /proc.
pub fn process_tree(roots: &[u32]) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(dir) = fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Some(ppid) = fs::read_to_string(e.path().join("stat"))
                .ok()
                .and_then(|s| parse_ppid(&s))
            {
                parents.push((pid, ppid));
            }
        }
    }
    let mut tree: Vec<u32> = roots.to_vec();
    let mut i = 0;
    while i < tree.len() {
        let p = tree[i];
        for &(child, parent) in &parents {
            if parent == p && !tree.contains(&child) {
                tree.push(child);
            }
        }
        i += 1;
    }
    tree
}

/// The parent pid in a `/proc/PID/stat` line (after the command name, which may hold spaces
/// and parentheses).
fn parse_ppid(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Why a guest could not be pinned.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error("no CPUs to pin to")]
    NoCpus,
    #[error("no thread of the guest's processes {0:?} was found in /proc")]
    NoThreads(Vec<u32>),
    #[error("sched_setaffinity of thread {tid} ({comm}) to CPUs {cpus}: {source}")]
    Affinity {
        tid: u32,
        comm: String,
        cpus: String,
        source: std::io::Error,
    },
}

/// Pins every thread of the processes below `roots` to `cpus`: QEMU vCPU thread `n` to
/// `cpus[n % len]`, every other thread to all of `cpus`. Threads that exit meanwhile are
/// skipped.
pub fn pin_tree(roots: &[u32], cpus: &[u32]) -> Result<Vec<PinnedThread>, PinError> {
    if cpus.is_empty() {
        return Err(PinError::NoCpus);
    }
    let mut pinned = Vec::new();
    for pid in process_tree(roots) {
        let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        let mut tids: Vec<u32> = tasks
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect();
        tids.sort_unstable();
        for tid in tids {
            let comm = fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm"))
                .map(|s| s.trim_end().to_string())
                .unwrap_or_default();
            let set = match vcpu_index(&comm) {
                Some(i) => vec![cpus[i % cpus.len()]],
                None => cpus.to_vec(),
            };
            match set_affinity(tid, &set) {
                Ok(()) => pinned.push(PinnedThread {
                    pid,
                    tid,
                    comm,
                    cpus: set,
                }),
                // The thread exited between the listing and the call.
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                Err(source) => {
                    return Err(PinError::Affinity {
                        tid,
                        comm,
                        cpus: format_cpu_list(&set),
                        source,
                    })
                }
            }
        }
    }
    if pinned.is_empty() {
        return Err(PinError::NoThreads(roots.to_vec()));
    }
    Ok(pinned)
}

fn set_affinity(tid: u32, cpus: &[u32]) -> std::io::Result<()> {
    // SAFETY: cpu_set_t is plain old data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &c in cpus {
        // SAFETY: CPU_SET writes one bit of `set`, bounded by the set's size.
        unsafe { libc::CPU_SET(c as usize, &mut set) };
    }
    // SAFETY: `set` is a valid cpu_set_t of the size passed; the call reads it only.
    let rc = unsafe {
        libc::sched_setaffinity(
            tid as libc::pid_t,
            std::mem::size_of::<libc::cpu_set_t>(),
            &set,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The CPUs a thread may run on, as the kernel reports it (`Cpus_allowed_list`).
pub fn allowed_cpus(pid: u32, tid: u32) -> Option<Vec<u32>> {
    let status = fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).ok()?;
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?;
    parse_cpu_list(list.trim())
}

/// One line for the result document: `CPU 0/TCG→0, CPU 1/TCG→1; 7 other threads→0-1`.
pub fn summarize(pinned: &[PinnedThread]) -> String {
    let mut vcpus: Vec<&PinnedThread> = pinned
        .iter()
        .filter(|t| vcpu_index(&t.comm).is_some())
        .collect();
    vcpus.sort_by_key(|t| vcpu_index(&t.comm));
    let others: Vec<&PinnedThread> = pinned
        .iter()
        .filter(|t| vcpu_index(&t.comm).is_none())
        .collect();
    let mut parts: Vec<String> = vcpus
        .iter()
        .map(|t| format!("{}→{}", t.comm, format_cpu_list(&t.cpus)))
        .collect();
    if let Some(first) = others.first() {
        let procs: BTreeSet<u32> = others.iter().map(|t| t.pid).collect();
        parts.push(format!(
            "{} other thread{} of {} process{}→{}",
            others.len(),
            plural(others.len()),
            procs.len(),
            if procs.len() == 1 { "" } else { "es" },
            format_cpu_list(&first.cpus)
        ));
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake sysfs: 2 sockets × 2 cores × 2 threads; CPU n+4 is the sibling of CPU n, CPUs
    /// 0,1,4,5 on socket 0 (the numbering Intel hosts use).
    fn fake_sysfs() -> tempdir::Dir {
        let d = tempdir::Dir::new();
        let sys = d.path();
        fs::create_dir_all(sys.join("cpu")).unwrap();
        fs::write(sys.join("cpu/online"), "0-7\n").unwrap();
        for cpu in 0..8u32 {
            let t = sys.join(format!("cpu/cpu{cpu}/topology"));
            fs::create_dir_all(&t).unwrap();
            let base = cpu % 4;
            fs::write(t.join("physical_package_id"), format!("{}\n", base / 2)).unwrap();
            fs::write(t.join("core_id"), format!("{}\n", base % 2)).unwrap();
            fs::write(
                t.join("thread_siblings_list"),
                format!("{},{}\n", base, base + 4),
            )
            .unwrap();
        }
        for (n, list) in [(0, "0-1,4-5"), (1, "2-3,6-7")] {
            let nd = sys.join(format!("node/node{n}"));
            fs::create_dir_all(&nd).unwrap();
            fs::write(nd.join("cpulist"), list).unwrap();
        }
        d
    }

    mod tempdir {
        pub struct Dir(std::path::PathBuf);
        impl Dir {
            pub fn new() -> Dir {
                static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
                let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let p =
                    std::env::temp_dir().join(format!("hvbench-topo-{}-{n}", std::process::id()));
                std::fs::create_dir_all(&p).unwrap();
                Dir(p)
            }
            pub fn path(&self) -> &std::path::Path {
                &self.0
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn topology_from_sysfs() {
        let d = fake_sysfs();
        let t = Topology::from_sysfs(d.path());
        assert_eq!(t.cpus.len(), 8);
        assert_eq!(t.counts(), (2, 4, 2));
        assert_eq!(
            t.describe(),
            "2 sockets, 4 cores, 8 CPUs (SMT 2), 2 NUMA nodes"
        );
        let c6 = t.place(6).unwrap();
        assert_eq!((c6.socket, c6.core, c6.node), (1, 0, Some(1)));
        assert_eq!(c6.siblings, [2, 6]);
        // This host's own topology reads without panicking and covers its online CPUs.
        let here = Topology::detect();
        assert!(!here.cpus.is_empty());
    }

    #[test]
    fn pack_fills_a_core_then_a_socket_and_spread_alternates_sockets() {
        let d = fake_sysfs();
        let t = Topology::from_sysfs(d.path());
        let all: Vec<u32> = (0..8).collect();
        let pack = PinPolicy {
            placement: Placement::Pack,
            cpus: all.clone(),
            backends: Vec::new(),
        };
        assert_eq!(pack.order(&t), [0, 4, 1, 5, 2, 6, 3, 7]);
        assert_eq!(pack.cpus_for(&t, 0, 2), [0, 4]);
        assert_eq!(pack.cpus_for(&t, 1, 2), [1, 5]);
        let spread = PinPolicy {
            placement: Placement::Spread,
            cpus: all,
            backends: Vec::new(),
        };
        assert_eq!(spread.order(&t), [0, 2, 1, 3, 4, 6, 5, 7]);
        // Two vCPUs: one per socket; the second guest gets the other cores.
        assert_eq!(spread.cpus_for(&t, 0, 2), [0, 2]);
        assert_eq!(spread.cpus_for(&t, 1, 2), [1, 3]);
        // More vCPUs than CPUs wrap around.
        assert_eq!(spread.cpus_for(&t, 0, 10).len(), 10);
        // A user's subset is respected.
        let subset = PinPolicy {
            placement: Placement::Spread,
            cpus: vec![4, 5, 6],
            backends: Vec::new(),
        };
        assert!(subset.order(&t).iter().all(|c| [4, 5, 6].contains(c)));
    }

    #[test]
    fn a_policy_for_some_backends_pins_only_those() {
        let mut p = PinPolicy {
            placement: Placement::Pack,
            cpus: vec![0],
            backends: Vec::new(),
        };
        assert!(p.applies_to("uml") && p.applies_to("native"));
        p.backends = vec!["uml".into()];
        assert!(p.applies_to("uml"));
        assert!(!p.applies_to("gvisor") && !p.applies_to("native"));
        // Documents from before the field read as pinning every backend.
        let old: PinPolicy =
            serde_json::from_str(r#"{"placement": "pack", "cpus": [0, 1]}"#).unwrap();
        assert!(old.applies_to("gvisor"));
    }

    #[test]
    fn cpu_lists_round_trip() {
        assert_eq!(
            parse_cpu_list("0-3,8,10-11"),
            Some(vec![0, 1, 2, 3, 8, 10, 11])
        );
        assert_eq!(parse_cpu_list("1"), Some(vec![1]));
        assert_eq!(parse_cpu_list(""), Some(vec![]));
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("x"), None);
        assert_eq!(format_cpu_list(&[0, 1, 2, 3, 8, 10, 11]), "0-3,8,10-11");
        assert_eq!(format_cpu_list(&[5]), "5");
    }

    #[test]
    fn vcpu_threads_are_recognised_by_name() {
        assert_eq!(vcpu_index("CPU 0/TCG"), Some(0));
        assert_eq!(vcpu_index("CPU 12/KVM"), Some(12));
        assert_eq!(vcpu_index("ALL CPUs/TCG"), None);
        assert_eq!(vcpu_index("qemu-system-x86"), None);
        assert_eq!(vcpu_index("CPU 1/"), None);
    }

    #[test]
    fn ppid_survives_odd_command_names() {
        assert_eq!(parse_ppid("42 (a) b (c)) S 7 42 42 0"), Some(7));
        assert_eq!(parse_ppid("garbage"), None);
    }

    #[test]
    fn a_child_is_pinned_and_the_kernel_reports_it() {
        let allowed = allowed_cpus(std::process::id(), std::process::id()).unwrap();
        let target = vec![*allowed.last().unwrap()];
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pinned = pin_tree(&[child.id()], &target).unwrap();
        let read_back = allowed_cpus(child.id(), child.id());
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(pinned.len(), 1, "{pinned:?}");
        assert_eq!(read_back, Some(target));
        assert!(summarize(&pinned).contains("1 other thread of 1 process"));
        assert!(matches!(
            pin_tree(&[child.id()], &[]),
            Err(PinError::NoCpus)
        ));
    }
}
