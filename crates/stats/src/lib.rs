//! Statistics for hvbench: summaries, bootstrap confidence intervals, outliers and a permutation
//! test, as pure functions over [`Samples`].
//!
//! ```
//! use hvbench_stats::{ratio_of_medians, summarize, Samples};
//!
//! let host = Samples::new(vec![100.0, 102.0, 99.0, 101.0, 100.0])?;
//! let guest = Samples::new(vec![110.0, 111.0, 109.0, 140.0, 110.0])?;
//!
//! let summary = summarize(&guest);
//! assert_eq!(summary.median, 110.0);
//! assert!(summary.ci_low <= summary.median && summary.median <= summary.ci_high);
//! assert_eq!(summary.outliers, vec![3]); // 140.0 is flagged, not dropped
//!
//! // ns/op: lower is better, so the guest's cost relative to the host is guest / host.
//! let overhead = ratio_of_medians(&guest, &host)?;
//! assert_eq!(overhead.point, 1.1);
//! assert!(!overhead.contains(1.0));
//! # Ok::<(), hvbench_stats::StatsError>(())
//! ```
//!
//! Samples are checked once, when a [`Samples`] is built (at least two values, all finite); after
//! that no statistic can fail. Everything random is driven by the crate's own seeded [`Rng`] with
//! the fixed [`SEED`], so a result document always renders to the same numbers.

mod blocks;
mod bootstrap;
mod error;
mod median;
mod outliers;
mod permutation;
mod rng;
mod sample;
mod summary;

pub use blocks::{
    between_run_test, paired_permutation_test, spread_test, BetweenRunTest, PairedTest,
};
pub use bootstrap::{
    bootstrap_median_ci, ratio_of_medians, Estimate, BOOTSTRAP_RESAMPLES, CONFIDENCE, SEED,
};
pub use error::StatsError;
pub use median::median;
pub use outliers::{mad_outliers, OUTLIER_THRESHOLD};
pub use permutation::{permutation_test, PermutationTest};
pub use rng::Rng;
pub use sample::Samples;
pub use summary::{needs_more_reps, summarize, Summary, CV_THRESHOLD};
