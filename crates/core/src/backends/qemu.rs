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
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::{Availability, Backend, BackendConfig, BackendError, GuestSpec, Launched};
use crate::agent::AgentBinary;
use crate::devices::{
    free_loopback_port, Attached, DiskModel, NetEndpoint, NetMode, NicModel, GUEST_PORT, WEB_PORT,
};
use crate::image::{self, vmlinux, ImageError, Initramfs, KernelImage};
use crate::launch::host_tool::{run_bounded, version_line, which};
use crate::launch::{kill_and_reap, spawn_in_own_group};
use crate::netns;

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

/// Everything the QEMU command line depends on.
#[derive(Debug, Clone, PartialEq)]
pub struct QemuConfig {
    pub binary: PathBuf,
    pub label: String,
    pub accel: Accel,
    pub machine: Machine,
    /// The `-cpu` model (`max` under TCG, `host` under KVM).
    pub cpu: String,
    pub vcpus: u32,
    pub memory_mib: u32,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// Where the guest's serial console is written.
    pub console_log: PathBuf,
    /// The unix socket QEMU listens on for the agent channel.
    pub socket: PathBuf,
    /// Appended to the command line as they are (experiments and tests: `-S` makes a guest
    /// that never runs).
    pub extra_args: Vec<String>,
    /// The disk for the `io` suite.
    pub disk: Option<QemuDisk>,
    /// The applications' disks (virtio-blk): the root file system's ext4 image, read-only,
    /// and their own ext4 disk, in that order after the `io` disk.
    pub app_disks: Option<(PathBuf, PathBuf, &'static str)>,
    /// The network for the `net` suite.
    pub net: Option<QemuNet>,
    /// Runs QEMU inside a network namespace (`nsenter --net=... --`), for `--net tap`.
    pub prefix: Vec<String>,
}

/// A raw disk image attached with the host page cache bypassed.
#[derive(Debug, Clone, PartialEq)]
pub struct QemuDisk {
    pub path: PathBuf,
    pub model: DiskModel,
    pub read_only: bool,
    /// QEMU's asynchronous I/O engine on the host: `io_uring` when QEMU links liburing,
    /// else `native` (Linux AIO; both need `cache=none`, that is O_DIRECT on the host).
    pub aio: &'static str,
}

/// A NIC and how it reaches the host.
#[derive(Debug, Clone, PartialEq)]
pub struct QemuNet {
    pub nic: NicModel,
    pub mode: NetMode,
    /// User mode: the host loopback port forwarded to the agent's port in the guest.
    pub host_port: u16,
    /// User mode: the host loopback port forwarded to the guest's web server.
    pub web_port: u16,
}

/// The guest address of QEMU's user-mode network (its built-in DHCP range starts there).
pub const SLIRP_GUEST_ADDR: &str = "10.0.2.15";

impl QemuConfig {
    /// The standard configuration for `accel` in `workdir`.
    pub fn new(accel: Accel, spec: &GuestSpec, kernel: &Path, initrd: &Path) -> QemuConfig {
        QemuConfig {
            binary: PathBuf::from(QEMU_BINARY),
            label: spec.label.clone(),
            accel,
            machine: Machine::Q35,
            cpu: match accel {
                Accel::Tcg => "max".into(),
                Accel::Kvm => "host".into(),
            },
            vcpus: spec.vcpus.max(1),
            memory_mib: spec.memory_mib.max(64),
            kernel: kernel.to_path_buf(),
            initrd: initrd.to_path_buf(),
            console_log: spec.workdir.join("console.log"),
            socket: spec.workdir.join("agent.sock"),
            extra_args: Vec::new(),
            disk: None,
            app_disks: None,
            net: None,
            prefix: Vec::new(),
        }
    }
}

/// The kernel command line: the console, no reboot on panic, quiet boot, and the agent's
/// `hvbench_*` parameters (handed to init as environment variables).
///
/// Boot-time choices, measured under TCG here: `cryptomgr.notests` skips the crypto self-tests
/// (about 0.5 s of an emulated boot; the algorithms themselves are unchanged); `tsc=reliable`
/// skips the clocksource watchdog, so the guest does not switch clocks in the middle of a
/// measurement when the host is busy; the `i8042.*` flags skip probing a keyboard controller
/// nothing is attached to. CPU vulnerability mitigations are left as the kernel chooses: they
/// are part of what a guest costs.
pub fn kernel_append(cfg: &QemuConfig) -> String {
    let mut a = [
        "console=ttyS0",
        // Fewer console writes: every character is an emulated UART access.
        "quiet",
        "loglevel=4",
        // A kernel panic ends the machine at once (with -no-reboot, QEMU exits).
        "panic=-1",
        "cryptomgr.notests",
        "tsc=reliable",
        "i8042.noaux",
        "i8042.nomux",
        "i8042.nopnp",
        "i8042.dumbkbd",
    ]
    .join(" ");
    a.push_str(" hvbench_init=1 hvbench_channel=virtio:");
    a.push_str(PORT_NAME);
    if let Some(d) = &cfg.disk {
        a.push_str(" hvbench_disk=");
        a.push_str(d.model.guest_path());
    }
    if let Some(n) = &cfg.net {
        let addr = match n.mode {
            NetMode::User => SLIRP_GUEST_ADDR.to_string(),
            NetMode::Tap => netns::GUEST_ADDR.to_string(),
        };
        a.push_str(&format!(" hvbench_ip=auto:{addr}/24"));
    }
    a
}

/// A value inside a QEMU `key=value,...` option: commas are doubled.
fn opt_escape(value: &str) -> String {
    value.replace(',', ",,")
}

/// The QEMU command line, one argument per element; the first is the binary.
pub fn command_line(cfg: &QemuConfig) -> Vec<String> {
    let accel = match cfg.accel {
        Accel::Tcg if cfg.vcpus > 1 => "tcg,thread=multi".to_string(),
        Accel::Tcg => "tcg".to_string(),
        Accel::Kvm => "kvm".to_string(),
    };
    let mut v: Vec<String> = vec![cfg.binary.display().to_string()];
    let mut push = |args: &[&str]| v.extend(args.iter().map(|s| s.to_string()));
    push(&[
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
    ]);
    push(&[
        "-name",
        &format!("{},debug-threads=on", opt_escape(&cfg.label)),
    ]);
    push(&["-machine", cfg.machine.name()]);
    push(&["-accel", &accel, "-cpu", &cfg.cpu]);
    push(&[
        "-m",
        &cfg.memory_mib.to_string(),
        "-smp",
        &cfg.vcpus.to_string(),
    ]);
    push(&[
        "-kernel",
        &cfg.kernel.display().to_string(),
        "-initrd",
        &cfg.initrd.display().to_string(),
    ]);
    push(&["-append", &kernel_append(cfg)]);
    // The console log is opened in append mode because QEMU's own stderr goes to the same
    // file: a guest's error report then shows QEMU's complaints and the kernel's together.
    push(&[
        "-chardev",
        &format!(
            "file,id=console,path={},append=on",
            opt_escape(&cfg.console_log.display().to_string())
        ),
    ]);
    push(&["-serial", "chardev:console"]);
    push(&["-device", "virtio-serial-pci"]);
    push(&[
        "-chardev",
        &format!(
            "socket,id=agent,path={},server=on,wait=off",
            opt_escape(&cfg.socket.display().to_string())
        ),
    ]);
    push(&[
        "-device",
        &format!("virtserialport,chardev=agent,name={PORT_NAME}"),
    ]);
    if let Some(d) = &cfg.disk {
        let mut drive = format!(
            "file={},format=raw,if=none,id=hd0,cache=none,aio={}",
            opt_escape(&d.path.display().to_string()),
            d.aio
        );
        if d.read_only {
            drive.push_str(",readonly=on");
        }
        v.extend(["-drive".to_string(), drive]);
        let devices: &[&str] = match d.model {
            DiskModel::Virtio => &["virtio-blk-pci,drive=hd0"],
            // A PIIX3 IDE controller added to the q35 machine (Linux drives it with ata_piix).
            DiskModel::Ide => &["piix3-ide,id=pata", "ide-hd,drive=hd0,bus=pata.0"],
            // The AHCI controller q35 has built in.
            DiskModel::Ahci => &["ide-hd,drive=hd0,bus=ide.0"],
        };
        for dev in devices {
            v.extend(["-device".to_string(), dev.to_string()]);
        }
    }
    if let Some((rootfs, app, aio)) = &cfg.app_disks {
        for (id, path, ro) in [("rootfs", rootfs, true), ("appdisk", app, false)] {
            let mut drive = format!(
                "file={},format=raw,if=none,id={id},cache=none,aio={}",
                opt_escape(&path.display().to_string()),
                aio
            );
            if ro {
                // Shared by every guest of the run, read-only for all of them (UML's ubd and
                // other QEMUs included): QEMU's image lock would refuse to share it with UML.
                drive.push_str(",readonly=on,file.locking=off");
            }
            v.extend(["-drive".to_string(), drive]);
            v.extend(["-device".to_string(), format!("virtio-blk-pci,drive={id}")]);
        }
    }
    if let Some(n) = &cfg.net {
        let netdev = match n.mode {
            // restrict=on: the guest reaches nothing but the forwarded port.
            NetMode::User => format!(
                "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:{}-{SLIRP_GUEST_ADDR}:{GUEST_PORT},\
                 hostfwd=tcp:127.0.0.1:{}-{SLIRP_GUEST_ADDR}:{WEB_PORT}",
                n.host_port, n.web_port
            ),
            NetMode::Tap => format!(
                "tap,id=n0,ifname={},script=no,downscript=no",
                netns::TAP_NAME
            ),
        };
        v.extend([
            "-netdev".to_string(),
            netdev,
            "-device".to_string(),
            format!("{},netdev=n0", n.nic.qemu_device()),
        ]);
    }
    v.extend(cfg.extra_args.iter().cloned());
    if cfg.prefix.is_empty() {
        v
    } else {
        cfg.prefix.iter().cloned().chain(v).collect()
    }
}

/// `io_uring` when this QEMU links liburing, else `native`.
fn qemu_aio(binary: &Path) -> &'static str {
    static AIO: OnceLock<&'static str> = OnceLock::new();
    AIO.get_or_init(|| {
        let out = run_bounded(
            Command::new("ldd").arg(binary),
            Stdio::null(),
            Duration::from_secs(5),
        );
        match out {
            Ok(o) if o.stdout.contains("liburing") => "io_uring",
            _ => "native",
        }
    })
}

/// `qemu-system-x86_64 --version`, first line's version number.
fn qemu_version(binary: &Path) -> Option<String> {
    static VERSION: OnceLock<Option<String>> = OnceLock::new();
    VERSION
        .get_or_init(|| {
            let first = version_line(binary, &["--version"])?;
            let v = first
                .split_whitespace()
                .skip_while(|w| *w != "version")
                .nth(1)?;
            Some(v.to_string())
        })
        .clone()
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

/// A QEMU backend whose configuration is adjusted before launch: for tests (a guest that
/// hangs) and for experiments (another machine type). Not in [`super::all`].
pub struct QemuCustom {
    pub name: &'static str,
    pub accel: Accel,
    pub adjust: fn(&mut QemuConfig),
}

impl Backend for QemuCustom {
    fn name(&self) -> &'static str {
        self.name
    }

    fn technique(&self) -> &'static str {
        "QEMU with an adjusted configuration"
    }

    fn probe(&self, agent: &AgentBinary) -> Availability {
        match probe_detail(agent) {
            Ok(detail) => Availability::Available { detail },
            Err(a) => a,
        }
    }

    fn launch(&self, spec: &GuestSpec) -> Result<Launched, BackendError> {
        launch(self.accel, self.name, spec, self.adjust)
    }
}

/// What the probes report when QEMU, the kernel and the image are all there. Building the
/// image here also means the first guest's boot time does not include it.
fn probe_detail(agent: &AgentBinary) -> Result<String, Availability> {
    let p = prepare(agent, None, &[]).map_err(|e| e.availability())?;
    let qemu = qemu_version(&p.binary).unwrap_or_else(|| "of unknown version".into());
    let entry = p.entry.split(' ').next().unwrap_or_default();
    Ok(format!(
        "qemu {qemu}, kernel {} ({entry} entry), machine q35, initramfs {} KiB with {} modules",
        p.kernel.version,
        p.image.size / 1024,
        p.image.modules.len()
    ))
}

/// Full-system emulation by dynamic binary translation.
pub struct QemuTcg;

impl Backend for QemuTcg {
    fn name(&self) -> &'static str {
        "qemu-tcg"
    }

    fn technique(&self) -> &'static str {
        "full-system emulation by dynamic binary translation (QEMU TCG)"
    }

    fn probe(&self, agent: &AgentBinary) -> Availability {
        static PROBED: OnceLock<Availability> = OnceLock::new();
        PROBED
            .get_or_init(|| match probe_detail(agent) {
                Ok(detail) => Availability::Available {
                    detail: format!("{detail}, -cpu max"),
                },
                Err(a) => a,
            })
            .clone()
    }

    fn launch(&self, spec: &GuestSpec) -> Result<Launched, BackendError> {
        launch(Accel::Tcg, self.name(), spec, |_| {})
    }

    fn hello_timeout(&self) -> Duration {
        // An emulated boot takes 2-3 s alone here, but many guests at once share the cores.
        Duration::from_secs(60)
    }
}

/// Hardware-assisted virtualization, after a probe boot proved it works here.
pub struct QemuKvm;

impl QemuKvm {
    fn probe_uncached(&self, agent: &AgentBinary) -> Availability {
        if let Err(a) = check_dev_kvm() {
            return a;
        }
        let detail = match probe_detail(agent) {
            Ok(d) => d,
            Err(a) => return a,
        };
        match probe_boot(self, agent) {
            Ok(boot) => Availability::Available {
                detail: format!(
                    "{detail}, -cpu host, a probe guest said hello in {} ms",
                    boot.as_millis()
                ),
            },
            Err(why) => Availability::Unavailable {
                reason: format!(
                    "/dev/kvm is present but a probe guest did not boot within {} s: {why}",
                    KVM_PROBE_TIMEOUT.as_secs()
                ),
                hint: "KVM cannot run guests on this host (nested virtualization off or \
                       broken): use qemu-tcg, or a host with working VT-x/AMD-V"
                    .into(),
            },
        }
    }
}

/// /dev/kvm exists, opens read-write and speaks the KVM API version 12.
fn check_dev_kvm() -> Result<(), Availability> {
    let hint = "enable hardware virtualization (VT-x/AMD-V, or nested virtualization for a VM) \
                and load kvm_intel or kvm_amd";
    let unavailable = |reason: String, hint: &str| Availability::Unavailable {
        reason,
        hint: hint.into(),
    };
    let f = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(unavailable("/dev/kvm does not exist".into(), hint))
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(unavailable(
                format!("cannot open /dev/kvm read-write: {e}"),
                "add your user to the kvm group (`adduser $USER kvm`, then log in again)",
            ))
        }
        Err(e) => return Err(unavailable(format!("cannot open /dev/kvm: {e}"), hint)),
    };
    const KVM_GET_API_VERSION: libc::c_ulong = 0xAE00;
    // SAFETY: KVM_GET_API_VERSION takes no argument and only returns a number; the fd is open.
    let v = unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&f), KVM_GET_API_VERSION, 0) };
    if v != 12 {
        return Err(unavailable(
            format!("/dev/kvm answered API version {v}, not 12"),
            hint,
        ));
    }
    Ok(())
}

/// Boots one small guest with KVM and waits for its hello; the guest is killed on every path
/// (dropping a `Guest` kills its process group). Errs with what went wrong, QEMU's own words
/// first.
fn probe_boot(backend: &QemuKvm, agent: &AgentBinary) -> Result<Duration, String> {
    use crate::guest::{probe_boot, GuestError, ProbeBootError};
    match probe_boot(backend, agent, 256, KVM_PROBE_TIMEOUT) {
        Ok(boot) => Ok(boot),
        Err(ProbeBootError::NoWorkdir(e)) => Err(format!("cannot create a work directory: {e}")),
        Err(ProbeBootError::Failed { error, workdir }) => {
            let qemu = qemu_messages(&workdir.path().join("console.log"));
            let text = error.to_string();
            let first = text.lines().next().unwrap_or_default().trim().to_string();
            Err(match error {
                _ if qemu.is_empty() => first,
                // A guest that hung: say so, with whatever QEMU warned about.
                GuestError::NoHello { .. } => format!("{first}; QEMU said: {qemu}"),
                // QEMU died: its own words say more than the channel error that followed.
                _ => qemu,
            })
        }
    }
}

impl Backend for QemuKvm {
    fn name(&self) -> &'static str {
        "qemu-kvm"
    }

    fn technique(&self) -> &'static str {
        "hardware-assisted virtualization (QEMU with KVM)"
    }

    fn probe(&self, agent: &AgentBinary) -> Availability {
        static PROBED: OnceLock<Availability> = OnceLock::new();
        PROBED.get_or_init(|| self.probe_uncached(agent)).clone()
    }

    fn launch(&self, spec: &GuestSpec) -> Result<Launched, BackendError> {
        launch(Accel::Kvm, self.name(), spec, |_| {})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> GuestSpec {
        GuestSpec {
            vcpus: 2,
            memory_mib: 512,
            kernel: None,
            agent: AgentBinary {
                path: "/a".into(),
                sha256: String::new(),
                size: 0,
            },
            workdir: PathBuf::from("/tmp/w"),
            label: "qemu-tcg-0".into(),
            devices: Default::default(),
        }
    }

    fn arg_after<'a>(v: &'a [String], flag: &str) -> Vec<&'a str> {
        v.windows(2)
            .filter(|w| w[0] == flag)
            .map(|w| w[1].as_str())
            .collect()
    }

    #[test]
    fn tcg_command_line() {
        let cfg = QemuConfig::new(
            Accel::Tcg,
            &spec(),
            Path::new("/boot/vmlinuz-6.1"),
            Path::new("/c/i.cpio"),
        );
        let v = command_line(&cfg);
        assert_eq!(v[0], "qemu-system-x86_64");
        for f in ["-nodefaults", "-no-user-config", "-no-reboot"] {
            assert!(v.iter().any(|a| a == f), "{f} missing in {v:?}");
        }
        assert_eq!(arg_after(&v, "-display"), ["none"]);
        assert_eq!(arg_after(&v, "-name"), ["qemu-tcg-0,debug-threads=on"]);
        assert_eq!(arg_after(&v, "-accel"), ["tcg,thread=multi"]);
        assert_eq!(arg_after(&v, "-cpu"), ["max"]);
        assert_eq!(arg_after(&v, "-m"), ["512"]);
        assert_eq!(arg_after(&v, "-smp"), ["2"]);
        assert_eq!(arg_after(&v, "-machine"), ["q35"]);
        assert_eq!(arg_after(&v, "-kernel"), ["/boot/vmlinuz-6.1"]);
        assert_eq!(arg_after(&v, "-initrd"), ["/c/i.cpio"]);
        assert_eq!(arg_after(&v, "-serial"), ["chardev:console"]);
        assert_eq!(
            arg_after(&v, "-device"),
            [
                "virtio-serial-pci",
                "virtserialport,chardev=agent,name=org.hvbench.agent"
            ]
        );
        assert_eq!(
            arg_after(&v, "-chardev"),
            [
                "file,id=console,path=/tmp/w/console.log,append=on",
                "socket,id=agent,path=/tmp/w/agent.sock,server=on,wait=off"
            ]
        );
        let append = arg_after(&v, "-append");
        assert_eq!(append.len(), 1);
        let words: Vec<&str> = append[0].split(' ').collect();
        for w in [
            "console=ttyS0",
            "panic=-1",
            "hvbench_init=1",
            "hvbench_channel=virtio:org.hvbench.agent",
        ] {
            assert!(words.contains(&w), "{w} missing in {words:?}");
        }
        // An argument vector, not a shell line: the append string is one element, no quoting.
        assert!(!v.iter().any(|a| a.contains('"') || a.contains('\'')));
        assert!(!v.iter().any(|a| a == "sh" || a == "-c"));
    }

    #[test]
    fn single_vcpu_tcg_and_kvm() {
        let mut s = spec();
        s.vcpus = 1;
        let v = command_line(&QemuConfig::new(
            Accel::Tcg,
            &s,
            Path::new("/k"),
            Path::new("/i"),
        ));
        assert_eq!(arg_after(&v, "-accel"), ["tcg"]);
        let v = command_line(&QemuConfig::new(
            Accel::Kvm,
            &s,
            Path::new("/k"),
            Path::new("/i"),
        ));
        assert_eq!(arg_after(&v, "-accel"), ["kvm"]);
        assert_eq!(arg_after(&v, "-cpu"), ["host"]);
    }

    #[test]
    fn odd_paths_stay_one_argument_and_commas_are_escaped() {
        let mut s = spec();
        s.workdir = PathBuf::from("/tmp/a dir; rm -rf x,server=off");
        s.label = "a,b".into();
        let v = command_line(&QemuConfig::new(
            Accel::Tcg,
            &s,
            Path::new("/k"),
            Path::new("/i"),
        ));
        assert_eq!(
            arg_after(&v, "-chardev"),
            [
                "file,id=console,path=/tmp/a dir; rm -rf x,,server=off/console.log,append=on",
                "socket,id=agent,path=/tmp/a dir; rm -rf x,,server=off/agent.sock,server=on,wait=off"
            ]
        );
        assert_eq!(arg_after(&v, "-name"), ["a,,b,debug-threads=on"]);
    }

    #[test]
    fn missing_qemu_is_unavailable_with_hint() {
        // `which` on an empty PATH finds nothing.
        assert!(which("definitely-not-a-program-hvbench").is_none());
    }
}
