//! A two-sided permutation test for a change in median between two result files.
//!
//! Under the null hypothesis that both sets come from one distribution, any split of the pooled
//! values into groups of the original sizes is as likely as the observed one. The p-value is the
//! share of random splits whose difference of medians is at least as large (in absolute value)
//! as the observed difference, with the +1 correction of Phipson and Smyth (2010) so that it is
//! never zero: a Monte Carlo test cannot prove a probability below `1 / (resamples + 1)`.
//!
//! As in the bootstrap, the pool is sorted once and each split is a membership mask over the
//! sorted pool; both group medians come from one walk over it, with no allocation per split.

use serde::{Deserialize, Serialize};

use crate::median::{median_of_counts, sorted};
use crate::rng::Rng;
use crate::sample::Samples;

/// Outcome of [`permutation_test`].
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct PermutationTest {
    /// Two-sided p-value, in `(0, 1]`.
    pub p_value: f64,
    /// Relative change of the medians, `(median(b) - median(a)) / |median(a)|`: 0.05 means `b`
    /// is 5% above `a`. When `median(a)` is zero this is the plain difference `median(b) -
    /// median(a)` (0 if both are zero), never an infinity.
    pub observed: f64,
}

/// Tests whether `a` (the baseline) and `b` differ in median, over `resamples` random splits
/// drawn by an [`Rng`] seeded with `seed`.
///
/// The statistic is `|median(b) - median(a)|`, and `p = (count + 1) / (resamples + 1)` where
/// `count` is the number of splits whose statistic is at least the observed one. Statistics that
/// differ from the observed one by no more than rounding (a few ulps of the largest value) count
/// as ties, so floating-point noise never makes the test claim more than the data shows.
/// `resamples == 0` gives `p = 1`.
pub fn permutation_test(a: &Samples, b: &Samples, resamples: usize, seed: u64) -> PermutationTest {
    let (median_a, median_b) = (a.median(), b.median());
    let difference = median_b - median_a;
    let observed = if median_a == 0.0 {
        difference
    } else {
        difference / median_a.abs()
    };

    let pool = sorted(&[a.values(), b.values()].concat());
    let largest = pool[0].abs().max(pool[pool.len() - 1].abs());
    let tie_tolerance = 8.0 * f64::EPSILON * largest;
    let threshold = difference.abs() - tie_tolerance;

    let mut rng = Rng::new(seed);
    let mut splitter = Splitter::new(pool, a.len());
    let at_least_as_extreme = (0..resamples)
        .filter(|_| {
            let (ma, mb) = splitter.split_medians(&mut rng);
            (mb - ma).abs() >= threshold
        })
        .count();
    PermutationTest {
        p_value: (at_least_as_extreme + 1) as f64 / (resamples + 1) as f64,
        observed,
    }
}

/// Draws random splits of a sorted pool into a group of `len_a` and the rest.
struct Splitter {
    sorted_pool: Vec<f64>,
    len_a: usize,
    /// A permutation of pool positions; its first `len_a` entries form group `a`.
    order: Vec<usize>,
    /// 1 where the pool position is in group `a`, 0 otherwise.
    in_a: Vec<u32>,
}

impl Splitter {
    fn new(sorted_pool: Vec<f64>, len_a: usize) -> Splitter {
        let len = sorted_pool.len();
        Splitter {
            sorted_pool,
            len_a,
            order: (0..len).collect(),
            in_a: vec![0; len],
        }
    }

    /// Medians of a fresh uniformly random group `a` and of its complement.
    fn split_medians(&mut self, rng: &mut Rng) -> (f64, f64) {
        let len = self.order.len();
        // A partial Fisher-Yates shuffle: the first len_a positions become a uniform random
        // subset whatever order the previous split left behind.
        for i in 0..self.len_a {
            let j = i + rng.below(len - i);
            self.order.swap(i, j);
        }
        self.in_a.fill(0);
        for &position in &self.order[..self.len_a] {
            self.in_a[position] = 1;
        }
        let pool = &self.sorted_pool;
        let median_a = median_of_counts(pool, self.in_a.iter().copied(), self.len_a);
        let median_b = median_of_counts(pool, self.in_a.iter().map(|&m| 1 - m), len - self.len_a);
        (median_a, median_b)
    }
}
