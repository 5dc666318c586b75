//! The result document: one self-describing JSON file per run.
//!
//! Everything a report shows is rendered from this document alone, so any run can be
//! re-rendered later. Samples are appended to a journal (JSON lines) as they arrive, so a crash or
//! Ctrl-C loses nothing already measured; the final document is written atomically (a temporary
//! file renamed over the target). The schema is documented in `docs/results.md`.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use hvbench_stats::Summary;
use serde::{Deserialize, Serialize};

use crate::host::HostInfo;

mod ab;
mod backend;
mod explain;
mod outcome;
pub mod scenario;
mod time;
pub use ab::*;
pub use backend::{Availability, BackendConfig};
pub use explain::*;
pub use outcome::{Failure, FailureKind, Outcome};
pub use scenario::*;
pub use time::{rfc3339_utc, run_id_utc};

/// Bumped whenever a field changes meaning or disappears; readers refuse newer versions.
///
/// Version 2: outcomes are typed ([`Outcome`], [`Failure`]): a failed record has a `kind`,
/// and its `reason` and `console_tail` apart; a guest's or a boot's `failure` is an object.
/// Version 1 documents are still read ([`RunDocument::read`] upgrades them).
pub const SCHEMA_VERSION: u32 = 2;

/// One run of a scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunDocument {
    pub schema_version: u32,
    pub hvbench_version: String,
    pub git_revision: String,
    pub run_id: String,
    /// `efficiency`, `isolation`, `scalability`, `lifecycle`.
    pub scenario: String,
    /// The hvbench command line as typed.
    pub command_line: Vec<String>,
    pub started_at: String,
    pub finished_at: String,
    /// True when the run was stopped (Ctrl-C, SIGTERM) before the end: what is here was measured.
    pub interrupted: bool,
    pub host: HostInfo,
    pub agent: AgentRecord,
    pub settings: Settings,
    pub backends: Vec<BackendRecord>,
    pub runs: Vec<RunRecord>,
    pub efficiency: Vec<EfficiencyRecord>,
    /// Things the reader should know (noisy machine, clock disagreements, extra repetitions).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// The tables of the lifecycle, scalability and isolation scenarios (see
    /// [`ScenarioData`]); absent for the efficiency scenario.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenario_data: Option<ScenarioData>,
    /// Predicted against measured efficiency of the counted workloads (`hvbench run
    /// --explain`, `hvbench explain`); empty when nothing was counted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub explain: Vec<ExplainRecord>,
    /// The host's reference probe at the start, middle and end of the run (`crate::drift`);
    /// absent in older documents and in the other scenarios.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_drift: Option<crate::drift::HostDrift>,
    /// `hvbench ab`: two configurations interleaved in this run, and the change per workload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ab: Option<AbRecord>,
}

/// The agent binary that ran everywhere in this run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentRecord {
    pub path: String,
    pub sha256: String,
    pub size_bytes: u64,
    pub version: String,
}

/// How the run was asked to measure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub suite: Option<String>,
    pub workloads: Vec<String>,
    pub reps: u32,
    pub warmup: u32,
    /// Target duration of one repetition, seconds.
    pub target_s: f64,
    pub copies: u32,
    /// Extra repetitions are added while CV exceeds this, up to `max_reps`.
    pub cv_threshold: f64,
    pub max_reps: u32,
    pub vcpus: u32,
    pub memory_mib: u32,
    /// Confidence level of every interval in the document.
    pub confidence: f64,
    pub bootstrap_resamples: usize,
    pub bootstrap_seed: u64,
    /// The disk and network the `io` and `net` workloads (or the isolation scenario's net
    /// stressors) used (`disk`, `disk_model`, `iodepth`, `nic`, `net`); empty when none was
    /// attached.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub devices: BTreeMap<String, String>,
    /// Where guests and the native agent were pinned (`--pin`, `--placement`); `None`:
    /// unpinned, the host's scheduler placed them. Each guest's `config.settings.pinning` says
    /// which thread went where.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinning: Option<crate::placement::PinPolicy>,
    /// Workload parameters given with `--param KEY=VALUE` (pgbench's `scale`, `clients`, a
    /// compile's `jobs`, ...), sent with every job; each workload documents its own.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, serde_json::Value>,
}

/// What became of one backend in this run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendRecord {
    pub name: String,
    pub technique: String,
    pub availability: Availability,
    /// Launches of this backend's guest during the run, with their boot times and configs.
    #[serde(default)]
    pub guests: Vec<GuestRecord>,
}

/// One guest instance: how it was started and what it reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuestRecord {
    pub label: String,
    pub config: BackendConfig,
    /// Launch to the agent's hello, timed by the host, seconds. `None` when it never said hello.
    pub boot_s: Option<f64>,
    /// The guest kernel's own uptime at hello, seconds.
    pub guest_uptime_s: Option<f64>,
    pub kernel: Option<String>,
    pub cpus: Option<u32>,
    pub mem_total_kib: Option<u64>,
    pub clocksource: Option<String>,
    pub cpu_accounting: String,
    #[serde(default)]
    pub setup_notes: Vec<String>,
    /// Why the guest did not start or was lost, with its console tail.
    pub failure: Option<Failure>,
}

/// All the measurements of one workload on one backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub backend: String,
    pub workload: String,
    pub unit: String,
    pub higher_is_better: bool,
    /// `ok` (`samples` holds every repetition), `skipped` (cannot run there: no number, never
    /// a zero) or `failed` with its kind, reason and console tail.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// Iterations per repetition (per copy), from the agent's calibration.
    pub iterations: Option<u64>,
    pub copies: u32,
    /// Raw metric values, one per measured repetition, in the order measured.
    pub samples: Vec<f64>,
    /// What the host saw of each repetition, parallel to `samples`.
    pub sample_details: Vec<SampleDetail>,
    /// `None` when fewer than two samples exist.
    pub summary: Option<Summary>,
    /// Repetitions added beyond `reps` while an efficiency was still open (`scenario::reps`).
    pub extra_reps: u32,
    /// Host CPU per unit of work, when the workload counts operations (`µs/op`, `µs/MB`).
    pub host_cpu_per_op: Option<HostCpuPerOp>,
    /// Medians of the secondary metrics (`dmips`, `p99_ns`, ...).
    #[serde(default)]
    pub extras: BTreeMap<String, f64>,
    /// Text facts the agent reported (`engine=io_uring`, a fallback's reason); when
    /// repetitions disagree, their distinct values joined with ` | `.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Event counts of extra, unscored repetitions (`--explain`, native only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counted: Option<CountedRecord>,
    /// `--explain`, applications: samples of the micro workloads that price events, one
    /// repetition of each measured on this backend right after each of this workload's
    /// repetitions (in its metric, as in their own records), by workload name. `explain`
    /// predicts a second time with them (`predicted_with_round_prices`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub round_prices: BTreeMap<String, Vec<f64>>,
}

/// The host's view of one repetition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleDetail {
    /// The measured interval by the guest's clock, seconds.
    pub guest_elapsed_s: f64,
    /// The whole repetition by the guest's clock, set-up included, seconds.
    pub guest_wall_s: f64,
    /// The same repetition timed by the host, from sending the job to the sample, seconds.
    pub host_elapsed_s: f64,
    /// Host CPU seconds of the guest's processes during the repetition.
    pub host_cpu_s: Option<f64>,
    /// Set when the guest's and the host's timings disagree by more than 5%.
    pub clock_flag: bool,
    /// What else the host was doing during the repetition (steal, other processes' CPU);
    /// absent in older documents and where `/proc/stat` could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_load: Option<crate::hostload::HostLoad>,
    /// How often the agent was preempted during the repetition (involuntary context switches
    /// of it and its children, by the guest's kernel).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_nivcsw: Option<f64>,
    #[serde(default)]
    pub extras: BTreeMap<String, f64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// Host CPU cost of a workload's operations, median over repetitions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostCpuPerOp {
    pub value: f64,
    /// `µs/op` or `µs/MB`.
    pub unit: String,
    /// Host CPU seconds per wall second during the repetitions (1.0 = one core busy).
    pub cores_busy: f64,
}

/// How a guest compares with the host on one workload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EfficiencyRecord {
    pub backend: String,
    pub workload: String,
    /// Guest score / host score (for lower-is-better metrics host / guest): 1.0 = no overhead.
    pub ratio: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    pub verdict: Verdict,
}

/// What an efficiency interval allows one to say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The whole interval is below 100%.
    Overhead,
    /// The interval contains 100%: shown as "no measurable overhead", never as a gain.
    NoMeasurableOverhead,
    /// The whole interval is above 100% (a cache effect, a placement): reported, to be explained.
    Faster,
}

impl Verdict {
    pub fn from_interval(ci_low: f64, ci_high: f64) -> Verdict {
        if ci_high < 1.0 {
            Verdict::Overhead
        } else if ci_low > 1.0 {
            Verdict::Faster
        } else {
            Verdict::NoMeasurableOverhead
        }
    }
}

/// Why a document could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not an hvbench result document: {reason}")]
    NotADocument { path: PathBuf, reason: String },
    #[error("{path} has schema version {found}, newer than this hvbench reads ({SCHEMA_VERSION}): upgrade hvbench")]
    Newer { path: PathBuf, found: u32 },
}

impl RunDocument {
    /// Reads a document, refusing other files and newer schemas with a clear error.
    pub fn read(path: &Path) -> Result<RunDocument, ReadError> {
        let text = std::fs::read_to_string(path).map_err(|e| ReadError::Io {
            path: path.into(),
            source: e,
        })?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| ReadError::NotADocument {
                path: path.into(),
                reason: format!("not JSON ({e}); a truncated file?"),
            })?;
        let version = value
            .get("schema_version")
            .and_then(|v| v.as_u64())
            .ok_or_else(|| ReadError::NotADocument {
                path: path.into(),
                reason: "no schema_version field".into(),
            })?;
        if version > SCHEMA_VERSION as u64 {
            return Err(ReadError::Newer {
                path: path.into(),
                found: version as u32,
            });
        }
        Self::from_value(value, version).map_err(|e| ReadError::NotADocument {
            path: path.into(),
            reason: e.to_string(),
        })
    }

    /// A document from its JSON of schema `version` (this one or an older one).
    fn from_value(
        mut value: serde_json::Value,
        version: u64,
    ) -> Result<RunDocument, serde_json::Error> {
        if version < 2 {
            outcome::upgrade_v1(&mut value);
        }
        let mut doc: RunDocument = serde_json::from_value(value)?;
        doc.schema_version = SCHEMA_VERSION;
        Ok(doc)
    }

    /// Reads a document from JSON text of any schema version this hvbench knows.
    pub fn from_json(text: &str) -> Result<RunDocument, serde_json::Error> {
        let value: serde_json::Value = serde_json::from_str(text)?;
        let version = value
            .get("schema_version")
            .and_then(|v| v.as_u64())
            .unwrap_or(u64::from(SCHEMA_VERSION));
        Self::from_value(value, version)
    }

    /// Writes the document atomically: a temporary file in the same directory, synced, renamed.
    pub fn write_atomic(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("json.tmp");
        {
            let mut f = File::create(&tmp)?;
            serde_json::to_writer_pretty(&mut f, self)?;
            f.write_all(b"\n")?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)
    }

    /// The run of a workload on a backend.
    pub fn run(&self, backend: &str, workload: &str) -> Option<&RunRecord> {
        self.runs
            .iter()
            .find(|r| r.backend == backend && r.workload == workload)
    }
}

/// Appends each measurement to a JSON-lines file as it arrives.
pub struct Journal {
    file: File,
    pub path: PathBuf,
}

impl Journal {
    pub fn create(path: &Path) -> std::io::Result<Journal> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Journal {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Writes one entry and flushes it to the kernel, so a crash of hvbench loses nothing.
    pub fn append(&mut self, entry: &serde_json::Value) {
        if let Ok(mut line) = serde_json::to_string(entry) {
            line.push('\n');
            let _ = self.file.write_all(line.as_bytes());
        }
    }
}
