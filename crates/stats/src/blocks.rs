//! Tests that know the spread between blocks, not only within one sample set.
//!
//! Repetitions of one run are measured seconds apart; a shared host's speed moves over minutes.
//! Two runs' sample sets can therefore differ although nothing changed, and a test that treats
//! every repetition of both runs as exchangeable ([`crate::permutation_test`]) sees that movement
//! as an effect. Two ways out, both here:
//!
//! - **Paired blocks** ([`paired_permutation_test`]): when A and B are measured side by side, one
//!   repetition of each per round, whatever moved the host during a round moved both. The test
//!   looks at the log ratio `ln(b_i / a_i)` of each round and flips the labels *within* rounds
//!   (a sign flip), so only a change that holds round after round is significant.
//! - **Between-run spread** ([`between_run_test`]): when several runs of the same configuration
//!   on the same host exist (an A/A history), the spread of their medians is the between-run
//!   variance; a change between two runs is tested against it with Student's t.

use serde::{Deserialize, Serialize};

use crate::rng::Rng;

/// Rounds up to this many are tested exactly (all `2^n` sign patterns); beyond, by Monte Carlo.
const EXACT_ROUNDS: usize = 16;

/// Outcome of [`paired_permutation_test`].
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct PairedTest {
    /// Two-sided p-value, in `(0, 1]`.
    pub p_value: f64,
    /// Pairs (rounds) tested.
    pub pairs: usize,
    /// Median of the per-round changes `b_i / a_i - 1`.
    pub median_change: f64,
    /// The smallest p-value `pairs` rounds can give (`2 / 2^pairs`): below 0.01 only from 8
    /// rounds on.
    pub smallest_p: f64,
}

/// Per-round log ratios `ln(b_i / a_i)`; `None` when a value is not positive and finite.
fn log_ratios(a: &[f64], b: &[f64]) -> Option<Vec<f64>> {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| {
            (x > 0.0 && y > 0.0 && x.is_finite() && y.is_finite()).then(|| (y / x).ln())
        })
        .collect()
}

fn median_of(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Tests whether `b` differs from `a` when `a[i]` and `b[i]` were measured in the same round
/// (the shorter slice bounds the pairs). The statistic is `|mean_i ln(b_i / a_i)|`; under the
/// null hypothesis the labels A and B are exchangeable within each round, so every sign pattern
/// of the log ratios is as likely as the observed one. Exact for up to 16 rounds, else over
/// `resamples` random patterns from an [`Rng`] seeded with `seed` (with the +1 correction).
///
/// Values must be positive (rates, times); `None` when one is not, or when there are fewer than
/// two pairs.
pub fn paired_permutation_test(
    a: &[f64],
    b: &[f64],
    resamples: usize,
    seed: u64,
) -> Option<PairedTest> {
    let d = log_ratios(a, b)?;
    let n = d.len();
    if n < 2 {
        return None;
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / n as f64;
    let observed = mean(&d);
    let tie = 8.0 * f64::EPSILON * n as f64 * d.iter().fold(1.0f64, |m, x| m.max(x.abs()));
    let threshold = observed.abs() - tie;
    let mut flipped = vec![0.0; n];
    let mut extreme_under = |pattern: u64| {
        for (i, (f, x)) in flipped.iter_mut().zip(&d).enumerate() {
            *f = if pattern >> i & 1 == 1 { -x } else { *x };
        }
        mean(&flipped).abs() >= threshold
    };
    let p_value = if n <= EXACT_ROUNDS {
        let patterns = 1u64 << n;
        let count = (0..patterns).filter(|&p| extreme_under(p)).count();
        count as f64 / patterns as f64
    } else {
        let mut rng = Rng::new(seed);
        let count = (0..resamples)
            .filter(|_| extreme_under(rng.next_u64()))
            .count();
        (count + 1) as f64 / (resamples + 1) as f64
    };
    Some(PairedTest {
        p_value,
        pairs: n,
        median_change: median_of(&mut d.clone()).exp() - 1.0,
        smallest_p: if n <= EXACT_ROUNDS {
            2.0 / 2f64.powi(n as i32)
        } else {
            1.0 / (resamples + 1) as f64
        },
    })
}

/// Outcome of [`between_run_test`].
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct BetweenRunTest {
    /// Two-sided p-value of Student's t with `runs - 1` degrees of freedom.
    pub p_value: f64,
    /// Standard deviation of the log medians of the same-configuration runs.
    pub spread: f64,
    /// Runs the spread came from.
    pub runs: usize,
}

/// Tests a change between two runs' medians, `ln(median_b / median_a)`, against the spread of
/// `run_medians`: medians of one workload in several runs of one configuration on one host
/// (run A among them). The difference of two runs' medians has the variance of two runs, so
/// `t = ln(median_b / median_a) / (sqrt(2) · s)`, with `s` the standard deviation of the log
/// medians. `None` with fewer than three runs, a non-positive median or no spread at all.
pub fn between_run_test(
    run_medians: &[f64],
    median_a: f64,
    median_b: f64,
) -> Option<BetweenRunTest> {
    if run_medians.len() < 3 || median_a <= 0.0 || median_b <= 0.0 {
        return None;
    }
    let logs: Option<Vec<f64>> = run_medians
        .iter()
        .map(|&m| (m > 0.0 && m.is_finite()).then(|| m.ln()))
        .collect();
    let logs = logs?;
    let k = logs.len() as f64;
    let mean = logs.iter().sum::<f64>() / k;
    let var = logs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (k - 1.0);
    let spread = var.sqrt();
    if !(spread > 0.0 && spread.is_finite()) {
        return None;
    }
    Some(BetweenRunTest {
        p_value: spread_test((median_b / median_a).ln(), spread, k - 1.0),
        spread,
        runs: logs.len(),
    })
}

/// The two-sided p-value of a change between two runs, `log_change = ln(median_b /
/// median_a)`, when each run's median sits at a random state of a host whose log speed has
/// standard deviation `spread` (estimated with `df` degrees of freedom): `t = log_change /
/// (sqrt(2) · spread)` against Student's t. 1 when there is no spread to judge by.
pub fn spread_test(log_change: f64, spread: f64, df: f64) -> f64 {
    if !(spread > 0.0 && spread.is_finite() && df >= 1.0) {
        return 1.0;
    }
    student_t_two_sided(log_change / (std::f64::consts::SQRT_2 * spread), df)
}

/// `P(|T| >= |t|)` for Student's t with `df` degrees of freedom: `I_{df/(df+t²)}(df/2, 1/2)`.
fn student_t_two_sided(t: f64, df: f64) -> f64 {
    let x = df / (df + t * t);
    regularized_incomplete_beta(x, df / 2.0, 0.5).clamp(0.0, 1.0)
}

/// `I_x(a, b)` by its continued fraction (Lentz's method), using the symmetry
/// `I_x(a, b) = 1 - I_{1-x}(b, a)` where the fraction converges slowly.
fn regularized_incomplete_beta(x: f64, a: f64, b: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln();
    if x < (a + 1.0) / (a + b + 2.0) {
        ln_front.exp() * beta_fraction(x, a, b) / a
    } else {
        1.0 - ln_front.exp() * beta_fraction(1.0 - x, b, a) / b
    }
}

fn beta_fraction(x: f64, a: f64, b: f64) -> f64 {
    let tiny = 1e-300;
    let mut c = 1.0;
    let mut d = 1.0 - (a + b) * x / (a + 1.0);
    if d.abs() < tiny {
        d = tiny;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..300 {
        let m = f64::from(m);
        let m2 = 2.0 * m;
        let aa = m * (b - m) * x / ((a + m2 - 1.0) * (a + m2));
        for coefficient in [aa, -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1.0))] {
            d = 1.0 + coefficient * d;
            if d.abs() < tiny {
                d = tiny;
            }
            c = 1.0 + coefficient / c;
            if c.abs() < tiny {
                c = tiny;
            }
            d = 1.0 / d;
            h *= d * c;
        }
        if (d * c - 1.0).abs() < 1e-14 {
            break;
        }
    }
    h
}

/// `ln Γ(x)` for `x > 0` (Lanczos approximation, g = 7, 9 terms).
fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut sum = G[0];
    for (i, g) in G.iter().enumerate().skip(1) {
        sum += g / (x + i as f64);
    }
    let t = x + 7.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_in_every_round_is_significant_however_much_the_rounds_drift() {
        // The host's speed moves by a factor 1..2 from round to round; B is 10% slower than A
        // in each round. An unpaired test sees overlapping sets; the paired test sees the 10%.
        let drift = [1.0, 1.4, 0.8, 1.9, 1.1, 1.6, 0.9, 1.3, 1.7, 1.2];
        let a: Vec<f64> = drift.iter().map(|d| 100.0 * d).collect();
        let b: Vec<f64> = drift.iter().map(|d| 110.0 * d).collect();
        let t = paired_permutation_test(&a, &b, 1000, 1).unwrap();
        assert!(t.p_value < 0.01, "{t:?}");
        assert!((t.median_change - 0.1).abs() < 1e-9, "{t:?}");
    }

    #[test]
    fn rounds_that_disagree_are_not_significant() {
        let a = [
            100.0, 100.0, 100.0, 100.0, 100.0, 100.0, 100.0, 100.0, 100.0, 100.0,
        ];
        let b = [
            110.0, 91.0, 108.0, 93.0, 112.0, 90.0, 107.0, 94.0, 109.0, 92.0,
        ];
        let t = paired_permutation_test(&a, &b, 1000, 1).unwrap();
        assert!(t.p_value > 0.1, "{t:?}");
    }

    #[test]
    fn five_rounds_can_never_reach_one_percent() {
        let a = [1.0; 5];
        let b = [2.0; 5];
        let t = paired_permutation_test(&a, &b, 1000, 1).unwrap();
        assert!(t.smallest_p > 0.01);
        assert!(t.p_value >= t.smallest_p);
    }

    #[test]
    fn non_positive_values_and_single_pairs_are_refused() {
        assert!(paired_permutation_test(&[1.0, 0.0], &[1.0, 1.0], 10, 1).is_none());
        assert!(paired_permutation_test(&[1.0], &[1.0], 10, 1).is_none());
    }

    #[test]
    fn student_t_agrees_with_its_known_symmetries() {
        // t = 0 gives p = 1; p falls as |t| grows; more degrees of freedom, smaller p.
        assert!((student_t_two_sided(0.0, 4.0) - 1.0).abs() < 1e-12);
        assert!(student_t_two_sided(2.0, 4.0) > student_t_two_sided(3.0, 4.0));
        assert!(student_t_two_sided(3.0, 4.0) > student_t_two_sided(3.0, 40.0));
        // With one degree of freedom t is Cauchy: P(|T| >= 1) = 1/2 exactly.
        assert!((student_t_two_sided(1.0, 1.0) - 0.5).abs() < 1e-9);
    }

    #[test]
    fn a_change_within_the_between_run_spread_is_not_significant() {
        let history = [100.0, 112.0, 95.0, 105.0];
        let within = between_run_test(&history, 100.0, 110.0).unwrap();
        assert!(within.p_value > 0.01, "{within:?}");
        let beyond = between_run_test(&history, 100.0, 200.0).unwrap();
        assert!(beyond.p_value < 0.01, "{beyond:?}");
        assert!(between_run_test(&history[..2], 100.0, 200.0).is_none());
    }
}
