//! The sections of an efficiency run: how each guest compares with the host, the raw samples of
//! every workload with the host CPU they cost, and how long guests took to start.

use std::fmt::Write as _;

use super::{anchor, charts, escape, figure, table_html, Section};
use crate::report::fmt_sig;
use crate::report::model::{Cell, Table};
use crate::report::view::{self, measured};
use crate::results::RunDocument;

pub(super) fn sections(doc: &RunDocument) -> Vec<Section> {
    vec![
        efficiency(doc),
        workloads(doc),
        startup(doc),
        other_scenarios(),
    ]
}

fn efficiency(doc: &RunDocument) -> Section {
    let mut body = String::new();
    match charts::efficiency(doc) {
        Some(chart) => body.push_str(&figure(
            "chart-efficiency",
            "Efficiency of each backend per workload",
            chart,
            "Each bar is a guest's score as a share of the host's (for times: host / guest), \
             so 100% (dashed line) means no overhead and shorter is worse. Whiskers: the 95% \
             bootstrap interval of the ratio. Pale bars: the interval contains 100%, so there is \
             no measurable overhead (never read as a gain). A bar cut at the right edge carries \
             its value; DNR: the guest did not return.",
        )),
        None => body.push_str(
            "<p class=\"note\">Only the host was measured in this run: there is no guest to \
             compare with it.</p>\n",
        ),
    }
    for b in view::guest_backends(doc) {
        body.push_str(&table_html(
            doc,
            &view::efficiency_table(doc, &b.name),
            None,
        ));
    }
    Section {
        id: "efficiency".into(),
        title: "Efficiency".into(),
        body,
    }
}

fn workloads(doc: &RunDocument) -> Section {
    let mut body = String::from(
        "<p class=\"note\">Per workload: every repetition (dots; outliers by the modified \
         z-score ringed in red, never dropped), the median (bar) and its 95% interval (band) on \
         each backend; beside them the host CPU time each backend spent per unit of work and \
         the host cores it kept busy.</p>\n",
    );
    for w in view::workloads(doc) {
        let id = anchor("workload", w);
        let _ = writeln!(body, "<h3 id=\"{}\">{}</h3>", escape(&id), escape(w));
        body.push_str(&figure(
            &format!("chart-{id}"),
            &format!("Repetitions of {w} and host CPU per unit of work"),
            charts::workload(doc, w),
            "",
        ));
        body.push_str(&table_html(doc, &workload_table(doc, w), Some(0)));
    }
    Section {
        id: "workloads".into(),
        title: "Workloads: samples and host CPU".into(),
        body,
    }
}

/// Every backend's samples of one workload: runs, median, interval, spread and host CPU.
fn workload_table(doc: &RunDocument, workload: &str) -> Table {
    let mut t = Table::titled(
        "",
        &[
            ("Backend", false),
            ("Runs", true),
            ("Median", true),
            ("95% CI", true),
            ("CV", true),
            ("Min", true),
            ("Max", true),
            ("Host CPU", true),
            ("Cores busy", true),
            ("Iterations", true),
            ("Notes", false),
        ],
    );
    for b in &doc.backends {
        let Some(r) = doc.run(&b.name, workload) else {
            continue;
        };
        let mut row: Vec<Cell> = vec![r.backend.clone().into(), r.samples.len().to_string().into()];
        match measured(r) {
            Some(s) => row.extend(
                [
                    format!("{} {}", fmt_sig(s.median), r.unit),
                    format!("{} – {}", fmt_sig(s.ci_low), fmt_sig(s.ci_high)),
                    format!("{:.1}%", s.cv * 100.0),
                    fmt_sig(s.min),
                    fmt_sig(s.max),
                ]
                .map(Cell::from),
            ),
            None => {
                row.push(view::status_cell(r));
                row.extend((0..4).map(|_| Cell::default()));
            }
        }
        row.extend(
            [
                view::host_cpu_text(r),
                r.host_cpu_per_op
                    .as_ref()
                    .map(|c| format!("{:.2}", c.cores_busy))
                    .unwrap_or_else(|| "-".into()),
                r.iterations
                    .map(|i| i.to_string())
                    .unwrap_or_else(|| "-".into()),
                match measured(r) {
                    Some(_) => view::run_notes(r),
                    None => r.outcome.describe().unwrap_or_default(),
                },
            ]
            .map(Cell::from),
        );
        t.push(row);
    }
    t
}

fn startup(doc: &RunDocument) -> Section {
    let mut body = String::new();
    match charts::boot_times(doc) {
        Some(chart) => body.push_str(&figure(
            "chart-boot",
            "Start-up time of each backend's guests",
            chart,
            "One dot per guest launched during the run: the time from launch to the agent's \
             hello, measured by the host. A backend relaunched after a failure has several.",
        )),
        None => body.push_str("<p class=\"note\">No guest said hello in this run.</p>\n"),
    }
    let mut t = Table::titled(
        "",
        &[
            ("Backend", false),
            ("Guest", false),
            ("Boot", true),
            ("Guest uptime at hello", true),
            ("Outcome", false),
        ],
    );
    let secs = |s: Option<f64>| s.map(|s| format!("{s:.3} s")).unwrap_or("-".into());
    for b in &doc.backends {
        for g in &b.guests {
            t.push(vec![
                b.name.clone().into(),
                g.label.clone().into(),
                secs(g.boot_s).into(),
                secs(g.guest_uptime_s).into(),
                g.failure
                    .as_ref()
                    .map(|f| view::brief(&f.describe(), 240))
                    .unwrap_or_else(|| "ran".into())
                    .into(),
            ]);
        }
    }
    body.push_str(&table_html(doc, &t, Some(0)));
    Section {
        id: "startup".into(),
        title: "Guest start-up".into(),
        body,
    }
}

/// What the other scenarios will show, so a reader of an efficiency page knows where to look.
fn other_scenarios() -> Section {
    Section {
        id: "scenarios".into(),
        title: "Other scenarios".into(),
        body: "<p class=\"note\">This is an efficiency run. The isolation scenario (how much a \
               stressed guest degrades normal guests beside it), the scalability scenario \
               (aggregate throughput against the number of concurrent guests, with guests that \
               did not return marked) and the lifecycle scenario (boot-time distribution, idle \
               CPU, memory overhead) write documents of their own, whose pages carry those \
               charts. The start-up times of this run's guests are above.</p>\n"
            .into(),
    }
}
