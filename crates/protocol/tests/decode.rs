//! Round trips and hostile input for the protocol decoder.

use std::collections::BTreeMap;
use std::io::Cursor;

use hvbench_protocol::*;
use proptest::prelude::*;

fn sample(value: f64) -> AgentMessage {
    AgentMessage::Sample(SampleMsg {
        job: 3,
        rep: 1,
        warmup: false,
        value,
        iterations: 1000,
        work: 1000.0,
        elapsed_ns: 200_000_000,
        wall_ns: 201_000_000,
        extras: BTreeMap::from([("dmips".to_string(), 12.5)]),
        labels: BTreeMap::from([("engine".to_string(), "io_uring".to_string())]),
    })
}

fn roundtrip_agent(m: &AgentMessage) -> AgentMessage {
    let line = encode(m);
    assert!(line.ends_with('\n'));
    match decode_agent_line(line.trim_end_matches('\n').as_bytes()).unwrap() {
        Line::Message(m) => m,
        Line::Other(o) => panic!("not a message: {o}"),
    }
}

#[test]
fn every_agent_message_round_trips() {
    let msgs = [
        AgentMessage::Hello(Hello {
            agent_version: "0.1.0".into(),
            build_id: "abc".into(),
            kernel: "6.1.0 #1 SMP".into(),
            cpus: 2,
            mem_total_kib: 1 << 20,
            clocksource: Some("tsc".into()),
            uptime_s: Some(0.42),
            is_init: true,
            setup_notes: vec!["loaded virtio_console".into()],
        }),
        sample(123.25),
        AgentMessage::Done(Done {
            job: 9,
            iterations: Some(100),
        }),
        AgentMessage::Error(ErrorMsg {
            job: Some(2),
            kind: ErrorKind::Unsupported,
            message: "no CPUID".into(),
        }),
    ];
    for m in &msgs {
        assert_eq!(&roundtrip_agent(m), m);
    }
}

#[test]
fn host_messages_round_trip() {
    let job = HostMessage::Job(Job {
        id: 1,
        workload: "sys.getppid".into(),
        params: BTreeMap::from([("max_prime".to_string(), serde_json::json!(10000))]),
        iterations: Some(5),
        target_s: 0.2,
        warmup: 1,
        reps: 5,
        copies: 2,
    });
    for m in [job, HostMessage::Shutdown] {
        let line = encode(&m);
        assert_eq!(
            decode_host_line(line.trim_end().as_bytes()).unwrap(),
            Line::Message(m)
        );
    }
}

#[test]
fn console_noise_is_not_a_message() {
    let l = decode_agent_line(
        b"[    0.123456] virtio_blk virtio1: [vda] 2097152 512-byte logical blocks",
    )
    .unwrap();
    assert!(matches!(l, Line::Other(_)));
}

#[test]
fn prefix_after_console_garbage_is_found() {
    let line = format!(
        "\r[ 1.0] x{}",
        encode(&AgentMessage::Done(Done {
            job: 1,
            iterations: None
        }))
    );
    assert!(matches!(
        decode_agent_line(line.trim_end().as_bytes()),
        Ok(Line::Message(_))
    ));
}

#[test]
fn truncated_line_is_malformed() {
    let line = encode(&sample(1.0));
    let cut = &line.as_bytes()[..line.len() / 2];
    assert!(matches!(
        decode_agent_line(cut),
        Err(ProtocolError::Malformed(_))
    ));
}

#[test]
fn huge_and_nan_numbers_are_rejected() {
    for bad in [
        r#"@hvb1 {"v":1,"type":"sample","job":1,"rep":0,"warmup":false,"value":1e400,"iterations":1,"work":1,"elapsed_ns":1,"wall_ns":1}"#,
        r#"@hvb1 {"v":1,"type":"sample","job":1,"rep":0,"warmup":false,"value":NaN,"iterations":1,"work":1,"elapsed_ns":1,"wall_ns":1}"#,
        r#"@hvb1 {"v":1,"type":"sample","job":1,"rep":0,"warmup":false,"value":-1,"iterations":1,"work":1,"elapsed_ns":1,"wall_ns":1}"#,
        r#"@hvb1 {"v":1,"type":"sample","job":99999999999999999999999,"rep":0,"warmup":false,"value":1,"iterations":1,"work":1,"elapsed_ns":1,"wall_ns":1}"#,
        r#"@hvb1 {"v":1,"type":"sample","job":1,"rep":0,"warmup":false,"value":1,"iterations":0,"work":1,"elapsed_ns":1,"wall_ns":1}"#,
    ] {
        assert!(decode_agent_line(bad.as_bytes()).is_err(), "accepted {bad}");
    }
}

#[test]
fn other_protocol_version_names_the_fix() {
    let e = decode_agent_line(br#"@hvb1 {"v":2,"type":"done","job":1}"#).unwrap_err();
    assert_eq!(e, ProtocolError::Version { got: 2 });
    assert!(e.to_string().contains("same hvbench"));
}

#[test]
fn invalid_jobs_are_rejected() {
    for bad in [
        r#"@hvb1 {"v":1,"type":"job","id":1,"workload":"x","target_s":0,"reps":1}"#,
        r#"@hvb1 {"v":1,"type":"job","id":1,"workload":"x","target_s":0.1,"reps":1,"copies":0}"#,
        r#"@hvb1 {"v":1,"type":"job","id":1,"workload":"x","target_s":1e300,"reps":1}"#,
    ] {
        assert!(decode_host_line(bad.as_bytes()).is_err(), "accepted {bad}");
    }
}

#[test]
fn line_reader_bounds_long_lines_and_recovers() {
    let mut data = vec![b'x'; 100];
    data.extend_from_slice(b"\nshort\nlast");
    let mut r = LineReader::with_max(Cursor::new(data), 10);
    assert_eq!(r.read_line().unwrap(), ReadLine::TooLong(100));
    assert_eq!(r.read_line().unwrap(), ReadLine::Line(b"short".to_vec()));
    assert_eq!(r.read_line().unwrap(), ReadLine::Line(b"last".to_vec()));
    assert_eq!(r.read_line().unwrap(), ReadLine::Eof);
}

#[test]
fn oversized_line_is_rejected_by_decoder() {
    let big = vec![b'a'; MAX_LINE + 1];
    assert_eq!(
        decode_agent_line(&big),
        Err(ProtocolError::LineTooLong(MAX_LINE + 1))
    );
}

proptest! {
    #[test]
    fn decoder_never_panics_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_agent_line(&bytes);
        let _ = decode_host_line(&bytes);
    }

    #[test]
    fn decoder_never_panics_on_prefixed_json_like(s in "\\PC{0,300}") {
        let line = format!("@hvb1 {{\"v\":1,{s}");
        let _ = decode_agent_line(line.as_bytes());
        let line = format!("@hvb1 {s}");
        let _ = decode_host_line(line.as_bytes());
    }

    #[test]
    fn samples_round_trip(value in 0.0f64..1e300, job in any::<u64>(), rep in any::<u32>(),
                          iterations in 1u64.., elapsed in 1u64..) {
        let m = AgentMessage::Sample(SampleMsg { job, rep, warmup: false, value, iterations, work: 1.0,
            elapsed_ns: elapsed, wall_ns: elapsed, extras: BTreeMap::new(), labels: BTreeMap::new() });
        prop_assert_eq!(roundtrip_agent(&m), m);
    }

    #[test]
    fn line_reader_never_exceeds_bound(data in proptest::collection::vec(any::<u8>(), 0..2048), max in 1usize..64) {
        let mut r = LineReader::with_max(Cursor::new(data), max);
        loop {
            match r.read_line().unwrap() {
                ReadLine::Line(l) => prop_assert!(l.len() <= max),
                ReadLine::TooLong(n) => prop_assert!(n > max),
                ReadLine::Eof => break,
            }
        }
    }
}
