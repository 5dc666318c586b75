//! Outlier flagging by the modified z-score (Iglewicz and Hoaglin, 1993).
//!
//! A value's modified z-score is `0.6745 * (x - median) / MAD`; 0.6745 makes it comparable with
//! an ordinary z-score for normal data, and the median and MAD make it robust: one wild
//! repetition cannot hide itself by inflating the spread, as it would with mean and standard
//! deviation. Outliers are only flagged; hvbench never drops samples.

use crate::sample::Samples;

/// The usual cut-off for the modified z-score, as recommended by Iglewicz and Hoaglin.
pub const OUTLIER_THRESHOLD: f64 = 3.5;

/// Indices (in measured order, ascending) of values whose modified z-score exceeds `threshold`
/// in absolute value.
///
/// When the MAD is zero (more than half of the values equal the median), every value that differs
/// from the median has an infinite modified z-score, so exactly those values are flagged; values
/// equal to the median never are.
pub fn mad_outliers(s: &Samples, threshold: f64) -> Vec<usize> {
    let median = s.median();
    let mad = s.mad();
    let is_outlier = |x: f64| {
        if mad == 0.0 {
            x != median
        } else {
            0.6745 * (x - median).abs() / mad > threshold
        }
    };
    s.values()
        .iter()
        .enumerate()
        .filter(|&(_, &x)| is_outlier(x))
        .map(|(i, _)| i)
        .collect()
}
