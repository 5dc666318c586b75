//! Every report format rendered from fixed result documents (`fixtures/`, see its README) and
//! compared exactly with the expected output in `snapshots/`, as hyperfine tests its exports.
//!
//! After an intended change of a format, rewrite the snapshots and review their diff:
//! `UPDATE_SNAPSHOTS=1 cargo test -p hvbench-core --test reports`.
//!
//! The HTML page is also opened in headless Chromium, when it is installed, to check that a real
//! browser lays out its SVG charts; under CI (`CI=true`) a missing Chromium fails the test.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hvbench_core::report::{self, compare};
use hvbench_core::results::{RunDocument, RunStatus};

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
    assert!(doc.runs.iter().any(|r| r.status == RunStatus::Failed));
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
    assert!(chart.contains("DNR"), "gvisor's runs are marked DNR");
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
    doc.backends[3].guests[0].failure = Some(evil.into());
    doc.host.cpu_model = evil.into();
    doc.warnings.push(evil.into());
    for r in doc.runs.iter_mut().filter(|r| r.workload == "cpu.primes") {
        r.workload = evil.into();
        r.reason = Some(evil.into());
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
