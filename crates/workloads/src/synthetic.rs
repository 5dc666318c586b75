//! `synth.events`: a workload whose kernel events are known, to check `hvbench explain`.
//!
//! One operation is `syscalls` raw `getppid` calls (default 100) and a first write to
//! `faults` fresh anonymous pages (default 8), nothing else: the same two paths that
//! `sys.getppid` and `mm.pagefault` measure alone. Its overhead in a guest must therefore be
//! predicted, from those two workloads' costs and the events counted natively, almost exactly;
//! a model that cannot explain this workload cannot be trusted with an application. Like
//! `mm.pagefault`, pages come from 16 MiB mappings without transparent huge pages, mapped and
//! unmapped outside the measured interval (two system calls per 4096 faults, counted, not
//! timed).
//!
//! By default the calls and the faults of one mapping's operations (512 of them at 8 faults)
//! run as two bursts, as in the two workloads that price them. `interleave=1` does each
//! operation's calls then its faults instead: the same events, but on gVisor's systrap
//! platform a fault between system calls takes the Sentry out of the polling it answers them
//! with, and the mix cost 1.0 to 3.1 times the sum of its parts in one afternoon (see
//! docs/explain.md), a cost of switching between paths that no count of events carries.

use std::time::{Duration, Instant};

use crate::{param_u64, Kind, Metric, Needs, Outcome, Params, WorkloadError, WorkloadInfo};

const CHUNK: usize = 16 << 20;

pub static WORKLOADS: &[WorkloadInfo] = &[WorkloadInfo {
    name: "synth.events",
    unit: "µs/op",
    higher_is_better: false,
    description: "a known mix for checking `explain`: per op, 100 getppid calls and 8 first-touch \
                  page faults (params syscalls, faults, interleave)",
    kind: Kind::Micro,
    needs: Needs::NONE,
    suites: &["explain-check"],
    metric: Metric::TimePerOp { scale: 1e-3 },
    setup_timeout_s: 10,
    run,
}];

struct Mapping {
    addr: *mut u8,
}

impl Mapping {
    fn new() -> Result<Self, WorkloadError> {
        // SAFETY: a fresh anonymous mapping chosen by the kernel; it aliases nothing.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                CHUNK,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(WorkloadError::os("mmap of 16 MiB"));
        }
        // SAFETY: advises on exactly the mapping just created (EINVAL without THP: harmless).
        unsafe { libc::madvise(addr, CHUNK, libc::MADV_NOHUGEPAGE) };
        Ok(Self { addr: addr.cast() })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping `new` created, which nothing else refers to.
        unsafe { libc::munmap(self.addr.cast(), CHUNK) };
    }
}

fn run(params: &Params, iterations: u64) -> Result<Outcome, WorkloadError> {
    let syscalls = param_u64(params, "syscalls", 100)?;
    let faults = param_u64(params, "faults", 8)? as usize;
    let interleave = param_u64(params, "interleave", 0)? != 0;
    if syscalls + faults as u64 == 0 || faults > 4096 {
        return Err(WorkloadError::BadParam(
            "syscalls + faults must be positive and faults at most 4096".into(),
        ));
    }
    // SAFETY: sysconf has no memory-safety preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as usize;
    let per_chunk = CHUNK / page;
    let mut map = Mapping::new()?;
    let mut next = 0usize;
    let mut elapsed = Duration::ZERO;
    let mut errors = 0u64;
    let mut done = 0;
    while done < iterations {
        // As many operations as the current mapping has fresh pages for, timed together.
        let ops = ((per_chunk - next).checked_div(faults))
            .map_or(iterations - done, |n| (n as u64).min(iterations - done));
        if ops == 0 {
            map = Mapping::new()?;
            next = 0;
            continue;
        }
        // Interleaved, each operation's calls then its faults; in bursts, the calls of all of
        // the chunk's operations, then their faults (the same events, two switches per chunk
        // between the paths instead of two per operation).
        let (rounds, calls, touches) = if interleave {
            (ops, syscalls, faults)
        } else {
            (1, ops * syscalls, ops as usize * faults)
        };
        let start = Instant::now();
        for _ in 0..rounds {
            for _ in 0..calls {
                // SAFETY: getppid takes no arguments and touches no memory of ours.
                let r = unsafe { libc::syscall(libc::SYS_getppid) };
                errors += u64::from(std::hint::black_box(r) < 0);
            }
            for _ in 0..touches {
                // SAFETY: `next < per_chunk`: the page is inside the live read-write mapping.
                unsafe { map.addr.add(next * page).write_volatile(1) };
                next += 1;
            }
        }
        elapsed += start.elapsed();
        done += ops;
    }
    if errors > 0 {
        return Err(WorkloadError::os("getppid failed"));
    }
    let mut out = Outcome::new(iterations as f64, elapsed);
    out.labels.insert(
        "mix".into(),
        format!("{syscalls} getppid + {faults} page faults per op"),
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_runs_the_asked_operations() {
        let mut p = Params::new();
        p.insert("faults".into(), 4000.into());
        // Three mappings' worth: the chunking path is taken.
        let out = run(&p, 3).unwrap();
        assert_eq!(out.work, 3.0);
        assert!(run(&Params::new(), 0).unwrap().elapsed.is_zero());
        p.insert("interleave".into(), 1.into());
        assert_eq!(run(&p, 3).unwrap().work, 3.0);
        p.insert("faults".into(), 5000.into());
        assert!(matches!(run(&p, 1), Err(WorkloadError::BadParam(_))));
    }
}
