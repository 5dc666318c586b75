//! `hvbench report`: render a result document again, in the terminal or as a shareable file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use hvbench_core::report;
use hvbench_core::results::RunDocument;

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// A result document written by `hvbench run`, `lifecycle`, `scale` or `isolation`.
    document: PathBuf,
    /// Write a self-contained HTML page with SVG charts to DIR/index.html (with the scenario's
    /// tables, and aggregate throughput against guest count for `scale`).
    #[arg(long, value_name = "DIR")]
    html: Option<PathBuf>,
    /// Print the tables as Markdown (for a README, an issue or a pull request).
    #[arg(long, conflicts_with = "csv")]
    markdown: bool,
    /// Print every raw sample as CSV, one row per repetition (for spreadsheets; of each guest at
    /// each step for lifecycle, scale and isolation documents: --help lists the columns).
    ///
    /// `hvbench run` documents: backend, workload, unit, higher_is_better, rep, value,
    /// guest_elapsed_s, host_elapsed_s, host_cpu_s, clock_flag; one row per repetition of each
    /// workload on each backend (runs that did not return have none).
    ///
    /// `lifecycle`, `scale` and `isolation` documents: scenario, backend, step, guest, role,
    /// metric, unit, rep, value, status, reason; one row per measurement of each guest at each
    /// step (step: the guest count, the stressor or `baseline`, the vCPU count). scale: each
    /// guest's repetitions; isolation: each steady workload's repetitions of each guest (role
    /// baseline, stressed or normal); lifecycle: boot_s and guest_uptime_s per boot,
    /// idle_cpu_pct_of_core per one-second slice, host_rss_kib, host_pss_kib, guest_used_kib and
    /// overhead_kib. A guest that did not return is a row with status DNR, its reason and an
    /// empty value (never 0); one that never started, status `did not start`; a stressor that
    /// could not run, a row with status skipped.
    #[arg(long)]
    csv: bool,
    /// Print app.web's QoS curve as CSV: one row per load its searches tried, in each
    /// repetition on each backend: backend, rep, sessions, good_pct, and for the load the
    /// repetition settled on (chosen) its req_per_s and p99_ms (empty for the other loads).
    #[arg(long, conflicts_with_all = ["csv", "markdown"])]
    qos_csv: bool,
    /// Print the host probe's passes as CSV: one row per timed pass of each loop at each
    /// point of the run: at, before (the workload that followed), offset_s, loop, pass, ms.
    #[arg(long, conflicts_with_all = ["csv", "markdown", "qos_csv"])]
    drift_csv: bool,
}

/// Reads a result document; the error names the file and the problem once (the I/O error
/// inside `ReadError::Io` is already in its message, so its source chain is not printed again).
pub fn read_document(path: &Path) -> anyhow::Result<RunDocument> {
    RunDocument::read(path).map_err(|e| anyhow::anyhow!("{e}"))
}

pub fn report(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let doc = read_document(&args.document)?;
    let stdout_text = if args.markdown {
        Some(report::markdown::render(&doc))
    } else if args.csv {
        Some(report::csv::render(&doc))
    } else if args.qos_csv {
        Some(report::csv::qos_curve(&doc).with_context(|| {
            format!(
                "{} has no QoS curve: app.web did not run (hvbench run --workload app.web)",
                args.document.display()
            )
        })?)
    } else if args.drift_csv {
        Some(report::csv::host_drift(&doc).with_context(|| {
            format!(
                "{} has no host probe (host_drift): written by an hvbench before the probe, or \
                 by a scenario",
                args.document.display()
            )
        })?)
    } else if args.html.is_none() {
        Some(report::terminal(&doc))
    } else {
        None
    };
    if let Some(dir) = &args.html {
        let path = report::html::write(&doc, dir)?;
        // On stderr when stdout carries Markdown or CSV, so a redirection captures only that.
        if stdout_text.is_some() {
            eprintln!("HTML report: {}", path.display());
        } else {
            println!("HTML report: {}", path.display());
        }
    }
    if let Some(text) = stdout_text {
        let mut out = std::io::stdout().lock();
        match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
            // `hvbench report X --csv | head` closes the pipe early: not an error.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            other => other.context("cannot write the report to standard output")?,
        }
    }
    Ok(ExitCode::SUCCESS)
}
