//! The `lifecycle` scenario (the VMware VMI paper's non-workload experiments), by vCPU count:
//!
//! - **boot time** over repeated boots: launch to the agent's hello timed by the host, and the
//!   guest kernel's own uptime at hello (a distribution with its median and interval, not one
//!   number). On backends without a guest kernel (namespace, gVisor) these are start times.
//! - **idle host CPU**: after a settling pause, the host CPU time of the idle guest's processes
//!   over a window (one-second slices), as a percentage of one host core.
//! - **memory**: the RSS and PSS of the guest's host processes and all their descendants,
//!   split mapping by mapping ([`crate::smaps`]) into the guest RAM the host backs and the
//!   VMM's own memory (seed 001's "VMM memory overhead"), against the memory the guest itself
//!   uses (MemTotal − MemAvailable inside, read by the agent's `probe.meminfo` after the
//!   host-side reading). When the guest shares the host's kernel (its MemTotal is the host's,
//!   and no sentry accounts for it as gVisor's does), its own use is not separable from the
//!   host numbers: then it is not reported, and the note says why.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use hvbench_protocol::Job;
use hvbench_stats::{summarize, Samples};
use serde_json::json;

use super::common::{first_line, Finished, GuestTemplate, Output, Roster, ScenarioError};
use super::Progress;
use crate::agent::AgentBinary;
use crate::backends::{Availability, Backend};
use crate::devices::Devices;
use crate::guest::{Guest, JobEnd};
use crate::results::*;
use crate::smaps;

/// What to run.
pub struct LifecyclePlan {
    pub backend: Box<dyn Backend>,
    pub availability: Availability,
    pub vcpus: Vec<u32>,
    pub boots: u32,
    pub idle_window_s: f64,
    pub settle_s: f64,
    pub settings: Settings,
    pub kernel: Option<PathBuf>,
    pub out_dir: PathBuf,
    pub command_line: Vec<String>,
}

/// Sleeps `d` in short slices, returning false as soon as a stop is requested.
pub(crate) fn sleep_unless_stopped(d: Duration) -> bool {
    let end = Instant::now() + d;
    loop {
        if crate::stop_requested() {
            return false;
        }
        let now = Instant::now();
        if now >= end {
            return true;
        }
        std::thread::sleep((end - now).min(Duration::from_millis(200)));
    }
}

/// Host CPU as a percentage of one core.
pub fn cpu_pct_of_core(cpu_s: f64, window_s: f64) -> f64 {
    if window_s > 0.0 {
        cpu_s / window_s * 100.0
    } else {
        0.0
    }
}

/// Host PSS beyond what the guest uses, KiB (negative when the guest uses memory the host has
/// not backed yet, or shares pages).
pub fn memory_overhead_kib(host_pss_kib: u64, guest_used_kib: u64) -> i64 {
    host_pss_kib as i64 - guest_used_kib as i64
}

/// `pids` and all their live descendants (through every thread's `children`).
pub fn process_tree(pids: &[u32]) -> Vec<u32> {
    let mut out: Vec<u32> = Vec::new();
    let mut todo: Vec<u32> = pids.to_vec();
    while let Some(p) = todo.pop() {
        if out.contains(&p) || out.len() > 4096 {
            continue;
        }
        out.push(p);
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) {
            for t in tasks.flatten() {
                if let Ok(c) = std::fs::read_to_string(t.path().join("children")) {
                    todo.extend(c.split_whitespace().filter_map(|x| x.parse::<u32>().ok()));
                }
            }
        }
    }
    out
}

fn host_mem_total_kib() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn summary(values: &[f64]) -> Option<hvbench_stats::Summary> {
    Samples::new(values.to_vec()).ok().map(|s| summarize(&s))
}

/// Runs the lifecycle scenario.
pub fn run(
    plan: LifecyclePlan,
    agent: &AgentBinary,
    progress: &dyn Progress,
) -> Result<Finished, ScenarioError> {
    let out = Output::create(&plan.out_dir, "lifecycle")?;
    let settings = plan.settings.clone();
    out.log(
        json!({"type": "start", "run_id": out.run_id, "host": out.host, "settings": settings,
        "scenario": "lifecycle", "vcpus": plan.vcpus}),
    );
    let backend = plan.backend.as_ref();
    let mut roster = Roster::new(backend, &plan.availability);
    let mut notes = Vec::new();
    let mut rows = Vec::new();
    let mut interrupted = false;
    let available = plan.availability.is_available();
    notes.extend(roster.unavailable_note());
    progress.begin(if available {
        plan.vcpus.len() as u64 * u64::from(plan.boots + 1)
    } else {
        0
    });
    let host_total = host_mem_total_kib();

    let ctx = Ctx {
        plan: &plan,
        agent,
        out: &out,
        progress,
        host_total,
    };
    for &v in plan.vcpus.iter().filter(|_| available) {
        let (row, stopped) = vcpu_row(&ctx, &mut roster, v);
        rows.push(row);
        if stopped {
            interrupted = true;
            break;
        }
    }
    progress.finish();
    if crate::stop_requested() {
        interrupted = true;
    }
    if !backend_has_kernel(&rows, host_total) {
        notes.push(format!(
            "{} guests run on the host's kernel: boot times are start times (launch to the agent's hello)",
            backend.name()
        ));
    }
    let warnings = failed_boot_warnings(&rows);
    let data = ScenarioData::Lifecycle(LifecycleData {
        backend: backend.name().into(),
        boots: plan.boots,
        settle_s: plan.settle_s,
        idle_window_s: plan.idle_window_s,
        rows,
        notes,
    });
    out.finish(
        "lifecycle",
        plan.command_line,
        agent,
        settings,
        vec![roster.record],
        warnings,
        data,
        interrupted,
    )
}

/// One warning per vCPU count whose boots failed.
fn failed_boot_warnings(rows: &[LifecycleRow]) -> Vec<String> {
    rows.iter()
        .filter(|r| r.failed_boots > 0)
        .map(|r| {
            format!(
                "{} of {} boots with {} vCPU failed",
                r.failed_boots,
                r.boots.len(),
                r.vcpus
            )
        })
        .collect()
}

/// What every boot of a run reads.
struct Ctx<'a> {
    plan: &'a LifecyclePlan,
    agent: &'a AgentBinary,
    out: &'a Output,
    progress: &'a dyn Progress,
    host_total: Option<u64>,
}

/// The boots of guests with `v` vCPUs, the first one's idle CPU and memory; and whether a
/// stop request cut it short.
fn vcpu_row(ctx: &Ctx, roster: &mut Roster, v: u32) -> (LifecycleRow, bool) {
    let (plan, settings) = (ctx.plan, &ctx.plan.settings);
    let template = GuestTemplate {
        backend: plan.backend.as_ref(),
        agent: ctx.agent,
        kernel: plan.kernel.clone(),
        vcpus: v,
        memory_mib: settings.memory_mib,
        workdir: ctx.out.workdir.path(),
        devices: Devices::default(),
        scratch_disk_bytes: None,
        pin: settings.pinning.clone(),
    };
    ctx.progress.workload(&format!("{} vCPU", v));
    let mut row = LifecycleRow {
        vcpus: v,
        memory_mib: settings.memory_mib,
        boots: Vec::new(),
        boot_s: None,
        guest_uptime_s: None,
        failed_boots: 0,
        idle: None,
        memory: None,
        notes: Vec::new(),
    };
    for b in 0..plan.boots {
        if crate::stop_requested() {
            return (finish_row(row), true);
        }
        let label = format!("{}-v{v}-b{b}", plan.backend.name());
        let stopped = match template.start(&label) {
            Ok(g) => {
                roster.started(&label, &g);
                booted(ctx, &mut row, &label, g)
            }
            Err(crate::guest::GuestError::Interrupted) => true,
            Err(e) => {
                ctx.out
                    .log(json!({"type": "boot_failed", "label": label, "error": e.to_string()}));
                roster.not_started(&label, &e, ctx.progress);
                row.boots.push(BootRecord {
                    label,
                    boot_s: None,
                    guest_uptime_s: None,
                    cpus: None,
                    failure: Some(e.failure(false)),
                });
                ctx.progress.step();
                false
            }
        };
        if stopped {
            return (finish_row(row), true);
        }
    }
    if row.idle.is_none() {
        row.notes
            .push("no guest booted: no idle or memory measurement".into());
        ctx.progress.step();
    }
    (finish_row(row), false)
}

/// Records a guest that booted in `row`, measures its idle CPU and memory if the row has none
/// yet, and shuts it down. Whether a stop request came meanwhile.
fn booted(ctx: &Ctx, row: &mut LifecycleRow, label: &str, mut g: Guest) -> bool {
    let v = row.vcpus;
    ctx.out.log(
        json!({"type": "boot", "label": label, "vcpus": v, "boot_s": g.boot.as_secs_f64(),
        "guest_uptime_s": g.hello.uptime_s}),
    );
    // A kernel cannot have been up longer than since its launch: a longer uptime is the
    // host's (the guest has no kernel of its own).
    let uptime = g
        .hello
        .uptime_s
        .filter(|&u| u <= g.boot.as_secs_f64() + 1.0);
    if uptime.is_none() && g.hello.uptime_s.is_some() && row.boots.is_empty() {
        row.notes.push(
            "the uptime the guest reports is the host's: no guest kernel, no guest uptime".into(),
        );
    }
    row.boots.push(BootRecord {
        label: label.into(),
        boot_s: Some(g.boot.as_secs_f64()),
        guest_uptime_s: uptime,
        cpus: Some(g.hello.cpus),
        failure: None,
    });
    let cpus_note = format!(
        "the guest reports {} CPU(s): this backend does not give guests their own vCPU count",
        g.hello.cpus
    );
    if g.hello.cpus != v && !row.notes.contains(&cpus_note) {
        row.notes.push(cpus_note);
    }
    ctx.progress.step();
    let mut stopped = false;
    if row.idle.is_none() {
        let (plan, settings) = (ctx.plan, &ctx.plan.settings);
        match idle_and_memory(&mut g, &ctx.agent.path, plan, ctx.host_total, settings) {
            Some((idle, mem)) => {
                ctx.out
                    .log(json!({"type": "idle", "vcpus": v, "idle": idle, "memory": mem}));
                row.idle = Some(idle);
                row.memory = mem;
            }
            None => stopped = crate::stop_requested(),
        }
        ctx.progress.step();
    }
    g.shutdown(Duration::from_secs(3));
    stopped
}

/// Whether the guests had a kernel of their own (their MemTotal differs from the host's).
fn backend_has_kernel(rows: &[LifecycleRow], host_total: Option<u64>) -> bool {
    rows.iter()
        .filter_map(|r| r.memory.as_ref())
        .any(|m| m.guest_mem_total_kib.is_some() && m.guest_mem_total_kib != host_total)
}

fn finish_row(mut row: LifecycleRow) -> LifecycleRow {
    let boots: Vec<f64> = row.boots.iter().filter_map(|b| b.boot_s).collect();
    let uptimes: Vec<f64> = row.boots.iter().filter_map(|b| b.guest_uptime_s).collect();
    row.boot_s = summary(&boots);
    row.guest_uptime_s = summary(&uptimes);
    row.failed_boots = row.boots.iter().filter(|b| b.failure.is_some()).count() as u32;
    row
}

/// Settles, meters the idle window, reads host memory, then asks the guest for its own use.
/// `None` when stopped.
fn idle_and_memory(
    g: &mut Guest,
    agent: &std::path::Path,
    plan: &LifecyclePlan,
    host_total: Option<u64>,
    settings: &Settings,
) -> Option<(IdleRecord, Option<MemoryRecord>)> {
    if !sleep_unless_stopped(Duration::from_secs_f64(plan.settle_s)) {
        return None;
    }
    let idle = idle_window(g, plan.idle_window_s)?;
    Some((idle, memory(g, agent, host_total, settings)))
}

/// The host CPU the idle guest uses over `window_s`, metered in one-second slices.
fn idle_window(g: &Guest, window_s: f64) -> Option<IdleRecord> {
    let slices = window_s.ceil().max(1.0) as usize;
    let slice = Duration::from_secs_f64(window_s / slices as f64);
    let mut pct = Vec::new();
    let mut cpu_total = 0.0;
    let mut window = 0.0;
    for _ in 0..slices {
        let (c0, t0) = (g.cpu_time(), Instant::now());
        if !sleep_unless_stopped(slice) {
            return None;
        }
        let (c1, dt) = (g.cpu_time(), t0.elapsed().as_secs_f64());
        if let (Some(a), Some(b)) = (c0, c1) {
            let c = b.saturating_sub(a).as_secs_f64();
            cpu_total += c;
            window += dt;
            pct.push(cpu_pct_of_core(c, dt));
        }
    }
    Some(IdleRecord {
        window_s: window,
        cpu_s: cpu_total,
        cpu_pct_of_core: cpu_pct_of_core(cpu_total, window),
        summary: summary(&pct),
        slices_pct: pct,
        method: g.cpu_method().into(),
    })
}

/// The guest's host memory (RSS, PSS and their split) and its own use as it reports it;
/// `None` when it has no host process to read.
fn memory(
    g: &mut Guest,
    agent: &std::path::Path,
    host_total: Option<u64>,
    settings: &Settings,
) -> Option<MemoryRecord> {
    let pids = process_tree(&g.host_pids());
    let (mut rss, mut pss, mut unreadable) = (0, 0, 0);
    for &p in &pids {
        match crate::accounting::tree_memory_kib(p) {
            Some((r, s)) => {
                rss += r;
                pss += s;
            }
            None => unreadable += 1,
        }
    }
    // Right after the rollups, before the guest runs its probe.
    let split = split_memory(&pids, agent, settings.memory_mib);
    let guest_total = Some(g.hello.mem_total_kib).filter(|&t| t > 0);
    let own_kernel = guest_total.is_some() && guest_total != host_total;
    // gVisor's sentry reports the host's MemTotal, but MemAvailable from its own accounting of
    // its memory file: what its guest uses is its own, as with a kernel of the guest's own.
    let sentry_accounting = split
        .guest_ram_kinds
        .contains(&smaps::GuestRamKind::GvisorMemoryFile);
    let (used, overhead, mut note) = guest_use(g, pss, own_kernel, sentry_accounting);
    if unreadable > 0 {
        let n = note.take().unwrap_or_default();
        note = Some(format!(
            "{n}{}{unreadable} of {} host processes were unreadable and are not counted",
            if n.is_empty() { "" } else { "; " },
            pids.len()
        ));
    }
    if pids.is_empty() {
        return None;
    }
    let mut memory = MemoryRecord {
        host_pids: pids,
        host_rss_kib: rss,
        host_pss_kib: pss,
        configured_mib: settings.memory_mib,
        guest_mem_total_kib: guest_total,
        guest_used_kib: used,
        overhead_kib: overhead,
        note,
        ..MemoryRecord::default()
    };
    add_split(&mut memory, &split, own_kernel);
    Some(memory)
}

/// Asks the guest for its memory use (`probe.meminfo`): its use, the overhead over the host's
/// PSS when the use is the guest's own, and a note saying what the numbers mean.
fn guest_use(
    g: &mut Guest,
    pss: u64,
    own_kernel: bool,
    sentry_accounting: bool,
) -> (Option<u64>, Option<i64>, Option<String>) {
    let job = Job {
        id: 0,
        workload: "probe.meminfo".into(),
        params: Default::default(),
        iterations: Some(1),
        target_s: 0.1,
        warmup: 0,
        reps: 1,
        copies: 1,
    };
    let mut used = None;
    let probe = g.run_job(job, Duration::from_secs(60), |s| {
        used = s.msg.extras.get("mem_used_kib").map(|&v| v as u64);
    });
    match (&probe, used) {
        (Ok(JobEnd::Done { .. }), Some(u)) if own_kernel || sentry_accounting => {
            let note = format!(
                "overhead = host PSS − (MemTotal − MemAvailable inside): the VMM's own memory, \
                 plus guest memory outside MemTotal (kernel image, memmap) and pages the guest \
                 touched and freed that the host still backs; the VMM's own memory alone is \
                 `VMM own` (smaps split){}",
                if own_kernel {
                    ""
                } else {
                    "; gVisor reports the host's MemTotal, but its MemAvailable from the sentry's \
                     own accounting"
                }
            );
            (Some(u), Some(memory_overhead_kib(pss, u)), Some(note))
        }
        (Ok(JobEnd::Done { .. }), Some(_)) => (
            None,
            None,
            Some(
                "the guest shares the host's kernel (its MemTotal is the host's): its own use is \
                 already in the host numbers, so no overhead is separable; raw numbers only"
                    .into(),
            ),
        ),
        (r, _) => {
            let why = match r {
                Ok(JobEnd::Error { message, .. }) => message.clone(),
                Ok(_) => "no sample".into(),
                Err(e) => first_line(&e.to_string()),
            };
            let note = format!("the guest did not report its memory use ({why}); raw numbers only");
            (None, None, Some(note))
        }
    }
}

/// How many of the VMM's own mappings the document lists.
const LARGEST_MAPPINGS: usize = 12;

/// Reads the smaps of every process of the guest and splits them (see [`crate::smaps`]).
fn split_memory(pids: &[u32], agent: &std::path::Path, memory_mib: u32) -> smaps::Split {
    let agent = smaps::FileId::of(agent);
    let procs: Vec<smaps::ProcessMemory> = pids
        .iter()
        .filter_map(|&p| smaps::read_process(p, agent.as_ref()))
        .collect();
    smaps::split(
        &procs,
        u64::from(memory_mib) * 1024,
        agent.as_ref(),
        LARGEST_MAPPINGS,
    )
}

/// Fills the guest-RAM / VMM-own split into `m`. Without a recognised guest-RAM mapping the
/// VMM's own memory stays `None` (it would include the guest's RAM), and the note says so.
fn add_split(m: &mut MemoryRecord, split: &smaps::Split, own_kernel: bool) {
    m.processes = split
        .processes
        .iter()
        .map(|(pid, name, own, guest)| ProcessMemoryRecord {
            pid: *pid,
            name: name.clone(),
            own_pss_kib: *own,
            guest_ram_pss_kib: *guest,
        })
        .collect();
    if split.guest_ram_kinds.is_empty() {
        let why = if own_kernel {
            format!(
                "no mapping holding the guest's RAM was recognised in smaps (no QEMU RAM block of \
                 {} MiB, no UML or gVisor memory file): the VMM's own memory is not separable",
                m.configured_mib
            )
        } else {
            "no process of the guest runs the agent and no guest memory file was recognised: \
             the VMM's own memory is not separable"
                .to_string()
        };
        m.note = Some(match m.note.take() {
            Some(n) => format!("{n}; {why}"),
            None => why,
        });
        return;
    }
    m.guest_ram_backed_kib = Some(split.guest_ram_pss_kib);
    m.guest_ram_mapped_kib = Some(split.guest_ram_size_kib);
    m.vmm_own_kib = Some(split.own_pss_kib);
    m.vmm_own_rss_kib = Some(split.own_rss_kib);
    m.guest_ram = Some(
        split
            .guest_ram_kinds
            .iter()
            .map(|k| k.describe())
            .collect::<Vec<_>>()
            .join("; "),
    );
    m.backed_minus_used_kib = m
        .guest_used_kib
        .map(|u| split.guest_ram_pss_kib as i64 - u as i64);
    m.vmm_parts = split
        .parts
        .iter()
        .map(|(part, t)| MemoryPart {
            part: part.name().into(),
            pss_kib: t.pss_kib,
            size_kib: t.size_kib,
            mappings: t.mappings,
        })
        .collect();
    m.largest_mappings = split
        .largest
        .iter()
        .map(|l| MappingRecord {
            pid: l.pid,
            process: l.process.clone(),
            part: l.part.name().into(),
            name: l.mapping.name.clone(),
            perms: l.mapping.perms.clone(),
            size_kib: l.mapping.size_kib,
            pss_kib: l.mapping.pss_kib,
            vm_flags: l.mapping.vm_flags.join(" "),
        })
        .collect();
}
