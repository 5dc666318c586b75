//! What the lifecycle, scalability and isolation documents show (their `scenario_data`),
//! computed once in the [table model](super::model) as titled tables, sentences and lists, so
//! that every format says the same: the terminal (what `hvbench lifecycle`, `scale` and
//! `isolation` print at the end of a run and `hvbench report` prints again), Markdown, HTML and
//! CSV.
//!
//! A guest without a result is its outcome's word in its cell (`DNR`, `did not start`,
//! `skipped`), never a number, a zero or a blank; the reason is kept with the cell
//! ([`Cell::why`](super::model::Cell::why), a `title` in HTML) and every such guest is listed
//! with its reason and console tail below the tables
//! ([`Block::Failures`](super::model::Block::Failures)).
//!
//! Each scenario's view is built in its module (`isolation`, `scalability`, `lifecycle`); the
//! helpers they share are here.

use super::model::{tail_excerpt, Block, Table};
use crate::results::ScenarioData;

mod isolation;
mod lifecycle;
mod scalability;

pub(crate) use isolation::isolation;
pub(crate) use lifecycle::lifecycle;
pub(crate) use scalability::scalability;

/// The tables of one scenario document, in reading order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ScenarioView {
    /// `lifecycle`, `scalability` or `isolation` (the HTML section's id).
    pub id: &'static str,
    /// A short heading for the shareable reports.
    pub title: String,
    /// What was run and how to read it, one sentence a line.
    pub intro: Vec<String>,
    pub blocks: Vec<Block>,
}

/// The view of any scenario's tables.
pub(crate) fn view(data: &ScenarioData) -> ScenarioView {
    match data {
        ScenarioData::Lifecycle(d) => lifecycle(d),
        ScenarioData::Scalability(d) => scalability(d),
        ScenarioData::Isolation(d) => isolation(d),
    }
}

/// A table with `header`, `right[i]` saying which columns hold numbers.
fn grid(title: impl Into<String>, header: &[&str], right: &[bool]) -> Table {
    Table {
        title: title.into(),
        ..Table::new(header, right)
    }
}

fn tail_of(tail: Option<&str>) -> Vec<String> {
    tail.map(tail_excerpt).unwrap_or_default()
}

/// A number with three significant digits or so.
pub(crate) fn num(v: f64) -> String {
    let a = v.abs();
    if a >= 1000.0 {
        format!("{v:.0}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}
