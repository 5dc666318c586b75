//! What one event costs extra in a backend: the micro workloads' samples on native and on the
//! backend, and how each class of events is priced from them.

use hvbench_stats::Rng;

use super::{seconds_per_unit, CPU_WORKLOADS};
use crate::results::{RunDocument, RunRecord};

/// Nanoseconds per operation of a micro workload's sample (ns/op workloads are already; IOPS
/// are inverted).
pub(super) fn ns_per_op(workload: &str, value: f64) -> Option<f64> {
    let w = hvbench_workloads::find(workload)?;
    Some(seconds_per_unit(w.metric, value) * 1e9)
}

fn median(v: &[f64]) -> f64 {
    hvbench_stats::median(v).unwrap_or(f64::NAN)
}

/// One input of the model as samples: its point is the median, a bootstrap draw the median of
/// a resample.
#[derive(Debug, Clone)]
pub(super) struct Input(pub(super) Vec<f64>);

impl Input {
    pub(super) fn point(&self) -> f64 {
        median(&self.0)
    }
    pub(super) fn draw(&self, rng: &mut Rng, buf: &mut Vec<f64>) -> f64 {
        buf.clear();
        for _ in 0..self.0.len() {
            buf.push(self.0[rng.below(self.0.len())]);
        }
        median(buf)
    }
}

/// Where a cost comes from: a micro workload's samples on native and on the backend, in ns per
/// op, and how many events one op is.
#[derive(Debug, Clone)]
pub(super) struct CostSource {
    workload: &'static str,
    native: Input,
    guest: Input,
    events_per_op: f64,
}

impl CostSource {
    pub(super) fn find(
        costs: &RunDocument,
        backend: &str,
        workload: &'static str,
        events_per_op: f64,
    ) -> Option<CostSource> {
        let ns = |r: &RunRecord| -> Option<Input> {
            (r.outcome.is_ok() && !r.samples.is_empty()).then_some(())?;
            let v: Option<Vec<f64>> = r.samples.iter().map(|&x| ns_per_op(workload, x)).collect();
            Some(Input(v?))
        };
        let baseline = costs.backends.first()?.name.as_str();
        Some(CostSource {
            workload,
            native: ns(costs.run(baseline, workload)?)?,
            guest: ns(costs.run(backend, workload)?)?,
            events_per_op,
        })
    }
    /// Extra ns per event, from the medians (or from a resample of both).
    pub(super) fn extra(&self, draw: Option<(&mut Rng, &mut Vec<f64>)>) -> f64 {
        let (n, g) = match draw {
            None => (self.native.point(), self.guest.point()),
            Some((rng, buf)) => (self.native.draw(rng, buf), self.guest.draw(rng, buf)),
        };
        (g - n) / self.events_per_op
    }
}

/// How a class of events is priced.
#[derive(Debug, Clone)]
pub(super) enum Cost {
    /// Extra ns per event from one micro workload.
    Micro(CostSource),
    /// One micro workload's op less `times` of another's (the system calls it makes besides
    /// the event, which the application's own counts price already). A context switch is
    /// `sched.ctxswitch.unix` less two pipe calls, never below zero (a difference of two noisy
    /// small numbers); an fsync is `fs.fsync` less its create, write and close, and may be
    /// cheaper than natively (a guest whose disk acknowledges a flush sooner).
    Less {
        of: CostSource,
        less: CostSource,
        times: f64,
        floor_zero: bool,
    },
    /// User time × (geometric mean of native/guest time of the CPU workloads − 1).
    Cpu(Vec<CostSource>),
}

impl Cost {
    /// `of`'s extra cost less `times` calls at `call`'s price (the calls a micro workload makes
    /// besides its event, which the application's own call counts price already); `None`
    /// when either did not run.
    pub(super) fn less_calls(
        of: Option<CostSource>,
        call: &Option<CostSource>,
        times: f64,
        floor_zero: bool,
    ) -> Option<Cost> {
        of.zip(call.clone()).map(|(of, less)| Cost::Less {
            of,
            less,
            times,
            floor_zero,
        })
    }

    pub(super) fn extra_ns(&self, mut draw: Option<(&mut Rng, &mut Vec<f64>)>) -> f64 {
        match self {
            Cost::Micro(c) => c.extra(draw),
            Cost::Less {
                of,
                less,
                times,
                floor_zero,
            } => {
                let s = of.extra(draw.as_mut().map(|(r, b)| (&mut **r, &mut **b)));
                let p = less.extra(draw);
                let e = s - times * p;
                if *floor_zero {
                    e.max(0.0)
                } else {
                    e
                }
            }
            Cost::Cpu(list) if list.is_empty() => 0.0,
            Cost::Cpu(list) => {
                let mut log_sum = 0.0;
                for c in list {
                    let (n, g) = match draw.as_mut() {
                        None => (c.native.point(), c.guest.point()),
                        Some((rng, buf)) => (c.native.draw(rng, buf), c.guest.draw(rng, buf)),
                    };
                    log_sum += (g / n).ln();
                }
                // The CPU factor minus one: extra ns per ns of user time.
                (log_sum / list.len() as f64).exp() - 1.0
            }
        }
    }
    pub(super) fn from(&self) -> String {
        match self {
            Cost::Micro(c) => c.workload.to_string(),
            Cost::Less {
                of, less, times, ..
            } => {
                let times = if times.fract() == 0.0 {
                    format!("{times:.0}")
                } else {
                    format!("{times:.1}")
                };
                format!("{} − {times} × {}", of.workload, less.workload)
            }
            Cost::Cpu(list) if list.is_empty() => {
                "cpu.*: no measurable difference, factor 1".into()
            }
            Cost::Cpu(list) => list
                .iter()
                .map(|c| c.workload)
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

/// The CPU term's cost: user time × (geometric mean of native / guest time of the `cpu.*`
/// workloads − 1); `None` when none of them ran on `backend`.
pub(super) fn cpu_cost(costs: &RunDocument, backend: &str) -> Option<Cost> {
    let cpu: Vec<CostSource> = CPU_WORKLOADS
        .iter()
        .filter_map(|w| CostSource::find(costs, backend, w, 1.0))
        .collect();
    // A CPU workload whose efficiency interval contains 100% shows no measurable difference:
    // it gives no factor (user code runs natively in namespaces, gVisor and UML, and a noisy
    // host otherwise turns its noise into a large term). With none left, the factor is 1.
    let measurable: Vec<CostSource> = cpu
        .iter()
        .filter(|c| {
            costs.efficiency.iter().any(|e| {
                e.backend == backend
                    && e.workload == c.workload
                    && e.verdict != crate::results::Verdict::NoMeasurableOverhead
            })
        })
        .cloned()
        .collect();
    (!cpu.is_empty()).then_some(Cost::Cpu(measurable))
}

/// What an execve costs: `proc.spawn` (a dynamically linked program of the applications' root
/// started and reaped) less the page faults of its loading, which the application's own fault
/// count prices already; where it did not run, `proc.exec` (a tiny static program).
pub(super) fn exec_cost(costs: &RunDocument, backend: &str) -> Option<Cost> {
    let Some(spawn) = CostSource::find(costs, backend, "proc.spawn", 1.0) else {
        return CostSource::find(costs, backend, "proc.exec", 1.0).map(Cost::Micro);
    };
    let baseline = costs.backends.first()?.name.as_str();
    let faults = costs
        .run(baseline, "proc.spawn")
        .and_then(|r| r.extras.get("faults_per_op"))
        .copied();
    match (
        faults,
        CostSource::find(costs, backend, "mm.pagefault", 1.0),
    ) {
        (Some(times), Some(less)) => Some(Cost::Less {
            of: spawn,
            less,
            times,
            floor_zero: true,
        }),
        _ => Some(Cost::Micro(spawn)),
    }
}
