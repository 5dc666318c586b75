//! Options of backends, shared by `run` and `doctor`.

use std::path::PathBuf;

use anyhow::bail;
use clap::{Args, ValueEnum};
use hvbench_core::backends::BackendOptions;
use hvbench_core::placement::{self, PinPolicy, Placement};

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
    /// UML backend: this `linux.uml` instead of the newest one that boots here (for example a
    /// UML >= 6.13 on a host with AMX).
    #[arg(long, value_name = "PATH")]
    pub uml_binary: Option<PathBuf>,
}

impl BackendArgs {
    pub fn options(&self) -> BackendOptions {
        BackendOptions {
            ssh_target: self.ssh_target.clone(),
            ssh_identity: self.ssh_identity.clone(),
            ssh_options: self.ssh_options.clone(),
            gvisor_platform: self.gvisor_platform.clone(),
            uml_binary: self.uml_binary.clone(),
        }
    }
}

/// Where guests and the native agent run on the host's CPUs.
#[derive(Args, Debug, Clone, Default)]
pub struct PlacementArgs {
    /// Pin each guest's vCPU threads (one to one; the VMM's other threads on the guest's set)
    /// and the native agent to host CPUs: all this process may use, or the LIST given
    /// (`0-3,8`). Unpinned by default: the host's scheduler places them.
    #[arg(long, value_name = "LIST", num_args = 0..=1, default_missing_value = "")]
    pub pin: Option<String>,
    /// How vCPUs are laid on the pinned CPUs: `pack` (SMT siblings, then the same socket) or
    /// `spread` (across sockets, distinct cores first). Implies --pin.
    #[arg(long, value_enum)]
    pub placement: Option<PlacementArg>,
    /// Pin only the guests of BACKEND (repeatable; `native` for the native agent), the others
    /// unpinned. Implies --pin. UML gains from pinning (its guest and kernel processes hand over
    /// at every trap), gVisor loses (its Sentry polls on a second core): `--pin-backend uml`
    /// measures both as they run best in one run.
    #[arg(long, value_name = "BACKEND")]
    pub pin_backend: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlacementArg {
    Pack,
    Spread,
}

impl PlacementArgs {
    /// The run's pinning, checked against the CPUs this process may use.
    pub fn policy(&self) -> anyhow::Result<Option<PinPolicy>> {
        if self.pin.is_none() && self.placement.is_none() && self.pin_backend.is_empty() {
            return Ok(None);
        }
        let known = hvbench_core::backends::names();
        if let Some(b) = self
            .pin_backend
            .iter()
            .find(|b| !known.contains(&b.as_str()))
        {
            bail!(
                "--pin-backend {b:?}: no such backend ({})",
                known.join(", ")
            );
        }
        let me = std::process::id();
        let allowed = placement::allowed_cpus(me, me).unwrap_or_default();
        let cpus = match self.pin.as_deref().map(str::trim) {
            None | Some("") => allowed.clone(),
            Some(list) => match placement::parse_cpu_list(list) {
                Some(v) if !v.is_empty() => v,
                _ => bail!("--pin {list:?}: not a CPU list (e.g. 0-3,8)"),
            },
        };
        if let Some(c) = cpus.iter().find(|c| !allowed.contains(c)) {
            bail!(
                "--pin: CPU {c} is not one this process may use ({})",
                placement::format_cpu_list(&allowed)
            );
        }
        let placement = match self.placement {
            Some(PlacementArg::Spread) => Placement::Spread,
            Some(PlacementArg::Pack) | None => Placement::Pack,
        };
        Ok(Some(PinPolicy {
            placement,
            cpus,
            backends: self.pin_backend.clone(),
        }))
    }
}
