//! `hvbench report` and `hvbench compare` end to end, on the fixed result documents of
//! `crates/core/tests/fixtures` (see its README), and on bad input: each bad file must give a
//! clear error that names the file and the problem, never a panic.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn hvbench() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hvbench"))
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../core/tests/fixtures")
        .join(name)
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hvbench-cli-reports-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(args: &[&str]) -> Output {
    hvbench().args(args).output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn report_prints_the_terminal_tables_again() {
    let doc = fixture("guests.json");
    let o = run(&["report", path_str(&doc)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("Efficiency of qemu-tcg"), "{out}");
    assert!(out.contains("no measurable overhead"), "{out}");
}

#[test]
fn report_markdown_and_csv_go_to_stdout() {
    let doc = fixture("guests.json");
    let o = run(&["report", path_str(&doc), "--markdown"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let md = stdout(&o);
    assert!(
        md.starts_with("# hvbench run 20261122-043541-efficiency"),
        "{md}"
    );
    assert!(
        md.contains("| Workload | Efficiency | 95% CI | Verdict |"),
        "{md}"
    );

    let o = run(&["report", path_str(&doc), "--csv"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let csv = stdout(&o);
    assert!(
        csv.starts_with("backend,workload,unit,higher_is_better,rep,value,"),
        "{csv}"
    );
    assert_eq!(
        csv.lines().count(),
        1 + 15 * 3 * 3,
        "header and 135 samples"
    );

    let o = run(&["report", path_str(&doc), "--csv", "--markdown"]);
    assert_eq!(o.status.code(), Some(2), "one stdout format at a time");
}

#[test]
fn report_html_writes_index_html_into_the_directory() {
    let dir = tmpdir("html");
    let out = dir.join("out");
    let o = run(&[
        "report",
        path_str(&fixture("guests.json")),
        "--html",
        path_str(&out),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let index = out.join("index.html");
    assert!(stdout(&o).contains(path_str(&index)), "{}", stdout(&o));
    let html = std::fs::read_to_string(&index).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("<svg id=\"chart-efficiency\""));

    // With Markdown on stdout, the page's path goes to stderr so that stdout stays Markdown.
    let o = run(&[
        "report",
        path_str(&fixture("native.json")),
        "--html",
        path_str(&out),
        "--markdown",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("# hvbench run"), "{}", stdout(&o));
    assert!(stderr(&o).contains("index.html"), "{}", stderr(&o));
}

/// Runs `hvbench report` on a bad file and returns its error message.
fn report_error(path: &Path) -> String {
    let o = run(&["report", path_str(path)]);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    let err = stderr(&o);
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(
        err.contains(path_str(path)),
        "the error names the file: {err}"
    );
    err
}

#[test]
fn a_missing_file_is_named() {
    let dir = tmpdir("missing");
    let err = report_error(&dir.join("nope.json"));
    assert!(err.contains("cannot read"), "{err}");
}

#[test]
fn a_file_that_is_not_a_result_document_is_refused() {
    let dir = tmpdir("not-a-document");
    let json = dir.join("package.json");
    std::fs::write(&json, r#"{"name": "left-pad", "version": "1.3.0"}"#).unwrap();
    let err = report_error(&json);
    assert!(err.contains("is not an hvbench result document"), "{err}");
    assert!(err.contains("schema_version"), "{err}");

    let text = dir.join("notes.txt");
    std::fs::write(&text, "just some notes\n").unwrap();
    let err = report_error(&text);
    assert!(err.contains("is not an hvbench result document"), "{err}");
    assert!(err.contains("not JSON"), "{err}");

    // A document whose fields do not fit the schema names the field.
    let mut doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("native.json")).unwrap()).unwrap();
    doc.as_object_mut().unwrap().remove("runs");
    let broken = dir.join("broken.json");
    std::fs::write(&broken, doc.to_string()).unwrap();
    let err = report_error(&broken);
    assert!(err.contains("runs"), "{err}");
}

#[test]
fn a_newer_schema_version_is_refused_with_the_fix() {
    let dir = tmpdir("newer");
    let text = std::fs::read_to_string(fixture("native.json")).unwrap();
    let newer = dir.join("from-the-future.json");
    std::fs::write(
        &newer,
        text.replacen("\"schema_version\": 1,", "\"schema_version\": 99,", 1),
    )
    .unwrap();
    let err = report_error(&newer);
    assert!(err.contains("schema version 99"), "{err}");
    assert!(err.contains("upgrade hvbench"), "{err}");
}

#[test]
fn a_truncated_file_is_called_truncated() {
    let dir = tmpdir("truncated");
    let text = std::fs::read_to_string(fixture("native.json")).unwrap();
    let cut = dir.join("cut.json");
    std::fs::write(&cut, &text[..text.len() / 2]).unwrap();
    let err = report_error(&cut);
    assert!(err.contains("truncated"), "{err}");
    let empty = dir.join("empty.json");
    std::fs::write(&empty, "").unwrap();
    let err = report_error(&empty);
    assert!(err.contains("not JSON"), "{err}");
}

#[test]
fn compare_lists_differences_first_then_changes_with_verdicts() {
    let (a, b) = (fixture("compare-a.json"), fixture("compare-b.json"));
    let o = run(&["compare", path_str(&a), path_str(&b)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let governor = out
        .find("host.cpu_governor: (none) → performance")
        .expect(&out);
    let changes = out.find("Changes from A to B").expect(&out);
    assert!(governor < changes, "{out}");
    let primes = out.lines().find(|l| l.contains("cpu.primes")).expect(&out);
    assert!(
        primes.contains("+24.9%") && primes.ends_with("faster"),
        "{primes}"
    );

    let o = run(&["compare", path_str(&a), path_str(&b), "--noise", "30"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let primes = out.lines().find(|l| l.contains("cpu.primes")).expect(&out);
    assert!(primes.ends_with("no significant change"), "{primes}");
    assert!(out.contains("beyond 30.0%"), "{out}");

    let o = run(&["compare", path_str(&a), path_str(&b), "--noise=-1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--noise"), "{}", stderr(&o));
}

#[test]
fn compare_names_a_bad_file() {
    let dir = tmpdir("compare-bad");
    let bad = dir.join("bad.json");
    std::fs::write(&bad, "{").unwrap();
    let o = run(&["compare", path_str(&fixture("native.json")), path_str(&bad)]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains(path_str(&bad)) && err.contains("truncated"),
        "{err}"
    );
}

#[test]
fn run_writes_the_html_report_beside_the_document() {
    let out = tmpdir("run");
    let o = run(&[
        "run",
        "--backend",
        "native",
        "--workload",
        "sys.getppid",
        "--reps",
        "2",
        "--warmup",
        "0",
        "--duration",
        "0.02",
        "--quiet",
        "--out",
        path_str(&out),
    ]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let document = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .expect("a result document");
    let page = document.with_extension("html");
    assert!(page.is_file(), "no {}", page.display());
    let text = stdout(&o);
    assert!(
        text.contains(&format!("HTML report:     {}", page.display())),
        "{text}"
    );
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("id=\"chart-workload-sys-getppid\""));
}

/// A scalability document as `hvbench scale` writes it (no runs, the tables in `scenario_data`),
/// on the native fixture's host: 1, 2 and 4 guests, one of the four did not return.
fn scale_document(dir: &Path) -> PathBuf {
    use hvbench_core::results::{
        Failure, FailureKind, GuestResult, Outcome, ScalabilityData, ScaleStep, ScenarioData,
    };
    let guest = |label: String, throughput: Option<f64>| GuestResult {
        label,
        outcome: match throughput {
            Some(_) => Outcome::ok(),
            None => Outcome::Failed(
                Failure::new(FailureKind::DidNotReturn, "no sample within 30 s")
                    .with_tail("Out of memory: Killed process 1 (init)"),
            ),
        },
        boot_s: Some(0.5),
        iterations: Some(1000),
        samples: throughput
            .map(|t| vec![t - 5.0, t, t + 5.0])
            .unwrap_or_default(),
        summary: None,
        throughput,
        host_cpu_s: None,
    };
    let step = |n: u32, per: Vec<Option<f64>>| {
        let per_guest: Vec<GuestResult> = per
            .into_iter()
            .enumerate()
            .map(|(i, t)| guest(format!("native-n{n}-g{i}"), t))
            .collect();
        ScaleStep {
            guests: n,
            aggregate: Some(per_guest.iter().filter_map(|g| g.throughput).sum()),
            failed: per_guest.iter().filter(|g| g.throughput.is_none()).count() as u32,
            per_guest,
            scaling_efficiency: None,
            startup_s: Some(0.1),
        }
    };
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
        steps: vec![
            step(1, vec![Some(1000.0)]),
            step(2, vec![Some(990.0), Some(980.0)]),
            step(4, vec![Some(500.0), None, Some(510.0), Some(490.0)]),
        ],
        saturation_guests: Some(2),
        rise_threshold: 0.05,
        notes: vec![],
    });
    let mut doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("native.json")).unwrap()).unwrap();
    doc["schema_version"] = hvbench_core::results::SCHEMA_VERSION.into();
    doc["scenario"] = "scalability".into();
    doc["run_id"] = "20261201-120000-scalability".into();
    doc["runs"] = serde_json::json!([]);
    doc["efficiency"] = serde_json::json!([]);
    doc["scenario_data"] = serde_json::to_value(&data).unwrap();
    let path = dir.join("scale.json");
    std::fs::write(&path, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    path
}

#[test]
fn report_renders_the_tables_of_a_scenario_document() {
    let dir = tmpdir("scenario");
    let doc = scale_document(&dir);

    let o = run(&["report", path_str(&doc)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("Scalability: cpu.primes on native"), "{out}");
    assert!(out.contains("aggregate events/s"), "{out}");
    let four = out
        .lines()
        .find(|l| l.trim_start().starts_with("4 "))
        .expect(&out);
    assert_eq!(
        four.split_whitespace().take(4).collect::<Vec<_>>(),
        ["4", "3", "1", "1500"],
        "{four}"
    );
    assert!(out.contains("beyond 2 guest(s)"), "{out}");
    assert!(
        out.contains("native-n4-g1, step of 4: did not return (DNR)"),
        "{out}"
    );
    assert!(
        !out.contains("Efficiency of") && !out.contains("Scores on"),
        "{out}"
    );

    let o = run(&["report", path_str(&doc), "--markdown"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let md = stdout(&o);
    assert!(md.contains("## Scalability"), "{md}");
    assert!(md.contains("| 4 | 3 | 1 | 1500 |"), "{md}");
    assert!(
        md.contains("| 4 | native-n4-g1 | DNR | - | DNR | 0.500 | - |"),
        "{md}"
    );

    let o = run(&["report", path_str(&doc), "--csv"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let csv = stdout(&o);
    assert!(
        csv.starts_with("scenario,backend,step,guest,role,metric,unit,rep,value,status,reason\n"),
        "{csv}"
    );
    assert_eq!(csv.lines().count(), 1 + 6 * 3 + 1, "{csv}");
    assert!(csv.contains(
        "scalability,native,4,native-n4-g1,,cpu.primes,events/s,,,DNR,did not return (DNR): no \
         sample within 30 s\n"
    ));

    let out = dir.join("page");
    let o = run(&["report", path_str(&doc), "--html", path_str(&out)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(html.contains("<section id=\"scalability\">"));
    assert!(html.contains("<svg id=\"chart-scalability\" class=\"chart\""));
    assert!(html.contains("title=\"did not return (DNR): no sample within 30 s\">DNR</td>"));

    let o = run(&["report", "--help"]);
    assert!(stdout(&o).contains("status DNR"), "{}", stdout(&o));
}

#[test]
fn qos_csv_says_when_the_document_has_no_app_web() {
    let o = run(&["report", path_str(&fixture("native.json")), "--qos-csv"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("has no QoS curve"), "{}", stderr(&o));
}
