//! The Markdown exporter of the [table model](super::model): the terminal report's tables as
//! GitHub-flavoured Markdown, for a README, an issue or a pull request (`hvbench report RUN.json
//! --markdown`), the tables of a lifecycle, scalability or isolation document included, and
//! their detail tables, which the terminal leaves out.
//!
//! Cells are escaped for Markdown tables (`|`, line breaks) and for inline HTML (`<`, `&`), since
//! renderers of issues and READMEs accept HTML and document strings (console tails, reasons) may
//! hold anything.

use std::fmt::Write;

use super::model::{Block, Table};
use super::scenario::{self, ScenarioView};
use super::view;
use crate::results::RunDocument;

/// Renders the Markdown report of a document.
pub fn render(doc: &RunDocument) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# hvbench run {}\n", cell(&doc.run_id));
    let _ = writeln!(
        out,
        "hvbench {} ({}), {} scenario, {} to {}{}.\n",
        cell(&doc.hvbench_version),
        cell(&doc.git_revision),
        cell(&doc.scenario),
        cell(&doc.started_at),
        cell(&doc.finished_at),
        if doc.interrupted {
            " **(interrupted: partial results)**"
        } else {
            ""
        },
    );
    let h = &doc.host;
    let _ = writeln!(
        out,
        "Host: {}, {} CPUs ({} allowed), {} MiB, kernel {}, {}.\n",
        cell(&h.cpu_model),
        h.cpus,
        h.cpus_allowed,
        h.memory_kib / 1024,
        cell(&h.kernel),
        if h.virtualization == "none" {
            "bare metal".to_string()
        } else {
            format!(
                "itself a {} VM (guests are nested)",
                cell(&h.virtualization)
            )
        },
    );
    let s = &doc.settings;
    // A scenario document without runs describes its own settings with its tables.
    if doc.scenario_data.is_none() || !doc.runs.is_empty() {
        let _ = writeln!(
            out,
            "{} repetition(s) after {} warm-up(s), {} s each, {} cop{}; intervals are {:.0}% \
             bootstrap intervals of the median ({} resamples, seed {:#x}).\n",
            s.reps,
            s.warmup,
            s.target_s,
            s.copies,
            if s.copies == 1 { "y" } else { "ies" },
            s.confidence * 100.0,
            s.bootstrap_resamples,
            s.bootstrap_seed,
        );
    }
    for line in view::placement_lines(doc) {
        let _ = writeln!(out, "{}\n", cell(line.trim()));
    }
    for t in view::document_tables(doc) {
        out.push_str(&table(&t));
    }
    if let Some(data) = &doc.scenario_data {
        out.push_str(&scenario_md(&scenario::view(data)));
    }
    let notes = view::notes(doc);
    if !notes.is_empty() {
        out.push_str("## Notes\n\n");
        for w in &notes {
            let _ = writeln!(out, "- {}", cell(w));
        }
        out.push('\n');
    }
    out
}

/// A `##` heading and a pipe table, numbers right-aligned.
fn table(t: &Table) -> String {
    let mut out = format!("## {}\n\n", cell(&t.title));
    out.push_str(&pipe_table(t));
    out.push('\n');
    out
}

/// A pipe table, numbers right-aligned.
pub(crate) fn pipe_table(t: &Table) -> String {
    let line = |cells: Vec<&str>| {
        let cells: Vec<String> = cells.iter().map(|c| cell(c.trim_end())).collect();
        format!("| {} |\n", cells.join(" | "))
    };
    let mut out = line(t.header());
    let rule: Vec<&str> = (0..t.columns.len())
        .map(|i| if t.numeric(i) { "---:" } else { "---" })
        .collect();
    let _ = writeln!(out, "| {} |", rule.join(" | "));
    for row in &t.rows {
        out.push_str(&line(row.iter().map(|c| c.text.as_str()).collect()));
    }
    out
}

/// The tables of a lifecycle, scalability or isolation document: a `##` heading, what was run,
/// a `###` heading and a pipe table per table, then the guests that did not return with why
/// (a `DNR` cell's reason is there), and the scenario's notes.
fn scenario_md(v: &ScenarioView) -> String {
    let mut out = format!("## {}\n\n", cell(&v.title));
    let intro: Vec<String> = v.intro.iter().map(|l| sentence(&cell(l))).collect();
    let _ = writeln!(out, "{}\n", intro.join(" "));
    for b in &v.blocks {
        match b {
            Block::Table(t) => {
                let _ = writeln!(out, "### {}\n", cell(&t.title));
                out.push_str(&pipe_table(t));
                out.push('\n');
            }
            Block::Sentence(x) => {
                let _ = writeln!(out, "{}\n", cell(x));
            }
            Block::Failures { title, items } => {
                let _ = writeln!(out, "### {}\n", cell(title));
                for f in items {
                    let _ = writeln!(out, "- {}: {}", cell(&f.who), cell(&f.reason));
                    for l in &f.tail {
                        let _ = writeln!(out, "  - console: {}", cell(l));
                    }
                }
                out.push('\n');
            }
            Block::Notes(notes) => {
                out.push_str("### Notes on these tables\n\n");
                for n in notes {
                    let _ = writeln!(out, "- {}", cell(n));
                }
                out.push('\n');
            }
        }
    }
    out
}

/// A line ending with a full stop.
fn sentence(s: &str) -> String {
    if s.ends_with(['.', '!', '?', ':']) {
        s.to_string()
    } else {
        format!("{s}.")
    }
}

/// Text made safe for one Markdown table cell: no line breaks, no unescaped pipes or HTML.
pub fn cell(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '|' => out.push_str("\\|"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\r' => {}
            '\n' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::cell;

    #[test]
    fn cells_cannot_break_a_table_or_inject_html() {
        assert_eq!(cell("a|b\nc"), "a\\|b c");
        assert_eq!(cell("<script>&"), "&lt;script&gt;&amp;");
    }
}
