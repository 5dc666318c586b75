//! `hvbench list`

use std::process::ExitCode;

use clap::Args;
use hvbench_core::report::Table;

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn list(args: ListArgs) -> anyhow::Result<ExitCode> {
    let rows: Vec<_> = hvbench_workloads::registry().collect();
    if args.json {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .map(|w| {
                serde_json::json!({"name": w.name, "unit": w.unit, "higher_is_better": w.higher_is_better,
                    "suites": w.suites, "description": w.description})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = Table::new(
        &["Workload", "Unit", "Better", "Suites", "What it measures"],
        &[false; 5],
    );
    for w in rows {
        t.row(vec![
            w.name.into(),
            w.unit.into(),
            if w.higher_is_better {
                "higher"
            } else {
                "lower"
            }
            .into(),
            w.suites.join(","),
            w.description.into(),
        ]);
    }
    print!("{}", t.render());
    Ok(ExitCode::SUCCESS)
}
