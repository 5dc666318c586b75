//! Properties of the statistics that must hold for any valid samples.

use hvbench_stats::{
    bootstrap_median_ci, permutation_test, ratio_of_medians, summarize, Rng, Samples, StatsError,
    CONFIDENCE, SEED,
};
use proptest::prelude::*;

/// Benchmark-like measurements: positive, spanning several orders of magnitude.
fn positive_values() -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(1e-3..1e6f64, 2..16)
}

/// Any sign, including exact zeros and ties, which stress the interval edge cases.
fn any_values() -> impl Strategy<Value = Vec<f64>> {
    let value = prop_oneof![-1e6..1e6f64, Just(0.0), Just(1.0), Just(-1.0)];
    prop::collection::vec(value, 2..16)
}

fn samples(values: Vec<f64>) -> Samples {
    Samples::new(values).unwrap()
}

fn close(a: f64, b: f64, scale: f64) -> bool {
    (a - b).abs() <= 1e-9 * scale
}

/// The median of a resample drawn the obvious way, for checking the optimised bootstrap.
fn naive_bootstrap_median(sorted: &[f64], rng: &mut Rng) -> f64 {
    let mut resample: Vec<f64> = (0..sorted.len())
        .map(|_| sorted[rng.below(sorted.len())])
        .collect();
    resample.sort_by(f64::total_cmp);
    let mid = resample.len() / 2;
    if resample.len() % 2 == 1 {
        resample[mid]
    } else {
        (resample[mid - 1] + resample[mid]) / 2.0
    }
}

fn naive_quantile(sorted: &[f64], p: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * p;
    let below = h.floor() as usize;
    let above = (below + 1).min(sorted.len() - 1);
    sorted[below] + (sorted[above] - sorted[below]) * (h - below as f64)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn summary_interval_contains_the_median(values in any_values()) {
        let s = samples(values);
        let summary = summarize(&s);
        prop_assert!(summary.ci_low <= summary.median && summary.median <= summary.ci_high);
        prop_assert!(summary.min <= summary.ci_low && summary.ci_high <= summary.max);
        prop_assert_eq!(summary.median, s.median());
        prop_assert_eq!(summary.n, s.len());
    }

    #[test]
    fn summary_statistics_are_consistent(values in any_values()) {
        let s = samples(values);
        let summary = summarize(&s);
        prop_assert!(summary.min <= summary.median && summary.median <= summary.max);
        let slack = 1e-12 * summary.min.abs().max(summary.max.abs());
        prop_assert!(summary.min - slack <= summary.mean && summary.mean <= summary.max + slack);
        prop_assert!(summary.stddev >= 0.0 && summary.cv >= 0.0 && s.mad() >= 0.0);
        prop_assert!(summary.cv.is_finite());
        prop_assert!(summary.outliers.windows(2).all(|w| w[0] < w[1]));
        prop_assert!(summary.outliers.iter().all(|&i| i < s.len()));
    }

    #[test]
    fn bootstrap_agrees_with_naive_resampling(values in any_values(), seed in any::<u64>()) {
        let s = samples(values);
        let mut sorted = s.values().to_vec();
        sorted.sort_by(f64::total_cmp);
        let mut rng = Rng::new(seed);
        let mut medians: Vec<f64> = (0..300).map(|_| naive_bootstrap_median(&sorted, &mut rng)).collect();
        medians.sort_by(f64::total_cmp);
        let point = s.median();
        let low = naive_quantile(&medians, (1.0 - CONFIDENCE) / 2.0).min(point);
        let high = naive_quantile(&medians, (1.0 + CONFIDENCE) / 2.0).max(point);
        let estimate = bootstrap_median_ci(&s, CONFIDENCE, 300, seed);
        let scale = sorted[0].abs().max(sorted[sorted.len() - 1].abs()).max(1.0);
        prop_assert!(close(estimate.ci_low, low, scale), "{:?} vs {} {}", estimate, low, high);
        prop_assert!(close(estimate.ci_high, high, scale), "{:?} vs {} {}", estimate, low, high);
        prop_assert_eq!(estimate.point, point);
    }

    #[test]
    fn ratio_interval_contains_the_point(num in positive_values(), den in positive_values()) {
        let (num, den) = (samples(num), samples(den));
        let ratio = ratio_of_medians(&num, &den).unwrap();
        prop_assert_eq!(ratio.point, num.median() / den.median());
        prop_assert!(ratio.ci_low <= ratio.point && ratio.point <= ratio.ci_high);
        prop_assert!(ratio.ci_low >= num.min() / den.max() && ratio.ci_high <= num.max() / den.min());
    }

    #[test]
    fn ratio_of_a_set_with_itself_contains_one(values in positive_values()) {
        let s = samples(values);
        let ratio = ratio_of_medians(&s, &s).unwrap();
        prop_assert_eq!(ratio.point, 1.0);
        prop_assert!(ratio.contains(1.0));
    }

    #[test]
    fn ratio_of_copies_contains_one(values in positive_values()) {
        let (a, b) = (samples(values.clone()), samples(values));
        prop_assert!(ratio_of_medians(&a, &b).unwrap().contains(1.0));
    }

    #[test]
    fn ratio_of_nonzero_denominators_never_fails(num in any_values(), den in positive_values()) {
        prop_assert!(ratio_of_medians(&samples(num), &samples(den)).is_ok());
    }

    #[test]
    fn scaling_samples_scales_median_and_interval(values in positive_values(), k in 1e-3..1e3f64) {
        let s = samples(values.clone());
        let scaled = samples(values.iter().map(|v| v * k).collect());
        let (base, after) = (summarize(&s), summarize(&scaled));
        let scale = base.max * k;
        prop_assert!(close(after.median, base.median * k, scale), "{:?} {:?}", base, after);
        prop_assert!(close(after.ci_low, base.ci_low * k, scale), "{:?} {:?}", base, after);
        prop_assert!(close(after.ci_high, base.ci_high * k, scale), "{:?} {:?}", base, after);
        prop_assert!(close(after.mean, base.mean * k, scale));
        prop_assert!(close(after.stddev, base.stddev * k, scale));
        prop_assert!((after.cv - base.cv).abs() <= 1e-9 * base.cv.max(1.0));
    }

    #[test]
    fn scaling_both_sets_leaves_the_ratio(num in positive_values(), den in positive_values(), k in 1e-3..1e3f64) {
        let ratio = ratio_of_medians(&samples(num.clone()), &samples(den.clone())).unwrap();
        let scale = |v: &[f64]| samples(v.iter().map(|x| x * k).collect());
        let scaled = ratio_of_medians(&scale(&num), &scale(&den)).unwrap();
        let tolerance = ratio.ci_high.abs();
        prop_assert!(close(scaled.point, ratio.point, tolerance));
        prop_assert!(close(scaled.ci_low, ratio.ci_low, tolerance), "{:?} {:?}", ratio, scaled);
        prop_assert!(close(scaled.ci_high, ratio.ci_high, tolerance), "{:?} {:?}", ratio, scaled);
    }

    #[test]
    fn permutation_p_value_is_a_probability(
        a in any_values(), b in any_values(), resamples in 0..300usize, seed in any::<u64>(),
    ) {
        let test = permutation_test(&samples(a), &samples(b), resamples, seed);
        prop_assert!(test.p_value > 0.0 && test.p_value <= 1.0, "{:?}", test);
        prop_assert!(test.p_value >= 1.0 / (resamples + 1) as f64);
        prop_assert!(test.observed.is_finite());
    }

    #[test]
    fn permutation_of_a_set_against_itself_has_p_one(values in any_values(), seed in any::<u64>()) {
        let s = samples(values);
        prop_assert_eq!(permutation_test(&s, &s, 200, seed).p_value, 1.0);
    }

    #[test]
    fn everything_is_deterministic(a in any_values(), b in positive_values()) {
        let (a, b) = (samples(a), samples(b));
        prop_assert_eq!(summarize(&a), summarize(&a));
        prop_assert_eq!(ratio_of_medians(&a, &b), ratio_of_medians(&a, &b));
        prop_assert_eq!(permutation_test(&a, &b, 500, SEED), permutation_test(&a, &b, 500, SEED));
        prop_assert_eq!(bootstrap_median_ci(&a, 0.9, 500, 5), bootstrap_median_ci(&a, 0.9, 500, 5));
    }

    #[test]
    fn samples_accepts_finite_and_rejects_non_finite(
        values in prop::collection::vec(-1e300..1e300f64, 2..20),
        position in any::<prop::sample::Index>(),
        bad in prop_oneof![Just(f64::NAN), Just(f64::INFINITY), Just(f64::NEG_INFINITY)],
    ) {
        prop_assert!(Samples::new(values.clone()).is_ok());
        let mut values = values;
        let index = position.index(values.len());
        values[index] = bad;
        prop_assert_eq!(Samples::new(values), Err(StatsError::NotFinite { index }));
    }

    #[test]
    fn samples_rejects_fewer_than_two(values in prop::collection::vec(any::<f64>(), 0..2)) {
        let got = values.len();
        prop_assert_eq!(Samples::new(values), Err(StatsError::TooFew { needed: 2, got }));
    }
}

#[test]
fn different_seeds_give_slightly_different_intervals() {
    // Guards against the seed being ignored: with 200 resamples the interval moves.
    let s = samples(vec![
        1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0,
    ]);
    let intervals: Vec<_> = (0..5)
        .map(|seed| bootstrap_median_ci(&s, CONFIDENCE, 200, seed))
        .collect();
    assert!(intervals.windows(2).any(|w| w[0] != w[1]), "{intervals:?}");
}
