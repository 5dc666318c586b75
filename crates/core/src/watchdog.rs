//! Nothing left behind when hvbench is killed.
//!
//! CI time-outs, OOM killers and dropped SSH sessions kill benchmark tools with SIGKILL, which no
//! handler sees: the guests (QEMU with its 512 MiB, UML, gVisor sandboxes in their own PID
//! namespaces), the run's work directory with its scratch disks, and the guests' cgroups would
//! outlive it. Two things prevent that:
//!
//! - a **watchdog**, a small process of its own session that hvbench starts first and that waits
//!   (on a pidfd) for hvbench to end, however it ends; it then kills every cgroup hvbench made
//!   (`cgroup.kill`: every process in it, PID namespaces included), every process group
//!   hvbench registered, and removes hvbench's work directories and network namespaces. After a
//!   clean exit there is nothing left for it to do.
//! - a **sweep** at the next start, for what a watchdog could not clean (it was killed too, or
//!   the machine rebooted): the leftovers of every hvbench whose process is gone, reported in one
//!   line.
//!
//! Everything hvbench makes is named after its pid (`hvbench-<pid>-…` work directories and
//! cgroups, `hvb<pid>-…` network namespaces, the registry `hvbench-<pid>.groups`), which is how
//! both find what belongs to a dead hvbench and nothing else.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where cgroups are made (see [`crate::accounting::CpuMeter::cgroup`]).
const CGROUP_ROOTS: [&str; 4] = [
    "/sys/fs/cgroup",
    "/sys/fs/cgroup/unified",
    "/sys/fs/cgroup/cpuacct",
    "/sys/fs/cgroup/cpu,cpuacct",
];

/// How long the cleanup waits for killed processes to leave their cgroups.
const KILL_WAIT: Duration = Duration::from_secs(2);

/// What was found and removed for one dead hvbench.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Leftovers {
    pub pid: u32,
    pub processes: usize,
    pub cgroups: usize,
    pub workdirs: usize,
}

impl Leftovers {
    pub fn is_empty(&self) -> bool {
        self.processes == 0 && self.cgroups == 0 && self.workdirs == 0
    }
}

/// One line for a sweep that found something: `removed what killed hvbench runs left: pid 812
/// (3 processes, 2 cgroups, 1 work directory)`; `None` when nothing was found.
pub fn describe(found: &[Leftovers]) -> Option<String> {
    let found: Vec<&Leftovers> = found.iter().filter(|l| !l.is_empty()).collect();
    if found.is_empty() {
        return None;
    }
    let count =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let parts: Vec<String> = found
        .iter()
        .map(|l| {
            format!(
                "pid {} ({}, {}, {})",
                l.pid,
                count(l.processes, "process", "processes"),
                count(l.cgroups, "cgroup", "cgroups"),
                count(l.workdirs, "work directory", "work directories")
            )
        })
        .collect();
    Some(format!(
        "removed what killed hvbench runs left: {}",
        parts.join("; ")
    ))
}

/// The pid in a name hvbench gave (`hvbench-<pid>-…` or `hvbench-<pid>.groups`).
pub fn owner_of(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("hvbench-")?;
    let end = rest.find(['-', '.'])?;
    rest[..end].parse().ok()
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Entries of `dir` that belong to hvbench `pid` (or to any hvbench with `None`).
fn owned_in(dir: &Path, pid: Option<u32>) -> Vec<(u32, PathBuf)> {
    let Ok(rd) = fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| {
            let owner = owner_of(e.file_name().to_str()?)?;
            let mine = match pid {
                Some(p) => p == owner,
                None => true,
            };
            mine.then(|| (owner, e.path()))
        })
        .collect()
}

/// The registry of process groups of hvbench `pid`.
fn registry(pid: u32) -> PathBuf {
    std::env::temp_dir().join(format!("hvbench-{pid}.groups"))
}

/// Records a process group this hvbench started (a guest's), so that a watchdog or a later
/// sweep can kill it where no cgroup holds it. Best effort: a failure to record only weakens
/// the fallback.
pub fn register_group(pgid: u32) {
    let Some(start) = start_time(pgid) else {
        return;
    };
    if let Ok(mut f) = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(registry(std::process::id()))
    {
        let _ = writeln!(f, "{pgid} {start}");
    }
}

/// Start time (clock ticks since boot) and process group of a process, from /proc.
fn stat_fields(pid: u32) -> Option<(u64, u32)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(0) ppid(1) pgrp(2) ... starttime(19).
    Some((f.get(19)?.parse().ok()?, f.get(2)?.parse().ok()?))
}

fn start_time(pid: u32) -> Option<u64> {
    stat_fields(pid).map(|(s, _)| s)
}

/// Kills the members of registered process groups that started no earlier than the group
/// (a pid reused since is older than nothing it could be confused with: it started later but
/// is in another group). Returns how many processes were signalled.
fn kill_registered_groups(pid: u32) -> usize {
    let Ok(text) = fs::read_to_string(registry(pid)) else {
        return 0;
    };
    let groups: Vec<(u32, u64)> = text
        .lines()
        .filter_map(|l| {
            let (g, s) = l.split_once(' ')?;
            Some((g.parse().ok()?, s.trim().parse().ok()?))
        })
        .collect();
    let mut killed = 0;
    for p in all_pids() {
        let Some((start, pgrp)) = stat_fields(p) else {
            continue;
        };
        if groups.iter().any(|&(g, s)| g == pgrp && start >= s) {
            // SAFETY: kill has no memory-safety preconditions; `p` is a member of a process
            // group this hvbench started (same group id, started no earlier than it).
            if unsafe { libc::kill(p as libc::pid_t, libc::SIGKILL) } == 0 {
                killed += 1;
            }
        }
    }
    let _ = fs::remove_file(registry(pid));
    killed
}

fn all_pids() -> Vec<u32> {
    fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn cgroup_members(dir: &Path) -> Vec<u32> {
    fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Kills every process in a cgroup (cgroup v2's `cgroup.kill` where it exists, else each
/// member, again until none is left), waits for them to leave, and removes it. Returns how
/// many processes were in it.
fn kill_cgroup(dir: &Path) -> usize {
    let members = cgroup_members(dir).len();
    let kill_file = dir.join("cgroup.kill");
    let deadline = Instant::now() + KILL_WAIT;
    loop {
        let left = cgroup_members(dir);
        if left.is_empty() || Instant::now() > deadline {
            break;
        }
        if kill_file.exists() {
            let _ = fs::write(&kill_file, "1");
        } else {
            for p in left {
                // SAFETY: kill has no memory-safety preconditions; `p` is in a cgroup this
                // hvbench created for a guest.
                unsafe {
                    libc::kill(p as libc::pid_t, libc::SIGKILL);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // A cgroup whose last tasks are still exiting refuses removal (EBUSY) for a moment.
    while fs::remove_dir(dir).is_err() && dir.exists() && Instant::now() < deadline + KILL_WAIT {
        std::thread::sleep(Duration::from_millis(20));
    }
    members
}

/// Kills and removes everything of hvbench `pid`: its cgroups and their processes, the
/// process groups it registered, its work directories, its network namespaces.
pub fn clean_up_after(pid: u32) -> Leftovers {
    let mut found = Leftovers {
        pid,
        ..Default::default()
    };
    for root in CGROUP_ROOTS {
        for (_, dir) in owned_in(Path::new(root), Some(pid)) {
            found.processes += kill_cgroup(&dir);
            found.cgroups += 1;
        }
    }
    found.processes += kill_registered_groups(pid);
    for (_, dir) in owned_in(&std::env::temp_dir(), Some(pid)) {
        // The applications' loop-mounted file systems first (`devices::AppMount`): removing
        // the directory would otherwise stop at each mount point and leave it mounted.
        unmount_under(&dir);
        if dir.is_dir() && fs::remove_dir_all(&dir).is_ok() {
            found.workdirs += 1;
        }
    }
    crate::netns::sweep_stale();
    found
}

/// Detaches every mount of this mount namespace at or below `dir`, deepest first.
fn unmount_under(dir: &Path) {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        // mountinfo escapes space, tab, newline and backslash as octal.
        .map(|p| {
            PathBuf::from(
                p.replace("\\040", " ")
                    .replace("\\011", "\t")
                    .replace("\\012", "\n")
                    .replace("\\134", "\\"),
            )
        })
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in points {
        let Ok(c) = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()) else {
            continue;
        };
        // SAFETY: `c` is a NUL-terminated path that outlives the call.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

/// Cleans up after every hvbench whose process is gone: what a watchdog could not.
pub fn sweep_stale() -> Vec<Leftovers> {
    let mut owners: Vec<u32> = CGROUP_ROOTS
        .iter()
        .flat_map(|r| owned_in(Path::new(r), None))
        .chain(owned_in(&std::env::temp_dir(), None))
        .map(|(p, _)| p)
        .filter(|&p| p != std::process::id() && !alive(p))
        .collect();
    owners.sort_unstable();
    owners.dedup();
    owners.into_iter().map(clean_up_after).collect()
}

/// The watchdog's body: waits until hvbench `parent` has ended, however it ended, then cleans
/// up after it. Runs in its own session (a terminal's hangup or Ctrl-C does not reach it).
pub fn watch(parent: u32) -> Leftovers {
    // SAFETY: setsid and signal have no memory-safety preconditions; SIG_IGN is a valid
    // disposition.
    unsafe {
        libc::setsid();
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
    }
    wait_for_exit(parent);
    clean_up_after(parent)
}

/// Blocks until process `pid` has exited (a pidfd where the kernel has them, else polling).
fn wait_for_exit(pid: u32) {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) } as i32;
    if fd >= 0 {
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: `p` is one valid pollfd for the duration of the call.
        while unsafe { libc::poll(&mut p, 1, -1) } < 0 {}
        // SAFETY: `fd` was returned by pidfd_open above and is closed once.
        unsafe { libc::close(fd) };
        return;
    }
    while alive(pid) {
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// This run's watchdog, for [`Watchdog::dismiss`] when the run ends in order.
pub struct Watchdog(std::process::Child);

impl Watchdog {
    /// Ends the watchdog and waits for it: after an orderly end, hvbench has removed what it
    /// made itself, and the watchdog must not outlive it either (nothing left behind includes
    /// hvbench's own helper).
    pub fn dismiss(mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        // Its guests are gone (each guest kills its process groups when dropped), and so is
        // the registry of those groups, which only a watchdog or a sweep would have read.
        let _ = fs::remove_file(registry(std::process::id()));
    }
}

/// Starts the watchdog for this process: `exe` with `args` and this process's pid appended,
/// with no standard streams. If this process is killed, the watchdog outlives it by design
/// and cleans up; an orderly end calls [`Watchdog::dismiss`].
pub fn spawn(exe: &Path, args: &[&str]) -> std::io::Result<Watchdog> {
    std::process::Command::new(exe)
        .args(args)
        .arg(std::process::id().to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map(Watchdog)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_are_read_from_names() {
        assert_eq!(owner_of("hvbench-123-0-qemu-tcg-0"), Some(123));
        assert_eq!(owner_of("hvbench-77.groups"), Some(77));
        assert_eq!(owner_of("hvbench-x-1"), None);
        assert_eq!(owner_of("hvbench-snapshot-a"), None);
        assert_eq!(owner_of("other-1-2"), None);
    }

    #[test]
    fn one_line_names_what_was_removed() {
        assert_eq!(describe(&[Leftovers::default()]), None);
        let line = describe(&[Leftovers {
            pid: 812,
            processes: 3,
            cgroups: 1,
            workdirs: 2,
        }])
        .unwrap();
        assert_eq!(
            line,
            "removed what killed hvbench runs left: pid 812 (3 processes, 1 cgroup, 2 work \
             directories)"
        );
    }

    #[test]
    fn mounts_under_a_directory_are_detached_before_it_is_removed() {
        let dir = std::env::temp_dir().join(format!("hvb-umount-test-{}", std::process::id()));
        let inner = dir.join("app");
        fs::create_dir_all(&inner).unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "tmpfs"])
            .arg(&inner)
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            // Not root here: nothing to detach, and the property cannot be checked.
            let _ = fs::remove_dir_all(&dir);
            return;
        }
        let is_mounted = || {
            fs::read_to_string("/proc/self/mountinfo")
                .unwrap()
                .lines()
                .any(|l| l.split(' ').nth(4) == inner.to_str())
        };
        assert!(is_mounted());
        unmount_under(&dir);
        assert!(!is_mounted());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_registered_group_is_killed_and_a_live_owner_is_left_alone() {
        use std::os::unix::process::CommandExt;
        // A process group of this (live) test process: the sweep must not touch it.
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        register_group(child.id());
        assert!(sweep_stale().iter().all(|l| l.pid != std::process::id()));
        assert!(alive(child.id()));
        // Cleaning up after this process kills it.
        let found = kill_registered_groups(std::process::id());
        assert_eq!(found, 1);
        let status = child.wait().unwrap();
        assert!(!status.success());
    }
}
