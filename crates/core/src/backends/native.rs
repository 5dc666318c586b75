//! `native`: the agent as a child process of hvbench, on the host itself. The baseline every
//! guest is compared with.

use std::process::Command;

use super::{Availability, Backend, BackendConfig, BackendError, GuestSpec, Launched};
use crate::agent::AgentBinary;
use crate::devices::{free_loopback_port, Attached, NetEndpoint};
use crate::launch::spawn_piped;

pub struct Native;

/// Gives the agent a mount namespace of its own, with nothing propagating back to the host's:
/// the native baseline of the applications mounts their root file system (a chroot) there,
/// and the mounts vanish with the agent however it ends. Only for runs with applications:
/// everything else runs exactly as a plain child process.
fn private_mounts(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the child between fork and exec, single-threaded, and calls
    // only unshare and mount with static NUL-terminated strings.
    unsafe {
        cmd.pre_exec(|| {
            if libc::unshare(libc::CLONE_NEWNS) != 0
                || libc::mount(
                    c"none".as_ptr(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

impl Backend for Native {
    fn name(&self) -> &'static str {
        "native"
    }

    fn technique(&self) -> &'static str {
        "none: the host itself (baseline)"
    }

    fn probe(&self, agent: &AgentBinary) -> Availability {
        Availability::Available {
            detail: format!("agent {}", agent.path.display()),
        }
    }

    fn is_baseline(&self) -> bool {
        true
    }

    fn launch(&self, spec: &GuestSpec) -> Result<Launched, BackendError> {
        let console = spec.workdir.join("agent.stderr");
        let stderr = std::fs::File::create(&console).map_err(|e| BackendError::Spawn {
            what: format!("{}", console.display()),
            source: e,
        })?;
        // The applications' file system is mounted before the agent starts, so that its
        // private mount namespace is made with it.
        let app_mount = app_mount(spec)?;
        let mut cmd = Command::new(&spec.agent.path);
        if spec.devices.rootfs.is_some() {
            private_mounts(&mut cmd);
        }
        let command_line = vec![spec.agent.path.display().to_string()];
        let piped = spawn_piped(&mut cmd, stderr).map_err(|e| BackendError::Spawn {
            what: spec.agent.path.display().to_string(),
            source: e,
        })?;
        let mut attached = Attached::default();
        let mut settings = std::collections::BTreeMap::new();
        if let Some(d) = &spec.devices.disk {
            attached.disk = Some(d.image.display().to_string());
            settings.insert(
                "disk".to_string(),
                format!("{} on the host's file system", d.image.display()),
            );
        }
        if let Some(r) = &spec.devices.rootfs {
            attached.rootfs = Some(r.tree.display().to_string());
            attached.app_dir = Some(r.app_dir.display().to_string());
            settings.insert(
                "rootfs".to_string(),
                "the same root file system, chrooted, in a private mount namespace (the same \
                 binaries as in every guest)"
                    .to_string(),
            );
        }
        if let Some(m) = app_mount {
            settings.insert("app_disk".to_string(), m.describe());
            attached.keep.push(Box::new(m));
        }
        if spec.devices.net.is_some() {
            let port = || {
                free_loopback_port().map_err(|e| BackendError::Spawn {
                    what: "a loopback port for the network workloads".into(),
                    source: e,
                })
            };
            let (agent_port, web_port) = (port()?, port()?);
            attached.net = Some(NetEndpoint {
                listen: format!("127.0.0.1:{agent_port}"),
                connect: std::net::SocketAddr::from(([127, 0, 0, 1], agent_port)),
                web_listen: format!("127.0.0.1:{web_port}"),
                web_connect: std::net::SocketAddr::from(([127, 0, 0, 1], web_port)),
                netns: None,
            });
            settings.insert("net".to_string(), "host loopback".to_string());
        }
        Ok(Launched {
            processes: vec![piped.child],
            reader: piped.reader,
            writer: piped.writer,
            console_log: Some(console),
            config: BackendConfig {
                command_line,
                settings,
                ..Default::default()
            },
            attached,
        })
    }
}

/// The applications' directory of a guest without a kernel of its own on a fresh ext4 image,
/// loop-mounted (see [`crate::devices::AppMount`]); `None` when the guest runs no application.
pub(crate) fn app_mount(
    spec: &GuestSpec,
) -> Result<Option<crate::devices::AppMount>, BackendError> {
    spec.devices
        .rootfs
        .as_ref()
        .map(|r| crate::devices::AppMount::mount(&r.app_dir))
        .transpose()
        .map_err(|e| BackendError::Setup(e.to_string()))
}
