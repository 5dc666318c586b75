//! The one table model every report format exports (as hyperfine's exporters export one list of
//! results): what a document shows is computed once, as titled [`Table`]s of [`Cell`]s, sentences
//! and lists ([`Block`]), and the terminal ([`super::text`]), Markdown ([`super::markdown`]), HTML
//! ([`super::html`]) and CSV ([`super::csv`]) only write it in their syntax. So a number, a
//! `DNR` or a `skipped` reads the same in every format, and a table added here appears in all.
//!
//! A cell without a number carries why ([`Cell::why`], a `title` in HTML) and whether it is a
//! failure ([`Cell::bad`], marked in HTML): decided from the typed outcome, never from the text.

use crate::results::Outcome;

/// One column: its heading and whether it holds numbers (aligned right).
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub numeric: bool,
}

/// One cell: its text, why it has no number (when it has none) and whether that is a failure.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Cell {
    pub text: String,
    /// Why the cell says `DNR`, `did not start` or `skipped`: the reason, for a tooltip.
    pub why: Option<String>,
    /// A failure (did not start, did not return, ...): marked as bad where a format can.
    pub bad: bool,
}

impl Cell {
    /// A cell for something that has no number: the outcome's word (`DNR`, `did not start`,
    /// `skipped`), with its reason (a failure's with its kind's words) as `why`.
    pub fn outcome(o: &Outcome) -> Cell {
        Cell {
            text: o.label().into(),
            why: o.describe(),
            bad: o.is_failed(),
        }
    }

    /// A failure's cell with another text (`DNR (1 of 2), others 3.2%`).
    pub fn bad(text: impl Into<String>, why: impl Into<String>) -> Cell {
        let why = why.into();
        Cell {
            text: text.into(),
            why: (!why.is_empty()).then_some(why),
            bad: true,
        }
    }

    /// A plain cell with a reason for its text (`skipped` with why).
    pub fn with_why(text: impl Into<String>, why: impl Into<String>) -> Cell {
        let why = why.into();
        Cell {
            text: text.into(),
            why: (!why.is_empty()).then_some(why),
            bad: false,
        }
    }
}

impl From<String> for Cell {
    fn from(text: String) -> Cell {
        Cell {
            text,
            ..Cell::default()
        }
    }
}

impl From<&str> for Cell {
    fn from(text: &str) -> Cell {
        Cell::from(text.to_string())
    }
}

/// A titled table.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub title: String,
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<Cell>>,
    /// A table too long for a terminal (one line per guest or boot): only in the shareable
    /// reports, folded in HTML.
    pub detail: bool,
    /// An HTML anchor for the table, when other parts of the page link to it.
    pub id: Option<String>,
}

impl Table {
    /// An untitled table with the headings `header`; `right[i]` says column i holds numbers
    /// (the terminal's lists: `hvbench list`, `doctor`, `compare`).
    pub fn new(header: &[&str], right: &[bool]) -> Table {
        let columns: Vec<(&str, bool)> = header
            .iter()
            .enumerate()
            .map(|(i, h)| (*h, right.get(i).copied().unwrap_or(false)))
            .collect();
        Table::titled("", &columns)
    }

    /// A table with `columns` as (heading, numeric).
    pub fn titled<S: AsRef<str>>(title: impl Into<String>, columns: &[(S, bool)]) -> Table {
        Table {
            title: title.into(),
            columns: columns
                .iter()
                .map(|(name, numeric)| Column {
                    name: name.as_ref().to_string(),
                    numeric: *numeric,
                })
                .collect(),
            rows: Vec::new(),
            detail: false,
            id: None,
        }
    }

    /// A table whose columns are all text (a CSV's).
    pub fn plain<S: AsRef<str>>(title: impl Into<String>, names: &[S]) -> Table {
        let columns: Vec<(&str, bool)> = names.iter().map(|n| (n.as_ref(), false)).collect();
        Table::titled(title, &columns)
    }

    pub fn push(&mut self, row: Vec<Cell>) {
        self.rows.push(row);
    }

    /// Adds a row of plain cells.
    pub fn push_text(&mut self, row: Vec<String>) {
        self.rows.push(row.into_iter().map(Cell::from).collect());
    }

    /// Adds a row of plain cells (the same as [`Table::push_text`]).
    pub fn row(&mut self, cells: Vec<String>) {
        self.push_text(cells);
    }

    /// The table as the terminal shows it ([`super::text::table`]).
    pub fn render(&self) -> String {
        super::text::table(self)
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn header(&self) -> Vec<&str> {
        self.columns.iter().map(|c| c.name.as_str()).collect()
    }

    pub fn numeric(&self, col: usize) -> bool {
        self.columns.get(col).is_some_and(|c| c.numeric)
    }
}

/// One guest (or boot) that did not start, did not return or was not measured, listed below
/// the tables with why.
#[derive(Debug, Clone, PartialEq)]
pub struct FailureItem {
    /// The guest, and where: `native-g2 under fork (normal)`.
    pub who: String,
    pub reason: String,
    /// The telling lines of its console tail.
    pub tail: Vec<String>,
}

/// A part of a report, in reading order.
#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    Table(Table),
    /// A conclusion drawn from the tables (where the aggregate stops rising).
    Sentence(String),
    /// Guests that did not return (or boots that failed), with why.
    Failures {
        title: String,
        items: Vec<FailureItem>,
    },
    Notes(Vec<String>),
}

/// The telling lines of a console tail: the first lines that say panic, Out of memory or error,
/// then the last three.
pub fn tail_excerpt(tail: &str) -> Vec<String> {
    let lines: Vec<&str> = tail.lines().filter(|l| !l.trim().is_empty()).collect();
    let last = lines.len().saturating_sub(3);
    let mut out: Vec<String> = lines[..last]
        .iter()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            l.contains("panic") || l.contains("out of memory") || l.contains("error")
        })
        .take(2)
        .map(|l| l.to_string())
        .collect();
    out.extend(lines[last..].iter().map(|l| l.to_string()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::FailureKind;

    #[test]
    fn a_cell_without_a_number_says_why_from_the_outcome() {
        let c = Cell::outcome(&Outcome::failed(FailureKind::DidNotStart, "no hello"));
        assert_eq!(c.text, "did not start");
        assert_eq!(c.why.as_deref(), Some("did not start: no hello"));
        assert!(c.bad);
        let c = Cell::outcome(&Outcome::skipped("no KVM"));
        assert_eq!((c.text.as_str(), c.bad), ("skipped", false));
    }

    #[test]
    fn a_tail_excerpt_keeps_the_telling_lines_and_the_last_three() {
        let tail = "boot\nKernel panic - not syncing\na\nb\nc\nd";
        assert_eq!(
            tail_excerpt(tail),
            ["Kernel panic - not syncing", "b", "c", "d"]
        );
    }
}
