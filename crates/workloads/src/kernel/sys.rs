//! System calls and the clock: `sys.getppid`, `sys.pipe`, `time.clock_gettime`.

use std::hint::black_box;
use std::os::fd::AsRawFd;
use std::time::Instant;

use super::os;
use crate::{Outcome, Params, WorkloadError};

/// `getppid` through `syscall(2)`, so that no C library can answer it from a cache: one op is
/// one kernel entry and exit.
pub(super) fn getppid(_params: &Params, iterations: u64) -> Result<Outcome, WorkloadError> {
    let mut errors: u64 = 0;
    let start = Instant::now();
    for _ in 0..iterations {
        // SAFETY: getppid takes no arguments and touches no memory of ours.
        let r = unsafe { libc::syscall(libc::SYS_getppid) };
        errors += u64::from(black_box(r) < 0);
    }
    let elapsed = start.elapsed();
    if errors > 0 {
        return Err(WorkloadError::os(&format!(
            "getppid failed {errors} of {iterations} times"
        )));
    }
    Ok(Outcome::new(iterations as f64, elapsed))
}

const PIPE_CHUNK: usize = 512;

/// Writes 512 bytes into a pipe and reads them back, in one process: one op is one
/// write + read pair. The pipe never holds more than 512 bytes, so neither call blocks.
pub(super) fn pipe(_params: &Params, iterations: u64) -> Result<Outcome, WorkloadError> {
    let (r, w) = os::pipe()?;
    let (rfd, wfd) = (r.as_raw_fd(), w.as_raw_fd());
    let out = [0x5au8; PIPE_CHUNK];
    let mut back = [0u8; PIPE_CHUNK];
    let start = Instant::now();
    for i in 0..iterations {
        // SAFETY: `out` is valid for reads of PIPE_CHUNK bytes; `wfd` is open for the whole loop.
        let n = unsafe { libc::write(wfd, out.as_ptr().cast(), PIPE_CHUNK) };
        if n != PIPE_CHUNK as isize {
            return Err(short("write to", n, i));
        }
        // SAFETY: `back` is valid for writes of PIPE_CHUNK bytes; `rfd` is open for the loop.
        let m = unsafe { libc::read(rfd, back.as_mut_ptr().cast(), PIPE_CHUNK) };
        if m != PIPE_CHUNK as isize {
            return Err(short("read from", m, i));
        }
        black_box(&mut back);
    }
    let elapsed = start.elapsed();
    if back.iter().any(|&b| b != 0x5a) {
        return Err(WorkloadError::Failed(
            "sys.pipe read back other bytes than it wrote".into(),
        ));
    }
    Ok(Outcome::new(iterations as f64, elapsed))
}

fn short(what: &str, n: isize, i: u64) -> WorkloadError {
    if n < 0 {
        WorkloadError::os(&format!("{what} the pipe (op {i})"))
    } else {
        WorkloadError::Failed(format!(
            "{what} the pipe moved {n} of {PIPE_CHUNK} bytes (op {i})"
        ))
    }
}

/// `clock_gettime(CLOCK_MONOTONIC)` through the C library, which uses the vDSO: a few
/// nanoseconds with a usable TSC, a system call (and under some hypervisors a trap) per read
/// when the clocksource cannot be read from user mode. One op is one read. Fails if the clock
/// ever goes backwards, since every time measured in that system would then be suspect.
pub(super) fn clock_gettime(_params: &Params, iterations: u64) -> Result<Outcome, WorkloadError> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    let mut prev = (0, 0);
    let mut errors: u64 = 0;
    let mut backwards: u64 = 0;
    let start = Instant::now();
    for _ in 0..iterations {
        // SAFETY: `ts` is a valid timespec to fill.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        errors += u64::from(rc != 0);
        let now = (black_box(ts.tv_sec), ts.tv_nsec);
        backwards += u64::from(now < prev);
        prev = now;
    }
    let elapsed = start.elapsed();
    if errors > 0 {
        return Err(WorkloadError::os(&format!(
            "clock_gettime failed {errors} of {iterations} times"
        )));
    }
    if backwards > 0 {
        return Err(WorkloadError::Failed(format!(
            "CLOCK_MONOTONIC went backwards {backwards} times in {iterations} reads"
        )));
    }
    Ok(Outcome::new(iterations as f64, elapsed))
}
