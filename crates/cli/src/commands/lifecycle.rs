//! `hvbench lifecycle`: boot time, idle host CPU and memory overhead, by vCPU count.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use clap::Args;
use hvbench_core::agent::AgentBinary;
use hvbench_core::results::Settings;
use hvbench_core::scenario::lifecycle::{self, LifecyclePlan};

use super::backend_args::{BackendArgs, PlacementArgs};
use super::scale::{
    check_duration, check_guest_shape, check_writable, find_backend, probe, report, settings,
};
use crate::progress::Bar;

#[derive(Args, Debug)]
pub struct LifecycleArgs {
    /// Backend whose guests to boot (`hvbench doctor` lists them).
    #[arg(long)]
    backend: String,
    /// vCPU counts, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    vcpus: Vec<u32>,
    /// Boots per vCPU count (at least 2: boot time is a distribution).
    #[arg(long, default_value_t = 5)]
    boots: u32,
    /// Idle window over which host CPU is metered, seconds.
    #[arg(long, default_value_t = 5.0, value_name = "SECONDS")]
    idle_seconds: f64,
    /// Pause between hello and the idle window, seconds.
    #[arg(long, default_value_t = 1.0, value_name = "SECONDS")]
    settle_seconds: f64,
    /// Memory of each guest, MiB.
    #[arg(long, default_value_t = 256)]
    memory: u32,
    /// Kernel image for kernel-based guests (default: the newest /boot/vmlinuz-*).
    #[arg(long)]
    kernel: Option<PathBuf>,
    /// Directory for the result document and its journal.
    #[arg(long, default_value = "results")]
    out: PathBuf,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
    #[command(flatten)]
    backend_opts: BackendArgs,
    #[command(flatten)]
    placement: PlacementArgs,
}

pub fn run(args: LifecycleArgs) -> anyhow::Result<ExitCode> {
    if args.boots < 2 || args.boots > 1000 {
        bail!("--boots must be between 2 and 1000 (got {})", args.boots);
    }
    check_duration("idle-seconds", args.idle_seconds)?;
    if !(args.settle_seconds.is_finite() && (0.0..=600.0).contains(&args.settle_seconds)) {
        bail!(
            "--settle-seconds must be between 0 and 600 (got {})",
            args.settle_seconds
        );
    }
    if args.vcpus.is_empty() {
        bail!("--vcpus needs at least one count");
    }
    for &v in &args.vcpus {
        check_guest_shape(v, args.memory)?;
    }
    let backend = find_backend(&args.backend, &args.backend_opts)?;
    check_writable(&args.out)?;
    let agent = AgentBinary::locate()?;
    let (backend, availability) = probe(backend, &agent)?;

    crate::signals::install();
    let plan = LifecyclePlan {
        backend,
        availability,
        vcpus: args.vcpus.clone(),
        boots: args.boots,
        idle_window_s: args.idle_seconds,
        settle_s: args.settle_seconds,
        settings: Settings {
            pinning: args.placement.policy()?,
            params: Default::default(),
            ..settings(
                vec!["probe.meminfo".into()],
                args.boots,
                0,
                args.idle_seconds,
                args.vcpus[0],
                args.memory,
            )
        },
        kernel: args.kernel.clone(),
        out_dir: args.out.clone(),
        command_line: std::env::args().collect(),
    };
    let bar = Bar::new(args.quiet);
    let finished = lifecycle::run(plan, &agent, &bar)?;
    Ok(report(&finished))
}
