//! Medians of sorted data, and of multisets drawn from sorted data.
//!
//! Every median in this crate goes through here so they all agree on the convention: for an even
//! count, the mean of the two middle values. Resampling (bootstrap, permutation) never sorts
//! floats in its inner loop: the data is sorted once, a resample is described by how many times
//! it takes each sorted value, and its median is found by walking those counts. That is O(n) per
//! resample, allocation-free, and independent of any sorting algorithm's tie order, so results
//! are identical across toolchains.

/// Median of unsorted values (for an even count, the mean of the two middle ones); `None` when
/// there are none.
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    Some(median_of_sorted(&sorted))
}

/// Median of an already sorted, non-empty slice.
pub(crate) fn median_of_sorted(sorted: &[f64]) -> f64 {
    debug_assert!(!sorted.is_empty());
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        midpoint(sorted[mid - 1], sorted[mid])
    }
}

/// Median of the multiset that holds `sorted[i]` `counts[i]` times, where the counts sum to
/// `total` (> 0).
pub(crate) fn median_of_counts(
    sorted: &[f64],
    counts: impl IntoIterator<Item = u32>,
    total: usize,
) -> f64 {
    debug_assert!(total > 0);
    let upper_rank = total / 2;
    let lower_rank = if total % 2 == 1 {
        upper_rank
    } else {
        upper_rank - 1
    };
    let mut seen = 0usize;
    let mut lower = None;
    for (&value, count) in sorted.iter().zip(counts) {
        seen += count as usize;
        if lower.is_none() && seen > lower_rank {
            lower = Some(value);
        }
        if seen > upper_rank {
            return match lower {
                Some(lower) => midpoint(lower, value),
                None => value,
            };
        }
    }
    unreachable!("counts sum to less than total ({seen} < {total})")
}

/// The mean of two values that cannot overflow to infinity for large finite inputs.
pub(crate) fn midpoint(a: f64, b: f64) -> f64 {
    let sum = a + b;
    if sum.is_finite() {
        sum / 2.0
    } else {
        a / 2.0 + b / 2.0
    }
}

/// Sorts finite values ascending.
pub(crate) fn sorted(values: &[f64]) -> Vec<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_unstable_by(f64::total_cmp);
    sorted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_and_even_counts() {
        assert_eq!(median_of_sorted(&[1.0, 2.0, 9.0]), 2.0);
        assert_eq!(median_of_sorted(&[1.0, 2.0, 4.0, 9.0]), 3.0);
    }

    #[test]
    fn counts_agree_with_expanding_the_multiset() {
        let sorted = [1.0, 2.0, 4.0, 8.0];
        let cases: [[u32; 4]; 5] = [
            [1, 1, 1, 1],
            [4, 0, 0, 0],
            [0, 2, 0, 1],
            [1, 0, 0, 2],
            [3, 0, 0, 3],
        ];
        for counts in cases {
            let mut expanded = Vec::new();
            for (&value, count) in sorted.iter().zip(counts) {
                expanded.resize(expanded.len() + count as usize, value);
            }
            let total = expanded.len();
            assert_eq!(
                median_of_counts(&sorted, counts, total),
                median_of_sorted(&expanded),
                "{counts:?}"
            );
        }
    }

    #[test]
    fn midpoint_of_huge_values_stays_finite() {
        assert_eq!(midpoint(f64::MAX, f64::MAX), f64::MAX);
        assert_eq!(midpoint(-1.0, 1.0), 0.0);
    }
}
