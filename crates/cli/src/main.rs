//! `hvbench`: measure what virtualization costs.
//!
//! A thin command line over `hvbench-core`: argument parsing, validation before anything runs,
//! progress, and exit codes (0 done, 1 error, 2 bad usage, 130 interrupted with a partial result).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod commands;
mod progress;
mod signals;

/// hvbench measures what virtualization costs: the same agent runs on the host and in guests of
/// several virtualization techniques, and each guest's score is reported as a share of the host's.
#[derive(Parser, Debug)]
#[command(name = "hvbench", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run workloads on the host and in guests, and report the efficiency of each guest.
    Run(commands::run::RunArgs),
    /// A/B in one run: two configurations of a backend (--a '--nic virtio' --b '--nic e1000',
    /// two kernels, two agent builds) interleaved repetition by repetition, and the change of
    /// each workload from A to B with a paired permutation test: the way to evaluate a change.
    Ab(commands::ab::AbArgs),
    /// List every workload: name, unit, direction, suites, what it measures.
    List(commands::list::ListArgs),
    /// Render a result document again: the terminal tables, or --html, --markdown, --csv.
    Report(commands::report::ReportArgs),
    /// Compare two result documents: what differs in their set-up, then what changed, with
    /// significance (permutation test, p < 0.01, beyond a noise threshold).
    Compare(commands::compare::CompareArgs),
    /// Where each application's overhead comes from: native event counts × each event's extra
    /// cost in the backend, predicted against measured efficiency (needs `run --explain`).
    Explain(commands::explain::ExplainArgs),
    /// Which backends can run here, why not, and how to fix it.
    Doctor(commands::doctor::DoctorArgs),
    /// Boot time over repeated boots, idle host CPU and memory overhead of a backend's guests,
    /// by vCPU count.
    Lifecycle(commands::lifecycle::LifecycleArgs),
    /// Start 1, 2, 4, ... guests at once, each running a workload: per-guest results, the
    /// aggregate throughput and the guests that did not return (DNR).
    Scale(commands::scale::ScaleArgs),
    /// Performance isolation: one guest runs a stressor beside guests running a steady
    /// workload; % degradation of the stressed and the normal guests against a baseline.
    Isolation(commands::isolation::IsolationArgs),
    /// Root file systems of application workloads: build, list, rm.
    Image(commands::image::ImageArgs),
    /// Internal: waits for the hvbench process PID to end, then removes what it left.
    #[command(hide = true)]
    Watchdog { pid: u32 },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Watchdog { pid } = cli.command {
        hvbench_core::watchdog::watch(pid);
        return ExitCode::SUCCESS;
    }
    let watchdog = matches!(
        cli.command,
        Command::Run(_)
            | Command::Ab(_)
            | Command::Doctor(_)
            | Command::Lifecycle(_)
            | Command::Scale(_)
            | Command::Isolation(_)
    )
    .then(guard_against_being_killed)
    .flatten();
    let result = match cli.command {
        Command::Run(a) => commands::run::run(a),
        Command::Ab(a) => commands::ab::run(a),
        Command::List(a) => commands::list::list(a),
        Command::Report(a) => commands::report::report(a),
        Command::Compare(a) => commands::compare::compare(a),
        Command::Explain(a) => commands::explain::explain(a),
        Command::Doctor(a) => commands::doctor::doctor(a),
        Command::Lifecycle(a) => commands::lifecycle::run(a),
        Command::Scale(a) => commands::scale::run(a),
        Command::Isolation(a) => commands::isolation::run(a),
        Command::Image(a) => commands::image::run(a),
        Command::Watchdog { .. } => unreachable!("handled above"),
    };
    if let Some(w) = watchdog {
        w.dismiss();
    }
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::from(1)
        }
    }
}

/// Before any guest starts: removes what killed runs left behind (one line when there was
/// something), and starts this run's watchdog, which removes this run's guests, cgroups and
/// work directories if this process is killed (see `hvbench_core::watchdog`).
fn guard_against_being_killed() -> Option<hvbench_core::watchdog::Watchdog> {
    if let Some(line) = hvbench_core::watchdog::describe(&hvbench_core::watchdog::sweep_stale()) {
        eprintln!("hvbench: {line}");
    }
    let started =
        std::env::current_exe().and_then(|exe| hvbench_core::watchdog::spawn(&exe, &["watchdog"]));
    match started {
        Ok(w) => Some(w),
        Err(e) => {
            eprintln!(
                "hvbench: warning: no watchdog ({e}): if this run is killed, its guests may \
                 outlive it until the next hvbench start"
            );
            None
        }
    }
}

/// The error and its causes, each cause once: library errors often name their cause in their
/// own message already.
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out
}
