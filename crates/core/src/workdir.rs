//! Private temporary directories, removed when dropped.
//!
//! Guests keep their sockets, console logs, images and disks here. Nothing hvbench did not
//! create is ever written.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// A directory created by hvbench (mode 0700) and removed with its contents on drop.
#[derive(Debug)]
pub struct WorkDir {
    path: PathBuf,
    keep: bool,
}

impl WorkDir {
    /// Creates `hvbench-<pid>-<n>-<label>` under the temporary directory.
    pub fn new(label: &str) -> std::io::Result<WorkDir> {
        Self::new_in(&std::env::temp_dir(), label)
    }

    pub fn new_in(parent: &Path, label: &str) -> std::io::Result<WorkDir> {
        use std::os::unix::fs::DirBuilderExt;
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = parent.join(format!("hvbench-{}-{n}-{label}", std::process::id()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .recursive(false)
            .create(&path)?;
        Ok(WorkDir { path, keep: false })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Leave the directory in place when dropped (for `--keep-workdir` debugging).
    pub fn keep(&mut self) {
        self.keep = true;
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
