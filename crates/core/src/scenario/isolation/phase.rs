//! One phase of the isolation scenario (the baseline, or a stressor) on every guest at once:
//! each guest's thread measures each steady workload beside the others.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Barrier;

use hvbench_workloads::{Params, WorkloadInfo};
use serde_json::json;

use super::{is_net, IsolationPlan, Slot};
use crate::results::*;
use crate::scenario::common::Output;
use crate::scenario::measure::{
    calibrate, keep_load_until, measure, median, silence_bound, Measure, MeasureEnd, Measured,
};
use crate::scenario::Progress;

/// Runs one phase on every guest at once: the baseline (`stressor` None) or a stressor.
///
/// Per steady workload, every guest first calibrates (in the baseline; later phases reuse the
/// counts), then all start their measured repetitions together (a barrier), and a guest done
/// early keeps loading the host until the last is done: normal guests with unmeasured
/// repetitions, the stressed guest by holding the stress. So every guest is measured while
/// every other guest is busy, in the baseline and under each stressor alike.
pub(super) fn run_phase(
    slots: &mut [Slot],
    stressor: Option<&str>,
    plan: &IsolationPlan,
    out: &Output,
    progress: &dyn Progress,
    lost: &[Option<MeasureEnd>],
) -> Vec<IsolationGuest> {
    let n = slots.len();
    let phase = Phase {
        stressor,
        plan,
        out,
        progress,
        barriers: plan.steady.iter().map(|_| Barrier::new(n)).collect(),
        done: plan.steady.iter().map(|_| AtomicUsize::new(0)).collect(),
        guests: n,
    };
    std::thread::scope(|s| {
        let handles: Vec<_> = slots
            .iter_mut()
            .enumerate()
            .map(|(i, slot)| {
                let phase = &phase;
                let lost = lost.get(i).cloned().flatten();
                s.spawn(move || {
                    let g = phase.guest(i, slot, lost);
                    progress.step();
                    g
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a guest thread panicked"))
            .collect()
    })
}

/// One phase, as every guest's thread sees it.
struct Phase<'a> {
    stressor: Option<&'a str>,
    plan: &'a IsolationPlan,
    out: &'a Output,
    progress: &'a dyn Progress,
    /// Per steady workload: where the guests start their repetitions together, and how many
    /// are done with them.
    barriers: Vec<Barrier>,
    done: Vec<AtomicUsize>,
    guests: usize,
}

/// What the stressed guest's stressor jobs get: the host peer of a net stressor and its
/// parameters, the scratch disk of the disk stressor.
struct StressSetup {
    params: Params,
    peer: Option<hvbench_workloads::net::peer::Peer>,
}

impl Phase<'_> {
    fn name(&self) -> &str {
        self.stressor.unwrap_or("baseline")
    }

    /// Guest `i`'s part of the phase: each steady workload, measured beside the others.
    fn guest(&self, i: usize, slot: &mut Slot, lost: Option<MeasureEnd>) -> IsolationGuest {
        let role = match (self.stressor, i) {
            (None, _) => "baseline",
            (Some(_), 0) => "stressed",
            _ => "normal",
        };
        let mut g = IsolationGuest {
            label: slot.label.clone(),
            role: role.into(),
            outcome: Outcome::ok(),
            medians: BTreeMap::new(),
            samples: BTreeMap::new(),
            stress_extras: BTreeMap::new(),
            stress_labels: BTreeMap::new(),
        };
        let stressed = self.stressor.filter(|_| i == 0);
        let mut end = MeasureEnd::Done;
        if slot.guest.is_none() {
            end = lost.unwrap_or_else(|| {
                MeasureEnd::Lost(Failure::new(FailureKind::DidNotStart, "no guest"))
            });
        }
        let setup = match (&end, stressed) {
            (MeasureEnd::Done, Some(st)) => self.stress_setup(st, slot),
            _ => Ok(StressSetup {
                params: Params::new(),
                peer: None,
            }),
        };
        let setup = setup.unwrap_or_else(|why| {
            end = MeasureEnd::Error(Outcome::skipped(why));
            StressSetup {
                params: Params::new(),
                peer: None,
            }
        });
        let mut stress_extras: Vec<BTreeMap<String, f64>> = Vec::new();
        for (k, w) in self.plan.steady.iter().enumerate() {
            let acc = self.workload(k, w, slot, stressed, &setup.params, &mut end);
            stress_extras.extend(acc.extras.iter().cloned());
            if let Some(last) = acc.labels.last().filter(|_| stressed.is_some()) {
                g.stress_labels.extend(last.clone());
            }
            if let Some(md) = median(&acc.values) {
                g.medians.insert(w.name.into(), md);
            }
            g.samples.insert(w.name.into(), acc.values);
            if let MeasureEnd::Lost(f) = &end {
                let reason = f.describe();
                if slot.guest.take().is_some() {
                    self.progress.note(&format!("{}: {reason}", slot.label));
                    self.out.log(json!({"type": "guest_lost", "phase": self.name(), "label": slot.label, "reason": reason}));
                }
            }
        }
        if let Some(p) = setup.peer {
            let stats = p.stop();
            self.out.log(
                json!({"type": "peer", "phase": self.name(), "label": slot.label,
                "connections": stats.connections, "bytes": stats.bytes,
                "errors": stats.errors, "last_error": stats.last_error,
                "connect_failures": stats.connect_failures,
                "closed_before_header": stats.closed_before_header}),
            );
        }
        if stressed.is_some() {
            g.stress_extras = stress_medians(&stress_extras);
        }
        g.outcome = end.outcome(!g.medians.is_empty());
        g
    }

    /// The stressed guest's set-up for stressor `st`: a net stressor's host peer serves its
    /// stream for all of its jobs in this phase (each run of the stressor is one connection);
    /// the disk stressor writes to the guest's own scratch disk when it has one.
    fn stress_setup(&self, st: &str, slot: &Slot) -> Result<StressSetup, String> {
        let mut setup = StressSetup {
            params: Params::new(),
            peer: None,
        };
        if is_net(st) {
            let ep = slot.guest.as_ref().and_then(|g| g.attached().net.as_ref());
            let ep = ep.ok_or_else(|| "the stressed guest has no network".to_string())?;
            let p = crate::devices::start_peer(ep)
                .map_err(|e| format!("cannot start the host side of stress.{st}: {e}"))?;
            setup
                .params
                .insert("listen".into(), json!(ep.listen.clone()));
            setup.peer = Some(p);
        }
        let disk = slot.guest.as_ref().and_then(|g| g.attached().disk.clone());
        if let ("disk", Some(path)) = (st, disk) {
            setup.params.insert("device".into(), json!(path));
            setup.params.insert("allow_write".into(), json!(true));
        }
        Ok(setup)
    }

    /// Steady workload `k` (`w`) in one guest: calibrate the plain workload (the baseline's
    /// job), start together with the others, then keep the load on until all are done.
    fn workload(
        &self,
        k: usize,
        w: &'static WorkloadInfo,
        slot: &mut Slot,
        stressed: Option<&str>,
        stress_params: &Params,
        end: &mut MeasureEnd,
    ) -> Measured {
        let mut params = stress_params.clone();
        let (job_workload, factor) = match stressed {
            Some(st) => {
                params.insert("steady".into(), json!(w.name));
                (format!("stress.{st}"), 3)
            }
            None => (w.name.to_string(), 1),
        };
        let plan = self.plan;
        let timeout = plan
            .timeout
            .unwrap_or_else(|| silence_bound(w, &plan.settings))
            * factor;
        let mut m = Measure {
            workload: w,
            job_workload,
            params,
            iterations: slot.iterations.get(w.name).copied(),
            target_s: plan.settings.target_s,
            warmup: 0,
            reps: plan.settings.reps,
            timeout,
        };
        let mut acc = Measured::default();
        if let (MeasureEnd::Done, Some(guest)) = (&*end, slot.guest.as_mut()) {
            let mut plain = m.clone();
            plain.job_workload = w.name.into();
            plain.params = Params::new();
            plain.timeout = timeout / factor;
            match calibrate(guest, &plain, &mut acc) {
                Ok(iters) => {
                    slot.iterations.entry(w.name.to_string()).or_insert(iters);
                    m.iterations = Some(iters);
                }
                Err(e) => *end = e,
            }
        }
        self.barriers[k].wait();
        if let (MeasureEnd::Done, Some(guest)) = (&*end, slot.guest.as_mut()) {
            *end = measure(guest, &m, &mut acc, |v, warm| {
                if !warm {
                    self.out.log(json!({"type": "sample", "phase": self.name(), "label": slot.label, "workload": w.name, "value": v}));
                }
            });
        }
        self.done[k].fetch_add(1, Ordering::SeqCst);
        if let (MeasureEnd::Done, Some(guest)) = (&*end, slot.guest.as_mut()) {
            let hold = match stressed {
                Some(st) => Measure {
                    workload: hvbench_workloads::find(&format!("stress.{st}")).unwrap_or(w),
                    job_workload: format!("stress.{st}"),
                    params: stress_params.clone(),
                    iterations: Some(250),
                    target_s: 0.25,
                    warmup: 0,
                    reps: 1,
                    timeout,
                },
                None => m,
            };
            keep_load_until(guest, &hold, &self.done[k], self.guests);
        }
        acc
    }
}

/// The medians of the stressor's own extras over its repetitions.
fn stress_medians(extras: &[BTreeMap<String, f64>]) -> BTreeMap<String, f64> {
    let keys = [
        "stress_ops",
        "stress_restarts",
        "stress_mem_mib",
        "stress_workers",
        "stress_net_bytes",
        "stress_net_gbit_s",
    ];
    let mut out = BTreeMap::new();
    for key in keys {
        let v: Vec<f64> = extras.iter().filter_map(|e| e.get(key).copied()).collect();
        if let Some(md) = median(&v) {
            out.insert(key.into(), md);
        }
    }
    out
}
