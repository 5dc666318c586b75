//! First-touch page faults: `mm.pagefault`.

use std::time::{Duration, Instant};

use crate::{param_u64, Outcome, Params, WorkloadError};

/// The size of a base page, from sysconf.
pub(super) fn page_size() -> Result<usize, WorkloadError> {
    // SAFETY: sysconf has no memory-safety preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if page <= 0 {
        return Err(WorkloadError::os("sysconf(_SC_PAGESIZE)"));
    }
    Ok(page as usize)
}

/// Default size of one mapping. Small enough that 16 copies fit in a small guest, large enough
/// that the untimed mmap/munmap around each chunk is rare.
const DEFAULT_CHUNK_MIB: u64 = 16;

/// Writes one byte to each of `iterations` fresh anonymous pages, so that each write takes a
/// page fault that allocates, zeroes and maps a page. Pages come in mappings of `chunk_mib`
/// MiB (parameter, default 16), each unmapped before the next; only the writes are timed.
/// Transparent huge pages are disabled on each mapping (where the kernel has them), since one
/// fault would otherwise map 512 pages at once. One op (the work) is one page.
pub(super) fn pagefault(params: &Params, iterations: u64) -> Result<Outcome, WorkloadError> {
    let chunk_mib = param_u64(params, "chunk_mib", DEFAULT_CHUNK_MIB)?;
    if !(1..=4096).contains(&chunk_mib) {
        return Err(WorkloadError::BadParam(format!(
            "chunk_mib must be between 1 and 4096, got {chunk_mib}"
        )));
    }
    let page = page_size()?;
    let chunk_pages = (chunk_mib as usize * 1024 * 1024 / page).max(1) as u64;
    let mut left = iterations;
    let mut elapsed = Duration::ZERO;
    while left > 0 {
        let pages = left.min(chunk_pages) as usize;
        let map = Mapping::new(pages * page)?;
        let base = map.addr.cast::<u8>();
        let start = Instant::now();
        for i in 0..pages {
            // SAFETY: `i * page` is inside the read-write mapping `map`, alive until the end of
            // this iteration; nothing else refers to it.
            unsafe { base.add(i * page).write_volatile(1) };
        }
        elapsed += start.elapsed();
        // SAFETY: the last byte written is inside the mapping.
        let last = unsafe { base.add((pages - 1) * page).read_volatile() };
        if last != 1 {
            return Err(WorkloadError::Failed(
                "mm.pagefault read back another byte than it wrote".into(),
            ));
        }
        left -= pages as u64;
    }
    Ok(Outcome::new(iterations as f64, elapsed))
}

/// An anonymous private read-write mapping without transparent huge pages; unmapped on drop.
struct Mapping {
    addr: *mut libc::c_void,
    len: usize,
}

impl Mapping {
    fn new(len: usize) -> Result<Self, WorkloadError> {
        // SAFETY: a fresh anonymous mapping chosen by the kernel; it aliases nothing.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(WorkloadError::os(&format!("mmap of {} KiB", len / 1024)));
        }
        // Fails harmlessly (EINVAL) on kernels without transparent huge pages.
        // SAFETY: advises on exactly the mapping just created.
        unsafe { libc::madvise(addr, len, libc::MADV_NOHUGEPAGE) };
        Ok(Self { addr, len })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping `new` created, which nothing else refers to.
        unsafe { libc::munmap(self.addr, self.len) };
    }
}
