//! The counted repetitions of `--explain`, after a workload's measured ones on each backend:
//! the kernel events the workload asks for (natively the counts the model predicts from, in
//! each guest what the same work asked of the guest's own kernel). They never enter a score.

use std::collections::BTreeMap;
use std::time::Duration;

use hvbench_protocol::Job;
use hvbench_workloads::WorkloadInfo;

use super::efficiency::run_with_peer;
use crate::guest::{Guest, JobEnd};
use crate::results::*;

/// The counted repetitions of `w` (see [`count_events`]): natively the ones the model predicts
/// from ([`crate::explain::COUNTED_REPS`]), in a guest [`crate::explain::GUEST_COUNTED_REPS`],
/// where its own kernel counts what the same work asked of it (the model's check on its
/// counts). `base` is the workload's job with its calibrated iterations.
pub(super) fn count(
    w: &WorkloadInfo,
    guest: &mut Guest,
    base: Job,
    reps: u32,
    native: bool,
    timeout: Duration,
) -> CountedRecord {
    let most = if native {
        crate::explain::COUNTED_REPS
    } else {
        crate::explain::GUEST_COUNTED_REPS
    };
    let mut job = Job {
        reps: reps.clamp(1, most),
        warmup: 0,
        ..base
    };
    job.params.insert("count_events".into(), true.into());
    count_events(w, guest, job, timeout)
}

/// Runs the counted repetitions of `w` (the job asks the agent to count) and keeps their counts;
/// a failure is recorded as the reason nothing was counted, never as a count.
fn count_events(w: &WorkloadInfo, guest: &mut Guest, job: Job, timeout: Duration) -> CountedRecord {
    let mut reps = Vec::new();
    let mut not_counted = BTreeMap::new();
    let result = run_with_peer(w, guest, job, timeout, |s| {
        let mut counts = BTreeMap::new();
        for (k, v) in &s.msg.extras {
            if let Some(name) = k.strip_prefix("ev.") {
                counts.insert(name.to_string(), *v);
            }
        }
        if let Some(text) = s.msg.labels.get("ev_not_counted") {
            for part in text.split("; ") {
                if let Some((k, why)) = part.split_once(": ") {
                    not_counted.insert(k.to_string(), why.to_string());
                }
            }
        }
        reps.push(CountedRep {
            value: s.msg.value,
            work: s.msg.work,
            elapsed_s: s.msg.elapsed_ns as f64 * 1e-9,
            wall_s: s.msg.wall_ns as f64 * 1e-9,
            counts,
        });
    });
    match result {
        Ok(JobEnd::Done { .. }) => {}
        Ok(JobEnd::Error { message, .. }) => {
            not_counted.insert(
                "all".into(),
                format!("the counted repetition failed: {message}"),
            );
        }
        Err(e) => {
            not_counted.insert("all".into(), format!("the counted repetition failed: {e}"));
        }
    }
    CountedRecord { reps, not_counted }
}
