//! The three ways of issuing the I/Os: synchronous pread/pwrite (queue depth 1), io_uring with
//! N I/Os in flight, and N threads of pread/pwrite where io_uring is unavailable.

use std::fs::File;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use io_uring::{opcode, types, IoUring, Probe};

use super::latency::Histogram;
use super::target::{fill_nonzero, AlignedBuf};
use crate::cpu::SplitMix64;
use crate::WorkloadError;

/// Direction of the I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Read,
    Write,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Read => "read",
            Op::Write => "write",
        }
    }
}

/// The offsets one issuer visits, all multiples of the block size below `blocks × block`.
#[derive(Debug, Clone)]
pub(crate) enum Offsets {
    /// Uniform over the target.
    Random {
        rng: SplitMix64,
        blocks: u64,
        block: u64,
    },
    /// `next`, `next + step`, ... in blocks, wrapping at the end of the target.
    Sequential {
        next: u64,
        step: u64,
        blocks: u64,
        block: u64,
    },
}

impl Offsets {
    pub(crate) fn next_offset(&mut self) -> u64 {
        match self {
            Offsets::Random { rng, blocks, block } => rng.below(*blocks) * *block,
            Offsets::Sequential {
                next,
                step,
                blocks,
                block,
            } => {
                let b = *next;
                *next = (b + *step) % *blocks;
                b * *block
            }
        }
    }

    /// The offsets of issuer `i` of `n` sharing this pattern: a random pattern gets its own
    /// generator, a sequential one every n-th block from its start, so that the n issuers
    /// together still sweep the target in order, as one queue of depth n would.
    pub(crate) fn share(&self, i: u64, n: u64, seed: u64) -> Offsets {
        match *self {
            Offsets::Random { blocks, block, .. } => Offsets::Random {
                rng: SplitMix64::new(seed),
                blocks,
                block,
            },
            Offsets::Sequential {
                next,
                step,
                blocks,
                block,
            } => Offsets::Sequential {
                next: (next + i * step) % blocks,
                step: (step * n) % blocks,
                blocks,
                block,
            },
        }
    }
}

/// What to do: the same for every engine.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) op: Op,
    /// Bytes per I/O.
    pub(crate) block: usize,
    /// Number of I/Os.
    pub(crate) iterations: u64,
    pub(crate) offsets: Offsets,
    /// Seed of the data written.
    pub(crate) fill_seed: u64,
    /// An `fdatasync` after every write, timed with it (the `psync` engine only).
    pub(crate) sync: bool,
}

/// What an engine measured.
#[derive(Debug)]
pub(crate) struct Measured {
    pub(crate) elapsed: Duration,
    pub(crate) latency: Histogram,
}

/// One pread or pwrite of the whole buffer at `offset`, retried on EINTR; a short transfer
/// is an error (with O_DIRECT it only happens past the end of the target).
fn transfer(fd: RawFd, op: Op, buf: &mut AlignedBuf, offset: u64) -> Result<(), WorkloadError> {
    let len = buf.len();
    let off = libc::off_t::try_from(offset)
        .map_err(|_| WorkloadError::Failed(format!("offset {offset} out of range")))?;
    loop {
        let n = match op {
            // SAFETY: the buffer is valid for writes of `len` bytes and owned by the caller
            // for the duration of the call.
            Op::Read => unsafe { libc::pread(fd, buf.as_mut_ptr().cast(), len, off) },
            // SAFETY: the buffer is valid for reads of `len` bytes for the duration of the call.
            Op::Write => unsafe { libc::pwrite(fd, buf.as_mut_ptr().cast(), len, off) },
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(WorkloadError::Failed(format!(
                "{} of {len} bytes at offset {offset}: {e}",
                op.name()
            )));
        }
        return check_len(op, n as i64, len, offset);
    }
}

fn check_len(op: Op, done: i64, len: usize, offset: u64) -> Result<(), WorkloadError> {
    if done == len as i64 {
        Ok(())
    } else {
        Err(WorkloadError::Failed(format!(
            "short {}: {done} of {len} bytes at offset {offset}",
            op.name()
        )))
    }
}

/// `count` synchronous I/Os. Returns the instants of the start and of the end.
///
/// One clock read per I/O: the end of an I/O is the start of the next. Where the clocksource
/// is emulated every read traps, and two per I/O would add a trap to every latency.
fn sync_loop(
    fd: RawFd,
    op: Op,
    sync: bool,
    buf: &mut AlignedBuf,
    count: u64,
    offsets: &mut Offsets,
    latency: &mut Histogram,
) -> Result<(Instant, Instant), WorkloadError> {
    let start = Instant::now();
    let mut prev = start;
    for _ in 0..count {
        transfer(fd, op, buf, offsets.next_offset())?;
        if sync {
            datasync(fd)?;
        }
        let now = Instant::now();
        latency.record(now - prev);
        prev = now;
    }
    Ok((start, prev))
}

/// `fdatasync(fd)`, retried on EINTR: the written data reaches stable storage, with the
/// device's cache flushed (a database's commit).
fn datasync(fd: RawFd) -> Result<(), WorkloadError> {
    loop {
        // SAFETY: fdatasync takes a descriptor and no memory.
        if unsafe { libc::fdatasync(fd) } == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(WorkloadError::Failed(format!("fdatasync: {e}")));
        }
    }
}

/// A buffer of `block` bytes, filled with non-zero data for writes.
fn io_buffer(op: Op, block: usize, fill_seed: u64) -> Result<AlignedBuf, WorkloadError> {
    let mut buf = AlignedBuf::new(block)?;
    if op == Op::Write {
        fill_nonzero(buf.as_mut_slice(), &mut SplitMix64::new(fill_seed));
    }
    Ok(buf)
}

/// Queue depth 1: pread/pwrite, one at a time.
pub(crate) fn psync(file: &File, plan: Plan) -> Result<Measured, WorkloadError> {
    let Plan {
        op,
        block,
        iterations,
        mut offsets,
        fill_seed,
        sync,
    } = plan;
    let mut buf = io_buffer(op, block, fill_seed)?;
    let mut latency = Histogram::new();
    let fd = file.as_raw_fd();
    let (start, end) = sync_loop(
        fd,
        op,
        sync,
        &mut buf,
        iterations,
        &mut offsets,
        &mut latency,
    )?;
    Ok(Measured {
        elapsed: end - start,
        latency,
    })
}

/// An io_uring ready for `depth` I/Os in flight, or why there is none. Needs IORING_OP_READ
/// and IORING_OP_WRITE (Linux 5.6): older kernels, seccomp profiles that deny io_uring_setup
/// (Docker's default) and gVisor all end up in the threads fallback.
pub(crate) fn uring_setup(depth: u32) -> Result<IoUring, String> {
    let ring = IoUring::new(depth.next_power_of_two())
        .map_err(|e| format!("io_uring unavailable: {e}"))?;
    let mut probe = Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(|e| format!("io_uring unavailable: cannot probe its opcodes ({e})"))?;
    if !probe.is_supported(opcode::Read::CODE) || !probe.is_supported(opcode::Write::CODE) {
        return Err("io_uring unavailable: this kernel has no IORING_OP_READ/WRITE".into());
    }
    Ok(ring)
}

/// `iterations` I/Os through `ring`, keeping `depth` in flight. Latency runs from queueing an
/// I/O to reaping its completion (one clock read per batch of completions).
pub(crate) fn uring(
    mut ring: IoUring,
    file: &File,
    depth: usize,
    plan: Plan,
) -> Result<Measured, WorkloadError> {
    let Plan {
        op,
        block,
        iterations,
        mut offsets,
        fill_seed,
        ..
    } = plan;
    let fd = types::Fd(file.as_raw_fd());
    let len = u32::try_from(block)
        .map_err(|_| WorkloadError::BadParam(format!("block {block} too large for io_uring")))?;
    let mut bufs = Vec::with_capacity(depth);
    for i in 0..depth {
        bufs.push(io_buffer(op, block, fill_seed.wrapping_add(i as u64))?);
    }
    let mut issued_at = vec![(Instant::now(), 0u64); depth];
    let mut free: Vec<usize> = (0..depth).rev().collect();
    let mut reaped: Vec<(u64, i32)> = Vec::with_capacity(depth);
    let mut latency = Histogram::new();
    let mut issued = 0u64;
    let mut in_flight = 0usize;
    let mut first_error: Option<WorkloadError> = None;

    let start = Instant::now();
    let mut end = start;
    loop {
        while first_error.is_none() && issued < iterations {
            let Some(slot) = free.pop() else { break };
            let offset = offsets.next_offset();
            let ptr = bufs[slot].as_mut_ptr();
            let entry = match op {
                Op::Read => opcode::Read::new(fd, ptr, len).offset(offset).build(),
                Op::Write => opcode::Write::new(fd, ptr, len).offset(offset).build(),
            }
            .user_data(slot as u64);
            issued_at[slot] = (Instant::now(), offset);
            // SAFETY: the buffer of `slot` stays allocated and untouched by us until its
            // completion is reaped below: a slot returns to `free` only then, and on every
            // exit with I/Os in flight the buffers are leaked rather than freed.
            if unsafe { ring.submission().push(&entry) }.is_err() {
                // Cannot happen (the ring has at least `depth` entries); stop cleanly.
                free.push(slot);
                first_error = Some(WorkloadError::Failed(
                    "io_uring submission queue full".into(),
                ));
                break;
            }
            issued += 1;
            in_flight += 1;
        }
        if in_flight == 0 {
            break;
        }
        match ring.submit_and_wait(1) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            Err(e) => {
                // I/Os may still be in flight into our buffers: never free them.
                std::mem::forget(bufs);
                return Err(WorkloadError::Failed(format!("io_uring_enter: {e}")));
            }
        }
        let now = Instant::now();
        end = now;
        reaped.clear();
        reaped.extend(ring.completion().map(|c| (c.user_data(), c.result())));
        for &(user_data, res) in &reaped {
            let Some(&(at, offset)) = issued_at.get(user_data as usize) else {
                std::mem::forget(bufs);
                return Err(WorkloadError::Failed(format!(
                    "io_uring completion for unknown I/O {user_data}"
                )));
            };
            in_flight -= 1;
            free.push(user_data as usize);
            latency.record(now - at);
            if first_error.is_some() {
                continue;
            }
            if res < 0 {
                first_error = Some(WorkloadError::Failed(format!(
                    "{} of {block} bytes at offset {offset}: {}",
                    op.name(),
                    std::io::Error::from_raw_os_error(-res)
                )));
            } else if let Err(e) = check_len(op, i64::from(res), block, offset) {
                first_error = Some(e);
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    Ok(Measured {
        elapsed: end - start,
        latency,
    })
}

/// Holds threads back until every one is ready, then lets all go (or tells all to give up).
#[derive(Debug, Default)]
struct Gate {
    state: Mutex<Option<bool>>,
    changed: Condvar,
}

impl Gate {
    fn open(&self, go: bool) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = Some(go);
        self.changed.notify_all();
    }

    /// Waits for [`Gate::open`]; true to go.
    fn wait(&self) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(go) = *s {
                return go;
            }
            s = self.changed.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// The fallback for a queue depth above 1 without io_uring: `threads` threads, each doing
/// pread/pwrite on its own share of the iterations and its own offsets. The interval runs
/// from the first thread's start to the last one's end, after all have started and filled
/// their buffers.
pub(crate) fn threads(
    file: &File,
    threads: u32,
    plan: Plan,
    rng: &mut SplitMix64,
) -> Result<Measured, WorkloadError> {
    let Plan {
        op,
        block,
        iterations,
        offsets,
        ..
    } = plan;
    let n = u64::from(threads).min(iterations).max(1);
    let fd = file.as_raw_fd();
    let gate = Gate::default();
    let results = std::thread::scope(|s| {
        let mut handles = Vec::new();
        for i in 0..n {
            let count = iterations / n + u64::from(i < iterations % n);
            let mut offsets = offsets.share(i, n, rng.next_u64());
            let fill_seed = rng.next_u64();
            let gate = &gate;
            let spawned = std::thread::Builder::new()
                .name(format!("hvbench-io-{i}"))
                .spawn_scoped(s, move || {
                    let mut buf = io_buffer(op, block, fill_seed)?;
                    let mut latency = Histogram::new();
                    if !gate.wait() {
                        return Err(WorkloadError::Failed("cancelled".into()));
                    }
                    let (start, end) =
                        sync_loop(fd, op, false, &mut buf, count, &mut offsets, &mut latency)?;
                    Ok((start, end, latency))
                });
            match spawned {
                Ok(h) => handles.push(h),
                Err(e) => {
                    gate.open(false);
                    return Err(WorkloadError::Failed(format!(
                        "cannot start I/O thread: {e}"
                    )));
                }
            }
        }
        gate.open(true);
        let mut results = Vec::with_capacity(handles.len());
        for h in handles {
            match h.join() {
                Ok(r) => results.push(r),
                Err(_) => results.push(Err(WorkloadError::Failed("I/O thread panicked".into()))),
            }
        }
        Ok(results)
    })?;

    let mut latency = Histogram::new();
    let mut span: Option<(Instant, Instant)> = None;
    for r in results {
        let (start, end, h) = r?;
        latency.merge(&h);
        span = Some(match span {
            None => (start, end),
            Some((s, e)) => (s.min(start), e.max(end)),
        });
    }
    let (start, end) = span.ok_or_else(|| WorkloadError::Failed("no I/O thread ran".into()))?;
    Ok(Measured {
        elapsed: end - start,
        latency,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_shares_sweep_in_order() {
        let whole = Offsets::Sequential {
            next: 6,
            step: 1,
            blocks: 8,
            block: 4096,
        };
        let mut seen = Vec::new();
        let mut shares: Vec<Offsets> = (0..3).map(|i| whole.share(i, 3, 0)).collect();
        for _ in 0..4 {
            for s in &mut shares {
                seen.push(s.next_offset() / 4096);
            }
        }
        assert_eq!(seen, [6, 7, 0, 1, 2, 3, 4, 5, 6, 7, 0, 1]);
    }

    #[test]
    fn random_offsets_are_aligned_and_in_range() {
        let mut o = Offsets::Random {
            rng: SplitMix64::new(7),
            blocks: 10,
            block: 512,
        };
        for _ in 0..1000 {
            let off = o.next_offset();
            assert_eq!(off % 512, 0);
            assert!(off < 10 * 512);
        }
    }
}
