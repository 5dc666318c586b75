//! (being written)

use crate::WorkloadInfo;

pub static WORKLOADS: &[WorkloadInfo] = &[];
