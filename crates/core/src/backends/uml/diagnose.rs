//! Why a UML kernel did not boot, read from what it printed.
//!
//! A UML boot that fails ends in a panic or an exit whose last lines rarely name the cause
//! (`Kernel panic - not syncing: Attempted to kill init!` follows every failure of the first
//! user process). The cause is usually a few lines earlier, in words UML's own start-up checks
//! use, so the console is matched against the known causes, and the one found is said with the
//! fix that works. `doctor` and the probe's "unavailable" reason use it.

/// A known reason for a UML boot to fail, and what fixes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// What is wrong, in a line.
    pub reason: String,
    /// What fixes it.
    pub fix: String,
}

/// UML before 6.13 keeps the FP state in a fixed buffer of this many bytes
/// (`FP_SIZE` for x86-64 with XSTATE in `arch/x86/um/`), and the host refuses any other size.
pub const OLD_UML_XSTATE_BYTES: u32 = 2696;

pub use crate::host::xstate_bytes as host_xstate_bytes;

/// The cause of a failed boot, from the console text (`console.log` and what the guest said)
/// and the host's XSTATE size; `None` when nothing known matches.
pub fn diagnose(console: &str, release: &str, host_xstate: Option<u32>) -> Option<Cause> {
    let has = |s: &str| console.contains(s);
    if has("set fp regs failed") || has("get fp regs failed") || has("FP registers") {
        let size = match host_xstate {
            Some(n) if n > OLD_UML_XSTATE_BYTES => format!(
                "host XSTATE size {n} bytes > UML's {OLD_UML_XSTATE_BYTES} (CPU features such \
                 as AMX)"
            ),
            Some(n) => format!("host XSTATE size {n} bytes"),
            None => "the host's XSTATE size is not UML's".to_string(),
        };
        return Some(Cause {
            reason: format!(
                "the host refused UML {release}'s FP register state (ptrace errno 14, EFAULT): \
                 {size}; needs UML >= 6.13, which sizes XSTATE from the host"
            ),
            fix: "scripts/install-uml (UML >= 6.13 from Debian's packages, run with its own C \
                  library), or --uml-binary PATH to a UML >= 6.13"
                .into(),
        });
    }
    if has("must be not mounted noexec") || has("Checking PROT_EXEC mmap") && has("not permitted") {
        return Some(Cause {
            reason: "UML cannot map its memory file executable: the temporary directory (TMPDIR \
                     or /dev/shm) is mounted noexec"
                .into(),
            fix: "mount /dev/shm without noexec (mount -o remount,exec /dev/shm), or run hvbench \
                  with TMPDIR on an executable tmpfs"
                .into(),
        });
    }
    if has("GLIBC_") && has("not found") {
        return Some(Cause {
            reason: format!("UML {release} was built for a newer C library than this host's"),
            fix: "scripts/install-uml unpacks it with its own C library and points the binary \
                  at it (patchelf)"
                .into(),
        });
    }
    let ptrace_refused = (has("ptrace failed") || has("ptrace :"))
        && (has("Operation not permitted") || has("errno = 1,") || has("errno = 1\n"));
    if ptrace_refused || has("check_ptrace") || has("start_ptraced_child") {
        return Some(Cause {
            reason: "UML may not ptrace its own children here (a seccomp filter, Yama's \
                     ptrace_scope 3, or a container without CAP_SYS_PTRACE)"
                .into(),
            fix: "run on a host or container that allows ptrace of children \
                  (kernel.yama.ptrace_scope <= 1; Docker: --cap-add SYS_PTRACE --security-opt \
                  seccomp=unconfined)"
                .into(),
        });
    }
    if has("No space left on device") || has("SIGBUS") {
        return Some(Cause {
            reason: "UML's memory file did not fit: its temporary directory (TMPDIR or \
                     /dev/shm) has less room than the guest's memory"
                .into(),
            fix: "give /dev/shm room for the guest's memory (mount -o remount,size=1G /dev/shm) \
                  or ask for less (--memory)"
                .into(),
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The end of a Debian 12 UML 6.1 boot on an Intel Xeon with AMX, host kernel 6.18.
    const AMX_PANIC: &str = "\
Linux version 6.1.176 (debian-kernel@lists.debian.org) ...
Checking that ptrace can change system call numbers...OK
Checking syscall emulation for ptrace...OK
Checking advanced syscall emulation for ptrace...OK
Checking environment variables for a tempdir...none found
Checking if /dev/shm is on tmpfs...OK
Checking PROT_EXEC mmap in /dev/shm...OK
Run /init as init process
userspace - ptrace set fp regs failed, errno = 14
Kernel panic - not syncing: Attempted to kill init! exitcode=0x0000000b
CPU: 0 PID: 1 Comm: init Not tainted 6.1.176 #1
Call Trace:
 new_thread_handler+0xae/0xb0
";

    #[test]
    fn amx_hosts_get_the_xstate_cause_with_sizes_and_the_fix() {
        let c = diagnose(AMX_PANIC, "6.1.176", Some(11008)).unwrap();
        assert!(
            c.reason
                .contains("host XSTATE size 11008 bytes > UML's 2696"),
            "{c:?}"
        );
        assert!(c.reason.contains("needs UML >= 6.13"), "{c:?}");
        assert!(c.fix.contains("install-uml"), "{c:?}");
        // The old hint blamed ptrace permissions; the successful ptrace checks above must not
        // be read as a refusal.
        assert!(!c.reason.contains("may not ptrace"), "{c:?}");
        // A host whose size is unknown or small still gets the cause, without a false claim.
        let c = diagnose(AMX_PANIC, "6.1.176", Some(832)).unwrap();
        assert!(c.reason.contains("host XSTATE size 832 bytes"), "{c:?}");
        assert!(!c.reason.contains("> UML's"), "{c:?}");
        assert!(diagnose(AMX_PANIC, "6.1.176", None).is_some());
    }

    #[test]
    fn other_known_causes() {
        let noexec = "Checking PROT_EXEC mmap in /dev/shm...Operation not permitted\n\
                      /dev/shm must be not mounted noexec\n";
        assert!(diagnose(noexec, "6.1", None)
            .unwrap()
            .reason
            .contains("noexec"));
        let ptrace = "Checking that ptrace can change system call numbers...\
                      start_ptraced_child : ptrace failed: Operation not permitted\n";
        assert!(diagnose(ptrace, "6.1", None)
            .unwrap()
            .reason
            .contains("may not ptrace"));
        let libc = "linux.uml: /lib/x86_64-linux-gnu/libc.so.6: version `GLIBC_2.38' not found \
                    (required by linux.uml)\n";
        assert!(diagnose(libc, "7.2.7", None)
            .unwrap()
            .fix
            .contains("patchelf"));
        let full = "create_tmp_file : write failed: No space left on device\n";
        assert!(diagnose(full, "6.1", None)
            .unwrap()
            .fix
            .contains("/dev/shm"));
    }

    #[test]
    fn a_healthy_or_unknown_console_has_no_cause() {
        let ok = "Checking that ptrace can change system call numbers...OK\n\
                  Checking PROT_EXEC mmap in /dev/shm...OK\nRun /init as init process\n";
        assert_eq!(diagnose(ok, "6.1", Some(11008)), None);
        assert_eq!(diagnose("", "6.1", None), None);
    }

    #[test]
    fn this_host_has_an_xstate_size() {
        // Every x86-64 CPU since 2011 has XSAVE; the legacy area alone is 576 bytes.
        if let Some(n) = host_xstate_bytes() {
            assert!(n >= 576, "{n}");
        }
    }
}
