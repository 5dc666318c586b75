//! A fixed-size log-linear latency histogram.
//!
//! A run may do millions of I/Os (calibration scales iterations to the target duration), and a
//! small guest has little memory: keeping every latency would cost 8 bytes per I/O. The
//! histogram costs 30 KiB whatever the count, records in a few instructions, and answers
//! percentiles within 1/64 (1.6%) of the true value, far below run-to-run noise of disk I/O.

use std::time::Duration;

/// Values below this many nanoseconds have a bucket each.
const EXACT: u64 = 128;
/// Sub-buckets per power of two above [`EXACT`] (2^SUB_BITS).
const SUB_BITS: u32 = 6;
const SUBS: usize = 1 << SUB_BITS;
/// 128 exact buckets, then 64 per power of two from 2^7 to 2^63.
const BUCKETS: usize = EXACT as usize + (64 - 7) * SUBS;

#[derive(Debug, Clone)]
pub(crate) struct Histogram {
    counts: Vec<u64>,
    total: u64,
}

impl Histogram {
    pub(crate) fn new() -> Self {
        Self {
            counts: vec![0; BUCKETS],
            total: 0,
        }
    }

    pub(crate) fn record(&mut self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.counts[bucket(ns)] += 1;
        self.total += 1;
    }

    pub(crate) fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
    }

    pub(crate) fn count(&self) -> u64 {
        self.total
    }

    /// The `q` quantile (0 < q <= 1) in nanoseconds: the middle of the bucket holding the
    /// ceil(q × count)-th smallest value; `None` when empty. Monotonic in `q`.
    pub(crate) fn quantile_ns(&self, q: f64) -> Option<f64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(midpoint(i));
            }
        }
        None
    }
}

fn bucket(ns: u64) -> usize {
    if ns < EXACT {
        return ns as usize;
    }
    let e = 63 - ns.leading_zeros(); // >= 7
    let sub = ((ns >> (e - SUB_BITS)) as usize) & (SUBS - 1);
    EXACT as usize + (e as usize - 7) * SUBS + sub
}

fn midpoint(i: usize) -> f64 {
    if i < EXACT as usize {
        return i as f64;
    }
    let e = ((i - EXACT as usize) / SUBS + 7) as u32;
    let sub = ((i - EXACT as usize) % SUBS) as u64;
    let width = 1u64 << (e - SUB_BITS);
    let low = (SUBS as u64 + sub) * width;
    low as f64 + (width as f64 - 1.0) / 2.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_ordered_and_close() {
        let mut last = 0;
        for ns in (0..100_000u64).chain([u64::MAX / 3, u64::MAX]) {
            let b = bucket(ns);
            assert!(b >= last && b < BUCKETS, "{ns} -> {b}");
            last = b;
            let m = midpoint(b);
            assert!(
                (m - ns as f64).abs() <= ns as f64 / 64.0 + 0.5,
                "{ns} -> {m}"
            );
        }
    }

    #[test]
    fn quantiles() {
        let mut h = Histogram::new();
        assert_eq!(h.quantile_ns(0.5), None);
        for us in 1..=100u64 {
            h.record(Duration::from_micros(us));
        }
        let p50 = h.quantile_ns(0.5).expect("p50");
        let p99 = h.quantile_ns(0.99).expect("p99");
        assert!((p50 - 50_000.0).abs() < 50_000.0 / 60.0, "{p50}");
        assert!((p99 - 99_000.0).abs() < 99_000.0 / 60.0, "{p99}");
        let mut g = Histogram::new();
        g.record(Duration::from_secs(1));
        h.merge(&g);
        assert_eq!(h.count(), 101);
        assert!(h.quantile_ns(1.0).expect("max") > 0.98e9);
    }
}
