//! The classes of system calls counted apart, and the tracepoint filters that select them.

/// The classes of system calls counted apart, by name; `other` is what is left.
pub const CLASSES: &[(&str, &[libc::c_long])] = &[
    (
        "file",
        &[
            libc::SYS_read,
            libc::SYS_write,
            libc::SYS_pread64,
            libc::SYS_pwrite64,
            libc::SYS_readv,
            libc::SYS_writev,
            libc::SYS_preadv,
            libc::SYS_pwritev,
            libc::SYS_close,
            libc::SYS_fstat,
            libc::SYS_lseek,
            libc::SYS_getdents64,
            libc::SYS_fcntl,
            libc::SYS_ioctl,
            libc::SYS_ftruncate,
            libc::SYS_fallocate,
            libc::SYS_dup,
            libc::SYS_dup2,
            libc::SYS_dup3,
            libc::SYS_pipe,
            libc::SYS_pipe2,
            libc::SYS_getcwd,
            libc::SYS_fchmod,
        ],
    ),
    (
        // Calls that look a file up by its name (and the `newfstatat` of a descriptor, as
        // glibc makes an fstat): a path walk through the directory cache, and in a sandbox
        // whose files are the host's (gVisor) a trip to the host's file system. Priced by
        // fs.open, apart from the calls on an open file.
        "path",
        &[
            libc::SYS_open,
            libc::SYS_openat,
            libc::SYS_stat,
            libc::SYS_lstat,
            libc::SYS_newfstatat,
            libc::SYS_statx,
            libc::SYS_access,
            libc::SYS_faccessat,
            libc::SYS_faccessat2,
            libc::SYS_readlink,
            libc::SYS_readlinkat,
            libc::SYS_chdir,
            libc::SYS_chmod,
            libc::SYS_fchmodat,
            libc::SYS_utimensat,
            libc::SYS_openat2,
        ],
    ),
    (
        // Calls that change a directory: a new name, a removed one, a renamed one. The lookup
        // and besides it a metadata write (an inode allocated or freed, a directory entry), in
        // gVisor a change made on the host's file system. `openat` with `O_CREAT` is one too:
        // counted apart by `syscalls:sys_enter_openat` filtered on its flags, and moved here
        // from the path calls (see [`OPENAT_CREAT`]). Priced by fs.create.
        "create",
        &[
            libc::SYS_creat,
            libc::SYS_unlink,
            libc::SYS_unlinkat,
            libc::SYS_mkdir,
            libc::SYS_mkdirat,
            libc::SYS_rmdir,
            libc::SYS_rename,
            libc::SYS_renameat,
            libc::SYS_renameat2,
            libc::SYS_link,
            libc::SYS_linkat,
            libc::SYS_symlink,
            libc::SYS_symlinkat,
            libc::SYS_mknod,
            libc::SYS_mknodat,
        ],
    ),
    (
        "net",
        &[
            libc::SYS_socket,
            libc::SYS_socketpair,
            libc::SYS_connect,
            libc::SYS_accept,
            libc::SYS_accept4,
            libc::SYS_bind,
            libc::SYS_listen,
            libc::SYS_sendto,
            libc::SYS_recvfrom,
            libc::SYS_sendmsg,
            libc::SYS_recvmsg,
            libc::SYS_sendmmsg,
            libc::SYS_recvmmsg,
            libc::SYS_shutdown,
            libc::SYS_getsockopt,
            libc::SYS_setsockopt,
            libc::SYS_getsockname,
            libc::SYS_getpeername,
        ],
    ),
    (
        "mm",
        &[
            libc::SYS_mmap,
            libc::SYS_munmap,
            libc::SYS_mprotect,
            libc::SYS_brk,
            libc::SYS_mremap,
            libc::SYS_madvise,
        ],
    ),
    (
        // Durable writes: each waits for the disk (a journal commit, a cache flush), which is
        // priced apart from the call itself.
        "sync",
        &[
            libc::SYS_fsync,
            libc::SYS_fdatasync,
            libc::SYS_sync_file_range,
            libc::SYS_syncfs,
            libc::SYS_sync,
            libc::SYS_msync,
        ],
    ),
    (
        "sched",
        &[
            libc::SYS_futex,
            libc::SYS_sched_yield,
            libc::SYS_nanosleep,
            libc::SYS_clock_nanosleep,
            libc::SYS_poll,
            libc::SYS_ppoll,
            libc::SYS_select,
            libc::SYS_pselect6,
            libc::SYS_epoll_wait,
            libc::SYS_epoll_pwait,
            libc::SYS_epoll_ctl,
            libc::SYS_epoll_create1,
            libc::SYS_kill,
            libc::SYS_tgkill,
            libc::SYS_rt_sigaction,
            libc::SYS_rt_sigprocmask,
            libc::SYS_rt_sigreturn,
        ],
    ),
    // Process creation apart from the rest of the process calls: a fork and an execve are
    // priced by what proc.fork and proc.exec cost, not by a bare system call.
    (
        "fork",
        &[
            libc::SYS_clone,
            libc::SYS_clone3,
            libc::SYS_fork,
            libc::SYS_vfork,
        ],
    ),
    ("exec", &[libc::SYS_execve, libc::SYS_execveat]),
    // A file's bytes copied into another descriptor by the kernel (a web server's response):
    // in a sandbox whose files and sockets are the host's, a copy through its own memory.
    // Priced by fs.sendfile.
    (
        "sendfile",
        &[
            libc::SYS_sendfile,
            libc::SYS_splice,
            libc::SYS_tee,
            libc::SYS_copy_file_range,
        ],
    ),
    (
        "process",
        &[
            libc::SYS_exit,
            libc::SYS_exit_group,
            libc::SYS_wait4,
            libc::SYS_waitid,
        ],
    ),
];

/// The event that counts `openat` calls with `O_CREAT` (the tracepoint of that one system
/// call, whose filter can read its flags, as `raw_syscalls:sys_enter`'s cannot): they create a
/// file, so they are moved from the path calls to the creating ones when the counts are read.
/// glibc makes every `open` an `openat` on x86_64; an `open(2)` with `O_CREAT` made directly
/// stays a path call.
pub const OPENAT_CREAT: &str = "syscalls.openat_creat";

/// The tracepoint filter that selects `ids`.
pub fn class_filter(ids: &[libc::c_long]) -> String {
    ids.iter()
        .map(|id| format!("id == {id}"))
        .collect::<Vec<_>>()
        .join(" || ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_are_disjoint_and_filters_name_every_id() {
        let mut all: Vec<libc::c_long> =
            CLASSES.iter().flat_map(|(_, ids)| *ids).copied().collect();
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n, "a system call is in two classes");
        let f = class_filter(&[0, 1, 39]);
        assert_eq!(f, "id == 0 || id == 1 || id == 39");
    }
}
