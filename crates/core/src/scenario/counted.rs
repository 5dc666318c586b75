//! The counted repetitions of `--explain`, after a workload's measured ones on each backend:
//! the kernel events the workload asks for (natively the counts the model predicts from, in
//! each guest what the same work asked of the guest's own kernel). They never enter a score.

use std::collections::BTreeMap;
use std::time::Duration;

use hvbench_protocol::Job;
use hvbench_workloads::{Kind, Metric, WorkloadInfo};

use super::efficiency::run_with_peer;
use crate::guest::{Guest, JobEnd};
use crate::results::*;

/// The counted repetitions of `w` (see [`count_events`]): natively the ones the model predicts
/// from ([`crate::explain::COUNTED_REPS`]), in a guest [`crate::explain::GUEST_COUNTED_REPS`],
/// where its own kernel counts what the same work asked of it (the model's check on its
/// counts). `base` is the workload's job with its calibrated iterations.
///
/// A workload whose value is a level a QoS search found (app.web's sessions) has no time per
/// unit of work to count against: its counted repetitions measure one fixed load instead, at
/// the median level this backend's `samples` found (the load at its QoS edge, where the server
/// is busiest), and their unit of work is a request the server answered (`served`).
pub(super) fn count(
    w: &WorkloadInfo,
    guest: &mut Guest,
    base: Job,
    reps: u32,
    samples: &[f64],
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
    if w.metric == Metric::Level {
        let Some(level) = super::measure::median(samples) else {
            return CountedRecord {
                reps: Vec::new(),
                not_counted: BTreeMap::from([(
                    "all".to_string(),
                    "no level was measured to count a fixed load at".to_string(),
                )]),
            };
        };
        job.params.insert(
            "web_sessions".into(),
            (level.round().max(1.0) as u64).into(),
        );
    }
    let clock_job = native.then(|| {
        let mut j = job.clone();
        j.reps = 1;
        j.params.insert("count_events".into(), "clocks".into());
        j
    });
    let mut record = count_events(w, guest, job, timeout);
    // Natively the clock reads of the applications' programs, which never enter the kernel
    // there, in a repetition of their own: uprobes slow each read by microseconds, which would
    // skew the other counts per unit of work.
    if let Some(j) = clock_job.filter(|_| w.kind == Kind::App) {
        let clocks = count_events(w, guest, j, timeout);
        for mut rep in clocks.reps {
            rep.counts.retain(|k, _| k.starts_with("clock_reads"));
            rep.clock_pass = true;
            record.reps.push(rep);
        }
        for (k, why) in clocks.not_counted {
            let k = if k == "all" {
                "clock_reads".to_string()
            } else {
                k
            };
            if k.starts_with("clock_reads") {
                record.not_counted.insert(k, why);
            }
        }
    }
    record
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
        let work = match w.metric {
            Metric::Level => {
                // The load generator's count of what the server answered: one round trip per
                // request, and the bytes it sent back.
                let served = s.msg.extras.get("served").copied().unwrap_or(0.0);
                counts.insert("net_round_trips".to_string(), served);
                if let Some(b) = s.msg.extras.get("served_bytes") {
                    counts.insert("net_tx_bytes".to_string(), *b);
                }
                served
            }
            _ => s.msg.work,
        };
        reps.push(CountedRep {
            value: s.msg.value,
            work,
            elapsed_s: s.msg.elapsed_ns as f64 * 1e-9,
            wall_s: s.msg.wall_ns as f64 * 1e-9,
            counts,
            clock_pass: false,
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
