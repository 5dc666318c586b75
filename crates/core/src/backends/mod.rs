//! Backends: the ways hvbench runs its agent somewhere.
//!
//! Each backend is one module behind the [`Backend`] trait. A backend answers a quick
//! availability [`Backend::probe`] (bounded in time, never hangs) and [`Backend::launch`]es a
//! guest: the host processes that make it and a byte channel to the agent inside. What is common
//! to every guest (the handshake, jobs, timeouts, accounting, killing for certain) lives in
//! [`crate::guest`], so a backend only knows how to start its technique.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Child;

use crate::agent::AgentBinary;
pub use crate::devices::{Attached, Devices};
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

/// What a guest should look like; backends use what applies to them.
#[derive(Debug, Clone)]
pub struct GuestSpec {
    pub vcpus: u32,
    pub memory_mib: u32,
    /// The kernel to boot (kernel backends); `None` picks the newest in /boot.
    pub kernel: Option<PathBuf>,
    /// The agent to run inside.
    pub agent: AgentBinary,
    /// A private directory for this guest's files (sockets, logs, images).
    pub workdir: PathBuf,
    /// A short label, unique within the run (`qemu-tcg-0`).
    pub label: String,
    /// The disk and network to attach (the `io` and `net` suites); none by default.
    pub devices: Devices,
}

/// A guest as a backend started it: its host processes and the channel to its agent.
pub struct Launched {
    /// Host processes that make the guest; each was started in its own process group, so
    /// that killing the group leaves nothing behind.
    pub processes: Vec<Child>,
    pub reader: Box<dyn Read + Send>,
    pub writer: Box<dyn Write + Send>,
    /// Where the guest's console (or the agent's stderr) goes.
    pub console_log: Option<PathBuf>,
    pub config: BackendConfig,
    /// The devices as the guest sees them, and what must live as long as the guest.
    pub attached: Attached,
}

/// Why a guest could not be started.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("{backend} is unavailable: {reason} (fix: {hint})")]
    Unavailable {
        backend: String,
        reason: String,
        hint: String,
    },
    #[error("could not start {what}: {source}")]
    Spawn {
        what: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Setup(String),
}

/// A way to run the agent somewhere.
pub trait Backend: Send + Sync {
    /// The name used on the command line and in results (`qemu-tcg`).
    fn name(&self) -> &'static str;
    /// The virtualization technique, in a few words.
    fn technique(&self) -> &'static str;
    /// Whether it can run here. Quick and bounded: a probe never hangs.
    fn probe(&self, agent: &AgentBinary) -> Availability;
    /// Starts one guest.
    fn launch(&self, spec: &GuestSpec) -> Result<Launched, BackendError>;
    /// How long a guest may take from launch to the agent's hello.
    fn hello_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(20)
    }
    /// Whether this backend is the host itself (the baseline).
    fn is_baseline(&self) -> bool {
        false
    }
}

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
