//! `hvbench ab`: two configurations interleaved repetition by repetition in one run, and the
//! change of each workload from A to B (`hvbench_core::scenario::ab`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Parser};
use hvbench_core::agent::AgentBinary;
use hvbench_core::backends::{self, Backend};
use hvbench_core::devices::{DiskModel, NicModel};
use hvbench_core::scenario::ab::{self, Arm, ArmOptions};

use super::run::{self, RunArgs};
use crate::progress::Bar;

#[derive(Args, Debug)]
pub struct AbArgs {
    /// Options of configuration A, in one argument: `--nic virtio`, `--disk-model ide`,
    /// `--kernel PATH`, `--agent PATH` (another agent build), `--backend NAME`, `--uml-binary
    /// PATH`, `--gvisor-platform NAME`. Empty: the backend's defaults.
    #[arg(
        long = "a",
        value_name = "OPTIONS",
        allow_hyphen_values = true,
        default_value = ""
    )]
    a: String,
    /// Options of configuration B, as for --a.
    #[arg(
        long = "b",
        value_name = "OPTIONS",
        allow_hyphen_values = true,
        default_value = ""
    )]
    b: String,
    /// Everything else as for `hvbench run`; --backend names the backend both configurations
    /// use unless their options name one; --reps defaults to 10 (a paired test of n rounds
    /// reaches p < 0.01 only from 8 rounds on).
    #[command(flatten)]
    run: RunArgs,
}

/// The options one configuration may change.
#[derive(Parser, Debug)]
#[command(no_binary_name = true)]
struct ArmArgs {
    #[arg(long)]
    backend: Option<String>,
    #[arg(long)]
    nic: Option<String>,
    #[arg(long)]
    disk_model: Option<String>,
    #[arg(long)]
    kernel: Option<PathBuf>,
    #[arg(long)]
    agent: Option<PathBuf>,
    #[arg(long)]
    uml_binary: Option<PathBuf>,
    #[arg(long)]
    gvisor_platform: Option<String>,
}

fn arm(label: &'static str, text: &str, args: &RunArgs) -> anyhow::Result<(Arm, Vec<String>)> {
    let words: Vec<String> = text.split_whitespace().map(String::from).collect();
    let parsed = ArmArgs::try_parse_from(&words)
        .with_context(|| format!("--{label} {text:?}: not options of a configuration"))?;
    let name = match (&parsed.backend, args.backends.as_slice()) {
        (Some(b), _) => b.clone(),
        (None, [b]) => b.clone(),
        (None, []) => {
            bail!("name the backend: --backend NAME for both configurations, or in --{label}")
        }
        (None, _) => bail!("one --backend for both configurations, or one in each of --a, --b"),
    };
    let mut opts = args.backend.options();
    if let Some(p) = &parsed.uml_binary {
        opts.uml_binary = Some(p.clone());
    }
    if let Some(p) = &parsed.gvisor_platform {
        opts.gvisor_platform = Some(p.clone());
    }
    let Some(inner): Option<Box<dyn Backend>> = backends::find(&name, &opts) else {
        bail!(
            "unknown backend {name:?}; valid backends: {}",
            backends::names().join(", ")
        );
    };
    if inner.is_baseline() && parsed.agent.is_none() {
        bail!(
            "--{label}: the native baseline only differs by --agent (another agent build); \
             name a guest backend"
        );
    }
    let options = ArmOptions {
        nic: match &parsed.nic {
            Some(n) => Some(
                NicModel::parse(n)
                    .with_context(|| format!("unknown --nic {n:?}; valid: virtio, e1000"))?,
            ),
            None => None,
        },
        disk_model: match &parsed.disk_model {
            Some(m) => Some(DiskModel::parse(m).with_context(|| {
                format!("unknown --disk-model {m:?}; valid: virtio, ide, ahci")
            })?),
            None => None,
        },
        kernel: parsed.kernel.clone(),
        agent: match &parsed.agent {
            Some(p) => Some(AgentBinary::from_path(p)?),
            None => None,
        },
    };
    Ok((Arm::new(label, inner, options), words))
}

pub fn run(mut args: AbArgs) -> anyhow::Result<ExitCode> {
    let (a, words_a) = arm("a", &args.a, &args.run)?;
    let (b, words_b) = arm("b", &args.b, &args.run)?;
    if words_a == words_b {
        bail!(
            "--a and --b are the same configuration ({:?}): nothing to compare",
            args.a
        );
    }
    if args.run.reps.is_none() {
        args.run.reps = Some(ab::DEFAULT_REPS);
    }
    let opts = args.run.backend.options();
    let native = backends::find("native", &opts).expect("native exists");
    let chosen: Vec<Box<dyn Backend>> = vec![native, Box::new(a), Box::new(b)];
    let (plan, agent) = run::plan(&args.run, Some(chosen))?;
    if let Some((b, _)) = plan
        .backends
        .iter()
        .skip(1)
        .find(|(_, a)| !a.is_available())
    {
        bail!("{} cannot run here: both configurations must", b.name());
    }
    let bar = Bar::new(args.run.quiet);
    let finished = ab::run(plan, (words_a, words_b), &agent, &bar)?;
    run::show_finished(&args.run, &finished)
}
