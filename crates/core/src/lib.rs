//! The hvbench orchestrator library.
//!
//! It finds the agent ([`agent`]), starts guests through [`backends`], talks to them through
//! [`guest`], runs [`scenario`]s, writes [`results`] and renders [`report`]s. The `hvbench` binary
//! is a thin command line over this crate.

use std::sync::atomic::{AtomicBool, Ordering};

pub mod accounting;
pub mod agent;
pub mod backends;
pub mod devices;
pub mod drift;
pub mod explain;
pub mod guest;
pub mod host;
pub mod hostload;
pub mod image;
pub mod launch;
pub mod netns;
pub mod placement;
pub mod report;
pub mod results;
pub mod scenario;
pub mod smaps;
pub mod watchdog;
pub mod workdir;

/// The git revision this build came from (`-dirty` when the tree had changes).
pub const GIT_REVISION: &str = env!("HVBENCH_GIT_REVISION");

static STOP: AtomicBool = AtomicBool::new(false);

/// Asks every running scenario to stop at the next repetition boundary and keep what it has.
/// Async-signal-safe: a signal handler may call it.
pub fn request_stop() {
    STOP.store(true, Ordering::SeqCst);
}

/// Whether a stop was requested.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// The statistics crate, re-exported so the CLI records the constants it used.
pub use hvbench_stats as stats;
