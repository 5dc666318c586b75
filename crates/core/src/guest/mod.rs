//! A running guest: the channel to its agent, the host processes that make it, its console,
//! and a way to stop it for certain.
//!
//! Everything here is common to all backends. A reader thread turns the agent's byte stream into
//! [`Event`]s on a channel, so the orchestrator blocks in `recv_timeout` (no busy polling) and a
//! silent guest becomes a timeout, not a hang. Every host process of a guest runs in its own
//! process group; dropping the [`Guest`] kills those groups and reaps them, on every path.

pub mod backend;

use std::collections::VecDeque;
use std::io::{BufReader, Write};
use std::path::PathBuf;
use std::process::Child;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hvbench_protocol::{
    decode_agent_line, encode, AgentMessage, ErrorKind, Hello, HostMessage, Job, Line, LineReader,
    ProtocolError, ReadLine, SampleMsg,
};

use self::backend::{Backend, BackendError, GuestSpec};
use crate::accounting::CpuMeter;
use crate::agent::AgentBinary;
use crate::launch::{has_exited, kill_and_reap, launching_in};
use crate::results::{BackendConfig, Failure, FailureKind};

/// Lines of console output kept for error reports.
const CONSOLE_TAIL_LINES: usize = 40;

/// What the reader thread saw on the agent channel.
#[derive(Debug)]
enum Event {
    Message(AgentMessage),
    Bad(ProtocolError),
    Eof,
    Io(String),
}

/// Why a guest did not do what was asked. `tail` is the guest's console tail at that moment
/// (empty when it printed nothing), kept apart from the message: see [`GuestError::failure`].
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    #[error(transparent)]
    Launch(#[from] BackendError),
    #[error("no hello from the agent within {timeout:?}")]
    NoHello { timeout: Duration, tail: String },
    #[error("agent version {agent} is not hvbench's {host}: rebuild both with `cargo build --release --workspace`")]
    VersionMismatch { agent: String, host: String },
    #[error("the guest went silent: nothing for {timeout:?}")]
    Silent { timeout: Duration, tail: String },
    #[error("the guest closed its channel (exited or crashed){detail}")]
    Closed { detail: String, tail: String },
    #[error("the guest sent an invalid message: {error}")]
    Protocol { error: ProtocolError, tail: String },
    #[error("channel error: {error}")]
    Io { error: String, tail: String },
    #[error("stopped by the user")]
    Interrupted,
}

impl GuestError {
    /// A channel error without a console tail (host-side set-up of a guest).
    pub fn io(error: impl Into<String>) -> GuestError {
        GuestError::Io {
            error: error.into(),
            tail: String::new(),
        }
    }

    /// The guest's console tail when the error happened, if it printed anything.
    pub fn console_tail(&self) -> Option<&str> {
        match self {
            GuestError::NoHello { tail, .. }
            | GuestError::Silent { tail, .. }
            | GuestError::Closed { tail, .. }
            | GuestError::Protocol { tail, .. }
            | GuestError::Io { tail, .. } => Some(tail.as_str()).filter(|t| !t.trim().is_empty()),
            _ => None,
        }
    }

    /// This error as the failure of a guest that had `started` (said hello) or not: one that
    /// never said hello did not start (or its agent was refused); one lost during a job did not
    /// return (DNR), unless it sent garbage (bad output).
    pub fn failure(&self, started: bool) -> Failure {
        let kind = match self {
            GuestError::VersionMismatch { .. } => FailureKind::Refused,
            _ if !started => FailureKind::DidNotStart,
            GuestError::Protocol { .. } => FailureKind::BadOutput,
            _ => FailureKind::DidNotReturn,
        };
        Failure::new(kind, self.to_string()).with_tail(self.console_tail().unwrap_or_default())
    }
}

/// One repetition as the host saw it.
#[derive(Debug, Clone)]
pub struct HostSample {
    pub msg: SampleMsg,
    /// Time from the job being sent (or the previous sample) to this sample arriving.
    pub host_elapsed: Duration,
    /// Host CPU time the guest's processes used over the same span.
    pub host_cpu: Option<Duration>,
}

/// How a job ended, when the guest itself is fine.
#[derive(Debug, Clone, PartialEq)]
pub enum JobEnd {
    /// All samples arrived; the iteration count the agent used.
    Done { iterations: Option<u64> },
    /// The agent reported an error for this job.
    Error { kind: ErrorKind, message: String },
}

/// A running guest.
pub struct Guest {
    pub backend: String,
    pub label: String,
    pub config: BackendConfig,
    pub hello: Hello,
    /// Launch to hello, timed by the host.
    pub boot: Duration,
    processes: Vec<Child>,
    /// The processes were killed and reaped: never signal their pids again.
    killed: bool,
    writer: Box<dyn Write + Send>,
    events: Receiver<Event>,
    console_tail: Arc<Mutex<VecDeque<String>>>,
    console_log: Option<PathBuf>,
    meter: Option<CpuMeter>,
    next_job: u64,
    /// The guest's disk and network endpoint; its namespaces are deleted when it is dropped.
    attached: crate::devices::Attached,
}

impl Guest {
    /// Launches a guest of `backend` and waits for its agent's hello.
    pub fn start(
        backend: &dyn Backend,
        spec: &GuestSpec,
        hello_timeout: Duration,
    ) -> Result<Guest, GuestError> {
        let t0 = Instant::now();
        let cgroup = CpuMeter::cgroup(&spec.label);
        let launched = launching_in(cgroup.as_ref(), || backend.launch(spec))?;
        let pids: Vec<u32> = launched.processes.iter().map(|p| p.id()).collect();
        // Each is the leader of a process group of its own: if hvbench is killed, its
        // watchdog (or the next start) kills these groups where no cgroup holds them.
        for &p in &pids {
            crate::watchdog::register_group(p);
        }
        let meter = match cgroup {
            Some(m) => Some(m),
            None => pids.first().map(|&p| CpuMeter::for_process(p, &spec.label)),
        };
        let mut meter = meter;
        if let Some(m) = meter.as_mut() {
            // Joined already at spawn; adding again is harmless and covers a failed join.
            for &p in &pids {
                if matches!(m, CpuMeter::Cgroup { .. }) || Some(&p) != pids.first() {
                    m.add(p);
                }
            }
        }
        let console_tail = Arc::new(Mutex::new(VecDeque::new()));
        let (tx, rx) = mpsc::channel();
        let tail = Arc::clone(&console_tail);
        let reader = launched.reader;
        std::thread::Builder::new()
            .name(format!("hvb-read-{}", spec.label))
            .spawn(move || read_events(reader, tx, tail))
            .map_err(|e| GuestError::io(e.to_string()))?;
        let mut guest = Guest {
            backend: backend.name().to_string(),
            label: spec.label.clone(),
            config: launched.config,
            hello: placeholder_hello(),
            boot: Duration::ZERO,
            processes: launched.processes,
            killed: false,
            writer: launched.writer,
            events: rx,
            console_tail,
            console_log: launched.console_log,
            meter,
            next_job: 1,
            attached: launched.attached,
        };
        match guest.next_event(t0 + hello_timeout) {
            Ok(Event::Message(AgentMessage::Hello(h))) => {
                guest.boot = t0.elapsed();
                if h.agent_version != env!("CARGO_PKG_VERSION") {
                    return Err(GuestError::VersionMismatch {
                        agent: h.agent_version,
                        host: env!("CARGO_PKG_VERSION").into(),
                    });
                }
                guest.hello = h;
                Ok(guest)
            }
            Ok(Event::Message(other)) => Err(GuestError::Protocol {
                error: ProtocolError::Malformed(format!("expected hello, got {other:?}")),
                tail: guest.console_tail(),
            }),
            Ok(ev) => Err(guest.event_error(ev)),
            Err(GuestError::Silent { .. }) => Err(GuestError::NoHello {
                timeout: hello_timeout,
                tail: guest.console_tail(),
            }),
            Err(e) => Err(e),
        }
    }

    /// The devices attached to the guest, as its agent sees them.
    pub fn attached(&self) -> &crate::devices::Attached {
        &self.attached
    }

    /// Host CPU time consumed by this guest's processes so far.
    pub fn cpu_time(&self) -> Option<Duration> {
        self.meter.as_ref().and_then(|m| m.read())
    }

    /// How host CPU is metered for this guest.
    pub fn cpu_method(&self) -> &'static str {
        self.meter.as_ref().map_or("none", |m| m.method())
    }

    /// PIDs of the host processes that make the guest.
    pub fn host_pids(&self) -> Vec<u32> {
        self.processes.iter().map(|c| c.id()).collect()
    }

    /// Pins the guest to the CPUs of placement `slot` under `policy`: as many CPUs as it has
    /// vCPUs (`vcpus` asked for, fewer when the guest runs fewer: UML is uniprocessor).
    pub fn pin_in_slot(
        &mut self,
        policy: &crate::placement::PinPolicy,
        slot: usize,
        vcpus: u32,
    ) -> Result<(), crate::placement::PinError> {
        if self.backend == "ssh" {
            // The guest runs on another machine: its CPUs are not this host's to pin.
            self.config.settings.insert(
                "pinning".into(),
                "not applied: the guest runs on another machine".into(),
            );
            return Ok(());
        }
        let topo = crate::placement::Topology::detect();
        let n = if self.is_baseline_agent() {
            vcpus
        } else {
            vcpus.min(self.hello.cpus.max(1))
        };
        self.pin(&policy.cpus_for(&topo, slot, n))
    }

    /// Whether this is the native agent, which sees every host CPU whatever it was given.
    fn is_baseline_agent(&self) -> bool {
        self.backend == "native"
    }

    /// Pins every thread of the guest's host processes to `cpus` (vCPU thread `n` to
    /// `cpus[n]`: see [`crate::placement`]) and records where each went in the guest's
    /// `settings.pinning`.
    pub fn pin(&mut self, cpus: &[u32]) -> Result<(), crate::placement::PinError> {
        let pinned = crate::placement::pin_tree(&self.host_pids(), cpus)?;
        self.config.settings.insert(
            "pinning".into(),
            format!(
                "CPUs {}: {}",
                crate::placement::format_cpu_list(cpus),
                crate::placement::summarize(&pinned)
            ),
        );
        Ok(())
    }

    /// The last lines the guest printed outside the protocol, and of its console log.
    pub fn console_tail(&self) -> String {
        let mut lines: Vec<String> = self
            .console_tail
            .lock()
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default();
        if let Some(log) = &self.console_log {
            if let Ok(text) = std::fs::read(log) {
                let text = String::from_utf8_lossy(&text);
                let all: Vec<&str> = text.lines().collect();
                let start = all.len().saturating_sub(CONSOLE_TAIL_LINES);
                lines.extend(all[start..].iter().map(|s| s.to_string()));
            }
        }
        let start = lines.len().saturating_sub(CONSOLE_TAIL_LINES);
        lines[start..].join("\n")
    }

    /// Sends a job and collects its samples. `timeout` bounds the silence between two messages.
    pub fn run_job(
        &mut self,
        mut job: Job,
        timeout: Duration,
        mut on_sample: impl FnMut(HostSample),
    ) -> Result<JobEnd, GuestError> {
        job.id = self.next_job;
        self.next_job += 1;
        let line = encode(&HostMessage::Job(job.clone()));
        let mut last = Instant::now();
        let mut last_cpu = self.cpu_time();
        self.writer
            .write_all(line.as_bytes())
            .and_then(|_| self.writer.flush())
            .map_err(|e| GuestError::Closed {
                detail: format!(" ({e})"),
                tail: self.console_tail(),
            })?;
        loop {
            let ev = self.next_event(Instant::now() + timeout)?;
            match ev {
                Event::Message(AgentMessage::Sample(s)) if s.job == job.id => {
                    let now = Instant::now();
                    let cpu = self.cpu_time();
                    let host_cpu = match (last_cpu, cpu) {
                        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
                        _ => None,
                    };
                    on_sample(HostSample {
                        msg: s,
                        host_elapsed: now - last,
                        host_cpu,
                    });
                    last = now;
                    last_cpu = cpu;
                }
                Event::Message(AgentMessage::Done(d)) if d.job == job.id => {
                    return Ok(JobEnd::Done {
                        iterations: d.iterations,
                    });
                }
                Event::Message(AgentMessage::Error(e))
                    if e.job.is_none() || e.job == Some(job.id) =>
                {
                    return Ok(JobEnd::Error {
                        kind: e.kind,
                        message: e.message,
                    });
                }
                Event::Message(other) => {
                    return Err(GuestError::Protocol {
                        error: ProtocolError::Malformed(format!(
                            "unexpected message for job {}: {other:?}",
                            job.id
                        )),
                        tail: self.console_tail(),
                    })
                }
                ev => return Err(self.event_error(ev)),
            }
        }
    }

    /// Asks the agent to finish, waits up to `grace` for the guest to exit, then kills it.
    pub fn shutdown(mut self, grace: Duration) {
        let _ = self
            .writer
            .write_all(encode(&HostMessage::Shutdown).as_bytes());
        let _ = self.writer.flush();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            // Not reaped here: see kill_and_reap.
            if self.processes.iter().all(has_exited) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Drop kills whatever is left.
    }

    /// Waits for the next event until `deadline`, waking up regularly to notice a stop request.
    fn next_event(&mut self, deadline: Instant) -> Result<Event, GuestError> {
        loop {
            if crate::stop_requested() {
                return Err(GuestError::Interrupted);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(GuestError::Silent {
                    timeout: Duration::ZERO,
                    tail: self.console_tail(),
                });
            }
            let slice = (deadline - now).min(Duration::from_millis(250));
            match self.events.recv_timeout(slice) {
                Ok(ev) => return Ok(ev),
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return Ok(Event::Eof),
            }
        }
    }

    fn event_error(&self, ev: Event) -> GuestError {
        match ev {
            Event::Bad(error) => GuestError::Protocol {
                error,
                tail: self.console_tail(),
            },
            Event::Eof => GuestError::Closed {
                detail: String::new(),
                tail: self.console_tail(),
            },
            Event::Io(error) => GuestError::Io {
                error,
                tail: self.console_tail(),
            },
            Event::Message(m) => GuestError::Protocol {
                error: ProtocolError::Malformed(format!("unexpected {m:?}")),
                tail: self.console_tail(),
            },
        }
    }

    /// Kills the guest now (used by tests and by failure handling).
    pub fn kill(&mut self) {
        if std::mem::replace(&mut self.killed, true) {
            // Reaped already: their pids may name other processes now.
            return;
        }
        for c in &mut self.processes {
            kill_and_reap(c);
        }
    }
}

/// Why a probe guest did not boot.
#[derive(Debug)]
pub enum ProbeBootError {
    /// No work directory for the probe guest.
    NoWorkdir(std::io::Error),
    /// The guest did not say hello; its work directory (console logs) is there to read until
    /// this is dropped.
    Failed {
        error: GuestError,
        workdir: crate::workdir::WorkDir,
    },
}

/// Probes `backend` by booting one small guest (1 vCPU, `memory_mib`) in a work directory of
/// its own and waiting up to `timeout` for its hello: the only proof that a technique runs here
/// (a /dev/kvm that opens may still not run a guest). The guest is stopped on every path.
/// Returns the boot time.
pub fn probe_boot(
    backend: &dyn Backend,
    agent: &AgentBinary,
    memory_mib: u32,
    timeout: Duration,
) -> Result<Duration, ProbeBootError> {
    let label = format!("{}-probe", backend.name());
    let workdir = crate::workdir::WorkDir::new(&label).map_err(ProbeBootError::NoWorkdir)?;
    let spec = GuestSpec {
        vcpus: 1,
        memory_mib,
        kernel: None,
        agent: agent.clone(),
        workdir: workdir.path().to_path_buf(),
        label,
        devices: Default::default(),
    };
    match Guest::start(backend, &spec, timeout) {
        Ok(guest) => {
            let boot = guest.boot;
            guest.shutdown(Duration::from_secs(2));
            Ok(boot)
        }
        Err(error) => Err(ProbeBootError::Failed { error, workdir }),
    }
}

/// Corrects a `Silent` error's timeout, which `next_event` cannot know.
pub fn with_timeout(e: GuestError, timeout: Duration) -> GuestError {
    match e {
        GuestError::Silent { tail, .. } => GuestError::Silent { timeout, tail },
        other => other,
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        self.kill();
        // The meter (a cgroup) can only be removed once its processes are gone.
        self.meter.take();
    }
}

fn placeholder_hello() -> Hello {
    Hello {
        agent_version: String::new(),
        build_id: String::new(),
        kernel: String::new(),
        cpus: 1,
        mem_total_kib: 0,
        clocksource: None,
        uptime_s: None,
        is_init: false,
        setup_notes: Vec::new(),
    }
}

fn read_events(
    reader: Box<dyn std::io::Read + Send>,
    tx: mpsc::Sender<Event>,
    tail: Arc<Mutex<VecDeque<String>>>,
) {
    let mut lines = LineReader::new(BufReader::new(reader));
    loop {
        let ev = match lines.read_line() {
            Ok(ReadLine::Line(l)) => match decode_agent_line(&l) {
                Ok(Line::Message(m)) => Event::Message(m),
                Ok(Line::Other(text)) => {
                    if let Ok(mut t) = tail.lock() {
                        if t.len() >= CONSOLE_TAIL_LINES {
                            t.pop_front();
                        }
                        t.push_back(text);
                    }
                    continue;
                }
                Err(e) => Event::Bad(e),
            },
            Ok(ReadLine::TooLong(n)) => Event::Bad(ProtocolError::LineTooLong(n)),
            Ok(ReadLine::Eof) => Event::Eof,
            Err(e) => Event::Io(e.to_string()),
        };
        let last = matches!(ev, Event::Eof | Event::Io(_));
        if tx.send(ev).is_err() || last {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guest_lost_before_its_hello_did_not_start_and_after_it_did_not_return() {
        let e = GuestError::Closed {
            detail: String::new(),
            tail: "Kernel panic".into(),
        };
        let before = e.failure(false);
        assert_eq!(before.kind, FailureKind::DidNotStart);
        assert_eq!(before.console_tail.as_deref(), Some("Kernel panic"));
        assert!(!before.reason.contains("Kernel panic"), "the tail is apart");
        assert_eq!(e.failure(true).kind, FailureKind::DidNotReturn);
        let garbage = GuestError::Protocol {
            error: ProtocolError::Malformed("x".into()),
            tail: " \n".into(),
        };
        let f = garbage.failure(true);
        assert_eq!(f.kind, FailureKind::BadOutput);
        assert_eq!(f.console_tail, None, "a blank tail is no tail");
        let refused = GuestError::VersionMismatch {
            agent: "0.0.1".into(),
            host: "0.1.0".into(),
        };
        assert_eq!(refused.failure(false).kind, FailureKind::Refused);
    }
}
