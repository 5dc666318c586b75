//! `hvbench compare`: what changed between two result documents, with significance.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use clap::Args;
use hvbench_core::report::compare;

use super::report::read_document;

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// The earlier result document: the baseline of every change.
    a: PathBuf,
    /// The later result document.
    b: PathBuf,
    /// Changes smaller than this percentage get no verdict, however significant.
    #[arg(long, default_value_t = compare::DEFAULT_NOISE * 100.0, value_name = "PERCENT")]
    noise: f64,
    /// Earlier runs of A's configuration on the same host (A/A runs, repeatable): with three
    /// or more runs of a workload, a change must also be significant against the spread of
    /// their medians.
    #[arg(long = "history", value_name = "FILE")]
    history: Vec<PathBuf>,
}

pub fn compare(args: CompareArgs) -> anyhow::Result<ExitCode> {
    if !(args.noise.is_finite() && args.noise >= 0.0 && args.noise < 1000.0) {
        bail!(
            "--noise is a percentage, at least 0 (got {}); the default is {}",
            args.noise,
            compare::DEFAULT_NOISE * 100.0
        );
    }
    let a = read_document(&args.a)?;
    let b = read_document(&args.b)?;
    println!("A = {}\nB = {}", args.a.display(), args.b.display());
    let history = args
        .history
        .iter()
        .map(|p| read_document(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    print!(
        "{}",
        compare::compare_with_history(&a, &b, args.noise / 100.0, &history).render()
    );
    Ok(ExitCode::SUCCESS)
}
