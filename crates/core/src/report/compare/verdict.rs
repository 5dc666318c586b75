//! The verdict on one metric's change: the permutation test of two sample sets, the noise
//! threshold, and the host's own movement (the reference probe, the history's between-run
//! spread) that can make a faster or slower change "within host drift".

use hvbench_stats::{between_run_test, permutation_test, Samples, BOOTSTRAP_RESAMPLES, SEED};

use super::{ChangeVerdict, DriftEvidence, MetricChange, SampleChange, SIGNIFICANCE};
use crate::drift::DriftBand;
use crate::report::view;
use crate::results::RunRecord;

/// A faster or slower verdict stands only when the change also exceeds the host's own
/// movement: the probe's movement around the workload (`around`), the spread of the probe over
/// both runs (`whole`, a t test), and (with at least three runs of history) the spread of the
/// runs' medians.
pub(super) fn temper(
    mut c: MetricChange,
    around: Option<&DriftBand>,
    whole: Option<&DriftBand>,
    run_medians: &[f64],
) -> MetricChange {
    if let (Some(ma), Some(mb)) = (c.median_a, c.median_b) {
        c.between_runs = between_run_test(run_medians, ma, mb);
    }
    if !matches!(c.verdict, ChangeVerdict::Faster | ChangeVerdict::Slower) {
        return c;
    }
    let Some(change) = c.test.as_ref().map(|t| t.change) else {
        return c;
    };
    if let Some(band) = around.filter(|d| d.contains(change)) {
        c.verdict = ChangeVerdict::WithinHostDrift {
            evidence: DriftEvidence::Probe { band: band.band },
        };
    } else if let Some(w) = whole.filter(|w| w.spread_p_value(change) >= SIGNIFICANCE) {
        c.verdict = ChangeVerdict::WithinHostDrift {
            evidence: DriftEvidence::ProbeSpread {
                spread: w.spread,
                p_value: w.spread_p_value(change),
            },
        };
    } else if let Some(t) = c.between_runs.filter(|t| t.p_value >= SIGNIFICANCE) {
        c.verdict = ChangeVerdict::WithinHostDrift {
            evidence: DriftEvidence::History {
                runs: t.runs,
                p_value: t.p_value,
            },
        };
    }
    c
}

pub(super) fn metric_change(a: &RunRecord, b: &RunRecord, noise: f64) -> MetricChange {
    let median = |r: &RunRecord| view::measured(r).map(|s| s.median);
    let side = |r: &RunRecord| -> Result<Samples, String> {
        if view::measured(r).is_none() {
            return Err(view::status_label(r).to_string());
        }
        Samples::new(r.samples.clone()).map_err(|e| e.to_string())
    };
    let test = if a.unit != b.unit {
        Err(format!("units differ ({} and {})", a.unit, b.unit))
    } else {
        match (side(a), side(b)) {
            (Ok(sa), Ok(sb)) => Ok(compare_samples(&sa, &sb, a.higher_is_better, noise)),
            (Err(e), _) => Err(format!("first run {e}")),
            (_, Err(e)) => Err(format!("second run {e}")),
        }
    };
    let (test, verdict) = match test {
        Ok(t) => {
            let verdict = t.verdict.clone();
            (Some(t), verdict)
        }
        Err(reason) => (None, ChangeVerdict::NotComparable { reason }),
    };
    MetricChange {
        backend: a.backend.clone(),
        workload: a.workload.clone(),
        unit: a.unit.clone(),
        higher_is_better: a.higher_is_better,
        median_a: median(a),
        median_b: median(b),
        n_a: a.samples.len(),
        n_b: b.samples.len(),
        test,
        between_runs: None,
        verdict,
    }
}

/// Tests `b` against `a` and gives a verdict only when `p < SIGNIFICANCE` and the relative
/// change of the median exceeds `noise` (a fraction); the direction of goodness decides between
/// faster and slower.
pub fn compare_samples(
    a: &Samples,
    b: &Samples,
    higher_is_better: bool,
    noise: f64,
) -> SampleChange {
    let t = permutation_test(a, b, BOOTSTRAP_RESAMPLES, SEED);
    let verdict = if t.p_value < SIGNIFICANCE && t.observed.abs() > noise {
        if (t.observed > 0.0) == higher_is_better {
            ChangeVerdict::Faster
        } else {
            ChangeVerdict::Slower
        }
    } else {
        ChangeVerdict::NoSignificantChange
    };
    SampleChange {
        change: t.observed,
        p_value: t.p_value,
        can_be_significant: smallest_p_value(a.len(), b.len()) < SIGNIFICANCE,
        verdict,
    }
}

/// The smallest p-value a permutation test of groups of these sizes can give: the observed split
/// (and its mirror image when the groups are of equal size) among all `C(n_a + n_b, n_a)` splits.
fn smallest_p_value(n_a: usize, n_b: usize) -> f64 {
    let k = n_a.min(n_b);
    let mut splits = 1.0f64;
    for i in 0..k {
        splits = splits * (n_a + n_b - i) as f64 / (i + 1) as f64;
    }
    let extreme = if n_a == n_b { 2.0 } else { 1.0 };
    extreme / splits
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::compare::DEFAULT_NOISE;

    fn samples(v: &[f64]) -> Samples {
        Samples::new(v.to_vec()).unwrap()
    }

    const A: [f64; 8] = [100.0, 101.0, 99.0, 100.5, 99.5, 100.2, 100.8, 99.8];

    #[test]
    fn a_clear_rise_in_throughput_is_faster() {
        let b: Vec<f64> = A.iter().map(|v| v * 1.2).collect();
        let c = compare_samples(&samples(&A), &samples(&b), true, DEFAULT_NOISE);
        assert!(c.p_value < SIGNIFICANCE, "{c:?}");
        assert!((c.change - 0.2).abs() < 1e-9, "{c:?}");
        assert_eq!(c.verdict, ChangeVerdict::Faster);
    }

    #[test]
    fn a_clear_rise_in_time_per_operation_is_slower() {
        let b: Vec<f64> = A.iter().map(|v| v * 1.2).collect();
        let c = compare_samples(&samples(&A), &samples(&b), false, DEFAULT_NOISE);
        assert_eq!(c.verdict, ChangeVerdict::Slower);
        let c = compare_samples(&samples(&b), &samples(&A), false, DEFAULT_NOISE);
        assert_eq!(c.verdict, ChangeVerdict::Faster);
    }

    #[test]
    fn a_significant_change_within_the_noise_threshold_has_no_verdict() {
        let b: Vec<f64> = A.iter().map(|v| v * 1.03).collect();
        let c = compare_samples(&samples(&A), &samples(&b), true, DEFAULT_NOISE);
        assert!(c.p_value < SIGNIFICANCE, "{c:?}");
        assert_eq!(c.verdict, ChangeVerdict::NoSignificantChange);
        let c = compare_samples(&samples(&A), &samples(&b), true, 0.01);
        assert_eq!(c.verdict, ChangeVerdict::Faster);
    }

    #[test]
    fn a_large_change_in_noisy_overlapping_samples_has_no_verdict() {
        let a = [100.0, 150.0, 60.0, 130.0, 80.0];
        let b = [120.0, 170.0, 70.0, 140.0, 95.0];
        let c = compare_samples(&samples(&a), &samples(&b), true, DEFAULT_NOISE);
        assert!(c.change > DEFAULT_NOISE);
        assert!(c.p_value >= SIGNIFICANCE, "{c:?}");
        assert_eq!(c.verdict, ChangeVerdict::NoSignificantChange);
    }

    #[test]
    fn three_samples_each_can_never_be_significant() {
        let c = compare_samples(
            &samples(&[1.0, 1.1, 1.05]),
            &samples(&[10.0, 11.0, 10.5]),
            true,
            DEFAULT_NOISE,
        );
        assert!(!c.can_be_significant);
        assert_eq!(c.verdict, ChangeVerdict::NoSignificantChange);
        assert!((smallest_p_value(5, 5) - 2.0 / 252.0).abs() < 1e-12);
        assert!(smallest_p_value(5, 5) < SIGNIFICANCE);
    }
}
