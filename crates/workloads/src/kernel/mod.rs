//! Kernel microbenchmarks: workloads that spend almost all their time in the kernel.
//!
//! They follow the kernel microbenchmarks of the VMware VMI paper (seed 001): a system call
//! (`getppid`), processor fault handling (divide by zero, SIGSEGV), context switches, and process
//! creation (`nforkwait`), plus a few paths that virtualization makes expensive in other ways:
//! first-touch page faults (shadow or nested paging), the clock (an emulated clocksource traps on
//! every read), signal delivery, a pipe round trip, `execve`.
//!
//! User-mode code runs at native speed under every virtualization technique; these workloads
//! measure what is left: the cost of entering the kernel, taking faults and changing address
//! spaces. Run them with `--copies N` to saturate every CPU as the paper did (16 instances).
//!
//! Each one runs `iterations` operations and times only that loop; set-up (forking a partner,
//! installing a handler, mapping memory, writing a program) is excluded. Every result is
//! checked (return codes, handler counters, exit statuses) and a failed check fails the run.
//!
//! `time.clock_gettime` depends on the clocksource the kernel uses (`tsc`, `kvm-clock`, `hpet`,
//! `acpi_pm`, ...): read it from `/sys/devices/system/clocksource/clocksource0/current_clocksource`
//! (the agent reports it in its `hello`) to interpret that result.

mod fault;
mod mm;
pub(crate) mod os;
mod process;
mod sched;
mod sys;

use crate::{Kind, Metric, Needs, WorkloadInfo};

const SUITES: &[&str] = &["quick", "full", "kernel"];
const NS_PER_OP: Metric = Metric::TimePerOp { scale: 1.0 };
const US_PER_OP: Metric = Metric::TimePerOp { scale: 1e-3 };
const SETUP_TIMEOUT_S: u32 = 10;

/// The kernel microbenchmarks.
pub static WORKLOADS: &[WorkloadInfo] = &[
    WorkloadInfo {
        name: "sys.getppid",
        unit: "ns/op",
        higher_is_better: false,
        description: "raw getppid system call: the bare kernel entry and exit path, \
                      which binary translation and paravirtualization make costly",
        kind: Kind::Micro,
        needs: Needs::NONE,
        suites: SUITES,
        metric: NS_PER_OP,
        setup_timeout_s: SETUP_TIMEOUT_S,
        run: sys::getppid,
    },
    WorkloadInfo {
        name: "sys.pipe",
        unit: "ns/op",
        higher_is_better: false,
        description: "512-byte write then read on one pipe: two system calls that copy data \
                      through the kernel, as in I/O-heavy programs",
        kind: Kind::Micro,
        needs: Needs::NONE,
        suites: SUITES,
        metric: NS_PER_OP,
        setup_timeout_s: SETUP_TIMEOUT_S,
        run: sys::pipe,
    },
    WorkloadInfo {
        name: "time.clock_gettime",
        unit: "ns/op",
        higher_is_better: false,
        description: "clock_gettime(CLOCK_MONOTONIC) through the vDSO: a few ns with a stable \
                      TSC, a trap per call when the guest's clocksource is emulated",
        kind: Kind::Micro,
        needs: Needs::NONE,
        suites: SUITES,
        metric: NS_PER_OP,
        setup_timeout_s: SETUP_TIMEOUT_S,
        run: sys::clock_gettime,
    },
    WorkloadInfo {
        name: "sched.ctxswitch.same",
        unit: "ns/switch",
        higher_is_better: false,
        description: "two processes ping-pong a byte over pipes on one CPU: context switches \
                      between address spaces, which stress MMU virtualization",
        kind: Kind::Micro,
        needs: Needs::NONE,
        suites: SUITES,
        metric: NS_PER_OP,
        setup_timeout_s: SETUP_TIMEOUT_S,
        run: sched::ctxswitch_same,
    },
    WorkloadInfo {
        name: "sched.ctxswitch.unix",
        unit: "ns/switch",
        higher_is_better: false,
        description: "the same ping-pong on one CPU over Unix stream sockets, the channel of a \
                      database client and its server: a switch with a socket's send and receive \
                      (param pages: pages each side reads after it wakes)",
        kind: Kind::Micro,
        needs: Needs::NONE,
        // Not in the quick suite: `--explain` adds it to price an application's switches.
        suites: &["full", "kernel"],
        metric: NS_PER_OP,
        setup_timeout_s: SETUP_TIMEOUT_S,
        run: sched::ctxswitch_unix,
    },
    WorkloadInfo {
        name: "sched.ctxswitch.cross",
        unit: "ns/switch",
        higher_is_better: false,
        description: "the same ping-pong between two CPUs: cross-CPU wake-ups (IPIs), costly \
                      when an idle vCPU has halted and the host must wake it",
        kind: Kind::Micro,
        needs: Needs::NONE,
        suites: SUITES,
        metric: NS_PER_OP,
        setup_timeout_s: SETUP_TIMEOUT_S,
        run: sched::ctxswitch_cross,
    },
    WorkloadInfo {
        name: "fault.divzero",
        unit: "ns/op",
        higher_is_better: false,
        description: "integer divide-by-zero fault caught by a SIGFPE handler that skips the \
                      instruction: the processor fault path, trapped by some hypervisors",
        kind: Kind::Micro,
        needs: Needs::NONE,
        suites: SUITES,
        metric: NS_PER_OP,
        setup_timeout_s: SETUP_TIMEOUT_S,
        run: fault::divzero,
    },
    WorkloadInfo {
        name: "fault.segv",
        unit: "ns/op",
        higher_is_better: false,
        description: "load from a PROT_NONE page caught by a SIGSEGV handler that skips it: \
                      the page-fault path and signal delivery",
        kind: Kind::Micro,
        needs: Needs::NONE,
        suites: SUITES,
        metric: NS_PER_OP,
        setup_timeout_s: SETUP_TIMEOUT_S,
        run: fault::segv,
    },
    WorkloadInfo {
        name: "sig.catch",
        unit: "ns/op",
        higher_is_better: false,
        description: "a signal sent to itself and caught by a trivial handler: signal \
                      delivery and sigreturn, kernel work with a user-mode detour",
        kind: Kind::Micro,
        needs: Needs::NONE,
        suites: SUITES,
        metric: NS_PER_OP,
        setup_timeout_s: SETUP_TIMEOUT_S,
        run: fault::sig_catch,
    },
    WorkloadInfo {
        name: "mm.pagefault",
        unit: "ns/page",
        higher_is_better: false,
        description: "first touch of fresh anonymous pages: page faults and page-table \
                      updates, expensive under shadow paging and nested paging",
        kind: Kind::Micro,
        needs: Needs::NONE,
        suites: SUITES,
        metric: NS_PER_OP,
        setup_timeout_s: SETUP_TIMEOUT_S,
        run: mm::pagefault,
    },
    WorkloadInfo {
        name: "proc.fork",
        unit: "µs/op",
        higher_is_better: false,
        description: "fork, child _exit and waitpid: copying and tearing down an address \
                      space, the MMU-heavy process-creation path",
        kind: Kind::Micro,
        needs: Needs::NONE,
        suites: SUITES,
        metric: US_PER_OP,
        setup_timeout_s: SETUP_TIMEOUT_S,
        run: process::fork,
    },
    WorkloadInfo {
        name: "proc.exec",
        unit: "µs/op",
        higher_is_better: false,
        description: "fork, execve of a tiny static program and waitpid: process creation \
                      as in shells and builds, including loading a new image",
        kind: Kind::Micro,
        needs: Needs::NONE,
        suites: SUITES,
        metric: US_PER_OP,
        setup_timeout_s: SETUP_TIMEOUT_S,
        run: process::exec,
    },
];
