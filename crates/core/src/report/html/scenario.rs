//! The section of a lifecycle, scalability or isolation run: the tables its command printed
//! ([`crate::report::scenario`]), with a chart where one tells more than the table (aggregate
//! throughput against guest count; the boot times), the per-guest detail tables folded, and every
//! guest that did not return listed with its reason and console tail. A cell without a number
//! (`DNR`, `did not start`, `skipped`) carries its reason in its `title`.

use std::fmt::Write as _;

use super::{charts, escape, figure, table_html, Section};
use crate::report::model::Block;
use crate::report::scenario::{self, ScenarioView};
use crate::results::{RunDocument, ScenarioData};

pub(super) fn sections(doc: &RunDocument, data: &ScenarioData) -> Vec<Section> {
    let v = scenario::view(data);
    let mut body = String::new();
    let _ = writeln!(
        body,
        "<p>{}</p>",
        v.intro
            .iter()
            .map(|l| escape(l))
            .collect::<Vec<_>>()
            .join("<br>\n")
    );
    match data {
        ScenarioData::Scalability(d) => body.push_str(&match charts::scalability(doc, d) {
            Some(chart) => figure(
                "chart-scalability",
                &format!("Aggregate throughput of {} against guest count", d.workload),
                chart,
                &escape(&format!(
                    "The sum of the median throughputs of the guests that returned ({}), \
                     for each number of guests running {} at once on {}. {} Red labels: \
                     guests that did not return (DNR), which add nothing to the aggregate.",
                    d.aggregate_unit,
                    d.workload,
                    d.backend,
                    match d.saturation_guests {
                        Some(n) => format!(
                            "Dashed line: beyond {n} guest(s) the aggregate stops rising (by \
                             more than {:.0}%).",
                            d.rise_threshold * 100.0
                        ),
                        None => "Too few guest counts were measured to tell where the \
                                 aggregate stops rising."
                            .into(),
                    }
                )),
            ),
            None => "<p class=\"note\">No guest count has an aggregate (no guest returned a \
                     result): there is nothing to chart.</p>\n"
                .into(),
        }),
        ScenarioData::Lifecycle(_) => {
            if let Some(chart) = charts::boot_times(doc) {
                body.push_str(&figure(
                    "chart-boot",
                    "Boot times of every guest",
                    chart,
                    "One dot per boot: the time from launch to the agent's hello, measured by \
                     the host, over every vCPU count. Boots that failed are counted beside \
                     the dots and listed below.",
                ));
            }
        }
        ScenarioData::Isolation(_) => {}
    }
    body.push_str(&blocks(doc, &v));
    vec![Section {
        id: v.id.into(),
        title: v.title.clone(),
        body,
    }]
}

fn blocks(doc: &RunDocument, v: &ScenarioView) -> String {
    let mut out = String::new();
    for b in &v.blocks {
        match b {
            Block::Table(t) if t.detail => {
                let _ = writeln!(
                    out,
                    "<details>\n<summary>{} ({} row{})</summary>",
                    escape(&t.title),
                    t.rows.len(),
                    if t.rows.len() == 1 { "" } else { "s" }
                );
                out.push_str(&table_html(doc, t, None));
                out.push_str("</details>\n");
            }
            Block::Table(t) => out.push_str(&table_html(doc, t, None)),
            Block::Sentence(x) => {
                let _ = writeln!(out, "<p><strong>{}</strong></p>", escape(x));
            }
            Block::Failures { title, items } => {
                let _ = writeln!(out, "<h3>{}</h3>\n<ul class=\"warnings\">", escape(title));
                for f in items {
                    let _ = write!(
                        out,
                        "<li><strong>{}</strong>: {}",
                        escape(&f.who),
                        escape(&f.reason)
                    );
                    if !f.tail.is_empty() {
                        let _ = write!(
                            out,
                            "\n<pre class=\"failure\">{}</pre>\n",
                            escape(&f.tail.join("\n"))
                        );
                    }
                    out.push_str("</li>\n");
                }
                out.push_str("</ul>\n");
            }
            Block::Notes(notes) => {
                out.push_str("<h3>Notes</h3>\n<ul class=\"warnings\">\n");
                for n in notes {
                    let _ = writeln!(out, "<li>{}</li>", escape(n));
                }
                out.push_str("</ul>\n");
            }
        }
    }
    out
}
