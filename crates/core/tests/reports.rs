//! Every report format rendered from fixed result documents (`fixtures/`, see its README) and
//! compared exactly with the expected output in `snapshots/`, as hyperfine tests its exports.
//!
//! After an intended change of a format, rewrite the snapshots and review their diff:
//! `UPDATE_SNAPSHOTS=1 cargo test -p hvbench-core --test reports`.
//!
//! The HTML page is also opened in headless Chromium, when it is installed, to check that a real
//! browser lays out its SVG charts; under CI (`CI=true`) a missing Chromium fails the test.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hvbench_core::backends::{Availability, BackendConfig};
use hvbench_core::report::text::render_scenario_data;
use hvbench_core::report::{self, compare};
use hvbench_core::results::*;

fn tests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests")
}

fn fixture(name: &str) -> RunDocument {
    let path = tests_dir().join("fixtures").join(name);
    RunDocument::read(&path).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "hvbench-core-reports-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Compares `actual` with `snapshots/<name>`, or rewrites it when `UPDATE_SNAPSHOTS=1`.
fn snapshot(name: &str, actual: &str) {
    let path = tests_dir().join("snapshots").join(name);
    if std::env::var("UPDATE_SNAPSHOTS").as_deref() == Ok("1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "snapshot {} unreadable ({e}): create it with UPDATE_SNAPSHOTS=1",
            path.display()
        )
    });
    if expected == actual {
        return;
    }
    let saved = std::env::temp_dir().join(format!("hvbench-snapshot-{name}"));
    let _ = std::fs::write(&saved, actual);
    let (line, want, got) = expected
        .lines()
        .zip(actual.lines())
        .enumerate()
        .find(|(_, (e, a))| e != a)
        .map(|(i, (e, a))| (i + 1, e.to_string(), a.to_string()))
        .unwrap_or_else(|| {
            let n = expected.lines().count().min(actual.lines().count());
            (
                n + 1,
                "(end or line endings)".into(),
                "(end or line endings)".into(),
            )
        });
    panic!(
        "{name} differs from its snapshot at line {line}:\n  expected: {want}\n  actual:   {got}\n\
         The whole output is in {}. If the change is intended: UPDATE_SNAPSHOTS=1 cargo test -p \
         hvbench-core --test reports, and review the diff.",
        saved.display()
    );
}

#[test]
fn terminal_report_matches_its_snapshots() {
    snapshot("native.txt", &report::terminal(&fixture("native.json")));
    snapshot("guests.txt", &report::terminal(&fixture("guests.json")));
}

#[test]
fn markdown_report_matches_its_snapshots() {
    snapshot(
        "native.md",
        &report::markdown::render(&fixture("native.json")),
    );
    snapshot(
        "guests.md",
        &report::markdown::render(&fixture("guests.json")),
    );
}

#[test]
fn csv_export_matches_its_snapshots() {
    snapshot("native.csv", &report::csv::render(&fixture("native.json")));
    snapshot("guests.csv", &report::csv::render(&fixture("guests.json")));
}

#[test]
fn html_report_matches_its_snapshots() {
    snapshot(
        "native.html",
        &report::html::render(&fixture("native.json")),
    );
    snapshot(
        "guests.html",
        &report::html::render(&fixture("guests.json")),
    );
}

#[test]
fn comparison_matches_its_snapshot() {
    let c = compare::compare(
        &fixture("compare-a.json"),
        &fixture("compare-b.json"),
        compare::DEFAULT_NOISE,
    );
    snapshot("compare.txt", &c.render());
}

#[test]
fn markdown_says_no_measurable_overhead_when_the_interval_contains_100_percent() {
    let doc = fixture("guests.json");
    let md = report::markdown::render(&doc);
    for e in &doc.efficiency {
        let row = md
            .lines()
            .find(|l| {
                l.starts_with(&format!("| {} |", e.workload))
                    && md
                        .split(&format!("## Efficiency of {} ", e.backend))
                        .nth(1)
                        .is_some_and(|rest| rest.split("## ").next().unwrap().contains(l))
            })
            .unwrap_or_else(|| panic!("no row for {}/{}", e.backend, e.workload));
        let contains = e.ci_low <= 1.0 && e.ci_high >= 1.0;
        assert_eq!(row.contains("no measurable overhead"), contains, "{row}");
    }
    assert!(md.contains("| --- | ---: |"), "numbers right-aligned");
}

#[test]
fn csv_has_one_row_per_sample_with_exact_values() {
    let doc = fixture("guests.json");
    let csv = report::csv::render(&doc);
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "backend,workload,unit,higher_is_better,rep,value,guest_elapsed_s,host_elapsed_s,host_cpu_s,clock_flag"
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    let samples: usize = doc.runs.iter().map(|r| r.samples.len()).sum();
    assert_eq!(rows.len(), samples);
    for row in &rows {
        assert_eq!(row.len(), 10, "{row:?}");
        let run = doc.run(row[0], row[1]).unwrap();
        let rep: usize = row[4].parse().unwrap();
        let value: f64 = row[5].parse().unwrap();
        assert_eq!(value, run.samples[rep], "values round-trip exactly");
        assert_eq!(row[2], run.unit);
        assert_eq!(row[9], run.sample_details[rep].clock_flag.to_string());
    }
    // DNR runs have no samples and so no rows, never a zero.
    assert!(doc.runs.iter().any(|r| r.outcome.is_failed()));
    assert!(rows.iter().all(|r| r[0] != "gvisor"));
}

/// Ids of the `<svg>` charts the page of the guests fixture must have.
fn expected_chart_ids(doc: &RunDocument) -> Vec<String> {
    let mut ids = vec!["chart-efficiency".to_string(), "chart-boot".to_string()];
    for w in &doc.settings.workloads {
        ids.push(format!("chart-workload-{}", w.replace('.', "-")));
    }
    ids
}

#[test]
fn html_report_is_self_contained_with_every_chart() {
    let doc = fixture("guests.json");
    let html = report::html::render(&doc);
    for id in expected_chart_ids(&doc) {
        assert_eq!(
            html.matches(&format!("<svg id=\"{id}\" class=\"chart\""))
                .count(),
            1,
            "chart {id}"
        );
    }
    for forbidden in [
        "<script", "<link", "<img", "@import", "url(", "src=", "<iframe",
    ] {
        assert!(!html.contains(forbidden), "the page has {forbidden}");
    }
    let external: Vec<&str> = html
        .match_indices("http")
        .map(|(i, _)| &html[i..(i + 40).min(html.len())])
        .filter(|s| !s.starts_with("http://www.w3.org/2000/svg") && !s.starts_with("http-equiv"))
        .collect();
    assert!(
        external.is_empty(),
        "addresses outside the page: {external:?}"
    );
    for section in [
        "overview",
        "efficiency",
        "workloads",
        "startup",
        "host",
        "settings",
        "backends",
    ] {
        assert!(
            html.contains(&format!("<section id=\"{section}\">")),
            "{section}"
        );
    }
    // Every backend's configuration, failures included.
    for b in &doc.backends {
        assert!(
            html.contains(&format!("id=\"backend-{}\"", b.name)),
            "{}",
            b.name
        );
    }
    assert!(
        html.contains("cannot create sandbox"),
        "gvisor's failure is shown"
    );
    assert!(html.contains("-accel tcg"), "qemu's command line is shown");
    // The host is the baseline, not a bar; every guest backend is in the legend.
    let chart = &html[html.find("id=\"chart-efficiency\"").unwrap()..];
    let chart = &chart[..chart.find("</svg>").unwrap()];
    for name in ["qemu-tcg", "namespace", "gvisor"] {
        assert!(
            chart.contains(&format!(">\n{name}\n</text>")),
            "{name} in the legend"
        );
    }
    // gvisor never started: its runs say so, never "DNR".
    assert!(
        chart.contains("did not start"),
        "gvisor's runs are marked did not start"
    );
}

#[test]
fn a_document_with_only_the_host_renders_without_an_efficiency_chart() {
    let html = report::html::render(&fixture("native.json"));
    assert!(!html.contains("id=\"chart-efficiency\""));
    assert!(html.contains("Only the host was measured"));
    assert!(html.contains("id=\"chart-workload-sys-getppid\""));
}

#[test]
fn every_string_from_the_document_is_escaped() {
    let mut doc = fixture("guests.json");
    let evil = "<script>alert(1)</script>\"'><img src=x onerror=alert(2)>";
    doc.run_id = evil.into();
    doc.backends[1].technique = evil.into();
    doc.backends[3].guests[0].failure =
        Some(Failure::new(FailureKind::DidNotStart, evil).with_tail(evil));
    doc.host.cpu_model = evil.into();
    doc.warnings.push(evil.into());
    for r in doc.runs.iter_mut().filter(|r| r.workload == "cpu.primes") {
        r.workload = evil.into();
        r.outcome = Outcome::failed(FailureKind::Failed, evil);
    }
    for e in doc
        .efficiency
        .iter_mut()
        .filter(|e| e.workload == "cpu.primes")
    {
        e.workload = evil.into();
    }
    doc.settings.workloads[1] = evil.into();
    let html = report::html::render(&doc);
    assert!(!html.contains("<script"), "unescaped script");
    assert!(!html.contains("<img"), "unescaped element");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    let md = report::markdown::render(&doc);
    assert!(!md.contains("<script"), "unescaped script in Markdown");
}

#[test]
fn the_page_is_written_as_index_html_or_beside_the_document() {
    let doc = fixture("native.json");
    let dir = tmpdir("write");
    let path = report::html::write(&doc, &dir.join("out")).unwrap();
    assert_eq!(path, dir.join("out").join("index.html"));
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        report::html::render(&doc)
    );
    let beside = report::html::write_beside(&doc, &dir.join("RUN.json"));
    assert!(beside.result.is_ok(), "{beside}");
    assert_eq!(beside.path, dir.join("RUN.html"));
    assert!(beside.path.is_file());
    assert_eq!(
        beside.to_string(),
        format!("HTML report:     {}", dir.join("RUN.html").display())
    );
    let failed = report::html::write_beside(&doc, &dir.join("missing").join("RUN.json"));
    assert!(failed.result.is_err());
    assert!(failed.to_string().contains("not written"), "{failed}");
}

#[test]
fn comparison_lists_differences_first_and_judges_changes() {
    let c = compare::compare(
        &fixture("compare-a.json"),
        &fixture("compare-b.json"),
        compare::DEFAULT_NOISE,
    );
    assert!(
        c.differences
            .iter()
            .any(|d| d.field == "host.cpu_governor" && d.b == "performance"),
        "{:?}",
        c.differences
    );
    let primes = c
        .changes
        .iter()
        .find(|m| m.workload == "cpu.primes")
        .unwrap();
    let test = primes.test.as_ref().unwrap();
    assert!(test.p_value < compare::SIGNIFICANCE, "{test:?}");
    assert!(test.change > 0.2, "{test:?}");
    assert_eq!(primes.verdict, compare::ChangeVerdict::Faster);
    let text = c.render();
    let differences = text.find("host.cpu_governor").unwrap();
    assert!(differences < text.find("Changes from A to B").unwrap());

    // The same change within a wider noise threshold gets no verdict.
    let c = compare::compare(&fixture("compare-a.json"), &fixture("compare-b.json"), 0.30);
    let primes = c
        .changes
        .iter()
        .find(|m| m.workload == "cpu.primes")
        .unwrap();
    assert_eq!(primes.verdict, compare::ChangeVerdict::NoSignificantChange);
}

#[test]
fn a_document_compared_with_itself_has_no_difference_and_no_change() {
    let a = fixture("guests.json");
    let c = compare::compare(&a, &a, compare::DEFAULT_NOISE);
    assert!(c.differences.is_empty(), "{:?}", c.differences);
    assert!(c.only_in_a.is_empty() && c.only_in_b.is_empty());
    for m in &c.changes {
        match &m.test {
            Some(t) => {
                assert_eq!(t.change, 0.0);
                assert_eq!(m.verdict, compare::ChangeVerdict::NoSignificantChange);
            }
            None => assert!(
                matches!(m.verdict, compare::ChangeVerdict::NotComparable { .. }),
                "{m:?}"
            ),
        }
    }
}

#[test]
fn comparing_different_runs_names_what_is_in_one_only() {
    let c = compare::compare(
        &fixture("native.json"),
        &fixture("guests.json"),
        compare::DEFAULT_NOISE,
    );
    assert!(c.only_in_b.contains(&"qemu-tcg/cpu.cpuid".to_string()));
    assert!(c
        .differences
        .iter()
        .any(|d| d.field == "backends.qemu-tcg" && d.a == "(not in this run)"));
    assert!(c.differences.iter().any(|d| d.field == "settings.reps"));
    // Work directories differ in every run and are not reported as a difference.
    assert!(c.differences.iter().all(|d| !d.a.contains("hvbench-<pid>")));
}

// ---- a real browser ----

fn find_chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ]
    .iter()
    .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
    .find(|p| p.is_file())
}

/// Runs Chromium headless on a page and returns the DOM it built (`--dump-dom`).
fn dump_dom(browser: &Path, page: &Path, profile: &Path) -> String {
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1400,3000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "chromium did not finish rendering {} in 120 s",
                page.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    reader.join().unwrap()
}

#[test]
fn html_report_renders_its_charts_in_headless_chromium() {
    let Some(browser) = find_chromium() else {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!(
                "chromium is not installed, and under CI this test must run: \
                 scripts/install-deps should install it (apt-get install chromium)"
            );
        }
        eprintln!("skipped: chromium is not installed (apt-get install chromium)");
        return;
    };
    let doc = fixture("guests.json");
    let dir = tmpdir("chromium");
    let page = report::html::write(&doc, &dir.join("report")).unwrap();

    // The page as shipped: a browser parses it and keeps every chart as SVG.
    let dom = dump_dom(&browser, &page, &dir.join("profile-1"));
    assert!(dom.contains("</html>"), "no DOM from chromium: {dom:.200}");
    for id in expected_chart_ids(&doc) {
        assert!(
            dom.contains(&format!("<svg id=\"{id}\"")),
            "{id} not in the DOM"
        );
    }

    // A copy with a probe script (the page has none, and its Content-Security-Policy forbids
    // scripts, so the copy drops the policy) that records what the browser laid out.
    let html = std::fs::read_to_string(&page).unwrap();
    let csp_start = html
        .find("<meta http-equiv=\"Content-Security-Policy\"")
        .unwrap();
    let csp_end = csp_start + html[csp_start..].find('>').unwrap() + 1;
    let probe = format!(
        "{}{}",
        &html[..csp_start],
        &html[csp_end..].replace(
            "</body>",
            r#"<script>
const charts = [...document.querySelectorAll('svg.chart')].map(s => {
  const r = s.getBoundingClientRect();
  return { id: s.id, ns: s.namespaceURI, width: r.width, height: r.height,
           texts: s.querySelectorAll('text').length,
           shapes: s.querySelectorAll('rect, circle, polyline, line, path').length };
});
const out = document.createElement('pre');
out.id = 'probe';
out.textContent = JSON.stringify(charts);
document.body.appendChild(out);
</script></body>"#,
        )
    );
    let probe_page = dir.join("report").join("probe.html");
    std::fs::write(&probe_page, probe).unwrap();
    let dom = dump_dom(&browser, &probe_page, &dir.join("profile-2"));
    let json = dom
        .split("<pre id=\"probe\">")
        .nth(1)
        .and_then(|s| s.split("</pre>").next())
        .unwrap_or_else(|| panic!("the probe did not run: {dom:.300}"))
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    let charts: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    let ids: Vec<&str> = charts.iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids, expected_chart_ids_in_page_order(&doc), "{charts:?}");
    for c in &charts {
        assert_eq!(c["ns"], "http://www.w3.org/2000/svg", "{c}");
        assert!(c["width"].as_f64().unwrap() > 400.0, "laid out: {c}");
        assert!(c["height"].as_f64().unwrap() > 80.0, "laid out: {c}");
        assert!(c["texts"].as_u64().unwrap() >= 4, "labelled: {c}");
        assert!(c["shapes"].as_u64().unwrap() >= 4, "drawn: {c}");
    }
}

fn expected_chart_ids_in_page_order(doc: &RunDocument) -> Vec<String> {
    let mut ids = expected_chart_ids(doc);
    let boot = ids.remove(1);
    ids.push(boot);
    ids
}

// ---- scenario documents (lifecycle, scalability, isolation) ----
//
// Built here from fixed values (not measurements): the native fixture's host, agent and settings
// with the scenario's own tables, as `hvbench lifecycle`, `scale` and `isolation` write them
// (no runs, no efficiency).

fn summary(values: &[f64]) -> hvbench_core::stats::Summary {
    let s = hvbench_core::stats::Samples::new(values.to_vec()).unwrap();
    hvbench_core::stats::summarize(&s)
}

fn guest_record(label: &str, boot_s: Option<f64>, failure: Option<&Failure>) -> GuestRecord {
    GuestRecord {
        label: label.into(),
        config: BackendConfig::default(),
        boot_s,
        guest_uptime_s: boot_s.map(|b| b * 0.8),
        kernel: boot_s.map(|_| "6.18.44 #1 SMP".to_string()),
        cpus: boot_s.map(|_| 1),
        mem_total_kib: boot_s.map(|_| 60_000),
        clocksource: None,
        cpu_accounting: "cgroup2 cpu.stat".into(),
        setup_notes: Vec::new(),
        failure: failure.cloned(),
    }
}

/// A document of `scenario` on one backend, with `data` as its tables.
fn scenario_document(
    scenario: &str,
    backend: &str,
    guests: Vec<GuestRecord>,
    data: ScenarioData,
    warnings: Vec<String>,
) -> RunDocument {
    let mut doc = fixture("native.json");
    doc.run_id = format!("20261201-120000-{scenario}");
    doc.scenario = scenario.into();
    doc.command_line = vec!["hvbench".into(), scenario.into()];
    doc.runs.clear();
    doc.efficiency.clear();
    doc.backends = vec![BackendRecord {
        name: backend.into(),
        technique: format!("{backend} technique"),
        availability: Availability::Available {
            detail: "fixed test document".into(),
        },
        guests,
    }];
    doc.warnings = warnings;
    doc.scenario_data = Some(data);
    doc
}

const OOM_TAIL: &str = "[    0.51] Run /init as init process\n\
                        [    2.10] Out of memory: Killed process 1 (init)\n\
                        [    2.11] Kernel panic - not syncing: Attempted to kill init!\n";

fn scale_guest(label: &str, samples: &[f64]) -> GuestResult {
    GuestResult {
        label: label.into(),
        outcome: Outcome::ok(),
        boot_s: Some(0.5),
        iterations: Some(1000),
        samples: samples.to_vec(),
        summary: Some(summary(samples)),
        throughput: Some(samples[1]),
        host_cpu_s: Some(0.9),
    }
}

fn scale_dnr(label: &str) -> GuestResult {
    GuestResult {
        label: label.into(),
        outcome: Outcome::Failed(
            Failure::new(FailureKind::DidNotReturn, "no sample within 30 s").with_tail(OOM_TAIL),
        ),
        boot_s: Some(0.6),
        iterations: Some(1000),
        samples: Vec::new(),
        summary: None,
        throughput: None,
        host_cpu_s: None,
    }
}

fn step(guests: u32, per_guest: Vec<GuestResult>, single: f64) -> ScaleStep {
    let returned: Vec<f64> = per_guest.iter().filter_map(|g| g.throughput).collect();
    let aggregate = (!returned.is_empty()).then(|| returned.iter().sum::<f64>());
    ScaleStep {
        guests,
        failed: per_guest.iter().filter(|g| g.outcome.is_failed()).count() as u32,
        scaling_efficiency: aggregate.map(|a| a / (returned.len() as f64 * single)),
        aggregate,
        per_guest,
        startup_s: Some(0.4 * f64::from(guests)),
    }
}

/// 1, 2, 4 and 8 guests of cpu.primes: the aggregate stops rising beyond 4; one guest of the
/// 4-guest step did not return, and every guest of a 16-guest step failed to start.
fn scalability_document() -> RunDocument {
    let g = |n: u32, i: u32| format!("native-n{n}-g{i}");
    let steps = vec![
        step(
            1,
            vec![scale_guest(&g(1, 0), &[990.0, 1000.0, 1010.0])],
            1000.0,
        ),
        step(
            2,
            vec![
                scale_guest(&g(2, 0), &[970.0, 980.0, 990.0]),
                scale_guest(&g(2, 1), &[960.0, 970.0, 980.0]),
            ],
            1000.0,
        ),
        step(
            4,
            vec![
                scale_guest(&g(4, 0), &[990.0, 1000.0, 1005.0]),
                scale_dnr(&g(4, 1)),
                scale_guest(&g(4, 2), &[995.0, 1000.0, 1002.0]),
                scale_guest(&g(4, 3), &[998.0, 1000.0, 1001.0]),
            ],
            1000.0,
        ),
        step(
            8,
            (0..8)
                .map(|i| scale_guest(&g(8, i), &[370.0, 380.0, 390.0]))
                .collect(),
            1000.0,
        ),
        step(
            16,
            (0..16)
                .map(|i| {
                    let mut r = scale_dnr(&g(16, i));
                    r.outcome = Outcome::Failed(
                        Failure::new(FailureKind::DidNotStart, "no hello within 60 s")
                            .with_tail(OOM_TAIL),
                    );
                    r.boot_s = None;
                    r
                })
                .collect(),
            1000.0,
        ),
    ];
    let guests = steps
        .iter()
        .flat_map(|s| &s.per_guest)
        .map(|r| guest_record(&r.label, r.boot_s, r.outcome.failure()))
        .collect();
    let data = ScenarioData::Scalability(ScalabilityData {
        backend: "native".into(),
        workload: "cpu.primes".into(),
        unit: "events/s".into(),
        higher_is_better: true,
        aggregate_unit: "events/s".into(),
        vcpus: 1,
        memory_mib: 64,
        reps: 3,
        launch_parallelism: 8,
        steps,
        saturation_guests: Some(4),
        rise_threshold: 0.05,
        notes: vec!["the host has 2 CPU(s): beyond 2 busy vCPUs in all, guests share them".into()],
    });
    scenario_document(
        "scalability",
        "native",
        guests,
        data,
        vec!["17 guest(s) did not return (DNR); see their console tails".into()],
    )
}

fn iso_guest(label: &str, role: &str, primes: f64, getppid: f64) -> IsolationGuest {
    IsolationGuest {
        label: label.into(),
        role: role.into(),
        outcome: Outcome::ok(),
        medians: [
            ("cpu.primes".to_string(), primes),
            ("sys.getppid".to_string(), getppid),
        ]
        .into_iter()
        .collect(),
        samples: [
            (
                "cpu.primes".to_string(),
                vec![primes - 1.0, primes, primes + 1.0],
            ),
            ("sys.getppid".to_string(), vec![getppid, getppid, getppid]),
        ]
        .into_iter()
        .collect(),
        stress_extras: BTreeMap::new(),
        stress_labels: BTreeMap::new(),
    }
}

fn iso_dnr(label: &str, role: &str) -> IsolationGuest {
    IsolationGuest {
        label: label.into(),
        role: role.into(),
        outcome: Outcome::Failed(
            Failure::new(
                FailureKind::DidNotReturn,
                "the guest died (exit status 137)",
            )
            .with_tail(OOM_TAIL),
        ),
        medians: BTreeMap::new(),
        samples: BTreeMap::new(),
        stress_extras: BTreeMap::new(),
        stress_labels: BTreeMap::new(),
    }
}

fn baseline3() -> Vec<IsolationGuest> {
    (0..3)
        .map(|i| iso_guest(&format!("native-g{i}"), "baseline", 1000.0, 100.0))
        .collect()
}

/// A steady workload's degradation: the stressed guest's, then each normal guest's.
type PerWorkload = (&'static str, Option<f64>, Vec<Option<f64>>);

fn iso_row(
    stressor: &str,
    guests: Vec<IsolationGuest>,
    per: Vec<PerWorkload>,
    stressed_pct: Option<f64>,
    normal_pct: Option<f64>,
) -> IsolationRow {
    IsolationRow {
        stressor: stressor.into(),
        status: StressStatus::Ran,
        reason: None,
        note: None,
        stressed_pct,
        stressed_dnr: guests[0].outcome.is_failed(),
        normal_pct,
        normal_dnr: guests[1..].iter().filter(|g| g.outcome.is_failed()).count() as u32,
        per_workload: per
            .into_iter()
            .map(|(w, s, n)| WorkloadDegradation {
                workload: w.into(),
                stressed_pct: s,
                normal_pct: {
                    let ok: Vec<f64> = n.iter().flatten().copied().collect();
                    (!ok.is_empty()).then(|| ok.iter().sum::<f64>() / ok.len() as f64)
                },
                normal_per_guest: n,
            })
            .collect(),
        guests,
        baseline: baseline3(),
    }
}

/// Three guests, two steady workloads: memory degrades the stressed guest, fork kills the
/// stressed guest and one normal guest (DNR), cpu degrades the stressed guest only, net-send
/// cannot run.
fn isolation_document() -> RunDocument {
    let mut memory = iso_row(
        "memory",
        vec![
            iso_guest("native-g0", "stressed", 880.0, 112.0),
            iso_guest("native-g1", "normal", 990.0, 101.0),
            iso_guest("native-g2", "normal", 985.0, 102.0),
        ],
        vec![
            ("cpu.primes", Some(12.0), vec![Some(1.0), Some(1.5)]),
            ("sys.getppid", Some(12.0), vec![Some(1.0), Some(2.0)]),
        ],
        Some(12.0),
        Some(1.375),
    );
    memory.note = Some("the stressed guest maps and keeps touching 48 MiB".into());
    let fork = iso_row(
        "fork",
        vec![
            iso_dnr("native-g0", "stressed"),
            iso_guest("native-g1", "normal", 966.0, 103.0),
            iso_dnr("native-g2", "normal"),
        ],
        vec![
            ("cpu.primes", None, vec![Some(3.4), None]),
            ("sys.getppid", None, vec![Some(3.0), None]),
        ],
        None,
        Some(3.2),
    );
    let cpu = iso_row(
        "cpu",
        vec![
            iso_guest("native-g0", "stressed", 544.0, 150.0),
            iso_guest("native-g1", "normal", 1000.0, 100.0),
            iso_guest("native-g2", "normal", 1021.0, 100.0),
        ],
        vec![
            ("cpu.primes", Some(45.6), vec![Some(0.0), Some(-2.1)]),
            ("sys.getppid", Some(50.0), vec![Some(0.0), Some(0.0)]),
        ],
        Some(47.8),
        Some(-0.525),
    );
    let net = IsolationRow {
        stressor: "net-send".into(),
        status: StressStatus::Skipped,
        reason: Some("guests have no network device yet".into()),
        note: None,
        stressed_pct: None,
        stressed_dnr: false,
        normal_pct: None,
        normal_dnr: 0,
        per_workload: Vec::new(),
        guests: Vec::new(),
        baseline: Vec::new(),
    };
    let guests = (0..3)
        .map(|i| guest_record(&format!("native-g{i}-0"), Some(0.01), None))
        .collect();
    let data = ScenarioData::Isolation(IsolationData {
        backend: "native".into(),
        guests: 3,
        vcpus: 1,
        memory_mib: 64,
        reps: 3,
        steady: vec![
            SteadyWorkload {
                name: "cpu.primes".into(),
                unit: "events/s".into(),
                higher_is_better: true,
            },
            SteadyWorkload {
                name: "sys.getppid".into(),
                unit: "ns/op".into(),
                higher_is_better: false,
            },
        ],
        baseline: baseline3(),
        rows: vec![memory, fork, cpu, net],
        notes: vec![
            "guest 0 is the stressed guest; every guest is compared with its own \
                     baseline, measured right before each stressor"
                .into(),
        ],
    });
    scenario_document(
        "isolation",
        "native",
        guests,
        data,
        vec!["fork: 2 guest(s) did not return (DNR)".into()],
    )
}

fn boot(label: &str, boot_s: f64) -> BootRecord {
    BootRecord {
        label: label.into(),
        boot_s: Some(boot_s),
        guest_uptime_s: Some(boot_s * 0.7),
        cpus: Some(1),
        failure: None,
    }
}

/// qemu-tcg with 1 and 2 vCPUs, three boots each; one boot with 2 vCPUs failed, and with 4
/// vCPUs no guest booted.
fn lifecycle_document() -> RunDocument {
    let row = |vcpus: u32, boots: Vec<BootRecord>, idle: Option<IdleRecord>, memory| {
        let ok: Vec<f64> = boots.iter().filter_map(|b| b.boot_s).collect();
        let up: Vec<f64> = boots.iter().filter_map(|b| b.guest_uptime_s).collect();
        LifecycleRow {
            vcpus,
            memory_mib: 256,
            boot_s: (ok.len() > 1).then(|| summary(&ok)),
            guest_uptime_s: (up.len() > 1).then(|| summary(&up)),
            failed_boots: boots.iter().filter(|b| b.failure.is_some()).count() as u32,
            boots,
            idle,
            memory,
            notes: Vec::new(),
        }
    };
    let idle = |pct: f64| IdleRecord {
        window_s: 10.02,
        cpu_s: pct / 100.0 * 10.02,
        cpu_pct_of_core: pct,
        slices_pct: vec![pct - 0.1, pct, pct + 0.1],
        summary: Some(summary(&[pct - 0.1, pct, pct + 0.1])),
        method: "cgroup2 cpu.stat".into(),
    };
    let memory = |rss: u64, pss: u64| MemoryRecord {
        host_pids: vec![4242, 4243],
        host_rss_kib: rss,
        host_pss_kib: pss,
        configured_mib: 256,
        guest_mem_total_kib: Some(230_000),
        guest_used_kib: Some(20_480),
        overhead_kib: Some(pss as i64 - 20_480),
        note: Some("overhead = host PSS − (MemTotal − MemAvailable inside)".into()),
        guest_ram_backed_kib: Some(110_000),
        guest_ram_mapped_kib: Some(262_144),
        backed_minus_used_kib: Some(110_000 - 20_480),
        vmm_own_kib: Some(pss - 110_000),
        vmm_own_rss_kib: Some(rss - 110_000),
        guest_ram: Some("QEMU's RAM block".into()),
        vmm_parts: vec![
            MemoryPart {
                part: "jit_code".into(),
                pss_kib: pss - 150_000,
                size_kib: 1_048_572,
                mappings: 1,
            },
            MemoryPart {
                part: "files".into(),
                pss_kib: 40_000,
                size_kib: 120_000,
                mappings: 300,
            },
        ],
        largest_mappings: vec![MappingRecord {
            pid: 4242,
            process: "qemu-system-x86".into(),
            part: "jit_code".into(),
            name: String::new(),
            perms: "rwxp".into(),
            size_kib: 1_048_572,
            pss_kib: pss - 150_000,
            vm_flags: "rd wr ex mr mw me ac hg".into(),
        }],
        processes: Vec::new(),
    };
    let failed = |label: &str| BootRecord {
        label: label.into(),
        boot_s: None,
        guest_uptime_s: None,
        cpus: None,
        failure: Some(
            Failure::new(
                FailureKind::DidNotStart,
                "the guest exited before its hello (exit status 1)",
            )
            .with_tail("qemu: cannot allocate memory"),
        ),
    };
    let rows = vec![
        row(
            1,
            vec![
                boot("qemu-tcg-v1-b0", 1.20),
                boot("qemu-tcg-v1-b1", 1.25),
                boot("qemu-tcg-v1-b2", 1.31),
            ],
            Some(idle(2.5)),
            Some(memory(300_000, 280_000)),
        ),
        row(
            2,
            vec![
                boot("qemu-tcg-v2-b0", 1.60),
                failed("qemu-tcg-v2-b1"),
                boot("qemu-tcg-v2-b2", 1.70),
            ],
            Some(idle(4.75)),
            Some(memory(320_000, 296_000)),
        ),
        {
            let mut r = row(
                4,
                vec![failed("qemu-tcg-v4-b0"), failed("qemu-tcg-v4-b1")],
                None,
                None,
            );
            r.notes
                .push("no guest booted: no idle or memory measurement".into());
            r
        },
    ];
    let guests = rows
        .iter()
        .flat_map(|r| &r.boots)
        .map(|b| guest_record(&b.label, b.boot_s, b.failure.as_ref()))
        .collect();
    let data = ScenarioData::Lifecycle(LifecycleData {
        backend: "qemu-tcg".into(),
        boots: 3,
        settle_s: 2.0,
        idle_window_s: 10.0,
        rows,
        notes: Vec::new(),
    });
    scenario_document(
        "lifecycle",
        "qemu-tcg",
        guests,
        data,
        vec![
            "1 of 3 boots with 2 vCPU failed".into(),
            "2 of 2 boots with 4 vCPU failed".into(),
        ],
    )
}

fn scenario_documents() -> [(&'static str, RunDocument); 3] {
    [
        ("isolation", isolation_document()),
        ("scalability", scalability_document()),
        ("lifecycle", lifecycle_document()),
    ]
}

#[test]
fn scenario_reports_match_their_snapshots() {
    for (name, doc) in scenario_documents() {
        snapshot(&format!("{name}.txt"), &report::terminal(&doc));
        snapshot(&format!("{name}.md"), &report::markdown::render(&doc));
        snapshot(&format!("{name}.csv"), &report::csv::render(&doc));
    }
}

/// The part of a Markdown report under `### title`, up to the next heading.
fn md_section<'a>(md: &'a str, title: &str) -> &'a str {
    let start = md
        .find(&format!("### {title}\n"))
        .unwrap_or_else(|| panic!("no section {title} in:\n{md}"));
    let rest = &md[start + 4 + title.len()..];
    &rest[..rest.find("\n#").unwrap_or(rest.len())]
}

fn md_row<'a>(section: &'a str, first_cells: &str) -> &'a str {
    section
        .lines()
        .find(|l| l.starts_with(&format!("| {first_cells} |")))
        .unwrap_or_else(|| panic!("no row {first_cells} in:\n{section}"))
}

#[test]
fn the_terminal_report_of_a_scenario_prints_its_tables_without_empty_efficiency_sections() {
    for (name, doc) in scenario_documents() {
        let text = report::terminal(&doc);
        // The tables the scenario command printed, as they were printed.
        let tables = render_scenario_data(doc.scenario_data.as_ref().unwrap());
        assert!(text.contains(&tables), "{name}:\n{text}");
        for efficiency in [
            "Scores on",
            "Efficiency of",
            "Virtualization efficiency",
            "rep(s) after",
        ] {
            assert!(
                !text.contains(efficiency),
                "{name} has {efficiency}:\n{text}"
            );
        }
        assert!(text.contains("Backends\n"), "{name}");
        // The warnings come last.
        assert!(
            text.find(&tables).unwrap() < text.find("Notes:\n").unwrap(),
            "{name}"
        );
    }
    let text = report::terminal(&scalability_document());
    assert!(text.contains("Aggregate throughput stops rising (by more than 5%) beyond 4 guest(s)."));
    let step16 = text
        .lines()
        .find(|l| l.trim_start().starts_with("16 "))
        .unwrap();
    // No guest of that step started: "did not start", never "DNR" or a number.
    assert!(step16.contains("did not start"), "{step16}");
    assert!(!step16.contains(" 0.0"), "{step16}");
}

#[test]
fn markdown_isolation_shows_degradation_per_stressor_and_dnr() {
    let md = report::markdown::render(&isolation_document());
    assert!(md.contains("## Performance isolation\n"), "{md}");
    let main = md_section(&md, "Degradation under each stressor");
    assert!(main.contains("| stressor | stressed guest | normal guests | note |"));
    assert_eq!(
        md_row(main, "memory"),
        "| memory | 12.0% | 1.4% | the stressed guest maps and keeps touching 48 MiB |"
    );
    assert_eq!(md_row(main, "cpu"), "| cpu | 47.8% | -0.5% |  |");
    // The stressed guest and one normal guest did not return under fork: DNR, never 0.
    assert_eq!(
        md_row(main, "fork"),
        "| fork | DNR | DNR (1 of 2), others 3.2% |  |"
    );
    assert!(md_row(main, "net-send").starts_with("| net-send | skipped | skipped | guests have"));
    let detail = md_section(
        &md,
        "Per workload: stressed guest, then each normal guest (%)",
    );
    assert_eq!(
        md_row(detail, "fork | cpu.primes"),
        "| fork | cpu.primes | DNR | 3.4 / DNR |"
    );
    // Why each DNR: the guest, where, the reason and its console.
    let dnr = md_section(&md, "Guests that did not return (DNR)");
    assert!(dnr.contains(
        "- native-g0 under fork (stressed): did not return (DNR): the guest died (exit status 137)"
    ));
    assert!(dnr.contains("- native-g2 under fork (normal): did not return (DNR)"));
    assert!(dnr.contains("  - console: [    2.10] Out of memory: Killed process 1 (init)"));
    // No efficiency section, no efficiency settings sentence.
    assert!(!md.contains("## Efficiency") && !md.contains("## Scores"));
    assert!(!md.contains("repetition(s) after"), "{md}");
}

#[test]
fn markdown_scalability_shows_every_guest_count_guest_aggregate_and_failures() {
    let md = report::markdown::render(&scalability_document());
    let main = md_section(
        &md,
        "Aggregate throughput by guest count (DNR: guests that did not return)",
    );
    assert!(main.contains(
        "| guests | returned | DNR | aggregate events/s | per guest events/s | range | scaling | start-up s |"
    ));
    assert_eq!(
        md_row(main, "2"),
        "| 2 | 2 | 0 | 1950 | 975.0 | 970.0–980.0 | 98% | 0.8 |"
    );
    // One guest of four did not return: the aggregate is of the three that did.
    assert_eq!(
        md_row(main, "4"),
        "| 4 | 3 | 1 | 3000 | 1000 | 1000–1000 | 100% | 1.6 |"
    );
    assert_eq!(
        md_row(main, "16"),
        "| 16 | 0 | 16 | did not start | did not start | did not start | - | 6.4 |"
    );
    assert!(md.contains("Aggregate throughput stops rising (by more than 5%) beyond 4 guest(s)."));
    let guests = md_section(&md, "Each guest's result");
    assert_eq!(
        md_row(guests, "2 | native-n2-g1"),
        "| 2 | native-n2-g1 | 970.0 | 1.0% | 970.0 | 0.500 | 0.900 |"
    );
    assert_eq!(
        md_row(guests, "4 | native-n4-g1"),
        "| 4 | native-n4-g1 | DNR | - | DNR | 0.600 | - |"
    );
    assert_eq!(guests.lines().filter(|l| l.starts_with("| 8 |")).count(), 8);
    let dnr = md_section(&md, "Guests that did not return (DNR) or were not measured");
    assert!(dnr.contains("- native-n4-g1, step of 4: did not return (DNR): no sample within 30 s"));
    assert!(dnr.contains(
        "- 16 guests (native-n16-g0 … native-n16-g15), step of 16: did not start: no hello \
         within 60 s"
    ));
}

#[test]
fn markdown_lifecycle_shows_boot_times_idle_cpu_and_memory() {
    let md = report::markdown::render(&lifecycle_document());
    let boot = md_section(&md, "Boot time, seconds: median [95% interval]");
    assert_eq!(
        md_row(boot, "1"),
        "| 1 | 3/3 | 1.25 [1.20, 1.31] | 1.20–1.31 | 0.88 [0.84, 0.92] |"
    );
    assert!(md_row(boot, "2").starts_with("| 2 | 2/3 | 1.65 "));
    // No guest booted with 4 vCPUs: did not start, not a blank or a zero.
    assert_eq!(
        md_row(boot, "4"),
        "| 4 | 0/2 | did not start | did not start | did not start |"
    );
    let idle = md_section(&md, "Idle guest: host CPU, % of one core");
    assert!(md_row(idle, "2").starts_with("| 2 | 4.75 | 4.75 [4.65, 4.85] | 10.0 |"));
    assert!(md_row(idle, "4").starts_with("| 4 | did not start | did not start |"));
    let memory = md_section(&md, "Memory, MiB");
    // The VMM's own memory apart from the guest RAM the host backs (issue 18); the former
    // `overhead` (host PSS − guest used) mixed them and is no longer a column.
    assert!(memory.contains(
        "| guest RAM backed | backed − used | VMM own | VMM own RSS | host PSS | host RSS |"
    ));
    assert!(!memory.contains("overhead"));
    assert_eq!(
        md_row(memory, "1"),
        "| 1 | 256 | 224.6 | 20.00 | 107.4 | 87.42 | 166.0 | 185.5 | 273.4 | 293.0 | 2 |"
    );
    assert_eq!(
        md_row(memory, "4"),
        "| 4 | 256 | - | - | did not start | did not start | did not start | did not start | did \
         not start | did not start | - |"
    );
    let parts = md_section(&md, "VMM own memory by part, MiB: PSS (reserved)");
    assert_eq!(md_row(parts, "1"), "| 1 | 127.0 (1024) | 39.06 (117.2) |");
    let largest = md_section(&md, "Largest mappings of the VMM's own memory");
    assert!(md_row(largest, "2").contains("| jit_code | [anonymous] | rwxp |"));
    let every = md_section(&md, "Every boot");
    assert_eq!(
        md_row(every, "2 | qemu-tcg-v2-b1"),
        "| 2 | qemu-tcg-v2-b1 | did not start | did not start | - |"
    );
    let failed = md_section(&md, "Boots that failed");
    assert!(failed.contains(
        "- qemu-tcg-v2-b1: did not start: the guest exited before its hello (exit status 1)\n  \
         - console: qemu: cannot allocate memory"
    ));
}

#[test]
fn html_scalability_has_a_chart_of_the_aggregate_and_dnr_with_reasons() {
    let doc = scalability_document();
    let html = report::html::render(&doc);
    assert!(html.contains("<section id=\"scalability\">"));
    assert!(
        !html.contains("has no charts for"),
        "the placeholder is gone"
    );
    assert!(!html.contains("measured repetition(s) of each workload"));
    assert_eq!(
        html.matches("<svg id=\"chart-scalability\" class=\"chart\"")
            .count(),
        1
    );
    let chart = &html[html.find("id=\"chart-scalability\"").unwrap()..];
    let chart = &chart[..chart.find("</svg>").unwrap()];
    for text in [
        "stops rising beyond 4",
        "1 DNR",
        "DNR (16 of 16)",
        "3040",
        "aggregate throughput, events/s",
        "guests running at once (log scale)",
    ] {
        assert!(chart.contains(text), "{text} not in the chart");
    }
    // Every guest count is a tick of the horizontal axis.
    for n in ["1", "2", "4", "8", "16"] {
        assert!(chart.contains(&format!(">\n{n}\n</text>")), "tick {n}");
    }
    assert!(html.contains(
        "<td class=\"num status-bad\" title=\"no guest returned a result: did not start: no hello \
         within 60 s\">did not start</td>"
    ));
    assert!(html.contains(
        "<td class=\"num status-bad\" title=\"did not return (DNR): no sample within 30 s\">DNR</td>"
    ));
    assert!(html.contains("<summary>Each guest&#39;s result (31 rows)</summary>"));
    assert!(html.contains("<pre class=\"failure\">[    0.51] Run /init as init process"));
}

#[test]
fn html_isolation_and_lifecycle_have_their_tables_with_dnr_reasons() {
    let html = report::html::render(&isolation_document());
    assert!(html.contains("<section id=\"isolation\">"));
    assert!(html.contains("<caption>Degradation under each stressor</caption>"));
    assert!(html.contains(
        "<tr><td>fork</td><td class=\"num status-bad\" title=\"native-g0: did not return (DNR): \
         the guest died (exit status 137)\">DNR</td><td class=\"num status-bad\" \
         title=\"native-g2: did not return (DNR): the guest died (exit status 137)\">DNR (1 of 2), \
         others 3.2%</td><td></td></tr>"
    ));
    assert!(html.contains("<td class=\"num\">47.8%</td>"));

    let html = report::html::render(&lifecycle_document());
    assert!(html.contains("<section id=\"lifecycle\">"));
    assert!(html.contains("<svg id=\"chart-boot\" class=\"chart\""));
    for caption in [
        "Boot time, seconds: median [95% interval]",
        "Idle guest: host CPU, % of one core",
        "Memory, MiB",
    ] {
        assert!(
            html.contains(&format!("<caption>{caption}</caption>")),
            "{caption}"
        );
    }
    assert!(html.contains("<td class=\"num\">273.4</td>"));
    assert!(html.contains(
        "title=\"no guest booted: the guest exited before its hello (exit status 1)\">did not \
         start</td>"
    ));
}

#[test]
fn every_string_of_a_scenario_document_is_escaped() {
    let evil = "<script>alert(1)</script>\"'><img src=x onerror=alert(2)>|";
    let mut docs = scenario_documents().map(|(_, d)| d);
    for doc in &mut docs {
        match doc.scenario_data.as_mut().unwrap() {
            ScenarioData::Isolation(d) => {
                d.backend = evil.into();
                d.steady[0].name = evil.into();
                d.steady[0].unit = evil.into();
                d.rows[0].stressor = evil.into();
                d.rows[0].note = Some(evil.into());
                d.rows[1].guests[0].outcome =
                    Outcome::Failed(Failure::new(FailureKind::DidNotReturn, evil).with_tail(evil));
                d.rows[3].reason = Some(evil.into());
                d.notes.push(evil.into());
            }
            ScenarioData::Scalability(d) => {
                d.backend = evil.into();
                d.workload = evil.into();
                d.unit = evil.into();
                d.aggregate_unit = evil.into();
                d.steps[2].per_guest[1].label = evil.into();
                d.steps[2].per_guest[1].outcome =
                    Outcome::Failed(Failure::new(FailureKind::DidNotReturn, evil).with_tail(evil));
                d.notes.push(evil.into());
            }
            ScenarioData::Lifecycle(d) => {
                d.backend = evil.into();
                d.rows[1].boots[1].label = evil.into();
                d.rows[1].boots[1].failure =
                    Some(Failure::new(FailureKind::DidNotStart, evil).with_tail(evil));
                d.rows[0].idle.as_mut().unwrap().method = evil.into();
                d.notes.push(evil.into());
            }
        }
        let html = report::html::render(doc);
        assert!(
            !html.contains("<script"),
            "unescaped script in {}",
            doc.scenario
        );
        assert!(
            !html.contains("<img"),
            "unescaped element in {}",
            doc.scenario
        );
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&gt;"));
        let md = report::markdown::render(doc);
        assert!(!md.contains("<script"), "unescaped script in Markdown");
        assert!(md.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        // A pipe in a cell does not break its table.
        assert!(!md.contains("&gt;|"), "unescaped pipe in Markdown");
    }
}

#[test]
fn csv_of_a_scenario_has_one_row_per_measurement_and_dnr_rows_without_values() {
    let doc = scalability_document();
    let csv = report::csv::render(&doc);
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "scenario,backend,step,guest,role,metric,unit,rep,value,status,reason"
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    let Some(ScenarioData::Scalability(d)) = &doc.scenario_data else {
        unreachable!()
    };
    let samples: usize = d
        .steps
        .iter()
        .flat_map(|s| &s.per_guest)
        .map(|g| g.samples.len())
        .sum();
    let dnr: usize = d.steps.iter().map(|s| s.failed as usize).sum();
    assert_eq!(rows.len(), samples + dnr);
    for row in &rows {
        assert_eq!(row.len(), 11, "{row:?}");
        let g = d
            .steps
            .iter()
            .find(|s| s.guests.to_string() == row[2])
            .and_then(|s| s.per_guest.iter().find(|g| g.label == row[3]))
            .unwrap();
        if let Some(f) = g.outcome.failure() {
            assert_eq!(
                (row[7], row[8], row[9]),
                ("", "", f.kind.label()),
                "{row:?}"
            );
            assert_eq!(row[10], f.describe(), "{row:?}");
        } else {
            let rep: usize = row[7].parse().unwrap();
            assert_eq!(row[8].parse::<f64>().unwrap(), g.samples[rep]);
            assert_eq!(row[9], "ok");
        }
    }

    let csv = report::csv::render(&isolation_document());
    assert!(csv
        .lines()
        .any(|l| l == "isolation,native,net-send,,,,,,,skipped,guests have no network device yet"));
    assert!(csv.lines().any(|l| l.starts_with(
        "isolation,native,fork,native-g0,stressed,cpu.primes,events/s,,,DNR,did not return (DNR)"
    )));
    assert!(csv
        .lines()
        .any(|l| l == "isolation,native,cpu,native-g0,stressed,cpu.primes,events/s,1,544,ok,"));

    let csv = report::csv::render(&lifecycle_document());
    assert!(csv
        .lines()
        .any(|l| l == "lifecycle,qemu-tcg,1,qemu-tcg-v1-b1,,boot_s,s,1,1.25,ok,"));
    assert!(csv.lines().any(|l| l
        == "lifecycle,qemu-tcg,2,qemu-tcg-v2-b1,,boot_s,s,1,,did not start,the guest exited before its hello (exit status 1)"));
    assert!(csv
        .lines()
        .any(|l| l == "lifecycle,qemu-tcg,1,qemu-tcg-v1-b0,,host_pss_kib,KiB,,280000,ok,"));
}

#[test]
fn an_efficiency_document_renders_as_before_whatever_the_scenario_code() {
    // The snapshots of native and guests were taken before scenario tables existed; an explicit
    // `scenario_data: None` changes nothing.
    let mut doc = fixture("guests.json");
    doc.scenario_data = None;
    snapshot("guests.txt", &report::terminal(&doc));
    snapshot("guests.md", &report::markdown::render(&doc));
    snapshot("guests.csv", &report::csv::render(&doc));
    snapshot("guests.html", &report::html::render(&doc));
}

#[test]
fn the_scalability_chart_renders_in_headless_chromium() {
    let Some(browser) = find_chromium() else {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("chromium is not installed, and under CI this test must run");
        }
        eprintln!("skipped: chromium is not installed (apt-get install chromium)");
        return;
    };
    let dir = tmpdir("chromium-scale");
    let page = report::html::write(&scalability_document(), &dir.join("report")).unwrap();
    let dom = dump_dom(&browser, &page, &dir.join("profile"));
    assert!(dom.contains("</html>"), "no DOM from chromium: {dom:.200}");
    let chart = dom
        .split("<svg id=\"chart-scalability\"")
        .nth(1)
        .and_then(|s| s.split("</svg>").next())
        .unwrap_or_else(|| panic!("no scalability chart in the DOM"));
    assert!(chart.contains("stops rising beyond 4"));
    assert!(
        chart.matches("<circle").count() >= 4,
        "a point per measured step"
    );
}

// ----- typed outcomes and the one table model -----

#[test]
fn a_version_1_document_is_read_with_typed_outcomes() {
    // The fixtures are schema version 1: a failure's kind and console tail were inside its
    // reason (`did not return (DNR): no guest: …; console tail:\n…`).
    let text = std::fs::read_to_string(tests_dir().join("fixtures/guests.json")).unwrap();
    assert!(text.contains("\"schema_version\": 1,"));
    let doc = fixture("guests.json");
    assert_eq!(doc.schema_version, SCHEMA_VERSION);
    let gvisor = doc.run("gvisor", "cpu.primes").unwrap();
    let f = gvisor.outcome.failure().expect("gvisor failed");
    // gVisor never said hello: it did not start, it is not "DNR".
    assert_eq!(f.kind, FailureKind::DidNotStart);
    assert_eq!(f.reason, "the guest closed its channel (exited or crashed)");
    assert!(f
        .console_tail
        .as_deref()
        .unwrap()
        .starts_with("creating container: cannot create sandbox"));
    let g = &doc.backends[3].guests[0];
    assert_eq!(g.failure.as_ref().unwrap().kind, FailureKind::DidNotStart);
    assert!(doc.run("native", "cpu.primes").unwrap().outcome.is_ok());

    // Written again it is this version, and reads back the same.
    let path = tmpdir("v1-upgrade").join("doc.json");
    doc.write_atomic(&path).unwrap();
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(written["schema_version"], SCHEMA_VERSION);
    let run = written["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["backend"] == "gvisor")
        .unwrap();
    assert_eq!(run["status"], "failed");
    assert_eq!(run["kind"], "did_not_start");
    assert!(run["console_tail"].is_string());
    assert_eq!(RunDocument::read(&path).unwrap(), doc);
}

/// The native fixture with one run of `cpu.primes` on a guest backend per outcome.
fn outcomes_document() -> RunDocument {
    let mut doc = fixture("native.json");
    let native = doc.run("native", "cpu.primes").unwrap().clone();
    let outcomes = [
        (
            "dnr",
            Outcome::failed(FailureKind::DidNotReturn, "the guest went silent"),
        ),
        (
            "nostart",
            Outcome::failed(FailureKind::DidNotStart, "no hello within 20 s"),
        ),
        (
            "broken",
            Outcome::failed(FailureKind::Failed, "a check did not hold"),
        ),
        (
            "garbage",
            Outcome::failed(FailureKind::BadOutput, "an invalid message"),
        ),
        ("skip", Outcome::skipped("cannot run there")),
    ];
    for (name, outcome) in outcomes {
        doc.backends.push(BackendRecord {
            name: name.into(),
            technique: "test".into(),
            availability: Availability::Available {
                detail: "fixed test document".into(),
            },
            guests: Vec::new(),
        });
        doc.runs.push(RunRecord {
            backend: name.into(),
            outcome,
            samples: Vec::new(),
            sample_details: Vec::new(),
            summary: None,
            host_cpu_per_op: None,
            ..native.clone()
        });
    }
    doc
}

/// The part of a Markdown report under the `##` heading that starts with `title`.
fn h2_section<'a>(md: &'a str, title: &str) -> &'a str {
    let start = md
        .find(&format!("\n## {title}"))
        .unwrap_or_else(|| panic!("no section {title} in:\n{md}"));
    let rest = &md[start + 4..];
    let body = &rest[rest.find('\n').unwrap_or(0)..];
    &body[..body.find("\n#").unwrap_or(body.len())]
}

#[test]
fn terminal_and_markdown_agree_on_which_failures_are_dnr() {
    let doc = outcomes_document();
    let text = report::terminal(&doc);
    let md = report::markdown::render(&doc);
    let matrix = h2_section(&md, "Virtualization efficiency");
    let words = [
        ("dnr", "DNR"),
        ("nostart", "did not start"),
        ("broken", "failed"),
        ("garbage", "bad output"),
        ("skip", "skipped"),
    ];
    let header = "| Workload | dnr | nostart | broken | garbage | skip |";
    assert!(matrix.contains(header), "{matrix}");
    let row = md_row(matrix, "cpu.primes");
    let cells: Vec<&str> = row.trim_matches('|').split(" | ").map(str::trim).collect();
    let terminal_row = text
        .lines()
        .skip_while(|l| !l.starts_with("Virtualization efficiency"))
        .find(|l| l.starts_with("cpu.primes"))
        .unwrap();
    for (i, (backend, word)) in words.iter().enumerate() {
        assert_eq!(cells[i + 1], *word, "{backend} in Markdown: {row}");
        assert!(terminal_row.contains(word), "{backend} in the terminal");
        let scores = h2_section(&md, &format!("Scores on {backend}"));
        assert!(md_row(scores, "cpu.primes").contains(&format!("| {word} |")));
    }
    assert_eq!(terminal_row.matches("DNR").count(), 1, "{terminal_row}");
}

#[test]
fn the_qos_curve_of_app_web_is_exported_as_csv() {
    let mut doc = fixture("native.json");
    assert!(
        report::csv::qos_curve(&doc).is_none(),
        "no app.web, no curve"
    );
    let mut r = doc.run("native", "cpu.primes").unwrap().clone();
    r.workload = "app.web".into();
    r.samples = vec![96.0, 112.0];
    r.sample_details.truncate(2);
    for (d, (curve, rps, p99)) in r.sample_details.iter_mut().zip([
        ("64:100.0,96:99.1,128:80.5", 410.5, 42.0),
        ("96:99.4,112:97.0,128:81.0", 470.25, 55.5),
    ]) {
        d.labels.insert("qos_curve".into(), curve.into());
        d.extras.insert("req_per_s".into(), rps);
        d.extras.insert("p99_ms".into(), p99);
    }
    doc.runs.push(r);
    let csv = report::csv::qos_curve(&doc).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "backend,rep,sessions,good_pct,req_per_s,p99_ms,chosen"
    );
    // One row per load of each repetition; the chosen load's throughput and p99, the others'
    // left empty (never a zero).
    assert_eq!(lines.len(), 1 + 6);
    assert!(lines.contains(&"native,0,64,100,,,false"));
    assert!(lines.contains(&"native,0,96,99.1,410.5,42,true"));
    assert!(lines.contains(&"native,1,112,97,470.25,55.5,true"));
    assert!(lines.contains(&"native,1,128,81,,,false"));
}
