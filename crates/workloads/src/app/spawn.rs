//! `proc.spawn`: a program of the applications' root file system started and reaped, as a
//! build's make and shell start their compilers. One operation forks the agent, chroots the
//! child into the root, execs `/usr/bin/true` (dynamically linked: the loader maps and relocates
//! libc, as every program of a build does) and waits for it; it must exit with status 0.
//!
//! `proc.exec` starts a tiny static program that maps nothing: in a sandbox whose loading of a
//! dynamic program costs more than its fork and exec (gVisor maps each library through its own
//! memory manager), it prices an application's execs low. `explain` prices execs with this
//! workload when it ran, less the page faults of its loading (`faults_per_op`, counted natively
//! from the children's usage), which the application's own fault count prices already.

use std::process::Stdio;
use std::time::Instant;

use crate::{Outcome, Params, WorkloadError};

/// The program started: coreutils' `true`, in every Debian root file system.
const PROGRAM: &str = "/usr/bin/true";

pub fn run(params: &Params, iterations: u64) -> Result<Outcome, WorkloadError> {
    let iterations = crate::cpu::check_iterations(iterations)?;
    super::with_app(params, |app| {
        let once = || -> Result<(), WorkloadError> {
            let status = app
                .root
                .command(PROGRAM, None)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map_err(|e| WorkloadError::Failed(format!("starting {PROGRAM}: {e}")))?;
            if !status.success() {
                return Err(WorkloadError::Failed(format!(
                    "{PROGRAM} ended with {status}"
                )));
            }
            Ok(())
        };
        // Untimed: the program and its libraries come into the page cache.
        once()?;
        let before = children_minflt();
        let t0 = Instant::now();
        for _ in 0..iterations {
            once()?;
        }
        let elapsed = t0.elapsed();
        let mut out = Outcome::new(iterations as f64, elapsed);
        // A kernel that does not count its processes' faults (gVisor reports none) gets no
        // figure rather than a zero.
        if let (Some(a), Some(b)) = (before, children_minflt()) {
            if b > a {
                out.extras
                    .insert("faults_per_op".into(), (b - a) as f64 / iterations as f64);
            }
        }
        out.labels.insert("program".into(), PROGRAM.into());
        Ok(out)
    })
}

/// Minor page faults of this process's reaped children so far.
fn children_minflt() -> Option<i64> {
    // SAFETY: rusage is plain data; all zeroes is a valid value for getrusage to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage.
    (unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) } == 0).then_some(usage.ru_minflt)
}
