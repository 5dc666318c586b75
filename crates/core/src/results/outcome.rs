//! Typed outcomes: what became of one measurement, one guest or one boot.
//!
//! A measurement is `ok`, `skipped` (cannot run there, with why) or `failed` with a
//! [`FailureKind`] (did not start, did not return, refused, bad output, failed), its reason and
//! the guest's console tail as separate fields. Renderers match on these types, never on the
//! wording of a reason: a guest that failed to start is "did not start", never "DNR".
//!
//! In the document an [`Outcome`] is flattened into its record: `status` (`ok`, `skipped`,
//! `failed`), `kind` (failed only), `reason` and `console_tail`. Documents of schema version 1
//! kept the kind and the console tail inside `reason` (`did not return (DNR): …; console
//! tail:\n…`); [`upgrade_v1`] reads them into these fields.

use serde::{Deserialize, Serialize};

/// What became of one measurement (one workload on one backend, or one guest's phase).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// Measured; `note` says what the reader should know (stopped early: fewer repetitions).
    Ok {
        #[serde(default, rename = "reason", skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// Cannot run there, or was not run (stopped by the user): no number, never a zero.
    Skipped { reason: String },
    /// Started and failed, or the guest failed.
    Failed(Failure),
}

/// Why a measurement, a guest or a boot failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub kind: FailureKind,
    /// What happened, without the kind's words and without the console tail.
    pub reason: String,
    /// The guest's last console lines, when it printed any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console_tail: Option<String>,
}

/// The ways a measurement or a guest fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The guest never said hello (launch failed, no hello in time, exited during boot).
    DidNotStart,
    /// The guest was lost during a job: silent, exited or crashed, its channel closed (DNR).
    DidNotReturn,
    /// The guest's agent was refused (another version than hvbench's).
    Refused,
    /// The guest sent something the host could not use (an invalid message, a job without its
    /// calibration or sample).
    BadOutput,
    /// The agent reported that the workload ran and failed (a check, a tool's exit status).
    Failed,
}

impl FailureKind {
    /// The word for a table cell: `DNR`, `did not start`, `refused`, `bad output`, `failed`.
    pub fn label(self) -> &'static str {
        match self {
            FailureKind::DidNotStart => "did not start",
            FailureKind::DidNotReturn => "DNR",
            FailureKind::Refused => "refused",
            FailureKind::BadOutput => "bad output",
            FailureKind::Failed => "failed",
        }
    }

    /// The words that open a sentence about the failure: `did not return (DNR)`.
    pub fn describe(self) -> &'static str {
        match self {
            FailureKind::DidNotStart => "did not start",
            FailureKind::DidNotReturn => "did not return (DNR)",
            FailureKind::Refused => "refused",
            FailureKind::BadOutput => "bad output",
            FailureKind::Failed => "failed",
        }
    }
}

impl Failure {
    pub fn new(kind: FailureKind, reason: impl Into<String>) -> Failure {
        Failure {
            kind,
            reason: reason.into(),
            console_tail: None,
        }
    }

    /// The same failure with the console tail `tail`, unless it is blank.
    pub fn with_tail(mut self, tail: impl Into<String>) -> Failure {
        let tail = tail.into();
        self.console_tail = (!tail.trim().is_empty()).then_some(tail);
        self
    }

    /// The kind's words and the reason: `did not return (DNR): the guest went silent`.
    pub fn describe(&self) -> String {
        if self.reason.is_empty() {
            self.kind.describe().to_string()
        } else {
            format!("{}: {}", self.kind.describe(), self.reason)
        }
    }

    /// The first line of the reason.
    pub fn first_line(&self) -> &str {
        self.reason.lines().next().unwrap_or("")
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Default for Outcome {
    fn default() -> Outcome {
        Outcome::ok()
    }
}

impl Outcome {
    pub fn ok() -> Outcome {
        Outcome::Ok { note: None }
    }

    pub fn skipped(reason: impl Into<String>) -> Outcome {
        Outcome::Skipped {
            reason: reason.into(),
        }
    }

    pub fn failed(kind: FailureKind, reason: impl Into<String>) -> Outcome {
        Outcome::Failed(Failure::new(kind, reason))
    }

    pub fn is_ok(&self) -> bool {
        matches!(self, Outcome::Ok { .. })
    }

    pub fn is_skipped(&self) -> bool {
        matches!(self, Outcome::Skipped { .. })
    }

    pub fn is_failed(&self) -> bool {
        matches!(self, Outcome::Failed(_))
    }

    pub fn failure(&self) -> Option<&Failure> {
        match self {
            Outcome::Failed(f) => Some(f),
            _ => None,
        }
    }

    /// Whether the guest was lost during a job: did not return (DNR).
    pub fn did_not_return(&self) -> bool {
        self.failure()
            .is_some_and(|f| f.kind == FailureKind::DidNotReturn)
    }

    /// The note of a measured result, the reason of a skip or of a failure (without the
    /// failure's kind).
    pub fn reason(&self) -> Option<&str> {
        match self {
            Outcome::Ok { note } => note.as_deref(),
            Outcome::Skipped { reason } => Some(reason),
            Outcome::Failed(f) => Some(&f.reason),
        }
    }

    /// The reason as a sentence: a failure with its kind's words (`did not start: …`).
    pub fn describe(&self) -> Option<String> {
        match self {
            Outcome::Failed(f) => Some(f.describe()),
            other => other.reason().map(str::to_string),
        }
    }

    pub fn console_tail(&self) -> Option<&str> {
        self.failure().and_then(|f| f.console_tail.as_deref())
    }

    /// The word for a cell without a number: `skipped`, or the failure's label (`DNR`,
    /// `did not start`, ...); `-` for a measured result.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Ok { .. } => "-",
            Outcome::Skipped { .. } => "skipped",
            Outcome::Failed(f) => f.kind.label(),
        }
    }

    /// The word for the `status` column of the CSV export: `ok`, `skipped` or the failure's
    /// label.
    pub fn csv_status(&self) -> &'static str {
        match self {
            Outcome::Ok { .. } => "ok",
            other => other.label(),
        }
    }
}

// ----- reading documents of schema version 1 -----

use serde_json::Value;

/// The separator version 1 put between a reason and the console tail.
const V1_TAIL: &str = "; console tail:\n";

/// Rewrites a version-1 document's outcomes in place into this version's fields: every
/// `runs[]`, scalability `per_guest[]` and isolation guest (`status`/`reason`/`console_tail`),
/// and every `failure` string of a guest or a boot, which becomes a [`Failure`] object.
pub(crate) fn upgrade_v1(doc: &mut Value) {
    for r in array_mut(doc, "runs") {
        upgrade_status(r);
    }
    for b in array_mut(doc, "backends") {
        for g in array_mut(b, "guests") {
            upgrade_failure(g);
        }
    }
    let Some(data) = doc.get_mut("scenario_data") else {
        return;
    };
    for st in array_mut(data, "steps") {
        for g in array_mut(st, "per_guest") {
            upgrade_status(g);
        }
    }
    for g in array_mut(data, "baseline") {
        upgrade_status(g);
    }
    for row in array_mut(data, "rows") {
        for key in ["guests", "baseline"] {
            for g in array_mut(row, key) {
                upgrade_status(g);
            }
        }
        for b in array_mut(row, "boots") {
            upgrade_failure(b);
        }
    }
}

fn array_mut<'a>(v: &'a mut Value, key: &str) -> impl Iterator<Item = &'a mut Value> {
    v.get_mut(key)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
}

/// A version-1 reason split into its kind, the reason proper and the console tail. The kind was
/// only in the wording: `did not start` (or `no guest`: none could be started), `did not return
/// (DNR)`, or neither: the workload failed.
fn split_v1(text: &str, tail: Option<String>) -> Failure {
    let (reason, spliced) = match text.split_once(V1_TAIL) {
        Some((r, t)) => (r, Some(t.to_string())),
        None => (text, None),
    };
    let mut rest = reason;
    let mut kind = FailureKind::Failed;
    if let Some(r) = rest.strip_prefix("did not return (DNR)") {
        kind = FailureKind::DidNotReturn;
        rest = r.trim_start_matches(':').trim_start();
    }
    for start in ["did not start", "no guest"] {
        if let Some(r) = rest.strip_prefix(start) {
            kind = FailureKind::DidNotStart;
            rest = r.trim_start_matches(':').trim_start();
        }
    }
    Failure::new(kind, rest).with_tail(tail.or(spliced).unwrap_or_default())
}

fn upgrade_status(record: &mut Value) {
    // A record that already has a kind is of this version: left as it is.
    let Some(obj) = record.as_object_mut().filter(|o| !o.contains_key("kind")) else {
        return;
    };
    let status = obj.get("status").and_then(Value::as_str).unwrap_or("ok");
    let reason = obj
        .get("reason")
        .and_then(Value::as_str)
        .map(str::to_string);
    let tail = obj
        .get("console_tail")
        .and_then(Value::as_str)
        .map(str::to_string);
    let outcome = match status {
        "failed" => Outcome::Failed(split_v1(reason.as_deref().unwrap_or(""), tail)),
        "skipped" => Outcome::skipped(reason.unwrap_or_default()),
        _ => Outcome::Ok { note: reason },
    };
    for key in ["status", "reason", "console_tail", "kind"] {
        obj.remove(key);
    }
    if let Ok(Value::Object(fields)) = serde_json::to_value(outcome) {
        obj.extend(fields);
    }
}

/// A guest's or a boot's `failure` string: a guest that never said hello did not start, one
/// that did was lost later.
fn upgrade_failure(record: &mut Value) {
    let Some(obj) = record.as_object_mut() else {
        return;
    };
    let Some(text) = obj
        .get("failure")
        .and_then(Value::as_str)
        .map(str::to_string)
    else {
        return;
    };
    let mut f = split_v1(&text, None);
    if f.kind == FailureKind::Failed {
        let booted = obj.get("boot_s").is_some_and(|b| !b.is_null());
        f.kind = if booted {
            FailureKind::DidNotReturn
        } else {
            FailureKind::DidNotStart
        };
    }
    obj.insert(
        "failure".into(),
        serde_json::to_value(f).unwrap_or(Value::Null),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_outcome_is_flat_in_its_record() {
        let mut f = Failure::new(FailureKind::DidNotReturn, "the guest went silent");
        f.console_tail = Some("Kernel panic".into());
        let v = serde_json::to_value(Outcome::Failed(f.clone())).unwrap();
        assert_eq!(
            v,
            json!({"status": "failed", "kind": "did_not_return",
                   "reason": "the guest went silent", "console_tail": "Kernel panic"})
        );
        let back: Outcome = serde_json::from_value(v).unwrap();
        assert_eq!(back, Outcome::Failed(f));
        assert_eq!(
            serde_json::to_value(Outcome::ok()).unwrap(),
            json!({"status": "ok"})
        );
    }

    #[test]
    fn version_1_reasons_become_kinds_reasons_and_tails() {
        let f = split_v1(
            "did not return (DNR): no guest: the guest closed its channel; console tail:\nEOF",
            None,
        );
        assert_eq!(f.kind, FailureKind::DidNotStart);
        assert_eq!(f.reason, "the guest closed its channel");
        assert_eq!(f.console_tail.as_deref(), Some("EOF"));
        let f = split_v1(
            "did not return (DNR): no sample within 30 s",
            Some("x".into()),
        );
        assert_eq!(f.kind, FailureKind::DidNotReturn);
        assert_eq!(f.reason, "no sample within 30 s");
        assert_eq!(f.console_tail.as_deref(), Some("x"));
        assert_eq!(
            split_v1("fio exited with status 1", None).kind,
            FailureKind::Failed
        );
    }

    #[test]
    fn a_guest_that_never_said_hello_did_not_start() {
        let mut g = json!({"boot_s": null, "failure": "no hello within 60 s; console tail:\nx"});
        upgrade_failure(&mut g);
        assert_eq!(
            g["failure"],
            json!({"kind": "did_not_start", "reason": "no hello within 60 s", "console_tail": "x"})
        );
        let mut g = json!({"boot_s": 0.4, "failure": "the guest went silent"});
        upgrade_failure(&mut g);
        assert_eq!(g["failure"]["kind"], "did_not_return");
    }

    #[test]
    fn labels_tell_a_guest_that_did_not_start_from_one_that_did_not_return() {
        assert_eq!(
            Outcome::failed(FailureKind::DidNotReturn, "x").label(),
            "DNR"
        );
        assert_eq!(
            Outcome::failed(FailureKind::DidNotStart, "x").label(),
            "did not start"
        );
        assert_eq!(Outcome::skipped("x").label(), "skipped");
        assert_eq!(Outcome::ok().csv_status(), "ok");
    }
}
