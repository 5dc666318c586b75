//! The QEMU command line: the configuration it is built from ([`QemuConfig`], with the
//! `io` suite's disk and the `net` suite's NIC), the kernel command line, and the argument
//! vector with its devices.

use std::path::{Path, PathBuf};

use super::{Accel, Machine, PORT_NAME, QEMU_BINARY};
use crate::backends::GuestSpec;
use crate::devices::{DiskModel, NetMode, NicModel, GUEST_PORT, WEB_PORT};
use crate::netns;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::AgentBinary;

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
}
