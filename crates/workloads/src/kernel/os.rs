//! Small, careful wrappers over the process and descriptor calls the kernel workloads share:
//! pipes, forked children that are always reaped, CPU affinity, signal dispositions.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::WorkloadError;

/// The calling thread's `errno`.
pub(crate) fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// A pipe as (read end, write end), both close-on-exec.
pub(crate) fn pipe() -> Result<(OwnedFd, OwnedFd), WorkloadError> {
    let mut fds: [libc::c_int; 2] = [-1, -1];
    // SAFETY: `fds` is a writable array of two ints, as pipe2 requires.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(WorkloadError::os("pipe2"));
    }
    // SAFETY: pipe2 succeeded, so both are fresh open descriptors that nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A connected pair of Unix stream sockets (close-on-exec).
pub(crate) fn socketpair() -> Result<(OwnedFd, OwnedFd), WorkloadError> {
    let mut fds: [libc::c_int; 2] = [-1, -1];
    // SAFETY: `fds` is a writable array of two ints, as socketpair requires.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if r != 0 {
        return Err(WorkloadError::os("socketpair"));
    }
    // SAFETY: socketpair succeeded, so both are fresh open descriptors that nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Writes all of `buf` to `fd`, retrying on EINTR and short writes.
pub(crate) fn write_all(fd: &OwnedFd, mut buf: &[u8], what: &str) -> Result<(), WorkloadError> {
    while !buf.is_empty() {
        // SAFETY: `buf` is valid for reads of `buf.len()` bytes and `fd` is open.
        let n = unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            return Err(WorkloadError::os(what));
        }
        buf = &buf[n as usize..];
    }
    Ok(())
}

/// Fills `buf` from `fd`; returns false on end of file before the first byte, and an error on
/// end of file in the middle.
pub(crate) fn read_exact_or_eof(
    fd: &OwnedFd,
    buf: &mut [u8],
    what: &str,
) -> Result<bool, WorkloadError> {
    let mut got = 0;
    while got < buf.len() {
        let rest = &mut buf[got..];
        // SAFETY: `rest` is valid for writes of `rest.len()` bytes and `fd` is open.
        let n = unsafe { libc::read(fd.as_raw_fd(), rest.as_mut_ptr().cast(), rest.len()) };
        if n < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            return Err(WorkloadError::os(what));
        }
        if n == 0 {
            if got == 0 {
                return Ok(false);
            }
            return Err(WorkloadError::Failed(format!(
                "{what}: end of file after {got} of {} bytes",
                buf.len()
            )));
        }
        got += n as usize;
    }
    Ok(true)
}

/// A forked child process. Unless [`Child::wait`] reaped it, dropping it kills it (SIGKILL) and
/// reaps it, so no error path leaves a running child or a zombie behind.
#[derive(Debug)]
pub(crate) struct Child {
    pid: libc::pid_t,
    reaped: bool,
}

impl Child {
    pub(crate) fn pid(&self) -> libc::pid_t {
        self.pid
    }

    /// Waits for the child to end and returns its raw wait status.
    pub(crate) fn wait(&mut self) -> Result<libc::c_int, WorkloadError> {
        let status = waitpid(self.pid)?;
        self.reaped = true;
        Ok(status)
    }

    /// Waits for the child and fails unless it exited with status 0.
    pub(crate) fn wait_success(&mut self, what: &str) -> Result<(), WorkloadError> {
        let status = self.wait()?;
        if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
            Ok(())
        } else {
            Err(WorkloadError::Failed(format!(
                "{what} {}",
                describe_status(status)
            )))
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if !self.reaped {
            // SAFETY: `pid` is our own unreaped child, so the pid cannot have been reused.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
            let _ = waitpid(self.pid);
        }
    }
}

/// `waitpid(pid, 0)`, retried on EINTR.
fn waitpid(pid: libc::pid_t) -> Result<libc::c_int, WorkloadError> {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: `status` is a valid place for the wait status.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc == pid {
            return Ok(status);
        }
        if rc < 0 && errno() == libc::EINTR {
            continue;
        }
        return Err(WorkloadError::os("waitpid"));
    }
}

/// "exited with status 3", "was killed by signal 9".
pub(crate) fn describe_status(status: libc::c_int) -> String {
    if libc::WIFEXITED(status) {
        format!("exited with status {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        format!("was killed by signal {}", libc::WTERMSIG(status))
    } else {
        format!("ended with wait status {status:#x}")
    }
}

/// Forks. The child runs `child` and `_exit`s with the code it returns (101 if it panics): it
/// never returns into the caller, and never runs the parent's atexit handlers or destructors.
///
/// In a multi-threaded process (a test binary) `child` must only call async-signal-safe
/// functions; the agent itself is single-threaded, so there it may do anything.
pub(crate) fn fork_child(child: impl FnOnce() -> libc::c_int) -> Result<Child, WorkloadError> {
    // SAFETY: fork has no memory-safety preconditions; the child branch below only runs `child`
    // and then `_exit`s, so it never unwinds or returns into code that assumes it is the parent.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(WorkloadError::os("fork"));
    }
    if pid == 0 {
        let code = catch_unwind(AssertUnwindSafe(child)).unwrap_or(101);
        // SAFETY: _exit ends this (child) process at once; it is always safe to call.
        unsafe { libc::_exit(code) };
    }
    Ok(Child { pid, reaped: false })
}

/// Closes a raw descriptor in a forked child (which must not drop the parent's `OwnedFd`s).
pub(crate) fn close_raw(fd: libc::c_int) {
    // SAFETY: closing a descriptor number has no memory-safety preconditions; callers only pass
    // descriptors this process inherited and no longer uses.
    unsafe { libc::close(fd) };
}

/// The CPUs the calling thread may run on, in ascending order.
pub(crate) fn allowed_cpus() -> Result<Vec<usize>, WorkloadError> {
    let set = get_affinity()?;
    let max = 8 * std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: every index is below the number of bits in a cpu_set_t.
    Ok((0..max)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect())
}

fn get_affinity() -> Result<libc::cpu_set_t, WorkloadError> {
    // SAFETY: cpu_set_t is a plain bit array; all zeroes is a valid (empty) set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid cpu_set_t of the size passed.
    let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) };
    if rc != 0 {
        return Err(WorkloadError::os("sched_getaffinity"));
    }
    Ok(set)
}

/// Pins thread or process `pid` (0: the calling thread) to `cpu`.
pub(crate) fn pin(pid: libc::pid_t, cpu: usize) -> Result<(), WorkloadError> {
    // SAFETY: all zeroes is a valid empty cpu_set_t.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` came from allowed_cpus, so it is below the number of bits in the set.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    set_affinity(pid, &set).map_err(|e| match e.raw_os_error() {
        // A sandbox that does not let processes choose their CPUs.
        Some(libc::EPERM | libc::ENOSYS) => {
            WorkloadError::Unsupported(format!("cannot pin to CPU {cpu}: {e}"))
        }
        _ => WorkloadError::Failed(format!("pinning to CPU {cpu}: {e}")),
    })
}

fn set_affinity(pid: libc::pid_t, set: &libc::cpu_set_t) -> std::io::Result<()> {
    // SAFETY: `set` is a valid cpu_set_t of the size passed.
    let rc = unsafe { libc::sched_setaffinity(pid, std::mem::size_of_val(set), set) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Restores the calling thread's CPU affinity when dropped.
#[derive(Debug)]
pub(crate) struct AffinityGuard {
    saved: libc::cpu_set_t,
}

impl AffinityGuard {
    /// Remembers the calling thread's current affinity.
    pub(crate) fn save() -> Result<Self, WorkloadError> {
        Ok(Self {
            saved: get_affinity()?,
        })
    }
}

impl Drop for AffinityGuard {
    fn drop(&mut self) {
        let _ = set_affinity(0, &self.saved);
    }
}

/// An installed signal disposition; dropping it restores the previous one.
pub(crate) struct SignalGuard {
    sig: libc::c_int,
    old: libc::sigaction,
}

impl std::fmt::Debug for SignalGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignalGuard")
            .field("sig", &self.sig)
            .finish()
    }
}

impl SignalGuard {
    /// Installs `handler` (an `extern "C" fn` cast to `sighandler_t`, taking three arguments
    /// when `flags` has SA_SIGINFO) for `sig`, with an empty mask.
    pub(crate) fn install(
        sig: libc::c_int,
        handler: libc::sighandler_t,
        flags: libc::c_int,
    ) -> Result<Self, WorkloadError> {
        // SAFETY: sigaction is a plain C struct; all zeroes is valid (SIG_DFL, empty mask).
        let mut new: libc::sigaction = unsafe { std::mem::zeroed() };
        new.sa_sigaction = handler;
        new.sa_flags = flags;
        // SAFETY: `new.sa_mask` is a valid sigset_t.
        unsafe { libc::sigemptyset(&mut new.sa_mask) };
        // SAFETY: as above.
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: both pointers are to valid sigaction structs; the caller passes a handler of
        // the signature `flags` announces.
        if unsafe { libc::sigaction(sig, &new, &mut old) } != 0 {
            return Err(WorkloadError::os("sigaction"));
        }
        Ok(Self { sig, old })
    }
}

impl Drop for SignalGuard {
    fn drop(&mut self) {
        // SAFETY: `old` is the disposition sigaction gave us for this signal.
        unsafe { libc::sigaction(self.sig, &self.old, std::ptr::null_mut()) };
    }
}

/// Unblocks a signal in the calling thread; dropping it restores the previous signal mask.
pub(crate) struct UnblockGuard {
    old: libc::sigset_t,
}

impl std::fmt::Debug for UnblockGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UnblockGuard")
    }
}

impl UnblockGuard {
    pub(crate) fn unblock(sig: libc::c_int) -> Result<Self, WorkloadError> {
        // SAFETY: sigset_t is a plain bit array; it is initialised by sigemptyset below.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a valid sigset_t and `sig` a valid signal number.
        unsafe {
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, sig);
        }
        // SAFETY: both pointers are to valid sigset_t values.
        let rc = unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, &mut old) };
        if rc != 0 {
            return Err(WorkloadError::Failed(format!(
                "pthread_sigmask: {}",
                std::io::Error::from_raw_os_error(rc)
            )));
        }
        Ok(Self { old })
    }
}

impl Drop for UnblockGuard {
    fn drop(&mut self) {
        // SAFETY: `old` is the mask pthread_sigmask gave us.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.old, std::ptr::null_mut()) };
    }
}
