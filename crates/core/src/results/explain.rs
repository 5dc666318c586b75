//! The document types of `hvbench explain`: the event counts of a workload's counted
//! repetitions (`runs[].counted`) and the model's verdict per workload and backend (`explain`).
//! The model itself is `crate::explain`; the fields are documented in docs/results.md.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The event counts of a workload's counted repetitions on one backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CountedRecord {
    /// One entry per counted repetition, in order.
    pub reps: Vec<CountedRep>,
    /// Events that could not be counted there, each with the reason.
    #[serde(default)]
    pub not_counted: BTreeMap<String, String>,
}

/// One counted repetition: what it did and what it asked of the kernel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CountedRep {
    /// The repetition's metric (not one of the run's samples: counting slows system calls).
    pub value: f64,
    /// Units of work (transactions, operations, builds): counts are divided by it.
    pub work: f64,
    /// The measured interval and the whole repetition, seconds (agent's clock).
    pub elapsed_s: f64,
    pub wall_s: f64,
    /// `syscalls`, `syscalls.<class>`, `faults_minor`, `faults_major`, `ctx_switches`,
    /// `cpu_migrations`, `task_clock_ns`, `user_s`, `sys_s`, `disk_*`: totals of the
    /// repetition's whole process tree. `clock_reads` and `clock_reads.<function>` in a
    /// `clock_pass` repetition.
    pub counts: BTreeMap<String, f64>,
    /// A native repetition that counted only the clock reads of the applications' programs
    /// (uprobes; they slow each read, so its other counts would not be the work's).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub clock_pass: bool,
}

/// An estimate with its interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub value: f64,
    pub ci_low: f64,
    pub ci_high: f64,
}

/// One term of a prediction: a class of events, how many per unit of work, what each costs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExplainTerm {
    /// `syscalls.file`, ..., `syscalls.sync`, `page_faults`, `ctx_switches`, `disk_reads` (`disk_ios` in older documents), `cpu_user`.
    pub class: String,
    /// Events per unit of work in the native run (for `cpu_user`: user seconds per unit).
    pub per_unit: f64,
    /// Extra nanoseconds per event in the backend (for `cpu_user`: extra ns per ns of user
    /// time, the CPU factor minus one); may be negative.
    pub extra_ns: f64,
    /// The micro workloads the cost comes from.
    pub cost_from: String,
    /// `per_unit × extra_ns`, in seconds per unit of work.
    pub extra_s: f64,
    /// Events per unit of work counted inside the backend itself (its own kernel, one counted
    /// repetition), where it counted this class; absent where it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest_per_unit: Option<f64>,
    /// Extra nanoseconds per event from the prices measured after each of the workload's own
    /// repetitions (`runs[].round_prices`), where they priced this class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round_extra_ns: Option<f64>,
}

/// Predicted against measured efficiency of one workload on one backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExplainRecord {
    pub workload: String,
    pub backend: String,
    /// The run the unit costs came from (this one, or `--costs`).
    pub costs_from: String,
    /// Native seconds per unit of work (median of the measured repetitions).
    pub native_s: f64,
    /// The measured efficiency (from `efficiency[]`).
    pub measured: Interval,
    /// The predicted efficiency, `native_s / (native_s + predicted_extra_s)`, with the
    /// bootstrap interval of its inputs (native samples, counted repetitions, micro samples).
    pub predicted: Interval,
    /// Extra seconds per unit of work in the backend: measured and predicted.
    pub measured_extra_s: f64,
    pub predicted_extra_s: f64,
    /// `predicted_extra_s / measured_extra_s`; `None` when nothing extra was measured.
    pub explained_share: Option<f64>,
    /// `measured_extra_s - predicted_extra_s`; negative when the model predicts more.
    pub residual_s: f64,
    pub terms: Vec<ExplainTerm>,
    /// Events not counted natively, or whose cost is unknown for this backend: absent from the
    /// prediction, named here.
    #[serde(default)]
    pub missing: Vec<String>,
    /// The prediction again with the backend's own counts where it counted them
    /// (`terms[].guest_per_unit`): where it moves towards the measurement, the guest asked for
    /// more of those events than the native run did for the same work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicted_with_guest_counts: Option<Interval>,
    /// The prediction again (native counts) with the prices measured on the backend and
    /// natively right after each of the workload's own repetitions (`runs[].round_prices`)
    /// instead of those of the run's pricing workloads, measured before every application:
    /// prices from the same minutes and the same guest state as the measurement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicted_with_round_prices: Option<Interval>,
}
