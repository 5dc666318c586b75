//! [`Samples`]: measurements that are known to be analysable, and their descriptive statistics.
//!
//! Following criterion.rs, the invariants live in the type: a `Samples` always holds at least two
//! finite values, so the statistics below never fail, never return NaN and need no `Result`.
//! A sorted copy is kept beside the values in their measured order: medians, the MAD and the
//! resampling code want sorted data, while outlier indices must refer to the measured order.

use crate::error::StatsError;
use crate::median::{median_of_sorted, sorted};

/// At least two finite measurements of one quantity, in the order they were taken.
#[derive(Clone, Debug, PartialEq)]
pub struct Samples {
    values: Vec<f64>,
    sorted: Vec<f64>,
}

impl Samples {
    /// The fewest values a spread (and so a coefficient of variation) can be computed from.
    pub const MIN_LEN: usize = 2;

    /// Checks that `values` has at least two elements and that all are finite.
    ///
    /// The length is checked first, then the first non-finite value is reported.
    pub fn new(values: Vec<f64>) -> Result<Samples, StatsError> {
        if values.len() < Self::MIN_LEN {
            return Err(StatsError::TooFew {
                needed: Self::MIN_LEN,
                got: values.len(),
            });
        }
        if let Some(index) = values.iter().position(|v| !v.is_finite()) {
            return Err(StatsError::NotFinite { index });
        }
        let sorted = sorted(&values);
        Ok(Samples { values, sorted })
    }

    /// The values in the order they were measured.
    pub fn values(&self) -> &[f64] {
        &self.values
    }

    /// The values in ascending order.
    pub(crate) fn sorted(&self) -> &[f64] {
        &self.sorted
    }

    /// How many values there are (at least 2).
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Always `false`: a `Samples` holds at least two values. Present for the `len` convention.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The smallest value.
    pub fn min(&self) -> f64 {
        self.sorted[0]
    }

    /// The largest value.
    pub fn max(&self) -> f64 {
        self.sorted[self.sorted.len() - 1]
    }

    /// The middle value; for an even count, the mean of the two middle values.
    pub fn median(&self) -> f64 {
        median_of_sorted(&self.sorted)
    }

    /// The arithmetic mean.
    pub fn mean(&self) -> f64 {
        self.values.iter().sum::<f64>() / self.len() as f64
    }

    /// The sample standard deviation (divisor `n - 1`, Bessel's correction).
    pub fn stddev(&self) -> f64 {
        let mean = self.mean();
        let sum_of_squares: f64 = self.values.iter().map(|v| (v - mean) * (v - mean)).sum();
        (sum_of_squares / (self.len() - 1) as f64).sqrt()
    }

    /// The coefficient of variation: `stddev / |mean|`.
    ///
    /// When the mean is exactly zero the relative spread is undefined; rather than infinity
    /// (which JSON cannot carry) this returns the standard deviation itself, i.e. it divides by
    /// one. So it is 0 when every value is 0, and positive, usually above any threshold, when
    /// values of both signs cancel out.
    pub fn cv(&self) -> f64 {
        let stddev = self.stddev();
        let mean = self.mean().abs();
        if mean == 0.0 {
            stddev
        } else {
            stddev / mean
        }
    }

    /// The median absolute deviation from the median, unscaled (multiply by 1.4826 to estimate
    /// the standard deviation of normal data).
    pub fn mad(&self) -> f64 {
        let median = self.median();
        let deviations: Vec<f64> = self.sorted.iter().map(|v| (v - median).abs()).collect();
        median_of_sorted(&sorted(&deviations))
    }
}

impl TryFrom<Vec<f64>> for Samples {
    type Error = StatsError;

    fn try_from(values: Vec<f64>) -> Result<Samples, StatsError> {
        Samples::new(values)
    }
}
