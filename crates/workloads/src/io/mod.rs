//! Disk workloads (suite `io`): direct I/O against a file or device the host attached.

use crate::WorkloadInfo;

pub static WORKLOADS: &[WorkloadInfo] = &[];
