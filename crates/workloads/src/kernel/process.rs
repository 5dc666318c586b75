//! Process creation: `proc.fork` and `proc.exec`.

use std::ffi::CString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::os;
use crate::{Outcome, Params, WorkloadError};

/// fork, `_exit(0)` in the child, waitpid in the parent: one op is one process created and
/// reaped, the VMI paper's nforkwait. Every child must exit with status 0.
pub(super) fn fork(_params: &Params, iterations: u64) -> Result<Outcome, WorkloadError> {
    release_free_heap();
    let start = Instant::now();
    for _ in 0..iterations {
        os::fork_child(|| 0)?.wait_success("a forked child")?;
    }
    Ok(Outcome::new(iterations as f64, start.elapsed()))
}

/// fork, execve of a tiny static program that exits 0, waitpid: one op is one program started
/// and reaped. The program is generated here (see [`noop_elf`]), so the workload needs no
/// userland in the guest; it is written to a temporary file for the duration of the run.
pub(super) fn exec(_params: &Params, iterations: u64) -> Result<Outcome, WorkloadError> {
    release_free_heap();
    let program = NoopProgram::create()?;
    let start = Instant::now();
    for _ in 0..iterations {
        program.run_once()?;
    }
    Ok(Outcome::new(iterations as f64, start.elapsed()))
}

/// Gives the memory the allocator holds but no longer uses back to the kernel, so that every
/// fork copies the same small address space whatever ran before in this process.
///
/// fork copies the parent's page tables and takes a reference on each resident anonymous page;
/// the child's exit or execve drops them again: the cost grows with the parent's resident
/// memory. The agent runs every workload in one process, and glibc's malloc keeps on its heap
/// memory that earlier workloads freed: after `mem.latency` (its 4 MiB permutation) the agent
/// held RssAnon 4.2 MiB instead of 0.1 MiB, and fork cost 230-317 µs of CPU per op against
/// 136-162 without `mem.latency` before it (exec 317-434 against 169-250; three runs each on
/// a 2-CPU AMD EPYC host). Whether such memory was left behind depended on the run, which gave
/// `proc.exec` two states between runs of the quick suite (issue 17: 694 and 307 µs). With the
/// trim, RssAnon after `mem.latency` is back at 0.1 MiB and the costs agree (fork 127-158
/// against 125-164, exec 209-282 against 246-265).
fn release_free_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim takes no pointer; it only walks the allocator's own free lists and
    // returns unused pages to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Where generated programs start in memory (the usual base of a non-PIE x86_64 executable).
const BASE: u64 = 0x40_0000;
const EHDR_LEN: usize = 64;
const PHDR_LEN: usize = 56;
/// `mov eax, 60` (exit); `xor edi, edi` (status 0); `syscall`.
const NOOP_CODE: [u8; 9] = [0xb8, 0x3c, 0x00, 0x00, 0x00, 0x31, 0xff, 0x0f, 0x05];

/// A complete static x86_64 Linux executable that exits with status 0 (185 bytes): an ELF
/// header, a PT_LOAD program header mapping the whole file read+execute at 0x400000, a
/// PT_GNU_STACK header asking for a non-executable stack, and 9 bytes of code.
pub(crate) fn noop_elf() -> Vec<u8> {
    let code_off = EHDR_LEN + 2 * PHDR_LEN;
    let total = (code_off + NOOP_CODE.len()) as u64;
    let mut f = Vec::with_capacity(total as usize);
    // e_ident: magic, 64-bit, little-endian, version 1, System V ABI, padding.
    f.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);
    f.extend_from_slice(&[0; 8]);
    f.extend_from_slice(&2u16.to_le_bytes()); // e_type: ET_EXEC
    f.extend_from_slice(&62u16.to_le_bytes()); // e_machine: EM_X86_64
    f.extend_from_slice(&1u32.to_le_bytes()); // e_version
    f.extend_from_slice(&(BASE + code_off as u64).to_le_bytes()); // e_entry
    f.extend_from_slice(&(EHDR_LEN as u64).to_le_bytes()); // e_phoff
    f.extend_from_slice(&0u64.to_le_bytes()); // e_shoff: no sections
    f.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    f.extend_from_slice(&(EHDR_LEN as u16).to_le_bytes()); // e_ehsize
    f.extend_from_slice(&(PHDR_LEN as u16).to_le_bytes()); // e_phentsize
    f.extend_from_slice(&2u16.to_le_bytes()); // e_phnum
    f.extend_from_slice(&64u16.to_le_bytes()); // e_shentsize
    f.extend_from_slice(&0u16.to_le_bytes()); // e_shnum
    f.extend_from_slice(&0u16.to_le_bytes()); // e_shstrndx
                                              // PT_LOAD: the whole file, R+X, at BASE.
    phdr(&mut f, 1, 5, 0, BASE, total, 0x1000);
    // PT_GNU_STACK: R+W, no X.
    phdr(&mut f, 0x6474_e551, 6, 0, 0, 0, 16);
    f.extend_from_slice(&NOOP_CODE);
    debug_assert_eq!(f.len() as u64, total);
    f
}

fn phdr(f: &mut Vec<u8>, kind: u32, flags: u32, offset: u64, vaddr: u64, size: u64, align: u64) {
    f.extend_from_slice(&kind.to_le_bytes()); // p_type
    f.extend_from_slice(&flags.to_le_bytes()); // p_flags
    f.extend_from_slice(&offset.to_le_bytes()); // p_offset
    f.extend_from_slice(&vaddr.to_le_bytes()); // p_vaddr
    f.extend_from_slice(&vaddr.to_le_bytes()); // p_paddr
    f.extend_from_slice(&size.to_le_bytes()); // p_filesz
    f.extend_from_slice(&size.to_le_bytes()); // p_memsz
    f.extend_from_slice(&align.to_le_bytes()); // p_align
}

/// The exit status of a child whose execve failed with `errno` (< 127): 128 + errno.
const EXEC_FAILED_BASE: libc::c_int = 128;

/// The generated program in a temporary file; removed on drop.
struct NoopProgram {
    path: PathBuf,
    cpath: CString,
}

static SERIAL: AtomicU64 = AtomicU64::new(0);

impl NoopProgram {
    /// Writes the program into the first directory where it can be created and executed: the
    /// temporary directory, `/tmp`, `/dev/shm`, `/` (a guest's initramfs root is writable
    /// even where no `/tmp` exists; a `noexec` mount is skipped). Runs it once, untimed.
    fn create() -> Result<Self, WorkloadError> {
        let mut dirs = vec![std::env::temp_dir()];
        for d in ["/tmp", "/dev/shm", "/"] {
            if !dirs.iter().any(|x| x == Path::new(d)) {
                dirs.push(d.into());
            }
        }
        let image = noop_elf();
        let mut failures = Vec::new();
        for dir in &dirs {
            match Self::try_in(dir, &image) {
                Ok(p) => return Ok(p),
                Err(e) => failures.push(format!("{}: {e}", dir.display())),
            }
        }
        Err(WorkloadError::Failed(format!(
            "could not write and run the no-op program anywhere ({})",
            failures.join("; ")
        )))
    }

    fn try_in(dir: &Path, image: &[u8]) -> Result<Self, String> {
        let name = format!(
            "hvbench-noop-{}-{}",
            std::process::id(),
            SERIAL.fetch_add(1, Ordering::Relaxed)
        );
        let path = dir.join(name);
        let cpath = CString::new(path.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o755)
            .open(&path)
            .map_err(|e| e.to_string())?;
        // From here on, dropping `program` removes the file.
        let program = Self { path, cpath };
        file.write_all(image).map_err(|e| e.to_string())?;
        // Close before executing it, or execve fails with ETXTBSY.
        drop(file);
        std::fs::set_permissions(&program.path, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| e.to_string())?;
        // Another thread's fork (a test binary) may briefly hold a copy of the descriptor we
        // wrote through: retry ETXTBSY a few times.
        for _ in 0..5 {
            match program.spawn() {
                Ok(Ended::Exec(libc::ETXTBSY)) => std::thread::sleep(Duration::from_millis(20)),
                Ok(ended) => {
                    return program
                        .check(ended)
                        .map(|()| program)
                        .map_err(|e| e.to_string())
                }
                Err(e) => return Err(e.to_string()),
            }
        }
        program
            .run_once()
            .map(|()| program)
            .map_err(|e| e.to_string())
    }

    /// fork + execve + waitpid; the program must exit with status 0.
    fn run_once(&self) -> Result<(), WorkloadError> {
        let ended = self.spawn()?;
        self.check(ended)
    }

    fn spawn(&self) -> Result<Ended, WorkloadError> {
        let path = self.cpath.as_ptr();
        let argv: [*const libc::c_char; 2] = [path, std::ptr::null()];
        let envp: [*const libc::c_char; 1] = [std::ptr::null()];
        let mut child = os::fork_child(|| {
            // SAFETY: `path` is a NUL-terminated string and `argv` and `envp` are
            // null-terminated arrays, all alive in this (copied) address space. execve and
            // reading errno are async-signal-safe.
            unsafe { libc::execve(path, argv.as_ptr(), envp.as_ptr()) };
            match os::errno() {
                e @ 1..=126 => EXEC_FAILED_BASE + e,
                _ => 127,
            }
        })?;
        let status = child.wait()?;
        Ok(
            if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
                Ended::Success
            } else if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) > EXEC_FAILED_BASE {
                Ended::Exec(libc::WEXITSTATUS(status) - EXEC_FAILED_BASE)
            } else {
                Ended::Other(status)
            },
        )
    }

    fn check(&self, ended: Ended) -> Result<(), WorkloadError> {
        match ended {
            Ended::Success => Ok(()),
            Ended::Exec(e) => Err(WorkloadError::Failed(format!(
                "execve {}: {}",
                self.path.display(),
                std::io::Error::from_raw_os_error(e)
            ))),
            Ended::Other(status) => Err(WorkloadError::Failed(format!(
                "the no-op program {} {}",
                self.path.display(),
                os::describe_status(status)
            ))),
        }
    }
}

/// How a run of the no-op program ended.
enum Ended {
    /// Exited with status 0.
    Success,
    /// execve failed with this errno.
    Exec(libc::c_int),
    /// Any other wait status.
    Other(libc::c_int),
}

impl Drop for NoopProgram {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u64_at(f: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(f[at..at + 8].try_into().unwrap())
    }

    #[test]
    fn noop_elf_is_a_small_consistent_executable() {
        let f = noop_elf();
        assert!((120..=200).contains(&f.len()), "{} bytes", f.len());
        assert_eq!(&f[..4], b"\x7fELF");
        assert_eq!(u16::from_le_bytes([f[16], f[17]]), 2, "ET_EXEC");
        assert_eq!(u16::from_le_bytes([f[18], f[19]]), 62, "EM_X86_64");
        // The entry point is the code at the end of the file, inside the PT_LOAD segment.
        let entry = u64_at(&f, 24);
        let code_at = (entry - BASE) as usize;
        assert_eq!(&f[code_at..], &NOOP_CODE);
        let load = EHDR_LEN;
        assert_eq!(u32::from_le_bytes(f[load..load + 4].try_into().unwrap()), 1);
        assert_eq!(u64_at(&f, load + 16), BASE);
        assert_eq!(u64_at(&f, load + 32), f.len() as u64, "p_filesz");
    }
}
