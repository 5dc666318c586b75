//! The HTML report: one self-contained page per result document, with its charts as inline SVG.
//!
//! The page needs nothing but itself to be read: the style sheet is inline, the charts are SVG
//! drawn by plotters ([`charts`]), there are no scripts, no fonts and no links outside the page,
//! and a Content-Security-Policy forbids loading anything, so a page mailed or attached to an
//! issue looks the same everywhere and offline. Every string taken from the document is
//! escaped ([`escape`]): reasons and console tails hold whatever a guest printed.
//!
//! The page is a list of sections. The ones every document has (overview, host, settings,
//! backends) are built in [`common`]; the scenario's own sections come from the scenario's module
//! ([`efficiency`]; [`scenario`] for the isolation, scalability and lifecycle scenarios, whose
//! documents carry `scenario_data`), chosen in [`scenario_sections`]. The page around them and
//! the tables and figures every section uses are written here.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::model::Table;
use super::view;
use crate::results::RunDocument;

mod charts;
mod common;
mod efficiency;
mod scenario;

use common::{backends, host, overview, settings};

/// The file name `write` gives the page inside its directory.
pub const INDEX: &str = "index.html";

/// One part of the page, listed in its table of contents.
struct Section {
    /// The fragment identifier (`#efficiency`).
    id: String,
    title: String,
    /// Already escaped HTML.
    body: String,
}

/// Renders the page of a document.
pub fn render(doc: &RunDocument) -> String {
    let mut sections = vec![overview(doc)];
    if let Some(t) = view::applications_table(doc) {
        let mut body = table_html(doc, &t, Some(1));
        if let (Some(chart), Some(q)) = (charts::qos_curves(doc), view::qos_table(doc)) {
            body.push_str(&figure(
                "qos-curve",
                "QoS curve of app.web",
                chart,
                &escape(&q.title),
            ));
            body.push_str(&table_html(doc, &q, Some(0)));
        }
        sections.push(Section {
            id: "applications".into(),
            title: "Applications".into(),
            body,
        });
    }
    sections.extend(scenario_sections(doc));
    if let Some(ab) = &doc.ab {
        sections.push(Section {
            id: "ab".into(),
            title: "A/B".into(),
            body: table_html(doc, &super::ab::table(ab), None),
        });
    }
    sections.push(host(doc));
    sections.push(settings(doc));
    sections.push(backends(doc));
    page(doc, &sections)
}

/// The scenario's own sections: charts and tables of what it measured.
fn scenario_sections(doc: &RunDocument) -> Vec<Section> {
    if let Some(data) = &doc.scenario_data {
        return scenario::sections(doc, data);
    }
    match doc.scenario.as_str() {
        "efficiency" => efficiency::sections(doc),
        other => vec![Section {
            id: "scenario".into(),
            title: format!("Scenario {other}"),
            body: format!(
                "<p class=\"note\">This version of hvbench has no charts for the <code>{}</code> \
                 scenario; the overview, host, settings and backends below are complete, and \
                 every measurement is in the result document.</p>",
                escape(other)
            ),
        }],
    }
}

/// Why a page could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("cannot create the report directory {path}: {source}")]
    Directory {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the HTML report {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Writes the page as `dir/index.html`, creating `dir`, and returns the file's path.
pub fn write(doc: &RunDocument, dir: &Path) -> Result<PathBuf, WriteError> {
    std::fs::create_dir_all(dir).map_err(|source| WriteError::Directory {
        path: dir.into(),
        source,
    })?;
    let path = dir.join(INDEX);
    write_file(doc, &path)?;
    Ok(path)
}

/// Writes the page to a file, through a temporary file renamed over it so that a reader never
/// sees half a page.
fn write_file(doc: &RunDocument, path: &Path) -> Result<(), WriteError> {
    let tmp = path.with_extension("html.tmp");
    let err = |source| WriteError::File {
        path: path.into(),
        source,
    };
    std::fs::write(&tmp, render(doc)).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        err(e)
    })
}

/// The page written beside a result document (`RUN.json` → `RUN.html`): what happened, for
/// `hvbench run` to print. Displays as `HTML report:     PATH`, or why it was not written.
#[derive(Debug)]
pub struct Beside {
    pub path: PathBuf,
    pub result: Result<(), WriteError>,
}

impl std::fmt::Display for Beside {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.result {
            Ok(()) => write!(f, "HTML report:     {}", self.path.display()),
            Err(e) => write!(f, "HTML report:     not written: {e}"),
        }
    }
}

/// Writes the page beside the document at `doc_path`. A failure is reported, not returned as an
/// error: the measurements are safe in the document, and `hvbench report` can render it later.
pub fn write_beside(doc: &RunDocument, doc_path: &Path) -> Beside {
    let path = doc_path.with_extension("html");
    let result = write_file(doc, &path);
    Beside { path, result }
}

/// Text made safe for HTML content and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A fragment identifier made of the safe characters of `s`: `sys.getppid` → `sys-getppid`.
fn anchor(prefix: &str, s: &str) -> String {
    let slug: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    format!("{prefix}-{slug}")
}

const STYLE: &str = r#"
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  color: #222; background: #fff; margin: 0; line-height: 1.45; font-size: 15px; }
header, nav, main, footer { max-width: 1080px; margin: 0 auto; padding: 0 24px; }
header { padding-top: 20px; }
h1 { font-size: 1.6em; margin: 0.2em 0; }
h2 { font-size: 1.3em; margin: 1.6em 0 0.5em; padding-top: 0.4em; border-top: 1px solid #ddd; }
h3 { font-size: 1.08em; margin: 1.3em 0 0.4em; }
h4 { font-size: 1em; margin: 1em 0 0.3em; }
code, pre { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, "Liberation Mono", monospace; font-size: 0.88em; }
pre { background: #f6f6f6; border: 1px solid #e4e4e4; padding: 8px 10px; overflow-x: auto; white-space: pre-wrap; word-break: break-all; }
nav ol { margin: 0.4em 0; padding-left: 1.4em; columns: 2; }
.meta { color: #555; margin: 0.2em 0; }
.banner { background: #fff3cd; border: 1px solid #e0c060; padding: 8px 12px; font-weight: 600; }
.note { color: #555; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.92em; }
caption { text-align: left; font-weight: 600; padding: 4px 0; }
th, td { border-bottom: 1px solid #e4e4e4; padding: 3px 10px 3px 0; text-align: left; vertical-align: top; }
thead th { border-bottom: 2px solid #bbb; }
tbody td:first-child { white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.kv th { font-weight: 600; white-space: nowrap; color: #444; }
.swatch { display: inline-block; width: 0.8em; height: 0.8em; border-radius: 2px; margin-right: 0.4em; vertical-align: baseline; }
figure { margin: 0.5em 0 1.2em; }
figcaption { color: #555; font-size: 0.9em; max-width: 960px; }
svg.chart { display: block; max-width: 100%; height: auto; }
.status-ok { color: #1a7f37; }
.status-bad { color: #b42318; }
pre.failure { background: #fff4f2; border-color: #f0c8c0; }
ul.warnings li { margin: 0.2em 0; }
footer { color: #777; font-size: 0.85em; padding-top: 2em; padding-bottom: 2em; }
"#;

fn page(doc: &RunDocument, sections: &[Section]) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         style-src 'unsafe-inline'; img-src data:\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"generator\" content=\"hvbench\">\n\
         <title>hvbench {} · {}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        escape(&doc.scenario),
        escape(&doc.run_id),
    );
    let _ = writeln!(
        out,
        "<header>\n<h1>hvbench {} run <code>{}</code></h1>\n<p class=\"meta\">hvbench {} ({}) · \
         {} to {} · {}</p>\n</header>",
        escape(&doc.scenario),
        escape(&doc.run_id),
        escape(&doc.hvbench_version),
        escape(&doc.git_revision),
        escape(&doc.started_at),
        escape(&doc.finished_at),
        escape(&host_line(doc)),
    );
    out.push_str("<nav>\n<ol>\n");
    for s in sections {
        let _ = writeln!(
            out,
            "<li><a href=\"#{}\">{}</a></li>",
            escape(&s.id),
            escape(&s.title)
        );
    }
    out.push_str("</ol>\n</nav>\n<main>\n");
    for s in sections {
        let _ = writeln!(
            out,
            "<section id=\"{}\">\n<h2>{}</h2>\n{}</section>",
            escape(&s.id),
            escape(&s.title),
            s.body
        );
    }
    out.push_str(
        "</main>\n<footer>Rendered by hvbench from the result document alone; every number on \
         this page is in it, with every raw sample.</footer>\n</body>\n</html>\n",
    );
    out
}

/// `AMD EPYC · 2 CPUs · 23 GiB · kernel … · a kvm VM (guests are nested)`.
fn host_line(doc: &RunDocument) -> String {
    let h = &doc.host;
    format!(
        "{} · {} CPUs · {:.1} GiB · kernel {} · {}",
        h.cpu_model,
        h.cpus,
        h.memory_kib as f64 / (1024.0 * 1024.0),
        h.kernel.split_whitespace().next().unwrap_or(""),
        if h.virtualization == "none" {
            "bare metal".to_string()
        } else {
            format!("host is a {} VM (guests are nested)", h.virtualization)
        }
    )
}

/// A colour swatch for a backend, matching its colour in the charts.
fn swatch(doc: &RunDocument, backend: &str) -> String {
    format!(
        "<span class=\"swatch\" style=\"background:{}\"></span>",
        charts::css(charts::backend_color(doc, backend))
    )
}

/// Two columns: names and values.
fn kv_table(rows: impl Iterator<Item = (String, String)>) -> String {
    let mut out = String::from("<table class=\"kv\">\n<tbody>\n");
    for (k, v) in rows {
        let _ = writeln!(
            out,
            "<tr><th scope=\"row\">{}</th><td>{}</td></tr>",
            escape(&k),
            escape(&v)
        );
    }
    out.push_str("</tbody>\n</table>\n");
    out
}

/// A table of cells; `backend_column` gets each row's backend colour swatch.
fn table_html(doc: &RunDocument, t: &Table, backend_column: Option<usize>) -> String {
    let class = |i: usize, bad: bool| {
        let mut classes = Vec::new();
        if t.numeric(i) {
            classes.push("num");
        }
        if bad {
            classes.push("status-bad");
        }
        if classes.is_empty() {
            String::new()
        } else {
            format!(" class=\"{}\"", classes.join(" "))
        }
    };
    let id =
        t.id.as_ref()
            .map(|id| format!(" id=\"{}\"", escape(id)))
            .unwrap_or_default();
    let mut out = format!("<table{id}>\n");
    if !t.title.is_empty() {
        let _ = writeln!(out, "<caption>{}</caption>", escape(&t.title));
    }
    out.push_str("<thead><tr>");
    for (i, h) in t.header().iter().enumerate() {
        let _ = write!(
            out,
            "<th scope=\"col\"{}>{}</th>",
            class(i, false),
            escape(h)
        );
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for row in &t.rows {
        out.push_str("<tr>");
        for (i, c) in row.iter().enumerate() {
            let sw = if backend_column == Some(i) {
                swatch(doc, &c.text)
            } else {
                String::new()
            };
            let title = c
                .why
                .as_ref()
                .map(|w| format!(" title=\"{}\"", escape(w)))
                .unwrap_or_default();
            let _ = write!(
                out,
                "<td{}{title}>{sw}{}</td>",
                class(i, c.bad),
                escape(&c.text)
            );
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table>\n");
    out
}

/// A chart in a figure with its caption, or a note saying why it could not be drawn.
fn figure(id: &str, label: &str, chart: charts::Drawn, caption: &str) -> String {
    match chart {
        Ok(svg) => format!(
            "<figure>\n{}<figcaption>{}</figcaption>\n</figure>\n",
            svg.replacen(
                "<svg ",
                &format!(
                    "<svg id=\"{}\" class=\"chart\" role=\"img\" aria-label=\"{}\" ",
                    escape(id),
                    escape(label)
                ),
                1
            ),
            caption
        ),
        Err(e) => format!(
            "<p class=\"note\">The chart “{}” could not be drawn: {}</p>\n",
            escape(label),
            escape(&e.to_string())
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_covers_markup_and_both_quotes() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn anchors_keep_only_safe_characters() {
        assert_eq!(anchor("w", "sys.getppid"), "w-sys-getppid");
        assert_eq!(anchor("b", "a\"<b>"), "b-a--b-");
    }
}
