//! CPU micro workloads: user-mode computation and the cheapest trap.
//!
//! Under direct execution (KVM, a namespace, gVisor's user code) computation runs at native
//! speed, so these workloads should show an efficiency near 100%; under binary translation
//! (`qemu-tcg`) every instruction is translated and they show its full cost. `cpu.cpuid` is the
//! exception: CPUID traps to the hypervisor in every hardware VM, so it measures one VM exit.
//!
//! Each run function does its set-up (allocation, input generation) before starting the clock
//! and its checks after stopping it: only the measured loop is timed.

mod compress;
mod dhrystone;
mod whetstone;

use std::hint::black_box;
use std::time::Instant;

use crate::{param_u64, Kind, Metric, Needs, Outcome, Params, WorkloadError, WorkloadInfo};

const SUITES: &[&str] = &["quick", "full", "cpu"];

pub static WORKLOADS: &[WorkloadInfo] = &[
    WorkloadInfo {
        name: "cpu.dhrystone",
        unit: "loops/s",
        higher_is_better: true,
        description: "Dhrystone 2.1 loops per second (DMIPS in extras): user-mode integer code, \
                      native under direct execution, translated under binary translation",
        kind: Kind::Micro,
        needs: Needs::NONE,
        suites: SUITES,
        metric: Metric::Rate { scale: 1.0 },
        setup_timeout_s: 10,
        run: dhrystone::run,
    },
    WorkloadInfo {
        name: "cpu.whetstone",
        unit: "MWIPS",
        higher_is_better: true,
        description: "Whetstone double precision, million Whetstone instructions per second: \
                      user-mode floating point and libm, the FPU path a hypervisor must not slow",
        kind: Kind::Micro,
        needs: Needs::NONE,
        suites: SUITES,
        metric: Metric::Rate { scale: 1e-6 },
        setup_timeout_s: 10,
        run: whetstone::run,
    },
    WorkloadInfo {
        name: "cpu.primes",
        unit: "events/s",
        higher_is_better: true,
        description: "sysbench's cpu test (trial division of 3..max_prime per event): 64-bit \
                      integer division, directly comparable with `sysbench cpu` on any system",
        kind: Kind::Micro,
        needs: Needs::NONE,
        suites: SUITES,
        metric: Metric::Rate { scale: 1.0 },
        setup_timeout_s: 10,
        run: run_primes,
    },
    WorkloadInfo {
        name: "cpu.compress",
        unit: "MB/s",
        higher_is_better: true,
        description: "bzip2 -9 compression of a generated text corpus, MB of input per second: \
                      a branchy, cache-hungry real program (the consolidation studies' bzip)",
        kind: Kind::Micro,
        needs: Needs::NONE,
        suites: SUITES,
        metric: Metric::Rate { scale: 1e-6 },
        // One iteration compresses 1 MiB: about 0.1 s natively, seconds under binary translation.
        setup_timeout_s: 30,
        run: compress::run,
    },
    WorkloadInfo {
        name: "cpu.cpuid",
        unit: "ns/op",
        higher_is_better: false,
        description: "Time per CPUID instruction: CPUID always traps to the hypervisor in a \
                      hardware VM, so this is the round trip of the cheapest VM exit",
        kind: Kind::Micro,
        needs: Needs::NONE,
        suites: SUITES,
        metric: Metric::TimePerOp { scale: 1.0 },
        setup_timeout_s: 10,
        run: run_cpuid,
    },
];

/// Rejects a zero iteration count, which would measure nothing and skip every check.
pub(crate) fn check_iterations(iterations: u64) -> Result<u64, WorkloadError> {
    if iterations == 0 {
        return Err(WorkloadError::BadParam(
            "iterations must be at least 1".into(),
        ));
    }
    Ok(iterations)
}

/// SplitMix64 (Steele, Lea, Flood 2014): a tiny fixed-seed generator, so that generated inputs
/// (the compression corpus, the pointer-chase permutation) are the same on every system.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (`bound > 0`), by Lemire's multiply-shift; the bias is below
    /// 2^-32 for the bounds used here.
    pub(crate) fn below(&mut self, bound: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }
}

// ---------------------------------------------------------------------------------------------
// cpu.primes

/// sysbench's default `--cpu-max-prime`.
const DEFAULT_MAX_PRIME: u64 = 10_000;
/// Above this one event takes seconds, and the sieve that checks it needs megabytes.
const MAX_MAX_PRIME: u64 = 1 << 24;

/// One sysbench cpu event, exactly as `cpu_execute_event` in sysbench 1.0's
/// `src/tests/cpu/sb_cpu.c`: for every `c` in `3..max_prime` (the upper bound excluded), trial
/// division by `l = 2, 3, ...` while `l <= sqrt(c)`, in 64-bit unsigned arithmetic with the bound
/// compared as a double. Returns how many `c` had no divisor (the primes in `3..max_prime`).
///
/// The remainder is taken with a 64-bit `DIV` instruction, as gcc compiles sysbench's `c % l`:
/// left to itself, LLVM divides with a 32-bit `DIV` whenever both operands fit in 32 bits (its
/// slow-division bypass, here always), which is ~1.3× faster on Intel cores whose 64-bit
/// division is slow, and, under binary translation, a different instruction to translate.
/// A workload named after sysbench's test does sysbench's work on every CPU. The loop also
/// follows what gcc makes of sysbench's: the division by 2 as a bit test, the bound compared
/// through a signed conversion.
/// `c % l` by a 64-bit `DIV` (never narrowed to 32 bits), `l` not zero.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn rem_u64(c: u64, l: u64) -> u64 {
    debug_assert!(l != 0);
    let rem: u64;
    // SAFETY: `div` divides RDX:RAX = 0:c by `l`, which the caller keeps >= 2, so it cannot
    // fault (no division by zero, and a zero high half cannot overflow the quotient). It
    // touches only the named registers and the flags; no memory, no stack.
    unsafe {
        std::arch::asm!(
            "div {l}",
            l = in(reg) l,
            inout("rax") c => _,
            inout("rdx") 0u64 => rem,
            options(pure, nomem, nostack),
        );
    }
    rem
}

#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn rem_u64(c: u64, l: u64) -> u64 {
    c % l
}

fn primes_event(max_prime: u64) -> u64 {
    // Every value here is below 2^24 (MAX_MAX_PRIME), so converting it to a double through a
    // signed integer is exact: gcc converts so (one cvtsi2sd) once it has proved the value
    // non-negative, where an unsigned conversion takes LLVM five instructions per iteration.
    let f = |v: u64| v as i64 as f64;
    let mut n = 0;
    let mut c: u64 = 3;
    while c < max_prime {
        let t = f(c).sqrt();
        let mut l: u64 = 2;
        // The first trial division, by 2, is a bit test, as gcc compiles it; then from 3 on.
        if f(l) <= t && c & 1 != 0 {
            l = 3;
            while f(l) <= t {
                if rem_u64(c, l) == 0 {
                    break;
                }
                l += 1;
            }
        }
        if f(l) > t {
            n += 1;
        }
        c += 1;
    }
    n
}

/// The number of primes in `3..max_prime`, by a sieve: the independent answer an event must give.
/// sysbench counts 1228 for its default 10000 (the 1229 primes below 10000, less 2).
fn primes_expected(max_prime: u64) -> u64 {
    let n = max_prime as usize;
    if n <= 3 {
        return 0;
    }
    let mut composite = vec![false; n];
    let mut i = 2;
    while i * i < n {
        if !composite[i] {
            for m in (i * i..n).step_by(i) {
                composite[m] = true;
            }
        }
        i += 1;
    }
    (3..n).filter(|&c| !composite[c]).count() as u64
}

/// `cpu.primes`: one iteration is one sysbench event. Parameter `max_prime` (default 10000, the
/// same as `sysbench cpu --cpu-max-prime`).
fn run_primes(params: &Params, iterations: u64) -> Result<Outcome, WorkloadError> {
    let events = check_iterations(iterations)?;
    let max_prime = param_u64(params, "max_prime", DEFAULT_MAX_PRIME)?;
    if !(1..=MAX_MAX_PRIME).contains(&max_prime) {
        return Err(WorkloadError::BadParam(format!(
            "max_prime must be in 1..={MAX_MAX_PRIME}, got {max_prime}"
        )));
    }
    let expected = primes_expected(max_prime);

    let mut wrong = 0u64;
    let start = Instant::now();
    for _ in 0..events {
        // black_box on both sides: every event is computed afresh, none is hoisted or folded.
        let n = black_box(primes_event(black_box(max_prime)));
        wrong += u64::from(n != expected);
    }
    let elapsed = start.elapsed();

    if wrong > 0 {
        return Err(WorkloadError::Failed(format!(
            "{wrong} of {events} events did not count {expected} primes in 3..{max_prime}"
        )));
    }
    Ok(Outcome::new(events as f64, elapsed))
}

// ---------------------------------------------------------------------------------------------
// cpu.cpuid

/// `cpu.cpuid`: one iteration executes CPUID once. Parameter `leaf` (default 0, the vendor
/// leaf; any leaf traps in a VM).
#[cfg(target_arch = "x86_64")]
fn run_cpuid(params: &Params, iterations: u64) -> Result<Outcome, WorkloadError> {
    use core::arch::x86_64::__cpuid;

    let count = check_iterations(iterations)?;
    let leaf = param_u64(params, "leaf", 0)?;
    let leaf = u32::try_from(leaf)
        .map_err(|_| WorkloadError::BadParam(format!("leaf must fit in 32 bits, got {leaf}")))?;

    let mut acc = 0u32;
    let start = Instant::now();
    for _ in 0..count {
        // `__cpuid` is a safe function from Rust 1.9x on, unsafe in older compilers (the MSRV).
        #[allow(unused_unsafe)]
        // SAFETY: CPUID exists on every x86_64 processor; it only writes the four registers the
        // intrinsic returns and touches no memory.
        let r = unsafe { __cpuid(black_box(leaf)) };
        acc = acc.wrapping_add(r.eax ^ r.ebx);
    }
    let elapsed = start.elapsed();
    black_box(acc);
    Ok(Outcome::new(count as f64, elapsed))
}

#[cfg(not(target_arch = "x86_64"))]
fn run_cpuid(_params: &Params, _iterations: u64) -> Result<Outcome, WorkloadError> {
    Err(WorkloadError::Unsupported(
        "CPUID is an x86_64 instruction".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primes_event_counts_what_sysbench_counts() {
        // sysbench's loop stops before max_prime: 3..10000 holds the 1229 primes below 10000
        // except 2.
        assert_eq!(primes_event(10_000), 1228);
        assert_eq!(primes_expected(10_000), 1228);
        for max in [1, 2, 3, 4, 5, 6, 7, 8, 100, 101, 997, 4096] {
            assert_eq!(primes_event(max), primes_expected(max), "max_prime {max}");
        }
    }

    #[test]
    fn splitmix_below_stays_in_range() {
        let mut r = SplitMix64::new(1);
        for bound in 1..200 {
            assert!(r.below(bound) < bound);
        }
    }
}
