//! `app.pgbench.ro` and `app.pgbench.rw`: PostgreSQL driven by its own pgbench, as the
//! Phoronix Test Suite and PerfKitBenchmarker run it.
//!
//! Once per guest (not timed): `initdb` in `/mnt/pg` (the guest's disk), the server started in
//! the foreground as user `postgres` with the settings below, a database initialised with
//! `pgbench -i -s SCALE`. Each repetition is then one `pgbench -n -M prepared -c C -j C -T
//! SECONDS` (`-S`, select-only, for `ro`; the TPC-B-like default for `rw`), whose transaction
//! log (`-l`, a 5% sample of the transactions for `ro`, 50% for `rw`: a line per transaction
//! would slow the select-only mix by 13%) gives the latency distribution. The metric is pgbench's own TPS (excluding
//! connection set-up); `lat_avg_ms`, `lat_p50_ms`, `lat_p99_ms` and `failed` beside it.
//!
//! Server settings (recorded as labels): `shared_buffers=128MB`, `max_connections=64`, no TCP
//! (a Unix socket in /tmp), `fsync` and `synchronous_commit` at their defaults (on), so that
//! the read-write mix waits on the guest's disk at every commit, as a database does.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use super::root::AppRoot;
use super::{output_tail, run_checked, App};
use crate::{param_u64, Outcome, Params, WorkloadError};

/// Scale factor of `pgbench -i` (10: 1 million accounts, about 160 MB).
const DEFAULT_SCALE: u64 = 10;
const SHARED_BUFFERS: &str = "128MB";
/// How long a server may take to accept connections (a guest under binary translation is slow).
const READY_TIMEOUT: Duration = Duration::from_secs(600);

/// The running server of a guest.
#[derive(Debug)]
pub struct Server {
    child: Child,
    scale: u64,
    bin: String,
    version: String,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `/usr/lib/postgresql/<major>/bin` inside the root.
fn bin_dir(root: &AppRoot) -> Result<String, WorkloadError> {
    let base = root.root.join("usr/lib/postgresql");
    let mut majors: Vec<String> = std::fs::read_dir(&base)
        .map_err(|e| {
            WorkloadError::Unsupported(format!(
                "no PostgreSQL in the root file system ({}: {e})",
                base.display()
            ))
        })?
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(String::from))
        .collect();
    majors.sort();
    let major = majors.pop().ok_or_else(|| {
        WorkloadError::Unsupported("no PostgreSQL in the root file system".into())
    })?;
    Ok(format!("/usr/lib/postgresql/{major}/bin"))
}

/// Starts the guest's server and loads its database, unless one at this scale is running.
fn ensure_server(app: &mut App, scale: u64) -> Result<(), WorkloadError> {
    let reuse = match &mut app.pg {
        Some(s) => s.scale == scale && s.child.try_wait().ok().flatten().is_none(),
        None => false,
    };
    if !reuse {
        app.pg = None;
        app.pg = Some(start(&app.root, scale)?);
    }
    Ok(())
}

fn start(root: &AppRoot, scale: u64) -> Result<Server, WorkloadError> {
    let bin = bin_dir(root)?;
    let user = root.user("postgres")?;
    let data = root.outside("/mnt/pg");
    if data.exists() {
        std::fs::remove_dir_all(&data)
            .map_err(|e| WorkloadError::Failed(format!("{}: {e}", data.display())))?;
    }
    std::fs::create_dir_all(&data)
        .map_err(|e| WorkloadError::Failed(format!("{}: {e}", data.display())))?;
    chown(&data, user)?;
    let mut initdb = root.command(&format!("{bin}/initdb"), Some(user));
    initdb.args([
        "-D",
        "/mnt/pg",
        "-U",
        "postgres",
        "-A",
        "trust",
        "-E",
        "UTF8",
        "--locale=C",
        "--no-sync",
    ]);
    run_checked(&mut initdb, "initdb")?;
    let log = root.outside("/mnt/pg.log");
    let log_file = std::fs::File::create(&log)
        .map_err(|e| WorkloadError::Failed(format!("{}: {e}", log.display())))?;
    let mut postgres = root.command(&format!("{bin}/postgres"), Some(user));
    postgres
        .args(["-D", "/mnt/pg"])
        .args(
            server_settings()
                .iter()
                .flat_map(|(k, v)| ["-c".to_string(), format!("{k}={v}")]),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log_file));
    let child = postgres
        .spawn()
        .map_err(|e| WorkloadError::Failed(format!("starting postgres: {e}")))?;
    let mut server = Server {
        child,
        scale,
        version: String::new(),
        bin: bin.clone(),
        log,
    };
    wait_ready(root, &mut server, user)?;
    let mut createdb = root.command(&format!("{bin}/createdb"), Some(user));
    createdb.args(["-h", "/tmp", "-U", "postgres", "bench"]);
    run_checked(&mut createdb, "createdb").map_err(|e| with_log(e, &server.log))?;
    let mut init = root.command(&format!("{bin}/pgbench"), Some(user));
    init.args(["-h", "/tmp", "-U", "postgres", "-i", "-q", "-s"])
        .arg(scale.to_string())
        .arg("bench");
    run_checked(&mut init, "pgbench -i").map_err(|e| with_log(e, &server.log))?;
    let mut version = root.command(&format!("{bin}/postgres"), Some(user));
    version.arg("--version");
    server.version = run_checked(&mut version, "postgres --version")?
        .trim()
        .rsplit(' ')
        .next()
        .unwrap_or_default()
        .to_string();
    Ok(server)
}

/// The settings the server runs with (each a `-c`), recorded with every sample.
pub fn server_settings() -> Vec<(&'static str, &'static str)> {
    vec![
        ("listen_addresses", ""),
        ("unix_socket_directories", "/tmp"),
        ("shared_buffers", SHARED_BUFFERS),
        ("max_connections", "64"),
        ("logging_collector", "off"),
    ]
}

fn with_log(e: WorkloadError, log: &Path) -> WorkloadError {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    match e {
        WorkloadError::Failed(m) => WorkloadError::Failed(format!(
            "{m}; the server's log ends: {}",
            output_tail(&text)
        )),
        other => other,
    }
}

fn chown(path: &Path, (uid, gid): (u32, u32)) -> Result<(), WorkloadError> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .map_err(|e| WorkloadError::Failed(format!("chown {}: {e}", path.display())))
}

fn wait_ready(root: &AppRoot, server: &mut Server, user: (u32, u32)) -> Result<(), WorkloadError> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Ok(Some(status)) = server.child.try_wait() {
            return Err(with_log(
                WorkloadError::Failed(format!("postgres exited ({status}) while starting")),
                &server.log,
            ));
        }
        let mut ready = root.command(&format!("{}/pg_isready", server.bin), Some(user));
        ready
            .args(["-q", "-h", "/tmp"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if ready.status().map(|s| s.success()).unwrap_or(false) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(with_log(
                WorkloadError::Failed(format!(
                    "postgres did not accept connections within {} s",
                    READY_TIMEOUT.as_secs()
                )),
                &server.log,
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What pgbench printed that the result is made of.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub transactions: u64,
    pub failed: u64,
    pub tps: f64,
    pub latency_avg_ms: f64,
}

/// Parses pgbench's summary (PostgreSQL 13-17 formats).
pub fn parse_report(text: &str) -> Option<Report> {
    let number_after = |key: &str| -> Option<f64> {
        let line = text.lines().find(|l| l.trim_start().starts_with(key))?;
        let rest = line.split_once(key)?.1;
        let rest = rest.trim_start_matches([':', '=', ' ']);
        rest.split_whitespace().next()?.parse().ok()
    };
    Some(Report {
        transactions: number_after("number of transactions actually processed")? as u64,
        failed: number_after("number of failed transactions").unwrap_or(0.0) as u64,
        tps: number_after("tps")?,
        latency_avg_ms: number_after("latency average")?,
    })
}

/// Per-transaction latencies in µs from pgbench's `-l` log lines (`client txn time_us script
/// epoch epoch_us`).
pub fn parse_log(text: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|l| l.split_whitespace().nth(2)?.parse().ok())
        .collect()
}

fn percentile(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64
}

pub fn run(params: &Params, seconds: u64, select_only: bool) -> Result<Outcome, WorkloadError> {
    let scale = param_u64(params, "scale", DEFAULT_SCALE)?.max(1);
    let clients = param_u64(params, "clients", 1)?.clamp(1, 60);
    super::with_app(params, |app| {
        ensure_server(app, scale)?;
        let server = app.pg.as_ref().expect("started above");
        let root = &app.root;
        let user = root.user("postgres")?;
        let prefix = "/tmp/hvb-pgbench";
        clear_logs(root)?;
        let mut cmd = root.command(&format!("{}/pgbench", server.bin), Some(user));
        // The transaction log samples a share of the transactions: a log line per transaction
        // costs a write each, which cost the select-only mix 13% of its rate here (validated
        // against pgbench by hand, docs/validation.md); a sample gives the same percentiles.
        let sampling = if select_only { 0.05 } else { 0.5 };
        cmd.args(["-h", "/tmp", "-U", "postgres", "-n", "-M", "prepared", "-l"])
            .arg(format!("--sampling-rate={sampling}"))
            .arg(format!("--log-prefix={prefix}"))
            .args(["-c", &clients.to_string(), "-j", &clients.to_string()])
            .args(["-T", &seconds.max(1).to_string()]);
        if select_only {
            cmd.arg("-S");
        }
        cmd.arg("bench");
        let text = run_checked(&mut cmd, "pgbench").map_err(|e| with_log(e, &server.log))?;
        let report = parse_report(&text).ok_or_else(|| {
            WorkloadError::Failed(format!(
                "pgbench printed no summary: {}",
                output_tail(&text)
            ))
        })?;
        let mut lat = Vec::new();
        for f in logs(root)? {
            lat.extend(parse_log(&std::fs::read_to_string(&f).unwrap_or_default()));
        }
        clear_logs(root)?;
        lat.sort_unstable();
        if report.tps <= 0.0 || report.transactions == 0 {
            return Err(WorkloadError::Failed(format!(
                "pgbench processed no transaction: {}",
                output_tail(&text)
            )));
        }
        // pgbench's own interval (connection set-up excluded): its TPS is the metric.
        let elapsed = Duration::from_secs_f64(report.transactions as f64 / report.tps);
        let mut out = Outcome::new(report.transactions as f64, elapsed);
        out.extras
            .insert("lat_avg_ms".into(), report.latency_avg_ms);
        // A short run of a slow guest may log no transaction at all (a 5% sample of 20): no
        // percentiles then, rather than invented ones.
        if !lat.is_empty() {
            out.extras
                .insert("lat_p50_ms".into(), percentile(&lat, 0.50) / 1e3);
            out.extras
                .insert("lat_p99_ms".into(), percentile(&lat, 0.99) / 1e3);
        }
        out.extras.insert("failed".into(), report.failed as f64);
        out.labels.insert("postgres".into(), server.version.clone());
        out.labels.insert("scale".into(), scale.to_string());
        out.labels.insert("clients".into(), clients.to_string());
        if let Some(c) = &root.cpus {
            out.labels.insert("cpus".into(), format!("{c:?}"));
        }
        out.labels.insert("protocol".into(), "prepared".into());
        out.labels.insert(
            "latency_sample".into(),
            format!("{} of {} transactions", lat.len(), report.transactions),
        );
        out.labels
            .insert("shared_buffers".into(), SHARED_BUFFERS.to_string());
        out.labels
            .insert("fsync".into(), "on (default), synchronous_commit on".into());
        Ok(out)
    })
}

fn logs(root: &AppRoot) -> Result<Vec<PathBuf>, WorkloadError> {
    let tmp = root.outside("/tmp");
    Ok(std::fs::read_dir(&tmp)
        .map_err(|e| WorkloadError::Failed(format!("{}: {e}", tmp.display())))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("hvb-pgbench"))
        })
        .collect())
}

fn clear_logs(root: &AppRoot) -> Result<(), WorkloadError> {
    for f in logs(root)? {
        let _ = std::fs::remove_file(f);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PG15: &str = "pgbench (15.10 (Debian 15.10-0+deb12u1))
transaction type: <builtin: select only>
scaling factor: 10
query mode: prepared
number of clients: 1
number of threads: 1
maximum number of tries: 1
duration: 10 s
number of transactions actually processed: 71234
number of failed transactions: 0 (0.000%)
latency average = 0.140 ms
initial connection time = 2.345 ms
tps = 7123.456789 (without initial connection time)
";

    #[test]
    fn the_summary_is_parsed() {
        let r = parse_report(PG15).unwrap();
        assert_eq!(r.transactions, 71234);
        assert_eq!(r.failed, 0);
        assert!((r.tps - 7123.456789).abs() < 1e-9);
        assert!((r.latency_avg_ms - 0.140).abs() < 1e-12);
        assert_eq!(parse_report("pgbench: error: connection failed"), None);
    }

    #[test]
    fn latencies_come_from_the_third_field_of_the_log() {
        let log = "0 0 138 0 1733100000 123456\n0 1 201 0 1733100000 123700\n";
        assert_eq!(parse_log(log), vec![138, 201]);
        let sorted = [1, 2, 3, 4, 5, 6, 7, 8, 9, 100];
        assert_eq!(percentile(&sorted, 0.5), 5.0);
        assert_eq!(percentile(&sorted, 0.99), 100.0);
        assert!(percentile(&[], 0.5).is_nan());
    }
}
