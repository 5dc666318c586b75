//! Network workloads (suite `net`): the agent serves, a host peer drives the other end.
//!
//! A guest's network goes through whatever the backend gives it: virtio-net with vhost or a
//! user-space device model, QEMU's user-mode stack (slirp), UML's TAP or slirp transports,
//! gVisor's netstack, or a veth pair into a namespace. Bulk throughput shows the per-byte cost
//! of that path (copies, checksums, segmentation offloads); one-byte request/response shows the
//! per-packet cost (exits, wake-ups, interrupt delivery), which is where virtualization hurts
//! most.
//!
//! The agent listens on the `listen` address and measures; a [`peer::Peer`] thread in the host
//! process connects to it (directly, through a port forward, or into a namespace) and serves
//! whatever each connection's header asks ([`wire`]). The same code runs natively on the host
//! over loopback for the baseline. Each call of a run function is one TCP connection from the
//! peer; the listening socket outlives the call (see [`listener`]) so that the peer's next
//! connection can already wait in the accept queue while the agent reports a result.
//!
//! Parameters: `listen` (socket address such as `0.0.0.0:5201`; without it the guest has no
//! network and the workloads are unsupported), `chunk` (bytes per write or read of the stream
//! workloads, default 131072) and `accept_timeout_s` (how long to wait for the peer, default
//! 30).

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::cpu::check_iterations;
use crate::{param_u64, Kind, Metric, Needs, Outcome, Params, WorkloadError, WorkloadInfo};

pub mod peer;
pub mod web_load;
pub mod wire;

use wire::{Header, Op, ACK_LEN};

const SUITES: &[&str] = &["net"];
const DEFAULT_CHUNK: u64 = 128 * 1024;
const MAX_CHUNK: u64 = 64 * 1024 * 1024;
const DEFAULT_ACCEPT_TIMEOUT_S: u64 = 30;
/// A blocking read or write on an accepted connection that makes no progress for this long
/// fails the run: even under binary translation a live path moves a byte in far less time,
/// and without a bound a vanished peer would hang the agent until the host gives up on it.
const STALL_TIMEOUT: Duration = Duration::from_secs(30);

pub static WORKLOADS: &[WorkloadInfo] = &[
    WorkloadInfo {
        name: "net.stream.tx",
        unit: "Gbit/s",
        higher_is_better: true,
        description: "Bulk TCP from the guest to a host peer, timed until the peer acknowledges \
                      every byte: the per-byte cost of the guest's transmit path",
        kind: Kind::Micro,
        needs: Needs::NETWORK,
        suites: SUITES,
        metric: Metric::Rate { scale: 8e-9 },
        setup_timeout_s: 60,
        run: run_stream_tx,
    },
    WorkloadInfo {
        name: "net.stream.rx",
        unit: "Gbit/s",
        higher_is_better: true,
        description: "Bulk TCP from a host peer into the guest: the per-byte cost of the guest's \
                      receive path (copies, checksums, interrupt coalescing)",
        kind: Kind::Micro,
        needs: Needs::NETWORK,
        suites: SUITES,
        metric: Metric::Rate { scale: 8e-9 },
        setup_timeout_s: 60,
        run: run_stream_rx,
    },
    WorkloadInfo {
        name: "net.rr",
        unit: "trans/s",
        higher_is_better: true,
        description: "One-byte TCP request/response with a host peer, one at a time: the \
                      per-packet round trip (exits, wake-ups, interrupt delivery)",
        kind: Kind::Micro,
        needs: Needs::NETWORK,
        suites: SUITES,
        metric: Metric::Rate { scale: 1.0 },
        setup_timeout_s: 60,
        run: run_rr,
    },
];

/// The parameters every net workload reads.
struct NetParams {
    /// `listen` as given, the key of the listener cache and the `listen` label.
    listen: String,
    addr: SocketAddr,
    accept_timeout: Duration,
}

fn net_params(params: &Params) -> Result<NetParams, WorkloadError> {
    let listen = match params.get("listen") {
        None => {
            return Err(WorkloadError::Unsupported(
                "no network attached to this guest (no `listen` address given); attach a \
                 network to run the net workloads"
                    .into(),
            ))
        }
        Some(v) => v.as_str().ok_or_else(|| {
            WorkloadError::BadParam(format!(
                "listen must be a socket address string such as \"0.0.0.0:5201\", got {v}"
            ))
        })?,
    };
    let addr: SocketAddr = listen.parse().map_err(|e| {
        WorkloadError::BadParam(format!(
            "listen must be a socket address such as \"0.0.0.0:5201\", got {listen:?}: {e}"
        ))
    })?;
    let secs = param_u64(params, "accept_timeout_s", DEFAULT_ACCEPT_TIMEOUT_S)?;
    if !(1..=3600).contains(&secs) {
        return Err(WorkloadError::BadParam(format!(
            "accept_timeout_s must be in 1..=3600, got {secs}"
        )));
    }
    Ok(NetParams {
        listen: listen.to_owned(),
        addr,
        accept_timeout: Duration::from_secs(secs),
    })
}

fn chunk_bytes(params: &Params) -> Result<usize, WorkloadError> {
    let chunk = param_u64(params, "chunk", DEFAULT_CHUNK)?;
    if !(1..=MAX_CHUNK).contains(&chunk) {
        return Err(WorkloadError::BadParam(format!(
            "chunk must be in 1..={MAX_CHUNK} bytes, got {chunk}"
        )));
    }
    Ok(chunk as usize)
}

/// One accepted connection from the peer, with its stall timeouts set.
struct Conn {
    stream: TcpStream,
    listen: String,
}

impl Conn {
    /// Accepts the peer's next connection on the cached listener for `p`.
    fn accept(p: &NetParams) -> Result<Conn, WorkloadError> {
        let listener = listener::get(&p.listen, p.addr)?;
        let stream = accept_fresh(&listener, p)?;
        let setup = |r: std::io::Result<()>, what: &str| {
            r.map_err(|e| WorkloadError::Failed(format!("{what} on {}: {e}", p.listen)))
        };
        // The listener is non-blocking; make sure the connection is not, whatever the platform
        // lets it inherit.
        setup(stream.set_nonblocking(false), "clearing O_NONBLOCK")?;
        setup(stream.set_nodelay(true), "setting TCP_NODELAY")?;
        setup(
            stream.set_read_timeout(Some(STALL_TIMEOUT)),
            "setting a read timeout",
        )?;
        setup(
            stream.set_write_timeout(Some(STALL_TIMEOUT)),
            "setting a write timeout",
        )?;
        Ok(Conn {
            stream,
            listen: p.listen.clone(),
        })
    }

    fn send_header(&mut self, op: Op, count: u64) -> Result<(), WorkloadError> {
        let h = Header { op, count }.encode();
        self.write_all(&h, "sending the header")
    }

    fn write_all(&mut self, buf: &[u8], what: &str) -> Result<(), WorkloadError> {
        self.stream
            .write_all(buf)
            .map_err(|e| self.io_error(what, e))
    }

    fn read_exact(&mut self, buf: &mut [u8], what: &str) -> Result<(), WorkloadError> {
        self.stream
            .read_exact(buf)
            .map_err(|e| self.io_error(what, e))
    }

    fn io_error(&self, what: &str, e: std::io::Error) -> WorkloadError {
        let cause = match e.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => format!(
                "no progress for {} s (peer stalled?)",
                STALL_TIMEOUT.as_secs()
            ),
            ErrorKind::UnexpectedEof => "the peer closed the connection".to_owned(),
            _ => e.to_string(),
        };
        WorkloadError::Failed(format!("{what} (listening on {}): {cause}", self.listen))
    }

    fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([("listen".to_owned(), self.listen.clone())])
    }
}

/// Accepts the peer's next connection on the cached listener for the `listen` parameter and
/// sends it a header with `op` and `count`: the start of a network stressor's stream
/// ([`crate::stress`], with `count` = [`wire::UNBOUNDED`]). Returns the connection (blocking,
/// TCP_NODELAY, with the stall timeouts set) and the `listen` address. Without `listen`, the
/// guest has no network: [`WorkloadError::Unsupported`].
pub(crate) fn accept_with_header(
    params: &Params,
    op: Op,
    count: u64,
) -> Result<(TcpStream, String), WorkloadError> {
    let p = net_params(params)?;
    let mut conn = Conn::accept(&p)?;
    conn.send_header(op, count)?;
    Ok((conn.stream, conn.listen))
}

/// Accepts connections until one whose peer is still there, or fails at the deadline.
///
/// A connection can wait in the accept queue after its peer gave up on it (a host peer stopped
/// between two workloads, or slirp dropping its side); the peer never speaks first, so such a
/// connection is readable (end of file or reset) the moment it is accepted, and is skipped
/// instead of failing the run.
fn accept_fresh(listener: &TcpListener, p: &NetParams) -> Result<TcpStream, WorkloadError> {
    let deadline = Instant::now() + p.accept_timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(WorkloadError::Failed(format!(
                "no peer connected to {} within {} s",
                p.listen,
                p.accept_timeout.as_secs()
            )));
        }
        let ready = poll_one(listener.as_raw_fd(), libc::POLLIN, left)
            .map_err(|e| WorkloadError::Failed(format!("poll on {}: {e}", p.listen)))?;
        if ready == 0 {
            continue;
        }
        match listener.accept() {
            Ok((stream, _)) => {
                let gone = poll_one(
                    stream.as_raw_fd(),
                    libc::POLLIN | libc::POLLRDHUP,
                    Duration::ZERO,
                )
                .map_err(|e| WorkloadError::Failed(format!("poll on {}: {e}", p.listen)))?;
                if gone == 0 {
                    return Ok(stream);
                }
            }
            // Another thread took it, or it was reset while queued: wait for the next one.
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::Interrupted | ErrorKind::ConnectionAborted
                ) => {}
            Err(e) => {
                return Err(WorkloadError::Failed(format!(
                    "accept on {}: {e}",
                    p.listen
                )))
            }
        }
    }
}

/// Polls one descriptor for `events`; returns the events reported (0 on timeout or EINTR).
fn poll_one(fd: libc::c_int, events: libc::c_short, timeout: Duration) -> std::io::Result<i16> {
    let mut pfd = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    // Round up, so a sub-millisecond remainder waits instead of spinning.
    let ms = timeout.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as libc::c_int;
    // SAFETY: `pfd` is one valid pollfd, and nfds = 1 says so; poll only writes `revents`.
    let n = unsafe { libc::poll(&mut pfd, 1, ms) };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() == ErrorKind::Interrupted {
            return Ok(0);
        }
        return Err(e);
    }
    Ok(if n == 0 { 0 } else { pfd.revents })
}

/// The process-wide listening sockets, one per `listen` address.
///
/// The listener must outlive a run: calibration and the repetitions call the run function again
/// and again, and the peer's next connection is queued on the listener while the agent is
/// between calls. Closing it would reset that connection (and, under QEMU's slirp, make the
/// port forward refuse until the agent listens again).
mod listener {
    use super::*;

    static LISTENERS: Mutex<BTreeMap<String, TcpListener>> = Mutex::new(BTreeMap::new());

    /// A handle on the listener for `listen` (bound on first use): a duplicate descriptor of
    /// the same socket, so that the lock is not held while waiting for a peer.
    pub(super) fn get(listen: &str, addr: SocketAddr) -> Result<TcpListener, WorkloadError> {
        // A panic while holding the lock leaves the map consistent: take it anyway.
        let mut map = LISTENERS.lock().unwrap_or_else(|e| e.into_inner());
        if !map.contains_key(listen) {
            // std sets SO_REUSEADDR on Unix before binding, so a port whose last connections
            // are still in TIME_WAIT (a previous agent) can be bound again at once.
            let l = TcpListener::bind(addr)
                .map_err(|e| WorkloadError::Failed(format!("cannot listen on {listen}: {e}")))?;
            // Non-blocking, so an accept after a poll that saw a connection which then vanished
            // returns WouldBlock instead of blocking past the deadline.
            l.set_nonblocking(true).map_err(|e| {
                WorkloadError::Failed(format!("making the listener on {listen} non-blocking: {e}"))
            })?;
            map.insert(listen.to_owned(), l);
        }
        map[listen].try_clone().map_err(|e| {
            WorkloadError::Failed(format!("duplicating the listener on {listen}: {e}"))
        })
    }
}

/// `net.stream.tx`: sends `iterations` chunks to the peer, which counts them and acknowledges.
/// The work is the bytes sent; the clock runs from the first write to the ack.
fn run_stream_tx(params: &Params, iterations: u64) -> Result<Outcome, WorkloadError> {
    let iterations = check_iterations(iterations)?;
    let p = net_params(params)?;
    let chunk = chunk_bytes(params)?;
    let count = stream_bytes(iterations, chunk)?;
    let data = vec![0x5au8; chunk];

    let mut conn = Conn::accept(&p)?;
    conn.send_header(Op::Sink, count)?;
    let start = Instant::now();
    for _ in 0..iterations {
        conn.write_all(&data, "sending data to the peer")?;
    }
    let mut ack = [0u8; ACK_LEN];
    conn.read_exact(&mut ack, "reading the peer's acknowledgement")?;
    let elapsed = start.elapsed();

    let received = u64::from_le_bytes(ack);
    if received != count {
        return Err(WorkloadError::Failed(format!(
            "the peer acknowledged {received} bytes, but {count} were sent"
        )));
    }
    Ok(stream_outcome(count, elapsed, chunk, &conn))
}

/// `net.stream.rx`: asks the peer for `iterations` chunks and reads them, `chunk` bytes at a
/// time. The work is the bytes received; the clock starts when the request is sent.
fn run_stream_rx(params: &Params, iterations: u64) -> Result<Outcome, WorkloadError> {
    let iterations = check_iterations(iterations)?;
    let p = net_params(params)?;
    let chunk = chunk_bytes(params)?;
    let count = stream_bytes(iterations, chunk)?;
    let mut buf = vec![0u8; chunk];

    let mut conn = Conn::accept(&p)?;
    conn.send_header(Op::Source, count)?;
    let start = Instant::now();
    let mut got: u64 = 0;
    while got < count {
        let want = (count - got).min(chunk as u64) as usize;
        match conn.stream.read(&mut buf[..want]) {
            Ok(0) => {
                return Err(WorkloadError::Failed(format!(
                    "the peer closed the connection after {got} of {count} bytes (listening \
                     on {})",
                    p.listen
                )))
            }
            Ok(n) => got += n as u64,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(conn.io_error("receiving data from the peer", e)),
        }
    }
    let elapsed = start.elapsed();
    Ok(stream_outcome(count, elapsed, chunk, &conn))
}

fn stream_bytes(iterations: u64, chunk: usize) -> Result<u64, WorkloadError> {
    iterations.checked_mul(chunk as u64).ok_or_else(|| {
        WorkloadError::BadParam(format!(
            "{iterations} chunks of {chunk} bytes overflow a 64-bit byte count"
        ))
    })
}

fn stream_outcome(count: u64, elapsed: Duration, chunk: usize, conn: &Conn) -> Outcome {
    let mut out = Outcome::new(count as f64, elapsed);
    out.extras.insert("chunk_bytes".into(), chunk as f64);
    out.labels = conn.labels();
    out
}

/// `net.rr`: `iterations` transactions of one byte to the peer and one byte back, strictly one
/// at a time (TCP_NODELAY on both ends, so Nagle never holds a byte back). The work is the
/// transactions; the round-trip median and 99th percentile are the extras `lat_p50_us` and
/// `lat_p99_us`.
fn run_rr(params: &Params, iterations: u64) -> Result<Outcome, WorkloadError> {
    let iterations = check_iterations(iterations)?;
    let p = net_params(params)?;
    let mut lat_ns: Vec<u64> = Vec::new();
    lat_ns.try_reserve_exact(iterations as usize).map_err(|e| {
        WorkloadError::Failed(format!(
            "cannot allocate latencies of {iterations} transactions: {e}"
        ))
    })?;

    let mut conn = Conn::accept(&p)?;
    conn.send_header(Op::Echo, iterations)?;
    let mut back = [0u8; 1];
    let start = Instant::now();
    for i in 0..iterations {
        let byte = i as u8;
        let t = Instant::now();
        conn.write_all(&[byte], "sending a request to the peer")?;
        conn.read_exact(&mut back, "reading the peer's response")?;
        lat_ns.push(t.elapsed().as_nanos() as u64);
        if back[0] != byte {
            return Err(WorkloadError::Failed(format!(
                "transaction {i}: the peer echoed {:#04x} instead of {byte:#04x}",
                back[0]
            )));
        }
    }
    let elapsed = start.elapsed();

    lat_ns.sort_unstable();
    let mut out = Outcome::new(iterations as f64, elapsed);
    out.extras
        .insert("lat_p50_us".into(), percentile(&lat_ns, 0.50) as f64 / 1e3);
    out.extras
        .insert("lat_p99_us".into(), percentile(&lat_ns, 0.99) as f64 / 1e3);
    out.labels = conn.labels();
    Ok(out)
}

/// Asks the host peer to drive `spec` against this guest's web server (`app.web`): one
/// connection, as every net run; the peer answers with what it measured. The connection's
/// stall bound is stretched to the load's length.
pub(crate) fn web_load(
    params: &Params,
    spec: &web_load::LoadSpec,
) -> Result<web_load::LoadResult, WorkloadError> {
    let p = net_params(params)?;
    let mut conn = Conn::accept(&p)?;
    let bound =
        Duration::from_millis(spec.ramp_ms + spec.measure_ms + spec.timeout_ms) + STALL_TIMEOUT;
    conn.stream
        .set_read_timeout(Some(bound))
        .map_err(|e| WorkloadError::Failed(format!("setting a read timeout: {e}")))?;
    conn.send_header(Op::Web, u64::from(spec.sessions))?;
    let body = serde_json::to_vec(spec).expect("a load spec serialises");
    wire::write_frame(&mut conn.stream, &body).map_err(|e| conn.io_error("sending the load", e))?;
    let answer = wire::read_frame(&mut conn.stream)
        .map_err(|e| conn.io_error("reading the load's result", e))?;
    let v: serde_json::Value = serde_json::from_slice(&answer)
        .map_err(|e| WorkloadError::Failed(format!("the peer's web result: {e}")))?;
    if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
        return Err(WorkloadError::Failed(format!(
            "the host's load generator: {e}"
        )));
    }
    serde_json::from_value(v.get("ok").cloned().unwrap_or_default())
        .map_err(|e| WorkloadError::Failed(format!("the peer's web result: {e}")))
}

/// The nearest-rank `q` quantile of sorted, non-empty `v`.
fn percentile(v: &[u64], q: f64) -> u64 {
    let rank = (q * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.50), 50);
        assert_eq!(percentile(&v, 0.99), 99);
        assert_eq!(percentile(&[7], 0.99), 7);
        assert_eq!(percentile(&[1, 2], 0.5), 1);
    }

    #[test]
    fn missing_listen_is_unsupported_and_bad_listen_is_a_bad_param() {
        for w in WORKLOADS {
            assert!(matches!(
                (w.run)(&Params::new(), 1),
                Err(WorkloadError::Unsupported(m)) if m.contains("no network")
            ));
            let p = Params::from([("listen".to_owned(), "not-an-address".into())]);
            assert!(matches!((w.run)(&p, 1), Err(WorkloadError::BadParam(_))));
        }
    }
}
