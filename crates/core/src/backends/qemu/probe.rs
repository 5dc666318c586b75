//! What the QEMU probes find out: QEMU's version and I/O engine, the summary of the kernel and
//! initramfs a guest would boot, and whether KVM really runs a guest here (/dev/kvm's API
//! version, then a probe boot).

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use super::{prepare, qemu_messages, QemuKvm, KVM_PROBE_TIMEOUT};
use crate::agent::AgentBinary;
use crate::backends::Availability;
use crate::launch::host_tool::{run_bounded, version_line};

/// `io_uring` when this QEMU links liburing, else `native`.
pub(super) fn qemu_aio(binary: &Path) -> &'static str {
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
pub(super) fn qemu_version(binary: &Path) -> Option<String> {
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

/// What the probes report when QEMU, the kernel and the image are all there. Building the
/// image here also means the first guest's boot time does not include it.
pub(super) fn probe_detail(agent: &AgentBinary) -> Result<String, Availability> {
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

/// /dev/kvm exists, opens read-write and speaks the KVM API version 12.
pub(super) fn check_dev_kvm() -> Result<(), Availability> {
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
pub(super) fn probe_boot(backend: &QemuKvm, agent: &AgentBinary) -> Result<Duration, String> {
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
