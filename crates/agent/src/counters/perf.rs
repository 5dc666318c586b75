//! perf's counting interface: `perf_event_open(2)` with `inherit` on a process tree, read as
//! one count per event; tracefs mounted for the tracepoints' ids.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `PERF_TYPE_SOFTWARE`, `PERF_TYPE_TRACEPOINT` (linux/perf_event.h).
pub const PERF_TYPE_SOFTWARE: u32 = 1;
pub const PERF_TYPE_TRACEPOINT: u32 = 2;
pub const PERF_COUNT_SW_TASK_CLOCK: u64 = 1;
pub const PERF_COUNT_SW_CONTEXT_SWITCHES: u64 = 3;
pub const PERF_COUNT_SW_CPU_MIGRATIONS: u64 = 4;
pub const PERF_COUNT_SW_PAGE_FAULTS_MIN: u64 = 5;
pub const PERF_COUNT_SW_PAGE_FAULTS_MAJ: u64 = 6;
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

/// What to open: a name (the extra is `ev.<name>`), a type, a config, an optional filter.
pub struct EventSpec {
    pub name: String,
    pub type_: u32,
    pub config: u64,
    pub filter: Option<String>,
}

pub fn perf_event_open(spec: &EventSpec, pid: libc::pid_t) -> std::io::Result<OwnedFd> {
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

pub fn read_count(fd: &OwnedFd) -> Option<u64> {
    let mut v = [0u8; 8];
    // SAFETY: reads at most 8 bytes into `v`, which is 8 bytes long.
    let n = unsafe { libc::read(fd.as_raw_fd(), v.as_mut_ptr().cast(), 8) };
    (n == 8).then(|| u64::from_ne_bytes(v))
}

/// The id of the tracepoint `events/<rel>` once tracefs is mounted.
pub fn tracepoint_id(rel: &str) -> Option<u64> {
    ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
        .iter()
        .find_map(|base| std::fs::read_to_string(format!("{base}/events/{rel}/id")).ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
}

/// The id of `raw_syscalls:sys_enter`, mounting tracefs at /sys/kernel/tracing when it is not
/// mounted and this agent's mounts are its own.
pub fn sys_enter_id() -> Result<u64, String> {
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

/// Opens `spec` with `inherit` on the agent and on each of `tids`.
pub fn open_on_tree(spec: &EventSpec, tids: &[libc::pid_t]) -> Result<Vec<OwnedFd>, String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_attribute_has_the_size_of_version_5() {
        assert_eq!(std::mem::size_of::<PerfEventAttr>(), 112);
    }
}
