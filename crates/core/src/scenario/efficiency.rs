//! The `efficiency` scenario: every workload on the host and in each guest, repetitions
//! interleaved across backends (native, A, B, native, B, A, ...) so that drift of a shared machine
//! hits all of them alike; then the ratio of medians with its bootstrap interval.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hvbench_protocol::{ErrorKind, Job};
use hvbench_workloads::{Params, WorkloadInfo};
use serde_json::json;

use super::common::{failed_guest, Output, Roster};
pub use super::common::{Finished, ScenarioError};
use super::counted;
pub(crate) use super::measure::{error_status, median, silence_bound};
use super::records::{detail, run_record, run_warnings, writes_to_disk, Acc};
pub use super::records::{efficiency_records, host_cpu_per_op, CLOCK_TOLERANCE};
use super::Progress;
use crate::agent::AgentBinary;
use crate::backends::{Availability, Backend, GuestSpec};
use crate::devices::{DevicePlan, Devices};
use crate::guest::{with_timeout, Guest, GuestError, HostSample, JobEnd};
use crate::hostload::{own_process_cpu, CpuTimes, HostLoad};
use crate::results::*;

/// What to run.
pub struct Plan {
    /// Backends with their probe results; the baseline (native) must come first.
    pub backends: Vec<(Box<dyn Backend>, Availability)>,
    pub workloads: Vec<&'static WorkloadInfo>,
    pub settings: Settings,
    pub kernel: Option<PathBuf>,
    pub out_dir: PathBuf,
    pub command_line: Vec<String>,
    /// Bound on a guest's silence during a job; `None` derives it from the workload.
    pub timeout: Option<Duration>,
    /// The disk and network for the `io` and `net` workloads.
    pub devices: DevicePlan,
    /// Count the kernel events of the explained workloads natively (extra, unscored
    /// repetitions) and add the `explain` section (see `crate::explain`).
    pub explain: bool,
}

impl Plan {
    /// The run's measuring time, from its settings: for every workload on every backend that
    /// can run, a calibration and the warm-ups, then the repetitions (at least `reps`, at most
    /// `max_reps`), each about `target_s` long. Boots, set-up and the guests' slowness beyond
    /// the target are not in it, so it is a floor of the wall time.
    pub fn measuring_time(&self) -> (Duration, Duration) {
        let s = &self.settings;
        let backends = self
            .backends
            .iter()
            .filter(|(_, a)| a.is_available())
            .count();
        let per_rep = s.target_s * (self.workloads.len() * backends) as f64;
        let fixed = per_rep * f64::from(1 + s.warmup);
        (
            Duration::from_secs_f64(fixed + per_rep * f64::from(s.reps)),
            Duration::from_secs_f64(fixed + per_rep * f64::from(s.max_reps.max(s.reps))),
        )
    }
}

/// One backend during the run: its guest (while alive) and what became of it.
struct Slot<'a> {
    backend: &'a dyn Backend,
    roster: Roster,
    guest: Option<Guest>,
    launches: u32,
    /// The devices this backend's guests get (its own scratch disk image).
    devices: Devices,
}

/// What every step of a run reads.
struct Ctx<'a> {
    plan: &'a Plan,
    settings: &'a Settings,
    agent: &'a AgentBinary,
    out: &'a Output,
    progress: &'a dyn Progress,
}

/// A stop was requested: the run ends with what it has.
struct Stopped;

/// Runs the scenario. Guests that fail become failed runs in the document, with reasons.
pub fn run(
    plan: Plan,
    agent: &AgentBinary,
    progress: &dyn Progress,
) -> Result<Finished, ScenarioError> {
    if !plan.backends.first().is_some_and(|(b, _)| b.is_baseline()) {
        return Err(ScenarioError::NoBaseline);
    }
    let clock = std::time::Instant::now();
    let out = Output::create(&plan.out_dir, "efficiency")?;
    out.log(
        json!({"type": "start", "run_id": out.run_id, "host": out.host, "settings": plan.settings}),
    );
    let mut settings = plan.settings.clone();
    settings.devices = plan.devices.settings();
    let mut slots = slots(&plan, out.workdir.path())?;
    let runnable: Vec<usize> = (0..slots.len())
        .filter(|&i| slots[i].roster.record.availability.is_available())
        .collect();
    progress.begin((plan.workloads.len() * runnable.len()) as u64 * (1 + u64::from(settings.reps)));
    let ctx = Ctx {
        plan: &plan,
        settings: &settings,
        agent,
        out: &out,
        progress,
    };
    boot_all(&ctx, &mut slots);
    let mut runs = Vec::new();
    let mut interrupted = false;
    let mut drift = crate::drift::HostDrift::new();
    for w in &plan.workloads {
        drift.measure_before(&plan.workloads, w, clock.elapsed());
        if run_workload(&ctx, w, &mut slots, &runnable, &mut runs).is_err() {
            interrupted = true;
            break;
        }
    }
    if crate::stop_requested() {
        interrupted = true;
    } else {
        drift.measure("end", clock.elapsed());
    }
    progress.finish();
    for slot in &mut slots {
        if let Some(g) = slot.guest.take() {
            g.shutdown(Duration::from_secs(3));
        }
    }
    let efficiency = efficiency_records(&runs, slots[0].roster.record.name.as_str());
    let names: Vec<&str> = slots
        .iter()
        .map(|s| s.roster.record.name.as_str())
        .collect();
    let mut warnings = run_warnings(plan.explain, &settings, &runs, &names);
    warnings.extend(drift.warning());
    let backends = slots.into_iter().map(|s| s.roster.record).collect();
    let command_line = plan.command_line.clone();
    let mut document = out.document("efficiency", command_line, agent, settings, backends);
    document.warnings = warnings;
    document.interrupted = interrupted;
    document.host_drift = Some(drift);
    document.runs = runs;
    document.efficiency = efficiency;
    if plan.explain {
        document.explain = crate::explain::explain(&document, &document);
    }
    out.write(document)
}

/// One slot per backend, with the devices of those that can run.
fn slots<'a>(plan: &'a Plan, workdir: &Path) -> Result<Vec<Slot<'a>>, ScenarioError> {
    let mut slots = Vec::new();
    for (b, avail) in &plan.backends {
        let devices = if avail.is_available() {
            plan.devices.devices_for(b.name(), workdir)?
        } else {
            Devices::default()
        };
        slots.push(Slot {
            backend: b.as_ref(),
            roster: Roster::new(b.as_ref(), avail),
            guest: None,
            launches: 0,
            devices,
        });
    }
    Ok(slots)
}

/// Every backend's guest boots at once before the first measurement: boot is not measured
/// work here (the lifecycle scenario times it alone), and booting one after another cost the
/// sum of the boot times (qemu-tcg alone about a second and a half).
fn boot_all(ctx: &Ctx, slots: &mut [Slot]) {
    std::thread::scope(|scope| {
        for slot in slots
            .iter_mut()
            .filter(|s| s.roster.record.availability.is_available())
        {
            scope.spawn(move || ensure_guest(slot, ctx));
        }
    });
}

/// The parameters every job of `w` gets.
fn workload_params(w: &WorkloadInfo, settings: &Settings) -> Params {
    let mut params: Params = settings.params.clone();
    if w.kind == hvbench_workloads::Kind::App {
        // An application gets as many CPUs everywhere as a guest has vCPUs: the native,
        // namespace and gVisor agents confine it to that many of their CPUs, so that a
        // 1-vCPU guest is compared with the host on one CPU, like with like.
        params
            .entry("cpus".to_string())
            .or_insert(settings.vcpus.into());
    }
    params
}

/// Measures `w` on every backend: calibration and warm-up, repetitions interleaved, the
/// native event counts for `--explain`; its runs go to `runs` (also when a stop cuts the
/// repetitions short, not when it comes during calibration).
fn run_workload(
    ctx: &Ctx,
    w: &'static WorkloadInfo,
    slots: &mut [Slot],
    runnable: &[usize],
    runs: &mut Vec<RunRecord>,
) -> Result<(), Stopped> {
    ctx.progress.workload(w.name);
    let params = workload_params(w, ctx.settings);
    let mut accs: Vec<Acc> = slots.iter().map(|_| Acc::default()).collect();
    let timeout = ctx
        .plan
        .timeout
        .unwrap_or_else(|| silence_bound(w, ctx.settings));
    for &i in runnable {
        calibrate_on(ctx, w, &mut slots[i], &mut accs[i], &params, timeout)?;
    }
    let prices = round_prices(ctx, w, slots, runs);
    let measured = measure_rounds(
        ctx, w, slots, &mut accs, runnable, &params, timeout, &prices,
    );
    if measured.is_ok() && ctx.plan.explain && crate::explain::explained(w) {
        for &i in runnable {
            if !accs[i].active {
                continue;
            }
            let Some(guest) = slots[i].guest.as_mut() else {
                continue;
            };
            let base = Job {
                iterations: accs[i].iterations,
                ..job(ctx, w, guest, &params)
            };
            let (reps, samples) = (ctx.settings.reps, &accs[i].samples);
            let counted = counted::count(w, guest, base, reps, samples, i == 0, timeout);
            accs[i].counted = Some(counted);
        }
    }
    finish_workload(w, slots, &mut accs, ctx.settings, runs);
    measured
}

/// A pricing workload to measure after each repetition, with its iterations per repetition.
type Price = (&'static WorkloadInfo, u64);

/// Per slot, the pricing workloads measured again after each of `w`'s repetitions (an
/// application under `--explain`): those of [`crate::explain::ROUND_PRICES`] that ran on the
/// slot's backend earlier in this run, at half their calibrated iterations (a quarter of a
/// second each, about 3 s after each repetition).
fn round_prices(
    ctx: &Ctx,
    w: &WorkloadInfo,
    slots: &[Slot],
    runs: &[RunRecord],
) -> Vec<Vec<Price>> {
    slots
        .iter()
        .map(|slot| {
            if !(ctx.plan.explain && w.kind == hvbench_workloads::Kind::App) {
                return Vec::new();
            }
            let backend = slot.roster.record.name.as_str();
            crate::explain::ROUND_PRICES
                .iter()
                .filter_map(|name| {
                    let r = runs
                        .iter()
                        .find(|r| r.backend == backend && r.workload == *name)?;
                    let n = r.iterations.filter(|_| r.outcome.is_ok())?;
                    Some((hvbench_workloads::find(name)?, (n / 2).max(1)))
                })
                .collect()
        })
        .collect()
}

/// One repetition of each of `prices` on the slot's guest, right after a repetition of the
/// workload `acc` measures: their samples go to `acc.round_prices`. A pricing workload that
/// fails leaves no sample (its own record says why); a guest lost here ends the workload on
/// this backend, as in one of its own repetitions.
fn price_round(ctx: &Ctx, slot: &mut Slot, acc: &mut Acc, prices: &[Price]) -> Result<(), Stopped> {
    for &(c, iterations) in prices {
        let timeout = silence_bound(c, ctx.settings);
        if crate::stop_requested() {
            return Err(Stopped);
        }
        let Some(guest) = slot.guest.as_mut() else {
            return Ok(());
        };
        let params = workload_params(c, ctx.settings);
        let job = Job {
            iterations: Some(iterations),
            reps: 1,
            ..job(ctx, c, guest, &params)
        };
        let mut got = None;
        match run_with_peer(c, guest, job, timeout, |s| got = Some(s.msg.value)) {
            Ok(JobEnd::Done { .. }) => {
                if let Some(v) = got {
                    acc.round_prices.entry(c.name.into()).or_default().push(v);
                }
            }
            Ok(JobEnd::Error { .. }) => {}
            Err(e) => return lose_in_job(slot, acc, with_timeout(e, timeout), ctx.progress),
        }
    }
    Ok(())
}

/// The job of `w` on `guest`.
fn job(ctx: &Ctx, w: &WorkloadInfo, guest: &Guest, params: &Params) -> Job {
    Job {
        id: 0,
        workload: w.name.into(),
        params: ctx.plan.devices.params(w, guest.attached(), params),
        iterations: None,
        target_s: target_s(w, ctx.plan, ctx.settings),
        warmup: 0,
        reps: 0,
        copies: ctx.settings.copies,
    }
}

/// Calibrates `w` on one backend and runs its warm-ups (starting its guest if it has none).
fn calibrate_on(
    ctx: &Ctx,
    w: &WorkloadInfo,
    slot: &mut Slot,
    acc: &mut Acc,
    params: &Params,
    timeout: Duration,
) -> Result<(), Stopped> {
    let (settings, progress) = (ctx.settings, ctx.progress);
    if crate::stop_requested() {
        return Err(Stopped);
    }
    if !ensure_guest(slot, ctx) {
        acc.status = Some(Outcome::Failed(guest_failure(slot)));
        progress_skip(progress, settings.reps);
        return Ok(());
    }
    let guest = slot.guest.as_mut().expect("ensured");
    let job = Job {
        warmup: settings.warmup,
        ..job(ctx, w, guest, params)
    };
    let backend = slot.roster.record.name.clone();
    let result = run_with_peer(w, guest, job, timeout, |s| {
        ctx.out.log(
            json!({"type": "warmup", "backend": backend, "workload": w.name, "value": s.msg.value,
            "iterations": s.msg.iterations}),
        );
    });
    progress.step();
    match result {
        Ok(JobEnd::Done {
            iterations: Some(n),
        }) => {
            acc.iterations = Some(n);
            acc.active = true;
        }
        Ok(JobEnd::Done { iterations: None }) => {
            acc.status = Some(Outcome::failed(
                FailureKind::BadOutput,
                "the agent did not report its calibration",
            ));
        }
        Ok(JobEnd::Error { kind, message }) => acc.status = Some(error_status(kind, message)),
        Err(e) => lose_in_job(slot, acc, with_timeout(e, timeout), progress)?,
    }
    if !acc.active {
        progress_skip(progress, settings.reps);
    }
    Ok(())
}

/// A guest lost during a job of `acc`'s workload: recorded, and the workload stops there.
fn lose_in_job(
    slot: &mut Slot,
    acc: &mut Acc,
    e: GuestError,
    progress: &dyn Progress,
) -> Result<(), Stopped> {
    if matches!(e, GuestError::Interrupted) {
        return Err(Stopped);
    }
    lose_guest(slot, &e, progress);
    acc.active = false;
    acc.status = Some(Outcome::Failed(e.failure(true)));
    Ok(())
}

/// Measured repetitions, interleaved; more rounds where an efficiency is still open
/// (`reps`: narrow enough, or a clear overhead, stops; the noisy side is repeated).
#[allow(clippy::too_many_arguments)]
fn measure_rounds(
    ctx: &Ctx,
    w: &WorkloadInfo,
    slots: &mut [Slot],
    accs: &mut [Acc],
    runnable: &[usize],
    params: &Params,
    timeout: Duration,
    prices: &[Vec<Price>],
) -> Result<(), Stopped> {
    let settings = ctx.settings;
    let (reps, max_reps) = rounds_of(w, ctx.plan, settings);
    let mut round = 0;
    loop {
        let extra = round >= reps;
        let more = extra.then(|| wanted_more(w, runnable, accs, settings));
        let wanted: Vec<usize> = runnable
            .iter()
            .copied()
            .filter(|&i| accs[i].active && more.as_ref().is_none_or(|m| m[i]))
            .collect();
        if wanted.is_empty() || round >= max_reps {
            return Ok(());
        }
        // The progress bar counted `settings.reps` rounds per workload.
        if round >= settings.reps {
            ctx.progress.grow(wanted.len() as u64);
        }
        // Odd rounds take the guests in reverse (native, A, B, native, B, A, ...): no backend
        // always runs right after the baseline, or right before another, so what one leaves
        // behind on the host (caches, a CPU's frequency) does not favour the same one each time.
        let mut order = wanted;
        if round % 2 == 1 {
            let first = usize::from(order.first() == runnable.first());
            order[first..].reverse();
        }
        for i in order {
            if crate::stop_requested() {
                return Err(Stopped);
            }
            let rep = Rep { round, timeout };
            repeat_on(ctx, w, &mut slots[i], &mut accs[i], params, rep)?;
            if accs[i].active && !prices[i].is_empty() {
                price_round(ctx, &mut slots[i], &mut accs[i], &prices[i])?;
            }
        }
        round += 1;
    }
}

/// Which repetition, under which silence bound.
#[derive(Clone, Copy)]
struct Rep {
    round: u32,
    timeout: Duration,
}

/// One measured repetition of `w` on one backend, with the host's load over it.
fn repeat_on(
    ctx: &Ctx,
    w: &WorkloadInfo,
    slot: &mut Slot,
    acc: &mut Acc,
    params: &Params,
    rep: Rep,
) -> Result<(), Stopped> {
    let Some(guest) = slot.guest.as_mut() else {
        acc.active = false;
        return Ok(());
    };
    let job = Job {
        iterations: acc.iterations,
        reps: 1,
        ..job(ctx, w, guest, params)
    };
    if writes_to_disk(w) {
        settle_host_writeback();
    }
    let mut got: Option<HostSample> = None;
    let before = (CpuTimes::now(), own_process_cpu());
    let result = run_with_peer(w, guest, job, rep.timeout, |s| got = Some(s));
    let after = (CpuTimes::now(), own_process_cpu());
    ctx.progress.step();
    match (result, got) {
        (Ok(JobEnd::Done { .. }), Some(s)) => {
            let mut d = detail(&s);
            d.host_load = host_load(before, after, s.host_cpu);
            ctx.out.log(
                json!({"type": "sample", "backend": slot.roster.record.name, "workload": w.name,
                "round": rep.round, "value": s.msg.value, "detail": d}),
            );
            acc.samples.push(s.msg.value);
            acc.works.push(s.msg.work);
            acc.details.push(d);
        }
        (Ok(JobEnd::Done { .. }), None) => {
            acc.active = false;
            acc.status = Some(Outcome::failed(
                FailureKind::BadOutput,
                "the agent finished a repetition without a sample",
            ));
        }
        (Ok(JobEnd::Error { kind, message }), _) => {
            acc.active = false;
            acc.status = Some(error_status(kind, message));
        }
        (Err(e), _) => lose_in_job(slot, acc, with_timeout(e, rep.timeout), ctx.progress)?,
    }
    Ok(())
}

/// Runs a job; for a network workload with a host peer that drives the other end of the
/// agent's connections for as long as the job lasts.
pub(crate) fn run_with_peer(
    w: &WorkloadInfo,
    guest: &mut Guest,
    job: Job,
    timeout: Duration,
    on_sample: impl FnMut(HostSample),
) -> Result<JobEnd, GuestError> {
    let peer = if crate::devices::uses_net(w) {
        match guest.attached().net.as_ref() {
            Some(ep) => match crate::devices::start_peer(ep) {
                Ok(p) => Some(p),
                Err(e) => {
                    return Ok(JobEnd::Error {
                        kind: ErrorKind::Failed,
                        message: format!("cannot start the host side of {}: {e}", w.name),
                    })
                }
            },
            None => None,
        }
    } else {
        None
    };
    let result = guest.run_job(job, timeout, on_sample);
    if let Some(p) = peer {
        p.stop();
    }
    result
}

/// Repetitions of the micro workloads that `--explain` adds first at most this long: an
/// application suite's repetitions last seconds, a micro workload needs a fraction of one.
const COST_TARGET_S: f64 = 0.5;

/// ... and at least this many of them: `explain` multiplies each price by thousands of events
/// per unit of work, so a price's noise is the prediction's. On this project's 2-CPU host a
/// three-repetition median of UML's page fault moved 86-494 µs between runs; medians of seven
/// predicted the same applications' runs within 25% where those of three did not
/// (docs/explain.md).
const COST_REPS: u32 = 7;

/// Whether `w` is one of the micro workloads `--explain` added to price events.
fn is_cost(w: &WorkloadInfo, plan: &Plan) -> bool {
    let cost = crate::explain::COST_WORKLOADS.contains(&w.name)
        || crate::explain::APP_COST_WORKLOADS.contains(&w.name)
        || crate::explain::NET_COST_WORKLOADS.contains(&w.name);
    plan.explain && cost && w.kind != hvbench_workloads::Kind::App
}

fn target_s(w: &WorkloadInfo, plan: &Plan, settings: &Settings) -> f64 {
    if is_cost(w, plan) {
        settings.target_s.min(COST_TARGET_S)
    } else {
        settings.target_s
    }
}

/// Measured rounds of `w` (before extra ones) and the most rounds it may take.
fn rounds_of(w: &WorkloadInfo, plan: &Plan, settings: &Settings) -> (u32, u32) {
    if is_cost(w, plan) {
        let reps = settings.reps.max(COST_REPS);
        (reps, settings.max_reps.max(reps))
    } else {
        (settings.reps, settings.max_reps)
    }
}

fn progress_skip(progress: &dyn Progress, reps: u32) {
    for _ in 0..reps {
        progress.step();
    }
}

/// Per slot, whether it needs another repetition of `w` (the rule of [`super::reps`]): the
/// baseline is slot 0; a guest whose baseline could not run follows the spread rule alone.
fn wanted_more(
    w: &WorkloadInfo,
    runnable: &[usize],
    accs: &[Acc],
    settings: &Settings,
) -> Vec<bool> {
    let rule = super::reps::RepRule::new(settings.cv_threshold);
    let mut more = vec![false; accs.len()];
    let guests: Vec<usize> = runnable
        .iter()
        .copied()
        .filter(|&i| i != 0 && accs[i].active)
        .collect();
    if !(runnable.contains(&0) && accs[0].active) {
        for &i in &guests {
            more[i] = super::reps::wanted(&accs[i].samples, &[], &rule).baseline;
        }
        return more;
    }
    let views: Vec<super::reps::GuestSamples> = guests
        .iter()
        .map(|&i| super::reps::GuestSamples {
            samples: &accs[i].samples,
            higher_is_better: w.higher_is_better,
        })
        .collect();
    let want = super::reps::wanted(&accs[0].samples, &views, &rule);
    more[0] = want.baseline;
    for (k, &i) in guests.iter().enumerate() {
        more[i] = want.guests[k];
    }
    more
}

/// Starts the slot's guest if it has none; at most three launches per backend in a run.
fn ensure_guest(slot: &mut Slot, ctx: &Ctx) -> bool {
    if slot.guest.is_some() {
        return true;
    }
    if slot.launches >= 3 || crate::stop_requested() {
        return false;
    }
    let (settings, progress) = (ctx.settings, ctx.progress);
    let label = format!("{}-{}", slot.backend.name(), slot.launches);
    slot.launches += 1;
    let dir = ctx.out.workdir.path().join(&label);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        slot.roster.record.guests.push(failed_guest(
            &label,
            Failure::new(
                FailureKind::DidNotStart,
                format!("cannot create {}: {e}", dir.display()),
            ),
        ));
        return false;
    }
    let spec = GuestSpec {
        vcpus: settings.vcpus,
        memory_mib: settings.memory_mib,
        kernel: ctx.plan.kernel.clone(),
        agent: ctx.agent.clone(),
        workdir: dir,
        label: label.clone(),
        devices: slot.devices.clone(),
    };
    match Guest::start(slot.backend, &spec, slot.backend.hello_timeout()) {
        Ok(mut g) => {
            // Backends take turns, so every guest (and the native agent) gets the same CPUs.
            let pinning = settings.pinning.as_ref();
            if let Some(policy) = pinning.filter(|p| p.applies_to(slot.backend.name())) {
                if let Err(e) = g.pin_in_slot(policy, 0, settings.vcpus) {
                    progress.note(&format!("{label}: not pinned: {e}"));
                    g.config
                        .settings
                        .insert("pinning".into(), format!("failed: {e}"));
                }
            }
            slot.roster.started(&label, &g);
            slot.guest = Some(g);
            true
        }
        Err(e) => {
            progress.note(&format!(
                "{}: guest failed to start: {e}",
                slot.backend.name()
            ));
            slot.roster
                .record
                .guests
                .push(failed_guest(&label, e.failure(false)));
            false
        }
    }
}

/// Why a backend has no guest for a workload: its last launch did not start (or was refused),
/// or every launch it was allowed has been used up by guests that were lost.
fn guest_failure(slot: &Slot) -> Failure {
    match slot
        .roster
        .record
        .guests
        .last()
        .and_then(|g| g.failure.clone())
    {
        Some(f) if f.kind != FailureKind::DidNotReturn => f,
        Some(lost) => Failure {
            kind: FailureKind::DidNotStart,
            reason: format!(
                "no guest left after {} launches; the last one {}",
                slot.launches,
                lost.describe()
            ),
            console_tail: lost.console_tail,
        },
        None => Failure::new(FailureKind::DidNotStart, "it could not be started"),
    }
}

/// Records why a guest is gone and kills it; the next workload starts a new one.
fn lose_guest(slot: &mut Slot, e: &GuestError, progress: &dyn Progress) {
    progress.note(&format!("{}: guest lost: {e}", slot.backend.name()));
    slot.roster.lost_latest(e.failure(true));
    slot.guest = None;
}

/// The host's load over a repetition, given `/proc/stat` and hvbench's own CPU time before
/// and after it and the CPU time of the guest's processes.
fn host_load(
    before: (Option<CpuTimes>, Option<Duration>),
    after: (Option<CpuTimes>, Option<Duration>),
    guest_cpu: Option<Duration>,
) -> Option<HostLoad> {
    let own = match (before.1, after.1) {
        (Some(a), Some(b)) => b.saturating_sub(a),
        _ => Duration::ZERO,
    };
    HostLoad::between(
        before.0?,
        after.0?,
        Some(guest_cpu.unwrap_or_default() + own),
    )
}

fn finish_workload(
    w: &WorkloadInfo,
    slots: &[Slot],
    accs: &mut [Acc],
    settings: &Settings,
    runs: &mut Vec<RunRecord>,
) {
    for (i, acc) in accs.iter_mut().enumerate() {
        if !slots[i].roster.record.availability.is_available() {
            continue;
        }
        let outcome = match acc.status.take() {
            Some(o) => o,
            None if acc.samples.is_empty() => continue,
            None => Outcome::ok(),
        };
        runs.push(run_record(
            w,
            &slots[i].roster.record.name,
            outcome,
            acc,
            settings,
        ));
    }
}

/// Flushes the host's dirty pages before a repetition that writes to a disk: repetitions of
/// the backends are interleaved, and the data a guest before wrote through the host's page
/// cache (UML's ubd, a namespace's files) would otherwise be written back during the next
/// backend's repetition and slow its fsyncs. Measured here: app.files natively fell from
/// 19,251 to 9,514 ops/s over five repetitions without it (the writeback of the other
/// backends' repetitions in between), which is drift of the host, not of the workload.
fn settle_host_writeback() {
    // SAFETY: sync has no preconditions; it only blocks until dirty data is written back.
    unsafe { libc::sync() };
}
