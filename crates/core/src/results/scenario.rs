//! Result tables of the multi-guest and lifecycle scenarios (`scenario_data` in the document).
//!
//! The efficiency scenario needs none of this: its tables are `runs` and `efficiency`. The
//! scenarios here measure things that are not one workload on one backend (a boot, an idle
//! window, N guests at once, a stressed guest beside normal ones), so each has its own table,
//! tagged by `kind`. A guest that did not return is a status with a reason and its console tail,
//! never a number: every value below is `None` rather than zero when it was not measured.

use std::collections::BTreeMap;

use hvbench_stats::Summary;
use serde::{Deserialize, Serialize};

use super::{Failure, Outcome};

/// The scenario-specific tables, tagged by `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ScenarioData {
    Lifecycle(LifecycleData),
    Scalability(ScalabilityData),
    Isolation(IsolationData),
}

// ----- lifecycle -----

/// Boot time, idle host CPU and memory overhead of one backend, by vCPU count (VMware VMI
/// paper's non-workload experiments).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LifecycleData {
    pub backend: String,
    /// Boots per vCPU count.
    pub boots: u32,
    /// Seconds the guest stays idle after hello before the idle window starts.
    pub settle_s: f64,
    /// Length of the idle window, seconds (split into one-second slices).
    pub idle_window_s: f64,
    pub rows: Vec<LifecycleRow>,
    #[serde(default)]
    pub notes: Vec<String>,
}

/// Everything measured at one vCPU count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LifecycleRow {
    pub vcpus: u32,
    pub memory_mib: u32,
    /// Every boot, in order, failed ones included.
    pub boots: Vec<BootRecord>,
    /// Launch to the agent's hello, timed by the host, over the successful boots (seconds).
    pub boot_s: Option<Summary>,
    /// The guest kernel's own uptime at hello (seconds): time inside the guest, without the
    /// host-side launch (process start, firmware, image loading).
    pub guest_uptime_s: Option<Summary>,
    pub failed_boots: u32,
    pub idle: Option<IdleRecord>,
    pub memory: Option<MemoryRecord>,
    #[serde(default)]
    pub notes: Vec<String>,
}

/// One boot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BootRecord {
    pub label: String,
    pub boot_s: Option<f64>,
    pub guest_uptime_s: Option<f64>,
    /// CPUs the guest reported.
    pub cpus: Option<u32>,
    /// Why it did not boot (did not start) or was lost before its measurements.
    pub failure: Option<Failure>,
}

/// Host CPU used by an idle guest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdleRecord {
    pub window_s: f64,
    /// Host CPU seconds of the guest's processes over the window.
    pub cpu_s: f64,
    /// `cpu_s / window_s` as a percentage of one host core.
    pub cpu_pct_of_core: f64,
    /// The same per one-second slice, for the spread.
    pub slices_pct: Vec<f64>,
    pub summary: Option<Summary>,
    /// How host CPU was metered (`cgroup2 cpu.stat`, ...).
    pub method: String,
}

/// Host memory of an idle guest's processes against the memory the guest itself uses.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct MemoryRecord {
    /// Host processes measured (the guest's processes and all their descendants).
    pub host_pids: Vec<u32>,
    /// Sum of the processes' RSS (shared pages counted once per process), KiB.
    pub host_rss_kib: u64,
    /// Sum of the processes' PSS (shared pages divided among their users), KiB.
    pub host_pss_kib: u64,
    /// The memory the guest was configured with, MiB.
    pub configured_mib: u32,
    /// MemTotal inside the guest, KiB.
    pub guest_mem_total_kib: Option<u64>,
    /// MemTotal − MemAvailable inside the guest, KiB, when that is the guest's own.
    pub guest_used_kib: Option<u64>,
    /// `host_pss_kib − guest_used_kib`: what the host spends beyond what the guest uses. It
    /// mixes the VMM's own memory with guest RAM the host backs and the guest no longer uses;
    /// kept for comparison with older documents, the split below tells them apart.
    pub overhead_kib: Option<i64>,
    /// Why `overhead_kib` is missing, or what it includes.
    pub note: Option<String>,
    /// PSS of the mappings that hold the guest's memory (`guest_ram` says which), KiB: guest
    /// RAM the host backs. `None` when no such mapping was recognised.
    #[serde(default)]
    pub guest_ram_backed_kib: Option<u64>,
    /// Virtual size of those mappings, KiB (the configured memory, for QEMU and UML).
    #[serde(default)]
    pub guest_ram_mapped_kib: Option<u64>,
    /// `guest_ram_backed_kib − guest_used_kib`: guest RAM the host backs that the guest does
    /// not use (touched once: boot-time zeroing, freed page cache). Negative when the guest
    /// counts as used memory the host has not backed (kernel memory outside the RAM mapping).
    #[serde(default)]
    pub backed_minus_used_kib: Option<i64>,
    /// PSS of everything else in the guest's host processes: the VMM's own memory (seed 001's
    /// "VMM memory overhead"). `None` when the guest RAM was not found, since it would then be
    /// counted in.
    #[serde(default)]
    pub vmm_own_kib: Option<u64>,
    /// RSS of the same mappings, summed over the processes: shared pages (the VMM's binary,
    /// libraries, a kernel image other guests map too) counted whole, so unlike `vmm_own_kib`
    /// it does not fall when other processes on the host map the same files.
    #[serde(default)]
    pub vmm_own_rss_kib: Option<u64>,
    /// What held the guest's memory, as recognised in smaps.
    #[serde(default)]
    pub guest_ram: Option<String>,
    /// The VMM's own memory by part (`jit_code`, `heap`, `stacks`, `firmware_ram`, `files`,
    /// `shared_other`, `kernel`, `unclassified`).
    #[serde(default)]
    pub vmm_parts: Vec<MemoryPart>,
    /// The largest of the VMM's own mappings by PSS, largest first.
    #[serde(default)]
    pub largest_mappings: Vec<MappingRecord>,
    /// Per host process: its own and its guest-memory PSS.
    #[serde(default)]
    pub processes: Vec<ProcessMemoryRecord>,
}

/// One part of the VMM's own memory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryPart {
    pub part: String,
    pub pss_kib: u64,
    /// Virtual size of its mappings: reserved, against `pss_kib` resident.
    pub size_kib: u64,
    pub mappings: u32,
}

/// One mapping of a guest's host process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MappingRecord {
    pub pid: u32,
    pub process: String,
    pub part: String,
    /// The path or kernel name from smaps; empty when anonymous.
    pub name: String,
    pub perms: String,
    pub size_kib: u64,
    pub pss_kib: u64,
    /// smaps `VmFlags`, space-separated.
    pub vm_flags: String,
}

/// One host process of a guest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessMemoryRecord {
    pub pid: u32,
    pub name: String,
    pub own_pss_kib: u64,
    pub guest_ram_pss_kib: u64,
}

// ----- scalability -----

/// N guests at once, each running one workload, for several N (benchvm's scalability).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScalabilityData {
    pub backend: String,
    pub workload: String,
    /// Unit of each guest's result.
    pub unit: String,
    pub higher_is_better: bool,
    /// Unit of the aggregate: the workload's unit for rates, `ops/s` for times per operation.
    pub aggregate_unit: String,
    pub vcpus: u32,
    pub memory_mib: u32,
    pub reps: u32,
    /// Launches in flight at once while a step starts its guests.
    pub launch_parallelism: u32,
    pub steps: Vec<ScaleStep>,
    /// The largest guest count up to which the aggregate kept rising (by more than
    /// `rise_threshold`); `None` when fewer than two steps measured anything.
    pub saturation_guests: Option<u32>,
    pub rise_threshold: f64,
    #[serde(default)]
    pub notes: Vec<String>,
}

/// One guest count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScaleStep {
    pub guests: u32,
    pub per_guest: Vec<GuestResult>,
    /// Sum of the per-guest throughputs of the guests that returned, in `aggregate_unit`.
    pub aggregate: Option<f64>,
    /// Aggregate / (guests that returned × the one-guest step's aggregate).
    pub scaling_efficiency: Option<f64>,
    /// Guests that did not return (DNR): failed to start, died, or fell silent.
    pub failed: u32,
    /// Host seconds from the first launch to the last hello of this step.
    pub startup_s: Option<f64>,
}

/// One guest's result in a scenario with several guests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuestResult {
    pub label: String,
    /// `ok`, `failed` (did not start, did not return: DNR, ...) with its reason and console
    /// tail, or `skipped` (not measured: stopped by the user).
    #[serde(flatten)]
    pub outcome: Outcome,
    pub boot_s: Option<f64>,
    pub iterations: Option<u64>,
    /// Raw metric values, one per repetition.
    pub samples: Vec<f64>,
    pub summary: Option<Summary>,
    /// Median throughput in the aggregate unit.
    pub throughput: Option<f64>,
    /// Host CPU seconds of this guest's processes over its measured repetitions.
    pub host_cpu_s: Option<f64>,
}

// ----- isolation -----

/// One stressed guest beside normal ones (benchvm's performance isolation, table 2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IsolationData {
    pub backend: String,
    pub guests: u32,
    pub vcpus: u32,
    pub memory_mib: u32,
    pub reps: u32,
    /// The steady workloads every guest runs.
    pub steady: Vec<SteadyWorkload>,
    /// Each guest's results without any stressor in the first baseline, which also warms
    /// fresh guests up (each row holds the baseline measured right before it, which it is
    /// compared with).
    pub baseline: Vec<IsolationGuest>,
    pub rows: Vec<IsolationRow>,
    #[serde(default)]
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SteadyWorkload {
    pub name: String,
    pub unit: String,
    pub higher_is_better: bool,
}

/// Whether a stressor ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StressStatus {
    Ran,
    /// Not possible here (reason given): no number.
    Skipped,
    /// Stopped by the user before it finished.
    Interrupted,
}

/// One stressor: the degradation of the stressed guest and of the normal guests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IsolationRow {
    pub stressor: String,
    pub status: StressStatus,
    pub reason: Option<String>,
    /// What the stressor really did here (`tmpfs: no disk device in the guest`).
    pub note: Option<String>,
    /// Mean % degradation of the stressed guest's steady workloads against its baseline;
    /// `None` with `stressed_dnr` when it did not return.
    pub stressed_pct: Option<f64>,
    pub stressed_dnr: bool,
    /// Mean % degradation of the normal guests against their own baselines.
    pub normal_pct: Option<f64>,
    /// Normal guests that did not return.
    pub normal_dnr: u32,
    pub per_workload: Vec<WorkloadDegradation>,
    pub guests: Vec<IsolationGuest>,
    /// The baseline measured right before this stressor, which the degradation is against
    /// (so that drift of a shared host between phases does not read as degradation).
    #[serde(default)]
    pub baseline: Vec<IsolationGuest>,
}

/// Degradation of one steady workload under one stressor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkloadDegradation {
    pub workload: String,
    pub stressed_pct: Option<f64>,
    pub normal_pct: Option<f64>,
    /// Each normal guest's degradation, in guest order (`None`: did not return).
    pub normal_per_guest: Vec<Option<f64>>,
}

/// One guest during one phase of the isolation scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IsolationGuest {
    pub label: String,
    /// `baseline`, `stressed` or `normal`.
    pub role: String,
    /// `ok`, `failed` (with its kind, reason and console tail) or `skipped`.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// Median of each steady workload, in its own unit.
    pub medians: BTreeMap<String, f64>,
    pub samples: BTreeMap<String, Vec<f64>>,
    /// What the stressor reported (operations done, workers restarted), medians.
    #[serde(default)]
    pub stress_extras: BTreeMap<String, f64>,
    /// What the stressor said in words: for the disk stressor, `disk_target` (`device`: the
    /// guest's own scratch disk; `ram_fs`; `directory`) and `disk_io` (`direct`, `buffered`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub stress_labels: BTreeMap<String, String>,
}
