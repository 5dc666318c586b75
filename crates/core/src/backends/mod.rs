//! Backends: the ways hvbench runs its agent somewhere.
//!
//! Each backend is one module behind the [`Backend`] trait. A backend answers a quick
//! availability [`Backend::probe`] (bounded in time, never hangs) and [`Backend::launch`]es a
//! guest: the host processes that make it and a byte channel to the agent inside. What is common
//! to every guest (the handshake, jobs, timeouts, accounting, killing for certain) lives in
//! [`crate::guest`], so a backend only knows how to start its technique.

use std::path::{Path, PathBuf};

pub use crate::devices::{Attached, Devices};
/// What a backend is, as the guests it starts need it: defined beside them (`guest::backend`),
/// so that the backends depend on the guest machinery and not the other way round.
pub use crate::guest::backend::{Backend, BackendError, GuestSpec, Launched};
/// Records of the result document, re-exported where backends make them.
pub use crate::results::{Availability, BackendConfig};

pub mod gvisor;
pub mod microvm;
pub mod mock;
pub mod namespace;
pub mod native;
pub mod qemu;
pub mod ssh;
pub mod uml;

/// Options of the backends that need some (the SSH target, a forced gVisor platform).
#[derive(Debug, Clone, Default)]
pub struct BackendOptions {
    /// `user@host[:port]` of an existing machine for the `ssh` backend.
    pub ssh_target: Option<String>,
    /// Identity file for the `ssh` backend.
    pub ssh_identity: Option<PathBuf>,
    /// Extra `-o` options for the `ssh` backend (`StrictHostKeyChecking=...` is the user's call).
    pub ssh_options: Vec<String>,
    /// Force a gVisor platform (`systrap`, `ptrace`, `kvm`) instead of probing.
    pub gvisor_platform: Option<String>,
    /// The user's own UML kernel binary instead of the probed choice.
    pub uml_binary: Option<PathBuf>,
}

/// The console file, opened for appending: tools that pass the descriptor on (runsc) write at
/// their own offset otherwise, and messages of different writers would overwrite each other.
pub fn open_console(path: &Path) -> Result<std::fs::File, BackendError> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| BackendError::Spawn {
            what: path.display().to_string(),
            source: e,
        })
}

/// Every backend hvbench knows, in the order reports show them.
pub fn all_with(opts: &BackendOptions) -> Vec<Box<dyn Backend>> {
    vec![
        Box::new(native::Native),
        Box::new(namespace::Namespace::new()),
        Box::new(gvisor::Gvisor::new(opts)),
        Box::new(uml::Uml::with_options(opts)),
        Box::new(qemu::QemuTcg),
        Box::new(qemu::QemuKvm),
        Box::new(microvm::MicroVm(microvm::Vmm::Firecracker)),
        Box::new(microvm::MicroVm(microvm::Vmm::CloudHypervisor)),
        Box::new(ssh::Ssh::new(opts)),
    ]
}

/// Every backend hvbench knows, with default options.
pub fn all() -> Vec<Box<dyn Backend>> {
    all_with(&BackendOptions::default())
}

/// Finds a backend by name.
pub fn find(name: &str, opts: &BackendOptions) -> Option<Box<dyn Backend>> {
    all_with(opts).into_iter().find(|b| b.name() == name)
}

/// The names of every backend, for error messages.
pub fn names() -> Vec<&'static str> {
    all().iter().map(|b| b.name()).collect()
}
