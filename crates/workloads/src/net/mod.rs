//! Network workloads (suite `net`): the agent serves, a host peer drives the other end.

use crate::WorkloadInfo;

pub static WORKLOADS: &[WorkloadInfo] = &[];
