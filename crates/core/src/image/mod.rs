//! Guest images: the kernel to boot and the initramfs hvbench assembles itself.
//!
//! The initramfs is an uncompressed newc cpio archive (the kernel unpacks it with no
//! decompression cost, which matters under emulation) holding:
//! - `/init`: the agent, without its debug sections (see [`guest_executable`]);
//! - `/modules/NN-name.ko`: the modules the guest needs, decompressed, in load order, and
//!   `/modules/order` listing them (empty for a kernel that needs none: see [`ModuleSet`]);
//! - `/dev/console` (char 5:1), so that the kernel can open the console before devtmpfs is
//!   mounted, and the empty mount points `/dev`, `/proc`, `/sys`, `/tmp`.
//!
//! Images are cached by content hash under `$XDG_CACHE_HOME/hvbench` (or `~/.cache/hvbench`,
//! or the temporary directory) and written atomically, so concurrent runs share them.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use sha2::{Digest, Sha256};

use crate::agent::AgentBinary;

pub mod cpio;
pub mod kernel;
pub mod modules;
pub mod rootfs;
pub mod vmlinux;

pub use kernel::KernelImage;
use modules::{ModuleDb, ModuleRequest};

/// Bumped whenever the layout of the image changes, so that cached images are rebuilt.
pub const FORMAT_VERSION: u32 = 1;

/// The largest image hvbench builds (DESIGN.md: the initramfs stays under 10 MiB).
pub const MAX_IMAGE_BYTES: u64 = 10 * 1024 * 1024;

/// Modules every guest gets, and whether each may be missing: the PCI transport and the
/// console (the agent's channel) are needed; disk and network are useful.
pub const GUEST_MODULES: &[(&str, bool)] = &[
    ("virtio_pci", false),
    ("virtio_console", false),
    ("virtio_blk", true),
    ("virtio_net", true),
];

/// Why a guest image could not be made. Each message names the fix.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("no guest kernel found: {dir} has no vmlinuz-*; install one with `apt-get install linux-image-cloud-amd64`, or pass --kernel PATH")]
    NoKernel { dir: PathBuf },
    #[error("kernel {path} does not exist: check the --kernel path, or leave it out to use the newest /boot/vmlinuz-*")]
    KernelNotFound { path: PathBuf },
    #[error("cannot read the kernel {path}: {source}; `chmod 0644 {path}` or run as root")]
    KernelUnreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a bzImage with a version string: name it vmlinuz-<release>, or pass a distribution kernel with --kernel")]
    NotBzImage { path: PathBuf },
    #[error("cannot read {}: {source}; install this kernel's modules (`apt-get install linux-image-<release>`) or pass a --kernel whose modules are in /lib/modules", dir.join("modules.dep").display())]
    NoModules {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("kernel module {name}{} is neither in modules.dep nor built into the kernel: boot a kernel with virtio drivers (`apt-get install linux-image-cloud-amd64`, then --kernel /boot/vmlinuz-<release>)", needed_by.as_ref().map(|n| format!(" (needed by {n})")).unwrap_or_default())]
    MissingModule {
        name: String,
        needed_by: Option<String>,
    },
    #[error("kernel {kernel} has no driver for {}, which the guest's devices need: install a kernel that has them (`apt-get install linux-image-amd64`) or pass --kernel /boot/vmlinuz-<release> of one", drivers.join(", "))]
    MissingDrivers {
        kernel: String,
        drivers: Vec<String>,
    },
    #[error("cannot use kernel module {path}: {reason}; reinstall the kernel's modules package")]
    BadModule { path: PathBuf, reason: String },
    #[error("the initramfs would be {size} bytes, over the {limit}-byte limit: build the agent with `cargo build --release`")]
    TooLarge { size: u64, limit: u64 },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ImageError {
    let what = what.into();
    move |source| ImageError::Io { what, source }
}

/// A built (or cached) initramfs.
#[derive(Debug, Clone, PartialEq)]
pub struct Initramfs {
    pub path: PathBuf,
    pub size: u64,
    /// The content hash that names it (hex SHA-256).
    pub hash: String,
    /// Modules it loads, in order.
    pub modules: Vec<String>,
    /// Optional modules the kernel does not have.
    pub skipped_modules: Vec<String>,
}

/// The kernel modules an image carries, and the tree they come from.
///
/// A distribution kernel booted by QEMU needs its virtio drivers from
/// `/lib/modules/<release>` ([`ModuleSet::guest`]); User-Mode Linux has its own release and
/// its own tree (`/usr/lib/uml/modules/<release>`), and needs no module at all for what the
/// agent does ([`ModuleSet::none`]); [`ModuleSet::from_tree`] takes any tree and list.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModuleSet {
    /// The kernel release the modules were built for (part of the image's identity).
    pub release: String,
    /// The modules directory holding `modules.dep`; not read when `wanted` is empty.
    pub dir: PathBuf,
    /// Module names, and whether each may be missing (then it is skipped, not an error).
    pub wanted: Vec<(String, bool)>,
}

impl ModuleSet {
    /// The standard [`GUEST_MODULES`] of `kernel`, plus `extra` (required).
    pub fn guest(kernel: &KernelImage, extra: &[&str]) -> ModuleSet {
        let mut wanted: Vec<(String, bool)> = GUEST_MODULES
            .iter()
            .map(|&(name, optional)| (name.to_string(), optional))
            .collect();
        wanted.extend(extra.iter().map(|&name| (name.to_string(), false)));
        ModuleSet {
            release: kernel.version.clone(),
            dir: kernel.modules_dir.clone(),
            wanted,
        }
    }

    /// No modules: the kernel has built in everything the guest uses. Such images do not
    /// depend on the kernel, so every module-less kernel shares one.
    pub fn none() -> ModuleSet {
        ModuleSet {
            release: String::new(),
            dir: PathBuf::new(),
            wanted: Vec::new(),
        }
    }

    /// `wanted` (all required) from the tree `dir` of kernel `release`.
    pub fn from_tree(release: &str, dir: &Path, wanted: &[&str]) -> ModuleSet {
        ModuleSet {
            release: release.to_string(),
            dir: dir.to_path_buf(),
            wanted: wanted.iter().map(|&n| (n.to_string(), false)).collect(),
        }
    }

    /// The modules to load, dependencies first, and the optional ones that are missing.
    fn resolve(&self) -> Result<(Vec<modules::ModuleFile>, Vec<String>), ImageError> {
        if self.wanted.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let db = ModuleDb::load(&self.dir)?;
        let wanted: Vec<ModuleRequest> = self
            .wanted
            .iter()
            .map(|(name, optional)| ModuleRequest {
                name,
                optional: *optional,
            })
            .collect();
        db.resolve(&wanted)
    }
}

/// Builds the initramfs for `agent` and `kernel` with the standard [`GUEST_MODULES`] plus
/// `extra_modules` (required), or returns the cached one with the same content.
pub fn build_initramfs(
    agent: &AgentBinary,
    kernel: &KernelImage,
    extra_modules: &[&str],
) -> Result<Initramfs, ImageError> {
    build_image(agent, &ModuleSet::guest(kernel, extra_modules))
}

/// As [`build_initramfs`], caching in `cache`.
pub fn build_initramfs_in(
    cache: &Path,
    agent: &AgentBinary,
    kernel: &KernelImage,
    extra_modules: &[&str],
) -> Result<Initramfs, ImageError> {
    build_image_in(cache, agent, &ModuleSet::guest(kernel, extra_modules))
}

/// Builds the initramfs for `agent` with the modules of `set`, or returns the cached one with
/// the same content.
pub fn build_image(agent: &AgentBinary, set: &ModuleSet) -> Result<Initramfs, ImageError> {
    build_image_in(&cache_dir(), agent, set)
}

type MemoKey = (PathBuf, String, ModuleSet, PathBuf);

/// As [`build_image`], caching in `cache`.
pub fn build_image_in(
    cache: &Path,
    agent: &AgentBinary,
    set: &ModuleSet,
) -> Result<Initramfs, ImageError> {
    // Within one process the same inputs give the same image: skip re-reading them.
    static MEMO: OnceLock<Mutex<HashMap<MemoKey, Initramfs>>> = OnceLock::new();
    let key: MemoKey = (
        agent.path.clone(),
        agent.sha256.clone(),
        set.clone(),
        cache.to_path_buf(),
    );
    let memo = MEMO.get_or_init(Default::default);
    if let Some(hit) = memo.lock().ok().and_then(|m| m.get(&key).cloned()) {
        if is_complete(&hit.path) {
            return Ok(hit);
        }
    }
    let built = build_uncached(cache, agent, set)?;
    if let Ok(mut m) = memo.lock() {
        m.insert(key, built.clone());
    }
    Ok(built)
}

fn build_uncached(
    cache: &Path,
    agent: &AgentBinary,
    set: &ModuleSet,
) -> Result<Initramfs, ImageError> {
    let agent_bytes = std::fs::read(&agent.path).map_err(io_err(format!(
        "cannot read the agent {}",
        agent.path.display()
    )))?;
    let (mods, skipped) = set.resolve()?;

    let mut h = Sha256::new();
    h.update(b"hvbench-initramfs\0");
    h.update(FORMAT_VERSION.to_le_bytes());
    h.update(Sha256::digest(&agent_bytes));
    h.update(set.release.as_bytes());
    h.update(b"\0");
    let mut raw_modules = Vec::with_capacity(mods.len());
    for m in &mods {
        let path = set.dir.join(&m.rel_path);
        let raw = std::fs::read(&path)
            .map_err(io_err(format!("cannot read module {}", path.display())))?;
        h.update(m.name.as_bytes());
        h.update(b"\0");
        h.update((raw.len() as u64).to_le_bytes());
        h.update(&raw);
        raw_modules.push((m, path));
    }
    let hash = format!("{:x}", h.finalize());
    let path = cache.join(format!("initramfs-{}.cpio", &hash[..24]));
    let modules: Vec<String> = mods.iter().map(|m| m.name.clone()).collect();
    if is_complete(&path) {
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        return Ok(Initramfs {
            path,
            size,
            hash,
            modules,
            skipped_modules: skipped,
        });
    }

    let mut w = cpio::CpioWriter::new(Vec::with_capacity(4 << 20));
    let cpio_err = io_err("cannot assemble the initramfs");
    (|| -> std::io::Result<()> {
        for d in ["dev", "proc", "sys", "tmp", "modules"] {
            w.dir(d, 0o755)?;
        }
        w.char_dev("dev/console", 0o600, 5, 1)?;
        w.file("init", 0o755, &guest_executable(&agent_bytes))?;
        Ok(())
    })()
    .map_err(cpio_err)?;
    let mut order = String::new();
    for (i, (m, path)) in raw_modules.iter().enumerate() {
        let data = modules::read_module(path)?;
        let file = format!("{:02}-{}.ko", i + 1, m.name);
        w.file(&format!("modules/{file}"), 0o644, &data)
            .map_err(io_err("cannot assemble the initramfs"))?;
        order.push_str(&file);
        order.push('\n');
    }
    w.file("modules/order", 0o644, order.as_bytes())
        .map_err(io_err("cannot assemble the initramfs"))?;
    let bytes = w
        .finish()
        .map_err(io_err("cannot assemble the initramfs"))?;
    let size = bytes.len() as u64;
    if size > MAX_IMAGE_BYTES {
        return Err(ImageError::TooLarge {
            size,
            limit: MAX_IMAGE_BYTES,
        });
    }
    write_atomically(&path, &bytes)?;
    prune(cache, "initramfs-", ".cpio", KEEP_IMAGES, &path);
    Ok(Initramfs {
        path,
        size,
        hash,
        modules,
        skipped_modules: skipped,
    })
}

/// Cached images kept besides the newest (each agent build makes a new one).
const KEEP_IMAGES: usize = 8;

/// Removes the older cached files `prefix*suffix` beyond the `keep` newest, sparing `current`
/// and anything younger than an hour (another run may be about to boot it).
pub(crate) fn prune(cache: &Path, prefix: &str, suffix: &str, keep: usize, current: &Path) {
    let Ok(rd) = std::fs::read_dir(cache) else {
        return;
    };
    let mut files: Vec<(std::time::SystemTime, PathBuf)> = rd
        .filter_map(|e| e.ok())
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.starts_with(prefix) && n.ends_with(suffix)
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    files.sort_by_key(|f| std::cmp::Reverse(f.0));
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    for (mtime, path) in files.into_iter().skip(keep) {
        if mtime < hour_ago && path != current {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A cached image is complete when it ends with the cpio trailer (a crash mid-write leaves
/// only a temporary file, but a torn rename on an unsynced file system could leave less).
fn is_complete(path: &Path) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    let mut tail = [0u8; 128];
    if f.seek(SeekFrom::End(-(tail.len() as i64))).is_err() || f.read_exact(&mut tail).is_err() {
        return false;
    }
    tail.windows(cpio::TRAILER.len())
        .any(|w| w == cpio::TRAILER.as_bytes())
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ImageError> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("image"),
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.flush()?;
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io_err(format!("cannot write {}", path.display())))
}

/// Where images are cached: `$XDG_CACHE_HOME/hvbench`, else `~/.cache/hvbench`, else a
/// directory of this user's in the temporary directory. Created if needed.
pub fn cache_dir() -> PathBuf {
    let env_dir = |k: &str| {
        std::env::var_os(k)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    let candidates = [
        env_dir("XDG_CACHE_HOME").map(|p| p.join("hvbench")),
        env_dir("HOME").map(|p| p.join(".cache").join("hvbench")),
    ];
    for c in candidates.into_iter().flatten() {
        if std::fs::create_dir_all(&c).is_ok() && is_writable_dir(&c) {
            return c;
        }
    }
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    let t = std::env::temp_dir().join(format!("hvbench-cache-{uid}"));
    {
        use std::os::unix::fs::DirBuilderExt;
        let _ = std::fs::DirBuilder::new()
            .mode(0o700)
            .recursive(true)
            .create(&t);
    }
    t
}

fn is_writable_dir(p: &Path) -> bool {
    let probe = p.join(format!(".probe-{}", std::process::id()));
    let ok = std::fs::write(&probe, b"").is_ok();
    let _ = std::fs::remove_file(&probe);
    ok
}

/// The agent as it goes into a guest: the same executable without what only debuggers read.
///
/// Loading an ELF executable needs its program headers and the bytes they cover, nothing else.
/// Debug builds carry several megabytes of DWARF after the last loaded byte; this cuts the file
/// there and clears the section header fields, like `sstrip`. Anything unexpected (section
/// headers inside the loaded part, a file that is not ELF64) returns the bytes unchanged.
pub fn guest_executable(bytes: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    use std::borrow::Cow;
    let Some(end) = loaded_end(bytes) else {
        return Cow::Borrowed(bytes);
    };
    let shoff = u64_at(bytes, 0x28).unwrap_or(0) as usize;
    if end >= bytes.len() || (shoff != 0 && shoff < end) {
        return Cow::Borrowed(bytes);
    }
    let mut out = bytes[..end].to_vec();
    out[0x28..0x30].fill(0); // e_shoff
    out[0x3A..0x40].fill(0); // e_shentsize, e_shnum, e_shstrndx
    Cow::Owned(out)
}

fn u64_at(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?))
}

fn u16_at(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?))
}

/// The end of the last byte any program header covers, for a 64-bit little-endian ELF.
fn loaded_end(b: &[u8]) -> Option<usize> {
    if b.len() < 64 || &b[..4] != b"\x7fELF" || b[4] != 2 || b[5] != 1 {
        return None;
    }
    let phoff = u64_at(b, 0x20)? as usize;
    let phentsize = u16_at(b, 0x36)? as usize;
    let phnum = u16_at(b, 0x38)? as usize;
    if phentsize < 56 || phnum == 0 {
        return None;
    }
    let mut end = phoff.checked_add(phentsize.checked_mul(phnum)?)?.max(64);
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        let off = u64_at(b, ph + 8)? as usize;
        let filesz = u64_at(b, ph + 32)? as usize;
        end = end.max(off.checked_add(filesz)?);
    }
    (end <= b.len()).then_some(end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workdir::WorkDir;

    fn fake_elf(loaded: usize, trailing: usize) -> Vec<u8> {
        let mut b = vec![0u8; loaded + trailing];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[0x20..0x28].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
        b[0x28..0x30].copy_from_slice(&((loaded + 8) as u64).to_le_bytes()); // e_shoff
        b[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        b[0x38..0x3A].copy_from_slice(&1u16.to_le_bytes());
        b[0x3C..0x3E].copy_from_slice(&3u16.to_le_bytes());
        b[64..68].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        b[64 + 32..64 + 40].copy_from_slice(&(loaded as u64).to_le_bytes()); // p_filesz
        b
    }

    #[test]
    fn strips_what_is_not_loaded() {
        let b = fake_elf(4096, 10_000);
        let s = guest_executable(&b);
        assert_eq!(s.len(), 4096);
        assert_eq!(u64_at(&s, 0x28), Some(0));
        assert_eq!(u16_at(&s, 0x3C), Some(0));
        // Already minimal, or not ELF: unchanged.
        let b = fake_elf(4096, 0);
        assert!(matches!(
            guest_executable(&b),
            std::borrow::Cow::Borrowed(_)
        ));
        assert!(matches!(
            guest_executable(b"#!/bin/sh\n"),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    /// A fake kernel tree: `boot/vmlinuz-9.9.9-test` and `modules/9.9.9-test/...`.
    fn fake_tree(d: &Path) -> KernelImage {
        let mdir = d.join("modules/9.9.9-test");
        std::fs::create_dir_all(mdir.join("kernel")).unwrap();
        let dep = "kernel/virtio_ring.ko:\nkernel/virtio.ko: kernel/virtio_ring.ko\n\
                   kernel/virtio_pci.ko.xz: kernel/virtio.ko kernel/virtio_ring.ko\n\
                   kernel/virtio_console.ko.zst: kernel/virtio.ko kernel/virtio_ring.ko\n";
        std::fs::write(mdir.join("modules.dep"), dep).unwrap();
        std::fs::write(mdir.join("modules.builtin"), "kernel/virtio_blk.ko\n").unwrap();
        std::fs::write(mdir.join("kernel/virtio_ring.ko"), b"\x7fELFring").unwrap();
        std::fs::write(mdir.join("kernel/virtio.ko"), b"\x7fELFvirtio").unwrap();
        let mut xz = Vec::new();
        lzma_rs::xz_compress(&mut &b"\x7fELFpci"[..], &mut xz).unwrap();
        std::fs::write(mdir.join("kernel/virtio_pci.ko.xz"), xz).unwrap();
        let zst = ruzstd::encoding::compress_to_vec(
            &b"\x7fELFconsole"[..],
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        std::fs::write(mdir.join("kernel/virtio_console.ko.zst"), zst).unwrap();
        let boot = d.join("boot");
        std::fs::create_dir_all(&boot).unwrap();
        std::fs::write(boot.join("vmlinuz-9.9.9-test"), b"kernel").unwrap();
        KernelImage::find_in(None, &boot, &d.join("modules")).unwrap()
    }

    #[test]
    fn builds_and_caches_an_image() {
        let d = WorkDir::new("image-test").unwrap();
        let kernel = fake_tree(d.path());
        let agent_path = d.path().join("agent");
        std::fs::write(&agent_path, fake_elf(4096, 5000)).unwrap();
        let agent = AgentBinary {
            path: agent_path.clone(),
            sha256: "x".into(),
            size: 9096,
        };
        let cache = d.path().join("cache");
        std::fs::create_dir(&cache).unwrap();
        let img = build_initramfs_in(&cache, &agent, &kernel, &[]).unwrap();
        assert_eq!(
            img.modules,
            ["virtio_ring", "virtio", "virtio_pci", "virtio_console"]
        );
        assert_eq!(img.skipped_modules, ["virtio_net"]);
        let bytes = std::fs::read(&img.path).unwrap();
        assert_eq!(bytes.len() as u64, img.size);
        let entries = cpio::parse(&bytes).unwrap();
        let get = |n: &str| {
            entries
                .iter()
                .find(|e| e.name == n)
                .unwrap_or_else(|| panic!("no {n}"))
        };
        assert_eq!(get("init").mode, 0o100755);
        assert_eq!(get("init").data.len(), 4096, "the agent goes in stripped");
        assert_eq!(get("dev/console").rdev, (5, 1));
        for dir in ["dev", "proc", "sys", "tmp", "modules"] {
            assert_eq!(get(dir).mode & 0o170000, 0o040000);
        }
        assert_eq!(get("modules/03-virtio_pci.ko").data, b"\x7fELFpci");
        assert_eq!(get("modules/04-virtio_console.ko").data, b"\x7fELFconsole");
        assert_eq!(
            String::from_utf8(get("modules/order").data.clone()).unwrap(),
            "01-virtio_ring.ko\n02-virtio.ko\n03-virtio_pci.ko\n04-virtio_console.ko\n"
        );
        // Same inputs: the same file. Another agent: another file.
        let again = build_uncached(&cache, &agent, &ModuleSet::guest(&kernel, &[])).unwrap();
        assert_eq!(again, img);
        std::fs::write(&agent_path, fake_elf(8192, 0)).unwrap();
        let other = build_uncached(&cache, &agent, &ModuleSet::guest(&kernel, &[])).unwrap();
        assert_ne!(other.path, img.path);
        // No temporary files left behind.
        let names: Vec<String> = std::fs::read_dir(&cache)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(
            names
                .iter()
                .all(|n| n.starts_with("initramfs-") && n.ends_with(".cpio")),
            "{names:?}"
        );
        // A missing extra module is an error naming it.
        let e = build_uncached(&cache, &agent, &ModuleSet::guest(&kernel, &["virtio_mmio"]))
            .unwrap_err();
        assert!(e.to_string().contains("virtio_mmio"), "{e}");
    }

    fn fake_agent(d: &Path, loaded: usize) -> AgentBinary {
        let path = d.join(format!("agent-{loaded}"));
        std::fs::write(&path, fake_elf(loaded, 0)).unwrap();
        AgentBinary {
            path,
            sha256: format!("agent-{loaded}"),
            size: loaded as u64,
        }
    }

    #[test]
    fn an_image_without_modules_reads_no_module_tree() {
        let d = WorkDir::new("image-test").unwrap();
        let agent = fake_agent(d.path(), 4096);
        let cache = d.path().join("cache");
        std::fs::create_dir(&cache).unwrap();
        // ModuleSet::none names no directory: nothing is read but the agent.
        let img = build_image_in(&cache, &agent, &ModuleSet::none()).unwrap();
        assert!(img.modules.is_empty() && img.skipped_modules.is_empty());
        let entries = cpio::parse(&std::fs::read(&img.path).unwrap()).unwrap();
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        for n in ["init", "dev/console", "modules/order", "proc", "sys", "tmp"] {
            assert!(names.contains(&n), "{n} missing in {names:?}");
        }
        assert!(
            !names.iter().any(|n| n.ends_with(".ko")),
            "no module expected: {names:?}"
        );
        let order = entries.iter().find(|e| e.name == "modules/order").unwrap();
        assert!(order.data.is_empty());
        // The same image whatever kernel asks for it; another agent, another image.
        assert_eq!(
            build_uncached(&cache, &agent, &ModuleSet::none()).unwrap(),
            img
        );
        let other = fake_agent(d.path(), 8192);
        assert_ne!(
            build_image_in(&cache, &other, &ModuleSet::none())
                .unwrap()
                .path,
            img.path
        );
        // An empty list from a tree that does not exist is the same as none.
        let empty = ModuleSet::from_tree("6.1.176", Path::new("/nonexistent-tree"), &[]);
        assert!(build_uncached(&cache, &agent, &empty)
            .unwrap()
            .modules
            .is_empty());
    }

    #[test]
    fn modules_come_from_the_tree_the_set_names() {
        let d = WorkDir::new("image-test").unwrap();
        let kernel = fake_tree(d.path());
        let agent = fake_agent(d.path(), 4096);
        // A tree of another kernel (as UML's /usr/lib/uml/modules/<release>), one module asked.
        let set = ModuleSet::from_tree("9.9.9-test", &kernel.modules_dir, &["virtio_console"]);
        let img = build_uncached(d.path(), &agent, &set).unwrap();
        assert_eq!(img.modules, ["virtio_ring", "virtio", "virtio_console"]);
        let guest = build_uncached(d.path(), &agent, &ModuleSet::guest(&kernel, &[])).unwrap();
        assert_ne!(img.path, guest.path);
        // Required modules of a set must exist; a set whose tree is missing says which.
        let e = build_uncached(
            d.path(),
            &agent,
            &ModuleSet::from_tree("9.9.9-test", &kernel.modules_dir, &["hostfs"]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("hostfs"), "{e}");
        let e = build_uncached(
            d.path(),
            &agent,
            &ModuleSet::from_tree("1.0", &d.path().join("no-tree"), &["hostfs"]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("no-tree"), "{e}");
    }

    #[test]
    fn truncated_cache_entry_is_rebuilt() {
        let d = WorkDir::new("image-test").unwrap();
        let kernel = fake_tree(d.path());
        let agent_path = d.path().join("agent");
        std::fs::write(&agent_path, fake_elf(4096, 0)).unwrap();
        let agent = AgentBinary {
            path: agent_path,
            sha256: "y".into(),
            size: 4096,
        };
        let img = build_uncached(d.path(), &agent, &ModuleSet::guest(&kernel, &[])).unwrap();
        std::fs::write(&img.path, b"torn").unwrap();
        let again = build_uncached(d.path(), &agent, &ModuleSet::guest(&kernel, &[])).unwrap();
        assert!(cpio::parse(&std::fs::read(&again.path).unwrap()).is_ok());
    }

    #[test]
    fn prune_keeps_the_newest_and_the_young() {
        let d = WorkDir::new("image-test").unwrap();
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        for i in 0..5 {
            let p = d.path().join(format!("initramfs-{i}.cpio"));
            std::fs::write(&p, b"x").unwrap();
            if i < 3 {
                let f = std::fs::File::options().write(true).open(&p).unwrap();
                f.set_modified(old - std::time::Duration::from_secs(i))
                    .unwrap();
            }
        }
        std::fs::write(d.path().join("other.cpio"), b"x").unwrap();
        prune(
            d.path(),
            "initramfs-",
            ".cpio",
            1,
            &d.path().join("initramfs-2.cpio"),
        );
        let mut left: Vec<String> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        // 3 and 4 are young, 2 is current, 0 and 1 are old: gone.
        assert_eq!(
            left,
            [
                "initramfs-2.cpio",
                "initramfs-3.cpio",
                "initramfs-4.cpio",
                "other.cpio"
            ]
        );
    }
}
