//! `firecracker` and `cloud-hypervisor`: KVM microVMs booting the agent initramfs.
//!
//! Both take an uncompressed ELF kernel (the one [`vmlinux::pvh_kernel`] unpacks from the
//! distribution bzImage) and have a serial port on their stdio, which carries the agent's
//! protocol (`hvbench_channel=console`; kernel messages are silenced and, being unprefixed, are
//! ignored by the host anyway). They need a KVM that really runs guests, so availability is
//! decided as for `qemu-kvm`: by a probe boot, bounded in time.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use super::{Availability, Backend, BackendConfig, BackendError, GuestSpec, Launched};
use crate::agent::AgentBinary;
use crate::guest::{probe_boot, ProbeBootError};
use crate::image::{self, kernel::KernelImage, vmlinux};
use crate::launch::host_tool::which;
use crate::launch::spawn_piped;

/// The kernel command line of a microVM guest.
pub fn kernel_cmdline() -> String {
    "console=ttyS0 quiet loglevel=0 panic=-1 reboot=k cryptomgr.notests hvbench_init=1 hvbench_channel=console"
        .into()
}

/// Which microVM monitor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vmm {
    Firecracker,
    CloudHypervisor,
}

impl Vmm {
    fn binary(self) -> &'static str {
        match self {
            Vmm::Firecracker => "firecracker",
            Vmm::CloudHypervisor => "cloud-hypervisor",
        }
    }

    fn hint(self) -> &'static str {
        match self {
            Vmm::Firecracker => "install the firecracker binary from its release (not packaged in Debian 12) on PATH, on a host where KVM runs guests",
            Vmm::CloudHypervisor => "install the cloud-hypervisor binary from its release (not packaged in Debian 12) on PATH, on a host where KVM runs guests",
        }
    }
}

/// Firecracker's JSON configuration for `--no-api --config-file`.
pub fn firecracker_config(
    kernel: &Path,
    initrd: &Path,
    vcpus: u32,
    memory_mib: u32,
) -> serde_json::Value {
    serde_json::json!({
        "boot-source": {
            "kernel_image_path": kernel,
            "initrd_path": initrd,
            "boot_args": kernel_cmdline(),
        },
        "drives": [],
        "machine-config": { "vcpu_count": vcpus, "mem_size_mib": memory_mib, "smt": false },
    })
}

/// The command line that starts a guest; `config_file` is Firecracker's configuration.
pub fn command_line(
    vmm: Vmm,
    binary: &Path,
    kernel: &Path,
    initrd: &Path,
    spec: &GuestSpec,
    config_file: &Path,
) -> Vec<String> {
    let mut v = vec![binary.display().to_string()];
    match vmm {
        Vmm::Firecracker => {
            v.extend([
                "--no-api".into(),
                "--config-file".into(),
                config_file.display().to_string(),
            ]);
        }
        Vmm::CloudHypervisor => {
            v.extend([
                "--kernel".into(),
                kernel.display().to_string(),
                "--initramfs".into(),
                initrd.display().to_string(),
                "--cmdline".into(),
                kernel_cmdline(),
                "--cpus".into(),
                format!("boot={}", spec.vcpus),
                "--memory".into(),
                format!("size={}M", spec.memory_mib),
                "--serial".into(),
                "tty".into(),
                "--console".into(),
                "off".into(),
            ]);
        }
    }
    v
}

/// A microVM backend.
pub struct MicroVm(pub Vmm);

impl MicroVm {
    fn prepare(
        &self,
        agent: &AgentBinary,
        kernel: Option<&Path>,
    ) -> Result<(PathBuf, PathBuf, PathBuf, KernelImage), String> {
        let binary = which(self.0.binary())
            .ok_or_else(|| format!("{} not found on PATH", self.0.binary()))?;
        let kernel = KernelImage::find(kernel).map_err(|e| e.to_string())?;
        let image = image::build_initramfs(agent, &kernel, &[]).map_err(|e| e.to_string())?;
        let elf = vmlinux::pvh_kernel(&kernel, &image::cache_dir()).map_err(|e| {
            format!(
                "cannot unpack an ELF kernel from {}: {e}",
                kernel.path.display()
            )
        })?;
        Ok((binary, elf, image.path, kernel))
    }

    fn probe_uncached(&self, agent: &AgentBinary) -> Availability {
        let unavailable = |reason: String| Availability::Unavailable {
            reason,
            hint: self.0.hint().into(),
        };
        if which(self.0.binary()).is_none() {
            return unavailable(format!("{} not found on PATH", self.0.binary()));
        }
        if std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
            .is_err()
        {
            return unavailable("/dev/kvm is missing or not accessible".into());
        }
        match probe_boot(self, agent, 256, Duration::from_secs(10)) {
            Ok(boot) => Availability::Available {
                detail: format!(
                    "{}: a probe guest said hello in {:.0} ms",
                    self.0.binary(),
                    boot.as_secs_f64() * 1e3
                ),
            },
            Err(ProbeBootError::NoWorkdir(_)) => {
                unavailable("cannot create a work directory".into())
            }
            Err(ProbeBootError::Failed { error: e, .. }) => unavailable(format!(
                "a probe guest did not boot within 10 s: {}",
                e.to_string().lines().next().unwrap_or("")
            )),
        }
    }
}

impl Backend for MicroVm {
    fn name(&self) -> &'static str {
        self.0.binary()
    }

    fn technique(&self) -> &'static str {
        match self.0 {
            Vmm::Firecracker => "KVM microVM (Firecracker)",
            Vmm::CloudHypervisor => "KVM microVM (Cloud Hypervisor)",
        }
    }

    fn probe(&self, agent: &AgentBinary) -> Availability {
        static FIRECRACKER: OnceLock<Availability> = OnceLock::new();
        static CLOUD_HYPERVISOR: OnceLock<Availability> = OnceLock::new();
        let cell = match self.0 {
            Vmm::Firecracker => &FIRECRACKER,
            Vmm::CloudHypervisor => &CLOUD_HYPERVISOR,
        };
        cell.get_or_init(|| self.probe_uncached(agent)).clone()
    }

    fn hello_timeout(&self) -> Duration {
        Duration::from_secs(15)
    }

    fn launch(&self, spec: &GuestSpec) -> Result<Launched, BackendError> {
        let (binary, kernel, initrd, kimg) = self
            .prepare(&spec.agent, spec.kernel.as_deref())
            .map_err(|reason| BackendError::Unavailable {
                backend: self.name().into(),
                reason,
                hint: self.0.hint().into(),
            })?;
        let config_file = spec.workdir.join("firecracker.json");
        if self.0 == Vmm::Firecracker {
            let cfg = firecracker_config(&kernel, &initrd, spec.vcpus, spec.memory_mib);
            std::fs::write(&config_file, cfg.to_string()).map_err(|e| {
                BackendError::Setup(format!("cannot write {}: {e}", config_file.display()))
            })?;
        }
        let argv = command_line(self.0, &binary, &kernel, &initrd, spec, &config_file);
        let log = spec.workdir.join("vmm.stderr");
        let stderr = std::fs::File::create(&log).map_err(|e| BackendError::Spawn {
            what: log.display().to_string(),
            source: e,
        })?;
        let piped = spawn_piped(Command::new(&argv[0]).args(&argv[1..]), stderr).map_err(|e| {
            BackendError::Spawn {
                what: argv[0].clone(),
                source: e,
            }
        })?;
        let mut config = BackendConfig {
            command_line: argv,
            vcpus: Some(spec.vcpus),
            memory_mib: Some(spec.memory_mib),
            ..Default::default()
        };
        config
            .versions
            .insert("kernel".into(), kimg.version.clone());
        config
            .settings
            .insert("channel".into(), "serial console on stdio".into());
        config
            .settings
            .insert("kernel_cmdline".into(), kernel_cmdline());
        Ok(Launched {
            processes: vec![piped.child],
            reader: piped.reader,
            writer: piped.writer,
            console_log: Some(log),
            config,
            attached: Default::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> GuestSpec {
        GuestSpec {
            vcpus: 2,
            memory_mib: 256,
            kernel: None,
            agent: AgentBinary {
                path: "/a".into(),
                sha256: String::new(),
                size: 0,
            },
            workdir: "/w".into(),
            label: "t".into(),
            devices: Default::default(),
        }
    }

    #[test]
    fn cloud_hypervisor_command_line() {
        let v = command_line(
            Vmm::CloudHypervisor,
            Path::new("/bin/ch"),
            Path::new("/k"),
            Path::new("/i"),
            &spec(),
            Path::new("/c"),
        );
        let s = v.join(" ");
        assert!(s.starts_with("/bin/ch --kernel /k --initramfs /i --cmdline"));
        assert!(s.contains("--cpus boot=2 --memory size=256M --serial tty --console off"));
        assert!(s.contains("hvbench_init=1") && s.contains("hvbench_channel=console"));
    }

    #[test]
    fn firecracker_command_line_and_config() {
        let v = command_line(
            Vmm::Firecracker,
            Path::new("/bin/fc"),
            Path::new("/k"),
            Path::new("/i"),
            &spec(),
            Path::new("/w/fc.json"),
        );
        assert_eq!(v, ["/bin/fc", "--no-api", "--config-file", "/w/fc.json"]);
        let c = firecracker_config(Path::new("/k"), Path::new("/i"), 2, 256);
        assert_eq!(c["machine-config"]["vcpu_count"], 2);
        assert_eq!(c["machine-config"]["mem_size_mib"], 256);
        assert_eq!(c["boot-source"]["initrd_path"], "/i");
        assert!(c["boot-source"]["boot_args"]
            .as_str()
            .unwrap()
            .contains("hvbench_init=1"));
    }

    #[test]
    fn missing_binary_is_unavailable_with_a_hint() {
        if which("firecracker").is_some() {
            return;
        }
        let agent = AgentBinary {
            path: "/a".into(),
            sha256: String::new(),
            size: 0,
        };
        match MicroVm(Vmm::Firecracker).probe_uncached(&agent) {
            Availability::Unavailable { reason, hint } => {
                assert!(reason.contains("firecracker not found"));
                assert!(hint.contains("install"));
            }
            other => panic!("{other:?}"),
        }
    }
}
