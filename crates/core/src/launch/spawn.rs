//! Spawning a guest's host processes, and killing and reaping them: see [`super`].

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

use crate::accounting::CpuMeter;

thread_local! {
    /// While a guest is being launched on this thread: the open `cgroup.procs` of its CPU
    /// meter, which every process the backend spawns joins before it executes.
    static JOIN_CGROUP: std::cell::RefCell<Option<File>> = const { std::cell::RefCell::new(None) };
}

/// Spawns a command in a process group of its own, so that a terminal's Ctrl-C reaches hvbench
/// only (which then stops its guests in order), and so that killing the group kills every
/// process the guest made. While a guest is launched ([`launching_in`]) the process also
/// joins the guest's cgroup before it runs, so that its CPU time and its children's are
/// metered from the first instant.
pub fn spawn_in_own_group(cmd: &mut Command) -> std::io::Result<Child> {
    use std::os::fd::AsRawFd;
    cmd.process_group(0);
    let fd = JOIN_CGROUP.with(|c| c.borrow().as_ref().map(|f| f.as_raw_fd()));
    if let Some(fd) = fd {
        // SAFETY: the closure runs in the forked child before exec and only calls write(2),
        // which is async-signal-safe; `fd` stays open in the parent until spawn returns (the
        // File lives in JOIN_CGROUP for the whole launch). A failed write leaves the process
        // where it was: metering then misses it, which the meter's fallback covers.
        unsafe {
            cmd.pre_exec(move || {
                libc::write(fd, b"0".as_ptr().cast(), 1);
                Ok(())
            });
        }
    }
    cmd.spawn()
}

/// [`spawn_in_own_group`] for a child that the calling thread waits for (a probe's short
/// command): it is also killed if hvbench dies first (`PR_SET_PDEATHSIG`). Not for guests:
/// the signal follows the thread that forked, and guests outlive the threads that launch them.
pub fn spawn_dying_with_caller(cmd: &mut Command) -> std::io::Result<Child> {
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the closure runs in the forked child before exec and only calls prctl, getppid
    // and raise, which are async-signal-safe and touch no memory of the parent.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // hvbench died between fork and prctl: the signal will never come.
            if libc::getppid() != parent {
                libc::raise(libc::SIGKILL);
            }
            Ok(())
        });
    }
    spawn_in_own_group(cmd)
}

/// Runs `f` (a backend's launch) with every process spawned on this thread joining the cgroup
/// of `meter`.
pub(crate) fn launching_in<T>(meter: Option<&CpuMeter>, f: impl FnOnce() -> T) -> T {
    let file = meter
        .and_then(|m| m.procs_file())
        .and_then(|p| std::fs::OpenOptions::new().write(true).open(p).ok());
    JOIN_CGROUP.with(|c| *c.borrow_mut() = file);
    let out = f();
    JOIN_CGROUP.with(|c| *c.borrow_mut() = None);
    out
}

/// A child whose stdin and stdout are the agent channel.
pub struct Piped {
    pub child: Child,
    pub reader: Box<dyn Read + Send>,
    pub writer: Box<dyn Write + Send>,
}

/// Spawns `cmd` in its own group (see [`spawn_in_own_group`]) with the agent channel on its
/// stdin and stdout and its stderr to `stderr` (the guest's console log).
pub fn spawn_piped(cmd: &mut Command, stderr: File) -> std::io::Result<Piped> {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(stderr));
    let mut child = spawn_in_own_group(cmd)?;
    let writer = Box::new(child.stdin.take().expect("stdin was piped"));
    let reader = Box::new(child.stdout.take().expect("stdout was piped"));
    Ok(Piped {
        child,
        reader,
        writer,
    })
}

/// Kills the process group `c` leads, then reaps `c`.
///
/// The group is killed even when its leader has exited: other members may outlive it (UML's
/// I/O helpers do when its kernel process alone is killed). This is safe as long as nothing
/// reaped `c` before (which [`has_exited`] does not): an exited but unreaped leader keeps its
/// pid, so the group id cannot name anyone else yet.
pub fn kill_and_reap(c: &mut Child) {
    let pgid = c.id() as libc::pid_t;
    // SAFETY: kill has no memory-safety preconditions; a negative pid names the process group
    // that spawn_in_own_group created for this child, whose leader is not reaped (see above),
    // so nothing else is signalled.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
    let _ = c.kill();
    let _ = c.wait();
}

/// Whether `c` has exited, without reaping it (`WNOWAIT`): see [`kill_and_reap`].
pub fn has_exited(c: &Child) -> bool {
    // SAFETY: siginfo_t is plain old data; all-zero is a valid value for waitid to fill.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: waitid writes only into `info`; WNOWAIT leaves the child waitable.
    let rc = unsafe {
        libc::waitid(
            libc::P_PID,
            c.id() as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    // SAFETY: waitid filled `info` (with WNOHANG and no child ready, si_pid stays 0).
    rc == 0 && unsafe { info.si_pid() } != 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn a_group_is_killed_and_its_leader_reaped() {
        let mut child =
            spawn_in_own_group(Command::new("sh").args(["-c", "sleep 30 & sleep 30"])).unwrap();
        assert!(!has_exited(&child));
        kill_and_reap(&mut child);
        assert!(child.try_wait().is_ok_and(|s| s.is_some()) || child.wait().is_ok());
    }

    #[test]
    fn has_exited_does_not_reap() {
        let mut child = spawn_in_own_group(&mut Command::new("true")).unwrap();
        let until = Instant::now() + Duration::from_secs(10);
        while !has_exited(&child) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(has_exited(&child));
        // Still waitable: the status is there to collect.
        assert!(child.wait().unwrap().success());
    }

    #[test]
    fn a_piped_child_answers_on_its_channel() {
        let stderr = tempfile_for_test();
        let mut p = spawn_piped(&mut Command::new("cat"), stderr).unwrap();
        p.writer.write_all(b"ping\n").unwrap();
        drop(p.writer);
        let mut out = String::new();
        p.reader.read_to_string(&mut out).unwrap();
        assert_eq!(out, "ping\n");
        kill_and_reap(&mut p.child);
    }

    fn tempfile_for_test() -> File {
        let dir = crate::workdir::WorkDir::new("spawn-test").unwrap();
        File::create(dir.path().join("stderr")).unwrap()
    }
}
