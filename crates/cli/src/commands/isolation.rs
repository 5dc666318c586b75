//! `hvbench isolation`: one stressed guest beside normal guests running a steady workload.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;
use hvbench_core::agent::AgentBinary;
use hvbench_core::devices::{NetMode, NetSpec, NicModel};
use hvbench_core::results::Settings;
use hvbench_core::scenario::isolation::{self, IsolationPlan, STRESSORS};
use hvbench_core::scenario::scale::DEFAULT_LAUNCH_PARALLELISM;
use hvbench_workloads::Kind;

use super::backend_args::{BackendArgs, PlacementArgs};
use super::scale::{
    check_duration, check_guest_shape, check_writable, find_backend, find_workload, parse_timeout,
    probe, report, settings, MAX_GUESTS,
};
use crate::progress::Bar;

#[derive(Args, Debug)]
pub struct IsolationArgs {
    /// Backend whose guests to start (`hvbench doctor` lists them).
    #[arg(long)]
    backend: String,
    /// Guests in all (at least 2): guest 0 is stressed, the others are the normal guests.
    #[arg(long, default_value_t = 4)]
    guests: u32,
    /// Stressors, comma-separated: memory, fork, cpu, disk, net-recv, net-send.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "memory,fork,cpu,disk,net-recv,net-send"
    )]
    stress: Vec<String>,
    /// Steady workloads every guest runs, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "cpu.primes,mem.copy")]
    steady: Vec<String>,
    /// Measured repetitions per steady workload and phase (at least 2).
    #[arg(long, default_value_t = 5)]
    reps: u32,
    /// Unreported warm-up runs in the baseline.
    #[arg(long, default_value_t = 1)]
    warmup: u32,
    /// Target duration of one repetition, seconds (calibrated once per guest, in the baseline).
    #[arg(long, default_value_t = 0.5, value_name = "SECONDS")]
    duration: f64,
    /// vCPUs of each guest.
    #[arg(long, default_value_t = 1)]
    vcpus: u32,
    /// Memory of each guest, MiB.
    #[arg(long, default_value_t = 256)]
    memory: u32,
    /// Kernel image for kernel-based guests (default: the newest /boot/vmlinuz-*).
    #[arg(long)]
    kernel: Option<PathBuf>,
    /// Give up on a guest silent for this many seconds during a job (default: derived from the
    /// workload; tripled for the stressed guest).
    #[arg(long, value_name = "SECONDS")]
    timeout: Option<f64>,
    /// Network card of QEMU guests, for net-send and net-recv: virtio (paravirtual) or e1000
    /// (emulated).
    #[arg(long, default_value = "virtio", value_name = "MODEL")]
    nic: String,
    /// How QEMU guests reach the host peer of net-send and net-recv: user (slirp, a forwarded
    /// loopback port) or tap (a tap device in a network namespace hvbench creates; root only).
    /// UML always uses tap; namespace and gVisor guests a veth pair (root only).
    #[arg(long, default_value = "user", value_name = "MODE")]
    net: String,
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

pub fn run(args: IsolationArgs) -> anyhow::Result<ExitCode> {
    if args.guests < 2 || args.guests > MAX_GUESTS {
        bail!("--guests must be between 2 and {MAX_GUESTS}: one stressed guest and at least one normal guest (got {})", args.guests);
    }
    if args.reps < 2 {
        bail!("--reps must be at least 2 (got {})", args.reps);
    }
    check_duration("duration", args.duration)?;
    check_guest_shape(args.vcpus, args.memory)?;
    let timeout = parse_timeout(args.timeout)?;
    let nic = NicModel::parse(&args.nic)
        .with_context(|| format!("unknown --nic {:?}; valid: virtio, e1000", args.nic))?;
    let mode = NetMode::parse(&args.net)
        .with_context(|| format!("unknown --net {:?}; valid: user, tap", args.net))?;
    let mut stressors: Vec<String> = Vec::new();
    for s in &args.stress {
        if !STRESSORS.contains(&s.as_str()) {
            bail!(
                "unknown stressor {s:?}; stressors: {}",
                STRESSORS.join(", ")
            );
        }
        if !stressors.contains(s) {
            stressors.push(s.clone());
        }
    }
    if stressors.is_empty() {
        bail!(
            "--stress needs at least one stressor: {}",
            STRESSORS.join(", ")
        );
    }
    let mut steady = Vec::new();
    for name in &args.steady {
        let w = find_workload(name)?;
        if matches!(w.kind, Kind::Stressor | Kind::Probe) {
            bail!("{} cannot be a steady workload", w.name);
        }
        if !steady
            .iter()
            .any(|s: &&hvbench_workloads::WorkloadInfo| s.name == w.name)
        {
            steady.push(w);
        }
    }
    if steady.is_empty() {
        bail!("--steady needs at least one workload");
    }
    let backend = find_backend(&args.backend, &args.backend_opts)?;
    check_writable(&args.out)?;
    let agent = AgentBinary::locate()?;
    let (backend, availability) = probe(backend, &agent)?;

    crate::signals::install();
    let plan = IsolationPlan {
        backend,
        availability,
        guests: args.guests,
        stressors,
        settings: Settings {
            pinning: args.placement.policy()?,
            params: Default::default(),
            ..settings(
                steady.iter().map(|w| w.name.to_string()).collect(),
                args.reps,
                args.warmup,
                args.duration,
                args.vcpus,
                args.memory,
            )
        },
        steady,
        kernel: args.kernel.clone(),
        out_dir: args.out.clone(),
        command_line: std::env::args().collect(),
        timeout,
        launch_parallelism: DEFAULT_LAUNCH_PARALLELISM,
        on_start: None,
        net: NetSpec { nic, mode },
    };
    let bar = Bar::new(args.quiet);
    let finished = isolation::run(plan, &agent, &bar)?;
    Ok(report(&finished))
}
