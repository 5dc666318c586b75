//! The disk target: opening it for direct I/O (with the buffered fallback), finding its size,
//! aligned buffers, non-zero data, and creating a target file on the host.

use std::alloc::Layout;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;
use std::ptr::NonNull;

use crate::cpu::SplitMix64;
use crate::WorkloadError;

/// Alignment of every I/O buffer. O_DIRECT needs the logical block size of the device (512 or
/// 4096); 4096 satisfies both and is the page size, which some virtual I/O paths also prefer.
pub(crate) const BUF_ALIGN: usize = 4096;

/// Chunk size of [`create_target_file`].
const CHUNK: usize = 1 << 20;

/// `BLKGETSIZE64` = `_IOR(0x12, 114, size_t)`: the size of a block device in bytes. The libc
/// crate does not export it; the value is the same on every 64-bit Linux architecture that
/// uses the generic ioctl encoding (x86_64, aarch64, riscv64).
const BLKGETSIZE64: libc::Ioctl = 0x8008_1272;

/// What the target is; recorded as a label because a file on the guest's filesystem and a raw
/// virtual disk go through different layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    BlockDevice,
}

impl Kind {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::BlockDevice => "block device",
        }
    }
}

/// An opened target.
#[derive(Debug)]
pub(crate) struct Target {
    pub(crate) file: File,
    /// Bytes usable for I/O.
    pub(crate) size: u64,
    pub(crate) kind: Kind,
    /// The logical sector size of a block device: O_DIRECT transfers must be multiples of it.
    pub(crate) sector: Option<u64>,
    /// `None` when opened with O_DIRECT, else why not.
    pub(crate) direct_fallback: Option<String>,
}

/// Opens `path` for reading (or reading and writing) with O_DIRECT, falling back to buffered
/// I/O when the filesystem refuses O_DIRECT. Never creates, truncates or resizes anything.
pub(crate) fn open(path: &Path, write: bool) -> Result<Target, WorkloadError> {
    open_with(path, write, |direct| {
        let mut opts = OpenOptions::new();
        opts.read(true).write(write);
        if direct {
            opts.custom_flags(libc::O_DIRECT);
        }
        opts.open(path)
    })
}

/// [`open`] with the open call given, so that the fallback can be tested where every
/// filesystem supports O_DIRECT (tmpfs does since Linux 6.6).
pub(crate) fn open_with(
    path: &Path,
    write: bool,
    open: impl Fn(bool) -> std::io::Result<File>,
) -> Result<Target, WorkloadError> {
    let mode = if write {
        "reading and writing"
    } else {
        "reading"
    };
    let open_error = |e: std::io::Error| {
        let msg = format!("cannot open {} for {mode}: {e}", path.display());
        match e.raw_os_error() {
            // A read-only disk cannot run a write workload: a property of the set-up.
            Some(libc::EROFS) => WorkloadError::Unsupported(msg),
            _ => WorkloadError::Failed(msg),
        }
    };
    let (file, direct_fallback) = match open(true) {
        Ok(f) => (f, None),
        // EINVAL from open with O_DIRECT: the filesystem has no direct I/O (tmpfs before 6.6,
        // some FUSE and 9p set-ups). Measure through the page cache and say so.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            let f = open(false).map_err(open_error)?;
            let reason = format!(
                "O_DIRECT refused by the filesystem of {} ({e}); buffered I/O, the page cache \
                 may answer",
                path.display()
            );
            (f, Some(reason))
        }
        Err(e) => return Err(open_error(e)),
    };

    let meta = file
        .metadata()
        .map_err(|e| WorkloadError::Failed(format!("cannot stat {}: {e}", path.display())))?;
    let ft = meta.file_type();
    let (size, kind, sector) = if ft.is_file() {
        (meta.len(), Kind::File, None)
    } else if ft.is_block_device() {
        let (size, sector) = block_device_geometry(&file, path)?;
        (size, Kind::BlockDevice, Some(sector))
    } else {
        return Err(WorkloadError::Failed(format!(
            "{} is neither a regular file nor a block device",
            path.display()
        )));
    };
    Ok(Target {
        file,
        size,
        kind,
        sector,
        direct_fallback,
    })
}

/// Size in bytes and logical sector size of an open block device.
fn block_device_geometry(file: &File, path: &Path) -> Result<(u64, u64), WorkloadError> {
    let fd = file.as_raw_fd();
    let mut size: u64 = 0;
    // SAFETY: BLKGETSIZE64 writes one u64 through the pointer, which points to `size`.
    if unsafe { libc::ioctl(fd, BLKGETSIZE64, &mut size as *mut u64) } != 0 {
        return Err(WorkloadError::os(&format!(
            "BLKGETSIZE64 on {}",
            path.display()
        )));
    }
    let mut sector: libc::c_int = 0;
    // SAFETY: BLKSSZGET writes one int through the pointer, which points to `sector`.
    if unsafe { libc::ioctl(fd, libc::BLKSSZGET, &mut sector as *mut libc::c_int) } != 0 {
        return Err(WorkloadError::os(&format!(
            "BLKSSZGET on {}",
            path.display()
        )));
    }
    Ok((size, u64::try_from(sector).unwrap_or(512).max(1)))
}

/// Asks the kernel to drop the cached pages of `file`, so that a buffered fallback starts
/// from a cold cache at least. Advisory: errors are ignored.
pub(crate) fn drop_cache(file: &File) {
    // SAFETY: posix_fadvise only takes a descriptor and a range; it touches no memory of ours.
    unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
}

/// A zeroed heap buffer aligned to [`BUF_ALIGN`], as O_DIRECT requires; freed on drop.
pub(crate) struct AlignedBuf {
    ptr: NonNull<u8>,
    layout: Layout,
}

impl std::fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlignedBuf")
            .field("len", &self.layout.size())
            .finish()
    }
}

impl AlignedBuf {
    /// A buffer of `len` bytes (`len > 0`); allocation failure is an error, not an abort.
    pub(crate) fn new(len: usize) -> Result<Self, WorkloadError> {
        let layout = Layout::from_size_align(len.max(1), BUF_ALIGN)
            .map_err(|e| WorkloadError::BadParam(format!("buffer of {len} bytes: {e}")))?;
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { std::alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(raw).ok_or_else(|| {
            WorkloadError::Failed(format!("cannot allocate an I/O buffer of {len} bytes"))
        })?;
        Ok(Self { ptr, layout })
    }

    pub(crate) fn len(&self) -> usize {
        self.layout.size()
    }

    pub(crate) fn as_mut_ptr(&mut self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: `ptr` points to `len` initialised (zeroed) bytes that this value owns, and
        // the `&mut self` borrow makes the slice the only access while it lives.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len()) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: `ptr` was returned by `alloc_zeroed` with this very layout and is freed once.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) };
    }
}

/// Fills `buf` with pseudo-random bytes none of which is zero, so that no block is all zeros:
/// storage and hypervisors that detect zero blocks (thin provisioning, QEMU's detect-zeroes)
/// would otherwise skip the write.
pub(crate) fn fill_nonzero(buf: &mut [u8], rng: &mut SplitMix64) {
    for chunk in buf.chunks_mut(8) {
        let bytes = rng.next_u64().to_le_bytes();
        for (d, s) in chunk.iter_mut().zip(bytes) {
            *d = if s == 0 { 0xa5 } else { s };
        }
    }
}

/// Creates a NEW file at `path` for the io workloads: `size` bytes rounded up to a whole MiB,
/// written in 1 MiB chunks of non-zero pseudo-random data (different in every chunk), then
/// fsynced.
///
/// Every block is written, so the file has no holes and no unwritten extents: O_DIRECT reads
/// reach the disk and O_DIRECT overwrites need no allocation or extent conversion on the way.
/// The data is never zero, so no layer can recognise and skip zero blocks, and it differs per
/// chunk, so deduplication finds nothing either.
///
/// Refuses to overwrite anything (`AlreadyExists` if `path` exists). On failure the partial
/// file is removed. Afterwards the file's pages are dropped from the page cache, so a large
/// image does not sit in the host's memory.
pub fn create_target_file(path: &Path, size: u64) -> std::io::Result<()> {
    if size == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "a target file must not be empty",
        ));
    }
    let chunks = size.div_ceil(CHUNK as u64);
    let mut file = OpenOptions::new().write(true).create_new(true).open(path)?;
    let written = (|| {
        let mut rng = SplitMix64::new(super::run_seed());
        let mut buf = vec![0u8; CHUNK];
        for _ in 0..chunks {
            fill_nonzero(&mut buf, &mut rng);
            file.write_all(&buf)?;
        }
        file.sync_all()
    })();
    if let Err(e) = written {
        drop(file);
        let _ = std::fs::remove_file(path);
        return Err(e);
    }
    drop_cache(&file);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_has_no_zero_byte() {
        let mut rng = SplitMix64::new(0);
        let mut buf = vec![0u8; 1 << 16];
        fill_nonzero(&mut buf, &mut rng);
        assert!(buf.iter().all(|&b| b != 0));
        // Not constant either.
        assert!(buf.windows(2).any(|w| w[0] != w[1]));
    }

    #[test]
    fn aligned_buf_is_aligned_and_zeroed() {
        for len in [512, 4096, 1 << 20, 3 * 4096 + 512] {
            let mut b = AlignedBuf::new(len).expect("allocate");
            assert_eq!(b.as_mut_ptr() as usize % BUF_ALIGN, 0);
            assert_eq!(b.len(), len);
            assert!(b.as_mut_slice().iter().all(|&x| x == 0));
        }
    }

    /// Where every filesystem takes O_DIRECT, an open that refuses it stands in for one that
    /// does not: the fallback must open buffered and say why.
    #[test]
    fn einval_on_direct_open_falls_back_to_buffered() {
        let path = std::env::temp_dir().join(format!("hvbench-io-unit-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        create_target_file(&path, 1).expect("create");
        let opened = open_with(&path, false, |direct| {
            if direct {
                Err(std::io::Error::from_raw_os_error(libc::EINVAL))
            } else {
                File::open(&path)
            }
        });
        let _ = std::fs::remove_file(&path);
        let t = opened.expect("fallback open");
        assert_eq!(t.size, CHUNK as u64);
        assert_eq!(t.kind, Kind::File);
        let reason = t.direct_fallback.expect("fallback reason");
        assert!(reason.contains("O_DIRECT"), "{reason}");
    }

    #[test]
    fn other_open_errors_are_not_masked() {
        let path = Path::new("/nonexistent/hvbench-io");
        let err = open_with(path, false, |_| {
            Err(std::io::Error::from_raw_os_error(libc::EACCES))
        })
        .expect_err("must fail");
        match err {
            WorkloadError::Failed(m) => assert!(m.contains("/nonexistent/hvbench-io"), "{m}"),
            other => panic!("unexpected {other:?}"),
        }
    }
}
