//! The `isolation` scenario (benchvm's performance isolation, table 2).
//!
//! N guests start at once. **Baseline**: every guest runs the same steady workloads (each
//! calibrated once per guest; later phases reuse the iteration counts, so every phase does the
//! same work). **Then, per stressor**: guest 0 (the stressed guest) runs its steady workloads
//! under the stressor (`stress.<name>` with `steady` set: the stressor runs in the background of
//! every repetition) while the other guests (the normal guests) run them as in the baseline.
//! Per steady workload, all guests start their measured repetitions together, and a guest done
//! early keeps loading the host (the stressed guest holds the stress) until the last is done, so
//! every phase measures every guest while all the others are busy. Each guest is compared with
//! its own baseline: the % degradation of the stressed guest, and the mean % degradation of the
//! normal guests. The baseline is measured again right before each stressor and each row is
//! compared with its own baseline: the host may be shared, and drift between phases must not
//! read as degradation. A guest that stops answering is DNR, never a number; it is restarted for the
//! next stressor (its baseline stays).
//!
//! `net-send` and `net-recv` give every guest a network (the plan's NIC and mode: QEMU's
//! user-mode stack by default, or a tap device; a veth pair for namespace and gVisor guests;
//! tap for UML) and run a host peer ([`crate::devices::start_peer`]) for the stressed guest's
//! jobs while the stressor runs: one unbounded TCP stream from the stressed guest to the peer
//! (`net-send`) or from the peer into it (`net-recv`), for as long as each job lasts. The
//! normal guests' networks stay idle. A guest whose network cannot be set up (namespaces and
//! tap devices need root) is started without one, and the net rows are skipped with that
//! reason; so are they when the backend gives its guests no network at all. Never a number
//! without the stream.
//! With `disk` among the stressors every guest gets a scratch disk of its own
//! ([`STRESS_DISK_BYTES`], created by hvbench), and the stressor writes 1 MiB blocks to the
//! stressed guest's, with O_DIRECT where the device allows it (the row says which). On a
//! backend that attaches no disk the writes go to the guest's temporary directory, which in
//! initramfs guests is RAM (the row says so too).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use hvbench_workloads::WorkloadInfo;
use serde_json::json;

use super::common::{
    first_line, shutdown_all, Finished, GuestTemplate, Output, Roster, ScenarioError, StartHook,
};
use super::measure::MeasureEnd;
use super::Progress;
use crate::agent::AgentBinary;
use crate::backends::{Availability, Backend, BackendError};
use crate::devices::{Devices, NetSpec};
use crate::guest::{Guest, GuestError};
use crate::results::*;

mod phase;
use phase::run_phase;

/// The scratch disk each guest gets when the disk stressor runs: the stressor's workers write
/// their regions of it over and over.
pub const STRESS_DISK_BYTES: u64 = 256 << 20;

/// Every stressor the scenario knows, in the order of the source's table.
pub const STRESSORS: &[&str] = &["memory", "fork", "cpu", "disk", "net-recv", "net-send"];

/// Whether a stressor streams over the guests' network (and needs a host peer).
pub fn is_net(stressor: &str) -> bool {
    matches!(stressor, "net-send" | "net-recv")
}

/// Why a stressor cannot run, when it cannot: `no_net` is why the guests have no network
/// (`None` when they have one).
pub fn unsupported_reason(stressor: &str, no_net: Option<&str>) -> Option<String> {
    match no_net {
        Some(why) if is_net(stressor) => Some(why.to_string()),
        _ => None,
    }
}

/// What to run.
pub struct IsolationPlan {
    pub backend: Box<dyn Backend>,
    pub availability: Availability,
    pub guests: u32,
    pub stressors: Vec<String>,
    pub steady: Vec<&'static WorkloadInfo>,
    pub settings: Settings,
    pub kernel: Option<PathBuf>,
    pub out_dir: PathBuf,
    pub command_line: Vec<String>,
    pub timeout: Option<Duration>,
    pub launch_parallelism: usize,
    pub on_start: Option<StartHook>,
    /// The network card and mode the guests get when a net stressor is selected.
    pub net: NetSpec,
}

// ----- the arithmetic, pure -----

/// % degradation of `value` against `baseline`: positive is worse, whatever the direction.
pub fn degradation_pct(baseline: f64, value: f64, higher_is_better: bool) -> f64 {
    if higher_is_better {
        (baseline - value) / baseline * 100.0
    } else {
        (value - baseline) / baseline * 100.0
    }
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// Whether a guest's phase failed (it did not start, did not return, ...): no number.
fn is_dnr(g: &IsolationGuest) -> bool {
    g.outcome.is_failed()
}

/// The degradation of one phase against the baseline; guest 0 is the stressed guest. Returns
/// (per workload, stressed %, stressed DNR, normal %, normal DNR count). A guest that did not
/// return contributes no number; the stressed % is `None` when it did not return.
pub fn degradation(
    steady: &[SteadyWorkload],
    baseline: &[IsolationGuest],
    phase: &[IsolationGuest],
) -> (
    Vec<WorkloadDegradation>,
    Option<f64>,
    bool,
    Option<f64>,
    u32,
) {
    let value = |g: &IsolationGuest, w: &str| {
        if is_dnr(g) {
            None
        } else {
            g.medians.get(w).copied()
        }
    };
    let deg = |i: usize, w: &SteadyWorkload| {
        let b = baseline.get(i).and_then(|g| value(g, &w.name))?;
        let v = phase.get(i).and_then(|g| value(g, &w.name))?;
        (b > 0.0).then(|| degradation_pct(b, v, w.higher_is_better))
    };
    let stressed_dnr = phase.first().is_some_and(is_dnr);
    let normal_dnr = phase.iter().skip(1).filter(|g| is_dnr(g)).count() as u32;
    let mut per = Vec::new();
    let mut stressed_all = Vec::new();
    let mut normal_all = Vec::new();
    for w in steady {
        let stressed = deg(0, w);
        let normal: Vec<Option<f64>> = (1..phase.len()).map(|i| deg(i, w)).collect();
        let ok: Vec<f64> = normal.iter().flatten().copied().collect();
        stressed_all.extend(stressed);
        normal_all.extend(ok.iter().copied());
        per.push(WorkloadDegradation {
            workload: w.name.clone(),
            stressed_pct: stressed,
            normal_pct: mean(&ok),
            normal_per_guest: normal,
        });
    }
    let stressed_pct = if stressed_dnr {
        None
    } else {
        mean(&stressed_all)
    };
    (
        per,
        stressed_pct,
        stressed_dnr,
        mean(&normal_all),
        normal_dnr,
    )
}

// ----- the scenario -----

/// One guest position: its current guest, and what stays across restarts.
struct Slot {
    label: String,
    guest: Option<Guest>,
    launches: u32,
    /// Iterations per steady workload, from the baseline's calibration.
    iterations: BTreeMap<String, u64>,
}

/// What every phase of a run reads, and the guests it keeps across phases.
struct Run<'a, 'p> {
    plan: &'a IsolationPlan,
    out: &'a Output,
    progress: &'a dyn Progress,
    steady: &'a [SteadyWorkload],
    slots: Vec<Slot>,
    fleet: Fleet<'p>,
    roster: Roster,
}

/// Runs the isolation scenario.
pub fn run(
    plan: IsolationPlan,
    agent: &AgentBinary,
    progress: &dyn Progress,
) -> Result<Finished, ScenarioError> {
    let out = Output::create(&plan.out_dir, "isolation")?;
    let settings = run_settings(&plan);
    out.log(
        json!({"type": "start", "run_id": out.run_id, "host": out.host, "settings": settings,
        "scenario": "isolation", "stressors": plan.stressors, "guests": plan.guests}),
    );
    let backend = plan.backend.as_ref();
    let steady = steady_workloads(&plan.steady);
    let n = plan.guests as usize;
    progress.begin(if plan.availability.is_available() {
        (n * (1 + 2 * plan.stressors.len())) as u64
    } else {
        0
    });
    let mut run = Run {
        plan: &plan,
        out: &out,
        progress,
        steady: &steady,
        slots: (0..n).map(|i| Slot::new(backend.name(), i)).collect(),
        fleet: fleet(&plan, &settings, agent, out.workdir.path()),
        roster: Roster::new(backend, &plan.availability),
    };
    let mut notes = vec![
        "guest 0 is the stressed guest; every guest is compared with its own baseline, measured \
         right before each stressor"
            .to_string(),
    ];
    let (baseline, rows, mut interrupted) = run.phases(&mut notes);
    progress.finish();
    shutdown_all(
        run.slots
            .iter_mut()
            .filter_map(|s| s.guest.take())
            .collect(),
        Duration::from_secs(3),
    );
    interrupted |= crate::stop_requested();
    let warnings = dnr_warnings(&rows);
    let (record, command_line) = (run.roster.record, plan.command_line.clone());
    let data = ScenarioData::Isolation(IsolationData {
        backend: backend.name().into(),
        guests: plan.guests,
        vcpus: settings.vcpus,
        memory_mib: settings.memory_mib,
        reps: settings.reps,
        steady,
        baseline,
        rows,
        notes,
    });
    out.finish(
        "isolation",
        command_line,
        agent,
        settings,
        vec![record],
        warnings,
        data,
        interrupted,
    )
}

/// The steady workloads as the document describes them.
fn steady_workloads(steady: &[&'static WorkloadInfo]) -> Vec<SteadyWorkload> {
    steady
        .iter()
        .map(|w| SteadyWorkload {
            name: w.name.into(),
            unit: w.unit.into(),
            higher_is_better: w.higher_is_better,
        })
        .collect()
}

impl Slot {
    /// Guest position `i` of `backend`, with no guest yet.
    fn new(backend: &str, i: usize) -> Slot {
        Slot {
            label: format!("{backend}-g{i}"),
            guest: None,
            launches: 0,
            iterations: BTreeMap::new(),
        }
    }
}

/// The run's settings, with the devices the stressors give the guests.
fn run_settings(plan: &IsolationPlan) -> Settings {
    let mut settings = plan.settings.clone();
    if plan.stressors.iter().any(|s| s == "disk") {
        settings.devices.insert(
            "disk".into(),
            format!(
                "a scratch image of {} MiB per guest, created by hvbench (the disk stressor writes to it)",
                STRESS_DISK_BYTES >> 20
            ),
        );
    }
    if plan.stressors.iter().any(|s| is_net(s)) {
        settings
            .devices
            .insert("nic".into(), plan.net.nic.name().into());
        settings
            .devices
            .insert("net".into(), plan.net.mode.name().into());
    }
    settings
}

/// What the guests are made of: a network for the net stressors, a scratch disk for the disk
/// stressor.
fn fleet<'p>(
    plan: &'p IsolationPlan,
    settings: &Settings,
    agent: &'p AgentBinary,
    workdir: &'p std::path::Path,
) -> Fleet<'p> {
    let wants_net = plan.stressors.iter().any(|s| is_net(s));
    let wants_disk = plan.stressors.iter().any(|s| s == "disk");
    Fleet {
        template: GuestTemplate {
            backend: plan.backend.as_ref(),
            agent,
            kernel: plan.kernel.clone(),
            vcpus: settings.vcpus,
            memory_mib: settings.memory_mib,
            workdir,
            devices: Devices {
                net: wants_net.then_some(plan.net),
                ..Default::default()
            },
            scratch_disk_bytes: wants_disk.then_some(STRESS_DISK_BYTES),
            pin: settings.pinning.clone(),
        },
        net_failure: None,
    }
}

impl Run<'_, '_> {
    /// Starts the guests that are not running; per slot, why it has none.
    fn ensure_guests(&mut self) -> Vec<Option<MeasureEnd>> {
        ensure_guests(
            &mut self.slots,
            &mut self.fleet,
            self.plan,
            &mut self.roster,
            self.out,
            self.progress,
        )
    }

    /// Runs one phase and records the guests it lost.
    fn phase(
        &mut self,
        stressor: Option<&str>,
        lost: &[Option<MeasureEnd>],
    ) -> Vec<IsolationGuest> {
        let phase = run_phase(
            &mut self.slots,
            stressor,
            self.plan,
            self.out,
            self.progress,
            lost,
        );
        note_failures(&mut self.roster, &self.slots, &phase);
        phase
    }

    /// The first baseline, which also warms fresh guests up (their first runs of a workload
    /// are slower than later ones, which must not read as isolation).
    /// The first baseline, then each stressor's phase with its own baseline; `notes` get why
    /// nothing ran, or why the guests had no network. Whether the run was stopped.
    fn phases(
        &mut self,
        notes: &mut Vec<String>,
    ) -> (Vec<IsolationGuest>, Vec<IsolationRow>, bool) {
        let (mut baseline, mut rows, mut interrupted) = (Vec::new(), Vec::new(), false);
        if let Some(note) = self.roster.unavailable_note() {
            notes.push(note);
        } else {
            baseline = self.first_baseline();
            interrupted |= crate::stop_requested();
            let plan = self.plan;
            for stressor in &plan.stressors {
                let (row, stopped) = self.stressor(stressor, interrupted);
                interrupted |= stopped;
                rows.push(row);
            }
        }
        if let Some(why) = &self.fleet.net_failure {
            notes.push(format!(
                "the guests' network could not be set up ({why}): they ran without one, and the \
                 net stressors were skipped"
            ));
        }
        (baseline, rows, interrupted)
    }

    fn first_baseline(&mut self) -> Vec<IsolationGuest> {
        self.progress.workload("baseline");
        let lost = self.ensure_guests();
        if let Some(hook) = &self.plan.on_start {
            let pids: Vec<(String, Vec<u32>)> = self
                .slots
                .iter()
                .filter_map(|s| s.guest.as_ref().map(|g| (s.label.clone(), g.host_pids())))
                .collect();
            hook(&pids);
        }
        self.phase(None, &lost)
    }

    /// A fresh baseline right before `stressor`, then the stressor: its row, and whether a
    /// stop request cut it short (or came before it: `stopped`).
    fn stressor(&mut self, stressor: &str, stopped: bool) -> (IsolationRow, bool) {
        if stopped || crate::stop_requested() {
            let why = "stopped by the user before it ran";
            return (skipped_row(stressor, StressStatus::Interrupted, why), true);
        }
        self.progress
            .workload(&format!("baseline before {stressor}"));
        let lost = self.ensure_guests();
        let no_net = no_network(&self.slots, &self.fleet, self.plan.backend.name());
        if let Some(reason) = unsupported_reason(stressor, no_net.as_deref()) {
            let row = skipped_row(stressor, StressStatus::Skipped, &reason);
            self.out.log(json!({"type": "row", "row": row}));
            for _ in 0..2 * self.slots.len() {
                self.progress.step();
            }
            return (row, false);
        }
        let paired = self.phase(None, &lost);
        self.progress.workload(&format!("stress {stressor}"));
        let lost = self.ensure_guests();
        let phase = self.phase(Some(stressor), &lost);
        let stopped = crate::stop_requested();
        let mut row = stress_row(stressor, self.steady, &paired, phase, stopped);
        row.baseline = paired;
        self.out.log(json!({"type": "row", "row": row}));
        (row, stopped)
    }
}

/// One warning per row whose guests did not return or failed.
fn dnr_warnings(rows: &[IsolationRow]) -> Vec<String> {
    rows.iter()
        .filter(|r| r.stressed_dnr || r.normal_dnr > 0)
        .map(|r| {
            let failed = r.normal_dnr + u32::from(r.stressed_dnr);
            let dnr = r
                .guests
                .iter()
                .filter(|g| g.outcome.did_not_return())
                .count() as u32;
            match failed - dnr.min(failed) {
                0 => format!("{}: {failed} guest(s) did not return (DNR)", r.stressor),
                n => format!(
                    "{}: {failed} guest(s) failed ({dnr} did not return (DNR), {n} did not \
                     start or failed otherwise)",
                    r.stressor
                ),
            }
        })
        .collect()
}

fn skipped_row(stressor: &str, status: StressStatus, reason: &str) -> IsolationRow {
    IsolationRow {
        stressor: stressor.into(),
        status,
        reason: Some(reason.into()),
        note: None,
        stressed_pct: None,
        stressed_dnr: false,
        normal_pct: None,
        normal_dnr: 0,
        per_workload: Vec::new(),
        guests: Vec::new(),
        baseline: Vec::new(),
    }
}

fn stress_row(
    stressor: &str,
    steady: &[SteadyWorkload],
    baseline: &[IsolationGuest],
    phase: Vec<IsolationGuest>,
    stopped: bool,
) -> IsolationRow {
    let (per, stressed_pct, stressed_dnr, normal_pct, normal_dnr) =
        degradation(steady, baseline, &phase);
    let stressed = phase.first();
    // The stressor itself could not run there: a skip with its reason, not a DNR.
    if let Some(Outcome::Skipped { reason }) = stressed.map(|g| &g.outcome).filter(|_| !stopped) {
        let mut row = skipped_row(stressor, StressStatus::Skipped, reason);
        row.guests = phase;
        return row;
    }
    let label = |k: &str| {
        stressed
            .and_then(|g| g.stress_labels.get(k))
            .map(String::as_str)
    };
    let note = match stressor {
        "disk" => Some(match (label("disk_target"), label("disk_io")) {
            (Some("device"), io) => format!(
                "1 MiB writes to the stressed guest's own scratch disk{}",
                if io == Some("direct") {
                    ", O_DIRECT"
                } else {
                    " (buffered: no O_DIRECT there)"
                }
            ),
            (Some("ram_fs"), _) => "the guest has no disk: the writes go to its temporary \
                                    directory, a RAM file system (tmpfs) here"
                .to_string(),
            (Some(_), _) => {
                "the guest has no disk: the writes go to its temporary directory".into()
            }
            _ => "the writes go to the guest's disk or temporary directory".into(),
        }),
        "memory" => stressed
            .and_then(|g| g.stress_extras.get("stress_mem_mib"))
            .map(|m| format!("the stressed guest maps and keeps touching {m:.0} MiB")),
        "net-send" | "net-recv" => stressed
            .and_then(|g| g.stress_extras.get("stress_net_gbit_s"))
            .map(|r| {
                let way = if stressor == "net-send" {
                    "from the stressed guest to a host peer"
                } else {
                    "from a host peer into the stressed guest"
                };
                let rate = crate::report::scenario::num(*r);
                format!("one TCP stream {way}: {rate} Gbit/s (median of its runs)")
            }),
        _ => None,
    };
    IsolationRow {
        stressor: stressor.into(),
        status: if stopped {
            StressStatus::Interrupted
        } else {
            StressStatus::Ran
        },
        reason: None,
        note,
        stressed_pct,
        stressed_dnr,
        normal_pct,
        normal_dnr,
        per_workload: per,
        guests: phase,
        baseline: Vec::new(),
    }
}

/// Copies DNR reasons into the guests' records.
fn note_failures(roster: &mut Roster, slots: &[Slot], phase: &[IsolationGuest]) {
    for (s, g) in slots.iter().zip(phase) {
        if let (true, Some(f)) = (is_dnr(g), g.outcome.failure()) {
            roster.lost(&format!("{}-{}", s.label, s.launches.saturating_sub(1)), f);
        }
    }
}

/// What the guests are made of, and whether their network could be set up.
struct Fleet<'a> {
    template: GuestTemplate<'a>,
    /// Why the guests' network could not be set up (the first launch that failed with it and
    /// succeeded without it); from then on guests start without one.
    net_failure: Option<String>,
}

/// Why the stressed guest has no network, when it has none: the set-up failed, or the backend
/// attaches none (its guests ignore the request).
fn no_network(slots: &[Slot], fleet: &Fleet, backend: &str) -> Option<String> {
    if let Some(why) = &fleet.net_failure {
        return Some(format!("the guests' network could not be set up: {why}"));
    }
    let guest = slots.first()?.guest.as_ref()?;
    guest
        .attached()
        .net
        .is_none()
        .then(|| format!("the {backend} backend gives its guests no network"))
}

/// Starts the guests that are not running (in parallel, bounded); returns, per slot, why it
/// has no guest.
///
/// A launch with a network that fails in its set-up (namespaces and tap devices need root) is
/// tried again without the network; if that starts, the failure is recorded in `fleet` and the
/// later guests start without a network too (the net stressors are then skipped with it).
fn ensure_guests(
    slots: &mut [Slot],
    fleet: &mut Fleet,
    plan: &IsolationPlan,
    roster: &mut Roster,
    out: &Output,
    progress: &dyn Progress,
) -> Vec<Option<MeasureEnd>> {
    let want: Vec<usize> = (0..slots.len())
        .filter(|&i| slots[i].guest.is_none() && slots[i].launches < 4)
        .collect();
    let labels: Vec<String> = want
        .iter()
        .map(|&i| format!("{}-{}", slots[i].label, slots[i].launches))
        .collect();
    let mut started = fleet.template.start_many(&labels, plan.launch_parallelism);
    if fleet.template.devices.net.is_some() {
        let retry: Vec<usize> = (0..started.len())
            .filter(|&k| matches!(started[k], Err(GuestError::Launch(BackendError::Setup(_)))))
            .collect();
        if !retry.is_empty() {
            let mut plain = fleet.template.clone();
            plain.devices.net = None;
            let again_labels: Vec<String> = retry.iter().map(|&k| labels[k].clone()).collect();
            let again = plain.start_many(&again_labels, plan.launch_parallelism);
            for (&k, r) in retry.iter().zip(again) {
                if r.is_err() {
                    continue;
                }
                if fleet.net_failure.is_none() {
                    let why = match &started[k] {
                        Err(e) => first_line(&e.to_string()),
                        Ok(_) => String::new(),
                    };
                    progress.note(&format!(
                        "the guests' network could not be set up ({why}): starting them \
                         without one; the net stressors are skipped"
                    ));
                    out.log(json!({"type": "net_unavailable", "label": labels[k], "reason": why}));
                    fleet.net_failure = Some(why);
                }
                started[k] = r;
            }
            if fleet.net_failure.is_some() {
                fleet.template.devices.net = None;
            }
        }
    }
    let mut why: Vec<Option<MeasureEnd>> = slots
        .iter()
        .map(|s| {
            s.guest.is_none().then(|| {
                MeasureEnd::Lost(Failure::new(
                    FailureKind::DidNotStart,
                    "could not be restarted: every launch it was allowed is used",
                ))
            })
        })
        .collect();
    for ((&i, label), r) in want.iter().zip(&labels).zip(started) {
        slots[i].launches += 1;
        match r {
            Ok(g) => {
                roster.started(label, &g);
                out.log(json!({"type": "guest", "label": label, "boot_s": g.boot.as_secs_f64()}));
                slots[i].guest = Some(g);
                why[i] = None;
            }
            Err(GuestError::Interrupted) => why[i] = Some(MeasureEnd::Interrupted),
            Err(e) => {
                why[i] = Some(MeasureEnd::Lost(roster.not_started(label, &e, progress)));
            }
        }
    }
    why
}
