//! Bootstrap confidence intervals for a median and for a ratio of medians.
//!
//! Benchmark samples are few (5 to 15 repetitions) and rarely normal, so intervals come from the
//! percentile bootstrap rather than from a t-distribution: resample with replacement, compute the
//! statistic each time, and read the interval off the sorted statistics. The generator is seeded
//! with a fixed [`SEED`] so a report re-rendered from the same samples shows the same interval.
//!
//! `summarize` calls this about 200 times per run with 10 000 resamples each, so the inner loop
//! allocates nothing: one count buffer per sample set is reused for every resample (see
//! `median.rs`), and the only sort is of the bootstrap statistics at the end.

use serde::{Deserialize, Serialize};

use crate::error::StatsError;
use crate::median::median_of_counts;
use crate::rng::Rng;
use crate::sample::Samples;

/// Confidence level of every interval hvbench reports.
pub const CONFIDENCE: f64 = 0.95;
/// Resamples per bootstrap interval: enough that the 2.5% and 97.5% quantiles are stable to a
/// fraction of the sample spread.
pub const BOOTSTRAP_RESAMPLES: usize = 10_000;
/// Seed of every resampling in reports ("hvbench!" in ASCII), so results are reproducible.
pub const SEED: u64 = 0x6876_6265_6e63_6821;

/// A point estimate with its confidence interval; `ci_low <= point <= ci_high` always holds.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct Estimate {
    /// The statistic computed on the samples themselves.
    pub point: f64,
    /// Lower bound of the interval.
    pub ci_low: f64,
    /// Upper bound of the interval.
    pub ci_high: f64,
}

impl Estimate {
    /// Whether `value` lies in the closed interval, e.g. whether a ratio is compatible with 1.0
    /// ("no measurable overhead").
    pub fn contains(&self, value: f64) -> bool {
        self.ci_low <= value && value <= self.ci_high
    }
}

/// The median of `s` with a percentile-bootstrap interval at level `confidence`, from
/// `resamples` resamples drawn by an [`Rng`] seeded with `seed`.
///
/// The bounds are the `(1 - confidence) / 2` and `(1 + confidence) / 2` quantiles of the sorted
/// bootstrap medians, linearly interpolated between closest ranks (the "type 7" quantile of
/// Hyndman and Fan, the default of R and NumPy). In degenerate cases (heavily tied or very skewed
/// data) the percentile interval can miss the sample median; it is then widened to include it,
/// so the interval always contains the point estimate.
///
/// # Panics
///
/// If `confidence` is not strictly between 0 and 1, or `resamples` is 0.
pub fn bootstrap_median_ci(s: &Samples, confidence: f64, resamples: usize, seed: u64) -> Estimate {
    check_parameters(confidence, resamples);
    let mut rng = Rng::new(seed);
    let mut resampler = Resampler::new(s);
    let mut medians: Vec<f64> = (0..resamples).map(|_| resampler.median(&mut rng)).collect();
    Estimate::from_bootstrap(s.median(), &mut medians, confidence)
}

/// `median(num) / median(den)` with a [`CONFIDENCE`] percentile-bootstrap interval.
///
/// Each set is resampled independently ([`BOOTSTRAP_RESAMPLES`] times, one generator seeded with
/// [`SEED`]), as they are independent measurements (a guest and the host), and the interval is
/// read off the sorted ratios as in [`bootstrap_median_ci`], including the widening that keeps
/// the point estimate inside.
///
/// # Errors
///
/// [`StatsError::ZeroDenominator`] when `den`'s median is zero, or when a resample of `den` has
/// median zero: the ratio is then unbounded and no finite interval exists. With benchmark data
/// this happens only if the denominator contains zeros or values of both signs.
pub fn ratio_of_medians(num: &Samples, den: &Samples) -> Result<Estimate, StatsError> {
    ratio_of_medians_with(num, den, CONFIDENCE, BOOTSTRAP_RESAMPLES, SEED)
}

fn ratio_of_medians_with(
    num: &Samples,
    den: &Samples,
    confidence: f64,
    resamples: usize,
    seed: u64,
) -> Result<Estimate, StatsError> {
    check_parameters(confidence, resamples);
    let den_median = den.median();
    if den_median == 0.0 {
        return Err(StatsError::ZeroDenominator);
    }
    let mut rng = Rng::new(seed);
    let mut num_resampler = Resampler::new(num);
    let mut den_resampler = Resampler::new(den);
    let mut ratios = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        let n = num_resampler.median(&mut rng);
        let d = den_resampler.median(&mut rng);
        if d == 0.0 {
            return Err(StatsError::ZeroDenominator);
        }
        ratios.push(n / d);
    }
    Ok(Estimate::from_bootstrap(
        num.median() / den_median,
        &mut ratios,
        confidence,
    ))
}

fn check_parameters(confidence: f64, resamples: usize) {
    assert!(
        confidence > 0.0 && confidence < 1.0,
        "confidence must be strictly between 0 and 1, got {confidence}"
    );
    assert!(resamples > 0, "a bootstrap needs at least one resample");
}

impl Estimate {
    /// The percentile interval of `statistics` around `point` (which it is widened to contain).
    fn from_bootstrap(point: f64, statistics: &mut [f64], confidence: f64) -> Estimate {
        statistics.sort_unstable_by(f64::total_cmp);
        let low = quantile_of_sorted(statistics, (1.0 - confidence) / 2.0);
        let high = quantile_of_sorted(statistics, (1.0 + confidence) / 2.0);
        Estimate {
            point,
            ci_low: low.min(point),
            ci_high: high.max(point),
        }
    }
}

/// The `p` quantile of sorted, non-empty data, interpolating linearly between the values at
/// ranks `floor(h)` and `ceil(h)` where `h = (len - 1) * p` (Hyndman and Fan type 7).
fn quantile_of_sorted(sorted: &[f64], p: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * p;
    let below = h.floor() as usize;
    let above = (below + 1).min(sorted.len() - 1);
    let fraction = h - below as f64;
    let (a, b) = (sorted[below], sorted[above]);
    if fraction == 0.0 || a == b {
        a
    } else {
        // Rounding must not carry the result past its neighbours (`a <= b`: sorted, no NaN).
        (a + (b - a) * fraction).clamp(a, b)
    }
}

/// Draws bootstrap resamples of one sample set and returns their medians.
struct Resampler<'a> {
    sorted: &'a [f64],
    /// How many times the current resample takes each sorted value; reused across resamples.
    counts: Vec<u32>,
}

impl<'a> Resampler<'a> {
    fn new(s: &'a Samples) -> Resampler<'a> {
        Resampler {
            sorted: s.sorted(),
            counts: vec![0; s.len()],
        }
    }

    fn median(&mut self, rng: &mut Rng) -> f64 {
        let n = self.sorted.len();
        self.counts.fill(0);
        for _ in 0..n {
            self.counts[rng.below(n)] += 1;
        }
        median_of_counts(self.sorted, self.counts.iter().copied(), n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_7_quantiles() {
        let data = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(quantile_of_sorted(&data, 0.0), 1.0);
        assert_eq!(quantile_of_sorted(&data, 1.0), 5.0);
        assert_eq!(quantile_of_sorted(&data, 0.5), 3.0);
        assert_eq!(quantile_of_sorted(&data, 0.1), 1.4);
        assert!((quantile_of_sorted(&data, 0.975) - 4.9).abs() < 1e-12);
        assert_eq!(quantile_of_sorted(&[7.0], 0.3), 7.0);
    }

    #[test]
    fn interval_is_widened_to_contain_the_point() {
        let mut stats = [2.0, 3.0, 4.0];
        let e = Estimate::from_bootstrap(1.0, &mut stats, 0.95);
        assert_eq!(e.ci_low, 1.0);
        assert!(e.ci_high > 3.9);
    }

    #[test]
    fn denominator_that_resamples_to_zero_is_refused() {
        let num = Samples::new(vec![1.0, 2.0, 3.0]).unwrap();
        let den = Samples::new(vec![0.0, 1.0, 2.0]).unwrap();
        assert_eq!(
            ratio_of_medians_with(&num, &den, 0.95, 1000, 1),
            Err(StatsError::ZeroDenominator)
        );
    }

    #[test]
    #[should_panic(expected = "confidence")]
    fn confidence_of_one_panics() {
        let s = Samples::new(vec![1.0, 2.0]).unwrap();
        bootstrap_median_ci(&s, 1.0, 10, 1);
    }
}
