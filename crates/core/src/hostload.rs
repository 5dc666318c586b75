//! What the host was doing during a repetition, besides the measured guest: the CPU time
//! stolen from this machine by its own hypervisor (steal) and the CPU used by everything else.
//!
//! hvbench often runs on a virtual machine that shares its host, and on machines where other
//! work runs. A repetition taken while another process kept a CPU busy, or while the
//! hypervisor under us took the CPU away, measures that, not the guest. Both are read from
//! `/proc/stat` before and after each repetition: steal as a share of the CPU time that
//! passed, and the busy CPU time of the whole machine less the CPU time of the guest's own
//! processes and of hvbench itself (its network peers and load generator run on the host:
//! `other_cpus` is how many CPUs everything else kept busy on average).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The aggregate `cpu` line of `/proc/stat`, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuTimes {
    /// user + nice + system + irq + softirq (guest time is already inside user).
    pub busy: u64,
    pub idle: u64,
    pub steal: u64,
}

impl CpuTimes {
    /// Parses the first (`cpu `) line of `/proc/stat`.
    pub fn parse(stat: &str) -> Option<CpuTimes> {
        let line = stat.lines().find(|l| l.starts_with("cpu "))?;
        let v: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .map(|f| f.parse().ok())
            .collect::<Option<_>>()?;
        // user nice system idle iowait irq softirq steal [guest guest_nice]
        if v.len() < 8 {
            return None;
        }
        Some(CpuTimes {
            busy: v[0] + v[1] + v[2] + v[5] + v[6],
            idle: v[3] + v[4],
            steal: v[7],
        })
    }

    /// This machine's counters now; `None` where `/proc/stat` cannot be read.
    pub fn now() -> Option<CpuTimes> {
        CpuTimes::parse(&std::fs::read_to_string("/proc/stat").ok()?)
    }
}

/// The host's load during one repetition.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HostLoad {
    /// Share of the CPU time that passed which the hypervisor under this machine stole.
    pub steal_frac: f64,
    /// CPUs kept busy, on average, by processes other than the guest's.
    pub other_cpus: f64,
}

/// Steal above this share, or others busier than this many CPUs, disturb a repetition.
pub const STEAL_LIMIT: f64 = 0.05;
pub const OTHER_CPUS_LIMIT: f64 = 0.5;

impl HostLoad {
    /// The load between two readings, `own_cpu` being the CPU time of the guest's processes
    /// over the same span (unknown: counted as none, which overstates the others).
    pub fn between(
        before: CpuTimes,
        after: CpuTimes,
        own_cpu: Option<Duration>,
    ) -> Option<HostLoad> {
        let busy = after.busy.checked_sub(before.busy)?;
        let idle = after.idle.checked_sub(before.idle)?;
        let steal = after.steal.checked_sub(before.steal)?;
        let total = busy + idle + steal;
        if total == 0 {
            return None;
        }
        let tick = clock_tick();
        // Wall time of the span, from the ticks of every CPU over the number of CPUs.
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let span_s = total as f64 * tick / cpus;
        let own_s = own_cpu.map_or(0.0, |d| d.as_secs_f64());
        let others_s = (busy as f64 * tick - own_s).max(0.0);
        Some(HostLoad {
            steal_frac: steal as f64 / total as f64,
            other_cpus: if span_s > 0.0 { others_s / span_s } else { 0.0 },
        })
    }

    /// Whether this repetition ran on a busy or steal-heavy host.
    pub fn disturbed(&self) -> bool {
        self.steal_frac > STEAL_LIMIT || self.other_cpus > OTHER_CPUS_LIMIT
    }
}

/// CPU time this process (every thread of hvbench) has used so far.
pub fn own_process_cpu() -> Option<Duration> {
    // SAFETY: rusage is plain old data; all-zero is a valid value for getrusage to fill.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a rusage owned by this frame.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return None;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Some(tv(ru.ru_utime) + tv(ru.ru_stime))
}

/// Seconds per clock tick of `/proc/stat`.
fn clock_tick() -> f64 {
    // SAFETY: sysconf has no memory preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        1.0 / hz as f64
    } else {
        0.01
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  100 5 50 1000 20 3 2 10 0 0\ncpu0 50 2 25 500 10 1 1 5 0 0\n";

    #[test]
    fn the_aggregate_line_is_read() {
        let t = CpuTimes::parse(STAT).unwrap();
        assert_eq!(
            t,
            CpuTimes {
                busy: 160,
                idle: 1020,
                steal: 10
            }
        );
        assert_eq!(CpuTimes::parse("cpu0 1 2 3\n"), None);
        assert_eq!(CpuTimes::parse("cpu  1 2 x 4 5 6 7 8\n"), None);
    }

    #[test]
    fn the_guests_own_cpu_is_not_counted_as_others() {
        let a = CpuTimes {
            busy: 0,
            idle: 0,
            steal: 0,
        };
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
        let tick = clock_tick();
        // One second of wall time on every CPU: half of it busy, all of that the guest's.
        let per_s = (1.0 / tick) as u64;
        let b = CpuTimes {
            busy: per_s * cpus / 2,
            idle: per_s * cpus / 2,
            steal: 0,
        };
        let own = Duration::from_secs_f64(cpus as f64 / 2.0);
        let l = HostLoad::between(a, b, Some(own)).unwrap();
        assert!(l.other_cpus.abs() < 1e-6, "{l:?}");
        assert!(!l.disturbed());
        // The same span with nothing known of the guest: everything busy is others'.
        let l = HostLoad::between(a, b, None).unwrap();
        assert!((l.other_cpus - cpus as f64 / 2.0).abs() < 1e-6, "{l:?}");
    }

    #[test]
    fn steal_is_a_share_of_the_time_that_passed() {
        let a = CpuTimes::default();
        let b = CpuTimes {
            busy: 80,
            idle: 0,
            steal: 20,
        };
        let l = HostLoad::between(a, b, None).unwrap();
        assert!((l.steal_frac - 0.2).abs() < 1e-9);
        assert!(l.disturbed());
        assert_eq!(
            HostLoad::between(b, a, None),
            None,
            "counters never go back"
        );
        assert_eq!(HostLoad::between(a, a, None), None, "no time passed");
    }
}
