//! The job loop: hello, then jobs until shutdown or end of input.

use std::io::{self, BufRead, Write};
use std::time::Duration;

use hvbench_protocol::{
    decode_host_line, encode, AgentMessage, Done, ErrorKind, ErrorMsg, Hello, HostMessage, Job,
    Line, LineReader, ProtocolError, ReadLine, SampleMsg,
};
use hvbench_workloads::{calibrate, find, registry, run_rep, WorkloadError};

fn send(out: &mut impl Write, msg: &AgentMessage) -> io::Result<()> {
    out.write_all(encode(msg).as_bytes())?;
    out.flush()
}

/// Serves jobs until `shutdown` or the end of the input.
pub fn serve(input: impl BufRead, out: &mut impl Write, hello: Hello) -> io::Result<()> {
    send(out, &AgentMessage::Hello(hello))?;
    let mut lines = LineReader::new(input);
    loop {
        let line = match lines.read_line()? {
            ReadLine::Eof => return Ok(()),
            ReadLine::TooLong(n) => {
                protocol_error(out, ProtocolError::LineTooLong(n))?;
                continue;
            }
            ReadLine::Line(l) => l,
        };
        match decode_host_line(&line) {
            Ok(Line::Message(HostMessage::Job(job))) => run_job(&job, out)?,
            Ok(Line::Message(HostMessage::Shutdown)) => return Ok(()),
            // A console may echo or inject other lines: not for us.
            Ok(Line::Other(_)) => {}
            Err(e) => protocol_error(out, e)?,
        }
    }
}

fn protocol_error(out: &mut impl Write, e: ProtocolError) -> io::Result<()> {
    send(
        out,
        &AgentMessage::Error(ErrorMsg {
            job: None,
            kind: ErrorKind::Protocol,
            message: e.to_string(),
        }),
    )
}

fn workload_error(out: &mut impl Write, job: u64, e: WorkloadError) -> io::Result<()> {
    let kind = match e {
        WorkloadError::Unsupported(_) => ErrorKind::Unsupported,
        WorkloadError::Failed(_) | WorkloadError::BadParam(_) => ErrorKind::Failed,
    };
    send(
        out,
        &AgentMessage::Error(ErrorMsg {
            job: Some(job),
            kind,
            message: e.to_string(),
        }),
    )
}

/// The sample extra that carries the agent's involuntary context switches of a repetition.
pub const AGENT_NIVCSW: &str = "agent_nivcsw";

/// Involuntary context switches of this process and its waited-for children so far.
fn involuntary_switches() -> Option<u64> {
    let get = |who| {
        // SAFETY: rusage is plain old data; all-zero is a valid value for getrusage to fill.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: a valid pointer to a rusage owned by this frame.
        (unsafe { libc::getrusage(who, &mut ru) } == 0).then_some(ru.ru_nivcsw as u64)
    };
    Some(get(libc::RUSAGE_SELF)? + get(libc::RUSAGE_CHILDREN)?)
}

fn run_job(job: &Job, out: &mut impl Write) -> io::Result<()> {
    let Some(w) = find(&job.workload) else {
        let known: Vec<&str> = registry().map(|w| w.name).collect();
        return send(
            out,
            &AgentMessage::Error(ErrorMsg {
                job: Some(job.id),
                kind: ErrorKind::Failed,
                message: format!(
                    "unknown workload {:?}; this agent has: {}",
                    job.workload,
                    known.join(", ")
                ),
            }),
        );
    };
    // A memory workload's buffer is kept between its consecutive jobs; any other job frees it.
    hvbench_workloads::kept::release_unless(w.name);
    let iterations = match job.iterations {
        Some(n) => n,
        None => match calibrate(w, &job.params, Duration::from_secs_f64(job.target_s)) {
            Ok(n) => n,
            Err(e) => return workload_error(out, job.id, e),
        },
    };
    let runs = (0..job.warmup)
        .map(|i| (i, true))
        .chain((0..job.reps).map(|i| (i, false)));
    let count = crate::counters::wanted(&job.params);
    for (rep, warmup) in runs {
        let counting = count.then(|| crate::counters::Counting::start(&job.params));
        let switched = involuntary_switches();
        let result = if warmup {
            let mut params = job.params.clone();
            params.insert(hvbench_workloads::WARMUP_PARAM.into(), true.into());
            run_rep(w, &params, iterations, job.copies)
        } else {
            run_rep(w, &job.params, iterations, job.copies)
        };
        let result = result.map(|mut r| {
            // Preemptions of the agent (and its waited-for children) during the repetition:
            // how often something else took its CPU. The host moves it out of the extras.
            if let (Some(a), Some(b)) = (switched, involuntary_switches()) {
                r.extras
                    .insert(AGENT_NIVCSW.into(), b.saturating_sub(a) as f64);
            }
            r
        });
        let result = match (result, counting) {
            (Ok(mut r), Some(c)) => {
                let (counts, not_counted) = c.finish();
                r.extras.extend(counts);
                if let Some(n) = not_counted {
                    r.labels.insert("ev_not_counted".into(), n);
                }
                Ok(r)
            }
            (result, _) => result,
        };
        match result {
            Ok(r) => send(
                out,
                &AgentMessage::Sample(SampleMsg {
                    job: job.id,
                    rep,
                    warmup,
                    value: r.value,
                    iterations,
                    work: r.work,
                    elapsed_ns: (r.elapsed.as_nanos() as u64).max(1),
                    wall_ns: (r.wall.as_nanos() as u64).max(1),
                    extras: r.extras,
                    labels: r.labels,
                }),
            )?,
            Err(e) => return workload_error(out, job.id, e),
        }
    }
    send(
        out,
        &AgentMessage::Done(Done {
            job: job.id,
            iterations: Some(iterations),
        }),
    )
}
