//! The host's drift during a run (`host_drift`, [`crate::drift`]) in the [table
//! model](super::model): how far each loop of the reference probe moved between the points
//! measured before every workload and at the end.

use super::fmt_sig;
use super::model::Table;
use crate::drift::HostDrift;

/// One row per probe loop: its fastest, median and slowest level over the run's points and how
/// far it moved (`slowest / fastest - 1`).
pub(crate) fn table(drift: &HostDrift) -> Option<Table> {
    if drift.points.is_empty() {
        return None;
    }
    let mut t = Table::titled(
        format!(
            "Host drift: the reference probe ({}) at {} points of the run, ms per pass (lower is \
             a faster host)",
            drift.probe,
            drift.points.len()
        ),
        &[
            ("Loop", false),
            ("Points", true),
            ("Fastest ms", true),
            ("Median ms", true),
            ("Slowest ms", true),
            ("Moved", true),
        ],
    );
    t.id = Some("host-drift".into());
    for name in drift.loops() {
        let mut levels = drift.levels_of(&name);
        if levels.is_empty() {
            continue;
        }
        levels.sort_by(f64::total_cmp);
        let (lo, hi) = (levels[0], levels[levels.len() - 1]);
        let median = hvbench_stats::median(&levels).unwrap_or(lo);
        t.row(vec![
            name,
            levels.len().to_string(),
            fmt_sig(lo),
            fmt_sig(median),
            fmt_sig(hi),
            format!("{:.1}%", (hi / lo - 1.0) * 100.0),
        ]);
    }
    (!t.is_empty()).then_some(t)
}

/// One probe pass per row, for a spreadsheet: `at, before, offset_s, loop, pass, ms`.
pub(crate) fn passes_table(drift: &HostDrift) -> Table {
    let mut t = Table::plain(
        "host drift passes",
        &["at", "before", "offset_s", "loop", "pass", "ms"],
    );
    for p in &drift.points {
        for (name, passes) in &p.passes_ms {
            for (i, ms) in passes.iter().enumerate() {
                t.push_text(vec![
                    p.at.clone(),
                    p.before.clone().unwrap_or_default(),
                    super::view::number(p.offset_s),
                    name.clone(),
                    i.to_string(),
                    super::view::number(*ms),
                ]);
            }
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::ProbePoint;

    fn point(at: &str, cpu: [f64; 3]) -> ProbePoint {
        ProbePoint {
            at: at.into(),
            before: None,
            offset_s: 0.0,
            passes_ms: [("cpu".to_string(), cpu.to_vec())].into_iter().collect(),
        }
    }

    #[test]
    fn the_table_shows_how_far_each_loop_moved_from_the_median_passes() {
        let drift = HostDrift {
            probe: "p".into(),
            points: vec![
                point("start", [10.0, 9.0, 30.0]),
                point("end", [12.0, 12.0, 1.0]),
            ],
        };
        let t = table(&drift).expect("two points");
        // Levels are the points' median passes: 10 and 12, so the loop moved 20%.
        assert_eq!(t.rows.len(), 1);
        let row: Vec<&str> = t.rows[0].iter().map(|c| c.text.as_str()).collect();
        assert_eq!(row, ["cpu", "2", "10.00", "11.00", "12.00", "20.0%"]);
        assert_eq!(passes_table(&drift).rows.len(), 6);
        assert!(table(&HostDrift::new()).is_none());
    }
}
