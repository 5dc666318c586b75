//! The CSV export: one row per raw sample, for spreadsheets and notebooks
//! (`hvbench report RUN.json --csv`).
//!
//! Columns: `backend, workload, unit, higher_is_better, rep, value, guest_elapsed_s,
//! host_elapsed_s, host_cpu_s, clock_flag`. `rep` is the sample's 0-based index in measuring
//! order (the index `summary.outliers` uses); numbers are written with every digit the document
//! holds (shortest round-trip form); a missing value is an empty cell. Runs that were skipped or
//! did not return have no samples and so no rows. Fields are quoted as RFC 4180 says; lines end
//! with a plain LF, which every spreadsheet reads and which line-based tools (`cut`, `awk`) want.

use crate::results::RunDocument;

/// The header row's column names, in order.
pub const COLUMNS: [&str; 10] = [
    "backend",
    "workload",
    "unit",
    "higher_is_better",
    "rep",
    "value",
    "guest_elapsed_s",
    "host_elapsed_s",
    "host_cpu_s",
    "clock_flag",
];

/// Renders every sample of a document as CSV, header first.
pub fn render(doc: &RunDocument) -> String {
    let mut out = String::new();
    push_row(&mut out, COLUMNS.iter().map(|c| c.to_string()));
    for r in &doc.runs {
        for (rep, value) in r.samples.iter().enumerate() {
            let detail = r.sample_details.get(rep);
            push_row(
                &mut out,
                [
                    r.backend.clone(),
                    r.workload.clone(),
                    r.unit.clone(),
                    r.higher_is_better.to_string(),
                    rep.to_string(),
                    number(*value),
                    detail
                        .map(|d| number(d.guest_elapsed_s))
                        .unwrap_or_default(),
                    detail.map(|d| number(d.host_elapsed_s)).unwrap_or_default(),
                    detail
                        .and_then(|d| d.host_cpu_s)
                        .map(number)
                        .unwrap_or_default(),
                    detail.map(|d| d.clock_flag.to_string()).unwrap_or_default(),
                ]
                .into_iter(),
            );
        }
    }
    out
}

fn number(v: f64) -> String {
    if v.is_finite() {
        v.to_string()
    } else {
        String::new()
    }
}

fn push_row(out: &mut String, fields: impl Iterator<Item = String>) {
    for (i, f) in fields.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&field(&f));
    }
    out.push('\n');
}

/// A field quoted when it holds a separator, a quote or a line break.
fn field(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\"")).into()
    } else {
        s.into()
    }
}

#[cfg(test)]
mod tests {
    use super::field;

    #[test]
    fn fields_with_separators_or_quotes_are_quoted() {
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("two\nlines"), "\"two\nlines\"");
    }
}
