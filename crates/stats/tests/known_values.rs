//! Statistics of fixed vectors against values computed by hand or taken from the literature.

use hvbench_stats::{
    mad_outliers, needs_more_reps, permutation_test, ratio_of_medians, summarize, Samples,
    StatsError, BOOTSTRAP_RESAMPLES, CV_THRESHOLD, OUTLIER_THRESHOLD, SEED,
};

fn samples(values: &[f64]) -> Samples {
    Samples::new(values.to_vec()).unwrap()
}

fn assert_close(actual: f64, expected: f64) {
    assert!(
        (actual - expected).abs() <= 1e-12 * expected.abs().max(1.0),
        "{actual} != {expected}"
    );
}

#[test]
fn descriptive_statistics_of_a_textbook_vector() {
    // Mean 5, squared deviations sum to 32, so the sample variance is 32 / 7.
    let s = samples(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]);
    assert_eq!(s.len(), 8);
    assert_eq!(s.median(), 4.5);
    assert_eq!(s.mean(), 5.0);
    assert_close(s.stddev(), (32.0f64 / 7.0).sqrt());
    assert_close(s.cv(), (32.0f64 / 7.0).sqrt() / 5.0);
    // Deviations from 4.5: five of 0.5, two of 2.5, one of 4.5.
    assert_eq!(s.mad(), 0.5);
    assert_eq!((s.min(), s.max()), (2.0, 9.0));
}

#[test]
fn median_of_odd_count_ignores_measured_order() {
    let s = samples(&[9.0, 1.0, 5.0]);
    assert_eq!(s.median(), 5.0);
    assert_eq!(s.values(), &[9.0, 1.0, 5.0]);
}

#[test]
fn two_values() {
    let s = samples(&[1.0, 3.0]);
    assert_eq!(s.median(), 2.0);
    assert_eq!(s.mean(), 2.0);
    assert_close(s.stddev(), 2.0f64.sqrt());
    assert_eq!(s.mad(), 1.0);
}

#[test]
fn mad_wikipedia_example() {
    // {1, 1, 2, 2, 4, 6, 9}: median 2, absolute deviations {1, 1, 0, 0, 2, 4, 7}, MAD 1.
    assert_eq!(samples(&[1.0, 1.0, 2.0, 2.0, 4.0, 6.0, 9.0]).mad(), 1.0);
}

#[test]
fn mad_matches_r_and_ignores_one_wild_value() {
    // R: mad(c(1:9), constant = 1) == mad(c(1:8, 100), constant = 1) == 2
    let one_to_nine: Vec<f64> = (1..=9).map(f64::from).collect();
    let mut wild = one_to_nine.clone();
    wild[8] = 100.0;
    assert_eq!(samples(&one_to_nine).mad(), 2.0);
    assert_eq!(samples(&wild).mad(), 2.0);
}

#[test]
fn mad_outliers_leys_et_al_example() {
    // Leys et al. (2013), "Detecting outliers: do not use standard deviation around the mean":
    // 1, 3, 3, 6, 8, 10, 10, 1000 has median 7 and unscaled MAD 3.5. Modified z-scores are
    // 0.6745 * (x - 7) / 3.5: 1000 scores 191.4; the rest stay within 1.2.
    let s = samples(&[1.0, 3.0, 3.0, 6.0, 8.0, 10.0, 10.0, 1000.0]);
    assert_eq!(s.median(), 7.0);
    assert_eq!(s.mad(), 3.5);
    assert_eq!(mad_outliers(&s, OUTLIER_THRESHOLD), vec![7]);
    // The mean and standard deviation are dragged so far that a 3-sigma rule misses it.
    assert!((1000.0 - s.mean()) / s.stddev() < 3.0);
}

#[test]
fn mad_outliers_are_two_sided_and_follow_the_threshold() {
    // Median 10, MAD 1: modified z of x is 0.6745 * |x - 10|.
    let s = samples(&[10.0, 9.0, 11.0, 10.0, 10.0, 9.0, 11.0, 4.0, 16.0]);
    assert_eq!(s.mad(), 1.0);
    assert_eq!(mad_outliers(&s, OUTLIER_THRESHOLD), vec![7, 8]); // |z| = 0.6745 * 6 = 4.047
    assert_eq!(mad_outliers(&s, 4.04), vec![7, 8]);
    assert_eq!(mad_outliers(&s, 4.05), Vec::<usize>::new());
    // Neighbours one away score 0.67: flagged only by a threshold below that.
    assert_eq!(mad_outliers(&s, 0.6), vec![1, 2, 5, 6, 7, 8]);
}

#[test]
fn mad_zero_flags_exactly_the_values_off_the_median() {
    let s = samples(&[100.0, 100.0, 100.0, 101.0, 100.0]);
    assert_eq!(s.mad(), 0.0);
    assert_eq!(mad_outliers(&s, OUTLIER_THRESHOLD), vec![3]);
    assert_eq!(
        mad_outliers(&samples(&[5.0, 5.0, 5.0]), OUTLIER_THRESHOLD),
        Vec::<usize>::new()
    );
}

#[test]
fn cv_with_zero_mean_is_the_stddev() {
    assert_eq!(samples(&[0.0, 0.0, 0.0]).cv(), 0.0);
    let cancelling = samples(&[-1.0, 1.0]);
    assert_close(cancelling.cv(), 2.0f64.sqrt());
    assert!(cancelling.cv().is_finite());
}

#[test]
fn cv_uses_the_magnitude_of_the_mean() {
    assert_close(samples(&[-2.0, -4.0]).cv(), samples(&[2.0, 4.0]).cv());
}

#[test]
fn more_reps_needed_above_the_threshold_only() {
    // stddev of {100, 101} is 0.707, cv 0.70%; of {100, 110} it is 7.07, cv 6.7%.
    assert!(!needs_more_reps(&samples(&[100.0, 101.0]), CV_THRESHOLD));
    assert!(needs_more_reps(&samples(&[100.0, 110.0]), CV_THRESHOLD));
    assert!(!needs_more_reps(&samples(&[7.0, 7.0]), 0.0));
}

#[test]
fn samples_rejects_too_few_values() {
    assert_eq!(
        Samples::new(vec![]),
        Err(StatsError::TooFew { needed: 2, got: 0 })
    );
    assert_eq!(
        Samples::new(vec![1.0]),
        Err(StatsError::TooFew { needed: 2, got: 1 })
    );
}

#[test]
fn samples_rejects_non_finite_values_naming_the_first() {
    assert_eq!(
        Samples::new(vec![1.0, f64::NAN]),
        Err(StatsError::NotFinite { index: 1 })
    );
    assert_eq!(
        Samples::new(vec![1.0, 2.0, f64::INFINITY, f64::NAN]),
        Err(StatsError::NotFinite { index: 2 })
    );
    assert_eq!(
        Samples::new(vec![f64::NEG_INFINITY, 1.0]),
        Err(StatsError::NotFinite { index: 0 })
    );
    assert_eq!(
        Samples::try_from(vec![1.0, f64::NAN]),
        Err(StatsError::NotFinite { index: 1 })
    );
}

#[test]
fn error_messages_say_what_to_do() {
    let too_few = StatsError::TooFew { needed: 2, got: 1 }.to_string();
    assert!(
        too_few.contains("got 1") && too_few.contains("--reps"),
        "{too_few}"
    );
    let not_finite = StatsError::NotFinite { index: 3 }.to_string();
    assert!(
        not_finite.contains("sample 3") && not_finite.contains("parser"),
        "{not_finite}"
    );
    let zero = StatsError::ZeroDenominator.to_string();
    assert!(zero.contains("baseline"), "{zero}");
}

#[test]
fn summary_of_a_fixed_vector() {
    let s = samples(&[10.0, 12.0, 11.0, 50.0, 11.0, 10.0]);
    let summary = summarize(&s);
    assert_eq!(summary.n, 6);
    assert_eq!(summary.median, 11.0);
    assert_eq!(summary.mean, 104.0 / 6.0);
    assert_eq!(summary.stddev, s.stddev());
    assert_eq!(summary.cv, s.cv());
    assert_eq!((summary.min, summary.max), (10.0, 50.0));
    // Every bootstrap median lies between the smallest and largest values.
    assert!(10.0 <= summary.ci_low && summary.ci_low <= 11.0);
    assert!(11.0 <= summary.ci_high && summary.ci_high <= 50.0);
    assert_eq!(summary.outliers, vec![3]);
}

#[test]
fn ratio_point_is_the_ratio_of_medians() {
    let host = samples(&[100.0, 101.0, 99.0, 100.0, 102.0]);
    let guest = samples(&[150.0, 151.0, 149.0, 150.0, 152.0]);
    let ratio = ratio_of_medians(&guest, &host).unwrap();
    assert_eq!(ratio.point, 1.5);
    // Bootstrap medians stay within [149, 152] / [99, 102].
    assert!(
        ratio.ci_low >= 149.0 / 102.0 && ratio.ci_high <= 152.0 / 99.0,
        "{ratio:?}"
    );
    assert!(!ratio.contains(1.0));
}

#[test]
fn ratio_with_zero_median_denominator_is_an_error() {
    let num = samples(&[1.0, 2.0, 3.0]);
    assert_eq!(
        ratio_of_medians(&num, &samples(&[0.0, 0.0, 1.0])),
        Err(StatsError::ZeroDenominator)
    );
    assert_eq!(
        ratio_of_medians(&num, &samples(&[-1.0, 1.0])),
        Err(StatsError::ZeroDenominator)
    );
}

#[test]
fn permutation_test_separates_disjoint_sets() {
    let a: Vec<f64> = (1..=10).map(f64::from).collect();
    let b: Vec<f64> = (100..=110).map(f64::from).collect();
    let test = permutation_test(&samples(&a), &samples(&b), BOOTSTRAP_RESAMPLES, SEED);
    assert!(test.p_value < 0.01, "{test:?}");
    assert!(test.p_value > 0.0);
    // Medians 5.5 and 105.
    assert_close(test.observed, (105.0 - 5.5) / 5.5);
}

#[test]
fn permutation_test_of_identical_sets_has_p_one() {
    let s = samples(&[3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0]);
    let test = permutation_test(&s, &s, 1000, SEED);
    assert_eq!(test.p_value, 1.0);
    assert_eq!(test.observed, 0.0);
}

#[test]
fn permutation_test_of_interleaved_sets_has_large_p() {
    let a = samples(&[1.0, 3.0, 5.0, 7.0, 9.0, 11.0]);
    let b = samples(&[2.0, 4.0, 6.0, 8.0, 10.0, 12.0]);
    let test = permutation_test(&a, &b, BOOTSTRAP_RESAMPLES, SEED);
    assert!(test.p_value > 0.5, "{test:?}");
}

#[test]
fn permutation_test_without_resamples_is_inconclusive() {
    let test = permutation_test(&samples(&[1.0, 2.0]), &samples(&[8.0, 9.0]), 0, SEED);
    assert_eq!(test.p_value, 1.0);
}

#[test]
fn permutation_observed_with_zero_baseline_is_the_difference() {
    let test = permutation_test(
        &samples(&[0.0, 0.0, 0.0]),
        &samples(&[2.0, 3.0, 4.0]),
        100,
        SEED,
    );
    assert_eq!(test.observed, 3.0);
}

#[test]
fn permutation_observed_is_relative_to_the_baseline_magnitude() {
    let test = permutation_test(&samples(&[-10.0, -10.0]), &samples(&[-5.0, -5.0]), 10, SEED);
    assert_eq!(test.observed, 0.5);
}
