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

mod cost;

use hvbench_stats::Rng;
use hvbench_workloads::{Kind, Metric, WorkloadInfo};

use crate::results::{CountedRecord, ExplainRecord, ExplainTerm, Interval, RunDocument, RunRecord};
use cost::{cpu_cost, exec_cost, Cost, CostSource, Input};

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

/// Bytes of one `fs.sendfile` operation (`hvbench_workloads::app::files`).
const SENDFILE_BYTES: f64 = 32768.0;

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

/// A class of events: its name, the counts that make it, how it is priced.
struct Class {
    name: String,
    /// Per counted repetition: events (or user seconds) per unit of work.
    per_unit: Input,
    cost: Cost,
    /// Counts are seconds (the CPU term): the cost is per ns of them.
    seconds: bool,
    /// The counts are the guest's own.
    from_guest: bool,
}

/// Per-unit counts of `keys` summed, one value per counted repetition of their kind (the clock
/// reads come from repetitions of their own, everything else from the others); `None` when a
/// repetition of that kind lacks every key (not counted).
fn per_unit(counted: &CountedRecord, keys: &[&str]) -> Option<Input> {
    let clocks = keys.iter().any(|k| k.starts_with("clock_reads"));
    let mut out = Vec::new();
    for rep in counted
        .reps
        .iter()
        .filter(|r| r.work > 0.0 && r.clock_pass == clocks)
    {
        let mut sum = 0.0;
        let mut any = false;
        for k in keys {
            if let Some(v) = rep.counts.get(*k) {
                sum += v;
                any = true;
            }
        }
        if !any {
            return None;
        }
        out.push(sum / rep.work);
    }
    (!out.is_empty()).then_some(Input(out))
}

/// Per-unit count of `key` less that of `less`, never below zero, one value per counted
/// repetition; `None` when `key` was not counted.
fn per_unit_less(counted: &CountedRecord, key: &str, less: &str) -> Option<Input> {
    let a = per_unit(counted, &[key])?;
    let b = per_unit(counted, &[less]).unwrap_or(Input(vec![0.0; a.0.len()]));
    Some(Input(
        a.0.iter()
            .zip(b.0.iter().chain(std::iter::repeat(&0.0)))
            .map(|(x, y)| (x - y).max(0.0))
            .collect(),
    ))
}

/// The classes of `counted` priced for `backend` from `costs`; what cannot be priced or was not
/// counted goes to `missing`.
///
/// With `guest` (the backend's own counted repetitions), a class's counts come from the guest
/// wherever the guest counted them, the native ones elsewhere; user time stays native (the CPU
/// factor turns native user time into the guest's).
fn classes(
    counted: &CountedRecord,
    guest: Option<&CountedRecord>,
    costs: &RunDocument,
    backend: &str,
    missing: &mut Vec<String>,
) -> Vec<Class> {
    let getppid = CostSource::find(costs, backend, "sys.getppid", 1.0);
    let pipe = CostSource::find(costs, backend, "sys.pipe", 2.0);
    // A call as applications make them, to take a micro workload's own calls out of its price.
    let call = pipe.clone().or(getppid.clone());
    let counts = |keys: &[&str]| -> Option<(Input, bool)> {
        let from_guest = (keys != ["user_s"])
            .then(|| guest.and_then(|g| per_unit(g, keys)))
            .flatten();
        match from_guest {
            Some(p) => Some((p, true)),
            None => per_unit(counted, keys).map(|p| (p, false)),
        }
    };
    let mut out = Vec::new();
    let mut add = |name: &str,
                   keys: &[&str],
                   cost: Option<Cost>,
                   seconds: bool,
                   out: &mut Vec<Class>| {
        match (counts(keys), cost) {
            (Some((p, from_guest)), Some(c)) => out.push(Class {
                name: name.into(),
                per_unit: p,
                cost: c,
                seconds,
                from_guest,
            }),
            (None, _) => {
                let why = keys
                    .iter()
                    .find_map(|k| counted.not_counted.get(*k))
                    .or_else(|| counted.not_counted.get("all"))
                    .cloned()
                    .unwrap_or_else(|| "not counted".into());
                missing.push(format!("{name}: not counted ({why})"));
            }
            (Some(_), None) => missing.push(format!(
                "{name}: no cost for {backend} (its micro workload did not run on it and native)"
            )),
        }
    };
    let classed = per_unit(counted, &["syscalls.file"]).is_some();
    if classed {
        add(
            "syscalls.file",
            &["syscalls.file"],
            call.clone().map(Cost::Micro),
            false,
            &mut out,
        );
        // Socket calls move data between processes through the kernel as a pipe's do.
        add(
            "syscalls.net",
            &["syscalls.net"],
            call.clone().map(Cost::Micro),
            false,
            &mut out,
        );
        // Path lookups (documents since they were counted apart from the file calls): an
        // openat and a newfstatat per fs.open operation, less its close at the pipe price;
        // where fs.open did not run, priced as the other file calls.
        let mut open = None;
        if per_unit(counted, &["syscalls.path"]).is_some() {
            let of = CostSource::find(costs, backend, "fs.open", 2.0);
            open = Cost::less_calls(of, &call, 0.5, true);
            add(
                "syscalls.path",
                &["syscalls.path"],
                open.clone().or_else(|| call.clone().map(Cost::Micro)),
                false,
                &mut out,
            );
        }
        // Calls that create or remove a name (documents since they were counted apart from
        // the lookups): an openat with O_CREAT and an unlinkat per fs.create operation, less its
        // close at the pipe price; without fs.create, as a lookup, which each of them makes.
        if per_unit(counted, &["syscalls.create"]).is_some() {
            let of = CostSource::find(costs, backend, "fs.create", 2.0);
            add(
                "syscalls.create",
                &["syscalls.create"],
                Cost::less_calls(of, &call, 0.5, true)
                    .or(open)
                    .or_else(|| call.clone().map(Cost::Micro)),
                false,
                &mut out,
            );
        }
        // A file sent into a socket (documents since sendfile was counted apart): fs.sendfile
        // less its 32 KiB at net.stream.tx's per-byte price (a server's response bytes are
        // priced by that class already; its loopback reader's receive stays in the price).
        // Without fs.sendfile, as a file call.
        if per_unit(counted, &["syscalls.sendfile"]).is_some() {
            let of = CostSource::find(costs, backend, "fs.sendfile", 1.0);
            let bytes = CostSource::find(costs, backend, "net.stream.tx", 1.0);
            let cost = match bytes {
                Some(b) => Cost::less_calls(of, &Some(b), SENDFILE_BYTES, true),
                None => of.map(Cost::Micro),
            };
            add(
                "syscalls.sendfile",
                &["syscalls.sendfile"],
                cost.or_else(|| call.clone().map(Cost::Micro)),
                false,
                &mut out,
            );
        }
        for class in ["mm", "sched", "process", "other"] {
            let key = format!("syscalls.{class}");
            add(
                &key,
                &[key.as_str()],
                getppid.clone().map(Cost::Micro),
                false,
                &mut out,
            );
        }
    } else {
        add(
            "syscalls",
            &["syscalls"],
            getppid.clone().map(Cost::Micro),
            false,
            &mut out,
        );
    }
    add(
        "page_faults",
        &["faults_minor"],
        CostSource::find(costs, backend, "mm.pagefault", 1.0).map(Cost::Micro),
        false,
        &mut out,
    );
    // A switch as applications make it, between a client and its server over a Unix socket
    // (documents before that micro workload existed: over pipes).
    let switch = CostSource::find(costs, backend, "sched.ctxswitch.unix", 1.0)
        .or_else(|| CostSource::find(costs, backend, "sched.ctxswitch.same", 1.0));
    add(
        "ctx_switches",
        &["ctx_switches"],
        switch.zip(pipe.clone()).map(|(of, less)| Cost::Less {
            of,
            less,
            times: 2.0,
            floor_zero: true,
        }),
        false,
        &mut out,
    );
    // Durable writes (documents since they were counted apart): an fsync waits for its
    // journal commit and the disk's flush, priced by the same on the applications' file
    // system. The writes it makes durable are its own; other writes go back to the disk in
    // the background, overlapped with the work, and are not priced, so that only the reads
    // that miss the cache are left to the disk class. (Older documents: every I/O of the
    // device priced as a random read.)
    let synced = per_unit(counted, &["syscalls.sync"]).is_some();
    if synced {
        add(
            "syscalls.sync",
            &["syscalls.sync"],
            Cost::less_calls(
                CostSource::find(costs, backend, "fs.fsync", 1.0),
                &call,
                3.0,
                false,
            ),
            false,
            &mut out,
        );
    }
    let (disk_class, disk_keys): (&str, &[&str]) = if synced {
        ("disk_reads", &["disk_reads"])
    } else {
        ("disk_ios", &["disk_reads", "disk_writes", "disk_flushes"])
    };
    if per_unit(counted, disk_keys).is_some_and(|p| p.point() > 0.0) {
        add(
            disk_class,
            disk_keys,
            CostSource::find(costs, backend, "io.randread", 1.0).map(Cost::Micro),
            false,
            &mut out,
        );
    }
    // A server's requests (app.web, whose unit is a request answered): the response bytes
    // priced by a bulk send to the host, each request's round trip by a one-byte one less its
    // send and receive calls, which the server's own calls price already (never below zero).
    // Counted by the load generator, on the host.
    if per_unit(counted, &["net_round_trips"]).is_some() {
        add(
            "net_tx_bytes",
            &["net_tx_bytes"],
            CostSource::find(costs, backend, "net.stream.tx", 1.0).map(Cost::Micro),
            false,
            &mut out,
        );
        add(
            "net_round_trips",
            &["net_round_trips"],
            Cost::less_calls(
                CostSource::find(costs, backend, "net.rr", 1.0),
                &call,
                2.0,
                true,
            ),
            false,
            &mut out,
        );
    }
    // Clock reads (documents since they were counted, natively with uprobes): nothing but a
    // vDSO read where the guest has a vDSO, a trap where it has none (User-Mode Linux); priced
    // by time.clock_gettime, a CLOCK_MONOTONIC read through the C library.
    if per_unit(counted, &["clock_reads"]).is_some()
        || counted.not_counted.contains_key("clock_reads")
    {
        add(
            "clock_reads",
            &["clock_reads"],
            CostSource::find(costs, backend, "time.clock_gettime", 1.0).map(Cost::Micro),
            false,
            &mut out,
        );
    }
    add(
        "cpu_user",
        &["user_s"],
        cpu_cost(costs, backend),
        true,
        &mut out,
    );
    out.extend(process_classes(counted, guest, costs, backend, missing));
    out
}

/// Process creation (documents since fork and exec were counted apart): an execve priced by
/// [`exec_cost`], a fork without an exec as proc.fork's fork + exit + wait. Their page faults
/// and switches beyond the small programs of the micro workloads are counted, and priced, in
/// their own classes. Counts from the guest where it counted execs itself.
fn process_classes(
    counted: &CountedRecord,
    guest: Option<&CountedRecord>,
    costs: &RunDocument,
    backend: &str,
    missing: &mut Vec<String>,
) -> Vec<Class> {
    let mut out = Vec::new();
    if per_unit(counted, &["syscalls.exec"]).is_none() {
        return out;
    }
    let (source, from_guest) = match guest {
        Some(g) if per_unit(g, &["syscalls.exec"]).is_some() => (g, true),
        _ => (counted, false),
    };
    let execs = per_unit(source, &["syscalls.exec"]);
    let forks_alone = per_unit_less(source, "syscalls.fork", "syscalls.exec");
    for (name, input, workload) in [
        ("syscalls.exec", execs, "proc.exec"),
        ("syscalls.fork", forks_alone, "proc.fork"),
    ] {
        let cost = match name {
            "syscalls.exec" => exec_cost(costs, backend),
            _ => CostSource::find(costs, backend, workload, 1.0).map(Cost::Micro),
        };
        match (input, cost) {
            (Some(p), Some(cost)) => out.push(Class {
                name: name.into(),
                per_unit: p,
                cost,
                seconds: false,
                from_guest,
            }),
            (None, _) => missing.push(format!("{name}: not counted")),
            (Some(_), None) => missing.push(format!(
                "{name}: no cost for {backend} ({workload} did not run on it and native)"
            )),
        }
    }
    out
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
