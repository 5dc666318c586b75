//! The host's own drift: a fixed reference probe measured during every run, and what it allows a
//! comparison of two runs to say.
//!
//! On a shared host the speed of the whole machine moves between runs (other tenants, frequency,
//! the hypervisor below): measured here, `cpu.primes` of identical code moved 27% between two
//! runs two minutes apart. The repetitions of one run are seconds apart and do not see that
//! movement, so a test of two runs' repetitions reports it as an effect. Every run therefore
//! measures the same [`PROBE`] (a few short CPU and memory loops, run by hvbench itself on the
//! host) before every workload (the first point is the run's start, the one before the workload
//! halfway through its middle) and at its end, and records it as [`HostDrift`].
//! [`DriftBand::around`] turns two runs' probes into the band inside which a change of one
//! workload between them is "within host drift": the largest movement of any probe loop among
//! the points right before and right after that workload in either run. A host loaded by other
//! tenants moves within seconds (measured here: the probe moved by 21% to 145% between two
//! identical runs a minute apart), so the points around a workload say more about it than the
//! runs' extremes.
//!
//! The loops and their sizes never change under the name [`PROBE`]: a new probe gets a new name,
//! and two documents with different probes are not compared through it. Version 2 added the
//! `front` and `stream` loops: on a cloud VM whose cores are shared with other tenants, the
//! latency-bound `cpu` and `mem` loops stayed within 2% while Dhrystone and memory bandwidth
//! moved by 40% between identical runs (docs/validation.md, "Where the noise comes from"); a
//! probe that does not feel what a workload feels cannot bound its drift.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The probe's name; the loops below are frozen under it.
pub const PROBE: &str = "host-probe-v2";

/// Timed passes of each loop at one probe point; the point's level is their median. A pass
/// lasts tens of milliseconds, longer than a scheduler time slice, so that the probe sees the
/// share of a CPU the host gives (other tenants' load), not only the CPU's speed.
const PASSES: usize = 3;
/// Iterations of the CPU loop in one pass (integer multiply, xor-shift and divide: the
/// instruction mix of the CPU workloads, in registers).
const CPU_ITERATIONS: u64 = 4_000_000;
/// The memory loop's buffer: larger than the last-level cache of common hosts, so a pass goes
/// to memory like the `mem.*` workloads.
const MEM_BYTES: usize = 64 << 20;
/// Dependent loads of one memory pass (a pointer chase over the buffer: latency, TLB misses).
const MEM_LOADS: usize = 100_000;
/// Dhrystone loops of one `front` pass (branches, calls, string copies: the core's front end
/// and caches, which a sibling hardware thread shares; about 5 ms on a current core).
const FRONT_LOOPS: u64 = 200_000;
/// Words of the buffer summed in one `stream` pass (sequential reads: memory bandwidth), 32 MiB.
const STREAM_WORDS: usize = (32 << 20) / std::mem::size_of::<usize>();

/// A loop that moved by more than this fraction within a run gets a warning: `compare`'s
/// default noise threshold (`report::compare::DEFAULT_NOISE`, which a test keeps equal).
pub const WARN_MOVEMENT: f64 = 0.05;

/// The probe points of a run, in the order measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostDrift {
    /// Which probe ([`PROBE`]): documents are compared through it only when the names match.
    pub probe: String,
    pub points: Vec<ProbePoint>,
}

/// One measurement of the probe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbePoint {
    /// `start`, `middle` or `end` of the run, or `between` two workloads.
    pub at: String,
    /// The workload measured right after this point (absent at the end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    /// Seconds since the run started.
    pub offset_s: f64,
    /// Milliseconds of each timed pass, per loop (`cpu`, `mem`): lower is a faster host.
    pub passes_ms: BTreeMap<String, Vec<f64>>,
}

impl ProbePoint {
    /// The median pass of each loop, in milliseconds.
    pub fn levels(&self) -> BTreeMap<String, f64> {
        self.passes_ms
            .iter()
            .filter_map(|(k, v)| hvbench_stats::median(v).map(|m| (k.clone(), m)))
            .collect()
    }
}

impl HostDrift {
    pub fn new() -> HostDrift {
        HostDrift {
            probe: PROBE.into(),
            points: Vec::new(),
        }
    }

    /// Measures the probe now (a fraction of a second) and appends the point.
    pub fn measure(&mut self, at: &str, since_start: Duration) {
        self.points.push(ProbePoint {
            at: at.into(),
            before: None,
            offset_s: since_start.as_secs_f64(),
            passes_ms: measure_probe(),
        });
    }

    /// Measures a point right before workload `w` of `workloads`: the `start` before the first,
    /// the `middle` before the one halfway through, `between` before the others. With the `end`
    /// point, every workload is bracketed by the host's state just before and just after it.
    pub fn measure_before(
        &mut self,
        workloads: &[&hvbench_workloads::WorkloadInfo],
        w: &hvbench_workloads::WorkloadInfo,
        since_start: Duration,
    ) {
        let index = workloads.iter().position(|x| x.name == w.name);
        let at = match index {
            Some(0) => "start",
            Some(i) if i == workloads.len() / 2 => "middle",
            _ => "between",
        };
        self.measure(at, since_start);
        if let Some(p) = self.points.last_mut() {
            p.before = Some(w.name.to_string());
        }
    }

    /// The points around workload `name`: the one right before it and the next one.
    fn around(&self, name: &str) -> Option<HostDrift> {
        let i = self
            .points
            .iter()
            .position(|p| p.before.as_deref() == Some(name))?;
        Some(HostDrift {
            probe: self.probe.clone(),
            points: self.points[i..self.points.len().min(i + 2)].to_vec(),
        })
    }

    /// A warning for the document when the host itself moved during the run by more than a
    /// comparison's default noise threshold.
    pub fn warning(&self) -> Option<String> {
        let within = self.within();
        let (name, moved) = within
            .iter()
            .max_by(|x, y| x.1.total_cmp(y.1))
            .map(|(k, v)| (k.clone(), *v))?;
        (moved > WARN_MOVEMENT).then(|| {
            format!(
                "host drift: the reference probe's {name} loop moved {:.1}% between the start, \
                 middle and end of this run (host_drift): a comparison with another run cannot \
                 tell changes of that size from the host's own; evaluate a change with \
                 `hvbench ab`, which interleaves both configurations in one run",
                moved * 100.0
            )
        })
    }

    /// The largest movement of one loop within this run: `max / min - 1` of its levels.
    pub fn within(&self) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for k in self.loops() {
            let levels = self.levels_of(&k);
            let (lo, hi) = levels
                .iter()
                .fold((f64::INFINITY, 0.0f64), |(l, h), &x| (l.min(x), h.max(x)));
            if lo > 0.0 && hi.is_finite() {
                out.insert(k, hi / lo - 1.0);
            }
        }
        out
    }

    /// The names of the probe's loops, sorted.
    pub fn loops(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .points
            .iter()
            .flat_map(|p| p.passes_ms.keys().cloned())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// The level (median pass, ms) of loop `name` at each point that measured it, in order.
    pub fn levels_of(&self, name: &str) -> Vec<f64> {
        self.points
            .iter()
            .filter_map(|p| p.levels().get(name).copied())
            .filter(|x| *x > 0.0 && x.is_finite())
            .collect()
    }
}

impl Default for HostDrift {
    fn default() -> Self {
        HostDrift::new()
    }
}

/// How far the host moved between two runs, from their probes.
#[derive(Debug, Clone, PartialEq)]
pub struct DriftBand {
    /// Per loop: the change of its median level from run A to run B (`+0.1`: B's host took 10%
    /// longer, a slower host).
    pub shift: BTreeMap<String, f64>,
    /// Per loop: its movement within A and within B (`max / min - 1` of the points).
    pub within_a: BTreeMap<String, f64>,
    pub within_b: BTreeMap<String, f64>,
    /// The band, a fraction: the largest `|ln(level_b / level_a)|` over every loop and every
    /// pair of a point of A and a point of B, as `exp(x) - 1`. A change of a workload no larger
    /// than this is within the host's own movement during the two runs.
    pub band: f64,
    /// The host's speed as a random variable: the largest standard deviation, over the loops,
    /// of the log levels of every point of both runs (about the mean of all of them).
    pub spread: f64,
    /// Points of both runs that `spread` comes from.
    pub points: usize,
}

impl DriftBand {
    /// The band of one workload: the points around it in each run (right before and right
    /// after it), compared with each other in every pair, within a run too: the host may move
    /// during the workload. Falls back to [`DriftBand::between`] over every point when a run
    /// has no point before this workload (documents with start, middle and end only).
    pub fn around(a: &HostDrift, b: &HostDrift, workload: &str) -> Option<DriftBand> {
        let (Some(la), Some(lb)) = (a.around(workload), b.around(workload)) else {
            return DriftBand::between(a, b);
        };
        let mut band = DriftBand::between(&la, &lb)?;
        let mut widest = (1.0 + band.band).ln();
        for k in la.loops() {
            let mut levels = la.levels_of(&k);
            levels.extend(lb.levels_of(&k));
            for x in &levels {
                for y in &levels {
                    widest = widest.max((y / x).ln().abs());
                }
            }
        }
        band.band = widest.exp() - 1.0;
        Some(band)
    }

    /// The band of two runs over all their points; `None` when either has no probe or the
    /// probes differ.
    pub fn between(a: &HostDrift, b: &HostDrift) -> Option<DriftBand> {
        if a.probe != b.probe || a.points.is_empty() || b.points.is_empty() {
            return None;
        }
        let mut shift = BTreeMap::new();
        let mut widest = 0.0f64;
        for k in a.loops() {
            let (la, lb) = (a.levels_of(&k), b.levels_of(&k));
            let (Some(ma), Some(mb)) = (hvbench_stats::median(&la), hvbench_stats::median(&lb))
            else {
                continue;
            };
            shift.insert(k.clone(), mb / ma - 1.0);
            for x in &la {
                for y in &lb {
                    widest = widest.max((y / x).ln().abs());
                }
            }
        }
        if shift.is_empty() {
            return None;
        }
        let mut spread = 0.0f64;
        let mut points = 0;
        for k in a.loops() {
            let logs: Vec<f64> = a
                .levels_of(&k)
                .into_iter()
                .chain(b.levels_of(&k))
                .map(f64::ln)
                .collect();
            if logs.len() >= 2 {
                let n = logs.len() as f64;
                let mean = logs.iter().sum::<f64>() / n;
                let var = logs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
                spread = spread.max(var.sqrt());
                points = points.max(logs.len());
            }
        }
        Some(DriftBand {
            shift,
            within_a: a.within(),
            within_b: b.within(),
            band: widest.exp() - 1.0,
            spread,
            points,
        })
    }

    /// The p-value of a relative change of a workload's median against the host's spread:
    /// whether the change is larger than two random states of this host would make it
    /// ([`hvbench_stats::spread_test`]).
    pub fn spread_p_value(&self, change: f64) -> f64 {
        if 1.0 + change <= 0.0 || self.points < 3 {
            return 1.0;
        }
        hvbench_stats::spread_test((1.0 + change).ln(), self.spread, (self.points - 1) as f64)
    }

    /// Whether a relative change of a workload's median (`median_b / median_a - 1`) is no
    /// larger than the band, in either direction (compared as log ratios, so +25% and -20% are
    /// the same movement).
    pub fn contains(&self, change: f64) -> bool {
        1.0 + change > 0.0 && (1.0 + change).ln().abs() <= (1.0 + self.band).ln()
    }
}

/// The memory loop's chain, built once per process: shuffling 64 MiB costs more than a probe
/// point's passes, and a run measures a point before every workload.
fn chain() -> &'static [usize] {
    static CHAIN: std::sync::OnceLock<Vec<usize>> = std::sync::OnceLock::new();
    CHAIN.get_or_init(pointer_chain)
}

/// One probe point: `PASSES` timed passes of each loop, after one untimed pass of each.
fn measure_probe() -> BTreeMap<String, Vec<f64>> {
    let chain = chain();
    let loops: [(&str, &dyn Fn()); 4] = [
        ("cpu", &cpu_pass),
        ("mem", &|| mem_pass(chain)),
        ("front", &front_pass),
        ("stream", &|| stream_pass(chain)),
    ];
    for (_, pass) in &loops {
        pass();
    }
    let mut out: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for _ in 0..PASSES {
        for (name, pass) in &loops {
            out.entry(name.to_string()).or_default().push(timed(pass));
        }
    }
    out
}

/// Dhrystone from the workloads crate, a fixed number of loops (its own check of the final
/// state runs too; a failure leaves the pass's time as it is).
fn front_pass() {
    if let Some(w) = hvbench_workloads::find("cpu.dhrystone") {
        let _ = black_box((w.run)(&Default::default(), FRONT_LOOPS));
    }
}

/// Sums the first `STREAM_WORDS` words of the chain's buffer in order.
fn stream_pass(chain: &[usize]) {
    let words = &chain[..STREAM_WORDS.min(chain.len())];
    black_box(
        black_box(words)
            .iter()
            .fold(0usize, |a, &w| a.wrapping_add(w)),
    );
}

fn timed(f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64() * 1e3
}

fn cpu_pass() {
    let mut x: u64 = black_box(0x9e37_79b9_7f4a_7c15);
    let mut acc: u64 = 0;
    for i in 0..CPU_ITERATIONS {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        acc = acc.wrapping_add(x.wrapping_mul(i | 1) / ((i & 0xff) + 3));
    }
    black_box(acc);
}

/// A single cycle through every cache line of the buffer in a fixed pseudo-random order, so each
/// load depends on the one before (no prefetching, no parallel misses).
fn pointer_chain() -> Vec<usize> {
    let stride = 64 / std::mem::size_of::<usize>();
    let lines = MEM_BYTES / 64;
    let mut order: Vec<usize> = (0..lines).collect();
    let mut rng = hvbench_stats::Rng::new(hvbench_stats::SEED);
    for i in (1..lines).rev() {
        order.swap(i, rng.below(i + 1));
    }
    let mut chain = vec![0usize; lines * stride];
    for w in 0..lines {
        chain[order[w] * stride] = order[(w + 1) % lines] * stride;
    }
    chain
}

fn mem_pass(chain: &[usize]) {
    let mut at = 0usize;
    for _ in 0..MEM_LOADS {
        at = chain[at];
    }
    black_box(at);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drift(levels: &[(f64, f64)]) -> HostDrift {
        HostDrift {
            probe: PROBE.into(),
            points: levels
                .iter()
                .enumerate()
                .map(|(i, &(cpu, mem))| ProbePoint {
                    at: ["start", "middle", "end"][i % 3].into(),
                    before: None,
                    offset_s: i as f64,
                    passes_ms: BTreeMap::from([
                        ("cpu".to_string(), vec![cpu, cpu * 1.01, cpu * 0.99]),
                        ("mem".to_string(), vec![mem; 3]),
                    ]),
                })
                .collect(),
        }
    }

    #[test]
    fn the_band_spans_the_widest_movement_between_any_two_points() {
        let a = drift(&[(10.0, 20.0), (10.0, 20.0), (10.0, 20.0)]);
        let b = drift(&[(11.0, 20.0), (12.0, 20.0), (11.0, 20.0)]);
        let band = DriftBand::between(&a, &b).unwrap();
        assert!((band.band - 0.2).abs() < 1e-9, "{band:?}");
        assert!((band.shift["cpu"] - 0.1).abs() < 1e-9, "{band:?}");
        assert!(band.contains(0.19) && band.contains(-0.15));
        assert!(!band.contains(0.25) && !band.contains(-0.2));
        assert!((band.within_b["cpu"] - 12.0 / 11.0 + 1.0).abs() < 1e-9);
    }

    #[test]
    fn each_workload_is_judged_by_the_points_around_it() {
        // Points before w1, before w2, and at the end; B's host slowed by 50% only from w2 on.
        let mark = |mut d: HostDrift| {
            for (p, name) in d.points.iter_mut().zip(["w1", "w2"]) {
                p.before = Some(name.into());
            }
            d
        };
        let a = mark(drift(&[(10.0, 20.0), (10.0, 20.0), (10.0, 20.0)]));
        let b = mark(drift(&[(10.0, 20.0), (15.0, 20.0), (15.0, 20.0)]));
        let w1 = DriftBand::around(&a, &b, "w1").unwrap();
        let w2 = DriftBand::around(&a, &b, "w2").unwrap();
        // w1 ran from the first to the second point: B's host moved by 50% by its end.
        assert!((w1.band - 0.5).abs() < 1e-9, "{w1:?}");
        assert!((w2.band - 0.5).abs() < 1e-9, "{w2:?}");
        let c = mark(drift(&[(10.0, 20.0), (10.0, 20.0), (15.0, 20.0)]));
        let calm = DriftBand::around(&a, &c, "w1").unwrap();
        assert!(calm.band < 0.05, "{calm:?}");
        // A workload without a point before it falls back to every point of both runs.
        let all = DriftBand::around(&a, &c, "w3").unwrap();
        assert!((all.band - 0.5).abs() < 1e-9, "{all:?}");
    }

    #[test]
    fn a_change_is_judged_against_the_spread_of_the_host() {
        let quiet = drift(&[(10.0, 20.0), (10.1, 20.0), (9.9, 20.0)]);
        let quiet_too = drift(&[(10.0, 20.0), (10.05, 20.0), (9.95, 20.0)]);
        let band = DriftBand::between(&quiet, &quiet_too).unwrap();
        assert!(band.spread_p_value(0.2) < 0.01, "{band:?}");
        let noisy = drift(&[(10.0, 20.0), (14.0, 20.0), (8.0, 20.0)]);
        let noisy_too = drift(&[(12.0, 20.0), (7.0, 20.0), (13.0, 20.0)]);
        let band = DriftBand::between(&noisy, &noisy_too).unwrap();
        assert!(band.spread_p_value(0.2) > 0.01, "{band:?}");
        assert!(band.spread_p_value(-0.2) > 0.01, "{band:?}");
    }

    #[test]
    fn different_probes_or_no_points_give_no_band() {
        let a = drift(&[(10.0, 20.0)]);
        let mut b = drift(&[(10.0, 20.0)]);
        b.probe = "another".into();
        assert!(DriftBand::between(&a, &b).is_none());
        assert!(DriftBand::between(&a, &HostDrift::new()).is_none());
    }

    #[test]
    fn the_chain_visits_every_line_once() {
        let chain = pointer_chain();
        let stride = 64 / std::mem::size_of::<usize>();
        let lines = MEM_BYTES / 64;
        let (mut at, mut seen) = (0usize, 0usize);
        loop {
            at = chain[at];
            seen += 1;
            if at == 0 {
                break;
            }
            assert_eq!(at % stride, 0);
        }
        assert_eq!(seen, lines);
    }
}
