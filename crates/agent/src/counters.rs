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
//! - Clock reads (`count_events: "clocks"`, a repetition that counts nothing else): uprobes at
//!   the places the applications' programs call `clock_gettime`, `gettimeofday` and `time`
//!   ([`crate::clocks`]), defined in tracefs and opened as tracepoints like the others.
//! - Hardware counters (cycles, instructions, TLB misses) are not used: the host this was built
//!   on, a VM, exposes none, and the model needs none.
//!
//! Where `perf_event_open` is refused (gVisor implements no perf; an unprivileged namespace;
//! a kernel without tracepoints) the events are reported as not counted, with the reason.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use hvbench_workloads::Params;

use crate::clocks;

/// `PERF_TYPE_SOFTWARE`, `PERF_TYPE_TRACEPOINT` (linux/perf_event.h).
const PERF_TYPE_SOFTWARE: u32 = 1;
const PERF_TYPE_TRACEPOINT: u32 = 2;
const PERF_COUNT_SW_TASK_CLOCK: u64 = 1;
const PERF_COUNT_SW_CONTEXT_SWITCHES: u64 = 3;
const PERF_COUNT_SW_CPU_MIGRATIONS: u64 = 4;
const PERF_COUNT_SW_PAGE_FAULTS_MIN: u64 = 5;
const PERF_COUNT_SW_PAGE_FAULTS_MAJ: u64 = 6;
/// `attr.flags` bits.
const FLAG_INHERIT: u64 = 1 << 1;
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;
/// `_IOW('$', 6, char *)`.
const PERF_EVENT_IOC_SET_FILTER: libc::c_ulong = 0x4008_2406;

/// `struct perf_event_attr` up to `PERF_ATTR_SIZE_VER5` (112 bytes); the bit fields are one
/// `u64`. libc does not define it.
#[repr(C)]
#[derive(Default)]
struct PerfEventAttr {
    type_: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
    config2: u64,
    branch_sample_type: u64,
    sample_regs_user: u64,
    sample_stack_user: u32,
    clockid: i32,
    sample_regs_intr: u64,
    aux_watermark: u32,
    sample_max_stack: u16,
    reserved_2: u16,
}

/// The classes of system calls counted apart, by name; `other` is what is left.
pub const CLASSES: &[(&str, &[libc::c_long])] = &[
    (
        "file",
        &[
            libc::SYS_read,
            libc::SYS_write,
            libc::SYS_pread64,
            libc::SYS_pwrite64,
            libc::SYS_readv,
            libc::SYS_writev,
            libc::SYS_preadv,
            libc::SYS_pwritev,
            libc::SYS_close,
            libc::SYS_fstat,
            libc::SYS_lseek,
            libc::SYS_getdents64,
            libc::SYS_fcntl,
            libc::SYS_ioctl,
            libc::SYS_ftruncate,
            libc::SYS_fallocate,
            libc::SYS_dup,
            libc::SYS_dup2,
            libc::SYS_dup3,
            libc::SYS_pipe,
            libc::SYS_pipe2,
            libc::SYS_getcwd,
            libc::SYS_fchmod,
        ],
    ),
    (
        // Calls that look a file up by its name (and the `newfstatat` of a descriptor, as
        // glibc makes an fstat): a path walk through the directory cache, and in a sandbox
        // whose files are the host's (gVisor) a trip to the host's file system. Priced by
        // fs.open, apart from the calls on an open file.
        "path",
        &[
            libc::SYS_open,
            libc::SYS_openat,
            libc::SYS_stat,
            libc::SYS_lstat,
            libc::SYS_newfstatat,
            libc::SYS_statx,
            libc::SYS_access,
            libc::SYS_faccessat,
            libc::SYS_faccessat2,
            libc::SYS_readlink,
            libc::SYS_readlinkat,
            libc::SYS_chdir,
            libc::SYS_chmod,
            libc::SYS_fchmodat,
            libc::SYS_utimensat,
            libc::SYS_openat2,
        ],
    ),
    (
        // Calls that change a directory: a new name, a removed one, a renamed one. The lookup
        // and besides it a metadata write (an inode allocated or freed, a directory entry), in
        // gVisor a change made on the host's file system. `openat` with `O_CREAT` is one too:
        // counted apart by `syscalls:sys_enter_openat` filtered on its flags, and moved here
        // from the path calls (see [`OPENAT_CREAT`]). Priced by fs.create.
        "create",
        &[
            libc::SYS_creat,
            libc::SYS_unlink,
            libc::SYS_unlinkat,
            libc::SYS_mkdir,
            libc::SYS_mkdirat,
            libc::SYS_rmdir,
            libc::SYS_rename,
            libc::SYS_renameat,
            libc::SYS_renameat2,
            libc::SYS_link,
            libc::SYS_linkat,
            libc::SYS_symlink,
            libc::SYS_symlinkat,
            libc::SYS_mknod,
            libc::SYS_mknodat,
        ],
    ),
    (
        "net",
        &[
            libc::SYS_socket,
            libc::SYS_socketpair,
            libc::SYS_connect,
            libc::SYS_accept,
            libc::SYS_accept4,
            libc::SYS_bind,
            libc::SYS_listen,
            libc::SYS_sendto,
            libc::SYS_recvfrom,
            libc::SYS_sendmsg,
            libc::SYS_recvmsg,
            libc::SYS_sendmmsg,
            libc::SYS_recvmmsg,
            libc::SYS_shutdown,
            libc::SYS_getsockopt,
            libc::SYS_setsockopt,
            libc::SYS_getsockname,
            libc::SYS_getpeername,
        ],
    ),
    (
        "mm",
        &[
            libc::SYS_mmap,
            libc::SYS_munmap,
            libc::SYS_mprotect,
            libc::SYS_brk,
            libc::SYS_mremap,
            libc::SYS_madvise,
        ],
    ),
    (
        // Durable writes: each waits for the disk (a journal commit, a cache flush), which is
        // priced apart from the call itself.
        "sync",
        &[
            libc::SYS_fsync,
            libc::SYS_fdatasync,
            libc::SYS_sync_file_range,
            libc::SYS_syncfs,
            libc::SYS_sync,
            libc::SYS_msync,
        ],
    ),
    (
        "sched",
        &[
            libc::SYS_futex,
            libc::SYS_sched_yield,
            libc::SYS_nanosleep,
            libc::SYS_clock_nanosleep,
            libc::SYS_poll,
            libc::SYS_ppoll,
            libc::SYS_select,
            libc::SYS_pselect6,
            libc::SYS_epoll_wait,
            libc::SYS_epoll_pwait,
            libc::SYS_epoll_ctl,
            libc::SYS_epoll_create1,
            libc::SYS_kill,
            libc::SYS_tgkill,
            libc::SYS_rt_sigaction,
            libc::SYS_rt_sigprocmask,
            libc::SYS_rt_sigreturn,
        ],
    ),
    // Process creation apart from the rest of the process calls: a fork and an execve are
    // priced by what proc.fork and proc.exec cost, not by a bare system call.
    (
        "fork",
        &[
            libc::SYS_clone,
            libc::SYS_clone3,
            libc::SYS_fork,
            libc::SYS_vfork,
        ],
    ),
    ("exec", &[libc::SYS_execve, libc::SYS_execveat]),
    // A file's bytes copied into another descriptor by the kernel (a web server's response):
    // in a sandbox whose files and sockets are the host's, a copy through its own memory.
    // Priced by fs.sendfile.
    (
        "sendfile",
        &[
            libc::SYS_sendfile,
            libc::SYS_splice,
            libc::SYS_tee,
            libc::SYS_copy_file_range,
        ],
    ),
    (
        "process",
        &[
            libc::SYS_exit,
            libc::SYS_exit_group,
            libc::SYS_wait4,
            libc::SYS_waitid,
        ],
    ),
];

/// The event that counts `openat` calls with `O_CREAT` (the tracepoint of that one system
/// call, whose filter can read its flags, as `raw_syscalls:sys_enter`'s cannot): they create a
/// file, so they are moved from the path calls to the creating ones when the counts are read.
/// glibc makes every `open` an `openat` on x86_64; an `open(2)` with `O_CREAT` made directly
/// stays a path call.
const OPENAT_CREAT: &str = "syscalls.openat_creat";

/// The tracepoint filter that selects `ids`.
pub fn class_filter(ids: &[libc::c_long]) -> String {
    ids.iter()
        .map(|id| format!("id == {id}"))
        .collect::<Vec<_>>()
        .join(" || ")
}

/// What to open: a name (the extra is `ev.<name>`), a type, a config, an optional filter.
struct EventSpec {
    name: String,
    type_: u32,
    config: u64,
    filter: Option<String>,
}

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

fn perf_event_open(spec: &EventSpec, pid: libc::pid_t) -> std::io::Result<OwnedFd> {
    let attr = PerfEventAttr {
        type_: spec.type_,
        size: std::mem::size_of::<PerfEventAttr>() as u32,
        config: spec.config,
        flags: FLAG_INHERIT,
        ..Default::default()
    };
    // SAFETY: `attr` is a valid perf_event_attr of the size it declares; the kernel only reads
    // it. The other arguments are plain integers.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &attr as *const PerfEventAttr,
            pid,
            -1 as libc::c_int,
            -1 as libc::c_int,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a new file descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) };
    if let Some(f) = &spec.filter {
        let c = CString::new(f.as_str()).expect("no NUL in a filter");
        // SAFETY: `fd` is a perf event; the filter is a NUL-terminated string that outlives
        // the call.
        if unsafe { libc::ioctl(fd.as_raw_fd(), PERF_EVENT_IOC_SET_FILTER, c.as_ptr()) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(fd)
}

fn read_count(fd: &OwnedFd) -> Option<u64> {
    let mut v = [0u8; 8];
    // SAFETY: reads at most 8 bytes into `v`, which is 8 bytes long.
    let n = unsafe { libc::read(fd.as_raw_fd(), v.as_mut_ptr().cast(), 8) };
    (n == 8).then(|| u64::from_ne_bytes(v))
}

/// The id of the tracepoint `events/<rel>` once tracefs is mounted.
fn tracepoint_id(rel: &str) -> Option<u64> {
    ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
        .iter()
        .find_map(|base| std::fs::read_to_string(format!("{base}/events/{rel}/id")).ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
}

/// The id of `raw_syscalls:sys_enter`, mounting tracefs at /sys/kernel/tracing when it is not
/// mounted and this agent's mounts are its own.
fn sys_enter_id() -> Result<u64, String> {
    const REL: &str = "events/raw_syscalls/sys_enter/id";
    let read = |base: &str| {
        std::fs::read_to_string(format!("{base}/{REL}"))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
    };
    if let Some(id) = read("/sys/kernel/tracing").or_else(|| read("/sys/kernel/debug/tracing")) {
        return Ok(id);
    }
    if !mounts_are_private() {
        // The native agent of a run without applications shares hvbench's mounts: it takes a
        // mount namespace of its own, with nothing propagating back, before mounting tracefs.
        // SAFETY: unshare and mount with constant arguments; they change only this agent's
        // view of the mounts (and its children's).
        let private = unsafe {
            libc::unshare(libc::CLONE_NEWNS) == 0
                && libc::mount(
                    c"none".as_ptr(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ) == 0
        };
        if !private {
            return Err(format!(
                "tracefs is not mounted and the agent cannot take mounts of its own: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    let src = c"nodev";
    let target = c"/sys/kernel/tracing";
    let fstype = c"tracefs";
    // SAFETY: NUL-terminated strings that outlive the call; no data argument.
    let r = unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if r != 0 {
        return Err(format!(
            "mounting tracefs: {}",
            std::io::Error::last_os_error()
        ));
    }
    read("/sys/kernel/tracing").ok_or_else(|| "no raw_syscalls:sys_enter tracepoint".into())
}

/// Whether a mount made by this thread stays in its world: PID 1 (a guest's init, a PID
/// namespace), or a mount namespace other than the parent's (the native agent's own).
fn mounts_are_private() -> bool {
    // SAFETY: getpid and getppid have no preconditions.
    let (pid, ppid) = unsafe { (libc::getpid(), libc::getppid()) };
    pid == 1
        || match (
            std::fs::read_link("/proc/thread-self/ns/mnt"),
            std::fs::read_link(format!("/proc/{ppid}/ns/mnt")),
        ) {
            (Ok(mine), Ok(parent)) => mine != parent,
            _ => false,
        }
}

/// Every process that descends from this agent (not the agent itself), from /proc, and all
/// their threads.
fn descendants() -> (Vec<libc::pid_t>, Vec<libc::pid_t>) {
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    let mut parent: BTreeMap<libc::pid_t, libc::pid_t> = BTreeMap::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            if let Some(ppid) = parent_of(pid) {
                parent.insert(pid, ppid);
            }
        }
    }
    let is_desc = |mut p: libc::pid_t| {
        for _ in 0..64 {
            match parent.get(&p) {
                Some(&pp) if pp == me => return true,
                Some(&pp) if pp > 1 => p = pp,
                _ => return false,
            }
        }
        false
    };
    let (mut pids, mut out) = (Vec::new(), Vec::new());
    for &pid in parent.keys() {
        if pid != me && is_desc(pid) {
            pids.push(pid);
            // Every thread: a pid-targeted event counts one thread (and what it creates).
            match std::fs::read_dir(format!("/proc/{pid}/task")) {
                Ok(tasks) => out.extend(tasks.flatten().filter_map(|t| {
                    t.file_name()
                        .to_str()
                        .and_then(|s| s.parse::<libc::pid_t>().ok())
                })),
                Err(_) => out.push(pid),
            }
        }
    }
    (pids, out)
}

/// The fields of `/proc/PID/stat` after the command (which may contain spaces and
/// parentheses: the fields start after the last ')'); index 0 is field 3, the state.
fn stat_fields(pid: libc::pid_t) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = text.get(text.rfind(')')? + 2..)?;
    Some(rest.split_whitespace().map(String::from).collect())
}

/// Field 4 of `/proc/PID/stat`.
fn parent_of(pid: libc::pid_t) -> Option<libc::pid_t> {
    stat_fields(pid)?.get(1)?.parse().ok()
}

/// User and system seconds and page faults of the agent and everything it reaped, plus the live
/// descendants (and what they reaped): `/proc` and `getrusage`, which every kernel keeps, perf or
/// not.
#[derive(Debug, Clone, Copy, Default)]
struct TreeTotals {
    user_s: f64,
    sys_s: f64,
    faults_minor: u64,
    faults_major: u64,
}

fn rusage(who: libc::c_int) -> libc::rusage {
    // SAFETY: an all-zero rusage is a valid value to be overwritten.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid rusage to fill.
    unsafe { libc::getrusage(who, &mut ru) };
    ru
}

/// Of `/proc/PID/stat`: utime + cutime and stime + cstime (fields 14 to 17, clock ticks),
/// minflt + cminflt and majflt + cmajflt (fields 10 to 13).
fn totals_of(pid: libc::pid_t) -> Option<[u64; 4]> {
    let f = stat_fields(pid)?;
    let num = |i: usize| f.get(i - 3)?.parse::<u64>().ok();
    Some([
        num(14)? + num(16)?,
        num(15)? + num(17)?,
        num(10)? + num(11)?,
        num(12)? + num(13)?,
    ])
}

/// Whether the kernel's `getrusage` counts page faults: the agent touches a fresh page and
/// looks (gVisor, for one, reports none for any process).
fn kernel_counts_faults() -> bool {
    let before = rusage(libc::RUSAGE_SELF).ru_minflt;
    // SAFETY: an anonymous private mapping of one page, checked, written once and unmapped.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if p == libc::MAP_FAILED {
            return false;
        }
        std::ptr::write_volatile(p.cast::<u8>(), 1);
        libc::munmap(p, 4096);
    }
    rusage(libc::RUSAGE_SELF).ru_minflt > before
}

fn tree_totals(processes: &[libc::pid_t]) -> TreeTotals {
    let s = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    let (me, children) = (rusage(libc::RUSAGE_SELF), rusage(libc::RUSAGE_CHILDREN));
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let mut live = [0u64; 4];
    for &p in processes {
        if let Some(t) = totals_of(p) {
            for (sum, x) in live.iter_mut().zip(t) {
                *sum += x;
            }
        }
    }
    TreeTotals {
        user_s: s(me.ru_utime) + s(children.ru_utime) + live[0] as f64 / hz,
        sys_s: s(me.ru_stime) + s(children.ru_stime) + live[1] as f64 / hz,
        faults_minor: (me.ru_minflt + children.ru_minflt) as u64 + live[2],
        faults_major: (me.ru_majflt + children.ru_majflt) as u64 + live[3],
    }
}

/// `/sys/dev/block/MAJ:MIN/stat` of the block device `path` is on.
fn disk_stat_path(path: &str) -> Result<String, String> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).map_err(|e| format!("{path}: {e}"))?;
    let dev = m.dev();
    let (maj, min) = (libc::major(dev), libc::minor(dev));
    if maj == 0 {
        return Err(format!(
            "{path} is on a file system without a block device ({maj}:{min})"
        ));
    }
    let stat = format!("/sys/dev/block/{maj}:{min}/stat");
    if std::path::Path::new(&stat).exists() {
        Ok(stat)
    } else {
        Err(format!("no {stat}"))
    }
}

/// Reads, sectors read, writes, sectors written, flushes (0 where the kernel has no field).
fn disk_counts(stat: &str) -> Option<[u64; 5]> {
    let text = std::fs::read_to_string(stat).ok()?;
    let f: Vec<u64> = text
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect();
    Some([
        *f.first()?,
        *f.get(2)?,
        *f.get(4)?,
        *f.get(6)?,
        f.get(15).copied().unwrap_or(0),
    ])
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
    let (probes, unseen) = match clock_probes(params, tracefs) {
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

/// Opens `spec` with `inherit` on the agent and on each of `tids`.
fn open_on_tree(spec: &EventSpec, tids: &[libc::pid_t]) -> Result<Vec<OwnedFd>, String> {
    let mut fds = Vec::new();
    for pid in std::iter::once(0).chain(tids.iter().copied()) {
        match perf_event_open(spec, pid) {
            Ok(fd) => fds.push(fd),
            // A descendant that exited in between is no loss: nothing to count.
            Err(e) if pid != 0 && e.raw_os_error() == Some(libc::ESRCH) => {}
            Err(e) => return Err(format!("perf_event_open: {e}")),
        }
    }
    Ok(fds)
}

/// The places of the applications' root where its programs read the clock, found once per
/// root and agent.
fn clock_sites(tree: &std::path::Path) -> std::sync::Arc<clocks::Sites> {
    use std::sync::{Arc, Mutex};
    static FOUND: Mutex<BTreeMap<std::path::PathBuf, Arc<clocks::Sites>>> =
        Mutex::new(BTreeMap::new());
    let mut found = FOUND.lock().unwrap_or_else(|e| e.into_inner());
    found
        .entry(tree.to_path_buf())
        .or_insert_with(|| Arc::new(clocks::sites(tree)))
        .clone()
}

/// A uprobe at each place where the applications' programs read the clock (see [`clocks`]),
/// and what the files that cannot be seen are; the reason when there are none.
fn clock_probes(
    params: &Params,
    tracefs: bool,
) -> Result<(clocks::Probes, Option<String>), String> {
    let tree = hvbench_workloads::app::tree_of(params).ok_or(
        "the job runs no program of the applications' root (uprobes are placed on its files)",
    )?;
    if !tracefs {
        return Err("no tracefs to define uprobes in (see syscalls)".into());
    }
    let sites = clock_sites(&tree);
    if sites.sites.is_empty() {
        return Err(format!(
            "no clock function found in the ELF files of {}",
            tree.display()
        ));
    }
    let probes = clocks::Probes::define(&sites.sites)?;
    let unseen = (!sites.unseen.is_empty()).then(|| {
        let shown: Vec<&str> = sites.unseen.iter().take(4).map(String::as_str).collect();
        format!(
            "{} files call a clock function through their GOT, which no uprobe sees ({}{})",
            sites.unseen.len(),
            shown.join(", "),
            if sites.unseen.len() > 4 { ", ..." } else { "" }
        )
    });
    Ok((probes, unseen))
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
        if let Some((stat, c0)) = &self.disk {
            if let Some(c1) = disk_counts(stat) {
                let d = |i: usize| c1[i].saturating_sub(c0[i]) as f64;
                out.insert("ev.disk_reads".into(), d(0));
                out.insert("ev.disk_read_bytes".into(), d(1) * 512.0);
                out.insert("ev.disk_writes".into(), d(2));
                out.insert("ev.disk_write_bytes".into(), d(3) * 512.0);
                out.insert("ev.disk_flushes".into(), d(4));
            }
        }
        not.insert(
            "hardware".into(),
            "hardware counters are not used (cycles, instructions)".into(),
        );
        not.insert(
            "net".into(),
            "network packets and bytes are not counted yet".into(),
        );
        let label = not
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join("; ");
        (out, Some(label))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_kernel_counts_the_faults_of_a_touched_page() {
        // Linux does; the check exists for kernels that do not (gVisor).
        assert!(kernel_counts_faults());
    }

    #[test]
    fn tree_totals_take_in_the_faults_of_reaped_children() {
        let before = tree_totals(&[]);
        // A child reaped by this process (a shell's exec alone takes page faults): its faults
        // are in RUSAGE_CHILDREN.
        let status = std::process::Command::new("/bin/sh")
            .args(["-c", "true"])
            .status()
            .expect("sh runs");
        assert!(status.success());
        let after = tree_totals(&[]);
        assert!(
            after.faults_minor > before.faults_minor,
            "{before:?} → {after:?}"
        );
        assert!(after.user_s + after.sys_s >= before.user_s + before.sys_s);
    }

    #[test]
    fn the_attribute_has_the_size_of_version_5() {
        assert_eq!(std::mem::size_of::<PerfEventAttr>(), 112);
    }

    #[test]
    fn classes_are_disjoint_and_filters_name_every_id() {
        let mut all: Vec<libc::c_long> =
            CLASSES.iter().flat_map(|(_, ids)| *ids).copied().collect();
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n, "a system call is in two classes");
        let f = class_filter(&[0, 1, 39]);
        assert_eq!(f, "id == 0 || id == 1 || id == 39");
    }

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
