//! `app.files`: a file-system load in the manner of dbench (seed 001): a source-tree-like set
//! of files is created, listed and stat'ed, read back and deleted on the guest's disk
//! (`/mnt/files`), with an fsync where dbench's load file flushes (every eighth file, and the
//! directories at the end of the writes).
//!
//! The tree is fixed: 40 directories of 50 files, sizes drawn once from a log-uniform
//! distribution between 256 B and 64 KiB (the shape of a source tree: many small files, a few
//! large), non-zero pseudo-random contents. The operations are counted as dbench counts them:
//! each create-and-write, fsync, stat, open-and-read, unlink, mkdir and rmdir is one; the
//! metric is operations per second over the whole pass. The agent does the work itself
//! (outside the chroot: no application binary is involved), so what is measured is the guest
//! kernel's file system, its page cache and the virtual disk under it.

use std::io::{Read, Write};
use std::path::Path;
use std::time::Instant;

use crate::cpu::SplitMix64;
use crate::{Outcome, Params, WorkloadError};

const DIRS: usize = 40;
const FILES_PER_DIR: usize = 50;
const FSYNC_EVERY: usize = 8;

/// The sizes of the tree's files, the same on every run and every guest.
pub fn sizes() -> Vec<usize> {
    let mut rng = SplitMix64::new(0x6462_656e_6368);
    (0..DIRS * FILES_PER_DIR)
        .map(|_| {
            let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
            // log-uniform in [2^8, 2^16]
            2f64.powf(8.0 + 8.0 * u) as usize
        })
        .collect()
}

fn fail(what: &str, p: &Path, e: std::io::Error) -> WorkloadError {
    WorkloadError::Failed(format!("{what} {}: {e}", p.display()))
}

pub fn run(params: &Params, _seconds: u64) -> Result<Outcome, WorkloadError> {
    super::with_app(params, |app| {
        let base = app.root.outside("/mnt/files");
        if base.exists() {
            std::fs::remove_dir_all(&base).map_err(|e| fail("removing", &base, e))?;
        }
        std::fs::create_dir_all(&base).map_err(|e| fail("mkdir", &base, e))?;
        let sizes = sizes();
        let mut content = vec![0u8; 1 << 16];
        let mut rng = SplitMix64::new(7);
        for chunk in content.chunks_mut(8) {
            chunk.copy_from_slice(&(rng.next_u64() | 1).to_le_bytes()[..chunk.len()]);
        }
        let mut ops = 0u64;
        let mut fsyncs = 0u64;
        let t0 = Instant::now();
        let mut n = 0;
        for d in 0..DIRS {
            let dir = base.join(format!("d{d:02}"));
            std::fs::create_dir(&dir).map_err(|e| fail("mkdir", &dir, e))?;
            ops += 1;
            for f in 0..FILES_PER_DIR {
                let path = dir.join(format!("f{f:02}.c"));
                let mut file =
                    std::fs::File::create(&path).map_err(|e| fail("create", &path, e))?;
                file.write_all(&content[..sizes[n]])
                    .map_err(|e| fail("write", &path, e))?;
                ops += 1;
                if n % FSYNC_EVERY == 0 {
                    file.sync_all().map_err(|e| fail("fsync", &path, e))?;
                    ops += 1;
                    fsyncs += 1;
                }
                n += 1;
            }
            std::fs::File::open(&dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| fail("fsync", &dir, e))?;
            ops += 1;
            fsyncs += 1;
        }
        let mut bytes = 0u64;
        let mut buf = vec![0u8; 1 << 16];
        for pass in ["stat", "read"] {
            for d in std::fs::read_dir(&base).map_err(|e| fail("readdir", &base, e))? {
                let dir = d.map_err(|e| fail("readdir", &base, e))?.path();
                for f in std::fs::read_dir(&dir).map_err(|e| fail("readdir", &dir, e))? {
                    let path = f.map_err(|e| fail("readdir", &dir, e))?.path();
                    if pass == "stat" {
                        std::fs::metadata(&path).map_err(|e| fail("stat", &path, e))?;
                    } else {
                        let mut file =
                            std::fs::File::open(&path).map_err(|e| fail("open", &path, e))?;
                        loop {
                            let k = file.read(&mut buf).map_err(|e| fail("read", &path, e))?;
                            if k == 0 {
                                break;
                            }
                            bytes += k as u64;
                        }
                    }
                    ops += 1;
                }
            }
        }
        for d in 0..DIRS {
            let dir = base.join(format!("d{d:02}"));
            for f in 0..FILES_PER_DIR {
                let path = dir.join(format!("f{f:02}.c"));
                std::fs::remove_file(&path).map_err(|e| fail("unlink", &path, e))?;
                ops += 1;
            }
            std::fs::remove_dir(&dir).map_err(|e| fail("rmdir", &dir, e))?;
            ops += 1;
        }
        let elapsed = t0.elapsed();
        let written: usize = sizes.iter().sum();
        if bytes != written as u64 {
            return Err(WorkloadError::Failed(format!(
                "read back {bytes} bytes of the {written} written"
            )));
        }
        let mut out = Outcome::new(ops as f64, elapsed);
        out.extras.insert("fsyncs".into(), fsyncs as f64);
        out.extras.insert("mb_written".into(), written as f64 / 1e6);
        out.labels.insert(
            "tree".into(),
            format!("{DIRS} dirs x {FILES_PER_DIR} files"),
        );
        Ok(out)
    })
}

/// `fs.fsync`: app.files' durable write alone, priced per call for `explain`. One operation
/// creates a file in the applications' directory (`/mnt/fsync`), writes 4 KiB of non-zero
/// data and `fsync`s it: the journal commit of a new inode and its data, and the device's cache
/// flush, through the same file system and virtual disk the applications use (a raw-disk
/// `io.fsync` skips the file system, whose journal is most of a new file's fsync). The files
/// are removed after the measured interval.
pub fn run_fsync(params: &Params, iterations: u64) -> Result<Outcome, WorkloadError> {
    let iterations = crate::cpu::check_iterations(iterations)?;
    super::with_app(params, |app| {
        let base = app.root.outside("/mnt/fsync");
        if base.exists() {
            std::fs::remove_dir_all(&base).map_err(|e| fail("removing", &base, e))?;
        }
        std::fs::create_dir_all(&base).map_err(|e| fail("mkdir", &base, e))?;
        let mut content = [0u8; 4096];
        let mut rng = SplitMix64::new(crate::io::run_seed());
        for chunk in content.chunks_mut(8) {
            chunk.copy_from_slice(&(rng.next_u64() | 1).to_le_bytes());
        }
        let t0 = Instant::now();
        for i in 0..iterations {
            let path = base.join(format!("f{i}"));
            let mut file = std::fs::File::create(&path).map_err(|e| fail("create", &path, e))?;
            file.write_all(&content)
                .map_err(|e| fail("write", &path, e))?;
            file.sync_all().map_err(|e| fail("fsync", &path, e))?;
        }
        let elapsed = t0.elapsed();
        std::fs::remove_dir_all(&base).map_err(|e| fail("removing", &base, e))?;
        Ok(Outcome::new(iterations as f64, elapsed))
    })
}

/// Files `fs.open` opens in turn, and the directories above them.
const OPEN_FILES: usize = 64;
const OPEN_DEPTH: &str = "srv/www/htdocs";

/// `fs.open` (a cost for `hvbench explain`): per operation, `openat` of an existing 4 KiB file
/// by its path three directories deep on the applications' disk (`/mnt/open/srv/www/htdocs`),
/// a `newfstatat` of the descriptor (as glibc makes an `fstat`) and a `close`: what a web
/// server or a compiler does before it reads a file. Two of the agent's "path" calls and one
/// "file" call, made as raw system calls so that the count is exact whatever the C library.
pub fn run_open(params: &Params, iterations: u64) -> Result<Outcome, WorkloadError> {
    let iterations = crate::cpu::check_iterations(iterations)?;
    super::with_app(params, |app| {
        let base = app.root.outside("/mnt/open");
        let dir = base.join(OPEN_DEPTH);
        std::fs::create_dir_all(&dir).map_err(|e| fail("mkdir", &dir, e))?;
        let content = [0x5au8; 4096];
        let mut paths = Vec::with_capacity(OPEN_FILES);
        for i in 0..OPEN_FILES {
            let path = dir.join(format!("f{i}.html"));
            if !path.exists() {
                std::fs::write(&path, content).map_err(|e| fail("write", &path, e))?;
            }
            let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
                .map_err(|e| WorkloadError::Failed(format!("{}: {e}", path.display())))?;
            paths.push(c);
        }
        let empty = c"";
        let t0 = Instant::now();
        for i in 0..iterations as usize {
            let path = &paths[i % OPEN_FILES];
            // SAFETY: `path` is a NUL-terminated string that outlives the call.
            let fd = unsafe {
                libc::syscall(
                    libc::SYS_openat,
                    libc::AT_FDCWD,
                    path.as_ptr(),
                    libc::O_RDONLY | libc::O_CLOEXEC,
                )
            };
            if fd < 0 {
                let e = std::io::Error::last_os_error();
                return Err(fail(
                    "open",
                    &dir.join(format!("f{}.html", i % OPEN_FILES)),
                    e,
                ));
            }
            let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
            // SAFETY: `fd` is open; `empty` is NUL-terminated; `st` has room for a stat.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_newfstatat,
                    fd,
                    empty.as_ptr(),
                    st.as_mut_ptr(),
                    libc::AT_EMPTY_PATH,
                )
            };
            let stat_err = (r != 0).then(std::io::Error::last_os_error);
            // SAFETY: `fd` is ours and closed once.
            unsafe { libc::syscall(libc::SYS_close, fd) };
            if let Some(e) = stat_err {
                return Err(fail("fstat", &dir, e));
            }
        }
        Ok(Outcome::new(iterations as f64, t0.elapsed()))
    })
}

/// Files `fs.create` creates before it removes them, as app.files fills a directory and
/// empties it later.
const CREATE_BATCH: u64 = 64;

/// `fs.create` (a cost for `hvbench explain`): per operation, a new empty file created by its
/// path on the applications' disk (`openat` with `O_CREAT | O_EXCL`, in
/// `/mnt/create/srv/www`), closed, and removed again (`unlinkat`), in batches of 64 created then
/// 64 removed: an inode allocated and freed and a directory entry added and taken out, the
/// metadata writes of app.files' creates and deletes and of a compiler's temporary files. Two
/// of the agent's "create" calls and one "file" call, made as raw system calls. With
/// `unlink=0` the removals are not timed.
pub fn run_create(params: &Params, iterations: u64) -> Result<Outcome, WorkloadError> {
    let iterations = crate::cpu::check_iterations(iterations)?;
    // `unlink=0`: the removals are made outside the measured interval (an operation is then
    // a creation alone), to tell the two calls' prices apart.
    let timed_unlink = crate::param_u64(params, "unlink", 1)? != 0;
    super::with_app(params, |app| {
        let dir = app.root.outside("/mnt/create/srv/www");
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| fail("removing", &dir, e))?;
        }
        std::fs::create_dir_all(&dir).map_err(|e| fail("mkdir", &dir, e))?;
        let names: Vec<std::ffi::CString> = (0..CREATE_BATCH)
            .map(|i| {
                let p = dir.join(format!("t{i:02}.o"));
                std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).expect("no NUL")
            })
            .collect();
        let mut elapsed = std::time::Duration::ZERO;
        let mut done = 0u64;
        while done < iterations {
            let t0 = Instant::now();
            let batch = (iterations - done).min(CREATE_BATCH) as usize;
            for name in &names[..batch] {
                // SAFETY: `name` is a NUL-terminated string that outlives the call.
                let fd = unsafe {
                    libc::syscall(
                        libc::SYS_openat,
                        libc::AT_FDCWD,
                        name.as_ptr(),
                        libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC,
                        0o644,
                    )
                };
                if fd < 0 {
                    return Err(fail("create", &dir, std::io::Error::last_os_error()));
                }
                // SAFETY: `fd` is ours and closed once.
                unsafe { libc::syscall(libc::SYS_close, fd) };
            }
            if !timed_unlink {
                elapsed += t0.elapsed();
            }
            for name in &names[..batch] {
                // SAFETY: as above.
                let r =
                    unsafe { libc::syscall(libc::SYS_unlinkat, libc::AT_FDCWD, name.as_ptr(), 0) };
                if r != 0 {
                    return Err(fail("unlink", &dir, std::io::Error::last_os_error()));
                }
            }
            if timed_unlink {
                elapsed += t0.elapsed();
            }
            done += batch as u64;
        }
        Ok(Outcome::new(iterations as f64, elapsed))
    })
}

/// Bytes `fs.sendfile` sends per operation: about app.web's mean response (30 kB).
const SENDFILE_BYTES: usize = 32 << 10;

/// `fs.sendfile` (a cost for `hvbench explain`): per operation, one `sendfile` of a 32 KiB file
/// on the applications' disk into a TCP connection over the guest's loopback, drained by a
/// thread of the agent: how nginx sends a response. A blocking socket takes the whole file in
/// one call; the reader's receive is one call more (priced as a pipe call by the model).
pub fn run_sendfile(params: &Params, iterations: u64) -> Result<Outcome, WorkloadError> {
    use std::os::fd::AsRawFd;
    let iterations = crate::cpu::check_iterations(iterations)?;
    super::with_app(params, |app| {
        let dir = app.root.outside("/mnt/sendfile");
        std::fs::create_dir_all(&dir).map_err(|e| fail("mkdir", &dir, e))?;
        let path = dir.join("response.bin");
        std::fs::write(&path, vec![0x5au8; SENDFILE_BYTES]).map_err(|e| fail("write", &path, e))?;
        let file = std::fs::File::open(&path).map_err(|e| fail("open", &path, e))?;
        let net = |what: &str, e: std::io::Error| {
            WorkloadError::Failed(format!("{what} on the loopback: {e}"))
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| net("bind", e))?;
        let addr = listener.local_addr().map_err(|e| net("local_addr", e))?;
        let total = SENDFILE_BYTES as u64 * iterations;
        let reader = std::thread::spawn(move || -> std::io::Result<u64> {
            let (mut conn, _) = listener.accept()?;
            let mut buf = vec![0u8; 256 << 10];
            let mut got = 0u64;
            while got < total {
                match conn.read(&mut buf)? {
                    0 => break,
                    n => got += n as u64,
                }
            }
            Ok(got)
        });
        let sock = std::net::TcpStream::connect(addr).map_err(|e| net("connect", e))?;
        let t0 = Instant::now();
        for _ in 0..iterations {
            let mut offset: libc::off_t = 0;
            while (offset as usize) < SENDFILE_BYTES {
                let left = SENDFILE_BYTES - offset as usize;
                // SAFETY: both descriptors are open for the call; `offset` is a valid pointer.
                let n = unsafe {
                    libc::sendfile(sock.as_raw_fd(), file.as_raw_fd(), &mut offset, left)
                };
                if n <= 0 {
                    let e = std::io::Error::last_os_error();
                    return Err(fail("sendfile", &path, e));
                }
            }
        }
        drop(sock);
        let got = reader
            .join()
            .map_err(|_| WorkloadError::Failed("the loopback reader panicked".into()))?
            .map_err(|e| net("reading", e))?;
        let elapsed = t0.elapsed();
        if got != total {
            return Err(WorkloadError::Failed(format!(
                "the reader got {got} of {total} bytes"
            )));
        }
        Ok(Outcome::new(iterations as f64, elapsed))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tree_is_fixed_and_source_like() {
        let a = sizes();
        assert_eq!(a, sizes());
        assert_eq!(a.len(), DIRS * FILES_PER_DIR);
        assert!(a.iter().all(|&s| (256..=65536).contains(&s)));
        let small = a.iter().filter(|&&s| s < 4096).count();
        // log-uniform over 8 octaves: half the files below 4 KiB, give or take
        assert!(small > a.len() / 3 && small < a.len() * 2 / 3, "{small}");
    }
}
