//! `--copies N`: N concurrent instances of one workload, as the VMware VMI paper ran 16
//! instances of each kernel microbenchmark to saturate the machine.
//!
//! The parent forks N children. Each blocks on a start barrier (one byte per child on a pipe),
//! runs the workload and writes one fixed-size binary record with its result to a shared result
//! pipe, then `_exit`s. The parent releases them all at once and measures the wall time from
//! the release to the last record: the aggregate rate is the sum of the children's work over
//! that interval, which includes each child's own set-up. Records are smaller than `PIPE_BUF`,
//! so concurrent writes never interleave.
//!
//! Any failed child fails the repetition with its error (unsupported stays unsupported); every
//! child is reaped on every path, killed first if the repetition is abandoned.

use std::os::fd::AsRawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use crate::kernel::os;
use crate::{Outcome, Params, WorkloadError, WorkloadInfo};

/// Runs `copies` instances of `w` at once and returns their aggregate outcome, with the
/// fastest and slowest copy's own metric value in the extras `copy_min` and `copy_max`.
pub fn run_copies(
    w: &WorkloadInfo,
    params: &Params,
    iterations: u64,
    copies: u32,
) -> Result<Outcome, WorkloadError> {
    if copies == 0 {
        return Err(WorkloadError::BadParam("copies must be at least 1".into()));
    }
    let (go_r, go_w) = os::pipe()?;
    let (res_r, res_w) = os::pipe()?;
    let fds = Fds {
        go_r: go_r.as_raw_fd(),
        go_w: go_w.as_raw_fd(),
        res_r: res_r.as_raw_fd(),
        res_w: res_w.as_raw_fd(),
    };

    // Dropping `children` (on any early return) kills and reaps those still running.
    let mut children = Vec::with_capacity(copies as usize);
    for index in 0..copies {
        children.push(os::fork_child(|| {
            copy_main(w, params, iterations, index, fds)
        })?);
    }
    // Keep only our ends, so the result pipe reports end of file once every child is gone.
    drop(go_r);
    drop(res_w);

    let release = vec![1u8; copies as usize];
    let start = Instant::now();
    os::write_all(&go_w, &release, "releasing the copies")?;
    let mut reported = vec![None; copies as usize];
    let mut buf = [0u8; RECORD_LEN];
    for _ in 0..copies {
        if !os::read_exact_or_eof(&res_r, &mut buf, "reading a copy's result")? {
            return Err(missing_copies(&mut children, &reported));
        }
        let record = Record::decode(&buf, copies)?;
        let slot = &mut reported[record.index as usize];
        if slot.is_some() {
            return Err(WorkloadError::Failed(format!(
                "copy {} reported twice",
                record.index
            )));
        }
        *slot = Some(record.result?);
    }
    let elapsed = start.elapsed();

    for (index, child) in children.iter_mut().enumerate() {
        child.wait_success(&format!("copy {index}"))?;
    }

    let mut work = 0.0;
    let (mut min, mut max) = (f64::INFINITY, f64::NEG_INFINITY);
    for (own_work, own_elapsed) in reported.into_iter().flatten() {
        work += own_work;
        if own_work > 0.0 && !own_elapsed.is_zero() {
            let value = w.metric.value(own_work, own_elapsed);
            min = min.min(value);
            max = max.max(value);
        }
    }
    let mut out = Outcome::new(work, elapsed);
    if min.is_finite() && max.is_finite() {
        out.extras.insert("copy_min".into(), min);
        out.extras.insert("copy_max".into(), max);
    }
    Ok(out)
}

/// Raw descriptor numbers of both pipes, for the children.
#[derive(Clone, Copy)]
struct Fds {
    go_r: libc::c_int,
    go_w: libc::c_int,
    res_r: libc::c_int,
    res_w: libc::c_int,
}

/// A child: wait for the release, run, report, and return the exit code.
fn copy_main(w: &WorkloadInfo, params: &Params, iterations: u64, index: u32, fds: Fds) -> i32 {
    os::close_raw(fds.go_w);
    os::close_raw(fds.res_r);
    let mut byte = 0u8;
    loop {
        // SAFETY: `byte` is one writable byte; `go_r` is open in this process.
        let n = unsafe { libc::read(fds.go_r, (&mut byte as *mut u8).cast(), 1) };
        match n {
            1 => break,
            n if n < 0 && os::errno() == libc::EINTR => continue,
            // The parent is gone or failed before releasing us.
            _ => return 3,
        }
    }
    os::close_raw(fds.go_r);
    let result =
        catch_unwind(AssertUnwindSafe(|| (w.run)(params, iterations))).unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into());
            Err(WorkloadError::Failed(format!("panicked: {what}")))
        });
    let record = Record::encode(index, &result);
    let mut rest = &record[..];
    while !rest.is_empty() {
        // SAFETY: `rest` is valid for reads of its length; `res_w` is open in this process.
        let n = unsafe { libc::write(fds.res_w, rest.as_ptr().cast(), rest.len()) };
        if n < 0 && os::errno() == libc::EINTR {
            continue;
        }
        if n <= 0 {
            return 4;
        }
        rest = &rest[n as usize..];
    }
    0
}

/// After the result pipe ended early: reaps every copy that has not reported and says how it
/// ended.
fn missing_copies(
    children: &mut [os::Child],
    reported: &[Option<(f64, Duration)>],
) -> WorkloadError {
    let mut lost = Vec::new();
    for (index, child) in children.iter_mut().enumerate() {
        if reported[index].is_none() {
            match child.wait() {
                Ok(status) => lost.push(format!("copy {index} {}", os::describe_status(status))),
                Err(e) => lost.push(format!("copy {index}: {e}")),
            }
        }
    }
    WorkloadError::Failed(format!(
        "copies ended without a result: {}",
        lost.join(", ")
    ))
}

/// One copy's result on the wire: kind (0 ok, 1 failed, 2 unsupported, 3 bad parameter), copy
/// index, work, elapsed ns, and an error message, in a fixed little-endian layout.
const RECORD_LEN: usize = 512;
const MSG_AT: usize = 28;
const MSG_MAX: usize = RECORD_LEN - MSG_AT;

struct Record {
    index: u32,
    result: Result<(f64, Duration), WorkloadError>,
}

impl Record {
    fn encode(index: u32, result: &Result<crate::Outcome, WorkloadError>) -> [u8; RECORD_LEN] {
        let mut buf = [0u8; RECORD_LEN];
        buf[4..8].copy_from_slice(&index.to_le_bytes());
        let msg = match result {
            Ok(out) => {
                buf[8..16].copy_from_slice(&out.work.to_le_bytes());
                let ns = u64::try_from(out.elapsed.as_nanos()).unwrap_or(u64::MAX);
                buf[16..24].copy_from_slice(&ns.to_le_bytes());
                return buf;
            }
            Err(WorkloadError::Failed(m)) => {
                buf[0] = 1;
                m
            }
            Err(WorkloadError::Unsupported(m)) => {
                buf[0] = 2;
                m
            }
            Err(WorkloadError::BadParam(m)) => {
                buf[0] = 3;
                m
            }
        };
        let mut len = msg.len().min(MSG_MAX);
        while !msg.is_char_boundary(len) {
            len -= 1;
        }
        buf[24..28].copy_from_slice(&(len as u32).to_le_bytes());
        buf[MSG_AT..MSG_AT + len].copy_from_slice(&msg.as_bytes()[..len]);
        buf
    }

    fn decode(buf: &[u8; RECORD_LEN], copies: u32) -> Result<Self, WorkloadError> {
        let u32_at = |at: usize| u32::from_le_bytes(buf[at..at + 4].try_into().unwrap());
        let u64_at = |at: usize| u64::from_le_bytes(buf[at..at + 8].try_into().unwrap());
        let index = u32_at(4);
        if index >= copies {
            return Err(WorkloadError::Failed(format!(
                "a copy reported index {index} of {copies}"
            )));
        }
        let len = (u32_at(24) as usize).min(MSG_MAX);
        let msg = String::from_utf8_lossy(&buf[MSG_AT..MSG_AT + len]);
        let result = match buf[0] {
            0 => Ok((f64::from_bits(u64_at(8)), Duration::from_nanos(u64_at(16)))),
            1 => Err(WorkloadError::Failed(format!("copy {index}: {msg}"))),
            2 => Err(WorkloadError::Unsupported(msg.into_owned())),
            3 => Err(WorkloadError::BadParam(msg.into_owned())),
            kind => Err(WorkloadError::Failed(format!(
                "copy {index} sent a record of unknown kind {kind}"
            ))),
        };
        Ok(Self { index, result })
    }
}
