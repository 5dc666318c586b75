//! The messages themselves and the checks that reject values no honest peer sends.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ProtocolError;

/// Messages from the agent to the host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentMessage {
    Hello(Hello),
    Sample(SampleMsg),
    Done(Done),
    Error(ErrorMsg),
}

/// Messages from the host to the agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum HostMessage {
    Job(Job),
    /// Leave the job loop; as PID 1 of a guest kernel, power the guest off.
    Shutdown,
}

/// The agent introduces itself and the system it sees.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// `CARGO_PKG_VERSION` of the agent; the host refuses an agent of another version.
    pub agent_version: String,
    /// A digest of the agent build (see the agent's `build_id`), so that two builds of the
    /// same version are told apart.
    #[serde(default)]
    pub build_id: String,
    /// `uname -r` and `uname -v` as seen inside.
    pub kernel: String,
    /// CPUs online inside.
    pub cpus: u32,
    /// Memory the kernel inside reports (MemTotal), in KiB.
    #[serde(default)]
    pub mem_total_kib: u64,
    /// `/sys/devices/system/clocksource/clocksource0/current_clocksource`, when readable.
    #[serde(default)]
    pub clocksource: Option<String>,
    /// Seconds since the kernel inside booted (`/proc/uptime`), at the moment of hello.
    #[serde(default)]
    pub uptime_s: Option<f64>,
    /// True when the agent is the init of a kernel of its own (not PID 1 of a PID namespace).
    #[serde(default)]
    pub is_init: bool,
    /// What the agent had to do or failed to do while setting the system up (mounts, modules).
    #[serde(default)]
    pub setup_notes: Vec<String>,
}

/// One unit of work: a workload, its parameters and how often to run it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Chosen by the host; echoed in every answer to this job.
    pub id: u64,
    /// Registry name of the workload (`sys.getppid`).
    pub workload: String,
    /// Workload parameters; each workload documents its own.
    #[serde(default)]
    pub params: BTreeMap<String, serde_json::Value>,
    /// Fixed iteration count; `None` asks the agent to calibrate to `target_s`.
    #[serde(default)]
    pub iterations: Option<u64>,
    /// Target duration of one repetition, in seconds, used when calibrating.
    pub target_s: f64,
    /// Unreported runs before the measured ones.
    #[serde(default)]
    pub warmup: u32,
    /// Measured runs.
    pub reps: u32,
    /// Concurrent instances; the sample is their aggregate rate.
    #[serde(default = "one")]
    pub copies: u32,
}

fn one() -> u32 {
    1
}

/// The result of one repetition (or warm-up) of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleMsg {
    pub job: u64,
    /// Repetition index; warm-ups count separately from 0.
    pub rep: u32,
    pub warmup: bool,
    /// The metric, in the workload's unit.
    pub value: f64,
    /// Iterations each copy ran.
    pub iterations: u64,
    /// Units of work done in the measured interval, all copies together (loops, bytes,
    /// operations): what host CPU per operation is computed from.
    pub work: f64,
    /// The measured interval by the agent's clock (CLOCK_MONOTONIC), in nanoseconds.
    pub elapsed_ns: u64,
    /// The whole repetition by the agent's clock, set-up included, in nanoseconds: what the
    /// host's own timing of the same repetition is checked against.
    pub wall_ns: u64,
    /// Secondary metrics of the workload (`dmips`, `p99_ns`, ...).
    #[serde(default)]
    pub extras: BTreeMap<String, f64>,
    /// Facts of the repetition that are text, not numbers: which I/O engine ran and why
    /// (`engine=io_uring`, `fallback=...`), the device the workload used.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// The job finished; every sample it owed has been sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Done {
    pub job: u64,
    /// The iteration count the agent used (its calibration when the job left it open).
    #[serde(default)]
    pub iterations: Option<u64>,
}

/// What went wrong, and whether it is the workload's nature or a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The workload cannot run here (a missing CPU, an unsupported system call): skipped.
    Unsupported,
    /// The workload ran and failed (a check did not hold, a system call failed).
    Failed,
    /// The agent could not understand the host.
    Protocol,
}

/// A job failed or could not be understood.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorMsg {
    #[serde(default)]
    pub job: Option<u64>,
    pub kind: ErrorKind,
    pub message: String,
}

fn finite_nonneg(field: &'static str, v: f64) -> Result<(), ProtocolError> {
    if !v.is_finite() || v < 0.0 {
        return Err(ProtocolError::Invalid {
            field,
            reason: format!("{v} is not a finite, non-negative number"),
        });
    }
    Ok(())
}

/// The bound on string fields: a console line cannot be larger anyway, but a decoded message
/// should not smuggle megabytes into a result document either.
const MAX_TEXT: usize = 16 * 1024;

/// Labels are a handful of short facts per sample, not a log.
const MAX_LABELS: usize = 16;
const MAX_LABEL_TEXT: usize = 1024;

fn bounded_text(field: &'static str, s: &str) -> Result<(), ProtocolError> {
    if s.len() > MAX_TEXT {
        return Err(ProtocolError::Invalid {
            field,
            reason: format!("{} bytes, more than {MAX_TEXT}", s.len()),
        });
    }
    Ok(())
}

pub(crate) fn validate_agent(m: &AgentMessage) -> Result<(), ProtocolError> {
    match m {
        AgentMessage::Hello(h) => {
            bounded_text("agent_version", &h.agent_version)?;
            bounded_text("kernel", &h.kernel)?;
            if h.cpus == 0 {
                return Err(ProtocolError::Invalid {
                    field: "cpus",
                    reason: "0 CPUs".into(),
                });
            }
            if let Some(u) = h.uptime_s {
                finite_nonneg("uptime_s", u)?;
            }
            Ok(())
        }
        AgentMessage::Sample(s) => {
            finite_nonneg("value", s.value)?;
            finite_nonneg("work", s.work)?;
            if s.iterations == 0 {
                return Err(ProtocolError::Invalid {
                    field: "iterations",
                    reason: "0 iterations".into(),
                });
            }
            if s.elapsed_ns == 0 {
                return Err(ProtocolError::Invalid {
                    field: "elapsed_ns",
                    reason: "an empty interval".into(),
                });
            }
            if s.extras.len() > 64 {
                return Err(ProtocolError::Invalid {
                    field: "extras",
                    reason: format!("{} entries", s.extras.len()),
                });
            }
            for (k, v) in &s.extras {
                bounded_text("extras", k)?;
                if !v.is_finite() {
                    return Err(ProtocolError::Invalid {
                        field: "extras",
                        reason: format!("{k} = {v}"),
                    });
                }
            }
            if s.labels.len() > MAX_LABELS {
                return Err(ProtocolError::Invalid {
                    field: "labels",
                    reason: format!("{} entries, more than {MAX_LABELS}", s.labels.len()),
                });
            }
            for (k, v) in &s.labels {
                bounded_text("labels", k)?;
                if v.len() > MAX_LABEL_TEXT {
                    return Err(ProtocolError::Invalid {
                        field: "labels",
                        reason: format!("{k}: {} bytes, more than {MAX_LABEL_TEXT}", v.len()),
                    });
                }
            }
            Ok(())
        }
        AgentMessage::Done(_) => Ok(()),
        AgentMessage::Error(e) => bounded_text("message", &e.message),
    }
}

pub(crate) fn validate_host(m: &HostMessage) -> Result<(), ProtocolError> {
    match m {
        HostMessage::Job(j) => {
            bounded_text("workload", &j.workload)?;
            if !(j.target_s.is_finite() && j.target_s > 0.0 && j.target_s <= 3600.0) {
                return Err(ProtocolError::Invalid {
                    field: "target_s",
                    reason: format!("{} is not in (0, 3600]", j.target_s),
                });
            }
            if j.copies == 0 || j.copies > 1024 {
                return Err(ProtocolError::Invalid {
                    field: "copies",
                    reason: format!("{} is not in 1..=1024", j.copies),
                });
            }
            if j.iterations == Some(0) {
                return Err(ProtocolError::Invalid {
                    field: "iterations",
                    reason: "0 iterations".into(),
                });
            }
            Ok(())
        }
        HostMessage::Shutdown => Ok(()),
    }
}
