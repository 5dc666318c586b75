//! What every scenario shares, so that each scenario file says only what its experiment does:
//! the run's files ([`Output`]: the document, its journal of samples as they arrive, a private
//! work directory), the guests a scenario launches, loses and records ([`GuestTemplate`],
//! [`Roster`]), and how a stop request ends a run (the document says `interrupted`, and every
//! measurement that was cut short says so in its outcome: see
//! [`super::measure::MeasureEnd::outcome`]). Measuring a workload in a guest is
//! [`super::measure`].

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use serde_json::json;

use super::Progress;
use crate::agent::AgentBinary;
use crate::backends::{Availability, Backend, GuestSpec};
use crate::devices::Devices;
use crate::guest::{Guest, GuestError};
use crate::host::HostInfo;
use crate::results::*;
use crate::workdir::WorkDir;

/// Why a scenario could not run at all (problems of single guests are results, not errors).
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot write results to {path}: {source}")]
    Output {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create a work directory: {0}")]
    WorkDir(std::io::Error),
    #[error("the first backend must be the baseline (native)")]
    NoBaseline,
    #[error("{0}")]
    Disk(#[from] crate::devices::DiskError),
}

/// The finished run.
pub struct Finished {
    pub document: RunDocument,
    pub path: PathBuf,
    pub journal: PathBuf,
}

/// Called once per guest count with each started guest's label and host PIDs, before any job
/// runs (tests kill a guest here to prove it becomes DNR while the others finish).
pub type StartHook = Box<dyn Fn(&[(String, Vec<u32>)]) + Send + Sync>;

/// The files of one run: the document, its journal, and a private work directory for guests.
pub(crate) struct Output {
    pub run_id: String,
    pub path: PathBuf,
    pub journal_path: PathBuf,
    journal: Mutex<Journal>,
    pub workdir: WorkDir,
    pub host: HostInfo,
    pub started: SystemTime,
}

impl Output {
    pub(crate) fn create(out_dir: &Path, scenario: &str) -> Result<Output, ScenarioError> {
        let started = SystemTime::now();
        let run_id = format!("{}-{scenario}", run_id_utc(started));
        std::fs::create_dir_all(out_dir).map_err(|e| ScenarioError::Output {
            path: out_dir.to_path_buf(),
            source: e,
        })?;
        let path = out_dir.join(format!("{run_id}.json"));
        let journal_path = out_dir.join(format!("{run_id}.journal.jsonl"));
        let journal = Journal::create(&journal_path).map_err(|e| ScenarioError::Output {
            path: journal_path.clone(),
            source: e,
        })?;
        let workdir = WorkDir::new(scenario).map_err(ScenarioError::WorkDir)?;
        Ok(Output {
            run_id,
            path,
            journal_path,
            journal: Mutex::new(journal),
            workdir,
            host: HostInfo::detect(),
            started,
        })
    }

    /// Appends one entry to the journal (from any thread).
    pub(crate) fn log(&self, entry: serde_json::Value) {
        if let Ok(mut j) = self.journal.lock() {
            j.append(&entry);
        }
    }

    /// The document of this run, finished now, with everything every scenario records; the
    /// scenario adds its own part (`runs` and `efficiency`, or `scenario_data`), its warnings
    /// and whether it was interrupted.
    pub(crate) fn document(
        &self,
        scenario: &str,
        command_line: Vec<String>,
        agent: &AgentBinary,
        settings: Settings,
        backends: Vec<BackendRecord>,
    ) -> RunDocument {
        RunDocument {
            schema_version: SCHEMA_VERSION,
            hvbench_version: env!("CARGO_PKG_VERSION").into(),
            git_revision: crate::GIT_REVISION.into(),
            run_id: self.run_id.clone(),
            scenario: scenario.into(),
            command_line,
            started_at: rfc3339_utc(self.started),
            finished_at: rfc3339_utc(SystemTime::now()),
            interrupted: false,
            host: self.host.clone(),
            agent: AgentRecord {
                path: agent.path.display().to_string(),
                sha256: agent.sha256.clone(),
                size_bytes: agent.size,
                version: env!("CARGO_PKG_VERSION").into(),
            },
            settings,
            backends,
            runs: Vec::new(),
            efficiency: Vec::new(),
            warnings: Vec::new(),
            scenario_data: None,
            explain: Vec::new(),
            host_drift: None,
            ab: None,
        }
    }

    /// Closes the journal and writes `document` atomically; the work directory is removed
    /// (guests must be gone by now).
    pub(crate) fn write(self, document: RunDocument) -> Result<Finished, ScenarioError> {
        self.log(json!({"type": "end", "interrupted": document.interrupted}));
        document
            .write_atomic(&self.path)
            .map_err(|e| ScenarioError::Output {
                path: self.path.clone(),
                source: e,
            })?;
        Ok(Finished {
            document,
            path: self.path,
            journal: self.journal_path,
        })
    }

    /// Writes the document of a scenario whose results are its `data`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn finish(
        self,
        scenario: &str,
        command_line: Vec<String>,
        agent: &AgentBinary,
        settings: Settings,
        backends: Vec<BackendRecord>,
        warnings: Vec<String>,
        data: ScenarioData,
        interrupted: bool,
    ) -> Result<Finished, ScenarioError> {
        let mut document = self.document(scenario, command_line, agent, settings, backends);
        document.warnings = warnings;
        document.interrupted = interrupted;
        document.scenario_data = Some(data);
        self.write(document)
    }
}

/// What every guest of a scenario is made of.
#[derive(Clone)]
pub(crate) struct GuestTemplate<'a> {
    pub backend: &'a dyn Backend,
    pub agent: &'a AgentBinary,
    pub kernel: Option<PathBuf>,
    pub vcpus: u32,
    pub memory_mib: u32,
    pub workdir: &'a Path,
    /// The devices every guest gets (the isolation scenario's network for its net stressors;
    /// none elsewhere).
    pub devices: Devices,
    /// A scratch disk of this many bytes for each guest, created in its directory (the
    /// isolation scenario's disk stressor writes to it).
    pub scratch_disk_bytes: Option<u64>,
    /// Where guests are pinned (`--pin`); `None`: unpinned.
    pub pin: Option<crate::placement::PinPolicy>,
}

impl GuestTemplate<'_> {
    /// Starts one guest labelled `label` in its own directory under the work directory.
    pub(crate) fn start(&self, label: &str) -> Result<Guest, GuestError> {
        self.start_in(label, 0)
    }

    /// Starts one guest, pinned (when the run pins) to the CPUs of placement `slot`: guests
    /// running at the same time take consecutive slots.
    pub(crate) fn start_in(&self, label: &str, slot: usize) -> Result<Guest, GuestError> {
        let dir = self.workdir.join(label);
        std::fs::create_dir_all(&dir)
            .map_err(|e| GuestError::io(format!("cannot create {}: {e}", dir.display())))?;
        let mut devices = self.devices.clone();
        if let Some(r) = devices.rootfs.as_mut() {
            // Each guest's own database and build tree: guests must not share one.
            r.app_dir = dir.join("app");
            std::fs::create_dir_all(&r.app_dir).map_err(|e| {
                GuestError::io(format!("cannot create {}: {e}", r.app_dir.display()))
            })?;
        }
        if let Some(size) = self.scratch_disk_bytes {
            // A relaunch under the same label gets a fresh image of its own.
            let _ = std::fs::remove_file(dir.join("disk.img"));
            let disk = crate::devices::create_scratch(&dir, size)
                .map_err(|e| GuestError::io(e.to_string()))?;
            devices.disk = Some(disk);
        }
        let spec = GuestSpec {
            vcpus: self.vcpus,
            memory_mib: self.memory_mib,
            kernel: self.kernel.clone(),
            agent: self.agent.clone(),
            workdir: dir,
            label: label.into(),
            devices,
        };
        let mut guest = Guest::start(self.backend, &spec, self.backend.hello_timeout())?;
        if let Some(policy) = self
            .pin
            .as_ref()
            .filter(|p| p.applies_to(self.backend.name()))
        {
            guest
                .pin_in_slot(policy, slot, self.vcpus)
                .map_err(|e| GuestError::io(format!("cannot pin {label}: {e}")))?;
        }
        Ok(guest)
    }

    /// Starts one guest per label, at most `parallel` launches at once (a pool of threads
    /// taking labels in turn), and returns the results in label order. A stop request ends
    /// the launches that have not begun.
    pub(crate) fn start_many(
        &self,
        labels: &[String],
        parallel: usize,
    ) -> Vec<Result<Guest, GuestError>> {
        let next = AtomicUsize::new(0);
        let slots: Vec<Mutex<Option<Result<Guest, GuestError>>>> =
            labels.iter().map(|_| Mutex::new(None)).collect();
        std::thread::scope(|s| {
            for _ in 0..parallel.clamp(1, labels.len().max(1)) {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= labels.len() {
                        return;
                    }
                    let r = if crate::stop_requested() {
                        Err(GuestError::Interrupted)
                    } else {
                        self.start_in(&labels[i], i)
                    };
                    *slots[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
                });
            }
        });
        slots
            .into_iter()
            .map(|m| {
                m.into_inner()
                    .unwrap_or_else(|e| e.into_inner())
                    .unwrap_or(Err(GuestError::Interrupted))
            })
            .collect()
    }
}

/// The record of a started guest.
pub(crate) fn guest_record(label: &str, g: &Guest) -> GuestRecord {
    GuestRecord {
        label: label.into(),
        config: g.config.clone(),
        boot_s: Some(g.boot.as_secs_f64()),
        guest_uptime_s: g.hello.uptime_s,
        kernel: Some(g.hello.kernel.clone()),
        cpus: Some(g.hello.cpus),
        mem_total_kib: Some(g.hello.mem_total_kib),
        clocksource: g.hello.clocksource.clone(),
        cpu_accounting: g.cpu_method().into(),
        setup_notes: g.hello.setup_notes.clone(),
        failure: None,
    }
}

/// Shuts guests down in parallel (each waits up to `grace`, then is killed).
pub(crate) fn shutdown_all(guests: Vec<Guest>, grace: Duration) {
    std::thread::scope(|s| {
        for g in guests {
            s.spawn(move || g.shutdown(grace));
        }
    });
}

/// The first line of an error message.
pub(crate) fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or("").to_string()
}

/// A guest record for a launch that never said hello.
pub(crate) fn failed_guest(label: &str, failure: Failure) -> GuestRecord {
    GuestRecord {
        label: label.into(),
        config: Default::default(),
        boot_s: None,
        guest_uptime_s: None,
        kernel: None,
        cpus: None,
        mem_total_kib: None,
        clocksource: None,
        cpu_accounting: "none".into(),
        setup_notes: Vec::new(),
        failure: Some(failure),
    }
}

/// The backend of a scenario and the guests it launched, lost and recorded: what becomes its
/// [`BackendRecord`] in the document.
pub(crate) struct Roster {
    pub record: BackendRecord,
}

impl Roster {
    pub(crate) fn new(backend: &dyn Backend, availability: &Availability) -> Roster {
        Roster {
            record: BackendRecord {
                name: backend.name().into(),
                technique: backend.technique().into(),
                availability: availability.clone(),
                guests: Vec::new(),
            },
        }
    }

    /// Why the backend ran nothing, when it is unavailable (a note for the document).
    pub(crate) fn unavailable_note(&self) -> Option<String> {
        match &self.record.availability {
            Availability::Unavailable { reason, hint } => Some(format!(
                "{} is unavailable here: {reason} (fix: {hint})",
                self.record.name
            )),
            Availability::Available { .. } => None,
        }
    }

    /// Records a guest that said hello.
    pub(crate) fn started(&mut self, label: &str, g: &Guest) {
        self.record.guests.push(guest_record(label, g));
    }

    /// Records a launch that never said hello, tells the user, and returns its failure with
    /// the reason's first line only (for a table cell; the record keeps all of it).
    pub(crate) fn not_started(
        &mut self,
        label: &str,
        e: &GuestError,
        progress: &dyn Progress,
    ) -> Failure {
        let f = e.failure(false);
        progress.note(&format!(
            "{label}: did not start: {}",
            first_line(&f.reason)
        ));
        self.record.guests.push(failed_guest(label, f.clone()));
        Failure {
            reason: first_line(&f.reason),
            ..f
        }
    }

    /// Records why the last guest labelled `label` was lost.
    pub(crate) fn lost(&mut self, label: &str, failure: &Failure) {
        if let Some(r) = self
            .record
            .guests
            .iter_mut()
            .rev()
            .find(|r| r.label == label)
        {
            r.failure = Some(failure.clone());
        }
    }

    /// Records why the latest guest was lost (a scenario with one guest at a time).
    pub(crate) fn lost_latest(&mut self, failure: Failure) {
        if let Some(g) = self.record.guests.last_mut() {
            g.failure = Some(failure);
        }
    }
}
