//! Where the noise of a native repetition comes from, measured without the harness: the
//! workloads run in this one process (no agent, no guests, no other hvbench thread), at several
//! repetition lengths interleaved round by round, beside a reference that a busy neighbour
//! barely slows (a chain of dependent 64-bit multiplies: one ALU, no memory, no branches).
//!
//! ```sh
//! taskset -c 1 cargo run --release -p hvbench-workloads --example noise -- 10 cpu.dhrystone mem.read
//! ```
//!
//! Prints, per workload, the CV of the repetitions at 0.1, 0.2, 0.5 and 1 s, the involuntary
//! context switches they suffered, and the reference chain's CV over the same rounds. A
//! workload whose CV stays high at 1 s while the chain's is low and nothing preempted it is
//! slowed by the machine under this one (another tenant on the core's sibling thread, the host's
//! frequency), not by anything on this machine.

use std::time::{Duration, Instant};

const LENGTHS_MS: [u64; 4] = [100, 200, 500, 1000];

fn chain_ns_per_op() -> f64 {
    const N: u64 = 20_000_000;
    let start = Instant::now();
    let mut x = 1u64;
    for _ in 0..N {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
    }
    std::hint::black_box(x);
    start.elapsed().as_secs_f64() * 1e9 / N as f64
}

fn nivcsw() -> i64 {
    // SAFETY: rusage is plain old data; all-zero is a valid value for getrusage to fill.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a rusage owned by this frame.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    ru.ru_nivcsw
}

fn cv_percent(v: &[f64]) -> f64 {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    100.0 * var.sqrt() / mean
}

fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args
        .next()
        .and_then(|s| s.parse().ok())
        .expect("usage: noise ROUNDS WORKLOAD...");
    let params = Default::default();
    for name in args {
        let w = hvbench_workloads::find(&name).unwrap_or_else(|| panic!("no workload {name}"));
        let iterations: Vec<u64> = LENGTHS_MS
            .iter()
            .map(|&ms| {
                hvbench_workloads::calibrate(w, &params, Duration::from_millis(ms))
                    .expect("calibration")
            })
            .collect();
        let mut values = vec![Vec::new(); LENGTHS_MS.len()];
        let mut chain = Vec::new();
        let switches = nivcsw();
        for _ in 0..rounds {
            chain.push(chain_ns_per_op());
            for (k, &n) in iterations.iter().enumerate() {
                let rep = hvbench_workloads::run_rep(w, &params, n, 1).expect("repetition");
                values[k].push(rep.value);
            }
        }
        let cvs: Vec<String> = values
            .iter()
            .map(|v| format!("{:.1}", cv_percent(v)))
            .collect();
        println!(
            "{name}: CV % at 0.1 / 0.2 / 0.5 / 1 s: {}; involuntary switches {}; reference chain CV {:.1}%",
            cvs.join(" / "),
            nivcsw() - switches,
            cv_percent(&chain)
        );
    }
}
