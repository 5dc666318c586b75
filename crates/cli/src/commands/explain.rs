//! `hvbench explain`: where each application's overhead comes from, from a result document
//! with native event counts (`hvbench run --explain`), priced with its own micro workloads or
//! with those of another run (`--costs`).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;
use hvbench_core::report::explain as render;

use super::report::read_document;

#[derive(Args, Debug)]
pub struct ExplainArgs {
    /// A result document of `hvbench run --explain` (its native runs carry event counts).
    document: PathBuf,
    /// Take the unit costs (the micro workloads on native and each backend) from this document
    /// instead: a run of the micro suite on the same host.
    #[arg(long, value_name = "OTHER.json")]
    costs: Option<PathBuf>,
    /// Print Markdown tables.
    #[arg(long, conflicts_with = "csv")]
    markdown: bool,
    /// Print CSV: workload, backend, class, per_unit, extra_ns, extra_s, measured_efficiency,
    /// predicted_efficiency, predicted_ci_low, predicted_ci_high (one row per class and one
    /// `unexplained` row per workload and backend).
    #[arg(long)]
    csv: bool,
    /// Write an HTML page with the stacked bars to DIR/explain.html.
    #[arg(long, value_name = "DIR")]
    html: Option<PathBuf>,
}

pub fn explain(args: ExplainArgs) -> anyhow::Result<ExitCode> {
    let doc = read_document(&args.document)?;
    let costs = match &args.costs {
        Some(p) => read_document(p)?,
        None => doc.clone(),
    };
    if !doc.runs.iter().any(|r| r.counted.is_some()) {
        bail!(
            "{} has no event counts: run the applications with `hvbench run --suite app \
             --explain` (or synth.events with --explain)",
            args.document.display()
        );
    }
    let records = hvbench_core::explain::explain(&doc, &costs);
    let text = if args.markdown {
        render::markdown(&records)
    } else if args.csv {
        render::csv(&records)
    } else {
        render::terminal(&records)
    };
    if let Some(dir) = &args.html {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.join("explain.html");
        std::fs::write(&path, render::html(&records))
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("HTML: {}", path.display());
    }
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        other => other.context("cannot write to standard output")?,
    }
    Ok(ExitCode::SUCCESS)
}
