//! The `ab` section of a result document: two configurations measured in one run, repetition by
//! repetition, and the change of each workload from A to B (`crate::scenario::ab`).

use serde::{Deserialize, Serialize};

/// What `hvbench ab` compared and what it found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AbRecord {
    pub a: AbArm,
    pub b: AbArm,
    /// A verdict needs `p < significance`...
    pub significance: f64,
    /// ...and a change of the median beyond this fraction.
    pub noise: f64,
    /// One per workload, in the run's order.
    pub changes: Vec<AbChange>,
}

/// One of the two configurations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AbArm {
    /// `a` or `b`.
    pub label: String,
    /// Its name in `backends[]` and `runs[]` (`qemu-tcg.a`).
    pub backend: String,
    /// The options that make it, as given (`--nic virtio`).
    pub options: Vec<String>,
}

/// The change of one workload from A to B.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AbChange {
    pub workload: String,
    pub unit: String,
    pub higher_is_better: bool,
    pub median_a: Option<f64>,
    pub median_b: Option<f64>,
    /// Rounds in which both were measured (the blocks of the test).
    pub pairs: usize,
    /// `median_b / median_a - 1`.
    pub change: Option<f64>,
    /// Median of the per-round changes `b_i / a_i - 1`.
    pub round_change: Option<f64>,
    /// Standard deviation of the per-round log ratios `ln(b_i / a_i)`: the spread between
    /// blocks that the test weighs the change against.
    pub round_spread: Option<f64>,
    /// Two-sided p-value of the paired permutation test (sign flips within rounds).
    pub p_value: Option<f64>,
    pub verdict: AbVerdict,
}

/// What the run allows one to say about B against A.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AbVerdict {
    /// B is better: significant and beyond the noise threshold.
    Faster,
    /// B is worse: significant and beyond the noise threshold.
    Slower,
    /// Not significant, or within the noise threshold.
    NoSignificantChange,
    /// Fewer than 8 rounds: no change can reach p < 0.01 (sign flips of n rounds give at best
    /// p = 2 / 2^n).
    TooFewRounds { pairs: usize },
    /// One side has no samples (skipped, failed, DNR).
    NotComparable { reason: String },
}

impl std::fmt::Display for AbVerdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AbVerdict::Faster => f.write_str("B faster"),
            AbVerdict::Slower => f.write_str("B slower"),
            AbVerdict::NoSignificantChange => f.write_str("no significant change"),
            AbVerdict::TooFewRounds { pairs } => {
                write!(f, "too few rounds ({pairs}) for p < 0.01")
            }
            AbVerdict::NotComparable { reason } => write!(f, "not comparable: {reason}"),
        }
    }
}
