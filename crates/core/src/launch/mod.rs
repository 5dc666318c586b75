//! The launcher: how every backend starts, watches and stops the host processes of a guest.
//!
//! A backend only knows its technique (its `*Config` and `command_line()`); what it does with
//! host processes is the same everywhere and lives here, written once:
//!
//! - [`spawn_in_own_group`]: a process group of its own (a terminal's Ctrl-C reaches hvbench
//!   only; killing the group kills everything the guest made), joining the guest's cgroup
//!   before it runs while a guest is being launched (metered from the first instant, killed
//!   with `cgroup.kill` by the watchdog if hvbench dies);
//! - [`spawn_piped`]: the same with the agent channel on the child's stdin and stdout;
//! - [`kill_and_reap`] and [`has_exited`]: certain death of a process group, and a look at
//!   its leader that does not reap it (so its group id cannot be reused under us);
//! - [`host_tool`]: finding host programs (one `which` for every backend), their versions,
//!   short commands under a time bound, which also die with hvbench (a parent-death signal);
//!
//! The network a backend gives a guest, with its endpoint (a tap in a namespace, a veth pair),
//! is `devices::tap_endpoint` and `devices::veth_endpoint`, with the other devices a guest gets.
//!
//! and, next to them, probing a backend by booting a guest (`guest::probe_boot`, which is a
//! guest's start and lives with `Guest`), and the scripted `mock` backend that makes scenarios
//! testable without processes. Nothing here knows guests or backends: they use it, never the
//! other way round.
//!
//! Guests' own processes get no parent-death signal: Linux sends it when the *thread* that
//! forked exits, and scenarios launch guests from worker threads that end long before their
//! guests do. Their cgroup and registered process group (see the watchdog) are what
//! kills them when hvbench is killed.

pub mod host_tool;
mod spawn;

pub(crate) use spawn::launching_in;
pub use spawn::{
    has_exited, kill_and_reap, spawn_dying_with_caller, spawn_in_own_group, spawn_piped, Piped,
};
