//! Disk workloads (suite `io`): direct I/O against a file or device the host attached.

use crate::WorkloadInfo;

pub static WORKLOADS: &[WorkloadInfo] = &[];

/// Placeholder until the disk workloads land: creates `path` with `size` bytes.
pub fn create_target_file(path: &std::path::Path, size: u64) -> std::io::Result<()> {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    f.set_len(size)
}
