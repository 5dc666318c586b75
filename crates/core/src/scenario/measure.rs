//! Measuring one workload in one guest: a calibration, warm-ups and repetitions as jobs, the
//! samples collected as the agent sends them, and how the measurement ended (done, an error
//! the agent reported, the guest lost, or a stop request). Used by every multi-guest scenario.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hvbench_protocol::{ErrorKind, Job};
use hvbench_workloads::{Params, WorkloadInfo};

use super::common::first_line;
use crate::guest::{with_timeout, Guest, GuestError, JobEnd};
use crate::results::*;

/// How to measure one workload in one guest.
#[derive(Clone)]
pub(crate) struct Measure {
    /// The workload whose metric the samples are (the steady workload under a stressor).
    pub workload: &'static WorkloadInfo,
    /// The workload the agent runs (`stress.cpu` with `steady` in the params, or `workload`).
    pub job_workload: String,
    pub params: Params,
    /// From an earlier calibration; `None` calibrates first.
    pub iterations: Option<u64>,
    pub target_s: f64,
    pub warmup: u32,
    pub reps: u32,
    pub timeout: Duration,
}

/// What one guest's measurement produced so far.
#[derive(Debug, Default, Clone)]
pub(crate) struct Measured {
    pub iterations: Option<u64>,
    /// Metric values of `workload`, one per repetition.
    pub values: Vec<f64>,
    /// Host CPU seconds over the measured repetitions, when metered.
    pub host_cpu_s: Option<f64>,
    pub extras: Vec<BTreeMap<String, f64>>,
    /// The words each measured repetition reported (`disk_target`, ...).
    pub labels: Vec<BTreeMap<String, String>>,
}

/// How a measurement ended.
#[derive(Debug, Clone)]
pub(crate) enum MeasureEnd {
    Done,
    /// The agent reported an error, or a job's output was unusable: the guest is fine.
    Error(Outcome),
    /// The guest was lost (did not return: DNR), with its console tail; it has been killed.
    Lost(Failure),
    Interrupted,
}

/// Runs one job of `m` in `guest` and collects its measured samples into `out`.
fn run_job_of(
    guest: &mut Guest,
    m: &Measure,
    iterations: Option<u64>,
    warmup: u32,
    reps: u32,
    out: &mut Measured,
    on_sample: &mut dyn FnMut(f64, bool),
) -> Result<Option<u64>, MeasureEnd> {
    let metric = m.workload.metric;
    let job = Job {
        id: 0,
        workload: m.job_workload.clone(),
        params: m.params.clone(),
        iterations,
        target_s: m.target_s,
        warmup,
        reps,
        copies: 1,
    };
    let result = guest.run_job(job, m.timeout, |s| {
        let value = metric.value(s.msg.work, Duration::from_nanos(s.msg.elapsed_ns));
        on_sample(value, s.msg.warmup);
        if !s.msg.warmup {
            out.values.push(value);
            let mut extras = s.msg.extras.clone();
            // The agent's preemption count is a property of the host, not a result here.
            extras.remove("agent_nivcsw");
            out.extras.push(extras);
            out.labels.push(s.msg.labels.clone());
            if let Some(c) = s.host_cpu {
                *out.host_cpu_s.get_or_insert(0.0) += c.as_secs_f64();
            }
        }
    });
    match result {
        Ok(JobEnd::Done { iterations }) => Ok(iterations),
        Ok(JobEnd::Error { kind, message }) => Err(MeasureEnd::Error(error_status(kind, message))),
        Err(GuestError::Interrupted) => Err(MeasureEnd::Interrupted),
        Err(e) => {
            let e = with_timeout(e, m.timeout);
            let tail = guest.console_tail();
            guest.kill();
            let f = e.failure(true);
            Err(MeasureEnd::Lost(
                Failure::new(f.kind, first_line(&f.reason)).with_tail(tail),
            ))
        }
    }
}

/// Calibrates `m` in `guest` (one warm-up included) unless its iteration count is known.
pub(crate) fn calibrate(
    guest: &mut Guest,
    m: &Measure,
    out: &mut Measured,
) -> Result<u64, MeasureEnd> {
    if let Some(n) = m.iterations.or(out.iterations) {
        out.iterations = Some(n);
        return Ok(n);
    }
    match run_job_of(guest, m, None, 1, 0, out, &mut |_, _| {})? {
        Some(n) => {
            out.iterations = Some(n);
            Ok(n)
        }
        None => Err(MeasureEnd::Error(Outcome::failed(
            FailureKind::BadOutput,
            "the agent did not report its calibration",
        ))),
    }
}

/// Runs a calibration (when needed) and the repetitions of `m` in `guest`. `on_sample` sees
/// every sample's value (warm-ups included, flagged), as it arrives.
pub(crate) fn measure(
    guest: &mut Guest,
    m: &Measure,
    out: &mut Measured,
    mut on_sample: impl FnMut(f64, bool),
) -> MeasureEnd {
    let iterations = match calibrate(guest, m, out) {
        Ok(n) => n,
        Err(end) => return end,
    };
    if crate::stop_requested() {
        return MeasureEnd::Interrupted;
    }
    match run_job_of(
        guest,
        m,
        Some(iterations),
        m.warmup,
        m.reps,
        out,
        &mut on_sample,
    ) {
        Ok(_) => MeasureEnd::Done,
        Err(end) => end,
    }
}

/// Keeps `guest` busy with unmeasured repetitions of `m` until `done` reaches `all` (every
/// guest has finished its measured repetitions), so that no guest measures on a host that
/// others have already left.
pub(crate) fn keep_load_until(guest: &mut Guest, m: &Measure, done: &AtomicUsize, all: usize) {
    let mut scratch = Measured::default();
    while done.load(Ordering::SeqCst) < all && !crate::stop_requested() {
        let Some(n) = m.iterations.or(scratch.iterations) else {
            return;
        };
        if run_job_of(guest, m, Some(n), 0, 1, &mut scratch, &mut |_, _| {}).is_err() {
            return;
        }
        scratch.values.clear();
        scratch.extras.clear();
    }
}

impl MeasureEnd {
    /// The outcome of a measurement that ended so, `measured_any` repetition or none: a stop
    /// request keeps what was measured (with a note) and skips what was not.
    pub(crate) fn outcome(&self, measured_any: bool) -> Outcome {
        match self {
            MeasureEnd::Done => Outcome::ok(),
            MeasureEnd::Error(o) => o.clone(),
            MeasureEnd::Lost(f) => Outcome::Failed(f.clone()),
            MeasureEnd::Interrupted if measured_any => Outcome::Ok {
                note: Some("stopped by the user: fewer repetitions".into()),
            },
            MeasureEnd::Interrupted => {
                Outcome::skipped("stopped by the user before it was measured")
            }
        }
    }
}

/// The outcome of a job the agent reported an error for: it cannot run there (skipped), it ran
/// and failed, or the agent could not understand the job (refused).
pub(crate) fn error_status(kind: ErrorKind, message: String) -> Outcome {
    match kind {
        ErrorKind::Unsupported => Outcome::skipped(message),
        // The agent's message repeats the kind ("failed: ..."); the outcome says it once.
        ErrorKind::Failed => Outcome::failed(
            FailureKind::Failed,
            message
                .strip_prefix("failed: ")
                .map(str::to_string)
                .unwrap_or(message),
        ),
        ErrorKind::Protocol => Outcome::failed(FailureKind::Refused, message),
    }
}

/// How long a guest may stay silent during one job of `w`: generous, because a guest under
/// binary translation is slow to set up, but bounded, so a hung guest is noticed.
pub(crate) fn silence_bound(w: &WorkloadInfo, s: &Settings) -> Duration {
    let per_rep = s.target_s * f64::from(s.copies.max(1));
    Duration::from_secs_f64(30.0 + 3.0 * f64::from(w.setup_timeout_s) + 20.0 * per_rep)
}

/// The median of `v`; `None` when it is empty.
pub(crate) fn median(v: &[f64]) -> Option<f64> {
    hvbench_stats::median(v)
}
