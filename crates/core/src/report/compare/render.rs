//! The comparison as text: the differences between the runs, the host's drift, the table of
//! changes with their verdicts, and the summary.

use std::fmt::Write;

use hvbench_stats::BOOTSTRAP_RESAMPLES;

use super::{ChangeVerdict, Comparison, SIGNIFICANCE};
use crate::report::view::brief;
use crate::report::{fmt_sig, Table};

/// `+4.1%`.
fn fmt_change(c: f64) -> String {
    format!("{:+.1}%", c * 100.0)
}

impl Comparison {
    pub fn faster(&self) -> usize {
        self.count(&ChangeVerdict::Faster)
    }

    pub fn slower(&self) -> usize {
        self.count(&ChangeVerdict::Slower)
    }

    fn count(&self, v: &ChangeVerdict) -> usize {
        self.changes.iter().filter(|c| &c.verdict == v).count()
    }

    /// The comparison as text: differences first, then the changes, then what is in one only.
    pub fn render(&self) -> String {
        let mut out = format!("A: {}\nB: {}\n\n", self.a, self.b);
        if self.differences.is_empty() {
            out.push_str(
                "No differences in versions, host, settings or backend configuration.\n\n",
            );
        } else {
            out.push_str("Differences between the runs (they explain most changes):\n");
            for d in &self.differences {
                if d.a.chars().count() + d.b.chars().count() <= 72
                    && !d.a.contains('\n')
                    && !d.b.contains('\n')
                {
                    let _ = writeln!(out, "  {}: {} → {}", d.field, d.a, d.b);
                } else {
                    let _ = writeln!(out, "  {}:", d.field);
                    let _ = writeln!(out, "    A: {}", d.a.replace('\n', "\n       "));
                    let _ = writeln!(out, "    B: {}", d.b.replace('\n', "\n       "));
                }
            }
            out.push('\n');
        }
        out.push_str(&self.render_drift());
        let mut t = Table::new(
            &[
                "Backend", "Workload", "Unit", "Median A", "Median B", "Change", "p", "Verdict",
            ],
            &[false, false, false, true, true, true, true, false],
        );
        let mut underpowered = Vec::new();
        for c in &self.changes {
            let median = |m: Option<f64>| m.map(fmt_sig).unwrap_or_else(|| "-".into());
            let (change, p) = match &c.test {
                Some(s) => (fmt_change(s.change), format!("{:.4}", s.p_value)),
                None => (String::new(), String::new()),
            };
            if c.test.as_ref().is_some_and(|s| !s.can_be_significant) {
                underpowered.push(format!(
                    "{}/{} ({} and {} samples)",
                    c.backend, c.workload, c.n_a, c.n_b
                ));
            }
            t.row(vec![
                c.backend.clone(),
                c.workload.clone(),
                format!("{} {}", c.unit, if c.higher_is_better { "↑" } else { "↓" }),
                median(c.median_a),
                median(c.median_b),
                change,
                p,
                brief(&c.verdict.to_string(), 80),
            ]);
        }
        let _ = writeln!(
            out,
            "Changes from A to B (permutation test of the medians, {BOOTSTRAP_RESAMPLES} resamples; \
             a verdict needs p < {SIGNIFICANCE} and a change beyond {:.1}%):",
            self.noise * 100.0
        );
        if t.is_empty() {
            out.push_str("  no workload was measured on the same backend in both runs\n");
        } else {
            out.push_str(&t.render());
        }
        out.push('\n');
        for (label, list) in [
            ("Only in A", &self.only_in_a),
            ("Only in B", &self.only_in_b),
        ] {
            if !list.is_empty() {
                let _ = writeln!(out, "{label}: {}", list.join(", "));
            }
        }
        if !underpowered.is_empty() {
            let _ = writeln!(
                out,
                "Too few samples for any change to reach p < {SIGNIFICANCE} (use more --reps): {}",
                underpowered.join(", ")
            );
        }
        let _ = writeln!(
            out,
            "Summary: {} faster, {} slower, {} within host drift, {} without significant change, \
             {} not comparable.",
            self.faster(),
            self.slower(),
            self.within_drift(),
            self.count(&ChangeVerdict::NoSignificantChange),
            self.changes
                .iter()
                .filter(|c| matches!(c.verdict, ChangeVerdict::NotComparable { .. }))
                .count()
        );
        if self.separate_runs {
            let backend = self
                .backends
                .iter()
                .find(|b| b.as_str() != "native")
                .map(String::as_str)
                .unwrap_or("<backend>");
            let _ = writeln!(
                out,
                "A and B are separate runs, and the host's speed moves between runs. To evaluate \
                 a change, measure both configurations in one run, interleaved repetition by \
                 repetition: hvbench ab --backend {backend} --a '<options of A>' --b '<options \
                 of B>'"
            );
        }
        out
    }

    /// Changes significant within the runs but no larger than the host's own movement.
    pub fn within_drift(&self) -> usize {
        self.changes
            .iter()
            .filter(|c| matches!(c.verdict, ChangeVerdict::WithinHostDrift { .. }))
            .count()
    }

    /// The host's movement between and within the two runs.
    fn render_drift(&self) -> String {
        let mut out = String::new();
        match &self.drift {
            None => {
                let _ = writeln!(
                    out,
                    "Host drift: not measured ({}); verdicts cannot tell the host's own movement \
                     from a change.\n",
                    self.drift_missing.as_deref().unwrap_or("no probe")
                );
            }
            Some(d) => {
                let _ = writeln!(
                    out,
                    "Host drift (the reference probe, {}, at the start, middle and end of each \
                     run; time per pass, lower is faster):",
                    crate::drift::PROBE
                );
                for (name, shift) in &d.shift {
                    let within = |m: &std::collections::BTreeMap<String, f64>| {
                        m.get(name)
                            .map(|w| format!("{:.1}%", w * 100.0))
                            .unwrap_or_else(|| "-".into())
                    };
                    let _ = writeln!(
                        out,
                        "  {name}: {} from A to B; moved {} within A, {} within B",
                        fmt_change(*shift),
                        within(&d.within_a),
                        within(&d.within_b)
                    );
                }
                let _ = writeln!(
                    out,
                    "  Over the whole runs the probe moved up to ±{:.1}% (standard deviation of \
                     its log speed over {} points: {:.1}%). A change is within host drift when \
                     it is no larger than the probe's movement around the workload (the points \
                     right before and after it, in both runs), or when it is not significant \
                     (p >= {SIGNIFICANCE}) against two random states of a host with that \
                     spread.\n",
                    d.band * 100.0,
                    d.points,
                    d.spread * 100.0
                );
            }
        }
        if self.history_runs >= 3 {
            let _ = writeln!(
                out,
                "Between-run spread: from the medians of up to {} runs of A's configuration \
                 (--history); a change must also be significant against it.\n",
                self.history_runs
            );
        }
        out
    }
}
