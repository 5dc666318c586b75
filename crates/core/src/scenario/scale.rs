//! The `scale` scenario (benchvm's scalability): for each guest count N, N guests start at once
//! and each runs the same workload; the result is every guest's own numbers, the aggregate
//! throughput, and how many guests did not return. A guest that failed to start, died or fell
//! silent is DNR with its console tail, never a number (and never a zero in the aggregate).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hvbench_stats::{summarize, Samples};
use hvbench_workloads::{Metric, Params, WorkloadInfo};
use serde_json::json;

pub use super::common::StartHook;
use super::common::{shutdown_all, Finished, GuestTemplate, Output, Roster, ScenarioError};
use super::measure::{
    calibrate, keep_load_until, measure, median, silence_bound, Measure, MeasureEnd, Measured,
};
use super::Progress;
use crate::agent::AgentBinary;
use crate::backends::{Availability, Backend};
use crate::devices::Devices;
use crate::guest::{Guest, GuestError};
use crate::results::*;

/// Launches in flight at once by default: enough to overlap the host-side set-up of guests,
/// few enough that booting guests do not starve each other into their hello timeouts.
pub const DEFAULT_LAUNCH_PARALLELISM: usize = 8;

/// An aggregate must rise by more than this share from one guest count to the next to count as
/// still rising.
pub const RISE_THRESHOLD: f64 = 0.05;

/// A guest's result from what `measure` produced.
pub(crate) fn guest_result(
    label: &str,
    boot_s: Option<f64>,
    metric: Metric,
    measured: &Measured,
    end: &MeasureEnd,
) -> GuestResult {
    let outcome = end.outcome(!measured.values.is_empty());
    let ok = outcome.is_ok();
    let summary = Samples::new(measured.values.clone())
        .ok()
        .map(|s| summarize(&s));
    GuestResult {
        label: label.into(),
        outcome,
        boot_s,
        iterations: measured.iterations,
        samples: if ok {
            measured.values.clone()
        } else {
            Vec::new()
        },
        summary: if ok { summary } else { None },
        throughput: if ok {
            median(&measured.values).map(|v| throughput(metric, v))
        } else {
            None
        },
        host_cpu_s: measured.host_cpu_s,
    }
}

// ----- the arithmetic, pure -----

/// A metric value as a throughput: rates are throughputs already; a time per operation
/// becomes operations per second.
pub fn throughput(metric: Metric, value: f64) -> f64 {
    match metric {
        Metric::Rate { .. } | Metric::Level => value,
        Metric::TimePerOp { scale } => 1e9 * scale / value,
    }
}

/// The unit of [`throughput`] for a workload.
pub fn throughput_unit(w: &WorkloadInfo) -> String {
    match w.metric {
        Metric::Rate { .. } | Metric::Level => w.unit.to_string(),
        Metric::TimePerOp { .. } => "ops/s".into(),
    }
}

/// The sum of the throughputs of the guests that returned; `None` when none did. A guest that
/// did not return adds nothing and is never counted as zero throughput of a live guest.
pub fn aggregate(throughputs: &[Option<f64>]) -> Option<f64> {
    let ok: Vec<f64> = throughputs.iter().flatten().copied().collect();
    (!ok.is_empty()).then(|| ok.iter().sum())
}

/// Aggregate over (guests that returned × the single guest's throughput): 1.0 is perfect scaling.
pub fn scaling_efficiency(aggregate: f64, returned: u32, single: f64) -> Option<f64> {
    (returned > 0 && single > 0.0).then(|| aggregate / (f64::from(returned) * single))
}

/// The guest count where the aggregate last rose by more than `rise` over the best before it:
/// beyond it, more guests bring no more throughput. `steps` are (guest count, aggregate) in
/// any order; steps without an aggregate are ignored. `None` with fewer than two measured steps.
pub fn saturation(steps: &[(u32, Option<f64>)], rise: f64) -> Option<u32> {
    let mut measured: Vec<(u32, f64)> = steps
        .iter()
        .filter_map(|&(n, a)| a.map(|a| (n, a)))
        .collect();
    if measured.len() < 2 {
        return None;
    }
    measured.sort_by_key(|&(n, _)| n);
    let mut best = measured[0];
    for &(n, a) in &measured[1..] {
        if a > best.1 * (1.0 + rise) {
            best = (n, a);
        }
    }
    Some(best.0)
}

// ----- the scenario -----

/// What to run.
pub struct ScalePlan {
    pub backend: Box<dyn Backend>,
    pub availability: Availability,
    pub workload: &'static WorkloadInfo,
    /// Guest counts, in the order run.
    pub counts: Vec<u32>,
    pub settings: Settings,
    pub kernel: Option<PathBuf>,
    pub out_dir: PathBuf,
    pub command_line: Vec<String>,
    pub timeout: Option<Duration>,
    pub launch_parallelism: usize,
    pub on_start: Option<StartHook>,
    /// The applications' root file system, when the workload is an application.
    pub rootfs: Option<crate::image::rootfs::RootFs>,
}

/// What every step of a run reads.
struct Ctx<'a> {
    plan: &'a ScalePlan,
    template: GuestTemplate<'a>,
    out: &'a Output,
    progress: &'a dyn Progress,
    timeout: Duration,
}

/// Runs the scale scenario.
pub fn run(
    plan: ScalePlan,
    agent: &AgentBinary,
    progress: &dyn Progress,
) -> Result<Finished, ScenarioError> {
    let out = Output::create(&plan.out_dir, "scalability")?;
    let settings = plan.settings.clone();
    out.log(
        json!({"type": "start", "run_id": out.run_id, "host": out.host, "settings": settings,
        "scenario": "scalability", "counts": plan.counts}),
    );
    let w = plan.workload;
    let backend = plan.backend.as_ref();
    let mut roster = Roster::new(backend, &plan.availability);
    let ctx = Ctx {
        plan: &plan,
        template: template(&plan, agent, out.workdir.path()),
        out: &out,
        progress,
        timeout: plan.timeout.unwrap_or_else(|| silence_bound(w, &settings)),
    };
    let mut notes: Vec<String> = roster.unavailable_note().into_iter().collect();
    let (mut steps, interrupted) = run_steps(&ctx, &mut roster);
    fill_scaling_efficiency(&mut steps);
    let sat = saturation(
        &steps
            .iter()
            .map(|s| (s.guests, s.aggregate))
            .collect::<Vec<_>>(),
        RISE_THRESHOLD,
    );
    notes.extend(host_notes(&steps, &settings));
    let warnings = failure_warnings(&steps);
    let data = ScenarioData::Scalability(ScalabilityData {
        backend: backend.name().into(),
        workload: w.name.into(),
        unit: w.unit.into(),
        higher_is_better: w.higher_is_better,
        aggregate_unit: throughput_unit(w),
        vcpus: settings.vcpus,
        memory_mib: settings.memory_mib,
        reps: settings.reps,
        launch_parallelism: plan.launch_parallelism as u32,
        steps,
        saturation_guests: sat,
        rise_threshold: RISE_THRESHOLD,
        notes,
    });
    let command_line = plan.command_line.clone();
    out.finish(
        "scalability",
        command_line,
        agent,
        settings,
        vec![roster.record],
        warnings,
        data,
        interrupted,
    )
}

/// Every step of the plan in turn (none when the backend is unavailable), with progress;
/// whether the run was stopped before its end.
fn run_steps(ctx: &Ctx, roster: &mut Roster) -> (Vec<ScaleStep>, bool) {
    let plan = ctx.plan;
    let available = plan.availability.is_available();
    let total: u64 = plan.counts.iter().map(|&n| u64::from(n)).sum();
    ctx.progress.begin(if available { total } else { 0 });
    let mut steps = Vec::new();
    let mut interrupted = false;
    for &n in plan.counts.iter().filter(|_| available) {
        if crate::stop_requested() {
            interrupted = true;
            break;
        }
        let (step, stopped) = run_step(ctx, roster, n);
        steps.push(step);
        if stopped {
            interrupted = true;
            break;
        }
    }
    ctx.progress.finish();
    (steps, interrupted)
}

/// What every guest of the run is made of.
fn template<'a>(
    plan: &'a ScalePlan,
    agent: &'a AgentBinary,
    workdir: &'a Path,
) -> GuestTemplate<'a> {
    GuestTemplate {
        backend: plan.backend.as_ref(),
        agent,
        kernel: plan.kernel.clone(),
        vcpus: plan.settings.vcpus,
        memory_mib: plan.settings.memory_mib,
        workdir,
        devices: Devices {
            // Each guest gets its own applications' directory (see `start_in`).
            rootfs: plan.rootfs.as_ref().map(|r| crate::devices::RootfsSpec {
                tree: r.root(),
                ext4: r.ext4(),
                app_dir: PathBuf::new(),
            }),
            ..Default::default()
        },
        scratch_disk_bytes: None,
        pin: plan.settings.pinning.clone(),
    }
}

/// One guest count: `n` guests start at once, each measures the workload, all are shut down.
/// Also says whether a stop request cut it short.
fn run_step(ctx: &Ctx, roster: &mut Roster, n: u32) -> (ScaleStep, bool) {
    let w = ctx.plan.workload;
    ctx.progress.workload(&format!("{} × {n}", w.name));
    let labels: Vec<String> = (0..n)
        .map(|i| format!("{}-n{n}-g{i}", ctx.template.backend.name()))
        .collect();
    let t0 = Instant::now();
    let started = ctx
        .template
        .start_many(&labels, ctx.plan.launch_parallelism);
    let startup_s = started
        .iter()
        .any(|r| r.is_ok())
        .then(|| t0.elapsed().as_secs_f64());
    let mut results: Vec<Option<GuestResult>> = labels.iter().map(|_| None).collect();
    let mut interrupted = false;
    let mut guests: Vec<(usize, Guest)> = Vec::new();
    for (i, r) in started.into_iter().enumerate() {
        match r {
            Ok(g) => {
                roster.started(&labels[i], &g);
                ctx.out.log(
                    json!({"type": "guest", "label": labels[i], "boot_s": g.boot.as_secs_f64()}),
                );
                guests.push((i, g));
            }
            Err(GuestError::Interrupted) => {
                interrupted = true;
                let skipped = Outcome::skipped("stopped by the user before it started");
                results[i] = Some(not_started(&labels[i], skipped));
            }
            Err(e) => {
                ctx.out.log(
                    json!({"type": "guest_failed", "label": labels[i], "error": e.to_string()}),
                );
                let f = roster.not_started(&labels[i], &e, ctx.progress);
                results[i] = Some(not_started(&labels[i], Outcome::Failed(f)));
                ctx.progress.step();
            }
        }
    }
    if let Some(hook) = &ctx.plan.on_start {
        let pids: Vec<(String, Vec<u32>)> = guests
            .iter()
            .map(|(i, g)| (labels[*i].clone(), g.host_pids()))
            .collect();
        hook(&pids);
    }
    for (i, r) in measure_all(ctx, &mut guests, &labels, n) {
        if let Some(f) = r.outcome.failure() {
            roster.lost(&labels[i], f);
        }
        results[i] = Some(r);
    }
    shutdown_all(
        guests.into_iter().map(|(_, g)| g).collect(),
        Duration::from_secs(3),
    );
    interrupted |= crate::stop_requested();
    let per_guest: Vec<GuestResult> = results
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            r.unwrap_or_else(|| not_started(&labels[i], Outcome::skipped("not measured")))
        })
        .collect();
    let failed = per_guest.iter().filter(|g| g.outcome.is_failed()).count() as u32;
    let agg = aggregate(&per_guest.iter().map(|g| g.throughput).collect::<Vec<_>>());
    ctx.out
        .log(json!({"type": "step", "guests": n, "aggregate": agg, "failed": failed}));
    let step = ScaleStep {
        guests: n,
        per_guest,
        aggregate: agg,
        scaling_efficiency: None,
        failed,
        startup_s,
    };
    (step, interrupted)
}

/// Measures the workload in every started guest at once: every guest calibrates, then all
/// start their measured repetitions together, and those done first keep the load on until the
/// last is done. Returns each guest's result with its index among the step's labels.
fn measure_all(
    ctx: &Ctx,
    guests: &mut [(usize, Guest)],
    labels: &[String],
    n: u32,
) -> Vec<(usize, GuestResult)> {
    let (w, settings) = (ctx.plan.workload, &ctx.plan.settings);
    let measure_plan = Measure {
        workload: w,
        job_workload: w.name.into(),
        params: Params::new(),
        iterations: None,
        target_s: settings.target_s,
        warmup: settings.warmup,
        reps: settings.reps,
        timeout: ctx.timeout,
    };
    let barrier = std::sync::Barrier::new(guests.len());
    let done = AtomicUsize::new(0);
    let active = guests.len();
    std::thread::scope(|s| {
        let handles: Vec<_> = guests
            .iter_mut()
            .map(|(i, g)| {
                let label = labels[*i].clone();
                let mut m = measure_plan.clone();
                let (barrier, done, i) = (&barrier, &done, *i);
                s.spawn(move || {
                    let mut acc = Measured::default();
                    if w.needs.rootfs {
                        crate::devices::rootfs_params(g.attached(), &mut m.params);
                    }
                    if w.kind == hvbench_workloads::Kind::App && settings.pinning.is_some() {
                        // Pinned guests: each application on its guest's own CPUs.
                        m.params.insert("cpus".into(), settings.vcpus.into());
                    }
                    let calibrated = calibrate(g, &m, &mut acc);
                    barrier.wait();
                    let end = match calibrated {
                        Err(end) => end,
                        Ok(iterations) => {
                            m.iterations = Some(iterations);
                            measure(g, &m, &mut acc, |v, warm| {
                                if !warm {
                                    ctx.out.log(json!({"type": "sample", "guests": n, "label": label, "value": v}));
                                }
                            })
                        }
                    };
                    done.fetch_add(1, Ordering::SeqCst);
                    if matches!(end, MeasureEnd::Done) {
                        keep_load_until(g, &m, done, active);
                    }
                    if let MeasureEnd::Lost(f) = &end {
                        let r = f.describe();
                        ctx.progress.note(&format!("{label}: {r}"));
                        ctx.out.log(json!({"type": "guest_lost", "label": label, "reason": r}));
                    }
                    ctx.progress.step();
                    (i, guest_result(&label, Some(g.boot.as_secs_f64()), w.metric, &acc, &end))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a guest thread panicked"))
            .collect()
    })
}

/// Scaling efficiency against one guest's throughput (the one-guest step, else the smallest
/// step's mean per returned guest).
fn fill_scaling_efficiency(steps: &mut [ScaleStep]) {
    let returned = |s: &ScaleStep| {
        s.per_guest
            .iter()
            .filter(|g| g.throughput.is_some())
            .count()
    };
    let single = steps
        .iter()
        .filter(|s| s.aggregate.is_some())
        .min_by_key(|s| s.guests)
        .and_then(|s| s.aggregate.map(|a| a / returned(s) as f64));
    if let Some(single) = single {
        for s in steps.iter_mut() {
            let ok = returned(s) as u32;
            s.scaling_efficiency = s.aggregate.and_then(|a| scaling_efficiency(a, ok, single));
        }
    }
}

/// Notes on the host: how many CPUs guests share, and guests that ran out of memory.
fn host_notes(steps: &[ScaleStep], settings: &Settings) -> Vec<String> {
    let mut notes = Vec::new();
    if let Ok(c) = std::thread::available_parallelism() {
        notes.push(format!(
            "the host has {c} CPU(s): beyond {c} busy vCPUs in all, guests share them"
        ));
    }
    let oom = steps.iter().flat_map(|s| &s.per_guest).any(|g| {
        g.outcome.console_tail().is_some_and(|t| {
            t.contains("deadlocked on memory")
                || t.contains("Out of memory")
                || t.contains("oom-killer")
        })
    });
    if oom {
        notes.push(format!(
            "guests ran out of memory (their console tails show the kernel's OOM report): \
             {} MiB is too little for this guest kernel and its image; try a larger --memory",
            settings.memory_mib
        ));
    }
    notes
}

/// How many guests did not return, and how many did not start or failed otherwise.
fn failure_warnings(steps: &[ScaleStep]) -> Vec<String> {
    let mut warnings = Vec::new();
    let failures: Vec<&Failure> = steps
        .iter()
        .flat_map(|s| &s.per_guest)
        .filter_map(|g| g.outcome.failure())
        .collect();
    let dnr = failures
        .iter()
        .filter(|f| f.kind == FailureKind::DidNotReturn)
        .count();
    if dnr > 0 {
        warnings.push(format!(
            "{dnr} guest(s) did not return (DNR); see their console tails"
        ));
    }
    if failures.len() > dnr {
        warnings.push(format!(
            "{} guest(s) did not start or failed; see their reasons",
            failures.len() - dnr
        ));
    }
    warnings
}

fn not_started(label: &str, outcome: Outcome) -> GuestResult {
    GuestResult {
        label: label.into(),
        outcome,
        boot_s: None,
        iterations: None,
        samples: Vec::new(),
        summary: None,
        throughput: None,
        host_cpu_s: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saturation_is_where_the_aggregate_last_rose() {
        let steps = [
            (1, Some(100.0)),
            (2, Some(190.0)),
            (4, Some(195.0)),
            (8, Some(150.0)),
        ];
        assert_eq!(saturation(&steps, 0.05), Some(2));
        assert_eq!(saturation(&[(1, Some(1.0))], 0.05), None);
    }
}
