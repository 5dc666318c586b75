//! The host side of `app.web`: a SPECweb-like load generator, and the file set both sides
//! agree on.
//!
//! **Sessions.** A load is `sessions` concurrent users, each a closed loop (SPECweb's model):
//! think for an exponentially distributed time (mean `think_mean_ms`, truncated at
//! `think_max_ms`), request one file over its own keep-alive HTTP/1.1 connection, read the
//! whole response, think again. Files are chosen by popularity, Zipf-like: the smallest file is
//! the most popular ([`FileSet`]).
//!
//! **Latency without coordinated omission.** A request's latency runs from the moment its
//! session *meant* to send it (the end of the previous response plus the think time) to the
//! last byte of the response, not from the moment the generator got round to sending it: a
//! generator that wakes late, or a session stuck behind a slow response, does not hide the
//! delay. Requests sent more than a millisecond late are counted (`late_starts`); many of them
//! mean the generator itself could not keep up.
//!
//! **Quality of service** (SPECweb2005 Support, scaled down to what one machine drives): a
//! request is *good* when it completes within `time_good_ms`, *tolerable* within
//! `time_tolerable_ms`; a download (a file of at least `download_bytes`) is judged by its byte
//! rate instead: good at `rate_good_bps` or more, tolerable at that rate scaled by
//! good/tolerable time. A load meets QoS when at least 95% of its requests are good, 99% good
//! or tolerable, fewer than 1% failed, and it made at least [`MIN_REQUESTS`] requests.
//!
//! Only requests whose intended start falls in the measurement window (after `ramp_ms`, for
//! `measure_ms`) count; those started in it are waited for, up to `timeout_ms`.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// SPECweb2005's minimum number of requests for a valid run.
pub const MIN_REQUESTS: u64 = 100;
/// A request later than this after its intended start is a late start.
const LATE: Duration = Duration::from_millis(1);
/// How long after the window a request still in flight is waited for: beyond it, it is
/// counted as neither good nor tolerable (it is, by far), not as failed, and the load ends.
const TAIL: Duration = Duration::from_secs(1);
/// Highest latency the histograms record (larger values are clamped to it).
const HIST_MAX_US: u64 = 600_000_000;

/// The files of the web workload: `count` files whose sizes grow geometrically from 1 KiB to
/// 1 MiB, requested with Zipf popularity (file `i` with weight `1/(i+1)`): many small pages,
/// few large downloads, as SPECweb's Support workload.
#[derive(Debug, Clone)]
pub struct FileSet {
    count: u32,
    /// Cumulative popularity, normalised to 1.
    cdf: Vec<f64>,
}

impl FileSet {
    pub fn new(count: u32) -> FileSet {
        let count = count.max(2);
        let mut cdf = Vec::with_capacity(count as usize);
        let mut sum = 0.0;
        for i in 0..count {
            sum += 1.0 / f64::from(i + 1);
            cdf.push(sum);
        }
        for c in cdf.iter_mut() {
            *c /= sum;
        }
        FileSet { count, cdf }
    }

    pub fn len(&self) -> u32 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// The size of file `i` in bytes: 1 KiB × 1024^(i/(count-1)).
    pub fn size(&self, i: u32) -> u64 {
        let f = f64::from(i) / f64::from(self.count - 1);
        (1024.0 * 1024f64.powf(f)).round() as u64
    }

    /// The name of file `i` (in the served directory).
    pub fn name(i: u32) -> String {
        format!("f{i:04}.bin")
    }

    /// The file a uniform draw `u` in [0, 1) picks.
    pub fn pick(&self, u: f64) -> u32 {
        self.cdf
            .partition_point(|&c| c <= u)
            .min(self.cdf.len() - 1) as u32
    }

    /// The mean size of a request, by popularity.
    pub fn mean_request_bytes(&self) -> f64 {
        let mut prev = 0.0;
        let mut mean = 0.0;
        for (i, &c) in self.cdf.iter().enumerate() {
            mean += (c - prev) * self.size(i as u32) as f64;
            prev = c;
        }
        mean
    }

    /// The bytes of all files together.
    pub fn total_bytes(&self) -> u64 {
        (0..self.count).map(|i| self.size(i)).sum()
    }
}

/// One load: what the agent asks the peer to drive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadSpec {
    pub sessions: u32,
    pub ramp_ms: u64,
    pub measure_ms: u64,
    pub think_mean_ms: f64,
    pub think_max_ms: f64,
    pub time_good_ms: f64,
    pub time_tolerable_ms: f64,
    /// Requests for files at least this large are downloads, judged by byte rate.
    pub download_bytes: u64,
    pub rate_good_bps: f64,
    /// How many files the set has ([`FileSet::new`]).
    pub files: u32,
    pub seed: u64,
    /// A request that takes longer fails.
    pub timeout_ms: u64,
}

/// What a load measured, from the host.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadResult {
    pub sessions: u32,
    /// Requests meant to start in the window: completed or failed.
    pub requests: u64,
    pub good: u64,
    pub tolerable: u64,
    pub failed: u64,
    /// Response bytes of the counted requests.
    pub bytes: u64,
    /// The window's length, seconds.
    pub window_s: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Requests sent more than a millisecond after their intended start.
    pub late_starts: u64,
    /// CPU time of the generator's session threads, seconds.
    pub generator_cpu_s: f64,
    /// Wall time of the whole load (ramp, window, the last responses), seconds.
    pub wall_s: f64,
    /// The first distinct errors (at most five).
    pub errors: Vec<String>,
}

impl LoadResult {
    pub fn good_fraction(&self) -> f64 {
        ratio(self.good, self.requests)
    }

    pub fn tolerable_fraction(&self) -> f64 {
        ratio(self.good + self.tolerable, self.requests)
    }

    pub fn failed_fraction(&self) -> f64 {
        ratio(self.failed, self.requests)
    }

    /// Requests per second completed in the window.
    pub fn throughput(&self) -> f64 {
        if self.window_s > 0.0 {
            (self.requests - self.failed) as f64 / self.window_s
        } else {
            0.0
        }
    }

    /// Whether the load met QoS, or why not.
    pub fn qos(&self) -> Result<(), String> {
        if self.requests < MIN_REQUESTS {
            return Err(format!(
                "{} requests, fewer than the {MIN_REQUESTS} QoS needs",
                self.requests
            ));
        }
        if self.failed_fraction() >= 0.01 {
            return Err(format!(
                "{:.1}% of requests failed",
                self.failed_fraction() * 100.0
            ));
        }
        if self.good_fraction() < 0.95 {
            return Err(format!(
                "{:.1}% good (95% needed)",
                self.good_fraction() * 100.0
            ));
        }
        if self.tolerable_fraction() < 0.99 {
            return Err(format!(
                "{:.1}% good or tolerable (99% needed)",
                self.tolerable_fraction() * 100.0
            ));
        }
        Ok(())
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// How one request is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Good,
    Tolerable,
    Late,
}

/// Judges a completed request of `bytes` that took `latency` (from its intended start).
pub fn judge(spec: &LoadSpec, bytes: u64, latency: Duration) -> Verdict {
    let ms = latency.as_secs_f64() * 1e3;
    if bytes >= spec.download_bytes {
        let rate = bytes as f64 / latency.as_secs_f64().max(1e-9);
        let tolerable_rate = spec.rate_good_bps * spec.time_good_ms / spec.time_tolerable_ms;
        if rate >= spec.rate_good_bps {
            Verdict::Good
        } else if rate >= tolerable_rate {
            Verdict::Tolerable
        } else {
            Verdict::Late
        }
    } else if ms <= spec.time_good_ms {
        Verdict::Good
    } else if ms <= spec.time_tolerable_ms {
        Verdict::Tolerable
    } else {
        Verdict::Late
    }
}

/// A small, fast, seedable generator (xorshift64*), one per session.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Exponential with `mean`, truncated at `max`.
    fn think(&mut self, mean: f64, max: f64) -> f64 {
        (-mean * (1.0 - self.uniform()).ln()).min(max)
    }
}

/// What one session counted.
struct SessionStats {
    hist: Histogram<u64>,
    requests: u64,
    good: u64,
    tolerable: u64,
    failed: u64,
    bytes: u64,
    late_starts: u64,
    cpu: Duration,
    errors: Vec<String>,
}

/// Drives `spec` against the web server at `addr`; `stop` ends it early (the result then
/// covers what ran). Session threads are pinned to `cpus` when given.
pub fn run_load(
    addr: SocketAddr,
    spec: &LoadSpec,
    stop: &AtomicBool,
    cpus: Option<&[usize]>,
) -> Result<LoadResult, String> {
    if spec.sessions == 0 || spec.sessions > 100_000 {
        return Err(format!(
            "sessions must be in 1..=100000, got {}",
            spec.sessions
        ));
    }
    let files = FileSet::new(spec.files);
    let start = Instant::now() + Duration::from_millis(20);
    let window_start = start + Duration::from_millis(spec.ramp_ms);
    let window_end = window_start + Duration::from_millis(spec.measure_ms);
    // Set when a session thread cannot be started: the others end at once.
    let abort = AtomicBool::new(false);
    let halted = || stop.load(Ordering::Relaxed) || abort.load(Ordering::Relaxed);
    let (sessions, spawn_error) = std::thread::scope(|scope| {
        let mut threads = Vec::with_capacity(spec.sessions as usize);
        let mut spawn_error = None;
        for s in 0..spec.sessions {
            let (files, halted) = (&files, &halted);
            let t = std::thread::Builder::new()
                .name("hvbench-web".into())
                .stack_size(128 * 1024)
                .spawn_scoped(scope, move || {
                    if let Some(cpus) = cpus {
                        pin_thread(cpus);
                    }
                    let window = (start, window_start, window_end);
                    session(addr, spec, files, halted, s, window)
                });
            match t {
                Ok(t) => threads.push(t),
                Err(e) => {
                    abort.store(true, Ordering::SeqCst);
                    spawn_error = Some(format!("starting session thread {s}: {e}"));
                    break;
                }
            }
        }
        let joined: Vec<Option<SessionStats>> =
            threads.into_iter().map(|t| t.join().ok()).collect();
        (joined, spawn_error)
    });
    if let Some(e) = spawn_error {
        return Err(e);
    }
    let mut hist = new_histogram();
    let mut r = LoadResult {
        sessions: spec.sessions,
        window_s: spec.measure_ms as f64 / 1e3,
        ..LoadResult::default()
    };
    let mut cpu = Duration::ZERO;
    for s in sessions {
        let s = s.ok_or_else(|| "a session thread panicked".to_string())?;
        hist.add(&s.hist)
            .map_err(|e| format!("merging histograms: {e}"))?;
        r.requests += s.requests;
        r.good += s.good;
        r.tolerable += s.tolerable;
        r.failed += s.failed;
        r.bytes += s.bytes;
        r.late_starts += s.late_starts;
        cpu += s.cpu;
        for e in s.errors {
            if r.errors.len() < 5 && !r.errors.contains(&e) {
                r.errors.push(e);
            }
        }
    }
    r.wall_s = start.elapsed().as_secs_f64();
    r.generator_cpu_s = cpu.as_secs_f64();
    if !hist.is_empty() {
        let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1e3;
        r.p50_ms = ms(0.50);
        r.p95_ms = ms(0.95);
        r.p99_ms = ms(0.99);
        r.max_ms = hist.max() as f64 / 1e3;
    }
    Ok(r)
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_US, 2).expect("valid histogram bounds")
}

fn pin_thread(cpus: &[usize]) {
    // SAFETY: cpu_set_t is a plain bit array; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &c in cpus {
        // SAFETY: callers pass CPUs below CPU_SETSIZE (from sched_getaffinity).
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    // SAFETY: `set` is a valid cpu_set_t of the size given; pid 0 is the calling thread. A
    // failure leaves the thread unpinned, which only loses the placement.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
}

fn thread_cpu() -> Duration {
    // SAFETY: timespec is plain data; clock_gettime fills it.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: a valid clock id and a valid pointer.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Sleeps until `t` or until `halted` says stop, whichever comes first; false if stopped.
fn sleep_until(t: Instant, halted: &dyn Fn() -> bool) -> bool {
    loop {
        if halted() {
            return false;
        }
        let now = Instant::now();
        if now >= t {
            return true;
        }
        std::thread::sleep((t - now).min(Duration::from_millis(100)));
    }
}

/// One session's loop; `window` is (the load's start, the window's start, its end).
fn session(
    addr: SocketAddr,
    spec: &LoadSpec,
    files: &FileSet,
    halted: &dyn Fn() -> bool,
    index: u32,
    window: (Instant, Instant, Instant),
) -> SessionStats {
    let (start, window_start, window_end) = window;
    let cpu0 = thread_cpu();
    let mut rng = Rng::new(spec.seed ^ (u64::from(index) << 32 | 0x5EED));
    let mut st = SessionStats {
        hist: new_histogram(),
        requests: 0,
        good: 0,
        tolerable: 0,
        failed: 0,
        bytes: 0,
        late_starts: 0,
        cpu: Duration::ZERO,
        errors: Vec::new(),
    };
    let timeout = Duration::from_millis(spec.timeout_ms.max(1));
    let mut conn: Option<BufReader<TcpStream>> = None;
    let mut body = vec![0u8; 64 * 1024];
    // Sessions start spread over one mean think time, not all at once.
    let mut intended =
        start + Duration::from_secs_f64(rng.uniform() * spec.think_mean_ms.max(0.0) / 1e3);
    while intended < window_end {
        if !sleep_until(intended, halted) {
            break;
        }
        let counted = intended >= window_start;
        if counted && intended.elapsed() > LATE {
            st.late_starts += 1;
        }
        let file = files.pick(rng.uniform());
        // A request may not outlast the window by more than the tail.
        let bound = (window_end + TAIL).saturating_duration_since(Instant::now());
        let cut = bound < timeout;
        let limit = timeout.min(bound).max(Duration::from_millis(1));
        let result = request(&mut conn, addr, file, limit, &mut body);
        let done = Instant::now();
        if counted {
            st.requests += 1;
            match result {
                Err(e) if cut && done >= window_end + TAIL && e.contains("timed out") => {
                    // Still in flight at the end: late, whatever its outcome would have been.
                    let latency = done - intended;
                    let _ = st
                        .hist
                        .record((latency.as_micros() as u64).clamp(1, HIST_MAX_US));
                    break;
                }
                Ok(bytes) => {
                    let latency = done - intended;
                    st.bytes += bytes;
                    let _ = st
                        .hist
                        .record((latency.as_micros() as u64).clamp(1, HIST_MAX_US));
                    match judge(spec, bytes, latency) {
                        Verdict::Good => st.good += 1,
                        Verdict::Tolerable => st.tolerable += 1,
                        Verdict::Late => {}
                    }
                }
                Err(e) => {
                    st.failed += 1;
                    if st.errors.len() < 2 && !halted() {
                        st.errors.push(e);
                    }
                }
            }
        }
        if halted() {
            break;
        }
        intended = done
            + Duration::from_secs_f64(
                rng.think(spec.think_mean_ms.max(0.0), spec.think_max_ms.max(0.0)) / 1e3,
            );
    }
    st.cpu = thread_cpu().saturating_sub(cpu0);
    st
}

/// One GET of file `file` on the session's connection (opened, or reopened once when a kept
/// connection turns out closed); the body's length.
fn request(
    conn: &mut Option<BufReader<TcpStream>>,
    addr: SocketAddr,
    file: u32,
    timeout: Duration,
    body: &mut [u8],
) -> Result<u64, String> {
    let req = format!(
        "GET /{} HTTP/1.1\r\nHost: hvbench\r\nUser-Agent: hvbench\r\n\r\n",
        FileSet::name(file)
    );
    for attempt in 0..2 {
        let reused = conn.is_some();
        if conn.is_none() {
            let s = TcpStream::connect_timeout(&addr, timeout)
                .map_err(|e| format!("connecting to {addr}: {e}"))?;
            let setup = s
                .set_nodelay(true)
                .and_then(|_| s.set_write_timeout(Some(timeout)));
            setup.map_err(|e| format!("setting up a connection to {addr}: {e}"))?;
            *conn = Some(BufReader::with_capacity(16 * 1024, s));
        }
        let c = conn.as_mut().expect("set above");
        c.get_ref()
            .set_read_timeout(Some(timeout))
            .map_err(|e| format!("setting a read timeout: {e}"))?;
        match exchange(c, req.as_bytes(), body) {
            Ok((bytes, keep)) => {
                if !keep {
                    *conn = None;
                }
                return Ok(bytes);
            }
            Err((e, nothing_read)) => {
                *conn = None;
                // A kept connection the server closed meanwhile: try once on a new one, as a
                // browser does.
                if !(reused && nothing_read && attempt == 0) {
                    return Err(e);
                }
            }
        }
    }
    Err("unreachable".into())
}

/// Sends a request and reads its response: the body's length and whether the connection may
/// be kept; on error, whether nothing of the response had arrived.
fn exchange(
    c: &mut BufReader<TcpStream>,
    req: &[u8],
    body: &mut [u8],
) -> Result<(u64, bool), (String, bool)> {
    c.get_mut()
        .write_all(req)
        .map_err(|e| (format!("sending a request: {e}"), true))?;
    let mut line = String::new();
    let n = c
        .read_line(&mut line)
        .map_err(|e| (describe(&e, "reading the status line"), true))?;
    if n == 0 {
        return Err(("the server closed the connection".into(), true));
    }
    let status = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let mut length: Option<u64> = None;
    let mut keep = true;
    loop {
        line.clear();
        let n = c
            .read_line(&mut line)
            .map_err(|e| (describe(&e, "reading the headers"), false))?;
        if n == 0 {
            return Err((
                "the server closed the connection in the headers".into(),
                false,
            ));
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            let (k, v) = (k.trim(), v.trim());
            if k.eq_ignore_ascii_case("content-length") {
                length = v.parse().ok();
            } else if k.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case("close") {
                keep = false;
            }
        }
    }
    let Some(length) = length else {
        return Err((
            format!("a response without Content-Length ({status})"),
            false,
        ));
    };
    let mut left = length;
    while left > 0 {
        let want = left.min(body.len() as u64) as usize;
        match c.read(&mut body[..want]) {
            Ok(0) => {
                return Err((
                    format!("the server closed the connection {left} bytes before the end"),
                    false,
                ))
            }
            Ok(k) => left -= k as u64,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err((describe(&e, "reading the body"), false)),
        }
    }
    if status != "200" {
        return Err((format!("HTTP status {status}"), false));
    }
    Ok((length, keep))
}

fn describe(e: &std::io::Error, what: &str) -> String {
    match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => format!("{what}: timed out"),
        _ => format!("{what}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> LoadSpec {
        LoadSpec {
            sessions: 4,
            ramp_ms: 50,
            measure_ms: 400,
            think_mean_ms: 10.0,
            think_max_ms: 150.0,
            time_good_ms: 6.0,
            time_tolerable_ms: 10.0,
            download_bytes: 64 * 1024,
            rate_good_bps: 5e6,
            files: 50,
            seed: 7,
            timeout_ms: 2000,
        }
    }

    #[test]
    fn the_file_set_spans_one_kib_to_one_mib_with_small_files_most_popular() {
        let f = FileSet::new(300);
        assert_eq!(f.size(0), 1024);
        assert_eq!(f.size(299), 1 << 20);
        assert!((1..300).all(|i| f.size(i) >= f.size(i - 1)));
        assert_eq!(f.pick(0.0), 0);
        assert_eq!(f.pick(0.999_999_9), 299);
        // Zipf: file 0 is twice as popular as file 1.
        let mut counts = [0u32; 2];
        let mut rng = Rng::new(1);
        for _ in 0..100_000 {
            let i = f.pick(rng.uniform());
            if i < 2 {
                counts[i as usize] += 1;
            }
        }
        let r = f64::from(counts[0]) / f64::from(counts[1]);
        assert!((1.8..2.2).contains(&r), "{counts:?}");
        assert!(f.mean_request_bytes() > 1024.0 && f.mean_request_bytes() < (1 << 20) as f64);
    }

    #[test]
    fn pages_are_judged_by_time_and_downloads_by_rate() {
        let s = spec();
        assert_eq!(judge(&s, 1000, Duration::from_millis(5)), Verdict::Good);
        assert_eq!(
            judge(&s, 1000, Duration::from_millis(8)),
            Verdict::Tolerable
        );
        assert_eq!(judge(&s, 1000, Duration::from_millis(11)), Verdict::Late);
        // 1 MB: good at 5 MB/s means within 200 ms, tolerable (3 MB/s) within 333 ms.
        assert_eq!(
            judge(&s, 1_000_000, Duration::from_millis(150)),
            Verdict::Good
        );
        assert_eq!(
            judge(&s, 1_000_000, Duration::from_millis(300)),
            Verdict::Tolerable
        );
        assert_eq!(
            judge(&s, 1_000_000, Duration::from_millis(400)),
            Verdict::Late
        );
    }

    #[test]
    fn qos_needs_enough_requests_few_failures_and_good_latencies() {
        let ok = LoadResult {
            requests: 1000,
            good: 960,
            tolerable: 35,
            failed: 2,
            window_s: 1.0,
            ..LoadResult::default()
        };
        assert!(ok.qos().is_ok());
        assert!((ok.throughput() - 998.0).abs() < 1e-9);
        let few = LoadResult {
            requests: 99,
            good: 99,
            ..LoadResult::default()
        };
        assert!(few.qos().unwrap_err().contains("fewer"));
        let slow = LoadResult {
            good: 900,
            ..ok.clone()
        };
        assert!(slow.qos().unwrap_err().contains("good"));
        let failing = LoadResult {
            failed: 10,
            ..ok.clone()
        };
        assert!(failing.qos().unwrap_err().contains("failed"));
        let tail = LoadResult {
            good: 950,
            tolerable: 30,
            ..ok
        };
        assert!(tail.qos().unwrap_err().contains("tolerable"));
    }

    /// A tiny HTTP server that serves every file of the set from memory, keeping connections
    /// alive, and delays each response by `delay`.
    fn serve(files: u32, delay: Duration) -> SocketAddr {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let set = FileSet::new(files);
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(s) = s else { break };
                let set = set.clone();
                std::thread::spawn(move || {
                    let mut r = BufReader::new(s.try_clone().unwrap());
                    let mut w = s;
                    loop {
                        let mut line = String::new();
                        if r.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                        loop {
                            let mut h = String::new();
                            if r.read_line(&mut h).unwrap_or(0) == 0 {
                                return;
                            }
                            if h.trim().is_empty() {
                                break;
                            }
                        }
                        let i: u32 = path[2..6].parse().unwrap();
                        let body = vec![b'x'; set.size(i) as usize];
                        std::thread::sleep(delay);
                        let head =
                            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
                        if w.write_all(head.as_bytes())
                            .and_then(|_| w.write_all(&body))
                            .is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    #[test]
    fn a_load_counts_every_request_of_its_window_and_judges_them() {
        let addr = serve(50, Duration::ZERO);
        let stop = AtomicBool::new(false);
        let r = run_load(addr, &spec(), &stop, None).unwrap();
        assert!(r.requests > 0, "{r:?}");
        assert_eq!(r.failed, 0, "{r:?}");
        assert!(r.good + r.tolerable <= r.requests);
        assert!(r.bytes >= r.requests * 1024);
        assert!(r.p50_ms <= r.p95_ms && r.p95_ms <= r.p99_ms && r.p99_ms <= r.max_ms);
        assert!(r.generator_cpu_s > 0.0);
    }

    #[test]
    fn a_slow_server_fails_qos_and_latency_includes_the_wait() {
        // Every response takes 30 ms, beyond the 10 ms tolerable time: nothing is good (no
        // file is a download here, judged by its rate).
        let addr = serve(50, Duration::from_millis(30));
        let stop = AtomicBool::new(false);
        let s = LoadSpec {
            download_bytes: u64::MAX,
            ..spec()
        };
        let r = run_load(addr, &s, &stop, None).unwrap();
        assert!(r.requests > 0);
        assert_eq!(r.good, 0, "{r:?}");
        assert!(r.p50_ms >= 30.0, "{r:?}");
        assert!(r.qos().is_err());
    }

    #[test]
    fn nobody_listening_makes_every_request_fail_with_the_reason() {
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let stop = AtomicBool::new(false);
        let r = run_load(addr, &spec(), &stop, None).unwrap();
        assert!(r.requests > 0);
        assert_eq!(r.failed, r.requests);
        assert!(r.errors[0].contains("connecting"), "{:?}", r.errors);
    }
}
