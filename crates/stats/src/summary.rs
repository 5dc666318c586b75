//! The per-workload, per-backend summary stored in result documents, and the rule that asks for
//! more repetitions when the samples are too noisy.

use serde::{Deserialize, Serialize};

use crate::bootstrap::{bootstrap_median_ci, BOOTSTRAP_RESAMPLES, CONFIDENCE, SEED};
use crate::outliers::{mad_outliers, OUTLIER_THRESHOLD};
use crate::sample::Samples;

/// Coefficient of variation above which more repetitions are run (3.5%).
pub const CV_THRESHOLD: f64 = 0.035;

/// Descriptive statistics of one set of samples, with a confidence interval for the median.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Summary {
    /// Number of samples.
    pub n: usize,
    /// Median; the headline value.
    pub median: f64,
    /// Arithmetic mean.
    pub mean: f64,
    /// Sample standard deviation (divisor `n - 1`).
    pub stddev: f64,
    /// Coefficient of variation, see [`Samples::cv`].
    pub cv: f64,
    /// Smallest sample.
    pub min: f64,
    /// Largest sample.
    pub max: f64,
    /// Lower bound of the [`CONFIDENCE`] bootstrap interval of the median.
    pub ci_low: f64,
    /// Upper bound of the [`CONFIDENCE`] bootstrap interval of the median.
    pub ci_high: f64,
    /// Indices of samples flagged by [`mad_outliers`] at [`OUTLIER_THRESHOLD`]; still included
    /// in every statistic above.
    pub outliers: Vec<usize>,
}

/// Summarizes `s`. The interval is [`bootstrap_median_ci`] with [`CONFIDENCE`],
/// [`BOOTSTRAP_RESAMPLES`] and [`SEED`], so the same samples always give the same summary, and
/// `ci_low <= median <= ci_high`.
pub fn summarize(s: &Samples) -> Summary {
    let median_ci = bootstrap_median_ci(s, CONFIDENCE, BOOTSTRAP_RESAMPLES, SEED);
    Summary {
        n: s.len(),
        median: median_ci.point,
        mean: s.mean(),
        stddev: s.stddev(),
        cv: s.cv(),
        min: s.min(),
        max: s.max(),
        ci_low: median_ci.ci_low,
        ci_high: median_ci.ci_high,
        outliers: mad_outliers(s, OUTLIER_THRESHOLD),
    }
}

/// Whether `s` is too noisy to report yet: its coefficient of variation exceeds `cv_threshold`
/// (normally [`CV_THRESHOLD`]).
pub fn needs_more_reps(s: &Samples, cv_threshold: f64) -> bool {
    s.cv() > cv_threshold
}
