//! The host side of the net workloads: a thread that connects to the agent again and again and
//! serves whatever each connection's header asks ([`super::wire`]).
//!
//! The agent measures; the peer only has to keep up and never hang the host. It connects, waits
//! for the header, performs the operation, waits for the agent to close, and connects again, so
//! that its next connection is already queued on the agent's listener when the next run (a
//! calibration step or a repetition) starts.
//!
//! Two situations are normal, not errors, and make the peer retry after a short pause:
//! - the connection is refused: nothing listens yet (the agent has not reached its first net
//!   workload);
//! - the connection closes or resets before the header: QEMU's user-mode networking (slirp
//!   `hostfwd`) accepts the host connection at once and only then tries the guest, closing the
//!   host side when nothing listens there yet.
//!
//! A sink or source of [`UNBOUNDED`] bytes (a network stressor's stream) ends when the agent
//! closes the connection: end of file, a reset or a broken pipe is then the operation's normal
//! end, not an error, and the peer connects again at once, as after any completed operation.
//!
//! The peer waits for the header without a deadline: its connection sits in the agent's accept
//! queue until the agent gets to it, which may be minutes away (other workloads run first).
//! Giving up and reconnecting would only leave stale connections in that queue. [`Peer::stop`]
//! is what ends the wait: it shuts the current connection down, which wakes any blocked read
//! or write at once.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::web_load::{self, LoadSpec};
use super::wire::{self as wire_fmt, Header, Op, HEADER_LEN, UNBOUNDED};

/// Bound on one connection attempt; also bounds how late a stop is noticed while connecting.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause before reconnecting after a refusal, an early close or an error: short, so a freshly
/// started agent is served quickly; long enough not to spin on a refusing port.
const RETRY_PAUSE: Duration = Duration::from_millis(20);
/// Read timeout while waiting for the header: only how often the stop flag is looked at.
const HEADER_POLL: Duration = Duration::from_millis(200);
/// A read or write that makes no progress for this long during an operation fails it. Generous:
/// a guest under binary translation, or one descheduled on a busy host, can pause for seconds.
const OP_TIMEOUT: Duration = Duration::from_secs(60);
/// Bytes per read of the sink and per write of the source: 128 KiB, the agent's default chunk
/// and iperf3's default TCP buffer, so that a cross-check compares like with like.
const BUF_LEN: usize = 128 * 1024;

/// A running peer; stop it with [`Peer::stop`] (dropping it stops it too, discarding the stats).
#[derive(Debug)]
pub struct Peer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<PeerStats>>,
}

/// What a peer did, returned by [`Peer::stop`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerStats {
    /// Connections on which the peer completed an operation (an [`UNBOUNDED`] stream completes
    /// when the agent closes it).
    pub connections: u64,
    /// Payload bytes moved: received by the sink, sent by the source, echoed; on every
    /// connection, including one that went wrong or was stopped midway.
    pub bytes: u64,
    /// Connections that closed or reset before the header (slirp with no listener yet).
    pub closed_before_header: u64,
    /// Connection attempts that failed (refused, timed out, unreachable): normal until the
    /// agent listens.
    pub connect_failures: u64,
    pub last_connect_error: Option<String>,
    /// Connections that went wrong after the header started: bad magic, an unknown op, the
    /// agent closing in the middle, a stall.
    pub errors: u64,
    pub last_error: Option<String>,
}

#[derive(Debug)]
struct Shared {
    stop: AtomicBool,
    /// The guest's web server, for the web loads the agent asks for (`app.web`).
    web: Option<SocketAddr>,
    /// CPUs the web load's session threads are pinned to.
    web_cpus: Option<Vec<usize>>,
    /// A second handle on the connection being served, for [`Peer::stop`] to shut down.
    current: Mutex<Option<TcpStream>>,
}

impl Shared {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Makes `stream` the one [`Peer::stop`] shuts down; false if the peer is already stopping
    /// (checked under the lock, so a stop either sees this stream or is seen here).
    fn publish(&self, stream: &TcpStream) -> std::io::Result<bool> {
        let clone = stream.try_clone()?;
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if self.stopping() {
            return Ok(false);
        }
        *current = Some(clone);
        Ok(true)
    }

    fn retire(&self) {
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

impl Peer {
    /// Starts a thread that connects to `addr` again and again and serves whatever the agent
    /// asks.
    ///
    /// With `netns` (an open `/run/netns/NAME` or `/proc/PID/ns/net`), the thread first enters
    /// that network namespace, on the thread only: the rest of the process keeps its own. An
    /// error entering it is returned here.
    pub fn start(addr: SocketAddr, netns: Option<File>) -> std::io::Result<Peer> {
        Peer::start_with_web(addr, None, netns)
    }

    /// [`Peer::start`], and the peer also drives the web loads the agent asks for against the
    /// guest's web server at `web` (`app.web`), from the host's last CPU when there are two
    /// or more (the first ones are where a native application runs).
    pub fn start_with_web(
        addr: SocketAddr,
        web: Option<SocketAddr>,
        netns: Option<File>,
    ) -> std::io::Result<Peer> {
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            web,
            web_cpus: generator_cpus(),
            current: Mutex::new(None),
        });
        let (ready_tx, ready_rx) = mpsc::channel::<std::io::Result<()>>();
        let thread_shared = Arc::clone(&shared);
        let thread = thread::Builder::new()
            .name("hvbench-net-peer".into())
            .spawn(move || {
                if let Some(ns) = netns {
                    if let Err(e) = enter_netns(&ns) {
                        let _ = ready_tx.send(Err(e));
                        return PeerStats::default();
                    }
                }
                let _ = ready_tx.send(Ok(()));
                serve_loop(addr, &thread_shared)
            })?;
        let started = ready_rx.recv().unwrap_or_else(|_| {
            Err(std::io::Error::other(
                "the peer thread ended before it started",
            ))
        });
        match started {
            Ok(()) => Ok(Peer {
                addr,
                shared,
                thread: Some(thread),
            }),
            Err(e) => {
                let _ = thread.join();
                Err(e)
            }
        }
    }

    /// The agent address this peer connects to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops the peer: shuts down the current connection so that a blocked read or write
    /// returns, joins the thread and returns what it did. Takes at most about a second (a
    /// connection attempt in flight).
    pub fn stop(mut self) -> PeerStats {
        self.halt()
    }

    fn halt(&mut self) -> PeerStats {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(s) = self
            .shared
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            // Shuts the socket itself down, not just this descriptor: the thread's handle on
            // it sees end of file or an error at once.
            let _ = s.shutdown(Shutdown::Both);
        }
        match self.thread.take() {
            Some(t) => t.join().unwrap_or_else(|_| PeerStats {
                errors: 1,
                last_error: Some("the peer thread panicked".into()),
                ..PeerStats::default()
            }),
            None => PeerStats::default(),
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.halt();
        }
    }
}

/// Moves the calling thread into the network namespace `ns`.
fn enter_netns(ns: &File) -> std::io::Result<()> {
    // SAFETY: setns only reads the descriptor number, which `ns` keeps open for the call; with
    // CLONE_NEWNET it changes the network namespace of the calling thread alone.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(std::io::Error::new(
            e.kind(),
            format!("entering the network namespace: {e}"),
        ));
    }
    Ok(())
}

/// How one connection ended, when it did not go wrong.
enum Served {
    /// The operation completed.
    Op,
    /// Closed or reset before the header: nobody on the other side yet.
    ClosedEarly,
    /// The peer is stopping.
    Stopped,
}

fn serve_loop(addr: SocketAddr, shared: &Shared) -> PeerStats {
    let mut stats = PeerStats::default();
    // Real, distinct bytes, as iperf3 sends: a zeroed buffer of this size is mapped to the
    // kernel's one zero page, and copying from one cache-hot page made host-to-guest streams
    // look 20-25% faster than iperf3's on loopback here.
    let mut buf = vec![0u8; BUF_LEN];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for b in buf.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = (x >> 24) as u8;
    }
    while !shared.stopping() {
        let stream = match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(s) => s,
            Err(e) => {
                stats.connect_failures += 1;
                stats.last_connect_error = Some(format!("connecting to {addr}: {e}"));
                thread::sleep(RETRY_PAUSE);
                continue;
            }
        };
        let mut moved = 0;
        let result = match shared.publish(&stream) {
            Ok(true) => serve(&stream, &mut buf, shared, &mut moved),
            Ok(false) => break,
            Err(e) => Err(format!("duplicating the connection's descriptor: {e}")),
        };
        shared.retire();
        drop(stream);
        stats.bytes += moved;
        match result {
            Ok(Served::Op) => stats.connections += 1,
            Ok(Served::Stopped) => break,
            Ok(Served::ClosedEarly) => {
                if shared.stopping() {
                    break;
                }
                stats.closed_before_header += 1;
                thread::sleep(RETRY_PAUSE);
            }
            // Shutting the connection down to stop makes the operation fail: not its fault.
            Err(_) if shared.stopping() => break,
            Err(e) => {
                stats.errors += 1;
                stats.last_error = Some(format!("connection to {addr}: {e}"));
                thread::sleep(RETRY_PAUSE);
            }
        }
    }
    stats
}

/// Serves one connection: header, operation, then the agent's close. Adds the payload bytes it
/// moves to `moved` as they go, so that a connection that goes wrong still counts them.
fn serve(
    stream: &TcpStream,
    buf: &mut [u8],
    shared: &Shared,
    moved: &mut u64,
) -> Result<Served, String> {
    let ctx = |what: &'static str| move |e: std::io::Error| format!("{what}: {e}");
    let mut s = stream;
    s.set_nodelay(true).map_err(ctx("setting TCP_NODELAY"))?;
    s.set_read_timeout(Some(HEADER_POLL))
        .map_err(ctx("setting a read timeout"))?;

    let mut hdr = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        match s.read(&mut hdr[got..]) {
            Ok(0) if got == 0 => return Ok(Served::ClosedEarly),
            Ok(0) => {
                return Err(format!(
                    "the agent closed the connection after {got} of {HEADER_LEN} header bytes"
                ))
            }
            Ok(n) => got += n,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                if shared.stopping() {
                    return Ok(Served::Stopped);
                }
            }
            Err(e)
                if got == 0
                    && matches!(
                        e.kind(),
                        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
                    ) =>
            {
                return Ok(Served::ClosedEarly)
            }
            Err(e) => return Err(format!("reading the header: {e}")),
        }
    }
    let header = Header::decode(&hdr)?;

    s.set_read_timeout(Some(OP_TIMEOUT))
        .map_err(ctx("setting a read timeout"))?;
    s.set_write_timeout(Some(OP_TIMEOUT))
        .map_err(ctx("setting a write timeout"))?;
    match header.op {
        Op::Sink => sink(s, buf, header.count, moved)?,
        Op::Source => source(s, buf, header.count, moved)?,
        Op::Echo => echo(s, buf, header.count, moved)?,
        Op::Web => web(s, header.count, shared)?,
    }
    // An unbounded stream ended because the agent closed the connection.
    if header.count != UNBOUNDED || header.op == Op::Echo {
        wait_for_close(s)?;
    }
    Ok(Served::Op)
}

/// Whether `e` says the agent closed its end (the end of an [`UNBOUNDED`] stream).
fn closed_by_agent(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe
    )
}

/// Reads exactly `count` bytes, then acknowledges how many arrived; an [`UNBOUNDED`] sink reads
/// until the agent closes and sends no ack.
fn sink(mut s: &TcpStream, buf: &mut [u8], count: u64, moved: &mut u64) -> Result<(), String> {
    let unbounded = count == UNBOUNDED;
    let mut got: u64 = 0;
    while got < count {
        let want = (count - got).min(buf.len() as u64) as usize;
        match s.read(&mut buf[..want]) {
            Ok(0) if unbounded => return Ok(()),
            Ok(0) => {
                return Err(format!(
                    "sink: the agent closed the connection after {got} of {count} bytes"
                ))
            }
            Ok(n) => {
                got += n as u64;
                *moved += n as u64;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if unbounded && closed_by_agent(&e) => return Ok(()),
            Err(e) => return Err(format!("sink: reading after {got} of {count} bytes: {e}")),
        }
    }
    s.write_all(&got.to_le_bytes())
        .map_err(|e| format!("sink: sending the acknowledgement: {e}"))
}

/// Writes `count` bytes; an [`UNBOUNDED`] source writes until the agent closes.
fn source(mut s: &TcpStream, buf: &[u8], count: u64, moved: &mut u64) -> Result<(), String> {
    let unbounded = count == UNBOUNDED;
    let mut sent: u64 = 0;
    while sent < count {
        let n = (count - sent).min(buf.len() as u64) as usize;
        match s.write(&buf[..n]) {
            Ok(0) => return Err(format!("source: the socket took no bytes after {sent}")),
            Ok(k) => {
                sent += k as u64;
                *moved += k as u64;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if unbounded && closed_by_agent(&e) => return Ok(()),
            Err(e) => {
                return Err(format!(
                    "source: writing after {sent} of {count} bytes: {e}"
                ))
            }
        }
    }
    Ok(())
}

/// Sends back every byte it reads, until `count` bytes (one per transaction) went back.
fn echo(mut s: &TcpStream, buf: &mut [u8], count: u64, moved: &mut u64) -> Result<(), String> {
    let mut done: u64 = 0;
    while done < count {
        let want = (count - done).min(buf.len() as u64) as usize;
        match s.read(&mut buf[..want]) {
            Ok(0) => {
                return Err(format!(
                    "echo: the agent closed the connection after {done} of {count} transactions"
                ))
            }
            Ok(n) => {
                s.write_all(&buf[..n])
                    .map_err(|e| format!("echo: answering transaction {done}: {e}"))?;
                done += n as u64;
                *moved += n as u64;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("echo: reading transaction {done} of {count}: {e}")),
        }
    }
    Ok(())
}

/// The CPUs a web load runs on: the last of this process's, when it has two or more.
fn generator_cpus() -> Option<Vec<usize>> {
    // SAFETY: cpu_set_t is a plain bit array; sched_getaffinity fills it for this thread.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid cpu_set_t of the size given.
    if unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) } != 0
    {
        return None;
    }
    let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
        // SAFETY: CPU_ISSET reads a bit of a valid set.
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect();
    (cpus.len() >= 2).then(|| vec![*cpus.last().expect("two or more")])
}

/// Drives the web load the agent describes next against the guest's web server, and answers
/// with what it measured (or with an error message, as a result with no requests).
fn web(mut s: &TcpStream, sessions: u64, shared: &Shared) -> Result<(), String> {
    let spec = wire_fmt::read_frame(&mut s).map_err(|e| format!("web: reading the load: {e}"))?;
    let mut spec: LoadSpec =
        serde_json::from_slice(&spec).map_err(|e| format!("web: a bad load: {e}"))?;
    spec.sessions = u32::try_from(sessions).unwrap_or(u32::MAX);
    let result = match shared.web {
        None => Err("the host side has no address for the guest's web server".to_string()),
        Some(addr) => web_load::run_load(addr, &spec, &shared.stop, shared.web_cpus.as_deref()),
    };
    let answer = match result {
        Ok(r) => serde_json::json!({ "ok": r }),
        Err(e) => serde_json::json!({ "error": e }),
    };
    wire_fmt::write_frame(&mut s, answer.to_string().as_bytes())
        .map_err(|e| format!("web: sending the result: {e}"))
}

/// Waits for the agent to close its end: the operation is over only then, and anything the
/// agent sends after it is a protocol error.
fn wait_for_close(mut s: &TcpStream) -> Result<(), String> {
    let mut extra = [0u8; 64];
    loop {
        match s.read(&mut extra) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                return Err(format!(
                    "the agent sent {n} unexpected bytes after the operation"
                ))
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            // A reset after a completed operation still completed it.
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return Ok(()),
            Err(e) => return Err(format!("waiting for the agent to close: {e}")),
        }
    }
}
