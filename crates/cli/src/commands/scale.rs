//! `hvbench scale`: N guests at once, each running one workload, for several N.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use hvbench_core::agent::AgentBinary;
use hvbench_core::backends::{self, Availability, Backend};
use hvbench_core::report::text::render_scenario_data;
use hvbench_core::results::Settings;
use hvbench_core::scenario::efficiency::Finished;
use hvbench_core::scenario::scale::{self, ScalePlan, DEFAULT_LAUNCH_PARALLELISM};
use hvbench_workloads::{Kind, WorkloadInfo};

use super::backend_args::{BackendArgs, PlacementArgs};
use crate::progress::Bar;

/// Guests of one step at most: each is a set of host processes, threads and descriptors.
pub(crate) const MAX_GUESTS: u32 = 256;

#[derive(Args, Debug)]
pub struct ScaleArgs {
    /// Backend whose guests to start (`hvbench doctor` lists them).
    #[arg(long)]
    backend: String,
    /// Guest counts, comma-separated: each starts that many guests at once.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8")]
    guests: Vec<u32>,
    /// The workload every guest runs (see `hvbench list`).
    #[arg(long, default_value = "cpu.compress")]
    workload: String,
    /// Measured repetitions per guest (at least 2).
    #[arg(long, default_value_t = 3)]
    reps: u32,
    /// Unreported warm-up runs per guest before the measured ones.
    #[arg(long, default_value_t = 1)]
    warmup: u32,
    /// Target duration of one repetition, seconds (calibrated once per guest).
    #[arg(long, default_value_t = 0.5, value_name = "SECONDS")]
    duration: f64,
    /// vCPUs of each guest.
    #[arg(long, default_value_t = 1)]
    vcpus: u32,
    /// Memory of each guest, MiB.
    #[arg(long, default_value_t = 256)]
    memory: u32,
    /// Guest launches in flight at once.
    #[arg(long, default_value_t = DEFAULT_LAUNCH_PARALLELISM as u32)]
    parallel_starts: u32,
    /// Kernel image for kernel-based guests (default: the newest /boot/vmlinuz-*).
    #[arg(long)]
    kernel: Option<PathBuf>,
    /// Give up on a guest silent for this many seconds during a job (default: derived from the
    /// workload).
    #[arg(long, value_name = "SECONDS")]
    timeout: Option<f64>,
    /// Directory for the result document and its journal.
    #[arg(long, default_value = "results")]
    out: PathBuf,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
    /// Where the applications' root file system is cached (default: ~/.cache/hvbench).
    #[arg(long, value_name = "DIR")]
    image_dir: Option<PathBuf>,
    #[command(flatten)]
    backend_opts: BackendArgs,
    #[command(flatten)]
    placement: PlacementArgs,
}

/// Validation shared by the scenario commands.
pub(crate) fn check_guest_shape(vcpus: u32, memory: u32) -> anyhow::Result<()> {
    if vcpus == 0 || vcpus > 64 || memory < 32 {
        bail!(
            "guests need 1 to 64 vCPUs and at least 32 MiB (got --vcpus {vcpus} --memory {memory})"
        );
    }
    Ok(())
}

pub(crate) fn check_duration(name: &str, d: f64) -> anyhow::Result<()> {
    if !(d.is_finite() && d > 0.0 && d <= 600.0) {
        bail!("--{name} must be between 0 and 600 seconds (got {d})");
    }
    Ok(())
}

pub(crate) fn parse_timeout(t: Option<f64>) -> anyhow::Result<Option<Duration>> {
    match t {
        Some(t) if t.is_finite() && t > 0.0 => Ok(Some(Duration::from_secs_f64(t))),
        Some(t) => bail!("--timeout must be a positive number of seconds (got {t})"),
        None => Ok(None),
    }
}

pub(crate) fn find_workload(name: &str) -> anyhow::Result<&'static WorkloadInfo> {
    hvbench_workloads::find(name).ok_or_else(|| {
        let names: Vec<&str> = hvbench_workloads::registry().map(|w| w.name).collect();
        anyhow::anyhow!(
            "unknown workload {name:?}; valid workloads: {}",
            names.join(", ")
        )
    })
}

pub(crate) fn find_backend(name: &str, opts: &BackendArgs) -> anyhow::Result<Box<dyn Backend>> {
    backends::find(name, &opts.options()).ok_or_else(|| {
        anyhow::anyhow!(
            "unknown backend {name:?}; valid backends: {}",
            backends::names().join(", ")
        )
    })
}

pub(crate) fn check_writable(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the output directory {}", dir.display()))?;
    let probe = dir.join(format!(".hvbench-write-test-{}", std::process::id()));
    std::fs::write(&probe, b"")
        .with_context(|| format!("the output directory {} is not writable", dir.display()))?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

/// Probes the backend; an unavailable backend is an error (nothing could run).
pub(crate) fn probe(
    backend: Box<dyn Backend>,
    agent: &AgentBinary,
) -> anyhow::Result<(Box<dyn Backend>, Availability)> {
    let (b, a, _) = super::run::probe_all(vec![backend], agent)
        .pop()
        .expect("one backend probed");
    if let Availability::Unavailable { reason, hint } = &a {
        bail!("{} is unavailable here: {reason} (fix: {hint})", b.name());
    }
    Ok((b, a))
}

/// The settings record of a scenario.
pub(crate) fn settings(
    workloads: Vec<String>,
    reps: u32,
    warmup: u32,
    target_s: f64,
    vcpus: u32,
    memory: u32,
) -> Settings {
    Settings {
        suite: None,
        workloads,
        reps,
        warmup,
        target_s,
        copies: 1,
        cv_threshold: hvbench_core::stats::CV_THRESHOLD,
        max_reps: reps,
        vcpus,
        memory_mib: memory,
        confidence: hvbench_core::stats::CONFIDENCE,
        bootstrap_resamples: hvbench_core::stats::BOOTSTRAP_RESAMPLES,
        bootstrap_seed: hvbench_core::stats::SEED,
        devices: Default::default(),
        pinning: None,
        params: Default::default(),
    }
}

/// Prints the tables and the file names; exit 130 when interrupted.
pub(crate) fn report(finished: &Finished) -> ExitCode {
    if let Some(d) = &finished.document.scenario_data {
        print!("{}", render_scenario_data(d));
    }
    for w in &finished.document.warnings {
        println!("Warning: {w}");
    }
    println!("Result document: {}", finished.path.display());
    println!("Journal:         {}", finished.journal.display());
    if finished.document.interrupted {
        eprintln!("interrupted: the result document holds what was measured before the stop");
        return ExitCode::from(130);
    }
    ExitCode::SUCCESS
}

pub fn run(args: ScaleArgs) -> anyhow::Result<ExitCode> {
    if args.reps < 2 {
        bail!("--reps must be at least 2 (got {})", args.reps);
    }
    check_duration("duration", args.duration)?;
    check_guest_shape(args.vcpus, args.memory)?;
    if args.guests.is_empty() || args.guests.iter().any(|&n| n == 0 || n > MAX_GUESTS) {
        bail!(
            "--guests takes counts between 1 and {MAX_GUESTS}, comma-separated (got {:?})",
            args.guests
        );
    }
    if args.parallel_starts == 0 || args.parallel_starts > 64 {
        bail!(
            "--parallel-starts must be between 1 and 64 (got {})",
            args.parallel_starts
        );
    }
    let timeout = parse_timeout(args.timeout)?;
    let workload = find_workload(&args.workload)?;
    if matches!(workload.kind, Kind::Stressor | Kind::Probe) {
        bail!(
            "{} is a helper of the isolation and lifecycle scenarios, not a workload to scale",
            workload.name
        );
    }
    let backend = find_backend(&args.backend, &args.backend_opts)?;
    check_writable(&args.out)?;
    let agent = AgentBinary::locate()?;
    let (backend, availability) = probe(backend, &agent)?;

    crate::signals::install();
    let plan = ScalePlan {
        backend,
        availability,
        workload,
        counts: args.guests.clone(),
        settings: Settings {
            pinning: args.placement.policy()?,
            params: Default::default(),
            ..settings(
                vec![workload.name.into()],
                args.reps,
                args.warmup,
                args.duration,
                args.vcpus,
                args.memory,
            )
        },
        kernel: args.kernel.clone(),
        out_dir: args.out.clone(),
        command_line: std::env::args().collect(),
        timeout,
        launch_parallelism: args.parallel_starts as usize,
        on_start: None,
        rootfs: if workload.needs.rootfs {
            Some(super::image::ensure(args.image_dir.as_deref())?)
        } else {
            None
        },
    };
    let bar = Bar::new(args.quiet);
    let finished = scale::run(plan, &agent, &bar)?;
    Ok(report(&finished))
}
