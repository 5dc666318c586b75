//! Event counts of one repetition's whole process tree, for `hvbench explain`.
//!
//! When a job carries the parameter `count_events: true`, the agent counts what each
//! repetition asks of the kernel and sends the counts as extras of its sample (`ev.*`, one
//! figure per repetition), with the events it could not count named in the label
//! `ev_not_counted`. Nothing is estimated: an event that cannot be counted here is absent.
//!
//! How (perf's counting interface through `perf_event_open(2)`, no sampling, no BPF):
//! - Software events: minor and major page faults, context switches, CPU migrations, task
//!   clock. Tracepoint `raw_syscalls:sys_enter` for every system call, and the same tracepoint
//!   once more per class of system calls with a filter on the syscall number (`id == 0 || id ==
//!   1 ...`): one event per class instead of one per system call, and no BPF. The classes are
//!   in [`CLASSES`]; `other` is the total minus the classes.
//! - Whose: each event is opened with `inherit` on the agent itself and on every process and
//!   thread that already descends from it (an application's server that persists across
//!   repetitions: PostgreSQL's postmaster and its helpers), right before the repetition and
//!   closed right after it. Processes created during the repetition inherit the events. A read
//!   of an inherited counter sums the parent's count, those of its live inherited children and
//!   those of the children that have exited (the kernel folds them in at exit), so the tree is
//!   complete whether the application's processes are still running or not
//!   (`inherited_counts_include_live_children` checks it).
//! - Opened per repetition, not kept open: an enabled syscall tracepoint puts every task of
//!   the system on the slow system-call path, which would slow the other backends too.
//! - CPU time: user and system seconds of the tree from `getrusage` (the agent and the
//!   children it reaped) and `/proc/PID/stat` (utime, stime and the reaped children's cutime,
//!   cstime of every live descendant), before and after.
//! - Disk: `/sys/dev/block/MAJ:MIN/stat` of the device the job's application directory is on
//!   (I/Os and sectors read and written, flushes). It is the whole device: other processes'
//!   I/O during the repetition is included.
//! - Network: `/proc/net/dev` of the agent's network namespace (`netdev.*`: bytes and packets
//!   received and sent over every interface), before and after. As with the disk, other
//!   processes' traffic in that namespace is included; loopback traffic counts once each way.
//! - Clock reads (`count_events: "clocks"`, a repetition that counts nothing else): uprobes at
//!   the places the applications' programs call `clock_gettime`, `gettimeofday` and `time`
//!   ([`crate::clocks`]), defined in tracefs and opened as tracepoints like the others.
//! - Hardware counters (cycles, instructions, TLB misses) are not used: the host this was built
//!   on, a VM, exposes none, and the model needs none.
//!
//! Where `perf_event_open` is refused (gVisor implements no perf; an unprivileged namespace;
//! a kernel without tracepoints) the events are reported as not counted, with the reason.

mod classes;
mod perf;
mod tree;

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;

use hvbench_workloads::Params;

use crate::clocks;
use classes::OPENAT_CREAT;
use classes::{class_filter, CLASSES};
use perf::{
    open_on_tree, read_count, sys_enter_id, tracepoint_id, EventSpec,
    PERF_COUNT_SW_CONTEXT_SWITCHES, PERF_COUNT_SW_CPU_MIGRATIONS, PERF_COUNT_SW_PAGE_FAULTS_MAJ,
    PERF_COUNT_SW_PAGE_FAULTS_MIN, PERF_COUNT_SW_TASK_CLOCK, PERF_TYPE_SOFTWARE,
    PERF_TYPE_TRACEPOINT,
};
use tree::{
    descendants, disk_counts, disk_stat_path, kernel_counts_faults, net_counts, tree_totals,
    TreeTotals,
};

fn specs(sys_enter: Option<u64>, openat: Option<u64>) -> Vec<EventSpec> {
    let sw = |name: &str, config| EventSpec {
        name: name.into(),
        type_: PERF_TYPE_SOFTWARE,
        config,
        filter: None,
    };
    let mut out = vec![
        sw("faults_minor", PERF_COUNT_SW_PAGE_FAULTS_MIN),
        sw("faults_major", PERF_COUNT_SW_PAGE_FAULTS_MAJ),
        sw("ctx_switches", PERF_COUNT_SW_CONTEXT_SWITCHES),
        sw("cpu_migrations", PERF_COUNT_SW_CPU_MIGRATIONS),
        sw("task_clock_ns", PERF_COUNT_SW_TASK_CLOCK),
    ];
    if let Some(id) = sys_enter {
        out.push(EventSpec {
            name: "syscalls".into(),
            type_: PERF_TYPE_TRACEPOINT,
            config: id,
            filter: None,
        });
        for (class, ids) in CLASSES {
            out.push(EventSpec {
                name: format!("syscalls.{class}"),
                type_: PERF_TYPE_TRACEPOINT,
                config: id,
                filter: Some(class_filter(ids)),
            });
        }
    }
    if let Some(id) = openat {
        out.push(EventSpec {
            name: OPENAT_CREAT.into(),
            type_: PERF_TYPE_TRACEPOINT,
            config: id,
            filter: Some(format!("flags & {}", libc::O_CREAT)),
        });
    }
    out
}

/// Opens the clock reads' events (`clock_reads.<function>`) at all of their places or at none
/// (a partial count is no count); the probes they need, to remove once they are closed.
fn open_clock_reads(
    params: &Params,
    tracefs: bool,
    tids: &[libc::pid_t],
    events: &mut Vec<(String, Vec<OwnedFd>)>,
    not_counted: &mut BTreeMap<String, String>,
) -> Option<clocks::Probes> {
    let (probes, unseen) = match clocks::Probes::for_job(params, tracefs) {
        Ok(p) => p,
        Err(why) => {
            not_counted.insert("clock_reads".into(), why);
            return None;
        }
    };
    if let Some(u) = unseen {
        not_counted.insert("clock_reads_unseen".into(), u);
    }
    let opened: Result<Vec<_>, String> = probes
        .events
        .iter()
        .map(|(id, symbol)| {
            let spec = EventSpec {
                name: format!("clock_reads.{symbol}"),
                type_: PERF_TYPE_TRACEPOINT,
                config: *id,
                filter: None,
            };
            open_on_tree(&spec, tids).map(|fds| (spec.name, fds))
        })
        .collect();
    match opened {
        Ok(mut clock) => {
            // Summed over the functions when read.
            events.push(("clock_reads".into(), Vec::new()));
            events.append(&mut clock);
            Some(probes)
        }
        Err(why) => {
            not_counted.insert("clock_reads".into(), format!("uprobes: {why}"));
            None
        }
    }
}

/// Whether the job asks for counts.
pub fn wanted(params: &Params) -> bool {
    clocks_only(params)
        || params
            .get("count_events")
            .and_then(|v| v.as_bool())
            .unwrap_or(false)
}

/// Whether the job counts the clock reads alone (`count_events: "clocks"`): a uprobe hit costs
/// microseconds natively, so a repetition that counts them runs several times slower than one
/// that does not, and its other counts per unit of work (faults and calls of a repetition's
/// start spread over fewer units, CPU time) would no longer be the work's.
fn clocks_only(params: &Params) -> bool {
    params.get("count_events").and_then(|v| v.as_str()) == Some("clocks")
}

/// The directory whose device holds what the application writes.
fn data_dir(params: &Params) -> Option<String> {
    if params.contains_key("app_dev") {
        return Some("/hvb/app".into());
    }
    params
        .get("app_dir")
        .and_then(|v| v.as_str())
        .map(String::from)
}

/// Counters open over one repetition.
pub struct Counting {
    events: Vec<(String, Vec<OwnedFd>)>,
    /// The uprobes the clock reads are counted at, removed once their events are closed.
    clock_probes: Option<clocks::Probes>,
    /// Only the clock reads are counted.
    clocks_only: bool,
    not_counted: BTreeMap<String, String>,
    totals0: TreeTotals,
    leaders0: Vec<libc::pid_t>,
    disk: Option<(String, [u64; 5])>,
    net: Option<[u64; 4]>,
}

impl Counting {
    /// Opens every counter it can, on the agent and its live descendants.
    pub fn start(params: &Params) -> Counting {
        let clocks_only = clocks_only(params);
        let mut not_counted = BTreeMap::new();
        let sys_enter = match sys_enter_id() {
            Ok(id) => Some(id),
            Err(why) => {
                not_counted.insert("syscalls".to_string(), why);
                None
            }
        };
        // Mounted by now when it can be.
        let openat = sys_enter.and_then(|_| tracepoint_id("syscalls/sys_enter_openat"));
        if sys_enter.is_some() && openat.is_none() {
            not_counted.insert(
                OPENAT_CREAT.into(),
                "no syscalls:sys_enter_openat tracepoint: an openat with O_CREAT is counted as \
                 a path call, not a creating one"
                    .into(),
            );
        }
        let (leaders0, tids) = descendants();
        let mut events = Vec::new();
        let specs = if clocks_only {
            Vec::new()
        } else {
            specs(sys_enter, openat)
        };
        for spec in specs {
            match open_on_tree(&spec, &tids) {
                Ok(fds) => events.push((spec.name, fds)),
                Err(why) => {
                    not_counted.insert(spec.name, why);
                }
            }
        }
        // The clock reads, in repetitions of their own.
        let clock_probes = if clocks_only {
            open_clock_reads(
                params,
                sys_enter.is_some(),
                &tids,
                &mut events,
                &mut not_counted,
            )
        } else {
            None
        };
        let disk = match data_dir(params).map(|d| disk_stat_path(&d)) {
            Some(Ok(stat)) => disk_counts(&stat).map(|c| (stat, c)),
            Some(Err(why)) => {
                not_counted.insert("disk".into(), why);
                None
            }
            None => {
                not_counted.insert("disk".into(), "the job has no application directory".into());
                None
            }
        };
        let net = net_counts();
        if net.is_none() {
            not_counted.insert("netdev".into(), "no interface in /proc/net/dev".into());
        }
        if clocks_only {
            not_counted.retain(|k, _| k.starts_with("clock_reads"));
        }
        Counting {
            clocks_only,
            totals0: tree_totals(&leaders0),
            leaders0,
            events,
            clock_probes,
            not_counted,
            disk,
            net,
        }
    }

    /// Reads and closes every counter: the `ev.*` extras and the `ev_not_counted` label.
    pub fn finish(self) -> (BTreeMap<String, f64>, Option<String>) {
        let mut out = BTreeMap::new();
        for (name, fds) in &self.events {
            let mut sum = 0u64;
            for fd in fds {
                sum += read_count(fd).unwrap_or(0);
            }
            *out.entry(format!("ev.{name}")).or_insert(0.0) += sum as f64;
        }
        drop(self.events);
        drop(self.clock_probes);
        // Every clock read: the sum of each function's.
        if out.contains_key("ev.clock_reads") {
            let reads: f64 = out
                .iter()
                .filter(|(k, _)| k.starts_with("ev.clock_reads."))
                .map(|(_, v)| v)
                .sum();
            out.insert("ev.clock_reads".into(), reads);
        }
        if self.clocks_only {
            let label = self
                .not_counted
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join("; ");
            return (out, (!label.is_empty()).then_some(label));
        }
        if let Some(total) = out.get("ev.syscalls").copied() {
            let classes: f64 = CLASSES
                .iter()
                .filter_map(|(c, _)| out.get(&format!("ev.syscalls.{c}")))
                .sum();
            out.insert("ev.syscalls.other".into(), (total - classes).max(0.0));
        }
        // An openat that creates a file: a creating call, not a lookup.
        if let Some(n) = out.remove(&format!("ev.{OPENAT_CREAT}")) {
            if let Some(path) = out.get_mut("ev.syscalls.path") {
                *path = (*path - n).max(0.0);
            }
            if let Some(create) = out.get_mut("ev.syscalls.create") {
                *create += n;
            }
        }
        // Processes alive now: those alive at the start and those born since.
        let mut now = descendants().0;
        now.extend(self.leaders0.iter().copied());
        now.sort_unstable();
        now.dedup();
        let t1 = tree_totals(&now);
        let t0 = self.totals0;
        // A process alive at the start that has exited since was reaped by the agent or by a
        // live descendant: its whole time is in their children's times, its start subtracted.
        out.insert("ev.user_s".into(), (t1.user_s - t0.user_s).max(0.0));
        out.insert("ev.sys_s".into(), (t1.sys_s - t0.sys_s).max(0.0));
        let mut not = self.not_counted;
        faults_without_perf(t0, t1, &mut out, &mut not);
        device_deltas(self.disk.as_ref(), self.net, &mut out, &mut not);
        not.insert(
            "hardware".into(),
            "hardware counters are not used (cycles, instructions)".into(),
        );
        let label = not
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join("; ");
        (out, Some(label))
    }
}

/// The page faults from the process tree's sums (`t0` at the start, `t1` now) where perf did not
/// count them, or why there are none.
fn faults_without_perf(
    t0: TreeTotals,
    t1: TreeTotals,
    out: &mut BTreeMap<String, f64>,
    not: &mut BTreeMap<String, String>,
) {
    // Without perf (User-Mode Linux's kernel has none, nor has gVisor) the page faults come
    // from the same process-tree sums; a process reaped by one outside the tree is lost.
    if !out.contains_key("ev.faults_minor") && !kernel_counts_faults() {
        // gVisor's /proc says 0 for every process: a zero there is not a count.
        let why = "perf_event_open is unavailable and this kernel's getrusage counts no \
                       page faults (a page the agent touched was not counted)";
        not.insert("faults_minor".into(), why.into());
        not.insert("faults_major".into(), why.into());
    } else if !out.contains_key("ev.faults_minor") {
        let why = not.remove("faults_minor").unwrap_or_default();
        not.remove("faults_major");
        out.insert(
            "ev.faults_minor".into(),
            t1.faults_minor.saturating_sub(t0.faults_minor) as f64,
        );
        out.insert(
            "ev.faults_major".into(),
            t1.faults_major.saturating_sub(t0.faults_major) as f64,
        );
        not.insert(
            "faults_source".into(),
            format!("page faults from /proc and getrusage, not perf ({why})"),
        );
    }
}

/// What the disk (`stat`, counts at the start) and the network namespace's interfaces (`net0`)
/// did since the start, as `ev.disk_*` and `ev.netdev.*`; the network's scope said in `not`.
fn device_deltas(
    disk: Option<&(String, [u64; 5])>,
    net0: Option<[u64; 4]>,
    out: &mut BTreeMap<String, f64>,
    not: &mut BTreeMap<String, String>,
) {
    if let Some((stat, c0)) = disk {
        if let Some(c1) = disk_counts(stat) {
            let d = |i: usize| c1[i].saturating_sub(c0[i]) as f64;
            out.insert("ev.disk_reads".into(), d(0));
            out.insert("ev.disk_read_bytes".into(), d(1) * 512.0);
            out.insert("ev.disk_writes".into(), d(2));
            out.insert("ev.disk_write_bytes".into(), d(3) * 512.0);
            out.insert("ev.disk_flushes".into(), d(4));
        }
    }
    if let Some((c0, c1)) = net0.zip(net_counts()) {
        for (i, name) in ["rx_bytes", "rx_packets", "tx_bytes", "tx_packets"]
            .iter()
            .enumerate()
        {
            out.insert(
                format!("ev.netdev.{name}"),
                c1[i].saturating_sub(c0[i]) as f64,
            );
        }
        not.insert(
            "netdev_scope".into(),
            "packets and bytes of every interface of the agent's network namespace: other \
             processes' traffic in it is included, loopback traffic is both sent and received"
                .into(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;

    fn is_root() -> bool {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() == 0 }
    }

    /// A forked child, alive when the counters are read, does 1000 getppid calls and touches
    /// 200 fresh pages: the inherited counters include them.
    #[test]
    fn inherited_counts_include_live_children() {
        if !is_root() {
            eprintln!("not root: perf tracepoints are not open to this user, skipped");
            return;
        }
        // A mount namespace of this test's own, where tracefs may be mounted (as the native
        // agent has one of its own).
        // SAFETY: unshare and mount with constant arguments; the test thread's mounts only.
        unsafe {
            assert_eq!(libc::unshare(libc::CLONE_NEWNS), 0);
            libc::mount(
                c"none".as_ptr(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            );
        }
        let c = Counting::start(&Params::new());
        if c.not_counted.contains_key("syscalls") || c.events.is_empty() {
            let ci = std::env::var("CI").as_deref() == Ok("true");
            assert!(
                !ci,
                "CI runs as root on a kernel with perf: {:?}",
                c.not_counted
            );
            eprintln!("cannot count here: {:?}", c.not_counted);
            return;
        }
        let scratch =
            CString::new(format!("/tmp/hvbench-counters-{}", std::process::id())).unwrap();
        let (r, w) = {
            let mut fds = [0; 2];
            // SAFETY: `fds` has room for two descriptors.
            assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
            (fds[0], fds[1])
        };
        // SAFETY: the child only makes system calls and writes to its own memory, then
        // blocks in read until the parent has read the counters, and _exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            for _ in 0..1000 {
                // SAFETY: getppid takes no arguments.
                unsafe { libc::syscall(libc::SYS_getppid) };
            }
            let pages = vec![1u8; 200 * 4096];
            std::hint::black_box(&pages);
            // Three files created and removed (an openat with O_CREAT and an unlink each) and
            // one existing file opened: six creating calls, one path call more.
            for _ in 0..3 {
                // SAFETY: NUL-terminated constant paths; the descriptor is closed once.
                unsafe {
                    let fd = libc::open(scratch.as_ptr(), libc::O_CREAT | libc::O_WRONLY, 0o600);
                    libc::close(fd);
                    libc::unlink(scratch.as_ptr());
                }
            }
            // SAFETY: as above.
            unsafe { libc::close(libc::open(c"/proc/self/stat".as_ptr(), libc::O_RDONLY)) };
            let mut b = [0u8; 1];
            // SAFETY: reads one byte into `b`; then exits without unwinding.
            unsafe {
                libc::read(r, b.as_mut_ptr().cast(), 1);
                libc::_exit(0);
            }
        }
        assert!(pid > 0);
        // Let the child finish its calls (it blocks in read afterwards).
        let mut waited = 0;
        loop {
            std::thread::sleep(std::time::Duration::from_millis(20));
            let st = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            waited += 1;
            if st.contains(") S ") || waited > 250 {
                break;
            }
        }
        let (counts, _) = c.finish();
        // SAFETY: `w` is the pipe's write end; `pid` our child.
        unsafe {
            libc::write(w, b"x".as_ptr().cast(), 1);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
            libc::close(r);
            libc::close(w);
        }
        eprintln!("{counts:?}");
        assert!(counts["ev.syscalls"] >= 1000.0, "{counts:?}");
        assert!(counts["ev.syscalls.other"] >= 1000.0, "{counts:?}");
        assert!(counts["ev.faults_minor"] >= 200.0, "{counts:?}");
        // The three creating openat calls moved from the path calls to the creating ones.
        assert!(!counts.contains_key("ev.syscalls.openat_creat"));
        assert!(counts["ev.syscalls.create"] >= 6.0, "{counts:?}");
        assert!(counts["ev.syscalls.path"] >= 1.0, "{counts:?}");
    }
}
