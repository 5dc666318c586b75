//! `explain`: where a workload's overhead in a backend comes from, predicted from the kernel
//! events its native run asked for and what each event costs extra in that backend.
//!
//! The model (docs/explain.md), per unit of work (a transaction, a build, an operation):
//!
//! ```text
//! predicted guest time = native time
//!                      + native user time × (CPU factor − 1)
//!                      + Σ over event classes: events per unit × extra ns per event
//! predicted efficiency = native time / predicted guest time
//! ```
//!
//! Counts come from the native run's counted repetitions (`runs[].counted`); extra costs are
//! differences of medians between the backend and native of micro workloads of the same run
//! (or of another, `--costs`): system calls from `sys.getppid` (and the file-I/O class from
//! `sys.pipe`, two calls per op), page faults from `mm.pagefault`, context switches from
//! `sched.ctxswitch.unix` (a ping-pong over Unix sockets; `.same`, over pipes, in older
//! documents) less its two system calls per switch, disk I/Os from `io.randread`,
//! the CPU factor from the `cpu.*` workloads (geometric mean of native / guest speed). The
//! interval of the prediction is a bootstrap: every input's samples are resampled together,
//! the prediction recomputed, and the percentile interval read off. The pure functions here
//! read documents and never run anything.

mod classes;
mod cost;

use hvbench_stats::Rng;
use hvbench_workloads::{Kind, Metric, WorkloadInfo};

use crate::results::{CountedRecord, ExplainRecord, ExplainTerm, Interval, RunDocument, RunRecord};
use classes::{classes, per_unit, Class};
use cost::Input;

/// Counted native repetitions per explained workload (fewer when `--reps` is smaller).
pub const COUNTED_REPS: u32 = 3;
/// Counted repetitions in each guest: what the same work asked of the guest's kernel, shown
/// beside the native counts and in a second prediction, never in a score.
pub const GUEST_COUNTED_REPS: u32 = 1;

/// The micro workloads the model takes unit costs from: `hvbench run --explain` adds them.
pub const COST_WORKLOADS: &[&str] = &[
    "sys.getppid",
    "sys.pipe",
    "mm.pagefault",
    "sched.ctxswitch.same",
    "sched.ctxswitch.unix",
    "cpu.dhrystone",
    "cpu.primes",
    "proc.fork",
    "proc.exec",
];

/// The costs added when an explained application runs (they need a scratch disk or the
/// applications' root): a read that misses the cache, a durable write as app.files and a
/// database's commit make it (a new file's fsync on the applications' file system), a file
/// opened by its path there, a file created and removed there, and a dynamically linked program
/// started from the applications' root.
pub const APP_COST_WORKLOADS: &[&str] = &[
    "io.randread",
    "fs.fsync",
    "fs.open",
    "fs.create",
    "proc.spawn",
    "time.clock_gettime",
];

/// The costs added when an explained application serves the network (app.web): a byte sent to
/// the host, a request's round trip, a file sent into a socket.
pub const NET_COST_WORKLOADS: &[&str] = &["net.stream.tx", "net.rr", "fs.sendfile"];

/// The pricing workloads `hvbench run --explain` measures again after each repetition of an
/// application, on the same backend (`runs[].round_prices`): every price the model takes from
/// one workload's samples, not the CPU factor (from efficiency verdicts) or the fallbacks for
/// older documents (`sched.ctxswitch.same`, `proc.exec`).
pub const ROUND_PRICES: &[&str] = &[
    "sys.getppid",
    "sys.pipe",
    "mm.pagefault",
    "sched.ctxswitch.unix",
    "proc.fork",
    "io.randread",
    "fs.fsync",
    "fs.open",
    "fs.create",
    "proc.spawn",
    "time.clock_gettime",
    "net.stream.tx",
    "net.rr",
    "fs.sendfile",
];

/// CPU-bound workloads whose guest/native speed gives the CPU factor.
const CPU_WORKLOADS: &[&str] = &[
    "cpu.dhrystone",
    "cpu.whetstone",
    "cpu.primes",
    "cpu.compress",
];

/// Whether `hvbench run --explain` counts `w`'s events: the applications and the synthetic
/// check.
pub fn explained(w: &WorkloadInfo) -> bool {
    w.kind == Kind::App || w.suites.contains(&"explain-check")
}

/// Seconds per unit of work of a sample `value` of a workload with `metric`.
pub fn seconds_per_unit(metric: Metric, value: f64) -> f64 {
    match metric {
        Metric::Rate { scale } => scale / value,
        Metric::TimePerOp { scale } => value / (1e9 * scale),
        // Not a time per unit (see `native_seconds`).
        Metric::Level => f64::NAN,
    }
}

/// The prediction's extra seconds per unit, by class, from points or from one bootstrap draw.
fn extras(classes: &[Class], mut draw: Option<(&mut Rng, &mut Vec<f64>)>) -> Vec<f64> {
    classes
        .iter()
        .map(|c| {
            let (n, e) = match draw.as_mut() {
                None => (c.per_unit.point(), c.cost.extra_ns(None)),
                Some((rng, buf)) => {
                    let n = c.per_unit.draw(rng, buf);
                    (n, c.cost.extra_ns(Some((&mut **rng, &mut **buf))))
                }
            };
            if c.seconds {
                n * e
            } else {
                n * e * 1e-9
            }
        })
        .collect()
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// Every explained workload of `doc` on every backend it was measured on, priced with the
/// unit costs of `costs` (`doc` itself, or another run on the same host).
pub fn explain(doc: &RunDocument, costs: &RunDocument) -> Vec<ExplainRecord> {
    let Some(baseline) = doc.backends.first().map(|b| b.name.as_str()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for native in doc.runs.iter().filter(|r| r.backend == baseline) {
        let (Some(counted), Some(w)) = (&native.counted, hvbench_workloads::find(&native.workload))
        else {
            continue;
        };
        if !native.outcome.is_ok() || native.samples.is_empty() {
            continue;
        }
        let Some(native_s) = native_seconds(native, counted, w.metric) else {
            continue;
        };
        for eff in doc
            .efficiency
            .iter()
            .filter(|e| e.workload == native.workload)
        {
            let mut missing = Vec::new();
            let classes = classes(counted, None, costs, &eff.backend, &mut missing);
            let settings = (doc.settings.confidence, doc.settings.bootstrap_seed);
            let mut record = predict(native, &native_s, eff, &classes, missing, costs, settings);
            let guest = doc
                .run(&eff.backend, &native.workload)
                .and_then(|r| r.counted.as_ref())
                .filter(|g| g.reps.iter().any(|r| r.work > 0.0));
            if let Some(g) = guest {
                let with = classes_of(counted, g, costs, &eff.backend);
                // Only when the guest counted a class itself (gVisor counts none): otherwise
                // it would be the first prediction again.
                if with.iter().any(|c| c.from_guest) {
                    let again = predict(native, &native_s, eff, &with, Vec::new(), costs, settings);
                    for ((term, other), class) in
                        record.terms.iter_mut().zip(&again.terms).zip(&with)
                    {
                        term.guest_per_unit = class.from_guest.then_some(other.per_unit);
                    }
                    record.predicted_with_guest_counts = Some(again.predicted);
                }
            }
            if let Some(priced) = with_round_prices(doc, costs, &native.workload, &eff.backend) {
                let with = self::classes(counted, None, &priced, &eff.backend, &mut Vec::new());
                let again = predict(native, &native_s, eff, &with, Vec::new(), &priced, settings);
                for term in record.terms.iter_mut() {
                    term.round_extra_ns = again
                        .terms
                        .iter()
                        .find(|t| t.class == term.class)
                        .map(|t| t.extra_ns);
                }
                record.predicted_with_round_prices = Some(again.predicted);
            }
            out.push(record);
        }
    }
    out
}

/// The native time per unit of work the extra costs are added to: the measured samples
/// inverted; for a workload whose value is a level found under QoS (app.web's sessions), the
/// CPU time the server's process tree spent per request it answered in the counted fixed load
/// at that level (see `scenario::counted`). Its capacity is modelled as that of a server busy
/// at its edge: a guest that adds `e` seconds to each request's `t` serves `t / (t + e)` as
/// many sessions within the same QoS.
fn native_seconds(native: &RunRecord, counted: &CountedRecord, metric: Metric) -> Option<Input> {
    match metric {
        Metric::Level => per_unit(counted, &["user_s", "sys_s"]),
        _ => Some(Input(
            native
                .samples
                .iter()
                .map(|&v| seconds_per_unit(metric, v))
                .collect(),
        )),
    }
}

/// The classes with the guest's own counts where it has them, in the order of the native ones
/// (both lists are made by the same rules from the same costs).
fn classes_of(
    counted: &CountedRecord,
    guest: &CountedRecord,
    costs: &RunDocument,
    backend: &str,
) -> Vec<Class> {
    classes(counted, Some(guest), costs, backend, &mut Vec::new())
}

/// Bootstrap resamples of a prediction: its inputs are few, the draws cheap.
const RESAMPLES: usize = 2000;

fn predict(
    native: &RunRecord,
    native_s: &Input,
    eff: &crate::results::EfficiencyRecord,
    classes: &[Class],
    missing: Vec<String>,
    costs: &RunDocument,
    (confidence, seed): (f64, u64),
) -> ExplainRecord {
    let t_n = native_s.point();
    let parts = extras(classes, None);
    let predicted_extra: f64 = parts.iter().sum();
    let mut rng = Rng::new(seed);
    let mut buf = Vec::new();
    let mut draws: Vec<f64> = (0..RESAMPLES)
        .map(|_| {
            let t = native_s.draw(&mut rng, &mut buf);
            let e: f64 = extras(classes, Some((&mut rng, &mut buf))).iter().sum();
            t / (t + e)
        })
        .filter(|x| x.is_finite())
        .collect();
    draws.sort_by(f64::total_cmp);
    let point = t_n / (t_n + predicted_extra);
    let tail = (1.0 - confidence) / 2.0;
    let (lo, hi) = if draws.is_empty() {
        (point, point)
    } else {
        (
            quantile(&draws, tail).min(point),
            quantile(&draws, 1.0 - tail).max(point),
        )
    };
    let measured_extra = t_n / eff.ratio - t_n;
    ExplainRecord {
        workload: native.workload.clone(),
        backend: eff.backend.clone(),
        costs_from: costs.run_id.clone(),
        native_s: t_n,
        measured: Interval {
            value: eff.ratio,
            ci_low: eff.ci_low,
            ci_high: eff.ci_high,
        },
        predicted: Interval {
            value: point,
            ci_low: lo,
            ci_high: hi,
        },
        measured_extra_s: measured_extra,
        predicted_extra_s: predicted_extra,
        // Only a measured overhead can be explained: an interval that contains 100% has no
        // extra time to share out (the residual is still given).
        explained_share: (eff.ci_high < 1.0 || eff.ci_low > 1.0)
            .then(|| predicted_extra / measured_extra)
            .filter(|s| s.is_finite()),
        residual_s: measured_extra - predicted_extra,
        terms: classes
            .iter()
            .zip(&parts)
            .map(|(c, &extra_s)| ExplainTerm {
                class: c.name.clone(),
                per_unit: c.per_unit.point(),
                extra_ns: c.cost.extra_ns(None),
                cost_from: c.cost.from(),
                extra_s,
                guest_per_unit: None,
                round_extra_ns: None,
            })
            .collect(),
        missing,
        predicted_with_guest_counts: None,
        predicted_with_round_prices: None,
    }
}

/// `costs` with the samples of each pricing workload on the baseline and on `backend`
/// replaced by those measured after `workload`'s own repetitions there
/// (`runs[].round_prices`, at least two on each side); `None` when `costs` is not `doc` (the
/// prices of another run were asked for) or no pricing workload has round prices on both.
fn with_round_prices(
    doc: &RunDocument,
    costs: &RunDocument,
    workload: &str,
    backend: &str,
) -> Option<RunDocument> {
    if doc.run_id != costs.run_id {
        return None;
    }
    let baseline = doc.backends.first()?.name.as_str();
    let native = doc.run(baseline, workload)?;
    let guest = doc.run(backend, workload)?;
    let mut priced = costs.clone();
    let mut any = false;
    for r in priced.runs.iter_mut() {
        let of = if r.backend == baseline {
            native
        } else if r.backend == backend {
            guest
        } else {
            continue;
        };
        if !ROUND_PRICES.contains(&r.workload.as_str()) {
            continue;
        }
        let (Some(n), Some(g)) = (
            native.round_prices.get(&r.workload),
            guest.round_prices.get(&r.workload),
        ) else {
            continue;
        };
        if n.len() < 2 || g.len() < 2 || !r.outcome.is_ok() {
            continue;
        }
        r.samples = of.round_prices[&r.workload].clone();
        // The details were the replaced samples': a round price is a rate alone.
        r.sample_details.clear();
        any = true;
    }
    any.then_some(priced)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_per_unit_inverts_each_metric() {
        // 2000 tps: 0.5 ms per transaction; 3 s per build; 250 ns/op.
        assert!((seconds_per_unit(Metric::Rate { scale: 1.0 }, 2000.0) - 5e-4).abs() < 1e-15);
        assert!((seconds_per_unit(Metric::TimePerOp { scale: 1e-9 }, 3.0) - 3.0).abs() < 1e-12);
        assert!((seconds_per_unit(Metric::TimePerOp { scale: 1.0 }, 250.0) - 250e-9).abs() < 1e-18);
        // µs/op
        assert!((seconds_per_unit(Metric::TimePerOp { scale: 1e-3 }, 7.0) - 7e-6).abs() < 1e-18);
    }

    #[test]
    fn quantiles_interpolate() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(quantile(&v, 0.0), 1.0);
        assert_eq!(quantile(&v, 0.5), 3.0);
        assert_eq!(quantile(&v, 0.125), 1.5);
        assert_eq!(quantile(&v, 1.0), 5.0);
    }
}
