//! Processor faults and signals: `fault.divzero`, `fault.segv`, `sig.catch`.
//!
//! The fault workloads execute one faulting instruction per op from inline assembly, so its
//! address and length are known. The SA_SIGINFO handler checks that the fault came from that
//! instruction (its address is passed in `rsi`, which the handler reads from the saved
//! context), advances the saved instruction pointer past it and returns: the kernel's
//! `sigreturn` resumes right after it. One op is thus a fault, a signal delivery, the handler
//! and a `sigreturn`, as in the VMI paper's divzero benchmark.
//!
//! A fault that is not ours (another instruction, or a fault outside the measured loop)
//! resets the signal to its default action and returns, so that the instruction faults again
//! and the process dies with the usual signal instead of looping.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use super::os;
use crate::{Outcome, Params, WorkloadError};

/// Serializes the workloads of this module within a process: they share the counters below
/// and process-wide signal dispositions.
static LOCK: Mutex<()> = Mutex::new(());
/// Faults or signals the handlers have counted.
static COUNT: AtomicU64 = AtomicU64::new(0);
/// Whether the fault handlers may skip a faulting instruction.
static ARMED: AtomicBool = AtomicBool::new(false);

/// Length of `idiv ecx` (F7 F9).
#[cfg(target_arch = "x86_64")]
const IDIV_LEN: i64 = 2;
/// Length of `mov eax, dword ptr [rdi]` (8B 07).
#[cfg(target_arch = "x86_64")]
const LOAD_LEN: i64 = 2;

fn lock() -> std::sync::MutexGuard<'static, ()> {
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The SA_SIGINFO handler for both faults; `LEN` is the length of the instruction to skip.
/// Async-signal-safe: atomics, and sigaction on the unexpected path.
#[cfg(target_arch = "x86_64")]
extern "C" fn skip_fault<const LEN: i64>(
    sig: libc::c_int,
    _info: *mut libc::siginfo_t,
    ctx: *mut libc::c_void,
) {
    // SAFETY: for an SA_SIGINFO handler the kernel passes a pointer to the interrupted
    // context, a ucontext_t valid (and ours alone) until the handler returns.
    let gregs = unsafe { &mut (*ctx.cast::<libc::ucontext_t>()).uc_mcontext.gregs };
    let rip = gregs[libc::REG_RIP as usize];
    if ARMED.load(Ordering::Relaxed) && rip == gregs[libc::REG_RSI as usize] {
        gregs[libc::REG_RIP as usize] = rip + LEN;
        COUNT.fetch_add(1, Ordering::Relaxed);
        return;
    }
    // Not our instruction: fall back to the default action and let it fault again.
    // SAFETY: all zeroes is a valid sigaction (SIG_DFL, empty mask, no flags).
    let dfl: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: `dfl` is a valid sigaction; sigaction is async-signal-safe.
    unsafe { libc::sigaction(sig, &dfl, std::ptr::null_mut()) };
}

/// Byte distance between the start and the end of one `idiv ecx` as assembled here.
#[cfg(target_arch = "x86_64")]
fn idiv_len() -> i64 {
    let (start, end): (i64, i64);
    // SAFETY: only computes two addresses and jumps over the instruction; nothing executes it.
    unsafe {
        std::arch::asm!(
            "lea {s}, [rip + 2f]",
            "lea {e}, [rip + 3f]",
            "jmp 3f",
            "2:",
            "idiv ecx",
            "3:",
            s = out(reg) start,
            e = out(reg) end,
            options(nostack, nomem),
        );
    }
    end - start
}

/// Byte distance between the start and the end of one `mov eax, dword ptr [rdi]`.
#[cfg(target_arch = "x86_64")]
fn load_len() -> i64 {
    let (start, end): (i64, i64);
    // SAFETY: only computes two addresses and jumps over the instruction; nothing executes it.
    unsafe {
        std::arch::asm!(
            "lea {s}, [rip + 2f]",
            "lea {e}, [rip + 3f]",
            "jmp 3f",
            "2:",
            "mov eax, dword ptr [rdi]",
            "3:",
            s = out(reg) start,
            e = out(reg) end,
            options(nostack, nomem),
        );
    }
    end - start
}

#[cfg(target_arch = "x86_64")]
fn check_len(what: &str, assembled: i64, expected: i64) -> Result<(), WorkloadError> {
    if assembled == expected {
        Ok(())
    } else {
        Err(WorkloadError::Failed(format!(
            "{what} assembled to {assembled} bytes, the handler skips {expected}"
        )))
    }
}

/// Runs `body` with `handler` installed for `sig` (unblocked in this thread) and the counter
/// reset and armed; checks that exactly `iterations` faults or signals were counted.
fn with_handler(
    sig: libc::c_int,
    handler: libc::sighandler_t,
    flags: libc::c_int,
    iterations: u64,
    what: &str,
    body: impl FnOnce() -> Result<(), WorkloadError>,
) -> Result<Outcome, WorkloadError> {
    let _serial = lock();
    COUNT.store(0, Ordering::SeqCst);
    let _handler = os::SignalGuard::install(sig, handler, flags)?;
    let _mask = os::UnblockGuard::unblock(sig)?;
    ARMED.store(true, Ordering::SeqCst);
    let start = Instant::now();
    let result = body();
    let elapsed = start.elapsed();
    ARMED.store(false, Ordering::SeqCst);
    result?;
    let counted = COUNT.load(Ordering::SeqCst);
    if counted != iterations {
        return Err(WorkloadError::Failed(format!(
            "{what}: the handler ran {counted} times for {iterations} ops"
        )));
    }
    Ok(Outcome::new(iterations as f64, elapsed))
}

/// An integer division by zero per op, caught as SIGFPE.
#[cfg(target_arch = "x86_64")]
pub(super) fn divzero(_params: &Params, iterations: u64) -> Result<Outcome, WorkloadError> {
    check_len("idiv ecx", idiv_len(), IDIV_LEN)?;
    let handler = skip_fault::<IDIV_LEN> as extern "C" fn(_, _, _) as libc::sighandler_t;
    with_handler(
        libc::SIGFPE,
        handler,
        libc::SA_SIGINFO,
        iterations,
        "fault.divzero",
        || {
            for _ in 0..iterations {
                // SAFETY: divides edx:eax = 1 by ecx = 0, which raises #DE; the installed
                // handler checks that rip == rsi (this very idiv) and resumes after it, with
                // every register restored. No memory is touched.
                unsafe {
                    std::arch::asm!(
                        "lea rsi, [rip + 2f]",
                        "2:",
                        "idiv ecx",
                        inout("eax") 1u32 => _,
                        inout("edx") 0u32 => _,
                        in("ecx") black_box(0u32),
                        out("rsi") _,
                        options(nostack, nomem),
                    );
                }
            }
            Ok(())
        },
    )
}

/// A load from an inaccessible page per op, caught as SIGSEGV.
#[cfg(target_arch = "x86_64")]
pub(super) fn segv(_params: &Params, iterations: u64) -> Result<Outcome, WorkloadError> {
    check_len("mov eax, [rdi]", load_len(), LOAD_LEN)?;
    let page = NoAccessPage::map()?;
    let handler = skip_fault::<LOAD_LEN> as extern "C" fn(_, _, _) as libc::sighandler_t;
    with_handler(
        libc::SIGSEGV,
        handler,
        libc::SA_SIGINFO,
        iterations,
        "fault.segv",
        || {
            for _ in 0..iterations {
                // SAFETY: loads from a PROT_NONE page we mapped, which raises a page fault;
                // the installed handler checks that rip == rsi (this very load) and resumes
                // after it. The load never completes, so no memory is read.
                unsafe {
                    std::arch::asm!(
                        "lea rsi, [rip + 2f]",
                        "2:",
                        "mov eax, dword ptr [rdi]",
                        in("rdi") page.addr,
                        out("eax") _,
                        out("rsi") _,
                        options(nostack, readonly),
                    );
                }
            }
            Ok(())
        },
    )
}

#[cfg(not(target_arch = "x86_64"))]
pub(super) fn divzero(_params: &Params, _iterations: u64) -> Result<Outcome, WorkloadError> {
    Err(WorkloadError::Unsupported(
        "fault.divzero is written for x86_64".into(),
    ))
}

#[cfg(not(target_arch = "x86_64"))]
pub(super) fn segv(_params: &Params, _iterations: u64) -> Result<Outcome, WorkloadError> {
    Err(WorkloadError::Unsupported(
        "fault.segv is written for x86_64".into(),
    ))
}

/// One page mapped PROT_NONE; unmapped on drop.
struct NoAccessPage {
    addr: *mut libc::c_void,
    len: usize,
}

impl NoAccessPage {
    fn map() -> Result<Self, WorkloadError> {
        let len = super::mm::page_size()?;
        // SAFETY: a fresh anonymous mapping chosen by the kernel; it aliases nothing.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(WorkloadError::os("mmap of a PROT_NONE page"));
        }
        Ok(Self { addr, len })
    }
}

impl Drop for NoAccessPage {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping `map` created, which nothing else refers to.
        unsafe { libc::munmap(self.addr, self.len) };
    }
}

/// Counts one caught signal. Async-signal-safe: one atomic add.
extern "C" fn count_signal(_sig: libc::c_int) {
    COUNT.fetch_add(1, Ordering::Relaxed);
}

/// SIGUSR1 sent to the calling thread and caught by a trivial handler. The signal is sent
/// with a raw `tgkill` to this thread (in the single-threaded agent the same as
/// `kill(getpid())`, and well defined in a multi-threaded test): the kernel delivers it before
/// the system call returns to user mode, so each op is one send, one delivery, the handler and
/// one `sigreturn`. (`raise` would add two `sigprocmask` calls per op.)
pub(super) fn sig_catch(_params: &Params, iterations: u64) -> Result<Outcome, WorkloadError> {
    // SAFETY: getpid and gettid take no arguments and cannot fail.
    let (pid, tid) = unsafe { (libc::getpid(), libc::syscall(libc::SYS_gettid)) };
    let handler = count_signal as extern "C" fn(_) as libc::sighandler_t;
    with_handler(libc::SIGUSR1, handler, 0, iterations, "sig.catch", || {
        let mut errors: u64 = 0;
        for _ in 0..iterations {
            // SAFETY: tgkill takes plain integers; the signal goes to this very thread,
            // whose SIGUSR1 handler is installed and unblocked.
            let rc = unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, libc::SIGUSR1) };
            errors += u64::from(rc != 0);
        }
        if errors > 0 {
            return Err(WorkloadError::os(&format!(
                "tgkill failed {errors} of {iterations} times"
            )));
        }
        Ok(())
    })
}
