//! `mock`: a scripted guest without any process, so that scenarios and their failure paths are
//! tested deterministically and in milliseconds (as hyperfine tests its benchmarks with a mock
//! executor).
//!
//! The "agent" is a thread of hvbench at the other end of a socket pair. It speaks the protocol
//! as the real one does (hello; per job a sample for each warm-up and repetition, then done;
//! shutdown or end of input ends it) and reports the same value every time, with a small
//! repeatable ripple so that statistics have a spread. A [`Fault`] per launch makes a guest
//! misbehave the ways real ones do: hang at boot, present another version, go silent, crash in
//! the middle of a job, or send garbage. The backend is not in [`super::all`]: users never see it.

use std::collections::BTreeMap;
use std::io::{BufReader, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hvbench_protocol::{
    decode_host_line, encode, AgentMessage, Done, Hello, HostMessage, Job, Line, LineReader,
    ReadLine, SampleMsg, PREFIX,
};

use super::{Availability, Backend, BackendConfig, BackendError, GuestSpec, Launched};
use crate::agent::AgentBinary;

/// How one launch of a mock guest misbehaves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    /// Never says hello (a guest that hangs at boot).
    NoHello,
    /// Says hello as an agent of another version.
    WrongVersion,
    /// Answers `n` jobs, then reads on but never answers again.
    SilentAfter(u32),
    /// Answers `n` jobs; during the next one prints a console line, sends one sample and
    /// closes its channel (a guest that crashed mid-job).
    CrashAfter(u32),
    /// Answers `n` jobs; answers the next with a line that is not a valid message.
    GarbageAfter(u32),
}

/// What the mock prints on its console before it crashes (see [`Fault::CrashAfter`]).
pub const CRASH_CONSOLE_LINE: &str = "mock guest: Kernel panic - not syncing: scripted crash";

/// The agent version a [`Fault::WrongVersion`] guest presents.
pub const OTHER_VERSION: &str = "0.0.0-mock";

/// A backend whose guests are threads answering with `value`.
pub struct Mock {
    name: &'static str,
    baseline: bool,
    value: f64,
    /// The fault of each launch in turn; launches beyond the list are healthy.
    faults: Vec<Option<Fault>>,
    launches: AtomicUsize,
    hello_timeout: Duration,
}

impl Mock {
    /// A healthy mock backend named `name` whose every sample is about `value`.
    pub fn new(name: &'static str, value: f64) -> Mock {
        Mock {
            name,
            baseline: false,
            value,
            faults: Vec::new(),
            launches: AtomicUsize::new(0),
            hello_timeout: Duration::from_secs(5),
        }
    }

    /// The same, as the run's baseline (what `native` is in real runs).
    pub fn baseline(self) -> Mock {
        Mock {
            baseline: true,
            ..self
        }
    }

    /// The fault of each launch in turn (`None`: that launch is healthy).
    pub fn with_faults(self, faults: Vec<Option<Fault>>) -> Mock {
        Mock { faults, ..self }
    }

    /// How long the host waits for a hello (short, for tests of [`Fault::NoHello`]).
    pub fn with_hello_timeout(self, timeout: Duration) -> Mock {
        Mock {
            hello_timeout: timeout,
            ..self
        }
    }

    /// How many guests were launched.
    pub fn launches(&self) -> usize {
        self.launches.load(Ordering::SeqCst)
    }
}

impl Backend for Mock {
    fn name(&self) -> &'static str {
        self.name
    }

    fn technique(&self) -> &'static str {
        "none: a scripted agent in a thread (tests)"
    }

    fn probe(&self, _: &AgentBinary) -> Availability {
        Availability::Available {
            detail: "scripted".into(),
        }
    }

    fn is_baseline(&self) -> bool {
        self.baseline
    }

    fn hello_timeout(&self) -> Duration {
        self.hello_timeout
    }

    fn launch(&self, spec: &GuestSpec) -> Result<Launched, BackendError> {
        let n = self.launches.fetch_add(1, Ordering::SeqCst);
        let fault = self.faults.get(n).copied().flatten();
        let spawn = |what: &str, e| BackendError::Spawn {
            what: what.into(),
            source: e,
        };
        let (host, guest) = UnixStream::pair().map_err(|e| spawn("a socket pair", e))?;
        let reader = host.try_clone().map_err(|e| spawn("a socket pair", e))?;
        let value = self.value;
        std::thread::Builder::new()
            .name(format!("hvb-mock-{}", spec.label))
            .spawn(move || {
                let _ = serve(guest, value, fault);
            })
            .map_err(|e| spawn("the mock agent's thread", e))?;
        let settings = BTreeMap::from([(
            "fault".to_string(),
            fault.map_or("none".into(), |f| format!("{f:?}")),
        )]);
        Ok(Launched {
            processes: Vec::new(),
            reader: Box::new(reader),
            writer: Box::new(HangUp(host)),
            console_log: None,
            config: BackendConfig {
                command_line: vec![format!("(mock {})", self.name)],
                vcpus: Some(spec.vcpus),
                memory_mib: Some(spec.memory_mib),
                settings,
                ..Default::default()
            },
            attached: Default::default(),
        })
    }
}

/// The host's end of the channel: dropping it (the guest is stopped) hangs up both ways, as a
/// killed process would, so the mock's thread and the guest's reader thread both end.
struct HangUp(UnixStream);

impl Write for HangUp {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl Drop for HangUp {
    fn drop(&mut self) {
        let _ = self.0.shutdown(std::net::Shutdown::Both);
    }
}

fn hello(version: &str) -> Hello {
    Hello {
        agent_version: version.into(),
        build_id: "mock".into(),
        kernel: "mock".into(),
        cpus: 1,
        mem_total_kib: 65536,
        clocksource: None,
        uptime_s: None,
        is_init: false,
        setup_notes: Vec::new(),
    }
}

fn send(out: &mut UnixStream, msg: &AgentMessage) -> std::io::Result<()> {
    out.write_all(encode(msg).as_bytes())
}

/// The mock agent: answers jobs on `stream` until shutdown, end of input, or its fault.
fn serve(stream: UnixStream, value: f64, fault: Option<Fault>) -> std::io::Result<()> {
    let mut out = stream.try_clone()?;
    match fault {
        Some(Fault::NoHello) => {}
        Some(Fault::WrongVersion) => send(&mut out, &AgentMessage::Hello(hello(OTHER_VERSION)))?,
        _ => send(
            &mut out,
            &AgentMessage::Hello(hello(env!("CARGO_PKG_VERSION"))),
        )?,
    }
    let mut lines = LineReader::new(BufReader::new(stream));
    let mut answered = 0;
    let mut sent = 0;
    loop {
        let line = match lines.read_line()? {
            ReadLine::Line(l) => l,
            ReadLine::TooLong(_) => continue,
            ReadLine::Eof => return Ok(()),
        };
        let job = match decode_host_line(&line) {
            Ok(Line::Message(HostMessage::Job(job))) => job,
            Ok(Line::Message(HostMessage::Shutdown)) => return Ok(()),
            _ => continue,
        };
        let struck = |n: u32| answered >= n;
        match fault {
            Some(Fault::NoHello) | Some(Fault::WrongVersion) => continue,
            Some(Fault::SilentAfter(n)) if struck(n) => continue,
            Some(Fault::CrashAfter(n)) if struck(n) => {
                writeln!(out, "{CRASH_CONSOLE_LINE}")?;
                if let Some(s) = samples(&job, value, &mut sent).into_iter().next() {
                    send(&mut out, &AgentMessage::Sample(s))?;
                }
                // Returning drops both ends of the guest's side: the host reads end-of-file.
                return Ok(());
            }
            Some(Fault::GarbageAfter(n)) if struck(n) => {
                // A message cut off in the middle, as a console that drops bytes leaves it.
                writeln!(out, "{}{{\"type\": \"sample\", \"value\": ", PREFIX)?;
                continue;
            }
            _ => {}
        }
        for s in samples(&job, value, &mut sent) {
            send(&mut out, &AgentMessage::Sample(s))?;
        }
        send(
            &mut out,
            &AgentMessage::Done(Done {
                job: job.id,
                iterations: Some(iterations(&job)),
            }),
        )?;
        answered += 1;
    }
}

/// The calibration a mock reports when the job leaves the iteration count open.
pub const MOCK_ITERATIONS: u64 = 1000;

fn iterations(job: &Job) -> u64 {
    job.iterations.unwrap_or(MOCK_ITERATIONS)
}

/// The samples of `job`: its warm-ups, then its repetitions, each lasting about a millisecond
/// by the mock's clock (so the host's timing of it agrees) and worth `value` with a ripple of
/// ±0.1% that follows `sent`, the samples this guest sent before.
fn samples(job: &Job, value: f64, sent: &mut usize) -> Vec<SampleMsg> {
    let runs = (0..job.warmup)
        .map(|i| (i, true))
        .chain((0..job.reps).map(|i| (i, false)));
    runs.map(|(rep, warmup)| {
        let t0 = Instant::now();
        std::thread::sleep(Duration::from_millis(1));
        let wall = t0.elapsed().as_nanos() as u64;
        let ripple = [0.0, 0.001, -0.001][*sent % 3];
        *sent += 1;
        SampleMsg {
            job: job.id,
            rep,
            warmup,
            value: value * (1.0 + ripple),
            iterations: iterations(job),
            work: iterations(job) as f64,
            elapsed_ns: wall.max(1),
            wall_ns: wall.max(1),
            extras: BTreeMap::new(),
            labels: BTreeMap::new(),
        }
    })
    .collect()
}
