//! The root an application runs in: the applications' root file system, read-only, with its
//! own /proc, /dev, /tmp and /run, and the guest's disk at /mnt.
//!
//! The same steps run on the host (the native baseline, in a private mount namespace hvbench
//! gives the agent), in a namespace or gVisor sandbox, and in a kernel guest where the agent is
//! PID 1: the tree is bind-mounted read-only on a mount point in the application directory,
//! the kernel file systems and two tmpfs are mounted inside it, and the application
//! directory's `data/` (on the guest's disk, not in memory) is bound at `/mnt`, where every
//! application keeps what it writes (a database, a build tree). Nothing an application writes
//! reaches the tree, so every repetition and every backend starts from the same root.
//!
//! The agent refuses to mount anything where that would change the host's mounts: it must be
//! PID 1 of its own world or in a mount namespace other than PID 1's.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::WorkloadError;

/// A prepared root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppRoot {
    /// Where the tree is mounted (what applications are chrooted into).
    pub root: PathBuf,
    /// The application directory's `data/`, seen from outside the root (it is `/mnt` inside).
    pub data: PathBuf,
    /// The tree it was made from.
    pub tree: PathBuf,
    /// The CPUs applications may run on (`None`: the agent's own).
    pub cpus: Option<Vec<usize>>,
}

impl AppRoot {
    /// A path inside the root, as seen from outside (`/mnt/pg` → `<data>/pg`).
    pub fn outside(&self, inside: &str) -> PathBuf {
        match inside.strip_prefix("/mnt") {
            Some(rest) => self.data.join(rest.trim_start_matches('/')),
            None => self.root.join(inside.trim_start_matches('/')),
        }
    }

    /// A command that runs `program` (a path inside the root) chrooted into it, as `user`
    /// (`None`: root), with a clean environment and `/` as working directory.
    pub fn command(&self, program: &str, user: Option<(u32, u32)>) -> Command {
        let mut cmd = Command::new(program);
        cmd.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .env("LANG", "C.UTF-8")
            .env("HOME", "/tmp")
            .env("TMPDIR", "/tmp");
        let root = CString::new(self.root.as_os_str().as_bytes()).expect("no NUL in a path");
        let mask = self.cpus.as_ref().map(|cpus| {
            // SAFETY: cpu_set_t is a plain bit array; all zeroes is the empty set.
            let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
            for &c in cpus {
                // SAFETY: `c` came from CPU_ISSET over 0..CPU_SETSIZE, within the set.
                unsafe { libc::CPU_SET(c, &mut set) };
            }
            set
        });
        // SAFETY: the closure runs in the child between fork and exec and calls only
        // async-signal-safe functions (chroot, chdir, setgroups, setgid, setuid) on data
        // prepared before the fork.
        unsafe {
            cmd.pre_exec(move || {
                if libc::chroot(root.as_ptr()) != 0 || libc::chdir(c"/".as_ptr()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if let Some(set) = &mask {
                    if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                if let Some((uid, gid)) = user {
                    if libc::setgroups(0, std::ptr::null()) != 0
                        || libc::setgid(gid) != 0
                        || libc::setuid(uid) != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        cmd
    }

    /// The uid and gid of `name` in the root's /etc/passwd.
    pub fn user(&self, name: &str) -> Result<(u32, u32), WorkloadError> {
        let passwd = std::fs::read_to_string(self.root.join("etc/passwd"))
            .map_err(|e| WorkloadError::Failed(format!("the root's /etc/passwd: {e}")))?;
        passwd
            .lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.first() == Some(&name))
                    .then(|| Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?)))?
            })
            .ok_or_else(|| WorkloadError::Failed(format!("no user {name} in the root file system")))
    }
}

/// The first `n` CPUs of this process's affinity (all of them when it has `n` or fewer).
pub fn first_cpus(n: usize) -> Vec<usize> {
    // SAFETY: cpu_set_t is a plain bit array; sched_getaffinity fills it for this process.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid cpu_set_t of the size given.
    let ok =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) }
            == 0;
    let allowed: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
        // SAFETY: CPU_ISSET reads a bit of a valid set.
        .filter(|&c| ok && unsafe { libc::CPU_ISSET(c, &set) })
        .collect();
    allowed.into_iter().take(n.max(1)).collect()
}

/// Whether mounting here changes only this agent's world: PID 1 of its own PID namespace or
/// kernel (a guest), or in a mount namespace other than its parent's (hvbench gives the native
/// agent one of its own). PID 1 of the host is often unreadable here (a container, a microVM's
/// init), so the parent is what the agent compares with.
pub fn mounts_are_private() -> bool {
    // SAFETY: getpid and getppid have no preconditions.
    let (pid, ppid) = unsafe { (libc::getpid(), libc::getppid()) };
    if pid == 1 {
        return true;
    }
    match (
        std::fs::read_link("/proc/self/ns/mnt"),
        std::fs::read_link(format!("/proc/{ppid}/ns/mnt")),
    ) {
        (Ok(mine), Ok(parent)) => mine != parent,
        _ => false,
    }
}

fn mount(
    source: &str,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> Result<(), WorkloadError> {
    let c = |s: &str| CString::new(s).expect("no NUL");
    let src = c(source);
    let tgt = CString::new(target.as_os_str().as_bytes()).expect("no NUL in a path");
    let fs = fstype.map(c);
    let data = data.map(c);
    // SAFETY: every pointer is either null or a NUL-terminated string that outlives the call.
    let r = unsafe {
        libc::mount(
            src.as_ptr(),
            tgt.as_ptr(),
            fs.as_ref().map_or(std::ptr::null(), |f| f.as_ptr()),
            flags,
            data.as_ref()
                .map_or(std::ptr::null(), |d| d.as_ptr().cast()),
        )
    };
    if r != 0 {
        return Err(WorkloadError::Failed(format!(
            "mount {source} on {}: {}",
            target.display(),
            std::io::Error::last_os_error()
        )));
    }
    Ok(())
}

/// In a kernel guest: mounts the root file system's ext4 disk read-only at `tree` and the
/// applications' ext4 disk at `app_dir`. Only as PID 1 (a guest's init): never on a host.
pub fn mount_devices(
    rootfs_dev: &str,
    app_dev: &str,
    tree: &Path,
    app_dir: &Path,
) -> Result<(), WorkloadError> {
    // SAFETY: getpid has no preconditions.
    if unsafe { libc::getpid() } != 1 {
        return Err(WorkloadError::Unsupported(
            "block devices for applications are mounted only by a guest's init".into(),
        ));
    }
    for d in [tree, app_dir] {
        std::fs::create_dir_all(d)
            .map_err(|e| WorkloadError::Failed(format!("{}: {e}", d.display())))?;
    }
    mount(rootfs_dev, tree, Some("ext4"), libc::MS_RDONLY, None)?;
    mount(app_dev, app_dir, Some("ext4"), 0, None)
}

/// Mounts the root for `tree` under `app_dir` (made if missing): `app_dir/root` and
/// `app_dir/data`.
pub fn prepare(tree: &Path, app_dir: &Path) -> Result<AppRoot, WorkloadError> {
    if !tree.join("usr/bin").is_dir() {
        return Err(WorkloadError::Unsupported(format!(
            "{} is not a root file system (no usr/bin)",
            tree.display()
        )));
    }
    if !mounts_are_private() {
        return Err(WorkloadError::Unsupported(
            "the agent shares the host's mount namespace; applications need a private one \
             (hvbench gives it one when it runs as root)"
                .into(),
        ));
    }
    let root = app_dir.join("root");
    let data = app_dir.join("data");
    for d in [&root, &data] {
        std::fs::create_dir_all(d)
            .map_err(|e| WorkloadError::Failed(format!("{}: {e}", d.display())))?;
    }
    // Nothing mounted here may propagate to a peer group outside (the namespace tools and
    // hvbench's native launcher already make everything private; this is the second line).
    // gVisor has no propagation and may refuse; its mounts cannot reach the host anyway.
    let _ = mount(
        "none",
        Path::new("/"),
        None,
        libc::MS_REC | libc::MS_PRIVATE,
        None,
    );
    let t = tree.to_string_lossy();
    mount(&t, &root, None, libc::MS_BIND, None)?;
    // A bind mount takes read-only only on a remount.
    mount(
        &t,
        &root,
        None,
        libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
        None,
    )?;
    mount("proc", &root.join("proc"), Some("proc"), 0, None)?;
    mount(
        "/dev",
        &root.join("dev"),
        None,
        libc::MS_BIND | libc::MS_REC,
        None,
    )?;
    // No size option: gVisor's tmpfs refuses percentages; the kernel's default is half the
    // memory.
    for dir in ["tmp", "run", "dev/shm"] {
        let at = root.join(dir);
        if !at.is_dir() {
            // Only /dev/shm can be missing (a bare devtmpfs in a kernel guest).
            std::fs::create_dir_all(&at)
                .map_err(|e| WorkloadError::Failed(format!("{}: {e}", at.display())))?;
        }
        mount("tmpfs", &at, Some("tmpfs"), 0, Some("mode=1777"))?;
    }
    mount(
        &data.to_string_lossy(),
        &root.join("mnt"),
        None,
        libc::MS_BIND,
        None,
    )?;
    Ok(AppRoot {
        root,
        data,
        tree: tree.to_path_buf(),
        cpus: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_inside_are_found_outside() {
        let r = AppRoot {
            root: "/w/root".into(),
            data: "/w/data".into(),
            tree: "/t".into(),
            cpus: None,
        };
        assert_eq!(r.outside("/mnt/pg"), PathBuf::from("/w/data/pg"));
        assert_eq!(r.outside("/mnt"), PathBuf::from("/w/data/"));
        assert_eq!(r.outside("/tmp/x"), PathBuf::from("/w/root/tmp/x"));
    }
}
