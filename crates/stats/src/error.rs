//! The one error type of the crate: what can be wrong with numbers handed to it.

/// Why a set of measurements cannot be analysed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StatsError {
    /// Too few values for a spread or an interval.
    #[error(
        "need at least {needed} samples, got {got}: run more repetitions (raise --reps) \
         or check why repetitions failed"
    )]
    TooFew {
        /// The smallest count the statistic needs.
        needed: usize,
        /// The count that was given.
        got: usize,
    },
    /// A value is NaN or infinite.
    #[error(
        "sample {index} is not a finite number (NaN or infinity): fix the workload or the parser \
         of its output; hvbench never drops values silently"
    )]
    NotFinite {
        /// Position of the first offending value.
        index: usize,
    },
    /// A ratio's denominator has median zero, or can resample to median zero.
    #[error(
        "the denominator's median is zero (or resamples to zero), so the ratio is unbounded: \
         check that the baseline measured anything, or compare differences instead of ratios"
    )]
    ZeroDenominator,
}
