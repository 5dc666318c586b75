//! `uml`: User-Mode Linux, a Linux kernel built to run as an ordinary host process
//! (`linux.uml` from Debian's `user-mode-linux`), booting the agent initramfs.
//!
//! The guest kernel is paravirtualized to the extreme: there is no hardware at all, its
//! "devices" are host files and descriptors, and its processes are host processes that the
//! kernel process drives with ptrace (every guest system call is a host ptrace stop). It is the
//! same initramfs design as the QEMU guests (the agent as `/init`), but without modules: UML has
//! its own release (`/lib/modules/<host release>` does not apply), no virtio transport, and
//! everything the agent uses (devtmpfs, its tty lines, loopback) built in
//! ([`crate::image::ModuleSet::none`]).
//!
//! ## Channel
//! The agent gets a line of its own, not the console: UML console line 1 is attached to
//! descriptor [`AGENT_FD`] (`con1=fd:3`), which UML inherits as one end of a socketpair whose
//! other end the host keeps; the agent opens `/dev/tty1` (`hvbench_channel=tty1`) and puts it in
//! raw mode. Console line 0 (the kernel console, and the agent's stdout and stderr) writes to
//! `console.log` in the work directory (`con0=null,fd:1`), so kernel messages never interleave
//! with protocol lines. No other console or serial line exists (`con=none ssl=none`):
//! Debian's defaults would open an xterm per console and host ptys for serial lines, and every
//! device costs boot time (below). UML says so for each console line it leaves out, 62 lines
//! of `setup_one_line failed ... configured as 'none'` at the top of `console.log`.
//!
//! ## Command line
//! An argument vector built by [`command_line`]; UML joins its arguments into the kernel
//! command line, which is split at spaces, so no argument may hold a path the user chose.
//! UML therefore runs in the guest's work directory and names everything relatively: the
//! initramfs is a symlink [`INITRD_NAME`] there, `uml_dir=.` puts UML's per-machine directory
//! (`<umid>/` with its pid file and management socket) there too, and nothing goes to
//! `~/.uml`. The current directory also keeps UML's default block device (`ubd0` is the file
//! `root_fs` in the current directory, opened read-write if it exists) away from files
//! hvbench did not create. Guest memory is a file UML opens with `O_TMPFILE` (it never has a
//! name, so nothing is left behind) in `TMPDIR`: the work directory when it is a tmpfs, else
//! `/dev/shm`, since a memory file on a disk file system is written back to the disk.
//!
//! ## Boot time
//! Debian's UML kernel boots in over a second here, nearly all of it spent on three things
//! these guests do not need, each skipped by a kernel parameter. Launch to hello on this
//! project's 2-core host (load about 1.7 from other work; median of 7, the variants taking
//! turns: the ignored test `uml_boot_time_with_and_without_shortcuts`): 66 ms as configured,
//! 1.22 s with none of the shortcuts, and with all but one:
//! - 0.91 s with the RAID-6 parity benchmark (`initcall_blacklist=raid6_select_algo`; no
//!   guest here computes RAID-6 parity: no md RAID, no btrfs RAID 5/6), 16 jiffies per
//!   algorithm at HZ=100;
//! - 0.29 s with the 512 legacy BSD pty devices (`pty.legacy_count=0` drops them): every
//!   device the kernel registers runs the uevent helper (`/sbin/hotplug`, built in), and in UML
//!   even a helper whose exec fails first creates an address space, that is a host process;
//! - 0.15 s with the delay-loop calibration (`lpj=`, taken from the host: see [`lpj_for`]).
//!
//! On a busier host (load 3 to 5) the same boots took 0.12 s as configured and 1.9 s with no
//! shortcut: each host process and ptrace stop waits for a core.
//!
//! ## Processes and CPUs
//! `linux.uml` calls `setsid()` first; as the leader of the process group
//! [`spawn_in_own_group`] made, it cannot (EPERM), so it and every helper it clones (two I/O
//! helpers, one traced process per guest address space) stay in that group, which the guest's
//! kill takes whole (UML's own panic path signals its group too). The I/O helpers share the
//! kernel process's descriptors but survive it when it alone is killed: the channel watches
//! the kernel process as well as the socket (see `ExitAwareReader`), and the guest kills the
//! group even after its leader died. Debian's UML 6.1 is uniprocessor (`CONFIG_NR_CPUS=1`): a
//! guest always runs one CPU, and asking for more is recorded as such in the configuration.

use crate::devices::Attached;
use crate::netns;
use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use super::open_console;
use super::{Availability, Backend, BackendConfig, BackendError, GuestSpec, Launched};
use crate::agent::AgentBinary;
use crate::image::{self, Initramfs, ModuleSet};
use crate::launch::{kill_and_reap, spawn_in_own_group};

mod cmdline;
pub mod diagnose;
pub mod kernel;
mod probe;

use cmdline::recorded_settings;
pub use cmdline::{
    command_line, umid_for, UmlConfig, APP_DISK_NAME, DISK_NAME, GUEST_APP_DISK, GUEST_DISK,
    GUEST_NIC, GUEST_ROOTFS_DISK, ROOTFS_NAME,
};
pub use kernel::{lpj_for, parse_config, UmlKernel, INSTALLED_UML, UML_BINARY};
use probe::{probe_candidates, Probed};

/// The guest tty the agent talks on: console line 1.
pub const AGENT_TTY: &str = "tty1";
/// The descriptor UML inherits for the agent's line.
pub const AGENT_FD: i32 = 3;
/// The initramfs's name in the guest's work directory (a symlink to the cached image).
pub const INITRD_NAME: &str = "initramfs.cpio";
/// The boot-time RAID-6 benchmark: about 0.85 s of every boot, useless to these guests. Its
/// initcall is `raid6_select_algo` up to 6.x and `raid6_init` in 7.x; a name a kernel does not
/// have is ignored.
pub const RAID6_BENCHMARK: [&str; 2] = ["raid6_select_algo", "raid6_init"];
/// How long the probe's guest may take to say hello.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where UML's memory file goes, and why: the work directory when it is a tmpfs, else
/// `/dev/shm` when that is a writable, executable tmpfs with room for the guest's memory (a
/// container's is often 64 MiB: a guest touching more would die of SIGBUS), else the work
/// directory anyway (UML warns, and guest memory is then written back to a disk).
fn memory_dir(workdir: &Path, memory_mib: u32) -> (PathBuf, String) {
    let need = u64::from(memory_mib) << 20;
    if is_usable_tmpfs(workdir, need) {
        return (workdir.to_path_buf(), "the work directory (tmpfs)".into());
    }
    let shm = Path::new("/dev/shm");
    if is_usable_tmpfs(shm, need) {
        return (
            shm.to_path_buf(),
            "/dev/shm (tmpfs; the work directory is not)".into(),
        );
    }
    (
        workdir.to_path_buf(),
        format!(
            "the work directory, not a tmpfs (/dev/shm is not a writable, executable tmpfs \
             with {memory_mib} MiB free): guest memory is written back to its disk"
        ),
    )
}

/// A directory on tmpfs that this process may write and map executable (UML checks both),
/// with `need` bytes free.
fn is_usable_tmpfs(dir: &Path, need: u64) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: statfs and statvfs are plain old data; all-zero is valid for the calls to fill.
    let (mut fs, mut vfs): (libc::statfs, libc::statvfs) =
        unsafe { (std::mem::zeroed(), std::mem::zeroed()) };
    // SAFETY: `c` is a valid NUL-terminated path and the out-pointers are valid for writes.
    let ok = unsafe {
        libc::statfs(c.as_ptr(), &mut fs) == 0
            && libc::statvfs(c.as_ptr(), &mut vfs) == 0
            && libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) == 0
    };
    let free = vfs.f_bavail.saturating_mul(vfs.f_frsize);
    ok && fs.f_type == libc::TMPFS_MAGIC && vfs.f_flag & libc::ST_NOEXEC == 0 && free >= need
}

/// Places the symlink [`INITRD_NAME`] to `image` in `workdir`.
fn link_initrd(workdir: &Path, image: &Path) -> Result<(), BackendError> {
    let link = workdir.join(INITRD_NAME);
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(image, &link).map_err(|e| BackendError::Spawn {
        what: format!("the initramfs link {}", link.display()),
        source: e,
    })
}

/// The host's end of a new socketpair, and the guest's end duplicated to a descriptor of 10
/// or more (close-on-exec), so that stdio set-up in the child can never overwrite it.
fn agent_socketpair() -> std::io::Result<(UnixStream, OwnedFd)> {
    let (host, guest) = UnixStream::pair()?;
    // SAFETY: F_DUPFD_CLOEXEC on an open descriptor returns a new descriptor or -1.
    let fd = unsafe { libc::fcntl(guest.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 10) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by fcntl and is owned by nobody else.
    Ok((host, unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// The agent's channel, which also ends when the UML kernel process does.
///
/// UML's I/O helpers share the kernel process's descriptor table (`CLONE_FILES`), so if that
/// process alone dies (killed from outside: UML's own panic path takes its whole group down)
/// they keep the agent's socket open and the host would read nothing until a timeout. A
/// pidfd of the kernel process, polled beside the socket, turns its death into end-of-file at
/// once; the guest's group kill then takes the helpers.
struct ExitAwareReader {
    stream: UnixStream,
    /// `None` where pidfd_open(2) is missing (Linux before 5.3): the socket alone.
    pidfd: Option<OwnedFd>,
}

impl ExitAwareReader {
    fn new(stream: UnixStream, pid: u32) -> ExitAwareReader {
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        let pidfd = (fd >= 0).then(|| {
            // SAFETY: `fd` was just returned by pidfd_open and is owned by nobody else.
            unsafe { OwnedFd::from_raw_fd(fd as i32) }
        });
        ExitAwareReader { stream, pidfd }
    }
}

impl std::io::Read for ExitAwareReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let Some(pidfd) = &self.pidfd else {
            return self.stream.read(buf);
        };
        loop {
            let mut fds = [
                libc::pollfd {
                    fd: self.stream.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: pidfd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            // SAFETY: `fds` is a valid array of two pollfd for the duration of the call.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            // What the agent wrote before the end is delivered first.
            if fds[0].revents != 0 {
                return self.stream.read(buf);
            }
            if fds[1].revents != 0 {
                return Ok(0);
            }
        }
    }
}

/// Starts `linux.uml` for `cfg` in `spec.workdir`. The agent's socketpair end becomes the
/// child's descriptor [`AGENT_FD`]; the host keeps the other.
fn launch_uml(
    cfg: &UmlConfig,
    kernel: &UmlKernel,
    image: &Initramfs,
    spec: &GuestSpec,
) -> Result<Launched, BackendError> {
    link_initrd(&spec.workdir, &image.path)?;
    let (memory, memory_why) = memory_dir(&spec.workdir, cfg.memory_mib);
    let console_log = spec.workdir.join("console.log");
    let stdout = open_console(&console_log)?;
    let stderr = stdout.try_clone().map_err(|e| BackendError::Spawn {
        what: console_log.display().to_string(),
        source: e,
    })?;
    let (host, guest_end) = agent_socketpair().map_err(|e| BackendError::Spawn {
        what: "the agent socketpair".into(),
        source: e,
    })?;
    let argv = command_line(cfg);
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .current_dir(&spec.workdir)
        .env("TMPDIR", &memory)
        .stdin(Stdio::null())
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::from(stderr));
    let src = guest_end.as_raw_fd();
    // SAFETY: the closure runs in the forked child before exec and only calls dup2, which is
    // async-signal-safe; `src` stays open in the parent until spawn returns (guest_end lives
    // to the end of this function). dup2 to another number clears close-on-exec on the copy.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(src, AGENT_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = spawn_in_own_group(&mut cmd).map_err(|e| BackendError::Spawn {
        what: argv[0].clone(),
        source: e,
    })?;
    // Only UML holds the guest's end now: when it dies, the host reads end-of-file.
    drop(guest_end);
    let writer = host
        .try_clone()
        .map_err(|e| BackendError::Setup(format!("cannot duplicate the agent socketpair: {e}")));
    let writer = match writer {
        Ok(w) => w,
        Err(e) => {
            let mut child = child;
            kill_and_reap(&mut child);
            return Err(e);
        }
    };

    let mut versions = std::collections::BTreeMap::new();
    versions.insert("uml".to_string(), kernel.release.clone());
    versions.insert("kernel".to_string(), kernel.release.clone());
    let settings = recorded_settings(cfg, kernel, image, spec, &memory_why);
    let reader = ExitAwareReader::new(host, child.id());
    Ok(Launched {
        processes: vec![child],
        reader: Box::new(reader),
        writer: Box::new(writer),
        console_log: Some(console_log),
        config: BackendConfig {
            command_line: argv,
            vcpus: Some(1),
            memory_mib: Some(cfg.memory_mib),
            versions,
            settings,
        },
        attached: Default::default(),
    })
}

/// The paravirtualized kernel as a host process.
pub struct Uml {
    name: &'static str,
    adjust: fn(&mut UmlConfig),
    /// The user's own `linux.uml` (`--uml-binary`); `None` lets the probe choose.
    binary: Option<PathBuf>,
}

impl Uml {
    /// The standard `uml` backend: the probe chooses the kernel.
    pub fn new() -> Uml {
        Uml {
            name: "uml",
            adjust: |_| {},
            binary: None,
        }
    }

    /// The `uml` backend with the user's options (`--uml-binary`).
    pub fn with_options(opts: &super::BackendOptions) -> Uml {
        Uml {
            binary: opts.uml_binary.clone(),
            ..Uml::new()
        }
    }

    /// The `uml` backend on this kernel binary, without choosing.
    pub fn on(binary: &Path) -> Uml {
        Uml {
            binary: Some(binary.to_path_buf()),
            ..Uml::new()
        }
    }

    /// A `uml` whose configuration is adjusted before launch (measurements: a boot that
    /// calibrates its delay loop). Not in [`super::all`].
    pub fn custom(name: &'static str, adjust: fn(&mut UmlConfig)) -> Uml {
        Uml {
            name,
            adjust,
            binary: None,
        }
    }

    /// The probe's verdict and, when available, the kernel it chose; probed once per choice of
    /// binary.
    fn probed(&self, agent: &AgentBinary) -> Probed {
        static PROBED: Mutex<BTreeMap<Option<PathBuf>, Probed>> = Mutex::new(BTreeMap::new());
        let mut cache = PROBED.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .entry(self.binary.clone())
            .or_insert_with(|| probe_candidates(agent, self.binary.as_deref()))
            .clone()
    }

    /// The kernel to launch: the user's without a probe boot (the probe of a candidate launches
    /// through here), else the one the probe chose.
    fn kernel(&self, agent: &AgentBinary) -> Result<UmlKernel, BackendError> {
        let unavailable = |a: Availability| match a {
            Availability::Unavailable { reason, hint } => BackendError::Unavailable {
                backend: self.name.into(),
                reason,
                hint,
            },
            Availability::Available { detail } => BackendError::Setup(detail),
        };
        if let Some(b) = &self.binary {
            return UmlKernel::read(b).map_err(unavailable);
        }
        let probed = self.probed(agent);
        probed
            .kernel
            .ok_or_else(|| unavailable(probed.availability))
    }
}

impl Default for Uml {
    fn default() -> Self {
        Uml::new()
    }
}

impl Backend for Uml {
    fn name(&self) -> &'static str {
        self.name
    }

    fn technique(&self) -> &'static str {
        "paravirtualized kernel as a host process (User-Mode Linux)"
    }

    fn probe(&self, agent: &AgentBinary) -> Availability {
        self.probed(agent).availability
    }

    fn launch(&self, spec: &GuestSpec) -> Result<Launched, BackendError> {
        let kernel = self.kernel(&spec.agent)?;
        let image = image::build_image(&spec.agent, &ModuleSet::none())
            .map_err(|e| BackendError::Setup(e.to_string()))?;
        let mut cfg = UmlConfig::new(&kernel, spec);
        let mut attached = Attached::default();
        if let Some(d) = &spec.devices.disk {
            let link = spec.workdir.join(DISK_NAME);
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(&d.image, &link).map_err(|e| BackendError::Spawn {
                what: format!("the disk link {}", link.display()),
                source: e,
            })?;
            cfg.disk = Some(!d.writable);
            attached.disk = Some(GUEST_DISK.into());
        }
        if let Some(r) = &spec.devices.rootfs {
            let app = crate::devices::create_app_disk(&r.app_dir)
                .map_err(|e| BackendError::Setup(e.to_string()))?;
            for (name, target) in [(ROOTFS_NAME, &r.ext4), (APP_DISK_NAME, &app)] {
                let link = spec.workdir.join(name);
                let _ = std::fs::remove_file(&link);
                std::os::unix::fs::symlink(target, &link).map_err(|e| BackendError::Spawn {
                    what: format!("the disk link {}", link.display()),
                    source: e,
                })?;
            }
            cfg.app_disks = true;
            attached.app_devices = Some((GUEST_ROOTFS_DISK.into(), GUEST_APP_DISK.into()));
        }
        if spec.devices.net.is_some() {
            cfg.prefix = crate::devices::tap_endpoint(&spec.label, &mut attached)
                .map_err(BackendError::Setup)?;
            cfg.net = true;
        }
        (self.adjust)(&mut cfg);
        let mut launched = launch_uml(&cfg, &kernel, &image, spec)?;
        if let Some(d) = &spec.devices.disk {
            launched.config.settings.insert(
                "disk".into(),
                format!(
                    "ubd0 -> {} (UML's ubd does host I/O through the host page cache: no O_DIRECT on the host)",
                    d.image.display()
                ),
            );
        }
        if cfg.net {
            launched.config.settings.insert(
                "net".into(),
                format!(
                    "vector transport on tap {} in a network namespace of hvbench's",
                    netns::TAP_NAME
                ),
            );
        }
        launched.attached = attached;
        Ok(launched)
    }

    fn hello_timeout(&self) -> Duration {
        // Under 0.1 s alone here; many guests at once share the cores, and every guest system
        // call and host process of a boot waits for one.
        Duration::from_secs(30)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_goes_to_a_tmpfs_with_room_when_there_is_one() {
        let elsewhere = Path::new("/nonexistent-hvbench");
        let (dir, why) = memory_dir(elsewhere, 64);
        if is_usable_tmpfs(Path::new("/dev/shm"), 64 << 20) {
            assert_eq!(dir, Path::new("/dev/shm"), "{why}");
        } else {
            assert_eq!(dir, elsewhere, "{why}");
        }
        // No tmpfs has 4 PiB free: the work directory, saying why.
        let (dir, why) = memory_dir(elsewhere, u32::MAX);
        assert_eq!(dir, elsewhere);
        assert!(why.contains("written back"), "{why}");
        assert!(!is_usable_tmpfs(Path::new("/proc"), 0));
    }

    #[test]
    fn the_guest_end_of_the_socketpair_is_high_and_closed_on_exec() {
        let (_host, guest) = agent_socketpair().unwrap();
        assert!(guest.as_raw_fd() >= 10);
        // SAFETY: F_GETFD on an open descriptor only reads its flags.
        let flags = unsafe { libc::fcntl(guest.as_raw_fd(), libc::F_GETFD) };
        assert!(flags & libc::FD_CLOEXEC != 0);
    }
}
