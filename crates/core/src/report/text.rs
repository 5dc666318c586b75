//! The terminal exporter of the [table model](super::model): what `hvbench run` prints and
//! `hvbench report` prints again; for a lifecycle, scalability or isolation document, the tables
//! its command printed.

use std::fmt::Write;

use super::model::{Block, Table};
use super::{scenario, view};
use crate::results::{RunDocument, ScenarioData};

/// Renders the whole terminal report of a document.
pub fn terminal(doc: &RunDocument) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "hvbench {} ({}) · {} · host: {} · {} CPUs · {} MiB · {}{}",
        doc.hvbench_version,
        doc.git_revision,
        doc.run_id,
        doc.host.cpu_model,
        doc.host.cpus,
        doc.host.memory_kib / 1024,
        if doc.host.virtualization == "none" {
            "bare metal".to_string()
        } else {
            format!(
                "host is a {} VM (guests are nested)",
                doc.host.virtualization
            )
        },
        if doc.interrupted {
            " · INTERRUPTED: partial results"
        } else {
            ""
        },
    );
    let s = &doc.settings;
    // A scenario document without runs describes its own settings above its tables (its
    // repetitions may be boots, its duration an idle window).
    if doc.scenario_data.is_none() || !doc.runs.is_empty() {
        let _ = writeln!(
            out,
            "{} rep(s) after {} warm-up(s), {:.2} s each, {} cop{}; CI {:.0}% bootstrap of the median\n",
            s.reps,
            s.warmup,
            s.target_s,
            s.copies,
            if s.copies == 1 { "y" } else { "ies" },
            s.confidence * 100.0
        );
    } else {
        out.push('\n');
    }
    for line in view::placement_lines(doc) {
        let _ = writeln!(out, "{line}");
    }
    out.push('\n');
    for t in view::document_tables(doc) {
        out.push_str(&table(&t));
        out.push('\n');
    }
    // The lifecycle, scalability and isolation tables, as their commands printed them.
    if let Some(data) = &doc.scenario_data {
        out.push_str(&render_scenario_data(data));
        out.push('\n');
    }
    let notes = view::notes(doc);
    if !notes.is_empty() {
        out.push_str("Notes:\n");
        for w in &notes {
            let _ = writeln!(out, "  - {w}");
        }
    }
    out
}

/// The tables of a lifecycle, scalability or isolation document, as their commands print them
/// at the end of a run: the intro, then every table that is not a detail, with its title.
pub fn render_scenario_data(data: &ScenarioData) -> String {
    let v = scenario::view(data);
    let mut s = String::new();
    for line in &v.intro {
        s.push_str(line);
        s.push('\n');
    }
    s.push('\n');
    let mut first = true;
    for b in &v.blocks {
        match b {
            Block::Table(t) if t.detail => continue,
            Block::Table(t) => {
                if !first {
                    s.push('\n');
                }
                s.push_str(&table(t));
            }
            Block::Sentence(x) => {
                s.push('\n');
                s.push_str(x);
                s.push('\n');
            }
            Block::Failures { items, .. } => {
                for f in items {
                    let _ = writeln!(s, "  {}: {}", f.who, f.reason);
                    for l in &f.tail {
                        let _ = writeln!(s, "      | {l}");
                    }
                }
            }
            Block::Notes(notes) => {
                for n in notes {
                    let _ = writeln!(s, "Note: {n}");
                }
            }
        }
        first = false;
    }
    s
}

/// A table as aligned text: its title (when it has one), the header, one rule, the rows;
/// numeric columns aligned right, lines without trailing blanks.
pub fn table(t: &Table) -> String {
    let cols = t
        .columns
        .len()
        .max(t.rows.iter().map(Vec::len).max().unwrap_or(0));
    let header: Vec<&str> = t.header();
    let text = |row: Option<usize>, c: usize| -> &str {
        match row {
            None => header.get(c).copied().unwrap_or(""),
            Some(r) => t.rows[r].get(c).map_or("", |cell| cell.text.as_str()),
        }
    };
    let lines: Vec<Option<usize>> = std::iter::once(None)
        .chain((0..t.rows.len()).map(Some))
        .collect();
    let width: Vec<usize> = (0..cols)
        .map(|c| {
            lines
                .iter()
                .map(|&r| text(r, c).chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    if !t.title.is_empty() {
        out.push_str(&t.title);
        out.push('\n');
    }
    for &r in &lines {
        let mut line = String::new();
        for (c, w) in width.iter().enumerate() {
            let cell = text(r, c);
            let pad = " ".repeat(w - cell.chars().count());
            if c > 0 {
                line.push_str("  ");
            }
            if t.numeric(c) {
                line.push_str(&pad);
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.push_str(&pad);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
        if r.is_none() {
            let total: usize = width.iter().sum::<usize>() + 2 * width.len().saturating_sub(1);
            out.push_str(&"-".repeat(total));
            out.push('\n');
        }
    }
    out
}
