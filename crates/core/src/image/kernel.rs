//! Finding the guest kernel and its version.
//!
//! `--kernel PATH` wins; otherwise the newest readable `/boot/vmlinuz-*` (by version order, so
//! `6.1.0-10` is newer than `6.1.0-9`). The version names `/lib/modules/<version>`; it comes from
//! the file name (`vmlinuz-<version>`) or, for a kernel named otherwise, from the version string
//! in the bzImage setup header.

use std::cmp::Ordering;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::ImageError;

/// The directory distribution kernels are installed in.
pub const BOOT_DIR: &str = "/boot";
/// The directory kernel modules are installed in.
pub const MODULES_ROOT: &str = "/lib/modules";

/// A kernel to boot guests with.
#[derive(Debug, Clone, PartialEq)]
pub struct KernelImage {
    pub path: PathBuf,
    /// The release (`uname -r` inside the guest): `6.1.0-56-cloud-amd64`.
    pub version: String,
    /// `/lib/modules/<version>`; it may not exist (then only built-in drivers are there).
    pub modules_dir: PathBuf,
}

impl KernelImage {
    /// `explicit` if given, else the newest readable `/boot/vmlinuz-*`.
    pub fn find(explicit: Option<&Path>) -> Result<KernelImage, ImageError> {
        Self::find_in(explicit, Path::new(BOOT_DIR), Path::new(MODULES_ROOT))
    }

    /// As [`KernelImage::find`], with the boot and module directories given (for tests).
    pub fn find_in(
        explicit: Option<&Path>,
        boot: &Path,
        modules_root: &Path,
    ) -> Result<KernelImage, ImageError> {
        let path = match explicit {
            Some(p) => {
                check_readable(p)?;
                p.to_path_buf()
            }
            None => newest_in(boot)?,
        };
        let version = version_of(&path)?;
        let modules_dir = modules_root.join(&version);
        Ok(KernelImage {
            path,
            version,
            modules_dir,
        })
    }
}

impl KernelImage {
    /// As [`KernelImage::find`], for a guest whose devices need `drivers`: without `explicit`,
    /// the newest kernel that has them all (built in or as modules), so that the small cloud
    /// kernel boots paravirtual guests and a generic kernel boots guests with emulated devices.
    pub fn find_with_drivers(
        explicit: Option<&Path>,
        drivers: &[&str],
    ) -> Result<KernelImage, ImageError> {
        Self::find_with_drivers_in(
            explicit,
            drivers,
            Path::new(BOOT_DIR),
            Path::new(MODULES_ROOT),
        )
    }

    pub fn find_with_drivers_in(
        explicit: Option<&Path>,
        drivers: &[&str],
        boot: &Path,
        modules_root: &Path,
    ) -> Result<KernelImage, ImageError> {
        let missing_in = |k: &KernelImage| -> Vec<String> {
            let db = super::modules::ModuleDb::load(&k.modules_dir).unwrap_or_default();
            drivers
                .iter()
                .filter(|d| !db.has(d))
                .map(|d| d.to_string())
                .collect()
        };
        let first = Self::find_in(explicit, boot, modules_root)?;
        if drivers.is_empty() {
            return Ok(first);
        }
        let missing = missing_in(&first);
        if missing.is_empty() {
            return Ok(first);
        }
        if explicit.is_none() {
            for path in all_in(boot) {
                let Ok(k) = Self::find_in(Some(&path), boot, modules_root) else {
                    continue;
                };
                if missing_in(&k).is_empty() {
                    return Ok(k);
                }
            }
        }
        Err(ImageError::MissingDrivers {
            kernel: first.version,
            drivers: missing,
        })
    }
}

/// Every `vmlinuz-*` in `boot`, newest first.
fn all_in(boot: &Path) -> Vec<PathBuf> {
    let mut candidates: Vec<(String, PathBuf)> = std::fs::read_dir(boot)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let name = e.file_name().to_str()?.to_string();
                    let version = name.strip_prefix("vmlinuz-")?.to_string();
                    (!version.is_empty() && e.path().is_file()).then(|| (version, e.path()))
                })
                .collect()
        })
        .unwrap_or_default();
    candidates.sort_by(|a, b| version_cmp(&b.0, &a.0));
    candidates.into_iter().map(|(_, p)| p).collect()
}

/// The newest readable `vmlinuz-*` in `boot`.
fn newest_in(boot: &Path) -> Result<PathBuf, ImageError> {
    let candidates = all_in(boot);
    if candidates.is_empty() {
        return Err(ImageError::NoKernel {
            dir: boot.to_path_buf(),
        });
    }
    let mut first_error = None;
    for path in &candidates {
        match check_readable(path) {
            Ok(()) => return Ok(path.clone()),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error.expect("candidates is not empty"))
}

fn check_readable(path: &Path) -> Result<(), ImageError> {
    match std::fs::File::open(path) {
        Ok(mut f) => {
            let mut b = [0u8; 1];
            f.read(&mut b)
                .map(|_| ())
                .map_err(|source| unreadable(path, source))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ImageError::KernelNotFound {
            path: path.to_path_buf(),
        }),
        Err(source) => Err(unreadable(path, source)),
    }
}

fn unreadable(path: &Path, source: std::io::Error) -> ImageError {
    ImageError::KernelUnreadable {
        path: path.to_path_buf(),
        source,
    }
}

/// Compares versions the way `sort -V` does for kernel releases: runs of digits numerically,
/// everything else byte by byte.
pub fn version_cmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a.first(), b.first()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let na = a.iter().take_while(|c| c.is_ascii_digit()).count();
                let nb = b.iter().take_while(|c| c.is_ascii_digit()).count();
                let (da, db) = (trim_zeros(&a[..na]), trim_zeros(&b[..nb]));
                let ord = da.len().cmp(&db.len()).then_with(|| da.cmp(db));
                if ord != Ordering::Equal {
                    return ord;
                }
                a = &a[na..];
                b = &b[nb..];
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(y);
                }
                a = &a[1..];
                b = &b[1..];
            }
        }
    }
}

fn trim_zeros(d: &[u8]) -> &[u8] {
    let z = d.iter().take_while(|&&c| c == b'0').count();
    &d[z..]
}

/// The kernel release of an image: from its file name, else from its bzImage header.
pub fn version_of(path: &Path) -> Result<String, ImageError> {
    if let Some(v) = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("vmlinuz-"))
    {
        if !v.is_empty() {
            return Ok(v.to_string());
        }
    }
    let mut f = std::fs::File::open(path).map_err(|e| unreadable(path, e))?;
    let mut head = vec![0u8; 0x210];
    f.read_exact(&mut head)
        .map_err(|_| ImageError::NotBzImage {
            path: path.to_path_buf(),
        })?;
    header_version(&head, |off, buf| {
        f.seek(SeekFrom::Start(off)).and_then(|_| f.read(buf)).ok()
    })
    .ok_or_else(|| ImageError::NotBzImage {
        path: path.to_path_buf(),
    })
}

/// Reads the version string a bzImage setup header points at: the magic `HdrS` at 0x202, the
/// pointer at 0x20E, the string at pointer + 0x200; its first word is the release.
pub fn header_version(
    head: &[u8],
    mut read_at: impl FnMut(u64, &mut [u8]) -> Option<usize>,
) -> Option<String> {
    if head.get(0x202..0x206)? != b"HdrS" {
        return None;
    }
    let ptr = u16::from_le_bytes([*head.get(0x20E)?, *head.get(0x20F)?]) as u64;
    if ptr == 0 {
        return None;
    }
    let mut buf = [0u8; 256];
    let n = read_at(ptr + 0x200, &mut buf)?;
    let s = &buf[..n];
    let end = s.iter().position(|&c| c == 0 || c == b' ').unwrap_or(n);
    let v = std::str::from_utf8(&s[..end]).ok()?.trim();
    (!v.is_empty() && v.chars().all(|c| c.is_ascii_graphic())).then(|| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workdir::WorkDir;

    #[test]
    fn version_order() {
        assert_eq!(
            version_cmp("6.1.0-10-amd64", "6.1.0-9-amd64"),
            Ordering::Greater
        );
        assert_eq!(version_cmp("6.10.0", "6.9.12"), Ordering::Greater);
        assert_eq!(version_cmp("6.1.0", "6.1.0"), Ordering::Equal);
        assert_eq!(
            version_cmp("6.1.0-56-cloud-amd64", "6.1.0-56-amd64"),
            Ordering::Greater
        );
        assert_eq!(version_cmp("5.10", "5.10.1"), Ordering::Less);
    }

    #[test]
    fn empty_boot_names_the_package() {
        let d = WorkDir::new("kernel-test").unwrap();
        let e = KernelImage::find_in(None, d.path(), d.path()).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("apt-get install linux-image-cloud-amd64"),
            "{msg}"
        );
        assert!(msg.contains(&d.path().display().to_string()), "{msg}");
        let e = KernelImage::find_in(None, &d.path().join("absent"), d.path()).unwrap_err();
        assert!(e
            .to_string()
            .contains("apt-get install linux-image-cloud-amd64"));
    }

    #[test]
    fn explicit_missing_kernel_is_clear() {
        let d = WorkDir::new("kernel-test").unwrap();
        let p = d.path().join("no-such-kernel");
        let msg = KernelImage::find(Some(&p)).unwrap_err().to_string();
        assert!(
            msg.contains("no-such-kernel") && msg.contains("--kernel"),
            "{msg}"
        );
    }

    #[test]
    fn picks_newest_and_derives_modules_dir() {
        let d = WorkDir::new("kernel-test").unwrap();
        for v in ["6.1.0-9-amd64", "6.1.0-10-amd64", "5.10.0-1-amd64"] {
            std::fs::write(d.path().join(format!("vmlinuz-{v}")), b"x").unwrap();
        }
        std::fs::write(d.path().join("config-9.9.9"), b"x").unwrap();
        let k = KernelImage::find_in(None, d.path(), Path::new("/mods")).unwrap();
        assert_eq!(k.version, "6.1.0-10-amd64");
        assert_eq!(k.modules_dir, Path::new("/mods/6.1.0-10-amd64"));
    }

    #[test]
    fn the_kernel_is_chosen_by_the_drivers_the_devices_need() {
        let d = WorkDir::new("kernel-test").unwrap();
        let (boot, mods) = (d.path().join("boot"), d.path().join("modules"));
        std::fs::create_dir_all(&boot).unwrap();
        // The newest (by name) is the cloud kernel, which lacks ahci and e1000.
        for (v, dep, builtin) in [
            (
                "6.1.0-5-cloud-amd64",
                "kernel/virtio_blk.ko:\nkernel/virtio_net.ko:\n",
                "kernel/ata_piix.ko\n",
            ),
            (
                "6.1.0-5-amd64",
                "kernel/virtio_blk.ko:\nkernel/ahci.ko: kernel/libahci.ko\nkernel/libahci.ko:\nkernel/e1000.ko:\n",
                "",
            ),
        ] {
            std::fs::write(boot.join(format!("vmlinuz-{v}")), b"x").unwrap();
            std::fs::create_dir_all(mods.join(v)).unwrap();
            std::fs::write(mods.join(v).join("modules.dep"), dep).unwrap();
            std::fs::write(mods.join(v).join("modules.builtin"), builtin).unwrap();
        }
        let pick = |drivers: &[&str]| {
            KernelImage::find_with_drivers_in(None, drivers, &boot, &mods).map(|k| k.version)
        };
        assert_eq!(pick(&[]).unwrap(), "6.1.0-5-cloud-amd64");
        assert_eq!(pick(&["virtio_blk"]).unwrap(), "6.1.0-5-cloud-amd64");
        assert_eq!(
            pick(&["ata_piix"]).unwrap(),
            "6.1.0-5-cloud-amd64",
            "built in counts"
        );
        assert_eq!(pick(&["ahci"]).unwrap(), "6.1.0-5-amd64");
        assert_eq!(pick(&["e1000", "virtio_blk"]).unwrap(), "6.1.0-5-amd64");
        let e = pick(&["nvme"]).unwrap_err().to_string();
        assert!(
            e.contains("nvme") && e.contains("apt-get install linux-image-amd64"),
            "{e}"
        );
        // An explicit kernel is taken as it is, or refused with the missing driver named.
        let cloud = boot.join("vmlinuz-6.1.0-5-cloud-amd64");
        let e = KernelImage::find_with_drivers_in(Some(&cloud), &["ahci"], &boot, &mods)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("ahci") && e.contains("6.1.0-5-cloud-amd64"),
            "{e}"
        );
    }

    #[test]
    fn unreadable_kernel_names_the_permission() {
        // Root reads anything, so build the error directly as check_readable would.
        let p = Path::new("/boot/vmlinuz-1.2.3");
        let e = unreadable(
            p,
            std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        );
        let msg = e.to_string();
        assert!(
            msg.contains("chmod 0644 /boot/vmlinuz-1.2.3") && msg.contains("root"),
            "{msg}"
        );
    }

    #[test]
    fn version_from_bzimage_header() {
        let mut img = vec![0u8; 0x1000];
        img[0x202..0x206].copy_from_slice(b"HdrS");
        img[0x20E..0x210].copy_from_slice(&0x300u16.to_le_bytes());
        let s = b"6.1.0-56-cloud-amd64 (debian-kernel@lists.debian.org) #1 SMP\0";
        img[0x500..0x500 + s.len()].copy_from_slice(s);
        let d = WorkDir::new("kernel-test").unwrap();
        let p = d.path().join("bzImage");
        std::fs::write(&p, &img).unwrap();
        assert_eq!(version_of(&p).unwrap(), "6.1.0-56-cloud-amd64");
        std::fs::write(&p, vec![0u8; 0x1000]).unwrap();
        assert!(matches!(version_of(&p), Err(ImageError::NotBzImage { .. })));
    }

    #[test]
    fn real_kernel_header_agrees_with_its_name() {
        let Ok(k) = KernelImage::find(None) else {
            return;
        };
        let mut f = std::fs::File::open(&k.path).unwrap();
        let mut head = vec![0u8; 0x210];
        f.read_exact(&mut head).unwrap();
        let v = header_version(&head, |off, buf| {
            f.seek(SeekFrom::Start(off)).and_then(|_| f.read(buf)).ok()
        });
        assert_eq!(v.as_deref(), Some(k.version.as_str()));
    }
}
