//! `qemu-tcg` and `qemu-kvm`: a distribution kernel with the agent initramfs in
//! `qemu-system-x86_64`.
//!
//! TCG is full-system emulation by dynamic binary translation: every guest instruction is
//! translated, nothing runs directly. KVM runs the guest on the CPU with hardware
//! virtualization; it is offered only after a probe boot proves that this host's /dev/kvm really
//! runs a guest (a /dev/kvm that exists is not enough: nested setups may hang).
//!
//! The agent's channel is a virtio-serial port named [`PORT_NAME`], backed by a unix socket in
//! the guest's private work directory; the kernel console goes to `console.log` there and
//! QEMU's own stderr to `qemu.stderr`. The command line is an argument vector built by
//! [`command_line`], never a shell string.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::{Availability, Backend, BackendConfig, BackendError, GuestSpec, Launched};
use crate::agent::AgentBinary;
use crate::guest::spawn_in_own_group;
use crate::image::{self, ImageError, Initramfs, KernelImage};

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

/// The machine type QEMU emulates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Machine {
    /// The modern PC (PCIe, ICH9).
    Q35,
    /// The classic PC (i440FX, PIIX).
    Pc,
    /// The minimal machine: no PCI, virtio-mmio devices described by ACPI.
    Microvm,
}

impl Machine {
    pub fn name(self) -> &'static str {
        match self {
            Machine::Q35 => "q35",
            Machine::Pc => "pc",
            Machine::Microvm => "microvm",
        }
    }

    /// The `-machine` argument.
    fn arg(self) -> &'static str {
        match self {
            Machine::Q35 => "q35",
            Machine::Pc => "pc",
            // No legacy devices but the serial port the console needs; ACPI describes the
            // virtio-mmio devices to the kernel.
            Machine::Microvm => {
                "microvm,x-option-roms=off,pit=off,pic=off,rtc=off,isa-serial=on,acpi=on"
            }
        }
    }

    /// The virtio-serial controller on this machine's bus.
    fn serial_controller(self) -> &'static str {
        match self {
            Machine::Microvm => "virtio-serial-device",
            _ => "virtio-serial-pci",
        }
    }

    /// Modules the guest needs for this machine's transport, beyond the standard set.
    pub fn extra_modules(self) -> &'static [&'static str] {
        match self {
            Machine::Microvm => &["virtio_mmio"],
            _ => &[],
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
}

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
        }
    }
}

/// The kernel command line: the console, no reboot on panic, quiet boot, and the agent's
/// `hvbench_*` parameters (handed to init as environment variables).
pub fn kernel_append(cfg: &QemuConfig) -> String {
    let mut a = vec![
        "console=ttyS0",
        // Fewer console writes: every character is an emulated UART access.
        "quiet",
        "loglevel=4",
        // A kernel panic ends the machine at once (with -no-reboot, QEMU exits).
        "panic=-1",
        // Skip the TSC stability watchdog and its calibration against slow emulated timers.
        "tsc=reliable",
        // No keyboard controller to probe: -nodefaults left none with anything behind it.
        "i8042.noaux",
        "i8042.nomux",
        "i8042.nopnp",
        "i8042.dumbkbd",
    ];
    if cfg.machine == Machine::Microvm {
        a.push("acpi=on");
    }
    let mut s = a.join(" ");
    s.push_str(" hvbench_init=1 hvbench_channel=virtio:");
    s.push_str(PORT_NAME);
    s
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
    push(&["-name", &format!("{},debug-threads=on", cfg.label)]);
    push(&["-machine", cfg.machine.arg()]);
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
    push(&["-serial", &format!("file:{}", cfg.console_log.display())]);
    push(&["-device", cfg.machine.serial_controller()]);
    push(&[
        "-chardev",
        &format!(
            "socket,id=agent,path={},server=on,wait=off",
            cfg.socket.display()
        ),
    ]);
    push(&[
        "-device",
        &format!("virtserialport,chardev=agent,name={PORT_NAME}"),
    ]);
    v
}

/// Finds a program on PATH.
fn which(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| {
            std::fs::metadata(p)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// `qemu-system-x86_64 --version`, first line's version number.
fn qemu_version(binary: &Path) -> Option<String> {
    static VERSION: OnceLock<Option<String>> = OnceLock::new();
    VERSION
        .get_or_init(|| {
            let out = Command::new(binary)
                .arg("--version")
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .output()
                .ok()?;
            let text = String::from_utf8_lossy(&out.stdout);
            let first = text.lines().next()?;
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
    image: Initramfs,
}

fn unavailable(backend: &str, reason: String, hint: &str) -> BackendError {
    BackendError::Unavailable {
        backend: backend.into(),
        reason,
        hint: hint.into(),
    }
}

fn image_unavailable(backend: &str, e: ImageError) -> BackendError {
    // Every ImageError message names its fix; split it for the reason/hint pair.
    let text = e.to_string();
    let hint = match &e {
        ImageError::NoKernel { .. } | ImageError::MissingModule { .. } => {
            "apt-get install linux-image-cloud-amd64"
        }
        ImageError::KernelUnreadable { .. } => "chmod 0644 the kernel, or run as root",
        ImageError::TooLarge { .. } => "cargo build --release",
        _ => "see the reason",
    };
    unavailable(backend, text, hint)
}

fn prepare(
    backend: &str,
    agent: &AgentBinary,
    kernel: Option<&Path>,
    machine: Machine,
) -> Result<Prepared, BackendError> {
    let binary = which(QEMU_BINARY)
        .ok_or_else(|| unavailable(backend, format!("{QEMU_BINARY} is not on PATH"), QEMU_HINT))?;
    let kernel = KernelImage::find(kernel).map_err(|e| image_unavailable(backend, e))?;
    let image = image::build_initramfs(agent, &kernel, machine.extra_modules())
        .map_err(|e| image_unavailable(backend, e))?;
    Ok(Prepared {
        binary,
        kernel,
        image,
    })
}

/// Starts QEMU for `cfg` and connects to its agent socket.
fn launch_qemu(
    cfg: &QemuConfig,
    workdir: &Path,
    prepared: &Prepared,
) -> Result<Launched, BackendError> {
    if cfg.socket.as_os_str().len() > MAX_SOCKET_PATH {
        return Err(BackendError::Setup(format!(
            "the agent socket path {} is longer than a unix socket address allows ({MAX_SOCKET_PATH} bytes): set TMPDIR to a shorter directory",
            cfg.socket.display()
        )));
    }
    let _ = std::fs::remove_file(&cfg.socket);
    let argv = command_line(cfg);
    let stderr_path = workdir.join("qemu.stderr");
    let stderr = std::fs::File::create(&stderr_path).map_err(|e| BackendError::Spawn {
        what: stderr_path.display().to_string(),
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
    let stream = match connect(&mut child, &cfg.socket, &stderr_path) {
        Ok(s) => s,
        Err(e) => {
            kill_and_reap(&mut child);
            return Err(e);
        }
    };
    let reader = match stream.try_clone() {
        Ok(r) => r,
        Err(e) => {
            kill_and_reap(&mut child);
            return Err(BackendError::Setup(format!(
                "cannot duplicate the agent socket: {e}"
            )));
        }
    };
    let mut versions = std::collections::BTreeMap::new();
    if let Some(v) = qemu_version(&prepared.binary) {
        versions.insert("qemu".to_string(), v);
    }
    versions.insert("kernel".to_string(), prepared.kernel.version.clone());
    let settings = [
        ("accel", cfg.accel.name().to_string()),
        ("cpu", cfg.cpu.clone()),
        ("machine", cfg.machine.name().to_string()),
        (
            "channel",
            format!("virtio-serial port {PORT_NAME} on a unix socket"),
        ),
        (
            "tcg_threads",
            if cfg.accel == Accel::Tcg && cfg.vcpus > 1 {
                "multi"
            } else {
                "single"
            }
            .to_string(),
        ),
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
    Ok(Launched {
        processes: vec![child],
        reader: Box::new(reader),
        writer: Box::new(stream),
        console_log: Some(cfg.console_log.clone()),
        config: BackendConfig {
            command_line: argv,
            vcpus: Some(cfg.vcpus),
            memory_mib: Some(cfg.memory_mib),
            versions,
            settings: settings
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        },
    })
}

/// Connects to QEMU's agent socket, retrying until it exists; fails with QEMU's stderr if QEMU
/// exits first.
fn connect(
    child: &mut Child,
    socket: &Path,
    stderr_path: &Path,
) -> Result<UnixStream, BackendError> {
    let deadline = Instant::now() + SOCKET_TIMEOUT;
    let mut pause = Duration::from_millis(1);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let err = std::fs::read_to_string(stderr_path).unwrap_or_default();
            return Err(BackendError::Setup(format!(
                "{QEMU_BINARY} exited ({status}) before the guest started: {}",
                err.trim()
            )));
        }
        match UnixStream::connect(socket) {
            Ok(s) => return Ok(s),
            Err(e) if Instant::now() >= deadline => {
                let err = std::fs::read_to_string(stderr_path).unwrap_or_default();
                return Err(BackendError::Setup(format!(
                    "{QEMU_BINARY} did not open its agent socket {} within {SOCKET_TIMEOUT:?} ({e}); its stderr: {}",
                    socket.display(),
                    err.trim()
                )));
            }
            Err(_) => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(20));
            }
        }
    }
}

fn kill_and_reap(child: &mut Child) {
    let pgid = child.id() as libc::pid_t;
    // SAFETY: kill has no memory-safety preconditions; the negative pid names the process group
    // spawn_in_own_group made for this child, so nothing else is signalled.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn launch(accel: Accel, backend: &str, spec: &GuestSpec) -> Result<Launched, BackendError> {
    let machine = Machine::Q35;
    let prepared = prepare(backend, &spec.agent, spec.kernel.as_deref(), machine)?;
    let mut cfg = QemuConfig::new(accel, spec, &prepared.kernel.path, &prepared.image.path);
    cfg.binary = prepared.binary.clone();
    cfg.machine = machine;
    launch_qemu(&cfg, &spec.workdir, &prepared)
}

fn probe_detail(
    agent: &AgentBinary,
    backend: &str,
    machine: Machine,
) -> Result<String, Availability> {
    let p = prepare(backend, agent, None, machine).map_err(|e| match e {
        BackendError::Unavailable { reason, hint, .. } => {
            Availability::Unavailable { reason, hint }
        }
        other => Availability::Unavailable {
            reason: other.to_string(),
            hint: "see the reason".into(),
        },
    })?;
    let qemu = qemu_version(&p.binary).unwrap_or_else(|| "unknown version".into());
    Ok(format!(
        "qemu {qemu}, kernel {}, initramfs {} KiB",
        p.kernel.version,
        p.image.size / 1024
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
            .get_or_init(|| match probe_detail(agent, self.name(), Machine::Q35) {
                Ok(detail) => Availability::Available {
                    detail: format!("{detail}, -cpu max"),
                },
                Err(a) => a,
            })
            .clone()
    }

    fn launch(&self, spec: &GuestSpec) -> Result<Launched, BackendError> {
        launch(Accel::Tcg, self.name(), spec)
    }

    fn hello_timeout(&self) -> Duration {
        // Emulated boots are ~1 s alone, but many at once on a small host share its cores.
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
        let detail = match probe_detail(agent, self.name(), Machine::Q35) {
            Ok(d) => d,
            Err(a) => return a,
        };
        let started = Instant::now();
        match probe_boot(self, agent) {
            Ok(boot) => Availability::Available {
                detail: format!("{detail}, -cpu host, probe guest said hello in {} ms", boot.as_millis()),
            },
            Err(e) => Availability::Unavailable {
                reason: format!(
                    "/dev/kvm is present but a probe guest did not boot within {}s ({} elapsed): {}",
                    KVM_PROBE_TIMEOUT.as_secs(),
                    format_args!("{:.1}s", started.elapsed().as_secs_f64()),
                    first_line(&e)
                ),
                hint: "KVM does not run guests here (nested virtualization off or broken); use qemu-tcg, or a host with working VT-x/AMD-V".into(),
            },
        }
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").chars().take(300).collect()
}

/// /dev/kvm exists, opens read-write and speaks the KVM API version 12.
fn check_dev_kvm() -> Result<(), Availability> {
    let hint = "enable hardware virtualization (VT-x/AMD-V, or nested virtualization for a VM) and load kvm_intel or kvm_amd";
    let f = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Availability::Unavailable {
                reason: "/dev/kvm does not exist".into(),
                hint: hint.into(),
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(Availability::Unavailable {
                reason: format!("cannot open /dev/kvm read-write: {e}"),
                hint: "add your user to the kvm group (`adduser $USER kvm`, then log in again)"
                    .into(),
            })
        }
        Err(e) => {
            return Err(Availability::Unavailable {
                reason: format!("cannot open /dev/kvm: {e}"),
                hint: hint.into(),
            })
        }
    };
    const KVM_GET_API_VERSION: libc::c_ulong = 0xAE00;
    // SAFETY: KVM_GET_API_VERSION takes no argument and only returns a number; the fd is open.
    let v = unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&f), KVM_GET_API_VERSION, 0) };
    if v != 12 {
        return Err(Availability::Unavailable {
            reason: format!("/dev/kvm answered API version {v}, not 12"),
            hint: hint.into(),
        });
    }
    Ok(())
}

/// Boots one small guest with KVM and waits for its hello; the guest is killed on every path.
fn probe_boot(backend: &QemuKvm, agent: &AgentBinary) -> Result<Duration, String> {
    let workdir = crate::workdir::WorkDir::new("qemu-kvm-probe")
        .map_err(|e| format!("cannot create a work directory: {e}"))?;
    let spec = GuestSpec {
        vcpus: 1,
        memory_mib: 256,
        kernel: None,
        agent: agent.clone(),
        workdir: workdir.path().to_path_buf(),
        label: "qemu-kvm-probe".into(),
    };
    let guest =
        crate::guest::Guest::start(backend, &spec, KVM_PROBE_TIMEOUT).map_err(|e| e.to_string())?;
    let boot = guest.boot;
    guest.shutdown(Duration::from_secs(2));
    Ok(boot)
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
        launch(Accel::Kvm, self.name(), spec)
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
        assert_eq!(arg_after(&v, "-serial"), ["file:/tmp/w/console.log"]);
        assert_eq!(
            arg_after(&v, "-device"),
            [
                "virtio-serial-pci",
                "virtserialport,chardev=agent,name=org.hvbench.agent"
            ]
        );
        assert_eq!(
            arg_after(&v, "-chardev"),
            ["socket,id=agent,path=/tmp/w/agent.sock,server=on,wait=off"]
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
    fn paths_with_spaces_stay_one_argument() {
        let mut s = spec();
        s.workdir = PathBuf::from("/tmp/a dir; rm -rf x");
        let v = command_line(&QemuConfig::new(
            Accel::Tcg,
            &s,
            Path::new("/k"),
            Path::new("/i"),
        ));
        assert_eq!(
            arg_after(&v, "-serial"),
            ["file:/tmp/a dir; rm -rf x/console.log"]
        );
    }

    #[test]
    fn microvm_uses_virtio_mmio() {
        let mut cfg = QemuConfig::new(Accel::Tcg, &spec(), Path::new("/k"), Path::new("/i"));
        cfg.machine = Machine::Microvm;
        let v = command_line(&cfg);
        assert!(arg_after(&v, "-machine")[0].starts_with("microvm"));
        assert_eq!(arg_after(&v, "-device")[0], "virtio-serial-device");
        assert_eq!(Machine::Microvm.extra_modules(), ["virtio_mmio"]);
    }

    #[test]
    fn missing_qemu_is_unavailable_with_hint() {
        // `which` on an empty PATH finds nothing.
        assert!(which("definitely-not-a-program-hvbench").is_none());
    }
}
