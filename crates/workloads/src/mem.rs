//! Memory micro workloads: bandwidth and latency of main memory.
//!
//! A guest's memory is the host's, reached through a second level of address translation
//! (EPT/NPT, or shadow page tables, or a software TLB under binary translation). Streaming
//! bandwidth mostly shows whether the host backs the guest well (huge pages, NUMA placement);
//! dependent random loads miss the TLB and pay the two-dimensional page walk, the clearest cost
//! of nested paging.
//!
//! Every workload allocates `buffer_mib` MiB in total (default 64, well above the last-level
//! cache of most machines, and small enough for a 256 MiB guest) and touches all of it before the
//! clock starts. The buffer is kept for the workload's next repetition ([`crate::kept`]): filling
//! it is set-up, never measured, and in guests with slow page faults it cost seconds per
//! repetition. Rates are in decimal MB/s (10^6 bytes).

use std::hint::black_box;
use std::time::Instant;

use crate::cpu::{check_iterations, SplitMix64};
use crate::kept;
use crate::{param_u64, Kind, Metric, Needs, Outcome, Params, WorkloadError, WorkloadInfo};

const SUITES: &[&str] = &["quick", "full", "mem"];
const DEFAULT_BUFFER_MIB: u64 = 64;
const MAX_BUFFER_MIB: u64 = 1 << 20;
/// Bytes between two pointers of the latency chain: one cache line.
const LINE: usize = 64;
const WORDS_PER_LINE: usize = LINE / 8;
/// Dependent loads per iteration of `mem.latency`.
const LOADS_PER_ITERATION: u64 = 1 << 14;
const LATENCY_SEED: u64 = 0x6c61_7465_6e63_7921; // "latency!"

pub static WORKLOADS: &[WorkloadInfo] = &[
    WorkloadInfo {
        name: "mem.read",
        unit: "MB/s",
        higher_is_better: true,
        description: "Sequential read bandwidth over a buffer larger than the cache: how well the \
                      host backs guest memory (huge pages, NUMA placement)",
        kind: Kind::Micro,
        needs: Needs::NONE,
        suites: SUITES,
        metric: Metric::Rate { scale: 1e-6 },
        setup_timeout_s: 30,
        run: run_read,
    },
    WorkloadInfo {
        name: "mem.write",
        unit: "MB/s",
        higher_is_better: true,
        description: "Sequential write bandwidth over a buffer larger than the cache: stores \
                      through the guest's second-level address translation",
        kind: Kind::Micro,
        needs: Needs::NONE,
        suites: SUITES,
        metric: Metric::Rate { scale: 1e-6 },
        setup_timeout_s: 30,
        run: run_write,
    },
    WorkloadInfo {
        name: "mem.copy",
        unit: "MB/s",
        higher_is_better: true,
        description: "memcpy bandwidth between two half-buffers, bytes copied per second: the \
                      memory path of every I/O copy a guest makes",
        kind: Kind::Micro,
        needs: Needs::NONE,
        suites: SUITES,
        metric: Metric::Rate { scale: 1e-6 },
        setup_timeout_s: 30,
        run: run_copy,
    },
    WorkloadInfo {
        name: "mem.latency",
        unit: "ns/op",
        higher_is_better: false,
        description: "Dependent random loads across a large buffer: every TLB miss pays the \
                      two-dimensional page walk of nested paging",
        kind: Kind::Micro,
        needs: Needs::NONE,
        suites: SUITES,
        metric: Metric::TimePerOp { scale: 1.0 },
        setup_timeout_s: 30,
        run: run_latency,
    },
];

/// Reads `buffer_mib` and returns the buffer size in bytes, refusing sizes this system cannot
/// hold: in a small guest an oversized buffer would bring the OOM killer, or panic the kernel
/// when the agent is PID 1.
fn buffer_bytes(params: &Params) -> Result<usize, WorkloadError> {
    let mib = param_u64(params, "buffer_mib", DEFAULT_BUFFER_MIB)?;
    if !(1..=MAX_BUFFER_MIB).contains(&mib) {
        return Err(WorkloadError::BadParam(format!(
            "buffer_mib must be in 1..={MAX_BUFFER_MIB}, got {mib}"
        )));
    }
    if let Some(available) = mem_available_mib() {
        // Leave a quarter of what is free to the rest of the system.
        if mib > available * 3 / 4 {
            return Err(WorkloadError::Unsupported(format!(
                "buffer_mib={mib} needs {mib} MiB but only {available} MiB is available; \
                 give the guest more memory or lower buffer_mib"
            )));
        }
    }
    Ok(mib as usize * 1024 * 1024)
}

/// `MemAvailable` from /proc/meminfo, in MiB; `None` where it cannot be read.
fn mem_available_mib() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

/// A vector of `words` u64 set to `f(i)`: every page is written, so none is left to fault in
/// during the measurement. Allocation failure is an error, not an abort.
fn touched_buffer(words: usize, f: impl Fn(usize) -> u64) -> Result<Vec<u64>, WorkloadError> {
    let mut v = Vec::new();
    v.try_reserve_exact(words).map_err(|e| {
        WorkloadError::Failed(format!("cannot allocate {} MiB: {e}", (words * 8) >> 20))
    })?;
    v.extend((0..words).map(f));
    Ok(v)
}

/// `mem.read`: one iteration sums every u64 of the buffer once; the work is the buffer size.
fn run_read(params: &Params, iterations: u64) -> Result<Outcome, WorkloadError> {
    let passes = check_iterations(iterations)?;
    let bytes = buffer_bytes(params)?;
    let words = bytes / 8;
    let make = || Ok(vec![touched_buffer(words, |i| i as u64)?]);
    let (wrong, elapsed) = kept::with_buffers("mem.read", words, make, |bufs| {
        let buf = &bufs[0];
        let mut wrong = 0u64;
        let start = Instant::now();
        for _ in 0..passes {
            let sum = black_box(buf)
                .iter()
                .fold(0u64, |acc, &w| acc.wrapping_add(w));
            wrong += u64::from(black_box(sum) != expected_sum(words));
        }
        Ok((wrong, start.elapsed()))
    })?;

    if wrong > 0 {
        return Err(WorkloadError::Failed(format!(
            "{wrong} of {passes} passes summed the buffer wrong"
        )));
    }
    Ok(Outcome::new((bytes as u64 * passes) as f64, elapsed))
}

/// 0 + 1 + ... + (words - 1), the sum of the read buffer.
fn expected_sum(words: usize) -> u64 {
    // n (n - 1) / 2, halving whichever factor is even so that nothing overflows before it wraps
    let n = words as u64;
    if n & 1 == 0 {
        (n / 2).wrapping_mul(n.wrapping_sub(1))
    } else {
        n.wrapping_mul((n - 1) / 2)
    }
}

/// `mem.write`: one iteration stores a new value into every u64 of the buffer with ordinary
/// (write-allocate) stores; the work is the buffer size.
fn run_write(params: &Params, iterations: u64) -> Result<Outcome, WorkloadError> {
    let passes = check_iterations(iterations)?;
    let bytes = buffer_bytes(params)?;
    let words = bytes / 8;
    let make = || Ok(vec![touched_buffer(words, |_| u64::MAX)?]);
    let elapsed = kept::with_buffers("mem.write", words, make, |bufs| {
        let buf = &mut bufs[0];
        black_box(&mut *buf);
        let start = Instant::now();
        for pass in 0..passes {
            // Not a repeated byte, so the compiler cannot turn the fill into memset (which may
            // use non-temporal stores); black_box afterwards keeps the stores from being dropped.
            black_box(&mut *buf).fill(pattern(pass));
            black_box(&mut *buf);
        }
        let elapsed = start.elapsed();

        let want = pattern(passes - 1);
        if let Some(i) = buf.iter().step_by(512).position(|&w| w != want) {
            return Err(WorkloadError::Failed(format!(
                "word {} holds {:#x} after the last pass, not {want:#x}",
                i * 512,
                buf[i * 512]
            )));
        }
        Ok(elapsed)
    })?;
    Ok(Outcome::new((bytes as u64 * passes) as f64, elapsed))
}

fn pattern(pass: u64) -> u64 {
    0x0123_4567_89ab_cdef ^ pass
}

/// `mem.copy`: the buffer is split into a source and a destination half; one iteration copies
/// the source into the destination (`copy_from_slice`, i.e. memcpy). The work is the bytes
/// copied, counted once: half the buffer per pass. (STREAM's Copy counts read plus written
/// bytes, twice this figure.)
fn run_copy(params: &Params, iterations: u64) -> Result<Outcome, WorkloadError> {
    let passes = check_iterations(iterations)?;
    let half_words = buffer_bytes(params)? / 16;
    let make = || {
        Ok(vec![
            touched_buffer(half_words, |i| (i as u64).wrapping_mul(0x9e37_79b9))?,
            touched_buffer(half_words, |_| 0)?,
        ])
    };
    let elapsed = kept::with_buffers("mem.copy", half_words, make, |bufs| {
        let [src, dst] = bufs else {
            unreachable!("mem.copy keeps a source and a destination")
        };
        black_box(&mut *src);
        black_box(&mut *dst);
        let start = Instant::now();
        for _ in 0..passes {
            black_box(&mut *dst).copy_from_slice(black_box(&*src));
            black_box(&mut *dst);
        }
        let elapsed = start.elapsed();

        if let Some(i) = (0..half_words).step_by(512).find(|&i| dst[i] != src[i]) {
            return Err(WorkloadError::Failed(format!(
                "word {i} differs between source and destination after copying"
            )));
        }
        Ok(elapsed)
    })?;
    Ok(Outcome::new(
        (half_words as u64 * 8 * passes) as f64,
        elapsed,
    ))
}

/// `mem.latency`: a pointer chase through one random cycle over every cache line of the buffer
/// (Sattolo's algorithm, fixed seed), so that each load depends on the previous one and the
/// hardware prefetcher cannot guess the next line. One iteration is 16384 loads, continuing
/// along the cycle; the work is the number of loads, the metric ns per load.
fn run_latency(params: &Params, iterations: u64) -> Result<Outcome, WorkloadError> {
    let iterations = check_iterations(iterations)?;
    let bytes = buffer_bytes(params)?;
    let lines = bytes / LINE;
    if lines < 2 {
        return Err(WorkloadError::BadParam(
            "the buffer holds fewer than two lines".into(),
        ));
    }
    let loads = iterations * LOADS_PER_ITERATION;
    let make = || Ok(vec![chase_chain(lines)?]);
    let elapsed = kept::with_buffers("mem.latency", lines, make, |bufs| {
        let chain = &bufs[0];
        let mut p = black_box(0usize);
        let start = Instant::now();
        for _ in 0..loads {
            p = chain[p] as usize;
        }
        let elapsed = start.elapsed();
        black_box(p);
        Ok(elapsed)
    })?;
    Ok(Outcome::new(loads as f64, elapsed))
}

/// Word `WORDS_PER_LINE * i` holds the word index of the line after line `i` in a random cyclic
/// permutation of all lines; the other words of each line are unused padding.
fn chase_chain(lines: usize) -> Result<Vec<u64>, WorkloadError> {
    // Sattolo's algorithm on a compact array (fast: it fits in cache far better than the
    // buffer), then one sequential pass to lay the links out one per line.
    let mut next: Vec<u32> = Vec::new();
    next.try_reserve_exact(lines)
        .map_err(|e| WorkloadError::Failed(format!("cannot allocate the permutation: {e}")))?;
    let lines_u32 = u32::try_from(lines)
        .map_err(|_| WorkloadError::BadParam(format!("{lines} lines is too many")))?;
    next.extend(0..lines_u32);
    sattolo(&mut next, &mut SplitMix64::new(LATENCY_SEED));

    touched_buffer(lines * WORDS_PER_LINE, |w| {
        if w % WORDS_PER_LINE == 0 {
            u64::from(next[w / WORDS_PER_LINE]) * WORDS_PER_LINE as u64
        } else {
            0
        }
    })
}

/// Sattolo's variant of the Fisher-Yates shuffle: turns the identity into a uniformly random
/// permutation with a single cycle through every element.
fn sattolo(a: &mut [u32], rng: &mut SplitMix64) {
    for i in (1..a.len()).rev() {
        let j = rng.below(i as u64) as usize; // j < i: no element may stay in place
        a.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sattolo_makes_one_cycle_through_every_line() {
        for n in [2usize, 3, 10, 1000, 4096] {
            let mut a: Vec<u32> = (0..n as u32).collect();
            sattolo(&mut a, &mut SplitMix64::new(7));
            let mut seen = vec![false; n];
            let mut p = 0usize;
            for _ in 0..n {
                assert!(!seen[p], "n={n}: line {p} visited twice");
                seen[p] = true;
                p = a[p] as usize;
            }
            assert_eq!(p, 0, "n={n}: the walk does not close after n steps");
        }
    }

    #[test]
    fn chain_links_lines_by_word_index() {
        let chain = chase_chain(256).unwrap();
        assert_eq!(chain.len(), 256 * WORDS_PER_LINE);
        let mut p = 0usize;
        for _ in 0..256 {
            assert_eq!(p % WORDS_PER_LINE, 0);
            p = chain[p] as usize;
        }
        assert_eq!(p, 0);
    }

    #[test]
    fn a_second_run_reuses_the_filled_buffer_and_still_checks_it() {
        let params: Params = [("buffer_mib".to_string(), 1u64.into())].into();
        for run in [run_read, run_write, run_copy, run_latency] {
            run(&params, 2).unwrap();
            run(&params, 3).unwrap();
        }
        assert!(kept::holds("mem.latency"));
        kept::release_unless("cpu.primes");
        assert!(!kept::holds("mem.latency"));
    }

    #[test]
    fn expected_sum_is_the_triangle_number() {
        for n in [1usize, 2, 3, 10, 11, 1 << 20] {
            assert_eq!(expected_sum(n), (0..n as u64).sum::<u64>());
        }
    }
}
