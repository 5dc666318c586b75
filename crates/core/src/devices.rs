//! The disk and the network a guest gets for the `io` and `net` suites, and the rules that keep
//! a user's data safe.
//!
//! hvbench writes only to a disk image it created itself (in the run's work directory, fully
//! written with pseudo-random data first, so that reads hit allocated blocks and nothing is a
//! hole or a zero page). A user's own file or device (`--disk PATH`) is read-only unless
//! `--allow-destructive-writes` is given too; a mounted block device is refused outright.
//! Both refusals happen on the host before any guest starts; the agent refuses writes without
//! `allow_write` as a second line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use hvbench_workloads::{DiskUse, WorkloadInfo};
use serde::{Deserialize, Serialize};

/// The emulated or paravirtual disk controller a QEMU guest sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiskModel {
    /// virtio-blk: a paravirtual queue, `/dev/vda`.
    #[default]
    Virtio,
    /// An emulated PIIX3 IDE controller, `/dev/sda` through `ata_piix`.
    Ide,
    /// The emulated AHCI (SATA) controller of the q35 machine, `/dev/sda` through `ahci`.
    Ahci,
}

impl DiskModel {
    pub fn name(self) -> &'static str {
        match self {
            DiskModel::Virtio => "virtio",
            DiskModel::Ide => "ide",
            DiskModel::Ahci => "ahci",
        }
    }

    pub fn parse(s: &str) -> Option<DiskModel> {
        match s {
            "virtio" => Some(DiskModel::Virtio),
            "ide" => Some(DiskModel::Ide),
            "ahci" | "sata" => Some(DiskModel::Ahci),
            _ => None,
        }
    }

    /// Guest kernel modules the model needs (beyond what every guest loads).
    pub fn modules(self) -> &'static [&'static str] {
        match self {
            DiskModel::Virtio => &["virtio_blk"],
            DiskModel::Ide => &["ata_piix", "sd_mod"],
            DiskModel::Ahci => &["ahci", "sd_mod"],
        }
    }

    /// The device node the first disk of this model gets in a guest kernel.
    pub fn guest_path(self) -> &'static str {
        match self {
            DiskModel::Virtio => "/dev/vda",
            DiskModel::Ide | DiskModel::Ahci => "/dev/sda",
        }
    }
}

/// The network card a QEMU guest sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NicModel {
    /// virtio-net: paravirtual.
    #[default]
    Virtio,
    /// An emulated Intel 82540EM (e1000).
    E1000,
}

impl NicModel {
    pub fn name(self) -> &'static str {
        match self {
            NicModel::Virtio => "virtio",
            NicModel::E1000 => "e1000",
        }
    }

    pub fn parse(s: &str) -> Option<NicModel> {
        match s {
            "virtio" => Some(NicModel::Virtio),
            "e1000" => Some(NicModel::E1000),
            _ => None,
        }
    }

    pub fn modules(self) -> &'static [&'static str] {
        match self {
            NicModel::Virtio => &["virtio_net"],
            NicModel::E1000 => &["e1000"],
        }
    }

    pub fn qemu_device(self) -> &'static str {
        match self {
            NicModel::Virtio => "virtio-net-pci",
            NicModel::E1000 => "e1000",
        }
    }
}

/// How a QEMU or UML guest's network reaches the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetMode {
    /// QEMU's user-mode stack (slirp) with a port forwarded from the host's loopback: no
    /// privileges needed, but every packet goes through a user-space TCP/IP stack.
    #[default]
    User,
    /// A tap device in a network namespace hvbench creates (root only): the kernel's bridge
    /// path, as production hosts use.
    Tap,
}

impl NetMode {
    pub fn name(self) -> &'static str {
        match self {
            NetMode::User => "user",
            NetMode::Tap => "tap",
        }
    }

    pub fn parse(s: &str) -> Option<NetMode> {
        match s {
            "user" | "slirp" => Some(NetMode::User),
            "tap" => Some(NetMode::Tap),
            _ => None,
        }
    }
}

/// The disk a guest gets.
#[derive(Debug, Clone, PartialEq)]
pub struct DiskSpec {
    /// The file (or device) on the host.
    pub image: PathBuf,
    /// Whether the guest may write to it.
    pub writable: bool,
    pub model: DiskModel,
}

/// The network a guest gets.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct NetSpec {
    pub nic: NicModel,
    pub mode: NetMode,
}

/// The applications' root file system, for a guest.
#[derive(Debug, Clone, PartialEq)]
pub struct RootfsSpec {
    /// The tree (directory backends use it in place, read-only).
    pub tree: PathBuf,
    /// The same tree as an ext4 image (kernel backends attach it read-only).
    pub ext4: PathBuf,
    /// A directory of this guest's in the run's work directory, on the host's disk: where a
    /// directory backend's agent mounts the root and the applications keep their data.
    pub app_dir: PathBuf,
}

/// Devices to attach to a guest; all absent by default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Devices {
    pub disk: Option<DiskSpec>,
    pub net: Option<NetSpec>,
    pub rootfs: Option<RootfsSpec>,
}

/// Where the network workloads meet: the agent listens on `listen` inside the guest; the host
/// peer connects to `connect`, from inside `netns` when set. A guest's web server (`app.web`)
/// listens on `web_listen`, which the host reaches at `web_connect`.
#[derive(Debug, Clone, PartialEq)]
pub struct NetEndpoint {
    pub listen: String,
    pub connect: SocketAddr,
    pub web_listen: String,
    pub web_connect: SocketAddr,
    pub netns: Option<PathBuf>,
}

impl NetEndpoint {
    /// The endpoint of a guest with an address of its own (`addr`, reached from `netns`): the
    /// agent on [`GUEST_PORT`], the web server on [`WEB_PORT`].
    pub fn guest(addr: std::net::Ipv4Addr, netns: Option<PathBuf>) -> NetEndpoint {
        NetEndpoint {
            listen: format!("0.0.0.0:{GUEST_PORT}"),
            connect: SocketAddr::from((addr, GUEST_PORT)),
            web_listen: format!("0.0.0.0:{WEB_PORT}"),
            web_connect: SocketAddr::from((addr, WEB_PORT)),
            netns,
        }
    }
}

// ----- a guest's network, with its endpoint: a tap device in a namespace (kernel guests:
// QEMU, UML) or a veth pair between two namespaces (namespace and gVisor guests). The
// namespaces live as long as the guest (`Attached::keep`).

/// A tap device in a namespace of its own for a kernel guest that is started inside it.
/// Returns the command prefix that enters the namespace; the endpoint and the namespace go to
/// `attached`.
pub fn tap_endpoint(label: &str, attached: &mut Attached) -> Result<Vec<String>, String> {
    let ns = crate::netns::tap_namespace(label)?;
    let prefix = ns.enter_prefix();
    attached.net = Some(NetEndpoint::guest(
        crate::netns::GUEST_ADDR,
        Some(ns.path()),
    ));
    attached.keep.push(Box::new(ns));
    Ok(prefix)
}

/// A veth pair between a guest's namespace and a host-side one. Returns the guest side's
/// namespace, which the guest joins; the endpoint (reached from the host side) and the pair go
/// to `attached`.
pub fn veth_endpoint(label: &str, attached: &mut Attached) -> Result<PathBuf, String> {
    let pair = crate::netns::VethPair::create(label)?;
    let guest_ns = pair.guest.path();
    attached.net = Some(NetEndpoint::guest(
        crate::netns::GUEST_ADDR,
        Some(pair.host.path()),
    ));
    attached.keep.push(Box::new(pair));
    Ok(guest_ns)
}

/// What a backend attached, as the workloads see it.
#[derive(Default)]
pub struct Attached {
    /// The disk's path inside the guest (`/dev/vda`, `/hvbench/disk.img`).
    pub disk: Option<String>,
    pub net: Option<NetEndpoint>,
    /// The root file system's tree and the applications' directory, as the agent sees them.
    pub rootfs: Option<String>,
    pub app_dir: Option<String>,
    /// In a kernel guest instead: the block devices of the root file system's image and of
    /// the applications' disk, which the agent mounts.
    pub app_devices: Option<(String, String)>,
    /// Resources that live as long as the guest (network namespaces), dropped with it.
    pub keep: Vec<Box<dyn Send>>,
}

impl std::fmt::Debug for Attached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attached")
            .field("disk", &self.disk)
            .field("net", &self.net)
            .field("rootfs", &self.rootfs)
            .field("app_dir", &self.app_dir)
            .field("app_devices", &self.app_devices)
            .field("keep", &self.keep.len())
            .finish()
    }
}

/// Why a disk cannot be used.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DiskError {
    #[error("--disk {path}: {reason}")]
    Unusable { path: PathBuf, reason: String },
    #[error("refusing to write to {path}: hvbench writes only to disk images it creates; {workloads} would overwrite its contents. Pass --allow-destructive-writes if its data may be destroyed, or leave out --disk to let hvbench create a scratch image")]
    WritesRefused { path: PathBuf, workloads: String },
    #[error("refusing to use {path}: it is mounted at {mountpoint}; unmount it or choose another device")]
    Mounted { path: PathBuf, mountpoint: String },
    #[error("cannot create the disk image {path}: {reason}")]
    Create { path: PathBuf, reason: String },
}

/// Where a run's disk comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum DiskSource {
    /// A scratch image hvbench creates in the work directory, this many bytes.
    Scratch { size: u64 },
    /// The user's file or device.
    User { path: PathBuf, allow_writes: bool },
}

/// Checks a user's disk before anything runs: it exists, is a regular file or a block device,
/// is not mounted, and is written only with explicit permission.
pub fn check_user_disk(
    path: &Path,
    allow_writes: bool,
    writing_workloads: &[&str],
) -> Result<(), DiskError> {
    use std::os::unix::fs::FileTypeExt;
    let meta = std::fs::metadata(path).map_err(|e| DiskError::Unusable {
        path: path.to_path_buf(),
        reason: format!("{e}"),
    })?;
    let ft = meta.file_type();
    if !(ft.is_file() || ft.is_block_device()) {
        return Err(DiskError::Unusable {
            path: path.to_path_buf(),
            reason: "not a regular file or a block device".into(),
        });
    }
    if ft.is_block_device() {
        use std::os::unix::fs::MetadataExt;
        let rdev = meta.rdev();
        let (major, minor) = (libc::major(rdev), libc::minor(rdev));
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        if let Some(mp) = mounted_at(&mountinfo, major, minor, &holders_and_parts(path)) {
            return Err(DiskError::Mounted {
                path: path.to_path_buf(),
                mountpoint: mp,
            });
        }
    }
    if !writing_workloads.is_empty() && !allow_writes {
        return Err(DiskError::WritesRefused {
            path: path.to_path_buf(),
            workloads: writing_workloads.join(", "),
        });
    }
    Ok(())
}

/// `major:minor` of the partitions of a whole-disk device (a mounted partition makes the disk
/// unsafe too), from sysfs.
fn holders_and_parts(dev: &Path) -> Vec<String> {
    let Ok(real) = std::fs::canonicalize(dev) else {
        return Vec::new();
    };
    let Some(name) = real.file_name().and_then(|n| n.to_str()) else {
        return Vec::new();
    };
    let dir = Path::new("/sys/class/block").join(name);
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(&dir) {
        for e in rd.flatten() {
            let p = e.path().join("dev");
            if let Ok(d) = std::fs::read_to_string(&p) {
                out.push(d.trim().to_string());
            }
        }
    }
    out
}

/// The mount point of device `major:minor` (or of one of `also`), from /proc/self/mountinfo.
pub fn mounted_at(mountinfo: &str, major: u32, minor: u32, also: &[String]) -> Option<String> {
    let dev = format!("{major}:{minor}");
    mountinfo.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        let (_, _, d, _, mp) = (f.next()?, f.next()?, f.next()?, f.next()?, f.next()?);
        (d == dev || also.iter().any(|a| a == d)).then(|| mp.to_string())
    })
}

/// Creates the scratch image `dir/disk.img`, fully written.
pub fn create_scratch(dir: &Path, size: u64) -> Result<DiskSpec, DiskError> {
    let path = dir.join("disk.img");
    hvbench_workloads::io::create_target_file(&path, size).map_err(|e| DiskError::Create {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    Ok(DiskSpec {
        image: path,
        writable: true,
        model: DiskModel::Virtio,
    })
}

/// A free TCP port on the host's loopback, for an agent that runs on the host's network
/// (native) or behind a forwarded port (QEMU user-mode networking).
pub fn free_loopback_port() -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(l.local_addr()?.port())
}

/// The port the agent listens on inside a guest with a network of its own.
pub const GUEST_PORT: u16 = 5201;
/// The port a guest's web server listens on (`app.web`).
pub const WEB_PORT: u16 = 8080;

/// Records the devices a guest got in its configuration (`disk`, `disk_cache`, `nic`, ...).
pub fn record_settings(
    settings: &mut std::collections::BTreeMap<String, String>,
    entries: &[(&str, String)],
) {
    for (k, v) in entries {
        settings.insert((*k).to_string(), v.clone());
    }
}

/// Whether a workload needs the guest's disk.
pub fn uses_disk(w: &WorkloadInfo) -> bool {
    w.needs.disk != DiskUse::None
}

/// Whether a workload writes to the guest's disk (and so needs a disk it may destroy).
pub fn writes_disk(w: &WorkloadInfo) -> bool {
    w.needs.disk == DiskUse::Write
}

/// Whether a workload needs the guest's network and a host peer.
pub fn uses_net(w: &WorkloadInfo) -> bool {
    w.needs.network
}

/// The devices of a run: what the selected workloads need, and the user's choices.
#[derive(Debug, Clone, Default)]
pub struct DevicePlan {
    /// `Some` when a disk workload is selected.
    pub disk: Option<DiskSource>,
    pub disk_model: DiskModel,
    /// Queue depth of the disk workloads (1 = synchronous calls).
    pub iodepth: u32,
    /// `Some` when a network workload is selected.
    pub net: Option<NetSpec>,
    /// The applications' root file system, when an application is selected.
    pub rootfs: Option<crate::image::rootfs::RootFs>,
}

impl DevicePlan {
    /// The plan for `workloads`, after the data-safety checks of a user's disk.
    pub fn for_workloads(
        workloads: &[&WorkloadInfo],
        disk: DiskSource,
        disk_model: DiskModel,
        iodepth: u32,
        net: NetSpec,
    ) -> Result<DevicePlan, DiskError> {
        let needs_disk = workloads.iter().any(|w| uses_disk(w));
        if let (true, DiskSource::User { path, allow_writes }) = (needs_disk, &disk) {
            let writing: Vec<&str> = workloads
                .iter()
                .filter(|w| writes_disk(w))
                .map(|w| w.name)
                .collect();
            check_user_disk(path, *allow_writes, &writing)?;
        }
        Ok(DevicePlan {
            disk: needs_disk.then_some(disk),
            disk_model,
            iodepth: iodepth.max(1),
            net: workloads.iter().any(|w| uses_net(w)).then_some(net),
            rootfs: None,
        })
    }

    /// What goes into the result's settings.
    pub fn settings(&self) -> std::collections::BTreeMap<String, String> {
        let mut m = std::collections::BTreeMap::new();
        match &self.disk {
            Some(DiskSource::Scratch { size }) => {
                m.insert(
                    "disk".into(),
                    format!(
                        "scratch image of {} MiB per backend, created by hvbench and fully written first",
                        size >> 20
                    ),
                );
            }
            Some(DiskSource::User { path, allow_writes }) => {
                m.insert(
                    "disk".into(),
                    format!(
                        "{} (the user's; {})",
                        path.display(),
                        if *allow_writes {
                            "destructive writes allowed"
                        } else {
                            "read-only"
                        }
                    ),
                );
            }
            None => {}
        }
        if self.disk.is_some() {
            m.insert("disk_model".into(), self.disk_model.name().into());
            m.insert("iodepth".into(), self.iodepth.to_string());
        }
        if let Some(n) = &self.net {
            m.insert("nic".into(), n.nic.name().into());
            m.insert("net".into(), n.mode.name().into());
        }
        if let Some(r) = &self.rootfs {
            m.insert(
                "rootfs".into(),
                format!(
                    "Debian {} {} root file system {} ({}), read-only; application data on \
                     the guest's disk",
                    r.manifest.recipe.suite,
                    r.manifest.recipe.variant,
                    r.manifest.hash,
                    r.manifest.recipe.packages.join(", ")
                ),
            );
        }
        m
    }

    /// The devices `backend`'s guests get; creates its scratch image in `workdir`.
    pub fn devices_for(&self, backend: &str, workdir: &Path) -> Result<Devices, DiskError> {
        let disk = match &self.disk {
            None => None,
            Some(DiskSource::Scratch { size }) => {
                let dir = workdir.join(format!("{backend}-disk"));
                std::fs::create_dir_all(&dir).map_err(|e| DiskError::Create {
                    path: dir.clone(),
                    reason: e.to_string(),
                })?;
                let mut d = create_scratch(&dir, *size)?;
                d.model = self.disk_model;
                Some(d)
            }
            Some(DiskSource::User { path, allow_writes }) => Some(DiskSpec {
                image: path.clone(),
                writable: *allow_writes,
                model: self.disk_model,
            }),
        };
        let rootfs = match &self.rootfs {
            None => None,
            Some(r) => {
                let app_dir = workdir.join(format!("{backend}-app"));
                std::fs::create_dir_all(&app_dir).map_err(|e| DiskError::Create {
                    path: app_dir.clone(),
                    reason: e.to_string(),
                })?;
                Some(RootfsSpec {
                    tree: r.root(),
                    ext4: r.ext4(),
                    app_dir,
                })
            }
        };
        Ok(Devices {
            disk,
            net: self.net,
            rootfs,
        })
    }

    /// A job's parameters for `w` in a guest with the devices `attached`
    /// (`Guest::attached`): the disk's path, whether it may be written, the queue depth; the
    /// agent's listening address.
    pub fn params(
        &self,
        w: &WorkloadInfo,
        attached: &Attached,
        base: &hvbench_workloads::Params,
    ) -> hvbench_workloads::Params {
        let mut p = base.clone();
        if uses_disk(w) {
            if let Some(path) = &attached.disk {
                p.insert("path".into(), path.clone().into());
                let writable = match &self.disk {
                    Some(DiskSource::Scratch { .. }) => true,
                    Some(DiskSource::User { allow_writes, .. }) => *allow_writes,
                    None => false,
                };
                p.insert("allow_write".into(), writable.into());
                p.insert("iodepth".into(), self.iodepth.into());
            }
        }
        if uses_net(w) {
            if let Some(ep) = &attached.net {
                p.insert("listen".into(), ep.listen.clone().into());
                p.insert("web_listen".into(), ep.web_listen.clone().into());
            }
        }
        if w.needs.rootfs {
            rootfs_params(attached, &mut p);
        }
        p
    }
}

/// Where an application finds its root file system in a guest: the tree and the applications'
/// directory, or the block devices the agent mounts.
pub fn rootfs_params(attached: &Attached, p: &mut hvbench_workloads::Params) {
    if let (Some(tree), Some(dir)) = (&attached.rootfs, &attached.app_dir) {
        p.insert("rootfs".into(), tree.clone().into());
        p.insert("app_dir".into(), dir.clone().into());
    }
    if let Some((rootfs, app)) = &attached.app_devices {
        p.insert("rootfs_dev".into(), rootfs.clone().into());
        p.insert("app_dev".into(), app.clone().into());
    }
}

/// Size of the applications' disk of a kernel guest (sparse: only what is written is used).
pub const APP_DISK_BYTES: u64 = 4 << 30;

/// Makes the applications' disk of a kernel guest in `dir`: a sparse file with an ext4 file
/// system (`mke2fs`, no lazy initialisation, so that the guest kernel does not zero inode
/// tables in the background while it is measured).
pub fn create_app_disk(dir: &Path) -> Result<PathBuf, DiskError> {
    let path = dir.join("app.ext4");
    create_ext4(&path)?;
    Ok(path)
}

/// A sparse file of [`APP_DISK_BYTES`] at `path` with a fresh ext4 file system in it.
fn create_ext4(path: &Path) -> Result<(), DiskError> {
    let path = path.to_path_buf();
    let fail = |reason: String| DiskError::Create {
        path: path.clone(),
        reason,
    };
    let f = std::fs::File::create(&path).map_err(|e| fail(e.to_string()))?;
    f.set_len(APP_DISK_BYTES).map_err(|e| fail(e.to_string()))?;
    drop(f);
    let out = std::process::Command::new("mke2fs")
        .args([
            "-q",
            "-F",
            "-t",
            "ext4",
            "-E",
            "lazy_itable_init=0,lazy_journal_init=0",
        ])
        .arg(&path)
        .output()
        .map_err(|e| fail(format!("mke2fs (e2fsprogs): {e}")))?;
    if !out.status.success() {
        return Err(fail(format!(
            "mke2fs: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// The applications' directory of a backend without a kernel of its own (native, namespace,
/// gVisor), on a fresh ext4 file system like a kernel guest's disk: an image of the same size
/// next to the directory, loop-mounted on it until this is dropped.
///
/// Why: on the host's own file system the baseline measured that file system's state, not the
/// work. Natively app.files spent 2.21 s of a 2.36-s pass in the kernel, most of it in ext4's
/// search for a free inode past those its earlier passes had deleted, in a directory of the
/// host's 264 GB root file system; UML and QEMU create the same files on a fresh 4 GiB ext4.
/// Every backend now starts from the same file system in the same state.
#[derive(Debug)]
pub struct AppMount {
    dir: PathBuf,
}

impl AppMount {
    /// Creates `<dir>.ext4` and mounts it on `dir` (which must exist). Needs root, as the
    /// applications' private mount namespaces do already.
    pub fn mount(dir: &Path) -> Result<AppMount, DiskError> {
        let mut image = dir.as_os_str().to_owned();
        image.push(".ext4");
        let image = PathBuf::from(image);
        // A relaunch under the same label: the last guest's image may still back a loop
        // device that is being freed; a new file, not a truncated one.
        let _ = std::fs::remove_file(&image);
        create_ext4(&image)?;
        let out = std::process::Command::new("mount")
            .args(["-t", "ext4", "-o", "loop"])
            .arg(&image)
            .arg(dir)
            .output()
            .map_err(|e| DiskError::Create {
                path: image.clone(),
                reason: format!("mount (util-linux): {e}"),
            })?;
        if !out.status.success() {
            return Err(DiskError::Create {
                path: image,
                reason: format!(
                    "loop-mounting it on {}: {}",
                    dir.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            });
        }
        Ok(AppMount {
            dir: dir.to_path_buf(),
        })
    }

    /// What the guest's settings say about it.
    pub fn describe(&self) -> String {
        format!(
            "application data on a fresh {} GiB ext4 image, loop-mounted on {} (as a kernel \
             guest's disk)",
            APP_DISK_BYTES >> 30,
            self.dir.display()
        )
    }
}

impl Drop for AppMount {
    fn drop(&mut self) {
        // Lazily: a guest's process may still hold a file on it while it is torn down; the
        // loop device is freed with the last reference.
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.dir)
            .output();
    }
}

/// Starts the host side of the network workloads for a guest's endpoint.
pub fn start_peer(ep: &NetEndpoint) -> std::io::Result<hvbench_workloads::net::peer::Peer> {
    let ns = match &ep.netns {
        Some(p) => Some(std::fs::File::open(p)?),
        None => None,
    };
    hvbench_workloads::net::peer::Peer::start_with_web(ep.connect, Some(ep.web_connect), ns)
}

/// Parses a size such as `1G`, `256M`, `4096K` or a number of bytes.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last()? {
        (i, 'k' | 'K') => (&s[..i], 1u64 << 10),
        (i, 'm' | 'M') => (&s[..i], 1 << 20),
        (i, 'g' | 'G') => (&s[..i], 1 << 30),
        (i, 't' | 'T') => (&s[..i], 1 << 40),
        _ => (s, 1),
    };
    num.trim().parse::<u64>().ok()?.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("1G"), Some(1 << 30));
        assert_eq!(parse_size("256M"), Some(256 << 20));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_size(""), None);
    }

    #[test]
    fn names_parse_back() {
        for m in [DiskModel::Virtio, DiskModel::Ide, DiskModel::Ahci] {
            assert_eq!(DiskModel::parse(m.name()), Some(m));
        }
        for n in [NicModel::Virtio, NicModel::E1000] {
            assert_eq!(NicModel::parse(n.name()), Some(n));
        }
        for n in [NetMode::User, NetMode::Tap] {
            assert_eq!(NetMode::parse(n.name()), Some(n));
        }
        assert_eq!(DiskModel::parse("scsi"), None);
    }

    #[test]
    fn mounted_devices_are_found_by_number_or_partition() {
        let mi = "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n\
                  30 22 0:5 / /dev rw - devtmpfs udev rw\n";
        assert_eq!(mounted_at(mi, 8, 1, &[]).as_deref(), Some("/"));
        assert_eq!(mounted_at(mi, 8, 0, &[]), None);
        assert_eq!(
            mounted_at(mi, 8, 0, &["8:1".to_string()]).as_deref(),
            Some("/")
        );
    }

    #[test]
    fn a_user_file_is_read_only_without_permission() {
        let dir = std::env::temp_dir().join(format!("hvb-devtest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("mine.img");
        std::fs::write(&f, vec![7u8; 8192]).unwrap();
        assert_eq!(check_user_disk(&f, false, &[]), Ok(()));
        let e = check_user_disk(&f, false, &["io.randwrite"]).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("--allow-destructive-writes"), "{text}");
        assert!(text.contains("io.randwrite"), "{text}");
        assert_eq!(check_user_disk(&f, true, &["io.randwrite"]), Ok(()));
        assert_eq!(std::fs::read(&f).unwrap(), vec![7u8; 8192]);
        let missing = check_user_disk(&dir.join("nope.img"), false, &[]).unwrap_err();
        assert!(missing.to_string().contains("nope.img"));
        let not_file = check_user_disk(&dir, false, &[]).unwrap_err();
        assert!(not_file.to_string().contains("not a regular file"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
