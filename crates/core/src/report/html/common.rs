//! The sections every document has, whatever its scenario: the overview (what was run, the
//! command line, the backends and the notes), the host, the settings and agent, and each
//! backend's configuration with every guest it launched.

use std::fmt::Write as _;

use super::{anchor, escape, kv_table, swatch, table_html, Section};
use crate::backends::Availability;
use crate::report::{drift, scenario, view};
use crate::results::{GuestRecord, RunDocument};

pub(super) fn overview(doc: &RunDocument) -> Section {
    let mut body = String::new();
    if doc.interrupted {
        body.push_str(
            "<p class=\"banner\">Interrupted: this run was stopped before the end. What is shown \
             was measured; what is missing was not run.</p>\n",
        );
    }
    let s = &doc.settings;
    match doc.scenario_data.as_ref().filter(|_| doc.runs.is_empty()) {
        None => {
            let _ = writeln!(
                body,
                "<p>{} measured repetition(s) of each workload after {} warm-up(s), {} s each, \
                 {} cop{}; repetitions interleaved across backends. Intervals are {:.0}% \
                 bootstrap intervals of the median.</p>",
                s.reps,
                s.warmup,
                s.target_s,
                s.copies,
                if s.copies == 1 { "y" } else { "ies" },
                s.confidence * 100.0,
            );
        }
        Some(data) => {
            let v = scenario::view(data);
            let _ = writeln!(
                body,
                "<p>{}<br>\nThe tables are in <a href=\"#{}\">{}</a>.</p>",
                v.intro.first().map(|l| escape(l)).unwrap_or_default(),
                escape(v.id),
                escape(&v.title),
            );
        }
    }
    let _ = writeln!(
        body,
        "<p>Command line: <code>{}</code></p>",
        escape(&shell_words(&doc.command_line))
    );
    body.push_str(&table_html(doc, &view::backends_table(doc), Some(0)));
    let notes = view::notes(doc);
    if !notes.is_empty() {
        body.push_str("<h3>Notes</h3>\n<ul class=\"warnings\">\n");
        for w in &notes {
            let _ = writeln!(body, "<li>{}</li>", escape(w));
        }
        body.push_str("</ul>\n");
    }
    Section {
        id: "overview".into(),
        title: "Overview".into(),
        body,
    }
}

pub(super) fn host(doc: &RunDocument) -> Section {
    let h = &doc.host;
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let mut rows = vec![
        ("Hostname", h.hostname.clone()),
        ("CPU", h.cpu_model.clone()),
        (
            "CPUs",
            format!("{} online, {} allowed to hvbench", h.cpus, h.cpus_allowed),
        ),
        (
            "Memory",
            format!(
                "{} MiB ({:.1} GiB)",
                h.memory_kib / 1024,
                h.memory_kib as f64 / 1048576.0
            ),
        ),
        ("Kernel", h.kernel.clone()),
        (
            "Virtualization",
            if h.virtualization == "none" {
                "none: bare metal".to_string()
            } else {
                format!("{}: every guest is a nested guest", h.virtualization)
            },
        ),
        ("Evidence", h.virtualization_evidence.clone()),
        (
            "/dev/kvm",
            if h.dev_kvm { "present" } else { "absent" }.into(),
        ),
        ("KVM nested", opt(&h.kvm_nested)),
        ("Clocksource", opt(&h.clocksource)),
        ("CPU governor", opt(&h.cpu_governor)),
        (
            "XSTATE",
            h.xstate_bytes
                .map_or("-".into(), |n| format!("{n} bytes (CPUID 0xD)")),
        ),
    ];
    let mut body = kv_table(rows.drain(..).map(|(k, v)| (k.to_string(), v)));
    if !h.mitigations.is_empty() {
        let _ = writeln!(
            body,
            "<details>\n<summary>CPU vulnerability mitigations ({}): they change system-call \
             and fault costs</summary>",
            h.mitigations.len()
        );
        body.push_str(&kv_table(
            h.mitigations.iter().map(|(k, v)| (k.clone(), v.clone())),
        ));
        body.push_str("</details>\n");
    }
    if let Some(t) = doc.host_drift.as_ref().and_then(drift::table) {
        body.push_str(&table_html(doc, &t, None));
        body.push_str(
            "<p class=\"note\">The probe runs the same loops before every workload and at the \
             end; a loop that moved by more than a change you look for means this host cannot \
             tell that change from its own movement between runs (use <code>hvbench ab</code>).\
             </p>\n",
        );
    }
    Section {
        id: "host".into(),
        title: "Host".into(),
        body,
    }
}

pub(super) fn settings(doc: &RunDocument) -> Section {
    let s = &doc.settings;
    let a = &doc.agent;
    let mut body = kv_table(
        [
            (
                "Suite",
                s.suite
                    .clone()
                    .unwrap_or_else(|| "(workloads named)".into()),
            ),
            ("Workloads", s.workloads.join(", ")),
            ("Repetitions", s.reps.to_string()),
            ("Warm-ups", s.warmup.to_string()),
            (
                "Target duration",
                format!("{} s per repetition", s.target_s),
            ),
            ("Copies", s.copies.to_string()),
            (
                "CV threshold",
                format!(
                    "{:.1}% (extra repetitions up to {} in all)",
                    s.cv_threshold * 100.0,
                    s.max_reps
                ),
            ),
            (
                "Guest size",
                format!("{} vCPU(s), {} MiB", s.vcpus, s.memory_mib),
            ),
            (
                "Placement",
                view::placement_lines(doc)
                    .iter()
                    .map(|l| l.trim().trim_start_matches("Placement: "))
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            (
                "Intervals",
                format!(
                    "{:.0}% bootstrap, {} resamples, seed {:#x}",
                    s.confidence * 100.0,
                    s.bootstrap_resamples,
                    s.bootstrap_seed
                ),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v)),
    );
    body.push_str("<h3>Agent</h3>\n");
    body.push_str(&kv_table(
        [
            ("Version", a.version.clone()),
            ("Path", a.path.clone()),
            ("SHA-256", a.sha256.clone()),
            ("Size", format!("{} bytes", a.size_bytes)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v)),
    ));
    Section {
        id: "settings".into(),
        title: "Settings and agent".into(),
        body,
    }
}

pub(super) fn backends(doc: &RunDocument) -> Section {
    let mut body = String::new();
    for b in &doc.backends {
        let _ = writeln!(
            body,
            "<h3 id=\"{}\">{}{} <small class=\"note\">{}</small></h3>",
            escape(&anchor("backend", &b.name)),
            swatch(doc, &b.name),
            escape(&b.name),
            escape(&b.technique),
        );
        match &b.availability {
            Availability::Available { detail } => {
                let _ = writeln!(
                    body,
                    "<p><span class=\"status-ok\">available</span>: {}</p>",
                    escape(detail)
                );
            }
            Availability::Unavailable { reason, hint } => {
                let _ = writeln!(
                    body,
                    "<p><span class=\"status-bad\">unavailable</span>: {}<br>Fix: {}</p>",
                    escape(reason),
                    escape(hint)
                );
            }
        }
        if b.guests.is_empty() && b.availability.is_available() {
            body.push_str("<p class=\"note\">No guest was launched.</p>\n");
        }
        for g in &b.guests {
            body.push_str(&guest(g));
        }
    }
    Section {
        id: "backends".into(),
        title: "Backend configurations".into(),
        body,
    }
}

fn guest(g: &GuestRecord) -> String {
    let mut out = format!("<h4>{}</h4>\n", escape(&g.label));
    let c = &g.config;
    let mut rows: Vec<(String, String)> = Vec::new();
    let mut push = |k: &str, v: String| rows.push((k.to_string(), v));
    if let Some(v) = c.vcpus {
        push("vCPUs", v.to_string());
    }
    if let Some(m) = c.memory_mib {
        push("Memory", format!("{m} MiB"));
    }
    for (k, v) in &c.versions {
        push(&format!("Version of {k}"), v.clone());
    }
    for (k, v) in &c.settings {
        push(k, v.clone());
    }
    push(
        "Boot",
        g.boot_s
            .map(|s| format!("{s:.3} s (launch to hello, host clock)"))
            .unwrap_or_else(|| "never said hello".into()),
    );
    if let Some(u) = g.guest_uptime_s {
        push("Guest uptime at hello", format!("{u:.3} s"));
    }
    if let Some(k) = &g.kernel {
        push("Guest kernel", k.clone());
    }
    if let Some(n) = g.cpus {
        push("Guest CPUs", n.to_string());
    }
    if let Some(m) = g.mem_total_kib {
        push("Guest memory", format!("{} MiB", m / 1024));
    }
    if let Some(cs) = &g.clocksource {
        push("Guest clocksource", cs.clone());
    }
    push("Host CPU accounting", g.cpu_accounting.clone());
    out.push_str(&kv_table(rows.into_iter()));
    if !c.command_line.is_empty() {
        let _ = writeln!(
            out,
            "<p>Command line:</p>\n<pre><code>{}</code></pre>",
            escape(&shell_words(&c.command_line))
        );
    }
    if !g.setup_notes.is_empty() {
        out.push_str("<p>Set-up by the agent:</p>\n<ul>\n");
        for n in &g.setup_notes {
            let _ = writeln!(out, "<li>{}</li>", escape(n));
        }
        out.push_str("</ul>\n");
    }
    if let Some(f) = &g.failure {
        let _ = writeln!(
            out,
            "<p class=\"status-bad\">Failure: {}</p>",
            escape(&f.describe())
        );
        if let Some(tail) = &f.console_tail {
            let _ = writeln!(out, "<pre class=\"failure\">{}</pre>", escape(tail));
        }
    }
    out
}

/// An argument vector as a shell would need it typed: arguments with spaces or quotes quoted.
fn shell_words(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            let plain = !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%^".contains(c));
            if plain {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words_quote_what_a_shell_would_split() {
        let args: Vec<String> = ["qemu", "-append", "console=ttyS0 quiet", "it's", ""]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            shell_words(&args),
            r"qemu -append 'console=ttyS0 quiet' 'it'\''s' ''"
        );
    }
}
