//! When a workload has been repeated enough: the rule behind the efficiency scenario's extra
//! repetitions.
//!
//! A repetition costs time on every backend, and the question a run answers is each guest's
//! efficiency, not each backend's score on its own. So repetitions go where they narrow an
//! answer that is still open, and stop where the answer is already clear:
//! - a guest's efficiency is **decided** when its 95% interval is within ±`half_width`
//!   (efficiency points: 0.03 is ±3%) or lies wholly below `clear_below` (a large overhead:
//!   "about 40%" is the answer, its second digit is not worth the user's time); a guest whose
//!   efficiency is decided gets no more repetitions;
//! - an undecided guest gets another one if its own spread is too high (coefficient of
//!   variation above `cv_threshold`, as PTS extends a noisy test) or if neither side is noisy
//!   (the interval is wide only for want of samples);
//! - the baseline gets another one while some guest is undecided and the baseline's own spread
//!   is too high (its noise is in every ratio) or neither side is noisy;
//! - a run with no guest (the baseline alone) follows the spread rule alone;
//! - nobody gets more than `max_reps` in all (the caller checks the count).

use hvbench_stats::{ratio_of_medians, Samples};

/// The thresholds of the rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RepRule {
    /// Coefficient of variation above which one side's samples count as noisy.
    pub cv_threshold: f64,
    /// Half the width of an interval that answers the question, in efficiency (0.03 = ±3%).
    pub half_width: f64,
    /// An interval wholly below this efficiency answers the question too.
    pub clear_below: f64,
}

impl RepRule {
    pub fn new(cv_threshold: f64) -> RepRule {
        RepRule {
            cv_threshold,
            half_width: 0.03,
            clear_below: 0.90,
        }
    }
}

/// One guest's samples beside the baseline's.
#[derive(Debug, Clone, Copy)]
pub struct GuestSamples<'a> {
    pub samples: &'a [f64],
    /// The baseline's samples are the denominator when higher is better, the numerator when
    /// lower is (a time).
    pub higher_is_better: bool,
}

/// Who needs another repetition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub baseline: bool,
    pub guests: Vec<bool>,
}

fn noisy(samples: &[f64], cv_threshold: f64) -> bool {
    Samples::new(samples.to_vec()).is_ok_and(|s| hvbench_stats::needs_more_reps(&s, cv_threshold))
}

/// Whether a guest's efficiency is known well enough (see the module's text). Samples a ratio
/// cannot be computed from (fewer than one, a zero median) never decide.
pub fn decided(baseline: &[f64], guest: GuestSamples<'_>, rule: &RepRule) -> bool {
    let (Ok(b), Ok(g)) = (
        Samples::new(baseline.to_vec()),
        Samples::new(guest.samples.to_vec()),
    ) else {
        return false;
    };
    if b.len() < 2 || g.len() < 2 {
        return false;
    }
    let est = if guest.higher_is_better {
        ratio_of_medians(&g, &b)
    } else {
        ratio_of_medians(&b, &g)
    };
    est.is_ok_and(|e| {
        (e.ci_high - e.ci_low) / 2.0 <= rule.half_width || e.ci_high < rule.clear_below
    })
}

/// Who needs another repetition of a workload (see the module's text).
pub fn wanted(baseline: &[f64], guests: &[GuestSamples<'_>], rule: &RepRule) -> Wanted {
    let base_noisy = noisy(baseline, rule.cv_threshold);
    if guests.is_empty() {
        return Wanted {
            baseline: base_noisy,
            guests: Vec::new(),
        };
    }
    let mut want_base = false;
    let guest_wants = guests
        .iter()
        .map(|g| {
            if decided(baseline, *g, rule) {
                return false;
            }
            let guest_noisy = noisy(g.samples, rule.cv_threshold);
            let neither = !guest_noisy && !base_noisy;
            want_base |= base_noisy || neither;
            guest_noisy || neither
        })
        .collect();
    Wanted {
        baseline: want_base,
        guests: guest_wants,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` samples around `center` with a relative spread of about `spread` (deterministic).
    fn stream(center: f64, spread: f64, n: usize) -> Vec<f64> {
        let pattern = [
            0.0, 1.0, -1.0, 0.5, -0.5, 0.8, -0.8, 0.2, -0.2, 0.9, -0.9, 0.3,
        ];
        (0..n)
            .map(|i| center * (1.0 + spread * pattern[i % pattern.len()]))
            .collect()
    }

    fn guest(samples: &[f64]) -> GuestSamples<'_> {
        GuestSamples {
            samples,
            higher_is_better: true,
        }
    }

    const RULE: RepRule = RepRule {
        cv_threshold: 0.035,
        half_width: 0.03,
        clear_below: 0.90,
    };

    /// Repeats as the efficiency scenario does: `reps` rounds for everyone, then a round for
    /// whoever the rule wants, at most `max_reps` each. Returns the samples each side took.
    fn simulate(
        base: impl Fn(usize) -> f64,
        guests: &[&dyn Fn(usize) -> f64],
        reps: usize,
        max_reps: usize,
    ) -> (usize, Vec<usize>) {
        let mut b: Vec<f64> = (0..reps).map(&base).collect();
        let mut gs: Vec<Vec<f64>> = guests.iter().map(|g| (0..reps).map(g).collect()).collect();
        loop {
            let views: Vec<GuestSamples> = gs.iter().map(|s| guest(s)).collect();
            let w = wanted(&b, &views, &RULE);
            let mut any = false;
            if w.baseline && b.len() < max_reps {
                b.push(base(b.len()));
                any = true;
            }
            for (i, want) in w.guests.iter().enumerate() {
                if *want && gs[i].len() < max_reps {
                    let n = gs[i].len();
                    gs[i].push(guests[i](n));
                    any = true;
                }
            }
            if !any {
                break;
            }
        }
        (b.len(), gs.iter().map(Vec::len).collect())
    }

    #[test]
    fn a_quiet_baseline_alone_stops_at_the_planned_count() {
        let b = stream(100.0, 0.01, 5);
        assert!(!wanted(&b, &[], &RULE).baseline);
        let (n, _) = simulate(|i| stream(100.0, 0.01, 12)[i], &[], 5, 8);
        assert_eq!(n, 5);
    }

    #[test]
    fn a_noisy_baseline_alone_is_extended_up_to_the_cap() {
        let b = stream(100.0, 0.3, 5);
        assert!(wanted(&b, &[], &RULE).baseline);
        let (n, _) = simulate(|i| stream(100.0, 0.3, 12)[i], &[], 5, 8);
        assert_eq!(n, 8);
    }

    #[test]
    fn a_clear_overhead_stops_early_even_when_noisy() {
        // 40% ± noise: wholly below 90%, the question is answered.
        let b = stream(100.0, 0.02, 5);
        let g = stream(40.0, 0.15, 5);
        assert!(decided(&b, guest(&g), &RULE));
        assert_eq!(
            wanted(&b, &[guest(&g)], &RULE),
            Wanted {
                baseline: false,
                guests: vec![false]
            }
        );
    }

    #[test]
    fn a_narrow_interval_near_the_host_stops_early() {
        let b = stream(100.0, 0.005, 5);
        let g = stream(98.0, 0.005, 5);
        assert!(decided(&b, guest(&g), &RULE));
        let (nb, ng) = simulate(
            |i| stream(100.0, 0.005, 12)[i],
            &[&|i| stream(98.0, 0.005, 12)[i]],
            5,
            8,
        );
        assert_eq!((nb, ng), (5, vec![5]));
    }

    #[test]
    fn a_wide_interval_near_the_host_is_extended_on_the_noisy_side_up_to_the_cap() {
        let b = stream(100.0, 0.01, 5);
        let g = stream(97.0, 0.2, 5);
        assert!(!decided(&b, guest(&g), &RULE));
        let w = wanted(&b, &[guest(&g)], &RULE);
        assert_eq!(
            w,
            Wanted {
                baseline: false,
                guests: vec![true]
            }
        );
        let (nb, ng) = simulate(
            |i| stream(100.0, 0.01, 12)[i],
            &[&|i| stream(97.0, 0.2, 12)[i]],
            5,
            8,
        );
        assert_eq!((nb, ng), (5, vec![8]));
    }

    #[test]
    fn a_noisy_baseline_is_extended_while_a_guest_is_undecided() {
        let (nb, ng) = simulate(
            |i| stream(100.0, 0.2, 12)[i],
            &[&|i| stream(99.0, 0.01, 12)[i], &|i| {
                stream(30.0, 0.01, 12)[i]
            }],
            5,
            8,
        );
        assert_eq!(nb, 8, "the baseline's noise is in the open ratio");
        assert_eq!(ng[1], 5, "the clear overhead took no extra repetition");
    }

    #[test]
    fn times_put_the_baseline_on_top() {
        // A guest twice as slow (a time): efficiency 50%, a clear overhead.
        let b = stream(10.0, 0.03, 5);
        let g = stream(20.0, 0.03, 5);
        let as_time = GuestSamples {
            samples: &g,
            higher_is_better: false,
        };
        assert!(decided(&b, as_time, &RULE));
        // Read as scores, the same samples put the guest at 200% ± about 6%: wider than ±3
        // points, so open.
        assert!(!decided(&b, guest(&g), &RULE));
    }

    #[test]
    fn too_few_samples_never_decide() {
        assert!(!decided(&[100.0], guest(&[40.0]), &RULE));
        assert!(!decided(&[], guest(&[40.0, 41.0]), &RULE));
    }
}
