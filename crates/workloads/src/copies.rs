//! (being written)

use crate::{Outcome, Params, WorkloadError, WorkloadInfo};

/// Runs `copies` instances of `w` at once and returns their aggregate outcome.
pub fn run_copies(
    w: &WorkloadInfo,
    params: &Params,
    iterations: u64,
    copies: u32,
) -> Result<Outcome, WorkloadError> {
    let _ = (w, params, iterations, copies);
    Err(WorkloadError::Unsupported("copies not written yet".into()))
}
