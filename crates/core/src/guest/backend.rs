//! What a backend must give a guest: the [`Backend`] trait every technique implements (a
//! bounded availability probe and a launch), what a guest should look like ([`GuestSpec`]) and
//! what a launch hands over ([`Launched`]). Defined here, beside the guest that uses them, so
//! that the backends depend on the guest machinery and not the other way round; the backends
//! re-export them (`crate::backends::Backend`).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::Child;

use crate::agent::AgentBinary;
use crate::devices::{Attached, Devices};
use crate::results::{Availability, BackendConfig};

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
