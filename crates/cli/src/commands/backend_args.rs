//! Options of backends, shared by `run` and `doctor`.

use std::path::PathBuf;

use clap::Args;
use hvbench_core::backends::BackendOptions;

#[derive(Args, Debug, Clone, Default)]
pub struct BackendArgs {
    /// SSH backend: an existing machine or VM, `user@host[:port]`.
    #[arg(long, value_name = "USER@HOST[:PORT]")]
    pub ssh_target: Option<String>,
    /// SSH backend: identity file.
    #[arg(long, value_name = "FILE")]
    pub ssh_identity: Option<PathBuf>,
    /// SSH backend: extra `-o` option for ssh (repeatable), e.g. UserKnownHostsFile=FILE.
    #[arg(long = "ssh-option", value_name = "KEY=VALUE")]
    pub ssh_options: Vec<String>,
    /// gVisor backend: platform (systrap, ptrace, kvm) instead of the probed one.
    #[arg(long, value_name = "PLATFORM")]
    pub gvisor_platform: Option<String>,
}

impl BackendArgs {
    pub fn options(&self) -> BackendOptions {
        BackendOptions {
            ssh_target: self.ssh_target.clone(),
            ssh_identity: self.ssh_identity.clone(),
            ssh_options: self.ssh_options.clone(),
            gvisor_platform: self.gvisor_platform.clone(),
        }
    }
}
