//! The process tree of one repetition, its CPU times and page faults from `/proc` and
//! `getrusage`, the disk the application writes to and the network interfaces of its namespace.

use std::collections::BTreeMap;

/// Every process that descends from this agent (not the agent itself), from /proc, and all
/// their threads.
pub fn descendants() -> (Vec<libc::pid_t>, Vec<libc::pid_t>) {
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    let mut parent: BTreeMap<libc::pid_t, libc::pid_t> = BTreeMap::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            if let Some(ppid) = parent_of(pid) {
                parent.insert(pid, ppid);
            }
        }
    }
    let is_desc = |mut p: libc::pid_t| {
        for _ in 0..64 {
            match parent.get(&p) {
                Some(&pp) if pp == me => return true,
                Some(&pp) if pp > 1 => p = pp,
                _ => return false,
            }
        }
        false
    };
    let (mut pids, mut out) = (Vec::new(), Vec::new());
    for &pid in parent.keys() {
        if pid != me && is_desc(pid) {
            pids.push(pid);
            // Every thread: a pid-targeted event counts one thread (and what it creates).
            match std::fs::read_dir(format!("/proc/{pid}/task")) {
                Ok(tasks) => out.extend(tasks.flatten().filter_map(|t| {
                    t.file_name()
                        .to_str()
                        .and_then(|s| s.parse::<libc::pid_t>().ok())
                })),
                Err(_) => out.push(pid),
            }
        }
    }
    (pids, out)
}

/// The fields of `/proc/PID/stat` after the command (which may contain spaces and
/// parentheses: the fields start after the last ')'); index 0 is field 3, the state.
fn stat_fields(pid: libc::pid_t) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = text.get(text.rfind(')')? + 2..)?;
    Some(rest.split_whitespace().map(String::from).collect())
}

/// Field 4 of `/proc/PID/stat`.
fn parent_of(pid: libc::pid_t) -> Option<libc::pid_t> {
    stat_fields(pid)?.get(1)?.parse().ok()
}

/// User and system seconds and page faults of the agent and everything it reaped, plus the live
/// descendants (and what they reaped): `/proc` and `getrusage`, which every kernel keeps, perf or
/// not.
#[derive(Debug, Clone, Copy, Default)]
pub struct TreeTotals {
    pub user_s: f64,
    pub sys_s: f64,
    pub faults_minor: u64,
    pub faults_major: u64,
}

fn rusage(who: libc::c_int) -> libc::rusage {
    // SAFETY: an all-zero rusage is a valid value to be overwritten.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid rusage to fill.
    unsafe { libc::getrusage(who, &mut ru) };
    ru
}

/// Of `/proc/PID/stat`: utime + cutime and stime + cstime (fields 14 to 17, clock ticks),
/// minflt + cminflt and majflt + cmajflt (fields 10 to 13).
fn totals_of(pid: libc::pid_t) -> Option<[u64; 4]> {
    let f = stat_fields(pid)?;
    let num = |i: usize| f.get(i - 3)?.parse::<u64>().ok();
    Some([
        num(14)? + num(16)?,
        num(15)? + num(17)?,
        num(10)? + num(11)?,
        num(12)? + num(13)?,
    ])
}

/// Whether the kernel's `getrusage` counts page faults: the agent touches a fresh page and
/// looks (gVisor, for one, reports none for any process).
pub fn kernel_counts_faults() -> bool {
    let before = rusage(libc::RUSAGE_SELF).ru_minflt;
    // SAFETY: an anonymous private mapping of one page, checked, written once and unmapped.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if p == libc::MAP_FAILED {
            return false;
        }
        std::ptr::write_volatile(p.cast::<u8>(), 1);
        libc::munmap(p, 4096);
    }
    rusage(libc::RUSAGE_SELF).ru_minflt > before
}

pub fn tree_totals(processes: &[libc::pid_t]) -> TreeTotals {
    let s = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    let (me, children) = (rusage(libc::RUSAGE_SELF), rusage(libc::RUSAGE_CHILDREN));
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let mut live = [0u64; 4];
    for &p in processes {
        if let Some(t) = totals_of(p) {
            for (sum, x) in live.iter_mut().zip(t) {
                *sum += x;
            }
        }
    }
    TreeTotals {
        user_s: s(me.ru_utime) + s(children.ru_utime) + live[0] as f64 / hz,
        sys_s: s(me.ru_stime) + s(children.ru_stime) + live[1] as f64 / hz,
        faults_minor: (me.ru_minflt + children.ru_minflt) as u64 + live[2],
        faults_major: (me.ru_majflt + children.ru_majflt) as u64 + live[3],
    }
}

/// `/sys/dev/block/MAJ:MIN/stat` of the block device `path` is on.
pub fn disk_stat_path(path: &str) -> Result<String, String> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).map_err(|e| format!("{path}: {e}"))?;
    let dev = m.dev();
    let (maj, min) = (libc::major(dev), libc::minor(dev));
    if maj == 0 {
        return Err(format!(
            "{path} is on a file system without a block device ({maj}:{min})"
        ));
    }
    let stat = format!("/sys/dev/block/{maj}:{min}/stat");
    if std::path::Path::new(&stat).exists() {
        Ok(stat)
    } else {
        Err(format!("no {stat}"))
    }
}

/// Reads, sectors read, writes, sectors written, flushes (0 where the kernel has no field).
pub fn disk_counts(stat: &str) -> Option<[u64; 5]> {
    let text = std::fs::read_to_string(stat).ok()?;
    let f: Vec<u64> = text
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect();
    Some([
        *f.first()?,
        *f.get(2)?,
        *f.get(4)?,
        *f.get(6)?,
        f.get(15).copied().unwrap_or(0),
    ])
}

/// Bytes and packets received, bytes and packets sent, summed over the interfaces of this
/// process's network namespace (`/proc/net/dev`: every process's traffic in it).
pub fn net_counts() -> Option<[u64; 4]> {
    net_counts_of(&std::fs::read_to_string("/proc/net/dev").ok()?)
}

fn net_counts_of(text: &str) -> Option<[u64; 4]> {
    let mut sum = [0u64; 4];
    let mut any = false;
    for line in text.lines() {
        let Some((_, fields)) = line.split_once(':') else {
            continue;
        };
        let f: Vec<u64> = fields
            .split_whitespace()
            .filter_map(|s| s.parse().ok())
            .collect();
        if f.len() < 10 {
            continue;
        }
        for (total, i) in sum.iter_mut().zip([0, 1, 8, 9]) {
            *total += f[i];
        }
        any = true;
    }
    any.then_some(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_kernel_counts_the_faults_of_a_touched_page() {
        // Linux does; the check exists for kernels that do not (gVisor).
        assert!(kernel_counts_faults());
    }

    #[test]
    fn tree_totals_take_in_the_faults_of_reaped_children() {
        let before = tree_totals(&[]);
        // A child reaped by this process (a shell's exec alone takes page faults): its faults
        // are in RUSAGE_CHILDREN.
        let status = std::process::Command::new("/bin/sh")
            .args(["-c", "true"])
            .status()
            .expect("sh runs");
        assert!(status.success());
        let after = tree_totals(&[]);
        assert!(
            after.faults_minor > before.faults_minor,
            "{before:?} → {after:?}"
        );
        assert!(after.user_s + after.sys_s >= before.user_s + before.sys_s);
    }

    #[test]
    fn interfaces_are_summed_and_the_header_skipped() {
        let text = "Inter-|   Receive |  Transmit\n face |bytes packets errs|bytes packets\n    \
                    lo: 100 2 0 0 0 0 0 0 100 2 0 0 0 0 0 0\n  eth0: 50 1 0 0 0 0 0 0 7 3 0 0 \
                    0 0 0 0\n";
        assert_eq!(net_counts_of(text), Some([150, 3, 107, 5]));
        assert_eq!(net_counts_of("no interfaces\n"), None);
    }
}
