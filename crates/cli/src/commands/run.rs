//! `hvbench run`: the efficiency scenario.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use hvbench_core::agent::AgentBinary;
use hvbench_core::backends::{self, Availability, Backend};
use hvbench_core::devices::{
    parse_size, DevicePlan, DiskModel, DiskSource, NetMode, NetSpec, NicModel,
};

use super::backend_args::{BackendArgs, PlacementArgs};
use hvbench_core::results::Settings;
use hvbench_core::scenario::efficiency::{self, Plan};
use hvbench_workloads::{Kind, WorkloadInfo};

use crate::progress::Bar;

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Backend to compare with the host (repeatable); default: every backend available here.
    /// `native` (the host) is always measured, as the baseline.
    #[arg(long = "backend", value_name = "NAME")]
    pub(crate) backends: Vec<String>,
    /// Workload to run (repeatable); default: the suite's workloads. See `hvbench list`.
    #[arg(long = "workload", value_name = "NAME")]
    workloads: Vec<String>,
    /// Suite: quick (short repetitions), full (longer repetitions), or a group: cpu, mem,
    /// kernel, io (disk: a scratch image per backend), net (TCP between guest and host), app
    /// (PostgreSQL, a compile, a file-system load in a Debian root file system).
    #[arg(long, default_value = "quick")]
    suite: String,
    /// Measured repetitions per workload and backend (at least 2; default 5, 3 when only
    /// applications are selected: each lasts seconds).
    #[arg(long)]
    pub(crate) reps: Option<u32>,
    /// Unreported warm-up runs before the measured ones.
    #[arg(long, default_value_t = 1)]
    warmup: u32,
    /// Target duration of one repetition, in seconds (default 0.1 for the quick suite, 1.0 for the full suite, 0.2 otherwise).
    #[arg(long, value_name = "SECONDS")]
    duration: Option<f64>,
    /// Concurrent instances of each workload; the result is their aggregate rate.
    #[arg(long, default_value_t = 1)]
    copies: u32,
    /// Add repetitions while the coefficient of variation exceeds this percentage...
    #[arg(long, default_value_t = 3.5, value_name = "PERCENT")]
    cv_threshold: f64,
    /// ...up to this many repetitions in all (default: --reps + 3; 3 × --reps for the full suite).
    #[arg(long)]
    max_reps: Option<u32>,
    /// Directory for the result document and its journal.
    #[arg(long, default_value = "results")]
    out: PathBuf,
    /// vCPUs of each guest.
    #[arg(long, default_value_t = 1)]
    vcpus: u32,
    /// Memory of each guest, MiB.
    #[arg(long, default_value_t = 512)]
    memory: u32,
    /// Kernel image for kernel-based guests (default: the newest /boot/vmlinuz-*).
    #[arg(long)]
    kernel: Option<PathBuf>,
    /// Give up on a guest silent for this many seconds during a job (default: derived from the
    /// workload's set-up bound and the repetition length).
    #[arg(long, value_name = "SECONDS")]
    timeout: Option<f64>,
    /// Size of the scratch disk image hvbench creates for each backend (io suite): 1G, 512M...
    #[arg(long, default_value = "1G", value_name = "SIZE")]
    disk_size: String,
    /// Where the applications' root file system is cached (default: ~/.cache/hvbench); built
    /// there the first time an application (suite app) is selected.
    #[arg(long, value_name = "DIR")]
    image_dir: Option<PathBuf>,
    /// A workload parameter for every job, KEY=VALUE (repeatable), recorded in the document:
    /// scale=100 and clients=4 for pgbench, jobs=8 for a compile. Numbers are sent as numbers.
    #[arg(long = "param", value_name = "KEY=VALUE")]
    params: Vec<String>,
    /// Use this file or block device as the disk instead of a scratch image. Read-only: the
    /// write workloads are refused unless --allow-destructive-writes is given too.
    #[arg(long, value_name = "PATH")]
    disk: Option<PathBuf>,
    /// Let the write workloads overwrite the --disk file or device (its data is destroyed).
    #[arg(long, requires = "disk")]
    allow_destructive_writes: bool,
    /// Disk controller of QEMU guests: virtio (paravirtual), ide or ahci (emulated).
    #[arg(long, default_value = "virtio", value_name = "MODEL")]
    disk_model: String,
    /// Queue depth of the disk workloads: 1 = one synchronous call at a time; more uses
    /// io_uring (or threads, where io_uring is unavailable: recorded in the result).
    #[arg(long, default_value_t = 1)]
    iodepth: u32,
    /// Network card of QEMU guests: virtio (paravirtual) or e1000 (emulated).
    #[arg(long, default_value = "virtio", value_name = "MODEL")]
    nic: String,
    /// How QEMU guests reach the host: user (slirp, a forwarded loopback port) or tap (a tap
    /// device in a network namespace hvbench creates; root only). UML always uses tap.
    #[arg(long, default_value = "user", value_name = "MODE")]
    net: String,
    /// Explain the applications' overhead: count their kernel events natively (in extra,
    /// unscored repetitions), also run the micro workloads that price each event (system
    /// calls, page faults, context switches, disk I/O, CPU), and predict each backend's
    /// efficiency from them (docs/explain.md). `hvbench explain RUN.json` shows it again.
    #[arg(long)]
    explain: bool,
    /// No progress bar.
    #[arg(long, short)]
    pub(crate) quiet: bool,
    #[command(flatten)]
    pub(crate) backend: BackendArgs,
    #[command(flatten)]
    placement: PlacementArgs,
}

/// `KEY=VALUE` pairs; a value that parses as JSON (a number, true/false) is sent as such.
fn parse_params(
    list: &[String],
) -> anyhow::Result<std::collections::BTreeMap<String, serde_json::Value>> {
    let mut out = std::collections::BTreeMap::new();
    for p in list {
        let (k, v) = p
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .with_context(|| format!("--param {p:?} is not KEY=VALUE"))?;
        let value = serde_json::from_str::<serde_json::Value>(v)
            .ok()
            .filter(|j| j.is_number() || j.is_boolean())
            .unwrap_or_else(|| serde_json::Value::String(v.to_string()));
        out.insert(k.to_string(), value);
    }
    Ok(out)
}

/// Default duration of one repetition of the quick suite (the default run), in seconds.
const QUICK_DURATION_S: f64 = 0.1;

/// Default duration of one repetition when only applications are selected, in seconds.
const APP_DURATION_S: f64 = 5.0;

/// Workloads of a suite: `quick` and `full` hold every micro workload; group suites a part.
fn suite_workloads(suite: &str) -> anyhow::Result<Vec<&'static WorkloadInfo>> {
    let list: Vec<_> = hvbench_workloads::registry()
        .filter(|w| w.suites.contains(&suite))
        .collect();
    if list.is_empty() {
        let mut suites: Vec<&str> = hvbench_workloads::registry()
            .flat_map(|w| w.suites.iter().copied())
            .collect();
        suites.sort();
        suites.dedup();
        bail!("unknown suite {suite:?}; suites: {}", suites.join(", "));
    }
    Ok(list)
}

fn select_workloads(args: &RunArgs) -> anyhow::Result<Vec<&'static WorkloadInfo>> {
    if args.workloads.is_empty() {
        return suite_workloads(&args.suite);
    }
    let mut out = Vec::new();
    for name in &args.workloads {
        match hvbench_workloads::find(name) {
            Some(w) if !out.iter().any(|o: &&WorkloadInfo| o.name == w.name) => out.push(w),
            Some(_) => {}
            None => {
                let names: Vec<&str> = hvbench_workloads::registry().map(|w| w.name).collect();
                bail!(
                    "unknown workload {name:?}; valid workloads: {}",
                    names.join(", ")
                );
            }
        }
    }
    Ok(out)
}

fn select_backends(args: &RunArgs) -> anyhow::Result<(Vec<Box<dyn Backend>>, bool)> {
    let explicit = !args.backends.is_empty();
    let opts = args.backend.options();
    let mut chosen: Vec<Box<dyn Backend>> =
        vec![backends::find("native", &opts).expect("native exists")];
    if explicit {
        for name in &args.backends {
            let Some(b) = backends::find(name, &opts) else {
                bail!(
                    "unknown backend {name:?}; valid backends: {}",
                    backends::names().join(", ")
                );
            };
            if !chosen.iter().any(|c| c.name() == b.name()) {
                chosen.push(b);
            }
        }
    } else {
        chosen.extend(
            backends::all_with(&opts)
                .into_iter()
                .filter(|b| !b.is_baseline()),
        );
    }
    Ok((chosen, explicit))
}

fn check_writable(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the output directory {}", dir.display()))?;
    let probe = dir.join(format!(".hvbench-write-test-{}", std::process::id()));
    std::fs::write(&probe, b"")
        .with_context(|| format!("the output directory {} is not writable", dir.display()))?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

/// Probes backends in parallel: each probe is bounded, so the slowest bounds the wait. Returns
/// each backend with its availability and how long its probe took.
pub fn probe_all(
    chosen: Vec<Box<dyn Backend>>,
    agent: &AgentBinary,
) -> Vec<(Box<dyn Backend>, Availability, Duration)> {
    std::thread::scope(|s| {
        let handles: Vec<_> = chosen
            .into_iter()
            .map(|b| {
                s.spawn(move || {
                    let t0 = std::time::Instant::now();
                    let a = b.probe(agent);
                    (b, a, t0.elapsed())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a probe panicked"))
            .collect()
    })
}

/// The disk and network the selected workloads need, after the data-safety checks: this
/// refuses, before anything starts, to write to a disk hvbench did not create.
fn device_plan(args: &RunArgs, workloads: &[&'static WorkloadInfo]) -> anyhow::Result<DevicePlan> {
    let disk_model = DiskModel::parse(&args.disk_model).with_context(|| {
        format!(
            "unknown --disk-model {:?}; valid: virtio, ide, ahci",
            args.disk_model
        )
    })?;
    let nic = NicModel::parse(&args.nic)
        .with_context(|| format!("unknown --nic {:?}; valid: virtio, e1000", args.nic))?;
    let mode = NetMode::parse(&args.net)
        .with_context(|| format!("unknown --net {:?}; valid: user, tap", args.net))?;
    if args.iodepth == 0 || args.iodepth > 1024 {
        bail!(
            "--iodepth must be between 1 and 1024 (got {})",
            args.iodepth
        );
    }
    let disk = match &args.disk {
        Some(path) => DiskSource::User {
            path: path.clone(),
            allow_writes: args.allow_destructive_writes,
        },
        None => {
            let size = parse_size(&args.disk_size)
                .filter(|&s| s >= 1 << 20)
                .with_context(|| {
                    format!(
                        "--disk-size {:?} is not a size of at least 1M (e.g. 1G, 256M)",
                        args.disk_size
                    )
                })?;
            DiskSource::Scratch { size }
        }
    };
    Ok(DevicePlan::for_workloads(
        workloads,
        disk,
        disk_model,
        args.iodepth,
        NetSpec { nic, mode },
    )?)
}

/// With `--explain`: the micro workloads that price the explained workloads' events, added
/// before them (those that need a disk or the applications' root only for an application). Before, because a guest's
/// history moves its unit costs: in gVisor a `getppid` cost 4.4 µs in a fresh sandbox, 14 µs
/// after a compile and 50 µs after four applications, while pgbench, run early, paid the fresh
/// price (docs/explain.md).
fn add_cost_workloads(workloads: &mut Vec<&'static WorkloadInfo>) -> anyhow::Result<()> {
    use hvbench_core::explain;
    if !workloads.iter().any(|w| explain::explained(w)) {
        bail!(
            "--explain needs an application (--suite app) or synth.events among the workloads: \
             nothing else has its events counted"
        );
    }
    let app = workloads
        .iter()
        .any(|w| explain::explained(w) && w.kind == Kind::App);
    let served = workloads
        .iter()
        .any(|w| explain::explained(w) && w.kind == Kind::App && w.needs.network);
    let extra = explain::COST_WORKLOADS
        .iter()
        .chain(explain::APP_COST_WORKLOADS.iter().filter(move |_| app))
        .chain(explain::NET_COST_WORKLOADS.iter().filter(move |_| served))
        .copied();
    let mut first = Vec::new();
    for name in extra {
        let w = hvbench_workloads::find(name).expect("a registered workload");
        if !workloads.iter().any(|o| o.name == w.name) {
            first.push(w);
        }
    }
    workloads.splice(0..0, first);
    Ok(())
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let (plan, agent) = plan(&args, None)?;
    let bar = Bar::new(args.quiet);
    let finished = efficiency::run(plan, &agent, &bar)?;
    show_finished(&args, &finished)
}

/// The efficiency scenario's plan from the command line, with its backends probed: `chosen`
/// (the baseline first), or those of `--backend` (every available one when none is named).
pub(crate) fn plan(
    args: &RunArgs,
    chosen: Option<Vec<Box<dyn Backend>>>,
) -> anyhow::Result<(Plan, AgentBinary)> {
    let mut workloads = select_workloads(args)?;
    // Applications run for seconds (a pgbench -T); micro workloads for a fraction of one.
    let only_apps = workloads.iter().all(|w| w.kind == Kind::App);
    if args.explain {
        add_cost_workloads(&mut workloads)?;
    }
    let reps = args.reps.unwrap_or(if only_apps { 3 } else { 5 });
    if reps < 2 {
        bail!(
            "--reps must be at least 2: a confidence interval needs two samples (got {})",
            reps
        );
    }

    let duration = args.duration.unwrap_or(if only_apps {
        APP_DURATION_S
    } else if args.suite == "full" {
        1.0
    } else if args.suite == "quick" && args.workloads.is_empty() {
        // Measured on a 2-vCPU cloud VM: the noise of the native CPU workloads comes in
        // regimes of seconds from the machine under the VM (cpu.dhrystone's CV was 16.7% at
        // 0.1 s repetitions, 17.2% at 0.2 s, 11.3% at 1 s), so longer repetitions barely
        // narrow it and more, shorter ones sample more regimes in the same time
        // (docs/validation.md, "Where the noise comes from").
        QUICK_DURATION_S
    } else {
        0.2
    });
    if !(duration.is_finite() && duration > 0.0 && duration <= 600.0) {
        bail!("--duration must be between 0 and 600 seconds (got {duration})");
    }
    if args.copies == 0 || args.copies > 1024 {
        bail!("--copies must be between 1 and 1024 (got {})", args.copies);
    }
    if !(args.cv_threshold > 0.0 && args.cv_threshold < 100.0) {
        bail!(
            "--cv-threshold is a percentage between 0 and 100 (got {})",
            args.cv_threshold
        );
    }
    if args.vcpus == 0 || args.memory < 32 {
        bail!(
            "guests need at least 1 vCPU and 32 MiB (got --vcpus {} --memory {})",
            args.vcpus,
            args.memory
        );
    }
    // The quick suite bounds its extra repetitions tightly so that a whole comparison stays
    // within a couple of minutes; the full suite may triple them to reach the CV threshold.
    // Applications add at most two: one of their repetitions lasts seconds to minutes.
    let default_max = if only_apps {
        reps + 2
    } else if args.suite == "full" {
        reps * 3
    } else {
        reps + 3
    };
    let max_reps = args.max_reps.unwrap_or(default_max).max(reps);
    let timeout = match args.timeout {
        Some(t) if t.is_finite() && t > 0.0 => Some(Duration::from_secs_f64(t)),
        Some(t) => bail!("--timeout must be a positive number of seconds (got {t})"),
        None => None,
    };
    let mut devices = device_plan(args, &workloads)?;
    if workloads.iter().any(|w| w.needs.rootfs) {
        devices.rootfs = Some(super::image::ensure(args.image_dir.as_deref())?);
    }
    let (chosen, explicit) = match chosen {
        Some(c) => (c, true),
        None => select_backends(args)?,
    };
    check_writable(&args.out)?;
    let agent = AgentBinary::locate()?;

    let probed: Vec<_> = probe_all(chosen, &agent)
        .into_iter()
        .map(|(b, a, _)| (b, a))
        .collect();
    let mut unavailable = Vec::new();
    for (b, a) in &probed {
        if let Availability::Unavailable { reason, hint } = a {
            unavailable.push(b.name());
            eprintln!("{}: unavailable: {reason} (fix: {hint})", b.name());
        }
    }
    if explicit
        && probed
            .iter()
            .skip(1)
            .all(|(b, a)| !a.is_available() && !b.is_baseline())
        && probed.len() > 1
    {
        bail!(
            "none of the requested backends can run here ({})",
            unavailable.join(", ")
        );
    }

    crate::signals::install();
    let settings = Settings {
        suite: args.workloads.is_empty().then(|| args.suite.clone()),
        workloads: workloads.iter().map(|w| w.name.to_string()).collect(),
        reps,
        warmup: args.warmup,
        target_s: duration,
        copies: args.copies,
        cv_threshold: args.cv_threshold / 100.0,
        max_reps,
        vcpus: args.vcpus,
        memory_mib: args.memory,
        confidence: hvbench_core::stats::CONFIDENCE,
        bootstrap_resamples: hvbench_core::stats::BOOTSTRAP_RESAMPLES,
        bootstrap_seed: hvbench_core::stats::SEED,
        devices: Default::default(),
        pinning: args.placement.policy()?,
        params: parse_params(&args.params)?,
    };
    let plan = Plan {
        backends: probed,
        workloads,
        settings,
        kernel: args.kernel.clone(),
        out_dir: args.out.clone(),
        command_line: std::env::args().collect(),
        timeout,
        devices,
        explain: args.explain,
    };
    let (least, most) = plan.measuring_time();
    eprintln!(
        "Measuring {} workload(s) on {} backend(s): about {:.0} s of measurement, up to {:.0} s \
         with extra repetitions for noisy results (plus boots)",
        plan.workloads.len(),
        plan.backends
            .iter()
            .filter(|(_, a)| a.is_available())
            .count(),
        least.as_secs_f64(),
        most.as_secs_f64()
    );
    Ok((plan, agent))
}

/// Prints the finished run's report and where its files are; the exit code says whether it
/// was interrupted.
pub(crate) fn show_finished(
    args: &RunArgs,
    finished: &efficiency::Finished,
) -> anyhow::Result<ExitCode> {
    print!("{}", hvbench_core::report::terminal(&finished.document));
    if args.explain {
        let explain = &finished.document.explain;
        print!("{}", hvbench_core::report::explain::terminal(explain));
        let page = finished.path.with_extension("explain.html");
        match std::fs::write(&page, hvbench_core::report::explain::html(explain)) {
            Ok(()) => println!("Explain chart:   {}", page.display()),
            Err(e) => eprintln!("cannot write {}: {e}", page.display()),
        }
    }
    println!("Result document: {}", finished.path.display());
    println!("Journal:         {}", finished.journal.display());
    println!(
        "{}",
        hvbench_core::report::html::write_beside(&finished.document, &finished.path)
    );
    if finished.document.interrupted {
        eprintln!("interrupted: the result document holds what was measured before the stop");
        return Ok(ExitCode::from(130));
    }
    Ok(ExitCode::SUCCESS)
}
