//! `qemu-tcg` and `qemu-kvm`: a distribution kernel with the agent initramfs in
//! `qemu-system-x86_64`.
//!
//! TCG is full-system emulation by dynamic binary translation: every guest instruction is
//! translated, nothing runs directly. KVM runs the guest on the CPU with hardware
//! virtualization; it is offered only after a probe boot proves that this host's /dev/kvm really
//! runs a guest (a /dev/kvm that exists is not enough: nested setups may hang).
//!
//! The agent's channel is a virtio-serial port named [`PORT_NAME`], backed by a unix socket in
//! the guest's private work directory; the kernel console and QEMU's own stderr both go to
//! `console.log` there, so a failure report shows them together. The command line is an
//! argument vector built by [`command_line`], never a shell string.
//!
//! Boot path, chosen by measurement under TCG on this project's 2-core host (Debian
//! 6.1 cloud kernel, QEMU 7.2): the kernel is entered through its PVH entry point from the ELF
//! inside the bzImage (unpacked once on the host, see [`crate::image::vmlinux`]), which saves
//! about 0.4 s of in-guest decompression; the kernel command line skips the crypto self-tests
//! (about 0.5 s); the machine is `q35` (`pc` is no faster; `microvm` did not boot reliably).

use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{Availability, BackendConfig, BackendError, GuestSpec, Launched};
use crate::agent::AgentBinary;
use crate::devices::{
    free_loopback_port, Attached, DiskModel, NetEndpoint, NetMode, GUEST_PORT, WEB_PORT,
};
use crate::image::{self, vmlinux, ImageError, Initramfs, KernelImage};
use crate::launch::host_tool::which;
use crate::launch::{kill_and_reap, spawn_in_own_group};
use crate::netns;

mod cmdline;
mod probe;
mod variants;

pub use cmdline::{command_line, kernel_append, QemuConfig, QemuDisk, QemuNet, SLIRP_GUEST_ADDR};
use probe::{qemu_aio, qemu_version};
pub use variants::{QemuCustom, QemuKvm, QemuTcg};

/// The QEMU binary, looked up on PATH.
pub const QEMU_BINARY: &str = "qemu-system-x86_64";
/// The name of the virtio-serial port the agent opens (`hvbench_channel=virtio:<name>`).
pub const PORT_NAME: &str = "org.hvbench.agent";
/// How long a KVM probe guest may take to say hello.
pub const KVM_PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long QEMU may take to create the agent socket after it was started.
const SOCKET_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest path a unix socket address holds (sun_path, with its NUL).
const MAX_SOCKET_PATH: usize = 107;

const QEMU_HINT: &str = "apt-get install qemu-system-x86";

/// The accelerator: translation or hardware virtualization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Tcg,
    Kvm,
}

impl Accel {
    pub fn name(self) -> &'static str {
        match self {
            Accel::Tcg => "tcg",
            Accel::Kvm => "kvm",
        }
    }
}

/// The machine type QEMU emulates. Measured here under TCG with the Debian cloud kernel,
/// `q35` and `pc` boot alike (within noise); `microvm` (virtio-mmio found through ACPI) booted
/// only some of the time (the kernel stalls calibrating its clocks without PIT/HPET), so it is
/// not offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Machine {
    /// The modern PC (PCIe, ICH9).
    Q35,
    /// The classic PC (i440FX, PIIX).
    Pc,
}

impl Machine {
    pub fn name(self) -> &'static str {
        match self {
            Machine::Q35 => "q35",
            Machine::Pc => "pc",
        }
    }
}

/// What a launch and a probe both need: QEMU, the kernel, the image.
struct Prepared {
    binary: PathBuf,
    kernel: KernelImage,
    /// What `-kernel` loads: the PVH ELF taken out of the bzImage, or the bzImage itself.
    boot_kernel: PathBuf,
    /// How the kernel is entered, and why (recorded in the configuration).
    entry: String,
    image: Initramfs,
}

/// Why a guest cannot be prepared.
enum PrepareError {
    NoQemu,
    Image(ImageError),
}

impl PrepareError {
    fn reason(&self) -> String {
        match self {
            PrepareError::NoQemu => format!("{QEMU_BINARY} is not on PATH"),
            PrepareError::Image(e) => e.to_string(),
        }
    }

    fn hint(&self) -> &'static str {
        match self {
            PrepareError::NoQemu => QEMU_HINT,
            PrepareError::Image(ImageError::KernelUnreadable { .. }) => {
                "chmod 0644 the kernel, or run hvbench as root"
            }
            PrepareError::Image(ImageError::TooLarge { .. }) => "cargo build --release --workspace",
            PrepareError::Image(ImageError::KernelNotFound { .. }) => "check the --kernel path",
            PrepareError::Image(_) => "apt-get install linux-image-cloud-amd64",
        }
    }

    fn availability(&self) -> Availability {
        Availability::Unavailable {
            reason: self.reason(),
            hint: self.hint().into(),
        }
    }

    fn into_backend_error(self, backend: &str) -> BackendError {
        match self {
            PrepareError::NoQemu => BackendError::Unavailable {
                backend: backend.into(),
                reason: self.reason(),
                hint: self.hint().into(),
            },
            // Image errors name their fix in their message.
            PrepareError::Image(e) => BackendError::Setup(e.to_string()),
        }
    }
}

fn prepare(
    agent: &AgentBinary,
    kernel: Option<&Path>,
    drivers: &[&str],
) -> Result<Prepared, PrepareError> {
    let binary = which(QEMU_BINARY).ok_or(PrepareError::NoQemu)?;
    let kernel = KernelImage::find_with_drivers(kernel, drivers).map_err(PrepareError::Image)?;
    let image = image::build_initramfs(agent, &kernel, drivers).map_err(PrepareError::Image)?;
    // The PVH entry saves the in-guest decompression and real-mode start (about 0.4 s under
    // TCG here); any kernel it cannot handle boots as the bzImage it is.
    let (boot_kernel, entry) = match vmlinux::pvh_kernel(&kernel, &image::cache_dir()) {
        Ok(elf) => (
            elf,
            "pvh (the ELF inside the bzImage, unpacked on the host)".to_string(),
        ),
        Err(e) => (kernel.path.clone(), format!("bzImage ({e})")),
    };
    Ok(Prepared {
        binary,
        kernel,
        boot_kernel,
        entry,
        image,
    })
}

/// Starts QEMU for `cfg` and connects to its agent socket. On any error QEMU is killed.
fn launch_qemu(cfg: &QemuConfig, prepared: &Prepared) -> Result<Launched, BackendError> {
    if cfg.socket.as_os_str().len() > MAX_SOCKET_PATH {
        return Err(BackendError::Setup(format!(
            "the agent socket path {} is longer than a unix socket address allows \
             ({MAX_SOCKET_PATH} bytes): set TMPDIR to a shorter directory",
            cfg.socket.display()
        )));
    }
    let _ = std::fs::remove_file(&cfg.socket);
    let argv = command_line(cfg);
    // QEMU's stderr and the guest's serial console share the log (both in append mode).
    let stderr = std::fs::File::create(&cfg.console_log)
        .and_then(|_| {
            std::fs::OpenOptions::new()
                .append(true)
                .open(&cfg.console_log)
        })
        .map_err(|e| BackendError::Spawn {
            what: cfg.console_log.display().to_string(),
            source: e,
        })?;
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(stderr));
    let mut child = spawn_in_own_group(&mut cmd).map_err(|e| BackendError::Spawn {
        what: argv[0].clone(),
        source: e,
    })?;
    let channel =
        connect(&mut child, &cfg.socket, &cfg.console_log).and_then(|s| match s.try_clone() {
            Ok(r) => Ok((r, s)),
            Err(e) => Err(BackendError::Setup(format!(
                "cannot duplicate the agent socket: {e}"
            ))),
        });
    let (reader, writer) = match channel {
        Ok(rw) => rw,
        Err(e) => {
            kill_and_reap(&mut child);
            return Err(e);
        }
    };
    let mut versions = std::collections::BTreeMap::new();
    if let Some(v) = qemu_version(&prepared.binary) {
        versions.insert("qemu".to_string(), v);
    }
    versions.insert("kernel".to_string(), prepared.kernel.version.clone());
    let tcg_threads = match (cfg.accel, cfg.vcpus > 1) {
        (Accel::Tcg, true) => "multi",
        (Accel::Tcg, false) => "single",
        (Accel::Kvm, _) => "n/a",
    };
    let settings = [
        ("accel", cfg.accel.name().to_string()),
        ("cpu", cfg.cpu.clone()),
        ("machine", cfg.machine.name().to_string()),
        (
            "channel",
            format!("virtio-serial port {PORT_NAME} on a unix socket"),
        ),
        ("tcg_threads", tcg_threads.to_string()),
        ("kernel", prepared.kernel.path.display().to_string()),
        ("kernel_entry", prepared.entry.clone()),
        (
            "initramfs",
            format!(
                "{} ({} bytes)",
                prepared.image.path.display(),
                prepared.image.size
            ),
        ),
        ("modules", prepared.image.modules.join(" ")),
    ];
    let mut settings: std::collections::BTreeMap<String, String> = settings
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    if let Some(d) = &cfg.disk {
        settings.insert("disk_model".into(), d.model.name().into());
        settings.insert(
            "disk_cache".into(),
            "none (O_DIRECT on the host: no host page cache)".into(),
        );
        settings.insert("disk_aio".into(), d.aio.into());
        settings.insert("disk".into(), d.path.display().to_string());
    }
    if let Some(n) = &cfg.net {
        settings.insert("nic".into(), n.nic.name().into());
        settings.insert(
            "net".into(),
            match n.mode {
                NetMode::User => "user (slirp, restrict=on, port forwarded from loopback)".into(),
                NetMode::Tap => format!(
                    "tap {} in a network namespace of hvbench's (no vhost-net)",
                    netns::TAP_NAME
                ),
            },
        );
    }
    Ok(Launched {
        processes: vec![child],
        reader: Box::new(reader),
        writer: Box::new(writer),
        console_log: Some(cfg.console_log.clone()),
        config: BackendConfig {
            command_line: argv,
            vcpus: Some(cfg.vcpus),
            memory_mib: Some(cfg.memory_mib),
            versions,
            settings,
        },
        attached: Default::default(),
    })
}

/// QEMU's own messages in the log (its lines start with the binary's name).
fn qemu_messages(log: &Path) -> String {
    let text = std::fs::read(log).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with(QEMU_BINARY))
        .collect();
    lines[lines.len().saturating_sub(3)..].join("; ")
}

/// Connects to QEMU's agent socket, retrying until it exists; fails with QEMU's messages if
/// QEMU exits first or never opens it.
fn connect(child: &mut Child, socket: &Path, log: &Path) -> Result<UnixStream, BackendError> {
    let deadline = Instant::now() + SOCKET_TIMEOUT;
    let mut pause = Duration::from_millis(1);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(BackendError::Setup(format!(
                "{QEMU_BINARY} exited ({status}) before the guest started: {}",
                qemu_messages(log)
            )));
        }
        match UnixStream::connect(socket) {
            Ok(s) => return Ok(s),
            Err(e) if Instant::now() >= deadline => {
                return Err(BackendError::Setup(format!(
                    "{QEMU_BINARY} did not open its agent socket {} within {SOCKET_TIMEOUT:?} \
                     ({e}): {}",
                    socket.display(),
                    qemu_messages(log)
                )));
            }
            Err(_) => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(20));
            }
        }
    }
}

fn launch(
    accel: Accel,
    backend: &str,
    spec: &GuestSpec,
    adjust: impl FnOnce(&mut QemuConfig),
) -> Result<Launched, BackendError> {
    let mut drivers: Vec<&str> = Vec::new();
    if let Some(d) = &spec.devices.disk {
        drivers.extend(d.model.modules());
    }
    if let Some(n) = &spec.devices.net {
        drivers.extend(n.nic.modules());
    }
    if spec.devices.rootfs.is_some() {
        drivers.extend(["virtio_blk", "ext4"]);
    }
    let prepared = prepare(&spec.agent, spec.kernel.as_deref(), &drivers)
        .map_err(|e| e.into_backend_error(backend))?;
    let mut cfg = QemuConfig::new(accel, spec, &prepared.boot_kernel, &prepared.image.path);
    cfg.binary = prepared.binary.clone();
    let mut attached = Attached::default();
    if let Some(d) = &spec.devices.disk {
        cfg.disk = Some(QemuDisk {
            path: d.image.clone(),
            model: d.model,
            read_only: !d.writable,
            aio: qemu_aio(&prepared.binary),
        });
        attached.disk = Some(d.model.guest_path().to_string());
    }
    if let Some(r) = &spec.devices.rootfs {
        let app = crate::devices::create_app_disk(&r.app_dir)
            .map_err(|e| BackendError::Setup(e.to_string()))?;
        cfg.app_disks = Some((r.ext4.clone(), app, qemu_aio(&prepared.binary)));
        // virtio-blk disks are named in the order of their PCI slots: after the io disk's.
        let first = match &spec.devices.disk {
            Some(d) if d.model == DiskModel::Virtio => b'b',
            _ => b'a',
        };
        attached.app_devices = Some((
            format!("/dev/vd{}", first as char),
            format!("/dev/vd{}", (first + 1) as char),
        ));
    }
    if let Some(n) = &spec.devices.net {
        let (host_port, web_port, endpoint) = match n.mode {
            NetMode::User => {
                let port = || {
                    free_loopback_port().map_err(|e| BackendError::Spawn {
                        what: "a loopback port to forward into the guest".into(),
                        source: e,
                    })
                };
                let (agent_port, web_port) = (port()?, port()?);
                let ep = NetEndpoint {
                    listen: format!("0.0.0.0:{GUEST_PORT}"),
                    connect: SocketAddr::from(([127, 0, 0, 1], agent_port)),
                    web_listen: format!("0.0.0.0:{WEB_PORT}"),
                    web_connect: SocketAddr::from(([127, 0, 0, 1], web_port)),
                    netns: None,
                };
                (agent_port, web_port, Some(ep))
            }
            NetMode::Tap => {
                cfg.prefix = crate::devices::tap_endpoint(&spec.label, &mut attached)
                    .map_err(BackendError::Setup)?;
                (0, 0, None)
            }
        };
        cfg.net = Some(QemuNet {
            nic: n.nic,
            mode: n.mode,
            host_port,
            web_port,
        });
        if let Some(ep) = endpoint {
            attached.net = Some(ep);
        }
    }
    adjust(&mut cfg);
    let mut launched = launch_qemu(&cfg, &prepared)?;
    launched.attached = attached;
    Ok(launched)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_qemu_is_unavailable_with_hint() {
        // `which` on an empty PATH finds nothing.
        assert!(which("definitely-not-a-program-hvbench").is_none());
    }
}
