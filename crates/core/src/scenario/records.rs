//! From what the efficiency scenario measured to the document's records: a repetition's
//! detail, a workload's run on a backend, host CPU per operation, the efficiencies (ratios of
//! medians with their intervals) and the run's warnings. Pure functions of the samples.

use std::collections::BTreeMap;

use hvbench_stats::{ratio_of_medians, summarize, Samples};
use hvbench_workloads::WorkloadInfo;

use super::measure::median;
use crate::guest::HostSample;
use crate::hostload::HostLoad;
use crate::results::*;

/// The host and guest timings of one repetition may differ by this much before it is flagged.
pub const CLOCK_TOLERANCE: f64 = 0.05;

/// The measurements of one workload on one backend, as they accumulate.
#[derive(Default)]
pub(super) struct Acc {
    pub active: bool,
    pub status: Option<Outcome>,
    pub iterations: Option<u64>,
    pub samples: Vec<f64>,
    pub details: Vec<SampleDetail>,
    pub works: Vec<f64>,
    pub counted: Option<CountedRecord>,
    /// Samples of the pricing micro workloads measured after each repetition (`--explain`).
    pub round_prices: BTreeMap<String, Vec<f64>>,
}

/// The sample extra in which the agent reports its involuntary context switches
/// (`hvbench_agent::serve::AGENT_NIVCSW`; the protocol's extras carry it).
const AGENT_NIVCSW: &str = "agent_nivcsw";

/// A repetition as the document keeps it: the guest's and the host's timings (flagged when
/// they disagree), the host CPU it took, the agent's preemptions apart from its extras.
pub(super) fn detail(s: &HostSample) -> SampleDetail {
    let host = s.host_elapsed.as_secs_f64();
    let guest_wall = s.msg.wall_ns as f64 * 1e-9;
    SampleDetail {
        guest_elapsed_s: s.msg.elapsed_ns as f64 * 1e-9,
        guest_wall_s: guest_wall,
        host_elapsed_s: host,
        host_cpu_s: s.host_cpu.map(|c| c.as_secs_f64()),
        clock_flag: host > 0.0 && ((host - guest_wall) / host).abs() > CLOCK_TOLERANCE,
        host_load: None,
        agent_nivcsw: s.msg.extras.get(AGENT_NIVCSW).copied(),
        extras: s
            .msg
            .extras
            .iter()
            .filter(|(k, _)| k.as_str() != AGENT_NIVCSW)
            .map(|(k, v)| (k.clone(), *v))
            .collect(),
        labels: s.msg.labels.clone(),
    }
}

/// The run record of one workload on one backend.
pub(super) fn run_record(
    w: &WorkloadInfo,
    backend: &str,
    outcome: Outcome,
    acc: &Acc,
    settings: &Settings,
) -> RunRecord {
    let summary = Samples::new(acc.samples.clone())
        .ok()
        .map(|s| summarize(&s));
    let mut extras = BTreeMap::new();
    let keys: std::collections::BTreeSet<&String> =
        acc.details.iter().flat_map(|d| d.extras.keys()).collect();
    for k in keys {
        let vals: Vec<f64> = acc
            .details
            .iter()
            .filter_map(|d| d.extras.get(k).copied())
            .collect();
        if let Some(m) = median(&vals) {
            extras.insert(k.clone(), m);
        }
    }
    let mut labels: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in acc.details.iter().flat_map(|d| &d.labels) {
        match labels.get_mut(k) {
            Some(seen) if seen.split(" | ").any(|s| s == v) => {}
            Some(seen) => {
                seen.push_str(" | ");
                seen.push_str(v);
            }
            None => {
                labels.insert(k.clone(), v.clone());
            }
        }
    }
    RunRecord {
        backend: backend.into(),
        workload: w.name.into(),
        unit: w.unit.into(),
        higher_is_better: w.higher_is_better,
        outcome,
        iterations: acc.iterations,
        copies: settings.copies,
        samples: acc.samples.clone(),
        sample_details: acc.details.clone(),
        summary,
        extra_reps: (acc.samples.len() as u32).saturating_sub(settings.reps),
        host_cpu_per_op: host_cpu_per_op(w, &acc.details, &acc.works),
        extras,
        labels,
        counted: acc.counted.clone(),
        round_prices: acc.round_prices.clone(),
    }
}

/// Host CPU µs per operation (per MB for byte-counting workloads), median over repetitions.
pub fn host_cpu_per_op(
    w: &WorkloadInfo,
    details: &[SampleDetail],
    works: &[f64],
) -> Option<HostCpuPerOp> {
    // A level found by a search (web sessions meeting QoS) is not a count of operations.
    if w.metric == hvbench_workloads::Metric::Level {
        return None;
    }
    // Byte streams (MB/s, Gbit/s: work in bytes) cost per MB; everything else per operation
    // (an I/O, a transaction, a loop).
    let per_mb = w.unit.contains("MB") || w.unit.ends_with("bit/s");
    let mut per_op = Vec::new();
    let mut busy = Vec::new();
    for (d, &work) in details.iter().zip(works) {
        let cpu = d.host_cpu_s?;
        let units = if per_mb { work * 1e-6 } else { work };
        if units > 0.0 {
            per_op.push(cpu * 1e6 / units);
        }
        if d.host_elapsed_s > 0.0 {
            busy.push(cpu / d.host_elapsed_s);
        }
    }
    Some(HostCpuPerOp {
        value: median(&per_op)?,
        unit: if per_mb {
            "µs/MB".into()
        } else {
            "µs/op".into()
        },
        cores_busy: median(&busy)?,
    })
}

/// Guest score / host score for every workload measured on both, with its interval.
pub fn efficiency_records(runs: &[RunRecord], baseline: &str) -> Vec<EfficiencyRecord> {
    let mut out = Vec::new();
    for r in runs
        .iter()
        .filter(|r| r.backend != baseline && r.outcome.is_ok())
    {
        let Some(base) = runs
            .iter()
            .find(|b| b.backend == baseline && b.workload == r.workload && b.outcome.is_ok())
        else {
            continue;
        };
        let (Ok(guest), Ok(host)) = (
            Samples::new(r.samples.clone()),
            Samples::new(base.samples.clone()),
        ) else {
            continue;
        };
        let est = if r.higher_is_better {
            ratio_of_medians(&guest, &host)
        } else {
            ratio_of_medians(&host, &guest)
        };
        let Ok(est) = est else { continue };
        out.push(EfficiencyRecord {
            backend: r.backend.clone(),
            workload: r.workload.clone(),
            ratio: est.point,
            ci_low: est.ci_low,
            ci_high: est.ci_high,
            verdict: Verdict::from_interval(est.ci_low, est.ci_high),
        });
    }
    out
}
/// The run's warnings: explain's extra repetitions, clocks that disagreed, a busy host,
/// workloads that could not run as asked, extra repetitions per backend.
pub(super) fn run_warnings(
    explain: bool,
    settings: &Settings,
    runs: &[RunRecord],
    backends: &[&str],
) -> Vec<String> {
    let mut warnings = Vec::new();
    if explain {
        warnings.push(
            "explain: event counts come from extra native repetitions that are not scored \
             (an enabled system-call tracepoint slows every system call)"
                .to_string(),
        );
    }
    let flagged: usize = runs
        .iter()
        .map(|r| r.sample_details.iter().filter(|d| d.clock_flag).count())
        .sum();
    if flagged > 0 {
        warnings.push(format!(
            "{flagged} repetition(s) where the guest's clock and the host's disagreed by more than {:.0}% (see clock_flag in sample_details)",
            CLOCK_TOLERANCE * 100.0
        ));
    }
    warnings.extend(busy_host_warning(runs));
    warnings.extend(runs.iter().filter_map(ceiling_warning));
    warnings.extend(runs.iter().filter_map(burst_warning));
    // A workload that could not run as asked (no io_uring, no direct I/O) says so.
    for r in runs {
        for key in ["fallback", "direct_fallback"] {
            if let Some(why) = r.labels.get(key) {
                warnings.push(format!("{} {}: {key}: {why}", r.backend, r.workload));
            }
        }
    }
    warnings.extend(
        backends
            .iter()
            .filter_map(|b| extra_reps_warning(b, runs, settings)),
    );
    warnings.extend(unpinned_uml_warning(
        settings
            .pinning
            .as_ref()
            .is_some_and(|p| p.applies_to("uml")),
        runs.iter().map(|r| r.backend.as_str()),
    ));
    warnings
}

/// UML measured unpinned measures the host's placement too: every trap of a UML guest (system
/// call, fault, signal) hands over between the guest's process and UML's kernel process, which
/// traces it, and the host's scheduler may put the two on different CPUs, where each trap is a
/// cross-CPU wake-up. docs/explain.md ("UML: placement and time reads") measured what that does
/// on a nested host; the reader needs to know the figures depend on it.
fn unpinned_uml_warning<'a>(
    pinned: bool,
    mut backends: impl Iterator<Item = &'a str>,
) -> Option<String> {
    if pinned || !backends.any(|b| b == "uml") {
        return None;
    }
    Some(
        "uml ran unpinned: each trap of a UML guest hands over between its process and UML's \
         kernel process, which the host may place on different CPUs (a cross-CPU wake-up per \
         trap, costly on a nested host; see docs/explain.md, \"UML: placement and time \
         reads\"); --pin or --pin-backend uml keeps a guest's processes on its own CPUs"
            .to_string(),
    )
}

/// A workload whose repetitions reached the top of what it can measure (app.web: no load failed
/// QoS up to its largest, label `bound`) measured a lower bound, not a value: a ratio against it
/// is a bound too, and the reader must know which way.
fn ceiling_warning(r: &RunRecord) -> Option<String> {
    let bound: Vec<&str> = r
        .sample_details
        .iter()
        .filter_map(|d| d.labels.get("bound").map(String::as_str))
        .collect();
    let first = bound.first()?;
    let which = if r.backend == "native" {
        "every efficiency against it is an upper bound"
    } else {
        "its efficiency is a lower bound"
    };
    Some(format!(
        "{} {}: {} of {} repetition(s) reached the search's ceiling ({first}): its value is a \
         lower bound, so {which}",
        r.backend,
        r.workload,
        bound.len(),
        r.sample_details.len()
    ))
}

/// A disk-writing workload whose repetitions got steadily slower by half or more: the disk
/// answered faster after resting, as a rate-limited virtual disk does (a token bucket that
/// fills while the disk is idle: cloud volumes, Firecracker's block devices). On this
/// development host, itself a Firecracker microVM, app.files natively went 29 562, 29 784,
/// 16 264, 6 813, 5 599 ops/s after the disk had rested, then held 3 813-4 044 (CV 2%) in the
/// run right after: the first run measured the bucket, not the file system.
fn burst_warning(r: &RunRecord) -> Option<String> {
    if !writes_to_disk(hvbench_workloads::find(&r.workload)?) {
        return None;
    }
    let factor = slowed_down(&r.samples, r.higher_is_better)?;
    Some(format!(
        "{} {}: its repetitions got steadily slower, the first {factor:.1}× faster than the          last ones ({}): a disk that answers faster after resting (a rate-limited virtual          disk's burst) measures how long it rested; run it again right after, or on a disk          without a burst",
        r.backend,
        r.workload,
        r.samples
            .iter()
            .map(|&v| crate::report::fmt_sig(v))
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// How many times faster the first repetition was than the last two (their median), when
/// repetitions got slower nearly one after another (at most one step the other way) and by at
/// least [`SLOWDOWN`]; `None` otherwise or with fewer than four.
fn slowed_down(samples: &[f64], higher_is_better: bool) -> Option<f64> {
    let n = samples.len();
    if n < 4 || samples.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
        return None;
    }
    let speed: Vec<f64> = samples
        .iter()
        .map(|&v| if higher_is_better { v } else { 1.0 / v })
        .collect();
    let falls = speed.windows(2).filter(|p| p[1] < p[0]).count();
    let end = (speed[n - 1] + speed[n - 2]) / 2.0;
    let factor = speed[0] / end;
    (falls + 1 >= n - 1 && factor >= SLOWDOWN).then_some(factor)
}

/// Whether a workload writes to a disk (a database, a build, a file load, the write workloads).
pub(super) fn writes_to_disk(w: &WorkloadInfo) -> bool {
    w.kind == hvbench_workloads::Kind::App || w.needs.disk == hvbench_workloads::DiskUse::Write
}

/// The slowdown from the first repetitions to the last that [`burst_warning`] reports.
const SLOWDOWN: f64 = 1.5;

/// One line per backend that repeated more, so that a noisy machine does not bury the other
/// notes.
fn extra_reps_warning(backend: &str, runs: &[RunRecord], settings: &Settings) -> Option<String> {
    let noisy: Vec<String> = runs
        .iter()
        .filter(|r| r.backend == backend && r.extra_reps > 0)
        .map(|r| format!("{} +{}", r.workload, r.extra_reps))
        .collect();
    (!noisy.is_empty()).then(|| {
        format!(
            "{backend}: extra repetitions where an efficiency was still open (interval wider than \
             ±3% and not wholly below 90%; the side with CV over {:.1}% repeated; cap {} in \
             all): {}",
            settings.cv_threshold * 100.0,
            settings.max_reps,
            noisy.join(", ")
        )
    })
}

/// A note when repetitions ran on a busy or steal-heavy host (see [`crate::hostload`]).
fn busy_host_warning(runs: &[RunRecord]) -> Option<String> {
    let loads: Vec<HostLoad> = runs
        .iter()
        .flat_map(|r| r.sample_details.iter().filter_map(|d| d.host_load))
        .collect();
    let disturbed = loads.iter().filter(|l| l.disturbed()).count();
    if disturbed == 0 {
        return None;
    }
    let others: Vec<f64> = loads.iter().map(|l| l.other_cpus).collect();
    let steal: Vec<f64> = loads.iter().map(|l| l.steal_frac * 100.0).collect();
    Some(format!(
        "busy host: {disturbed} of {} repetition(s) ran while other processes kept more than \
         {} CPU busy or the hypervisor under this machine stole more than {:.0}% of the time \
         (median others {:.2} CPUs, max {:.2}; median steal {:.1}%, max {:.1}%): their figures \
         measure the host's load too (host_load in sample_details)",
        loads.len(),
        crate::hostload::OTHER_CPUS_LIMIT,
        crate::hostload::STEAL_LIMIT * 100.0,
        median(&others).unwrap_or(0.0),
        others.iter().copied().fold(0.0, f64::max),
        median(&steal).unwrap_or(0.0),
        steal.iter().copied().fold(0.0, f64::max),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uml_unpinned_is_named_and_pinned_or_absent_is_not() {
        let w = unpinned_uml_warning(false, ["native", "uml"].into_iter()).unwrap();
        assert!(w.contains("--pin"), "{w}");
        assert_eq!(
            unpinned_uml_warning(true, ["native", "uml"].into_iter()),
            None
        );
        assert_eq!(
            unpinned_uml_warning(false, ["native", "gvisor"].into_iter()),
            None
        );
    }

    #[test]
    fn a_disk_that_slows_down_run_after_run_is_named() {
        // app.files natively on this host after the disk had rested, then right after.
        let rested = [29562.0, 29784.0, 16264.0, 6813.0, 5599.0];
        let f = slowed_down(&rested, true).unwrap();
        assert!((f - 29562.0 / 6206.0).abs() < 1e-9, "{f}");
        assert_eq!(
            slowed_down(&[3939.0, 3813.0, 4014.0, 3938.0, 4044.0], true),
            None
        );
        // Getting faster, or too few repetitions, or a slowdown under 1.5×: nothing.
        assert_eq!(
            slowed_down(&[3243.0, 3505.0, 3911.0, 3996.0, 4242.0], true),
            None
        );
        assert_eq!(slowed_down(&[30.0, 20.0, 10.0], true), None);
        assert_eq!(slowed_down(&[4.0, 3.9, 3.5, 3.0], true), None);
        // Times (lower is better) growing is the same slowdown.
        assert!(slowed_down(&[1.0, 1.2, 2.0, 2.5, 3.0], false).unwrap() > 2.5);
        // Noise both ways is no trend.
        assert_eq!(slowed_down(&[10.0, 4.0, 9.0, 3.0, 8.0, 2.0], true), None);
    }
}
