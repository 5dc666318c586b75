//! The probe: which UML kernel boots on this host. Every candidate boots a small guest once,
//! the newest that says hello is chosen, and each other's failure is said with its cause.

use std::path::Path;
use std::time::{Duration, Instant};

use super::{diagnose, kernel, Uml, UmlKernel, INSTALLED_UML, PROBE_TIMEOUT, UML_BINARY};
use crate::agent::AgentBinary;
use crate::backends::Availability;
use crate::guest::ProbeBootError;
use crate::image::{self, ModuleSet};
use crate::launch::host_tool;

/// What the probe found: the verdict and the kernel it chose.
#[derive(Debug, Clone)]
pub(super) struct Probed {
    pub(super) availability: Availability,
    pub(super) kernel: Option<UmlKernel>,
}

/// Boots every candidate kernel once and chooses the newest that boots; says why each other
/// did not.
pub(super) fn probe_candidates(agent: &AgentBinary, explicit: Option<&Path>) -> Probed {
    let found = kernel::candidates(explicit);
    if found.is_empty() {
        return Probed {
            availability: Availability::Unavailable {
                reason: format!("no UML kernel: neither {INSTALLED_UML} nor {UML_BINARY} on PATH"),
                hint: kernel::UML_HINT.into(),
            },
            kernel: None,
        };
    }
    if let Err(e) = image::build_image(agent, &ModuleSet::none()) {
        return Probed {
            availability: Availability::Unavailable {
                reason: e.to_string(),
                hint: "cargo build --release --workspace".into(),
            },
            kernel: None,
        };
    }
    let mut booted: Vec<(UmlKernel, Duration)> = Vec::new();
    let mut failed: Vec<(String, String)> = Vec::new();
    for binary in found {
        let k = match UmlKernel::read(&binary) {
            Ok(k) => k,
            Err(Availability::Unavailable { reason, hint }) => {
                failed.push((reason, hint));
                continue;
            }
            Err(Availability::Available { .. }) => continue,
        };
        match probe_boot(agent, &k) {
            Ok(t) => booted.push((k, t)),
            Err(why) => failed.push(why),
        }
    }
    let others: Vec<String> = failed.iter().map(|(r, _)| r.clone()).collect();
    let Some((chosen, boot)) = booted
        .iter()
        .max_by(|a, b| compare_releases(&a.0.release, &b.0.release))
        .cloned()
    else {
        let hint = failed
            .first()
            .map(|(_, h)| h.clone())
            .unwrap_or_else(|| kernel::UML_HINT.into());
        return Probed {
            availability: Availability::Unavailable {
                reason: others.join("; "),
                hint,
            },
            kernel: None,
        };
    };
    let mut detail = format!(
        "linux.uml {} at {} ({}), a probe guest said hello in {} ms",
        chosen.release,
        chosen.binary.display(),
        if chosen.nr_cpus == 1 {
            "uniprocessor".to_string()
        } else {
            format!("CONFIG_NR_CPUS={}, run with 1", chosen.nr_cpus)
        },
        boot.as_millis()
    );
    for (k, _) in booted.iter().filter(|(k, _)| k.binary != chosen.binary) {
        detail.push_str(&format!(
            "; {} ({}) boots too",
            k.binary.display(),
            k.release
        ));
    }
    for r in &others {
        detail.push_str(&format!("; not chosen: {r}"));
    }
    Probed {
        availability: Availability::Available { detail },
        kernel: Some(chosen),
    }
}

/// Orders two releases (`7.2.7` > `6.1.176`) by their numeric parts.
fn compare_releases(a: &str, b: &str) -> std::cmp::Ordering {
    let nums = |s: &str| -> Vec<u64> {
        s.split(|c: char| !c.is_ascii_digit())
            .filter_map(|p| p.parse().ok())
            .collect()
    };
    nums(a).cmp(&nums(b))
}

/// Boots one small guest on `kernel` and waits for its hello; the guest is killed on every
/// path. Errs with the reason (the known cause read from the console when there is one, else
/// UML's last words) and its fix.
fn probe_boot(agent: &AgentBinary, kernel: &UmlKernel) -> Result<Duration, (String, String)> {
    let t0 = Instant::now();
    let (e, workdir) =
        match crate::guest::probe_boot(&Uml::on(&kernel.binary), agent, 128, PROBE_TIMEOUT) {
            Ok(boot) => return Ok(boot),
            Err(ProbeBootError::NoWorkdir(e)) => {
                return Err((
                    format!("cannot create a work directory: {e}"),
                    "set TMPDIR to a writable directory".to_string(),
                ))
            }
            Err(ProbeBootError::Failed { error, workdir }) => (error, workdir),
        };
    let text = e.to_string();
    let first = text.lines().next().unwrap_or_default();
    let log = std::fs::read(workdir.path().join("console.log")).unwrap_or_default();
    let log = String::from_utf8_lossy(&log);
    let prefix = format!(
        "{} {} does not boot here: {} after {} ms",
        kernel.binary.display(),
        kernel.release,
        first.trim(),
        t0.elapsed().as_millis()
    );
    let console = format!("{log}\n{text}\n{}", e.console_tail().unwrap_or_default());
    match diagnose::diagnose(&console, &kernel.release, diagnose::host_xstate_bytes()) {
        Some(cause) => Err((format!("{prefix}; cause: {}", cause.reason), cause.fix)),
        None => {
            let said = host_tool::last_lines(&log, 3);
            Err((
                if said.is_empty() {
                    prefix
                } else {
                    format!("{prefix}; it said: {}", said.replace('\n', " | "))
                },
                "UML needs ptrace of its own \
                 children and an executable tmpfs (/dev/shm)"
                    .into(),
            ))
        }
    }
}
