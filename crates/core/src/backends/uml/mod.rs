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
use std::time::{Duration, Instant};

use super::open_console;
use super::{Availability, Backend, BackendConfig, BackendError, GuestSpec, Launched};
use crate::agent::AgentBinary;
use crate::guest::ProbeBootError;
use crate::image::{self, Initramfs, ModuleSet};
use crate::launch::host_tool;
use crate::launch::{kill_and_reap, spawn_in_own_group};

pub mod diagnose;
pub mod kernel;

pub use kernel::{lpj_for, parse_config, UmlKernel, INSTALLED_UML, UML_BINARY};

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
/// The longest `umid` UML takes (`UMID_LEN` is 64, with the NUL).
const MAX_UMID: usize = 63;

/// Everything the UML command line depends on.
#[derive(Debug, Clone, PartialEq)]
pub struct UmlConfig {
    pub binary: PathBuf,
    /// The machine's name; its directory `<uml_dir>/<umid>` holds the pid file and the
    /// management console socket.
    pub umid: String,
    pub memory_mib: u32,
    /// Loops per jiffy for the delay loop; `None` lets the kernel calibrate it (about 0.1 s).
    pub lpj: Option<u64>,
    /// Initcalls the kernel skips (`initcall_blacklist=`).
    pub skip_initcalls: Vec<String>,
    /// Legacy BSD pseudo-terminals (`pty.legacy_count=`); `None` keeps the build's 256.
    pub legacy_ptys: Option<u32>,
    /// Kernel messages up to `loglevel` 4 only (`quiet`).
    pub quiet: bool,
    /// Appended to the command line as they are (experiments and tests).
    pub extra_args: Vec<String>,
    /// A disk as `ubd0` (the symlink [`DISK_NAME`] in the work directory), read-only or not.
    pub disk: Option<bool>,
    /// The applications' disks: the root file system's ext4 image read-only as `ubd1`
    /// ([`ROOTFS_NAME`]) and their own ext4 disk as `ubd2` ([`APP_DISK_NAME`]).
    pub app_disks: bool,
    /// A vector NIC on the tap device of a namespace hvbench created.
    pub net: bool,
    /// Runs UML inside a network namespace (`nsenter --net=... --`).
    pub prefix: Vec<String>,
}

/// The disk image's name in the guest's work directory (a symlink to the real file: UML splits
/// its command line at spaces, so no path the user chose goes on it).
pub const DISK_NAME: &str = "disk.img";
/// The disk as the UML guest sees it.
pub const GUEST_DISK: &str = "/dev/ubda";
/// Links in the work directory to the root file system's image and the applications' disk.
pub const ROOTFS_NAME: &str = "rootfs.ext4";
pub const APP_DISK_NAME: &str = "app.ext4";
/// Both as the guest sees them.
pub const GUEST_ROOTFS_DISK: &str = "/dev/ubdb";
pub const GUEST_APP_DISK: &str = "/dev/ubdc";
/// UML names its first vector interface `vec0`.
pub const GUEST_NIC: &str = "vec0";

impl UmlConfig {
    /// The standard configuration for `spec` on `kernel`.
    pub fn new(kernel: &UmlKernel, spec: &GuestSpec) -> UmlConfig {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        UmlConfig {
            binary: kernel.binary.clone(),
            umid: umid_for(&spec.label),
            memory_mib: spec.memory_mib.max(64),
            lpj: lpj_for(&cpuinfo, kernel.hz),
            skip_initcalls: RAID6_BENCHMARK.map(String::from).to_vec(),
            legacy_ptys: Some(0),
            quiet: true,
            extra_args: Vec::new(),
            disk: None,
            app_disks: false,
            net: false,
            prefix: Vec::new(),
        }
    }
}

/// A `umid` from a guest label: letters, digits, `.`, `_` and `-` kept, others `_`, at most
/// [`MAX_UMID`] bytes (UML names a directory after it, and the kernel command line is split at
/// spaces).
pub fn umid_for(label: &str) -> String {
    let mut u: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(MAX_UMID)
        .collect();
    if u.is_empty() || u.starts_with('.') {
        u.insert(0, 'g');
        u.truncate(MAX_UMID);
    }
    u
}

/// The `linux.uml` command line, one argument per element; the first is the binary. Paths are
/// relative to the guest's work directory, where UML runs.
pub fn command_line(cfg: &UmlConfig) -> Vec<String> {
    let mut v = vec![
        cfg.binary.display().to_string(),
        format!("mem={}M", cfg.memory_mib),
        format!("initrd={INITRD_NAME}"),
        format!("umid={}", cfg.umid),
        "uml_dir=.".to_string(),
        // No line but those named below: Debian's defaults would start an xterm for each
        // console and open host ptys for the serial lines.
        "con=none".to_string(),
        "ssl=none".to_string(),
        // The kernel console (and the agent's stdout and stderr): no input, output to UML's
        // stdout, the console log.
        "con0=null,fd:1".to_string(),
        // The agent's line, on the inherited socketpair end.
        format!("con1=fd:{AGENT_FD}"),
    ];
    if cfg.quiet {
        v.push("quiet".into());
    }
    if let Some(lpj) = cfg.lpj {
        v.push(format!("lpj={lpj}"));
    }
    if let Some(n) = cfg.legacy_ptys {
        v.push(format!("pty.legacy_count={n}"));
    }
    if !cfg.skip_initcalls.is_empty() {
        v.push(format!(
            "initcall_blacklist={}",
            cfg.skip_initcalls.join(",")
        ));
    }
    if let Some(read_only) = cfg.disk {
        // No `s` flag: UML's ubd driver writes through the host's page cache (it has no
        // O_DIRECT mode), which the result records.
        let flags = if read_only { "r" } else { "" };
        v.push(format!("ubd0{flags}={DISK_NAME}"));
        v.push(format!("hvbench_disk={GUEST_DISK}"));
    }
    if cfg.app_disks {
        // `c`: shared between guests (every guest of the run reads the same image), no lock.
        v.push(format!("ubd1rc={ROOTFS_NAME}"));
        v.push(format!("ubd2={APP_DISK_NAME}"));
    }
    if cfg.net {
        // gro=1: the tap carries offload headers, so the host hands UML whole TCP segments.
        // Without it host-to-guest streams stalled here (0.28 Mbit/s, retransmission-bound,
        // against 6.6 Gbit/s with it: `hvbench run --workload net.stream.rx --backend uml`).
        v.push(format!(
            "{GUEST_NIC}:transport=tap,ifname={},gro=1",
            netns::TAP_NAME
        ));
        v.push(format!(
            "hvbench_ip={GUEST_NIC}:{}/{}",
            netns::GUEST_ADDR,
            netns::PREFIX
        ));
    }
    v.push("hvbench_init=1".into());
    v.push(format!("hvbench_channel={AGENT_TTY}"));
    v.extend(cfg.extra_args.iter().cloned());
    if cfg.prefix.is_empty() {
        v
    } else {
        cfg.prefix.iter().cloned().chain(v).collect()
    }
}

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

/// The settings that shape a UML guest's numbers, for the result document.
fn recorded_settings(
    cfg: &UmlConfig,
    kernel: &UmlKernel,
    image: &Initramfs,
    spec: &GuestSpec,
    memory_why: &str,
) -> std::collections::BTreeMap<String, String> {
    let mut s = vec![
        (
            "channel",
            format!(
                "console line {AGENT_TTY} (con1=fd:{AGENT_FD}) on a socketpair; kernel console \
                 to console.log"
            ),
        ),
        ("cwd", spec.workdir.display().to_string()),
        (
            "initramfs",
            format!("{} ({} bytes)", image.path.display(), image.size),
        ),
        (
            "modules",
            "none (UML has what the agent uses built in)".to_string(),
        ),
        ("memory_file", format!("O_TMPFILE in {memory_why}")),
        (
            "lpj",
            match cfg.lpj {
                Some(l) => format!(
                    "{l} (from the host's BogoMIPS at HZ {}; not calibrated at boot)",
                    kernel.hz.map_or("?".into(), |h| h.to_string())
                ),
                None => "calibrated at boot".into(),
            },
        ),
        (
            "skipped_initcalls",
            if cfg.skip_initcalls.is_empty() {
                "none".into()
            } else {
                cfg.skip_initcalls.join(",")
            },
        ),
        (
            "legacy_ptys",
            cfg.legacy_ptys
                .map_or("as built (256)".into(), |n| n.to_string()),
        ),
    ];
    if spec.vcpus > 1 {
        s.push((
            "vcpus_requested",
            format!(
                "{} (UML {} is uniprocessor, CONFIG_NR_CPUS={}: the guest runs 1)",
                spec.vcpus, kernel.release, kernel.nr_cpus
            ),
        ));
    }
    s.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
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

/// What the probe found: the verdict and the kernel it chose.
#[derive(Debug, Clone)]
struct Probed {
    availability: Availability,
    kernel: Option<UmlKernel>,
}

/// Boots every candidate kernel once and chooses the newest that boots; says why each other
/// did not.
fn probe_candidates(agent: &AgentBinary, explicit: Option<&Path>) -> Probed {
    let found = kernel::candidates(explicit);
    if found.is_empty() {
        return Probed {
            availability: Availability::Unavailable {
                reason: format!("no UML kernel: neither {INSTALLED_UML} nor {UML_BINARY} on PATH"),
                hint: kernel::UML_HINT.into(),
            },
            kernel: None,
        };
    }
    if let Err(e) = image::build_image(agent, &ModuleSet::none()) {
        return Probed {
            availability: Availability::Unavailable {
                reason: e.to_string(),
                hint: "cargo build --release --workspace".into(),
            },
            kernel: None,
        };
    }
    let mut booted: Vec<(UmlKernel, Duration)> = Vec::new();
    let mut failed: Vec<(String, String)> = Vec::new();
    for binary in found {
        let k = match UmlKernel::read(&binary) {
            Ok(k) => k,
            Err(Availability::Unavailable { reason, hint }) => {
                failed.push((reason, hint));
                continue;
            }
            Err(Availability::Available { .. }) => continue,
        };
        match probe_boot(agent, &k) {
            Ok(t) => booted.push((k, t)),
            Err(why) => failed.push(why),
        }
    }
    let others: Vec<String> = failed.iter().map(|(r, _)| r.clone()).collect();
    let Some((chosen, boot)) = booted
        .iter()
        .max_by(|a, b| compare_releases(&a.0.release, &b.0.release))
        .cloned()
    else {
        let hint = failed
            .first()
            .map(|(_, h)| h.clone())
            .unwrap_or_else(|| kernel::UML_HINT.into());
        return Probed {
            availability: Availability::Unavailable {
                reason: others.join("; "),
                hint,
            },
            kernel: None,
        };
    };
    let mut detail = format!(
        "linux.uml {} at {} ({}), a probe guest said hello in {} ms",
        chosen.release,
        chosen.binary.display(),
        if chosen.nr_cpus == 1 {
            "uniprocessor".to_string()
        } else {
            format!("CONFIG_NR_CPUS={}, run with 1", chosen.nr_cpus)
        },
        boot.as_millis()
    );
    for (k, _) in booted.iter().filter(|(k, _)| k.binary != chosen.binary) {
        detail.push_str(&format!(
            "; {} ({}) boots too",
            k.binary.display(),
            k.release
        ));
    }
    for r in &others {
        detail.push_str(&format!("; not chosen: {r}"));
    }
    Probed {
        availability: Availability::Available { detail },
        kernel: Some(chosen),
    }
}

/// Orders two releases (`7.2.7` > `6.1.176`) by their numeric parts.
fn compare_releases(a: &str, b: &str) -> std::cmp::Ordering {
    let nums = |s: &str| -> Vec<u64> {
        s.split(|c: char| !c.is_ascii_digit())
            .filter_map(|p| p.parse().ok())
            .collect()
    };
    nums(a).cmp(&nums(b))
}

/// Boots one small guest on `kernel` and waits for its hello; the guest is killed on every
/// path. Errs with the reason (the known cause read from the console when there is one, else
/// UML's last words) and its fix.
fn probe_boot(agent: &AgentBinary, kernel: &UmlKernel) -> Result<Duration, (String, String)> {
    let t0 = Instant::now();
    let (e, workdir) =
        match crate::guest::probe_boot(&Uml::on(&kernel.binary), agent, 128, PROBE_TIMEOUT) {
            Ok(boot) => return Ok(boot),
            Err(ProbeBootError::NoWorkdir(e)) => {
                return Err((
                    format!("cannot create a work directory: {e}"),
                    "set TMPDIR to a writable directory".to_string(),
                ))
            }
            Err(ProbeBootError::Failed { error, workdir }) => (error, workdir),
        };
    let text = e.to_string();
    let first = text.lines().next().unwrap_or_default();
    let log = std::fs::read(workdir.path().join("console.log")).unwrap_or_default();
    let log = String::from_utf8_lossy(&log);
    let prefix = format!(
        "{} {} does not boot here: {} after {} ms",
        kernel.binary.display(),
        kernel.release,
        first.trim(),
        t0.elapsed().as_millis()
    );
    let console = format!("{log}\n{text}\n{}", e.console_tail().unwrap_or_default());
    match diagnose::diagnose(&console, &kernel.release, diagnose::host_xstate_bytes()) {
        Some(cause) => Err((format!("{prefix}; cause: {}", cause.reason), cause.fix)),
        None => {
            let said = host_tool::last_lines(&log, 3);
            Err((
                if said.is_empty() {
                    prefix
                } else {
                    format!("{prefix}; it said: {}", said.replace('\n', " | "))
                },
                "UML needs ptrace of its own \
                 children and an executable tmpfs (/dev/shm)"
                    .into(),
            ))
        }
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

    fn kernel() -> UmlKernel {
        UmlKernel {
            binary: PathBuf::from("/usr/bin/linux.uml"),
            release: "6.1.176".into(),
            nr_cpus: 1,
            hz: Some(100),
        }
    }

    fn spec() -> GuestSpec {
        GuestSpec {
            vcpus: 1,
            memory_mib: 256,
            kernel: None,
            agent: AgentBinary {
                path: "/a".into(),
                sha256: String::new(),
                size: 0,
            },
            workdir: PathBuf::from("/tmp/w"),
            label: "uml-0".into(),
            devices: Default::default(),
        }
    }

    fn cfg() -> UmlConfig {
        UmlConfig {
            lpj: Some(24_454_100),
            ..UmlConfig::new(&kernel(), &spec())
        }
    }

    #[test]
    fn standard_command_line() {
        let v = command_line(&cfg());
        assert_eq!(
            v,
            [
                "/usr/bin/linux.uml",
                "mem=256M",
                "initrd=initramfs.cpio",
                "umid=uml-0",
                "uml_dir=.",
                "con=none",
                "ssl=none",
                "con0=null,fd:1",
                "con1=fd:3",
                "quiet",
                "lpj=24454100",
                "pty.legacy_count=0",
                "initcall_blacklist=raid6_select_algo,raid6_init",
                "hvbench_init=1",
                "hvbench_channel=tty1",
            ]
        );
    }

    #[test]
    fn no_argument_holds_a_space_or_a_path_whatever_the_work_directory() {
        let mut s = spec();
        s.workdir = PathBuf::from("/tmp/a dir; rm -rf x");
        s.label = "a b/../c;d".into();
        let c = UmlConfig::new(&kernel(), &s);
        let v = command_line(&c);
        // UML joins its arguments into a kernel command line split at spaces.
        assert!(
            v[1..]
                .iter()
                .all(|a| !a.contains(char::is_whitespace) && !a.contains('/')),
            "{v:?}"
        );
        assert!(v.contains(&"umid=a_b_.._c_d".to_string()), "{v:?}");
        assert!(!v.iter().any(|a| a == "sh" || a == "-c"));
    }

    #[test]
    fn calibration_and_initcalls_can_be_left_to_the_kernel() {
        let mut c = cfg();
        c.lpj = None;
        c.skip_initcalls.clear();
        c.legacy_ptys = None;
        c.quiet = false;
        c.memory_mib = 16;
        let v = command_line(&c);
        assert!(!v.iter().any(|a| a.starts_with("lpj=")
            || a.starts_with("initcall_blacklist=")
            || a.starts_with("pty.")
            || a == "quiet"));
        // The floor applies when built from a spec.
        let mut s = spec();
        s.memory_mib = 16;
        assert_eq!(UmlConfig::new(&kernel(), &s).memory_mib, 64);
    }

    #[test]
    fn umids_are_bounded_and_safe() {
        assert_eq!(umid_for("uml-e2e"), "uml-e2e");
        assert_eq!(umid_for(""), "g");
        assert_eq!(umid_for(".hidden"), "g.hidden");
        let long = "x".repeat(200);
        assert_eq!(umid_for(&long).len(), MAX_UMID);
        assert_eq!(umid_for("é ü"), "___");
    }

    #[test]
    fn more_vcpus_than_uml_runs_are_recorded_not_granted() {
        let image = Initramfs {
            path: "/c/initramfs-x.cpio".into(),
            size: 5,
            hash: String::new(),
            modules: Vec::new(),
            skipped_modules: Vec::new(),
        };
        let mut s = spec();
        let one = recorded_settings(&cfg(), &kernel(), &image, &s, "/dev/shm");
        assert!(!one.contains_key("vcpus_requested"), "{one:?}");
        assert!(one["lpj"].starts_with("24454100 "), "{one:?}");
        assert_eq!(one["skipped_initcalls"], "raid6_select_algo,raid6_init");
        assert_eq!(one["cwd"], "/tmp/w");
        s.vcpus = 4;
        let four = recorded_settings(&cfg(), &kernel(), &image, &s, "/dev/shm");
        assert!(
            four["vcpus_requested"].starts_with("4 (UML 6.1.176 is uniprocessor"),
            "{four:?}"
        );
        assert!(!command_line(&cfg()).iter().any(|a| a.starts_with("ncpus")));
    }

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
