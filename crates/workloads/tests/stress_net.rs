//! The network stressors against the host peer over loopback: the steady workload's outcome
//! comes back with the stream's bytes, the peer moves bytes the right way, a later run on the
//! same listener is not confused by what an earlier peer left queued, and a stream that breaks
//! fails the run instead of passing for stress.
//!
//! Properties only, never timings. Each test uses its own port, since the agent's listeners are
//! cached process-wide by address.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use hvbench_workloads::net::peer::Peer;
use hvbench_workloads::net::wire::{Header, Op, HEADER_LEN, UNBOUNDED};
use hvbench_workloads::{find, Outcome, Params, WorkloadError};

/// A loopback address with a port that was free a moment ago.
fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// A cheap steady workload (a few sysbench events of a small prime bound).
fn params(listen: SocketAddr, steady: bool) -> Params {
    let mut p = Params::from([
        ("listen".to_owned(), listen.to_string().into()),
        ("accept_timeout_s".to_owned(), 10.into()),
        ("max_prime".to_owned(), 2000.into()),
    ]);
    if steady {
        p.insert("steady".into(), "cpu.primes".into());
    }
    p
}

fn run(name: &str, p: &Params, iterations: u64) -> Outcome {
    (find(name).unwrap().run)(p, iterations).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Runs `name` with a steady workload, then holding the stress for 200 ms; returns the bytes
/// the agent's side moved.
fn steady_then_hold(name: &str, listen: SocketAddr) -> f64 {
    let with_steady = run(name, &params(listen, true), 50);
    // The steady workload's outcome: its 50 events.
    assert_eq!(with_steady.work, 50.0, "{name}: {with_steady:?}");
    assert_eq!(with_steady.extras["stress_workers"], 1.0, "{name}");
    assert!(
        with_steady.extras.contains_key("stress_net_bytes"),
        "{name}"
    );
    let hold = run(name, &params(listen, false), 200);
    assert_eq!(hold.work, 200.0, "{name}");
    let bytes = hold.extras["stress_net_bytes"];
    assert!(bytes > 0.0, "{name}: nothing moved in 200 ms: {hold:?}");
    assert!(hold.extras["stress_net_gbit_s"] > 0.0, "{name}");
    assert!(hold.extras["stress_ops"] > 0.0, "{name}");
    with_steady.extras["stress_net_bytes"] + bytes
}

#[test]
fn net_send_streams_from_the_guest_to_the_peer() {
    let listen = free_addr();
    let peer = Peer::start(listen, None).unwrap();
    let sent = steady_then_hold("stress.net-send", listen);
    let stats = peer.stop();
    // The agent's close ends an unbounded stream normally: no error, and both runs count.
    assert_eq!(stats.errors, 0, "{stats:?}");
    assert!(stats.connections >= 2, "{stats:?}");
    // The peer sank what the guest sent. Not exactly: the agent's count misses a send that
    // completed as its worker was killed, and the peer may be stopped while still draining.
    assert!(stats.bytes > 0 && sent > 0.0, "{stats:?}, sent {sent}");
}

#[test]
fn net_recv_streams_from_the_peer_into_the_guest() {
    let listen = free_addr();
    let peer = Peer::start(listen, None).unwrap();
    let received = steady_then_hold("stress.net-recv", listen);
    let stats = peer.stop();
    assert_eq!(stats.errors, 0, "{stats:?}");
    assert!(stats.connections >= 2, "{stats:?}");
    // The peer sourced what the guest received (and more: what was in flight at the close).
    assert!(
        stats.bytes > 0 && received > 0.0,
        "{stats:?}, received {received}"
    );
}

/// A peer stopped between two jobs leaves its next connection closed in the accept queue;
/// the next stressor's run skips it and streams with the new peer.
#[test]
fn a_stale_queued_connection_does_not_confuse_the_next_run() {
    let listen = free_addr();
    let first = Peer::start(listen, None).unwrap();
    run("stress.net-send", &params(listen, false), 100);
    // The first peer reconnects at once after the stream ends; give it time to be queued.
    std::thread::sleep(Duration::from_millis(200));
    let s1 = first.stop();
    assert!(s1.bytes > 0, "{s1:?}");
    let second = Peer::start(listen, None).unwrap();
    let out = run("stress.net-recv", &params(listen, false), 100);
    assert!(out.extras["stress_net_bytes"] > 0.0, "{out:?}");
    let s2 = second.stop();
    assert!(s2.bytes > 0 && s2.connections >= 1, "{s2:?}");
    assert_eq!(s2.errors, 0, "{s2:?}");
}

/// A peer that leaves in the middle: the stress was not held, and the run says so.
#[test]
fn a_stream_that_ends_during_the_run_fails_it() {
    let listen = free_addr();
    let quitter = std::thread::spawn(move || {
        let mut s = loop {
            match TcpStream::connect(listen) {
                Ok(s) => break s,
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        };
        let mut h = [0u8; HEADER_LEN];
        s.read_exact(&mut h).unwrap();
        let h = Header::decode(&h).unwrap();
        assert_eq!(h.op, Op::Source);
        assert_eq!(h.count, UNBOUNDED);
        // Leave without sending anything. A plain close: the stressor's processes, forked
        // from this process, close what they inherited and do not use (this socket too).
        std::thread::sleep(Duration::from_millis(50));
        drop(s);
    });
    let r = (find("stress.net-recv").unwrap().run)(&params(listen, false), 500);
    quitter.join().unwrap();
    match r {
        Err(WorkloadError::Failed(m)) => assert!(m.contains("peer closed"), "{m}"),
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[test]
fn without_listen_it_is_unsupported_and_bad_params_are_refused() {
    for name in ["stress.net-send", "stress.net-recv"] {
        let w = find(name).unwrap();
        let no_net = Params::from([("steady".to_owned(), "cpu.primes".into())]);
        assert!(
            matches!((w.run)(&no_net, 1), Err(WorkloadError::Unsupported(m)) if m.contains("listen")),
            "{name}"
        );
        let mut p = params(free_addr(), false);
        p.insert("workers".into(), 2.into());
        assert!(
            matches!((w.run)(&p, 1), Err(WorkloadError::BadParam(_))),
            "{name}"
        );
        let mut p = params(free_addr(), false);
        p.insert("steady".into(), "net.rr".into());
        assert!(
            matches!((w.run)(&p, 1), Err(WorkloadError::BadParam(m)) if m.contains("one connection")),
            "{name}"
        );
    }
}
