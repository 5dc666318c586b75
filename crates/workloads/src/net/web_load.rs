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
//! `measure_ms`) count; those started in it are waited for, up to `timeout_ms`. So do the
//! ramp's requests still unanswered when the window opens, with their latency from their
//! intended start: a session stuck on one through the window is not idle, and leaving it out
//! passed loads whose sessions mostly waited (a UML guest's nginx, accepting a burst of
//! connections one at a time, left some unanswered for seconds while the others' requests were
//! fast: loads of 2048 sessions passed at 1.7 requests per session-second, where a session that
//! thinks 100 ms between requests makes 8).

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd};
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
    /// Responses received in full over the whole load (the ramp and the tail too, not only
    /// the window's): the server's work while the load ran, which `explain` divides its
    /// event counts by.
    #[serde(default)]
    pub served: u64,
    /// Their response bytes.
    #[serde(default)]
    pub served_bytes: u64,
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

/// Drives `spec` against the web server at `addr`; `stop` ends it early (the result then
/// covers what ran). One thread runs every session (non-blocking sockets and epoll, as wrk
/// does): a thread per session paid a cross-CPU wake-up per response and, on a nested 2-CPU
/// host, delivered a third of wrk's requests/s from the same nginx. The thread is pinned to
/// `cpus` when given.
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
    raise_fd_limit(u64::from(spec.sessions) + 64);
    let spec = spec.clone();
    let cpus = cpus.map(<[usize]>::to_vec);
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("hvbench-web".into())
            .spawn_scoped(scope, move || {
                if let Some(cpus) = &cpus {
                    pin_thread(cpus);
                }
                Driver::new(addr, &spec, stop)?.run()
            })
            .map_err(|e| format!("starting the load generator's thread: {e}"))?
            .join()
            .map_err(|_| "the load generator's thread panicked".to_string())?
    })
}

/// How long one connection attempt may wait for the server's answer before it is made again.
const CONNECT_ATTEMPT: Duration = Duration::from_millis(50);

/// Connects to `addr` within `timeout`, making the attempt again every [`CONNECT_ATTEMPT`]
/// instead of waiting out the kernel's SYN retransmission (1 s, then 3 s): QEMU's user network
/// (slirp) listens on its forwarded port with a backlog of one and accepts only between two
/// turns of its main loop, so in a burst of connections every third SYN found the queue full and
/// was dropped. Measured here: 56 sessions took 20 s to connect to a qemu-tcg guest this way
/// (the guest idle all along), against a few milliseconds natively or through a tap device.
fn connect_promptly(addr: SocketAddr, timeout: Duration) -> std::io::Result<TcpStream> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match TcpStream::connect_timeout(
            &addr,
            left.min(CONNECT_ATTEMPT).max(Duration::from_millis(1)),
        ) {
            Err(e) if e.kind() == ErrorKind::TimedOut && !left.is_zero() => continue,
            other => return other,
        }
    }
}

/// Lets this process open a socket per session (the soft limit is often 1024).
fn raise_fd_limit(want: u64) {
    // SAFETY: rlimit is plain data; getrlimit fills it.
    let mut r: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: a valid resource and pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 || r.rlim_cur >= want {
        return;
    }
    r.rlim_cur = want.min(r.rlim_max);
    // SAFETY: a valid resource and pointer; raising the soft limit up to the hard one is
    // always allowed, and a failure only leaves the old limit.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) };
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

/// An epoll instance, closed on drop.
struct Epoll(std::os::fd::OwnedFd);

impl Epoll {
    fn new() -> Result<Epoll, String> {
        // SAFETY: epoll_create1 has no memory preconditions.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(format!(
                "epoll_create1: {}",
                std::io::Error::last_os_error()
            ));
        }
        // SAFETY: `fd` was just returned by epoll_create1 and is owned by nobody else.
        Ok(Epoll(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }))
    }

    fn ctl(&self, op: libc::c_int, fd: i32, token: u64) -> std::io::Result<()> {
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLRDHUP) as u32,
            u64: token,
        };
        // SAFETY: both descriptors are open; `ev` is a valid event for the call.
        if unsafe { libc::epoll_ctl(self.0.as_raw_fd(), op, fd, &mut ev) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits up to `timeout` for events; the tokens of the ready descriptors go to `ready`.
    fn wait(&self, events: &mut [libc::epoll_event], timeout: Duration, ready: &mut Vec<u64>) {
        let ms = timeout.as_micros().div_ceil(1000).min(100) as i32;
        // SAFETY: `events` is a valid buffer of the length given.
        let n = unsafe {
            libc::epoll_wait(
                self.0.as_raw_fd(),
                events.as_mut_ptr(),
                events.len() as i32,
                ms,
            )
        };
        ready.clear();
        for e in events.iter().take(n.max(0) as usize) {
            ready.push(e.u64);
        }
    }
}

/// Where a session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Thinking until its next intended start (in the timer heap).
    Think,
    /// A request sent, its response awaited until `deadline`.
    Wait,
    /// No more requests.
    Done,
}

struct Session {
    conn: Option<TcpStream>,
    phase: Phase,
    rng: Rng,
    intended: Instant,
    deadline: Instant,
    /// The request counts (intended in the window).
    counted: bool,
    /// The connection carried an earlier response (a close before any byte is then retried
    /// once on a new one, as a browser does).
    reused: bool,
    retried: bool,
    file: u32,
    head: Vec<u8>,
    /// Body bytes still to read once the headers are in; `None` while reading them.
    body_left: Option<u64>,
    body_len: u64,
    keep: bool,
    status_ok: bool,
}

impl Session {
    /// Whether the request ending at `end` counts: it was meant to start in the window, or it
    /// was still unanswered when the window opened.
    fn counts_at(&self, end: Instant, window_start: Instant) -> bool {
        self.counted || end >= window_start
    }
}

/// The single-threaded load: sessions, their timers and what they measured.
struct Driver<'a> {
    addr: SocketAddr,
    spec: &'a LoadSpec,
    stop: &'a AtomicBool,
    files: FileSet,
    epoll: Epoll,
    sessions: Vec<Session>,
    timers: std::collections::BinaryHeap<std::cmp::Reverse<(Instant, usize)>>,
    start: Instant,
    window_start: Instant,
    window_end: Instant,
    timeout: Duration,
    hist: Histogram<u64>,
    r: LoadResult,
    scratch: Vec<u8>,
}

impl<'a> Driver<'a> {
    fn new(addr: SocketAddr, spec: &'a LoadSpec, stop: &'a AtomicBool) -> Result<Self, String> {
        let start = Instant::now() + Duration::from_millis(20);
        let window_start = start + Duration::from_millis(spec.ramp_ms);
        let window_end = window_start + Duration::from_millis(spec.measure_ms);
        let mut d = Driver {
            addr,
            spec,
            stop,
            files: FileSet::new(spec.files),
            epoll: Epoll::new()?,
            sessions: Vec::with_capacity(spec.sessions as usize),
            timers: Default::default(),
            start,
            window_start,
            window_end,
            timeout: Duration::from_millis(spec.timeout_ms.max(1)),
            hist: new_histogram(),
            r: LoadResult {
                sessions: spec.sessions,
                window_s: spec.measure_ms as f64 / 1e3,
                ..LoadResult::default()
            },
            scratch: vec![0u8; 256 * 1024],
        };
        for i in 0..spec.sessions as usize {
            let mut rng = Rng::new(spec.seed ^ ((i as u64) << 32 | 0x5EED));
            // Sessions start spread over one mean think time, not all at once.
            let first =
                start + Duration::from_secs_f64(rng.uniform() * spec.think_mean_ms.max(0.0) / 1e3);
            d.sessions.push(Session {
                conn: None,
                phase: Phase::Think,
                rng,
                intended: first,
                deadline: first,
                counted: false,
                reused: false,
                retried: false,
                file: 0,
                head: Vec::new(),
                body_left: None,
                body_len: 0,
                keep: true,
                status_ok: false,
            });
            d.timers.push(std::cmp::Reverse((first, i)));
        }
        Ok(d)
    }

    fn halted(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn run(mut self) -> Result<LoadResult, String> {
        self.preconnect();
        let cpu0 = thread_cpu();
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
        let mut ready = Vec::new();
        let mut waiting = 0usize;
        let mut next_scan = Instant::now();
        loop {
            if self.halted() {
                break;
            }
            let now = Instant::now();
            // Start every request that is due.
            while let Some(&std::cmp::Reverse((t, i))) = self.timers.peek() {
                if t > now {
                    break;
                }
                self.timers.pop();
                if self.begin(i) {
                    waiting += 1;
                }
            }
            // Give up on responses past their deadline (looked at every few milliseconds).
            let now = Instant::now();
            if now >= next_scan {
                next_scan = now + Duration::from_millis(5);
                for i in 0..self.sessions.len() {
                    let s = &self.sessions[i];
                    if s.phase == Phase::Wait && now >= s.deadline {
                        waiting -= 1;
                        self.expire(i, now);
                    }
                }
            }
            if waiting == 0 && self.timers.is_empty() {
                break;
            }
            let next = self
                .timers
                .peek()
                .map(|r| r.0 .0)
                .unwrap_or(now + Duration::from_millis(100))
                .min(if waiting > 0 {
                    next_scan
                } else {
                    now + Duration::from_millis(100)
                });
            let wait = next.saturating_duration_since(Instant::now());
            self.epoll.wait(&mut events, wait, &mut ready);
            for &token in &ready {
                let i = token as usize;
                if self.sessions[i].phase == Phase::Wait && self.receive(i) {
                    waiting -= 1;
                }
            }
        }
        self.r.wall_s = self.start.elapsed().as_secs_f64();
        self.r.generator_cpu_s = thread_cpu().saturating_sub(cpu0).as_secs_f64();
        if !self.hist.is_empty() {
            let ms = |q: f64| self.hist.value_at_quantile(q) as f64 / 1e3;
            self.r.p50_ms = ms(0.50);
            self.r.p95_ms = ms(0.95);
            self.r.p99_ms = ms(0.99);
            self.r.max_ms = self.hist.max() as f64 / 1e3;
        }
        Ok(self.r)
    }

    /// Starts session `i`'s next request; true if it now waits for a response.
    fn begin(&mut self, i: usize) -> bool {
        let now = Instant::now();
        let (window_start, window_end) = (self.window_start, self.window_end);
        let s = &mut self.sessions[i];
        if s.intended >= window_end {
            s.phase = Phase::Done;
            return false;
        }
        s.counted = s.intended >= window_start;
        if s.counted && now.duration_since(s.intended) > LATE {
            self.r.late_starts += 1;
        }
        s.file = self.files.pick(s.rng.uniform());
        s.retried = false;
        // A request may not outlast the window by more than the tail.
        s.deadline = (now + self.timeout).min(window_end + TAIL);
        match self.send(i) {
            Ok(()) => true,
            Err(e) => {
                self.finish(i, Err(e));
                false
            }
        }
    }

    /// Opens session `i`'s connection (blocking: the loop waits for it).
    fn connect(&mut self, i: usize) -> Result<(), String> {
        let (addr, timeout) = (self.addr, self.timeout);
        let c =
            connect_promptly(addr, timeout).map_err(|e| format!("connecting to {addr}: {e}"))?;
        c.set_nodelay(true)
            .and_then(|_| c.set_nonblocking(true))
            .map_err(|e| format!("setting up a connection to {addr}: {e}"))?;
        self.epoll
            .ctl(libc::EPOLL_CTL_ADD, c.as_raw_fd(), i as u64)
            .map_err(|e| format!("epoll_ctl: {e}"))?;
        self.sessions[i].conn = Some(c);
        Ok(())
    }

    /// Connects every session before the load starts, then moves the load's clock to now: a
    /// thousand connections opened from the one loop while it times requests would make every
    /// other session late (SPECweb's sessions keep their connections too).
    fn preconnect(&mut self) {
        for i in 0..self.sessions.len() {
            if self.halted() {
                break;
            }
            // A failure here is retried, and counted, at the session's first request.
            let _ = self.connect(i);
        }
        let shift =
            Instant::now().saturating_duration_since(self.start) + Duration::from_millis(20);
        self.start += shift;
        self.window_start += shift;
        self.window_end += shift;
        for std::cmp::Reverse((t, i)) in std::mem::take(&mut self.timers) {
            self.sessions[i].intended = t + shift;
            self.timers.push(std::cmp::Reverse((t + shift, i)));
        }
    }

    /// Sends session `i`'s request, connecting first if it has no connection.
    fn send(&mut self, i: usize) -> Result<(), String> {
        let fresh = self.sessions[i].conn.is_none();
        if fresh {
            self.connect(i)?;
        }
        let s = &mut self.sessions[i];
        s.reused = !fresh;
        let req = format!(
            "GET /{} HTTP/1.1\r\nHost: hvbench\r\nUser-Agent: hvbench\r\n\r\n",
            FileSet::name(s.file)
        );
        s.head.clear();
        s.body_left = None;
        s.body_len = 0;
        s.keep = true;
        s.status_ok = false;
        let c = s.conn.as_mut().expect("connected above");
        // A request is far smaller than an empty socket buffer: it goes in one write.
        match c.write(req.as_bytes()) {
            Ok(n) if n == req.len() => {
                s.phase = Phase::Wait;
                Ok(())
            }
            Ok(n) => Err(format!("sending a request: {n} of {} bytes", req.len())),
            Err(e) => Err(describe(&e, "sending a request")),
        }
    }

    /// Reads what arrived for session `i`; true if its response is over (done or failed).
    fn receive(&mut self, i: usize) -> bool {
        let mut any = false;
        loop {
            let s = &mut self.sessions[i];
            let Some(c) = s.conn.as_mut() else {
                return false;
            };
            let got = c.read(&mut self.scratch);
            match got {
                Ok(0) => {
                    let nothing = s.head.is_empty() && s.body_left.is_none() && !any;
                    return self.broken(i, "the server closed the connection".into(), nothing);
                }
                Ok(n) => {
                    any = true;
                    match feed(s, &self.scratch[..n]) {
                        Ok(true) => {
                            let result = if s.status_ok {
                                Ok(s.body_len)
                            } else {
                                Err("a response with an error status".to_string())
                            };
                            if !s.keep {
                                self.drop_conn(i);
                            }
                            self.finish(i, result);
                            return true;
                        }
                        Ok(false) => {}
                        Err(e) => return self.broken(i, e, false),
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    let nothing = s.head.is_empty() && s.body_left.is_none() && !any;
                    return self.broken(i, describe(&e, "reading a response"), nothing);
                }
            }
        }
    }

    /// The connection of session `i` went wrong; a kept connection that closed before any byte
    /// of the response is retried once on a new one. True if the request is over.
    fn broken(&mut self, i: usize, e: String, nothing_read: bool) -> bool {
        self.drop_conn(i);
        let s = &mut self.sessions[i];
        if s.reused && nothing_read && !s.retried {
            s.retried = true;
            if self.send(i).is_ok() {
                return false;
            }
        }
        self.finish(i, Err(e));
        true
    }

    fn drop_conn(&mut self, i: usize) {
        if let Some(c) = self.sessions[i].conn.take() {
            let _ = self.epoll.ctl(libc::EPOLL_CTL_DEL, c.as_raw_fd(), i as u64);
        }
    }

    /// A response still awaited at its deadline: past the window's tail it is late (by far)
    /// and the session ends; before, the request timed out and failed.
    fn expire(&mut self, i: usize, now: Instant) {
        self.drop_conn(i);
        if now >= self.window_end + TAIL {
            let window_start = self.window_start;
            let s = &mut self.sessions[i];
            if s.counts_at(now, window_start) {
                self.r.requests += 1;
                let latency = now - s.intended;
                let _ = self
                    .hist
                    .record((latency.as_micros() as u64).clamp(1, HIST_MAX_US));
            }
            s.phase = Phase::Done;
        } else {
            self.finish(i, Err("reading a response: timed out".into()));
        }
    }

    /// Records session `i`'s request and schedules its next one after a think time.
    fn finish(&mut self, i: usize, result: Result<u64, String>) {
        let done = Instant::now();
        let spec = self.spec;
        let window_start = self.window_start;
        let s = &mut self.sessions[i];
        if let Ok(bytes) = result {
            self.r.served += 1;
            self.r.served_bytes += bytes;
        }
        if s.counts_at(done, window_start) {
            self.r.requests += 1;
            match result {
                Ok(bytes) => {
                    let latency = done - s.intended;
                    self.r.bytes += bytes;
                    let _ = self
                        .hist
                        .record((latency.as_micros() as u64).clamp(1, HIST_MAX_US));
                    match judge(spec, bytes, latency) {
                        Verdict::Good => self.r.good += 1,
                        Verdict::Tolerable => self.r.tolerable += 1,
                        Verdict::Late => {}
                    }
                }
                Err(e) => {
                    self.r.failed += 1;
                    if self.r.errors.len() < 5 && !self.r.errors.contains(&e) {
                        self.r.errors.push(e);
                    }
                }
            }
        }
        let think = s
            .rng
            .think(spec.think_mean_ms.max(0.0), spec.think_max_ms.max(0.0));
        s.intended = done + Duration::from_secs_f64(think / 1e3);
        if s.intended >= self.window_end || self.stop.load(Ordering::Relaxed) {
            s.phase = Phase::Done;
        } else {
            s.phase = Phase::Think;
            self.timers.push(std::cmp::Reverse((s.intended, i)));
        }
    }
}

/// Feeds response bytes to a session: headers first (status, Content-Length, Connection),
/// then the body. `Ok(true)` when the response is complete.
fn feed(s: &mut Session, mut bytes: &[u8]) -> Result<bool, String> {
    if s.body_left.is_none() {
        s.head.extend_from_slice(bytes);
        let Some(end) = s.head.windows(4).position(|w| w == b"\r\n\r\n") else {
            if s.head.len() > 64 * 1024 {
                return Err("response headers over 64 KiB".into());
            }
            return Ok(false);
        };
        let text = String::from_utf8_lossy(&s.head[..end]).into_owned();
        let mut lines = text.split("\r\n");
        let status = lines.next().unwrap_or("").split_whitespace().nth(1);
        s.status_ok = status == Some("200");
        let mut length = None;
        for l in lines {
            if let Some((k, v)) = l.split_once(':') {
                let (k, v) = (k.trim(), v.trim());
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.parse::<u64>().ok();
                } else if k.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case("close") {
                    s.keep = false;
                }
            }
        }
        let Some(length) = length else {
            return Err(format!(
                "a response without Content-Length ({})",
                status.unwrap_or("?")
            ));
        };
        s.body_len = length;
        s.body_left = Some(length);
        let tail = s.head.split_off(end + 4);
        bytes = &[];
        let left = s.body_left.as_mut().expect("set above");
        let k = (tail.len() as u64).min(*left);
        *left -= k;
        if tail.len() as u64 > k {
            return Err("more bytes than the response's length".into());
        }
    }
    let left = s.body_left.as_mut().expect("headers are in");
    let k = (bytes.len() as u64).min(*left);
    *left -= k;
    if bytes.len() as u64 > k {
        return Err("more bytes than the response's length".into());
    }
    Ok(*left == 0)
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
    use std::io::{BufRead, BufReader};

    #[test]
    fn a_prompt_connect_does_not_retry_a_refusal_and_waits_for_a_full_queue() {
        // A refused connection is an answer, not a reason to try again until the timeout.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        let t = Instant::now();
        let e = connect_promptly(addr, Duration::from_secs(5)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectionRefused);
        assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
        // A listener that never accepts: once its queue is full, attempts time out and are made
        // again until the deadline, which ends them.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let mut held = Vec::new();
        let ended = loop {
            match connect_promptly(addr, Duration::from_millis(300)) {
                Ok(c) if held.len() < 4096 => held.push(c),
                other => break other,
            }
        };
        assert!(ended.is_err(), "the queue never filled");
    }

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
        serve_stalling(files, delay, usize::MAX, Duration::ZERO)
    }

    /// [`serve`], whose every `every`-th connection (the first among them) waits `stall`
    /// before it answers anything: a server that has not yet taken the connection up.
    fn serve_stalling(files: u32, delay: Duration, every: usize, stall: Duration) -> SocketAddr {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let set = FileSet::new(files);
        std::thread::spawn(move || {
            for (k, s) in l.incoming().enumerate() {
                let Ok(s) = s else { break };
                let set = set.clone();
                std::thread::spawn(move || {
                    if k % every == 0 {
                        std::thread::sleep(stall);
                    }
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
        // The ramp's responses are served too, though not counted in the window.
        assert!(r.served >= r.good + r.tolerable, "{r:?}");
        assert!(r.served_bytes >= r.bytes, "{r:?}");
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
    fn a_session_stuck_on_a_ramp_request_through_the_window_is_counted() {
        // Half the connections get no answer for 3 s, past the window and its tail (50 + 400
        // + 1000 ms); their first requests, meant during the ramp, are still awaited when the
        // window opens. The other sessions' requests are fast and good, enough for QoS alone.
        let addr = serve_stalling(50, Duration::ZERO, 2, Duration::from_secs(3));
        let stop = AtomicBool::new(false);
        let s = LoadSpec {
            sessions: 8,
            download_bytes: u64::MAX,
            time_good_ms: 1000.0,
            time_tolerable_ms: 1000.0,
            ..spec()
        };
        let r = run_load(addr, &s, &stop, None).unwrap();
        // The four stuck requests count, as neither good nor tolerable, and QoS fails.
        assert!(r.requests >= r.good + r.tolerable + 4, "{r:?}");
        assert!(r.max_ms >= 1000.0, "{r:?}");
        assert!(r.qos().is_err(), "{r:?}");
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
