//! Ctrl-C and SIGTERM ask the running scenario to stop and keep what it measured.

extern "C" fn on_signal(_: libc::c_int) {
    hvbench_core::request_stop();
}

/// Installs the handlers. A second signal of the same kind then kills hvbench the usual way
/// (SA_RESETHAND), should the stop itself hang.
pub fn install() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction is a valid starting point; the handler only performs an
        // atomic store, which is async-signal-safe.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            sa.sa_flags = libc::SA_RESETHAND;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}
