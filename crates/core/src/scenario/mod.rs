//! Scenarios: experiments over workloads and guests. Each produces one [`RunDocument`].
//!
//! Each scenario file says what its experiment does; what they all share is in [`common`] (the
//! run's files and journal, the guests a scenario launches, loses and records, interruption)
//! and [`measure`] (one workload in one guest).
//!
//! [`RunDocument`]: crate::results::RunDocument

pub mod ab;
pub(crate) mod common;
mod counted;
pub mod efficiency;
pub mod isolation;
pub mod lifecycle;
pub(crate) mod measure;
mod records;
pub mod reps;
pub mod scale;

/// Progress of a scenario, for a progress bar. Implementations must be cheap.
pub trait Progress: Sync {
    /// The number of steps the scenario plans (may grow with extra repetitions).
    fn begin(&self, total_steps: u64);
    /// More steps than planned (extra repetitions for a noisy workload).
    fn grow(&self, extra_steps: u64);
    /// A workload starts.
    fn workload(&self, name: &str);
    /// One step is done.
    fn step(&self);
    /// Something the user should see now (a guest failed, a backend was relaunched).
    fn note(&self, message: &str);
    fn finish(&self);
}

/// Progress that shows nothing (tests, `--quiet`).
pub struct NoProgress;

impl Progress for NoProgress {
    fn begin(&self, _: u64) {}
    fn grow(&self, _: u64) {}
    fn workload(&self, _: &str) {}
    fn step(&self) {}
    fn note(&self, _: &str) {}
    fn finish(&self) {}
}
