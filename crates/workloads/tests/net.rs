//! The net workloads against the host peer over loopback: every run completes and moves the
//! bytes it claims, the peer survives what slirp does to it, and nothing hangs.
//!
//! Properties only, never timings: the machine is shared and noisy. Each test uses its own port,
//! since the agent's listeners are cached process-wide by address.
//!
//! One ignored test is a measurement helper for release builds, the native loopback baseline
//! (default chunk, 1 s calibrated runs, three repetitions each):
//!
//! ```text
//! cargo test --release -p hvbench-workloads --test net -- --ignored --nocapture
//! ```

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use hvbench_workloads::net::peer::{Peer, PeerStats};
use hvbench_workloads::{calibrate, find, run_rep, Params, RepResult, WorkloadError};

const CHUNK: u64 = 64 * 1024;

/// A loopback address with a port that was free a moment ago.
fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

fn params(listen: SocketAddr) -> Params {
    Params::from([
        ("listen".to_owned(), listen.to_string().into()),
        ("chunk".to_owned(), CHUNK.into()),
        ("accept_timeout_s".to_owned(), 10.into()),
    ])
}

fn rep(name: &str, p: &Params, iterations: u64) -> RepResult {
    let w = find(name).unwrap();
    run_rep(w, p, iterations, 1).unwrap_or_else(|e| panic!("{name} x{iterations}: {e}"))
}

/// Runs `name` with each of `iterations` and checks every result; returns the payload bytes the
/// peer should have counted.
fn check_runs(name: &str, p: &Params, listen: SocketAddr, iterations: &[u64]) -> u64 {
    let mut bytes = 0;
    for &it in iterations {
        let r = rep(name, p, it);
        assert!(r.value > 0.0 && r.value.is_finite(), "{name}: {r:?}");
        assert_eq!(r.labels["listen"], listen.to_string(), "{name}");
        if name == "net.rr" {
            assert_eq!(r.work, it as f64, "{name}");
            let (p50, p99) = (r.extras["lat_p50_us"], r.extras["lat_p99_us"]);
            assert!(p50 > 0.0 && p50 <= p99, "{name}: p50 {p50} p99 {p99}");
            bytes += it;
        } else {
            assert_eq!(r.work, (it * CHUNK) as f64, "{name}");
            assert_eq!(r.extras["chunk_bytes"], CHUNK as f64, "{name}");
            bytes += it * CHUNK;
        }
    }
    bytes
}

fn assert_clean(stats: &PeerStats) {
    assert_eq!(stats.errors, 0, "{stats:?}");
    assert_eq!(stats.last_error, None, "{stats:?}");
}

#[test]
fn each_workload_completes_over_loopback_and_the_peer_counts_it() {
    for name in ["net.stream.tx", "net.stream.rx", "net.rr"] {
        let listen = free_addr();
        let p = params(listen);
        let peer = Peer::start(listen, None).unwrap();
        let iterations = [1, 5, 32];
        let bytes = check_runs(name, &p, listen, &iterations);
        let stats = peer.stop();
        assert_clean(&stats);
        assert_eq!(
            stats.connections,
            iterations.len() as u64,
            "{name}: {stats:?}"
        );
        assert_eq!(stats.bytes, bytes, "{name}: {stats:?}");
    }
}

/// As the agent uses it: one peer, one address, every workload calibrated then repeated.
#[test]
fn one_peer_serves_calibration_and_repetitions_of_all_workloads() {
    let listen = free_addr();
    let p = params(listen);
    let peer = Peer::start(listen, None).unwrap();
    for name in ["net.stream.tx", "net.stream.rx", "net.rr"] {
        let w = find(name).unwrap();
        let it = calibrate(w, &p, Duration::from_millis(50)).unwrap();
        assert!(it >= 1);
        // Calibration may ask for many transactions; keep the debug build quick.
        check_runs(name, &p, listen, &[it.min(20_000); 2]);
    }
    let stats = peer.stop();
    assert_clean(&stats);
    assert!(stats.connections >= 9, "{stats:?}");
}

/// A stand-in for QEMU's slirp `hostfwd`: accepts every host connection at once, then connects
/// to the agent; when nothing listens there it closes the host connection, otherwise it pumps
/// bytes both ways.
struct Forwarder {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    closed_early: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Forwarder {
    fn start(upstream: SocketAddr) -> Forwarder {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let addr = l.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let closed_early = Arc::new(AtomicU64::new(0));
        let (stop2, closed2) = (Arc::clone(&stop), Arc::clone(&closed_early));
        let thread = thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                let down = match l.accept() {
                    Ok((s, _)) => s,
                    Err(_) => {
                        thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                };
                down.set_nonblocking(false).unwrap();
                match TcpStream::connect(upstream) {
                    Ok(up) => pump(down, up),
                    Err(_) => {
                        closed2.fetch_add(1, Ordering::SeqCst);
                        drop(down);
                    }
                }
            }
        });
        Forwarder {
            addr,
            stop,
            closed_early,
            thread: Some(thread),
        }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Copies both ways; when the host side closes, both sockets are shut down so that neither
/// pump thread outlives the connection.
fn pump(down: TcpStream, up: TcpStream) {
    let (mut d1, mut u1) = (down.try_clone().unwrap(), up.try_clone().unwrap());
    thread::spawn(move || {
        let _ = std::io::copy(&mut u1, &mut d1);
        let _ = d1.shutdown(Shutdown::Write);
    });
    thread::spawn(move || {
        let (mut d2, mut u2) = (down, up);
        let _ = std::io::copy(&mut d2, &mut u2);
        let _ = u2.shutdown(Shutdown::Both);
        let _ = d2.shutdown(Shutdown::Both);
    });
}

#[test]
fn peer_retries_through_a_slirp_like_forward_until_the_agent_listens() {
    let listen = free_addr();
    let fwd = Forwarder::start(listen);
    let peer = Peer::start(fwd.addr, None).unwrap();
    // Nothing listens on `listen` yet: the forward accepts and closes, again and again.
    let deadline = Instant::now() + Duration::from_secs(10);
    while fwd.closed_early.load(Ordering::SeqCst) < 3 {
        assert!(Instant::now() < deadline, "the peer never retried");
        thread::sleep(Duration::from_millis(10));
    }
    let p = params(listen);
    let bytes = check_runs("net.stream.tx", &p, listen, &[1, 8])
        + check_runs("net.rr", &p, listen, &[50])
        + check_runs("net.stream.rx", &p, listen, &[4]);
    let stats = peer.stop();
    assert_clean(&stats);
    assert!(stats.closed_before_header >= 3, "{stats:?}");
    assert_eq!(stats.connections, 4, "{stats:?}");
    assert_eq!(stats.bytes, bytes, "{stats:?}");
}

#[test]
fn without_a_peer_each_workload_fails_in_time_naming_the_address() {
    let listen = free_addr();
    let mut p = params(listen);
    p.insert("accept_timeout_s".into(), 1.into());
    let runs: Vec<_> = ["net.stream.tx", "net.stream.rx", "net.rr"]
        .into_iter()
        .map(|name| {
            let p = p.clone();
            thread::spawn(move || {
                let start = Instant::now();
                let r = (find(name).unwrap().run)(&p, 1);
                (name, r, start.elapsed())
            })
        })
        .collect();
    for t in runs {
        let (name, r, took) = t.join().unwrap();
        match r {
            Err(WorkloadError::Failed(m)) => {
                assert!(m.contains(&listen.to_string()), "{name}: {m}");
                assert!(m.contains("within 1 s"), "{name}: {m}");
            }
            other => panic!("{name}: expected a failure, got {other:?}"),
        }
        assert!(took >= Duration::from_millis(900), "{name} gave up early");
        assert!(took < Duration::from_secs(20), "{name} took {took:?}");
    }
}

#[test]
fn stop_is_prompt_whether_refused_or_never_accepted() {
    // Refused: nothing listens.
    let peer = Peer::start(free_addr(), None).unwrap();
    thread::sleep(Duration::from_millis(100));
    let start = Instant::now();
    let stats = peer.stop();
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(stats.connect_failures > 0, "{stats:?}");
    assert_eq!(stats.connections, 0);
    assert_clean(&stats);

    // Connected, but the agent never accepts: the peer waits for a header that never comes.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let peer = Peer::start(silent.local_addr().unwrap(), None).unwrap();
    thread::sleep(Duration::from_millis(300));
    let start = Instant::now();
    let stats = peer.stop();
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(stats.connections, 0);
    assert_clean(&stats);
}

#[test]
fn stop_is_prompt_in_the_middle_of_an_operation() {
    // A fake agent that asks for a huge sink and then sends nothing.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let peer = Peer::start(l.local_addr().unwrap(), None).unwrap();
    let (mut s, _) = l.accept().unwrap();
    let mut h = Vec::new();
    h.extend_from_slice(b"HVBN");
    h.extend_from_slice(&1u32.to_le_bytes());
    h.extend_from_slice(&(1u64 << 40).to_le_bytes());
    s.write_all(&h).unwrap();
    thread::sleep(Duration::from_millis(100));
    let start = Instant::now();
    let stats = peer.stop();
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(stats.connections, 0);
    assert_clean(&stats);
}

#[test]
fn bad_magic_is_an_error_and_the_peer_carries_on() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let peer = Peer::start(l.local_addr().unwrap(), None).unwrap();
    let (mut s, _) = l.accept().unwrap();
    s.write_all(&[0xee; 16]).unwrap();
    // The peer gives up on that connection (end of file here) and connects again.
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(s.read(&mut [0u8; 1]).unwrap(), 0);
    let (_again, _) = l.accept().unwrap();
    let stats = peer.stop();
    assert_eq!(stats.errors, 1, "{stats:?}");
    assert!(
        stats.last_error.as_deref().unwrap().contains("bad magic"),
        "{stats:?}"
    );
}

#[test]
fn a_file_that_is_not_a_network_namespace_is_refused() {
    let not_ns = std::fs::File::open("/dev/null").unwrap();
    let e = Peer::start(free_addr(), Some(not_ns)).unwrap_err();
    assert!(e.to_string().contains("network namespace"), "{e}");
}

/// Deletes the namespace when the test ends, passed or not.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .status();
    }
}

fn ip(args: &[&str]) -> bool {
    std::process::Command::new("ip")
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The agent in a fresh network namespace (as under the namespace backend), the peer entering
/// it on its own thread. Skipped without root or iproute2.
#[test]
fn peer_enters_a_network_namespace() {
    // SAFETY: geteuid has no preconditions and touches no memory.
    if unsafe { libc::geteuid() } != 0 || !ip(&["-V"]) {
        eprintln!("skipped: needs root and iproute2");
        return;
    }
    let name = format!("hvbtest-{}", std::process::id());
    if !ip(&["netns", "add", &name]) {
        eprintln!("skipped: cannot create a network namespace here");
        return;
    }
    let ns = Netns(name);
    assert!(ip(&["-n", &ns.0, "link", "set", "lo", "up"]));
    let path = format!("/run/netns/{}", ns.0);

    // An address of its own (the listener cache is keyed by it), free inside the new namespace.
    let listen: SocketAddr = "127.0.0.77:5201".parse().unwrap();
    let agent_ns = std::fs::File::open(&path).unwrap();
    let agent = thread::spawn(move || {
        use std::os::fd::AsRawFd;
        // SAFETY: `agent_ns` is an open namespace file for the call; CLONE_NEWNET moves only
        // this thread.
        let r = unsafe { libc::setns(agent_ns.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
        let p = params(listen);
        check_runs("net.rr", &p, listen, &[10]) + check_runs("net.stream.tx", &p, listen, &[3])
    });
    let peer = Peer::start(listen, Some(std::fs::File::open(&path).unwrap())).unwrap();
    let bytes = agent.join();
    let stats = peer.stop();
    let bytes = bytes.expect("the agent thread failed");
    assert_clean(&stats);
    assert_eq!(stats.connections, 2, "{stats:?}");
    assert_eq!(stats.bytes, bytes, "{stats:?}");
}

#[test]
#[ignore = "measurement helper; run with --release --ignored --nocapture"]
fn loopback_baseline() {
    let listen = free_addr();
    let p = Params::from([("listen".to_owned(), listen.to_string().into())]);
    let peer = Peer::start(listen, None).unwrap();
    for name in ["net.stream.tx", "net.stream.rx", "net.rr"] {
        let w = find(name).unwrap();
        let it = calibrate(w, &p, Duration::from_secs(1)).unwrap();
        for _ in 0..3 {
            let r = run_rep(w, &p, it, 1).unwrap();
            let lat = match (r.extras.get("lat_p50_us"), r.extras.get("lat_p99_us")) {
                (Some(p50), Some(p99)) => format!("  p50 {p50:.1} us  p99 {p99:.1} us"),
                _ => String::new(),
            };
            println!(
                "{name:14} {:10.2} {}  ({it} iterations in {:.2?}){lat}",
                r.value, w.unit, r.elapsed
            );
        }
    }
    let stats = peer.stop();
    assert_clean(&stats);
    println!("{stats:?}");
}
