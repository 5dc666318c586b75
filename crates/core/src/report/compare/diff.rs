//! The fields that differ between two documents: versions, host, settings and each backend's
//! configuration, walked as JSON, with per-run work directories masked.

use serde_json::Value;

use super::Difference;
use crate::results::{GuestRecord, RunDocument};

/// Fields that differ between the documents: versions, host, settings, then backends.
pub fn differences(a: &RunDocument, b: &RunDocument) -> Vec<Difference> {
    let mut out = Vec::new();
    let mut field = |name: &str, x: Value, y: Value| diff_values(name, &x, &y, &mut out);
    field(
        "hvbench_version",
        a.hvbench_version.clone().into(),
        b.hvbench_version.clone().into(),
    );
    field(
        "git_revision",
        a.git_revision.clone().into(),
        b.git_revision.clone().into(),
    );
    field(
        "agent.sha256",
        a.agent.sha256.clone().into(),
        b.agent.sha256.clone().into(),
    );
    field(
        "agent.version",
        a.agent.version.clone().into(),
        b.agent.version.clone().into(),
    );
    field(
        "scenario",
        a.scenario.clone().into(),
        b.scenario.clone().into(),
    );
    field("host", json(&a.host), json(&b.host));
    field("settings", json(&a.settings), json(&b.settings));
    let mut names: Vec<&str> = a.backends.iter().map(|x| x.name.as_str()).collect();
    for x in &b.backends {
        if !names.contains(&x.name.as_str()) {
            names.push(&x.name);
        }
    }
    for name in names {
        let prefix = format!("backends.{name}");
        let ba = a.backends.iter().find(|x| x.name == name);
        let bb = b.backends.iter().find(|x| x.name == name);
        let (ba, bb) = match (ba, bb) {
            (Some(x), Some(y)) => (x, y),
            (x, y) => {
                let show = |r: Option<&crate::results::BackendRecord>| {
                    r.map(|_| "considered").unwrap_or("(not in this run)")
                };
                out.push(Difference {
                    field: prefix,
                    a: show(x).into(),
                    b: show(y).into(),
                });
                continue;
            }
        };
        diff_values(
            &format!("{prefix}.technique"),
            &ba.technique.clone().into(),
            &bb.technique.clone().into(),
            &mut out,
        );
        diff_values(
            &format!("{prefix}.availability"),
            &json(&ba.availability),
            &json(&bb.availability),
            &mut out,
        );
        diff_values(
            &format!("{prefix}.launches"),
            &ba.guests.len().into(),
            &bb.guests.len().into(),
            &mut out,
        );
        let (ga, gb) = (representative(&ba.guests), representative(&bb.guests));
        diff_values(
            &format!("{prefix}.guest"),
            &ga.map(guest_config).unwrap_or(Value::Null),
            &gb.map(guest_config).unwrap_or(Value::Null),
            &mut out,
        );
    }
    out
}

/// The guest whose configuration stands for the backend: the first that said hello, else the
/// first launched.
fn representative(guests: &[GuestRecord]) -> Option<&GuestRecord> {
    guests
        .iter()
        .find(|g| g.boot_s.is_some())
        .or_else(|| guests.first())
}

/// What shapes a guest's numbers: its configuration and what it saw of itself, without the
/// measurements (boot time) and with per-run work directories masked.
fn guest_config(g: &GuestRecord) -> Value {
    let mut config = json(&g.config);
    if let Some(Value::Array(args)) = config.get_mut("command_line") {
        for arg in args.iter_mut() {
            if let Value::String(s) = arg {
                *s = mask_work_dirs(s);
            }
        }
    }
    serde_json::json!({
        "config": config,
        "kernel": g.kernel,
        "cpus": g.cpus,
        "mem_total_kib": g.mem_total_kib,
        "clocksource": g.clocksource,
        "cpu_accounting": g.cpu_accounting,
    })
}

/// Replaces the process id and counter of hvbench work directories (`hvbench-<pid>-<n>-`),
/// which differ in every run and explain nothing.
fn mask_work_dirs(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find("hvbench-") {
        out.push_str(&rest[..at + "hvbench-".len()]);
        rest = &rest[at + "hvbench-".len()..];
        let digits = |t: &str| t.bytes().take_while(u8::is_ascii_digit).count();
        let pid = digits(rest);
        if pid > 0 && rest[pid..].starts_with('-') {
            let n = digits(&rest[pid + 1..]);
            if n > 0 && rest[pid + 1 + n..].starts_with('-') {
                out.push_str("<pid>-<n>");
                rest = &rest[pid + 1 + n..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// Walks two JSON values together and records the leaves that differ.
fn diff_values(field: &str, a: &Value, b: &Value, out: &mut Vec<Difference>) {
    if a == b {
        return;
    }
    if let (Value::Object(x), Value::Object(y)) = (a, b) {
        let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
        keys.sort();
        keys.dedup();
        for k in keys {
            let null = Value::Null;
            diff_values(
                &format!("{field}.{k}"),
                x.get(k).unwrap_or(&null),
                y.get(k).unwrap_or(&null),
                out,
            );
        }
        return;
    }
    out.push(Difference {
        field: field.to_string(),
        a: show(a),
        b: show(b),
    });
}

fn show(v: &Value) -> String {
    match v {
        Value::Null => "(none)".into(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::String(s) if s.is_empty() || s.contains(char::is_whitespace) => {
                    format!("'{s}'")
                }
                other => show(other),
            })
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_directories_are_masked_and_nothing_else() {
        assert_eq!(
            mask_work_dirs("path=/tmp/hvbench-9468-1-run/qemu-tcg-0/agent.sock,server=on"),
            "path=/tmp/hvbench-<pid>-<n>-run/qemu-tcg-0/agent.sock,server=on"
        );
        assert_eq!(mask_work_dirs("hvbench-agent"), "hvbench-agent");
        assert_eq!(mask_work_dirs("/x/hvbench-12-x"), "/x/hvbench-12-x");
    }

    #[test]
    fn nested_fields_are_reported_by_path() {
        let mut out = Vec::new();
        diff_values(
            "host",
            &serde_json::json!({"kernel": "6.1", "mitigations": {"mds": "x", "l1tf": "y"}}),
            &serde_json::json!({"kernel": "6.1", "mitigations": {"mds": "z"}}),
            &mut out,
        );
        assert_eq!(
            out,
            vec![
                Difference {
                    field: "host.mitigations.l1tf".into(),
                    a: "y".into(),
                    b: "(none)".into()
                },
                Difference {
                    field: "host.mitigations.mds".into(),
                    a: "x".into(),
                    b: "z".into()
                },
            ]
        );
    }
}
