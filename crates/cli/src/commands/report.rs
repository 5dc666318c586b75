//! `hvbench report`

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use hvbench_core::results::RunDocument;

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// A result document written by `hvbench run`.
    document: PathBuf,
}

pub fn report(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let doc = RunDocument::read(&args.document)?;
    print!("{}", hvbench_core::report::terminal(&doc));
    Ok(ExitCode::SUCCESS)
}
