//! `app.web`: nginx in the guest serves a SPECweb-Support-like file set; the host's load
//! generator ([`crate::net::web_load`], run by the host peer) drives sessions against it; the
//! agent searches the largest number of simultaneous sessions that still meets QoS (seed 003's
//! metric).
//!
//! The agent starts nginx once (its files are generated once on the guest's disk, not timed),
//! then asks the peer for loads of N sessions, one connection per load. The search of a
//! repetition starts at the previous repetition's answer (the first, the host's warm-up, at
//! 16): up or down by a factor of 2 while the last load was far from the QoS edge (at least 99%
//! good when it passed, under 80% when it failed), by a quarter near it, until QoS flips; then
//! it halves the bracket until it is within a tenth. The value is the largest N that met QoS; the probes and their fraction of
//! good requests (the QoS curve) go with it.
//!
//! SPECweb2005 Support's rules, scaled from its 5 s mean think time to [`THINK_MEAN_MS`] (a
//! factor of 50), so that one machine can drive the guest to its limit: TIME_GOOD 3 s → 60 ms,
//! TIME_TOLERABLE 5 s → 100 ms, downloads' 99,000 B/s → 4.95 MB/s.
//!
//! Parameters: `web_listen` (where nginx listens, set by the host with the network), `listen`
//! (the agent's own, where the peer connects), `web_sessions` (measure that N only, without a
//! search: the throughput and latency at a fixed load, for a cross-check), `web_think_ms`
//! (mean think time, default 100; 0 makes every session a closed loop without pauses),
//! `web_files` (files in the set, default 300).

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use super::{output_tail, with_app, App};
use crate::net::web_load::{FileSet, LoadResult, LoadSpec};
use crate::{param_u64, Outcome, Params, WorkloadError};

pub const THINK_MEAN_MS: f64 = 100.0;
/// SPECweb's scale factor: its Support think time (5 s) over ours.
const SCALE: f64 = 5000.0 / THINK_MEAN_MS;
const DEFAULT_FILES: u64 = 300;
/// The most sessions a load may have (a thread each on the host).
const MAX_SESSIONS: u32 = 4096;
/// The first load of a search without an earlier answer.
const FIRST_SESSIONS: u32 = 16;
/// Loads per repetition at most.
const MAX_PROBES: usize = 14;

/// nginx, kept running between repetitions.
#[derive(Debug)]
pub struct Server {
    child: Child,
    listen: String,
    files: u32,
    version: String,
    /// The largest load that met QoS in the last search.
    last_max: Option<u32>,
}

impl Drop for Server {
    fn drop(&mut self) {
        // nginx's master stops its workers on SIGTERM; SIGKILL would leave them serving.
        // SAFETY: kill has no memory preconditions; the pid is our own child's.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One load under the scaled QoS rules (which do not move with `think_ms`).
fn spec(sessions: u32, think_ms: f64, files: u32, measure_ms: u64, seed: u64) -> LoadSpec {
    LoadSpec {
        sessions,
        ramp_ms: 200,
        measure_ms,
        think_mean_ms: think_ms,
        think_max_ms: think_ms * 15.0,
        time_good_ms: 3000.0 / SCALE,
        time_tolerable_ms: 5000.0 / SCALE,
        download_bytes: 64 * 1024,
        rate_good_bps: 99_000.0 * SCALE,
        files,
        seed,
        timeout_ms: 5000,
    }
}

/// The measurement window of a load of `n` sessions: `base_ms`, stretched so that it expects
/// a third more requests than QoS needs (small loads think most of the time), at most 15 s.
fn window_ms(base_ms: u64, n: u32, think_ms: f64) -> u64 {
    let per_session = think_ms.max(1.0);
    let needed = 1.35 * crate::net::web_load::MIN_REQUESTS as f64 * per_session / f64::from(n);
    (needed.ceil() as u64).clamp(base_ms, 15_000.max(base_ms))
}

/// The next load of a search, or `None` when it is over. `pass` is the largest load that met
/// QoS, `fail` the smallest that did not; `far` when the last load was far from the QoS edge
/// (steps of 2, not of a quarter).
/// without an earlier answer.
pub fn next_load(pass: Option<u32>, fail: Option<u32>, far: bool) -> Option<u32> {
    let factor = if far { 2.0 } else { 1.25 };
    match (pass, fail) {
        (Some(p), Some(f)) => {
            // Resolved to a tenth (or to one session).
            if f <= p + 1 || f64::from(f) <= f64::from(p) * 1.1 {
                None
            } else {
                Some(p + (f - p) / 2)
            }
        }
        (Some(p), None) => {
            if p >= MAX_SESSIONS {
                return None;
            }
            let up = (f64::from(p) * factor).ceil() as u32;
            Some(up.max(p + 1).min(MAX_SESSIONS))
        }
        (None, Some(f)) => {
            if f <= 1 {
                return None;
            }
            let down = (f64::from(f) / factor).floor() as u32;
            Some(down.clamp(1, f - 1))
        }
        (None, None) => None,
    }
}

/// Whether a load's share of good requests is far from the QoS edge (95%).
fn far_from_edge(good_fraction: f64) -> bool {
    !(0.80..0.99).contains(&good_fraction)
}

pub fn run(params: &Params, seconds: u64) -> Result<Outcome, WorkloadError> {
    let files = param_u64(params, "web_files", DEFAULT_FILES)?;
    if !(2..=10_000).contains(&files) {
        return Err(WorkloadError::BadParam(format!(
            "web_files must be in 2..=10000, got {files}"
        )));
    }
    let think_ms = param_u64(params, "web_think_ms", THINK_MEAN_MS as u64)? as f64;
    let fixed = params.get("web_sessions").and_then(|v| v.as_u64());
    with_app(params, |app| {
        let web_listen = params
            .get("web_listen")
            .and_then(|v| v.as_str())
            .ok_or_else(|| {
                WorkloadError::Unsupported(
                    "no network attached to this guest for its web server (no `web_listen`)".into(),
                )
            })?
            .to_string();
        ensure_server(app, &web_listen, files as u32)?;
        let server = app.web.as_mut().expect("ensured");
        let base_ms = (seconds.max(1) * 240).min(10_000);
        let started = Instant::now();
        let mut probes: Vec<LoadResult> = Vec::new();
        let mut pass: Option<usize>;
        let mut fail: Option<(usize, String)> = None;
        let mut n = fixed
            .map(|n| n.clamp(1, u64::from(MAX_SESSIONS)) as u32)
            .or(server.last_max)
            .unwrap_or(FIRST_SESSIONS);
        // The first search of a guest (its warm-up) climbs from a few sessions by doubling:
        // loads far below the limit pass by a wide margin, so until one fails they are
        // measured in half the window. Every load near the edge gets the whole window.
        let first_search = server.last_max.is_none() && fixed.is_none();
        loop {
            let seed = probes.len() as u64 + 1;
            let base = if first_search && fail.is_none() {
                base_ms / 2
            } else {
                base_ms
            };
            let load = spec(
                n,
                think_ms,
                server.files,
                window_ms(base, n, think_ms),
                seed,
            );
            let r = crate::net::web_load(params, &load)?;
            if let Err(why) = r.qos() {
                if fail.as_ref().is_none_or(|(f, _)| probes[*f].sessions > n) {
                    fail = Some((probes.len(), why));
                }
            }
            probes.push(r);
            // The answer is the largest load that met QoS below the smallest that did not: near
            // the limit a noisy host can fail a load and pass a larger one; the smaller counts.
            let f = fail.as_ref().map(|(i, _)| probes[*i].sessions);
            pass = (0..probes.len())
                .filter(|&i| probes[i].qos().is_ok() && f.is_none_or(|f| probes[i].sessions < f))
                .max_by_key(|&i| probes[i].sessions);
            if fixed.is_some() || probes.len() >= MAX_PROBES {
                break;
            }
            let p = pass.map(|i| probes[i].sessions);
            let far = far_from_edge(probes[probes.len() - 1].good_fraction());
            match next_load(p, f, far) {
                Some(next) => n = next,
                None => break,
            }
        }
        let elapsed = started.elapsed();
        let curve = qos_curve(&probes);
        if fixed.is_some() {
            // A fixed load: its throughput is the value, whatever QoS says.
            let r = &probes[0];
            let mut out = Outcome::new(r.sessions as f64, elapsed);
            describe(&mut out, r, server, &load_rules(think_ms), &curve);
            out.labels
                .insert("qos".into(), r.qos().err().unwrap_or_else(|| "met".into()));
            return Ok(out);
        }
        let Some(best) = pass else {
            let why = fail.map(|(i, w)| format!("{} sessions: {w}", probes[i].sessions));
            return Err(WorkloadError::Failed(format!(
                "no load met QoS ({}); the loads: {curve}",
                why.unwrap_or_default()
            )));
        };
        let r = &probes[best];
        server.last_max = Some(r.sessions);
        let mut out = Outcome::new(f64::from(r.sessions), elapsed);
        describe(&mut out, r, server, &load_rules(think_ms), &curve);
        out.extras.insert("probes".into(), probes.len() as f64);
        match &fail {
            Some((i, why)) => {
                out.labels.insert(
                    "first_failing".into(),
                    format!("{} sessions: {why}", probes[*i].sessions),
                );
            }
            None => {
                out.labels.insert(
                    "bound".into(),
                    format!("no load failed QoS up to {} sessions", r.sessions),
                );
            }
        }
        Ok(out)
    })
}

fn load_rules(think_ms: f64) -> String {
    let s = spec(1, think_ms, 2, 0, 0);
    format!(
        "SPECweb2005 Support scaled 1/{SCALE:.0}: >= 95% within {:.0} ms, >= 99% within {:.0} ms, \
         < 1% failed, >= 100 requests; downloads (>= {} KiB) by rate, good at {:.2} MB/s; \
         think time exponential, mean {:.0} ms, max {:.0} ms",
        s.time_good_ms,
        s.time_tolerable_ms,
        s.download_bytes / 1024,
        s.rate_good_bps / 1e6,
        s.think_mean_ms,
        s.think_max_ms
    )
}

/// The loads of a search, by number of sessions: `N:percent good`, comma separated.
pub fn qos_curve(probes: &[LoadResult]) -> String {
    let mut points: Vec<(u32, f64)> = probes
        .iter()
        .map(|r| (r.sessions, r.good_fraction() * 100.0))
        .collect();
    points.sort_by_key(|p| p.0);
    points.dedup_by_key(|p| p.0);
    points
        .iter()
        .map(|(n, g)| format!("{n}:{g:.1}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn describe(out: &mut Outcome, r: &LoadResult, server: &Server, rules: &str, curve: &str) {
    let e = &mut out.extras;
    e.insert("req_per_s".into(), r.throughput());
    e.insert("served".into(), r.served as f64);
    e.insert("served_bytes".into(), r.served_bytes as f64);
    e.insert(
        "mb_per_s".into(),
        r.bytes as f64 / r.window_s.max(1e-9) / 1e6,
    );
    e.insert("p50_ms".into(), r.p50_ms);
    e.insert("p95_ms".into(), r.p95_ms);
    e.insert("p99_ms".into(), r.p99_ms);
    e.insert("good_pct".into(), r.good_fraction() * 100.0);
    e.insert(
        "late_start_pct".into(),
        r.late_starts as f64 / (r.requests.max(1)) as f64 * 100.0,
    );
    e.insert(
        "generator_cpu_pct".into(),
        r.generator_cpu_s / r.wall_s.max(1e-9) * 100.0,
    );
    let l = &mut out.labels;
    l.insert("qos_curve".into(), curve.to_string());
    l.insert("qos_rules".into(), rules.to_string());
    l.insert("nginx".into(), server.version.clone());
    l.insert("web_listen".into(), server.listen.clone());
    l.insert(
        "file_set".into(),
        format!(
            "{} files, 1 KiB to 1 MiB, {:.1} MiB in all, mean request {:.1} KiB",
            server.files,
            FileSet::new(server.files).total_bytes() as f64 / (1 << 20) as f64,
            FileSet::new(server.files).mean_request_bytes() / 1024.0
        ),
    );
    if !r.errors.is_empty() {
        l.insert("errors".into(), r.errors.join(" | "));
    }
}

/// Generates the file set and starts nginx, unless it runs already for this address.
fn ensure_server(app: &mut App, listen: &str, files: u32) -> Result<(), WorkloadError> {
    let reuse = match &mut app.web {
        Some(s) => {
            s.listen == listen && s.files == files && s.child.try_wait().ok().flatten().is_none()
        }
        None => false,
    };
    if !reuse {
        app.web = None;
        write_files(&app.root.outside("/mnt/web/files"), files)?;
        app.web = Some(start(app, listen, files)?);
    }
    Ok(())
}

fn failed(what: &str, path: &Path, e: std::io::Error) -> WorkloadError {
    WorkloadError::Failed(format!("{what} {}: {e}", path.display()))
}

/// Writes the file set (incompressible bytes), once: a marker says it is complete.
fn write_files(dir: &Path, count: u32) -> Result<(), WorkloadError> {
    let marker = dir.join(format!(".complete-{count}"));
    if marker.exists() {
        return Ok(());
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| failed("removing", dir, e))?;
    }
    std::fs::create_dir_all(dir).map_err(|e| failed("creating", dir, e))?;
    let set = FileSet::new(count);
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut buf = vec![0u8; 1 << 20];
    for i in 0..count {
        let size = set.size(i) as usize;
        for chunk in buf[..size].chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let b = x.to_le_bytes();
            chunk.copy_from_slice(&b[..chunk.len()]);
        }
        let path = dir.join(FileSet::name(i));
        std::fs::write(&path, &buf[..size]).map_err(|e| failed("writing", &path, e))?;
    }
    std::fs::File::create(&marker).map_err(|e| failed("writing", &marker, e))?;
    Ok(())
}

/// nginx's configuration: one worker per CPU the applications may use, no access log,
/// sendfile, keep-alive connections that last the whole run, every path under /mnt or /tmp
/// (the root file system is read-only). Each worker raises its own open-file limit: a guest's
/// init leaves the kernel's default of 1024, and a uniprocessor guest's one worker then
/// refused every session past ~1020 (UML's load levels fell from 98.7% good at 1024 sessions to
/// 0.6% at 1088: a limit of the configuration, not of the guest).
fn config(listen: &str, workers: usize) -> String {
    format!(
        "user www-data www-data;
worker_processes {workers};
worker_rlimit_nofile 40000;
daemon off;
master_process on;
pid /tmp/hvbench-nginx.pid;
error_log /mnt/web/error.log warn;
events {{ worker_connections 16384; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 300s;
    keepalive_requests 10000000;
    client_body_temp_path /tmp/nginx-body;
    proxy_temp_path /tmp/nginx-proxy;
    fastcgi_temp_path /tmp/nginx-fastcgi;
    uwsgi_temp_path /tmp/nginx-uwsgi;
    scgi_temp_path /tmp/nginx-scgi;
    default_type application/octet-stream;
    server {{
        listen {listen} backlog=4096;
        root /mnt/web/files;
    }}
}}
"
    )
}

fn start(app: &App, listen: &str, files: u32) -> Result<Server, WorkloadError> {
    let root = &app.root;
    if !root.outside("/usr/sbin/nginx").exists() {
        return Err(WorkloadError::Unsupported(
            "no nginx in the root file system (rebuild it: hvbench image build)".into(),
        ));
    }
    let addr: SocketAddr = listen.parse().map_err(|e| {
        WorkloadError::BadParam(format!(
            "web_listen must be an address, got {listen:?}: {e}"
        ))
    })?;
    let workers = root.cpus.as_ref().map_or(1, |c| c.len().max(1));
    let conf = root.outside("/mnt/web/nginx.conf");
    std::fs::write(&conf, config(listen, workers)).map_err(|e| failed("writing", &conf, e))?;
    let log = root.outside("/mnt/web/error.log");
    let log_file = std::fs::File::create(&log).map_err(|e| failed("creating", &log, e))?;
    let mut version = root.command("/usr/sbin/nginx", None);
    version.arg("-v").stderr(Stdio::piped());
    let v = version
        .output()
        .map_err(|e| WorkloadError::Failed(format!("nginx -v: {e}")))?;
    let version = String::from_utf8_lossy(&v.stderr)
        .trim()
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let mut cmd = root.command("/usr/sbin/nginx", None);
    cmd.args([
        "-c",
        "/mnt/web/nginx.conf",
        "-p",
        "/mnt/web/",
        "-e",
        "/mnt/web/error.log",
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::from(log_file));
    let child = cmd
        .spawn()
        .map_err(|e| WorkloadError::Failed(format!("starting nginx: {e}")))?;
    let mut server = Server {
        child,
        listen: listen.to_string(),
        files,
        version,
        last_max: None,
    };
    // Ready when it answers a request for the smallest file.
    let probe = if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(status)) = server.child.try_wait() {
            return Err(WorkloadError::Failed(format!(
                "nginx exited ({status}): {}",
                log_tail(&log)
            )));
        }
        if answers(probe) {
            return Ok(server);
        }
        if Instant::now() > deadline {
            return Err(WorkloadError::Failed(format!(
                "nginx did not answer on {listen} within 30 s: {}",
                log_tail(&log)
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn log_tail(path: &Path) -> String {
    output_tail(&std::fs::read_to_string(path).unwrap_or_default())
}

/// Whether a web server at `addr` serves the set's first file.
fn answers(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = format!(
        "GET /{} HTTP/1.1\r\nHost: hvbench\r\nConnection: close\r\n\r\n",
        FileSet::name(0)
    );
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    std::io::Read::read_exact(&mut s, &mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rules_are_specweb_support_scaled_to_the_think_time() {
        let s = spec(10, THINK_MEAN_MS, 300, 1500, 1);
        assert_eq!(s.time_good_ms, 60.0);
        assert_eq!(s.time_tolerable_ms, 100.0);
        assert_eq!(s.think_max_ms, 1500.0);
        assert!((s.rate_good_bps - 4.95e6).abs() < 1.0);
    }

    #[test]
    fn small_loads_get_a_window_long_enough_for_qos() {
        // One session thinking 100 ms makes 135 requests in 13.5 s.
        assert_eq!(window_ms(1200, 1, 100.0), 13_500);
        assert_eq!(window_ms(1200, 1000, 100.0), 1200);
        assert_eq!(window_ms(1200, 10, 100.0), 1350);
        assert_eq!(window_ms(20_000, 1, 100.0), 20_000);
    }

    /// Runs a search against a server that meets QoS up to `limit` sessions, whose share of
    /// good requests falls off beyond it.
    fn search(limit: u32, start: u32) -> (Option<u32>, usize) {
        let (mut pass, mut fail, mut n) = (None, None, start);
        for probes in 1..=MAX_PROBES {
            let good = if n <= limit {
                pass = pass.max(Some(n));
                if n * 2 <= limit {
                    1.0
                } else {
                    0.97
                }
            } else {
                fail = Some(fail.map_or(n, |f: u32| f.min(n)));
                if n >= limit.saturating_mul(2) {
                    0.5
                } else {
                    0.9
                }
            };
            match next_load(pass, fail, far_from_edge(good)) {
                Some(next) => n = next,
                None => return (pass, probes),
            }
        }
        (pass, MAX_PROBES)
    }

    #[test]
    fn the_search_finds_the_limit_within_a_tenth() {
        for limit in [1, 3, 7, 8, 20, 45, 100, 333, 1000, 4000] {
            let (found, probes) = search(limit, FIRST_SESSIONS);
            let found = found.unwrap_or(0);
            assert!(found <= limit, "{limit}: {found}");
            assert!(
                f64::from(found) >= f64::from(limit) / 1.1 - 1.0,
                "{limit}: found {found}"
            );
            assert!(probes < MAX_PROBES, "{limit}: {probes} probes");
        }
        // Nothing meets QoS: the search ends at one session, having found nothing.
        assert_eq!(search(0, FIRST_SESSIONS).0, None);
        // Everything does: it stops at the cap.
        assert_eq!(search(u32::MAX, FIRST_SESSIONS).0, Some(MAX_SESSIONS));
    }

    #[test]
    fn a_search_from_an_earlier_answer_takes_few_loads() {
        for (limit, last) in [(100, 100), (100, 90), (100, 110), (50, 60), (400, 150)] {
            let (found, probes) = search(limit, last);
            let found = found.unwrap();
            assert!(found <= limit && f64::from(found) >= f64::from(limit) / 1.1 - 1.0);
            assert!(probes <= 8, "{limit} from {last}: {probes} loads");
        }
    }

    #[test]
    fn the_curve_lists_each_load_once_by_sessions() {
        let r = |sessions, good| LoadResult {
            sessions,
            requests: 100,
            good,
            ..LoadResult::default()
        };
        assert_eq!(
            qos_curve(&[r(16, 90), r(8, 100), r(12, 97)]),
            "8:100.0,12:97.0,16:90.0"
        );
    }

    #[test]
    fn the_configuration_keeps_every_path_writable() {
        let c = config("0.0.0.0:8080", 2);
        assert!(c.contains("worker_processes 2;"));
        // A connection and a file being sent per session, beyond the connections allowed.
        assert!(c.contains("worker_rlimit_nofile 40000;"));
        assert!(c.contains("worker_connections 16384;"));
        assert!(c.contains("listen 0.0.0.0:8080"));
        for line in c
            .lines()
            .filter(|l| l.contains("_path ") || l.contains("log "))
        {
            assert!(
                line.contains("/tmp/") || line.contains("/mnt/") || line.contains("off"),
                "{line}"
            );
        }
    }
}
