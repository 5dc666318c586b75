//! The classes of events an explained workload is priced by: the counts of each per unit of
//! work (native, or the guest's own), and what one event of it costs extra in a backend.

use super::cost::{cpu_cost, exec_cost, Cost, CostSource, Input};
use crate::results::{CountedRecord, RunDocument};

/// Bytes of one `fs.sendfile` operation (`hvbench_workloads::app::files`).
const SENDFILE_BYTES: f64 = 32768.0;

/// A class of events: its name, the counts that make it, how it is priced.
pub(super) struct Class {
    pub name: String,
    /// Per counted repetition: events (or user seconds) per unit of work.
    pub per_unit: Input,
    pub cost: Cost,
    /// Counts are seconds (the CPU term): the cost is per ns of them.
    pub seconds: bool,
    /// The counts are the guest's own.
    pub from_guest: bool,
}

/// Per-unit counts of `keys` summed, one value per counted repetition of their kind (the clock
/// reads come from repetitions of their own, everything else from the others); `None` when a
/// repetition of that kind lacks every key (not counted).
pub(super) fn per_unit(counted: &CountedRecord, keys: &[&str]) -> Option<Input> {
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
pub(super) fn classes(
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
    // Counted by the load generator, on the host. Priced by net.rr's latency, not by the host
    // CPU its op takes: tried on 2026-12-05, the CPU price fitted gVisor better and UML worse
    // once UML's web levels were measured right (docs/explain.md).
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
