//! The `scale` scenario (benchvm's scalability): for each guest count N, N guests start at once
//! and each runs the same workload; the result is every guest's own numbers, the aggregate
//! throughput, and how many guests did not return. A guest that failed to start, died or fell
//! silent is DNR with its console tail, never a number (and never a zero in the aggregate).
//!
//! This module also holds what the multi-guest scenarios share (the output files, bounded
//! parallel start-up, measuring one workload in one guest, shutting a fleet down), used by
//! [`super::isolation`] and [`super::lifecycle`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use hvbench_protocol::Job;
use hvbench_stats::{summarize, Samples};
use hvbench_workloads::{Metric, Params, WorkloadInfo};
use serde_json::json;

use super::efficiency::{
    error_status, failed_guest, median, silence_bound, Finished, ScenarioError,
};
use super::Progress;
use crate::agent::AgentBinary;
use crate::backends::{Availability, Backend, GuestSpec};
use crate::devices::Devices;
use crate::guest::{with_timeout, Guest, GuestError, JobEnd};
use crate::host::HostInfo;
use crate::results::*;
use crate::workdir::WorkDir;

/// Launches in flight at once by default: enough to overlap the host-side set-up of guests,
/// few enough that booting guests do not starve each other into their hello timeouts.
pub const DEFAULT_LAUNCH_PARALLELISM: usize = 8;

/// An aggregate must rise by more than this share from one guest count to the next to count as
/// still rising.
pub const RISE_THRESHOLD: f64 = 0.05;

/// Called once per guest count with each started guest's label and host PIDs, before any job
/// runs (tests kill a guest here to prove it becomes DNR while the others finish).
pub type StartHook = Box<dyn Fn(&[(String, Vec<u32>)]) + Send + Sync>;

// ----- shared by the multi-guest scenarios -----

/// The files of one run: the document, its journal, and a private work directory for guests.
pub(crate) struct Output {
    pub run_id: String,
    pub path: PathBuf,
    pub journal_path: PathBuf,
    journal: Mutex<Journal>,
    pub workdir: WorkDir,
    pub host: HostInfo,
    pub started: SystemTime,
}

impl Output {
    pub(crate) fn create(out_dir: &Path, scenario: &str) -> Result<Output, ScenarioError> {
        let started = SystemTime::now();
        let run_id = format!("{}-{scenario}", run_id_utc(started));
        std::fs::create_dir_all(out_dir).map_err(|e| ScenarioError::Output {
            path: out_dir.to_path_buf(),
            source: e,
        })?;
        let path = out_dir.join(format!("{run_id}.json"));
        let journal_path = out_dir.join(format!("{run_id}.journal.jsonl"));
        let journal = Journal::create(&journal_path).map_err(|e| ScenarioError::Output {
            path: journal_path.clone(),
            source: e,
        })?;
        let workdir = WorkDir::new(scenario).map_err(ScenarioError::WorkDir)?;
        Ok(Output {
            run_id,
            path,
            journal_path,
            journal: Mutex::new(journal),
            workdir,
            host: HostInfo::detect(),
            started,
        })
    }

    /// Appends one entry to the journal (from any thread).
    pub(crate) fn log(&self, entry: serde_json::Value) {
        if let Ok(mut j) = self.journal.lock() {
            j.append(&entry);
        }
    }

    /// Writes the document and removes the work directory (guests must be gone by now).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn finish(
        self,
        scenario: &str,
        command_line: Vec<String>,
        agent: &AgentBinary,
        settings: Settings,
        backends: Vec<BackendRecord>,
        warnings: Vec<String>,
        data: ScenarioData,
        interrupted: bool,
    ) -> Result<Finished, ScenarioError> {
        let document = RunDocument {
            schema_version: SCHEMA_VERSION,
            hvbench_version: env!("CARGO_PKG_VERSION").into(),
            git_revision: crate::GIT_REVISION.into(),
            run_id: self.run_id.clone(),
            scenario: scenario.into(),
            command_line,
            started_at: rfc3339_utc(self.started),
            finished_at: rfc3339_utc(SystemTime::now()),
            interrupted,
            host: self.host.clone(),
            agent: AgentRecord {
                path: agent.path.display().to_string(),
                sha256: agent.sha256.clone(),
                size_bytes: agent.size,
                version: env!("CARGO_PKG_VERSION").into(),
            },
            settings,
            backends,
            runs: Vec::new(),
            efficiency: Vec::new(),
            warnings,
            scenario_data: Some(data),
            host_drift: None,
            ab: None,
            explain: Vec::new(),
        };
        self.log(json!({"type": "end", "interrupted": interrupted}));
        document
            .write_atomic(&self.path)
            .map_err(|e| ScenarioError::Output {
                path: self.path.clone(),
                source: e,
            })?;
        Ok(Finished {
            document,
            path: self.path,
            journal: self.journal_path,
        })
    }
}

/// What every guest of a scenario is made of.
#[derive(Clone)]
pub(crate) struct GuestTemplate<'a> {
    pub backend: &'a dyn Backend,
    pub agent: &'a AgentBinary,
    pub kernel: Option<PathBuf>,
    pub vcpus: u32,
    pub memory_mib: u32,
    pub workdir: &'a Path,
    /// The devices every guest gets (the isolation scenario's network for its net stressors;
    /// none elsewhere).
    pub devices: Devices,
    /// A scratch disk of this many bytes for each guest, created in its directory (the
    /// isolation scenario's disk stressor writes to it).
    pub scratch_disk_bytes: Option<u64>,
    /// Where guests are pinned (`--pin`); `None`: unpinned.
    pub pin: Option<crate::placement::PinPolicy>,
}

impl GuestTemplate<'_> {
    /// Starts one guest labelled `label` in its own directory under the work directory.
    pub(crate) fn start(&self, label: &str) -> Result<Guest, GuestError> {
        self.start_in(label, 0)
    }

    /// Starts one guest, pinned (when the run pins) to the CPUs of placement `slot`: guests
    /// running at the same time take consecutive slots.
    pub(crate) fn start_in(&self, label: &str, slot: usize) -> Result<Guest, GuestError> {
        let dir = self.workdir.join(label);
        std::fs::create_dir_all(&dir)
            .map_err(|e| GuestError::io(format!("cannot create {}: {e}", dir.display())))?;
        let mut devices = self.devices.clone();
        if let Some(r) = devices.rootfs.as_mut() {
            // Each guest's own database and build tree: guests must not share one.
            r.app_dir = dir.join("app");
            std::fs::create_dir_all(&r.app_dir).map_err(|e| {
                GuestError::io(format!("cannot create {}: {e}", r.app_dir.display()))
            })?;
        }
        if let Some(size) = self.scratch_disk_bytes {
            // A relaunch under the same label gets a fresh image of its own.
            let _ = std::fs::remove_file(dir.join("disk.img"));
            let disk = crate::devices::create_scratch(&dir, size)
                .map_err(|e| GuestError::io(e.to_string()))?;
            devices.disk = Some(disk);
        }
        let spec = GuestSpec {
            vcpus: self.vcpus,
            memory_mib: self.memory_mib,
            kernel: self.kernel.clone(),
            agent: self.agent.clone(),
            workdir: dir,
            label: label.into(),
            devices,
        };
        let mut guest = Guest::start(self.backend, &spec, self.backend.hello_timeout())?;
        if let Some(policy) = &self.pin {
            guest
                .pin_in_slot(policy, slot, self.vcpus)
                .map_err(|e| GuestError::io(format!("cannot pin {label}: {e}")))?;
        }
        Ok(guest)
    }

    /// Starts one guest per label, at most `parallel` launches at once (a pool of threads
    /// taking labels in turn), and returns the results in label order. A stop request ends
    /// the launches that have not begun.
    pub(crate) fn start_many(
        &self,
        labels: &[String],
        parallel: usize,
    ) -> Vec<Result<Guest, GuestError>> {
        let next = AtomicUsize::new(0);
        let slots: Vec<Mutex<Option<Result<Guest, GuestError>>>> =
            labels.iter().map(|_| Mutex::new(None)).collect();
        std::thread::scope(|s| {
            for _ in 0..parallel.clamp(1, labels.len().max(1)) {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= labels.len() {
                        return;
                    }
                    let r = if crate::stop_requested() {
                        Err(GuestError::Interrupted)
                    } else {
                        self.start_in(&labels[i], i)
                    };
                    *slots[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
                });
            }
        });
        slots
            .into_iter()
            .map(|m| {
                m.into_inner()
                    .unwrap_or_else(|e| e.into_inner())
                    .unwrap_or(Err(GuestError::Interrupted))
            })
            .collect()
    }
}

/// The record of a started guest.
pub(crate) fn guest_record(label: &str, g: &Guest) -> GuestRecord {
    GuestRecord {
        label: label.into(),
        config: g.config.clone(),
        boot_s: Some(g.boot.as_secs_f64()),
        guest_uptime_s: g.hello.uptime_s,
        kernel: Some(g.hello.kernel.clone()),
        cpus: Some(g.hello.cpus),
        mem_total_kib: Some(g.hello.mem_total_kib),
        clocksource: g.hello.clocksource.clone(),
        cpu_accounting: g.cpu_method().into(),
        setup_notes: g.hello.setup_notes.clone(),
        failure: None,
    }
}

/// Shuts guests down in parallel (each waits up to `grace`, then is killed).
pub(crate) fn shutdown_all(guests: Vec<Guest>, grace: Duration) {
    std::thread::scope(|s| {
        for g in guests {
            s.spawn(move || g.shutdown(grace));
        }
    });
}

/// The first line of an error message.
pub(crate) fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or("").to_string()
}

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

/// A guest's result from what `measure` produced.
pub(crate) fn guest_result(
    label: &str,
    boot_s: Option<f64>,
    metric: Metric,
    measured: &Measured,
    end: &MeasureEnd,
) -> GuestResult {
    let outcome = match end {
        MeasureEnd::Done => Outcome::ok(),
        MeasureEnd::Error(o) => o.clone(),
        MeasureEnd::Lost(f) => Outcome::Failed(f.clone()),
        MeasureEnd::Interrupted if !measured.values.is_empty() => Outcome::Ok {
            note: Some("stopped by the user: fewer repetitions".into()),
        },
        MeasureEnd::Interrupted => Outcome::skipped("stopped by the user before it was measured"),
    };
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
    let timeout = plan.timeout.unwrap_or_else(|| silence_bound(w, &settings));
    let backend = plan.backend.as_ref();
    let mut record = BackendRecord {
        name: backend.name().into(),
        technique: backend.technique().into(),
        availability: plan.availability.clone(),
        guests: Vec::new(),
    };
    let template = GuestTemplate {
        backend,
        agent,
        kernel: plan.kernel.clone(),
        vcpus: settings.vcpus,
        memory_mib: settings.memory_mib,
        workdir: out.workdir.path(),
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
        pin: settings.pinning.clone(),
    };
    let mut notes = Vec::new();
    let mut warnings = Vec::new();
    let mut steps: Vec<ScaleStep> = Vec::new();
    let mut interrupted = false;
    let total: u64 = plan.counts.iter().map(|&n| u64::from(n)).sum();
    progress.begin(if plan.availability.is_available() {
        total
    } else {
        0
    });
    if let Availability::Unavailable { reason, hint } = &plan.availability {
        notes.push(format!(
            "{} is unavailable here: {reason} (fix: {hint})",
            backend.name()
        ));
    }

    for &n in plan
        .counts
        .iter()
        .filter(|_| plan.availability.is_available())
    {
        if crate::stop_requested() {
            interrupted = true;
            break;
        }
        progress.workload(&format!("{} × {n}", w.name));
        let labels: Vec<String> = (0..n)
            .map(|i| format!("{}-n{n}-g{i}", backend.name()))
            .collect();
        let t0 = Instant::now();
        let started = template.start_many(&labels, plan.launch_parallelism);
        let startup_s = started
            .iter()
            .any(|r| r.is_ok())
            .then(|| t0.elapsed().as_secs_f64());
        let mut guests: Vec<(usize, Guest)> = Vec::new();
        let mut results: Vec<Option<GuestResult>> = labels.iter().map(|_| None).collect();
        for (i, r) in started.into_iter().enumerate() {
            match r {
                Ok(g) => {
                    record.guests.push(guest_record(&labels[i], &g));
                    out.log(json!({"type": "guest", "label": labels[i], "boot_s": g.boot.as_secs_f64()}));
                    guests.push((i, g));
                }
                Err(GuestError::Interrupted) => {
                    interrupted = true;
                    results[i] = Some(not_started(
                        &labels[i],
                        Outcome::skipped("stopped by the user before it started"),
                    ));
                }
                Err(e) => {
                    let text = e.to_string();
                    progress.note(&format!(
                        "{}: did not start: {}",
                        labels[i],
                        first_line(&text)
                    ));
                    out.log(json!({"type": "guest_failed", "label": labels[i], "error": text}));
                    let f = e.failure(false);
                    record.guests.push(failed_guest(&labels[i], f.clone()));
                    let f = Failure {
                        reason: first_line(&f.reason),
                        ..f
                    };
                    results[i] = Some(not_started(&labels[i], Outcome::Failed(f)));
                    progress.step();
                }
            }
        }
        if let Some(hook) = &plan.on_start {
            let pids: Vec<(String, Vec<u32>)> = guests
                .iter()
                .map(|(i, g)| (labels[*i].clone(), g.host_pids()))
                .collect();
            hook(&pids);
        }

        let measure_plan = Measure {
            workload: w,
            job_workload: w.name.into(),
            params: Params::new(),
            iterations: None,
            target_s: settings.target_s,
            warmup: settings.warmup,
            reps: settings.reps,
            timeout,
        };
        // Every guest calibrates, then all start their measured repetitions together, and
        // those done first keep the load on until the last is done.
        let barrier = std::sync::Barrier::new(guests.len());
        let (pinned, vcpus) = (settings.pinning.is_some(), settings.vcpus);
        let done = AtomicUsize::new(0);
        let active = guests.len();
        let measured: Vec<(usize, GuestResult)> = std::thread::scope(|s| {
            let handles: Vec<_> = guests
                .iter_mut()
                .map(|(i, g)| {
                    let label = labels[*i].clone();
                    let mut m = measure_plan.clone();
                    let (out, barrier, done) = (&out, &barrier, &done);
                    let i = *i;
                    s.spawn(move || {
                        let mut acc = Measured::default();
                        if w.needs.rootfs {
                            crate::devices::rootfs_params(g.attached(), &mut m.params);
                        }
                        if w.kind == hvbench_workloads::Kind::App && pinned {
                            // Pinned guests: each application on its guest's own CPUs.
                            m.params.insert("cpus".into(), vcpus.into());
                        }
                        let calibrated = calibrate(g, &m, &mut acc);
                        barrier.wait();
                        let end = match calibrated {
                            Err(end) => end,
                            Ok(iterations) => {
                                m.iterations = Some(iterations);
                                measure(g, &m, &mut acc, |v, warm| {
                                    if !warm {
                                        out.log(json!({"type": "sample", "guests": n, "label": label, "value": v}));
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
                            progress.note(&format!("{label}: {r}"));
                            out.log(json!({"type": "guest_lost", "label": label, "reason": r}));
                        }
                        progress.step();
                        (i, guest_result(&label, Some(g.boot.as_secs_f64()), w.metric, &acc, &end))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a guest thread panicked"))
                .collect()
        });
        for (i, r) in measured {
            if let (Some(f), Some(rec)) = (
                r.outcome.failure(),
                record
                    .guests
                    .iter_mut()
                    .rev()
                    .find(|g| g.label == labels[i]),
            ) {
                rec.failure = Some(f.clone());
            }
            results[i] = Some(r);
        }
        shutdown_all(
            guests.into_iter().map(|(_, g)| g).collect(),
            Duration::from_secs(3),
        );
        if crate::stop_requested() {
            interrupted = true;
        }

        let per_guest: Vec<GuestResult> = results
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                r.unwrap_or_else(|| not_started(&labels[i], Outcome::skipped("not measured")))
            })
            .collect();
        let failed = per_guest.iter().filter(|g| g.outcome.is_failed()).count() as u32;
        let agg = aggregate(&per_guest.iter().map(|g| g.throughput).collect::<Vec<_>>());
        out.log(json!({"type": "step", "guests": n, "aggregate": agg, "failed": failed}));
        steps.push(ScaleStep {
            guests: n,
            per_guest,
            aggregate: agg,
            scaling_efficiency: None,
            failed,
            startup_s,
        });
        if interrupted {
            break;
        }
    }
    progress.finish();

    // Scaling efficiency against one guest's throughput (the one-guest step, else the smallest
    // step's mean per returned guest).
    let single = steps
        .iter()
        .filter(|s| s.aggregate.is_some())
        .min_by_key(|s| s.guests)
        .and_then(|s| {
            let ok = s
                .per_guest
                .iter()
                .filter(|g| g.throughput.is_some())
                .count() as f64;
            s.aggregate.map(|a| a / ok)
        });
    if let Some(single) = single {
        for s in &mut steps {
            let ok = s
                .per_guest
                .iter()
                .filter(|g| g.throughput.is_some())
                .count() as u32;
            s.scaling_efficiency = s.aggregate.and_then(|a| scaling_efficiency(a, ok, single));
        }
    }
    let sat = saturation(
        &steps
            .iter()
            .map(|s| (s.guests, s.aggregate))
            .collect::<Vec<_>>(),
        RISE_THRESHOLD,
    );
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
    out.finish(
        "scalability",
        plan.command_line,
        agent,
        settings,
        vec![record],
        warnings,
        data,
        interrupted,
    )
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
