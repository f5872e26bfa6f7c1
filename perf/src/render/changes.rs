//! Two maps cell by cell (`ringecho-perf diff` of two directories that hold map.json): per
//! contrast and cell, the ratio in each and whether it moved — the two rounds' spreads do not
//! overlap — or its call changed. Only ratios, each measured within its own run.

use std::fmt::Write as _;

use crate::analysis::map::Cell;
use crate::analysis::map::{HeatCell, MapFile};

/// The cell-by-cell diff of maps `a` and `b` as text.
pub fn diff(a: &MapFile, b: &MapFile) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "maps: A {} ({}), B {} ({})",
        a.date, a.machine, b.date, b.machine
    );
    let _ = writeln!(
        s,
        "{:<28} {:<26} {:>20} {:>20}  what changed",
        "cell", "contrast", "A (spread)", "B (spread)"
    );
    let mut cells: Vec<Cell> = Vec::new();
    for sl in a.slices.iter().chain(&b.slices) {
        for c in sl.cells() {
            if !cells.contains(&c) {
                cells.push(c);
            }
        }
    }
    let mut pairs = a.pairs();
    for p in b.pairs() {
        if !pairs.contains(&p) {
            pairs.push(p);
        }
    }
    let (mut shared, mut moved) = (0, 0);
    for (server, over) in &pairs {
        for cell in &cells {
            let (ha, hb) = (a.heat(cell, server, over), b.heat(cell, server, over));
            if ha == HeatCell::Missing && hb == HeatCell::Missing {
                continue;
            }
            let what = change(&ha, &hb);
            if matches!(
                (&ha, &hb),
                (HeatCell::Called { .. }, HeatCell::Called { .. })
            ) {
                shared += 1;
            }
            if !what.is_empty() && what != "only in one" {
                moved += 1;
            }
            let _ = writeln!(
                s,
                "{:<28} {:<26} {:>20} {:>20}  {what}",
                cell.name(),
                format!("{server} ×{over}"),
                show(&ha),
                show(&hb)
            );
        }
    }
    let _ = writeln!(
        s,
        "\n{shared} cells in both, {moved} moved beyond their rounds' spread or changed call"
    );
    s
}

fn show(h: &HeatCell) -> String {
    match h {
        HeatCell::Called { ratio, spread, .. } => {
            format!("{ratio:.2} ({:.2}–{:.2})", spread.0, spread.1)
        }
        HeatCell::Failed(_) => "FAILED".into(),
        HeatCell::Missing => "—".into(),
    }
}

fn change(a: &HeatCell, b: &HeatCell) -> String {
    match (a, b) {
        (
            HeatCell::Called {
                spread: sa,
                call: ca,
                ..
            },
            HeatCell::Called {
                spread: sb,
                call: cb,
                ..
            },
        ) => {
            let mut what = Vec::new();
            if sa.1 < sb.0 || sb.1 < sa.0 {
                what.push("moved".to_string());
            }
            if ca != cb {
                what.push(format!("call {ca:?} → {cb:?}").to_lowercase());
            }
            what.join(", ")
        }
        (HeatCell::Missing, _) | (_, HeatCell::Missing) => "only in one".into(),
        (HeatCell::Failed(_), HeatCell::Failed(_)) => String::new(),
        (HeatCell::Failed(_), _) => "no longer fails".into(),
        (_, HeatCell::Failed(_)) => "fails now".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::map::record::tests::one_cell;

    #[test]
    fn a_cell_moves_only_when_the_spreads_part() {
        let a = one_cell(&[0.80, 0.82, 0.85], &[0.97, 1.02, 1.0]);
        let same = one_cell(&[0.83, 0.84, 0.86], &[0.97, 1.02, 1.0]);
        let d = diff(&a, &same);
        assert!(d.contains("0 moved"), "{d}");
        let b = one_cell(&[0.99, 1.0, 1.01], &[0.97, 1.02, 1.0]);
        let d = diff(&a, &b);
        assert!(d.contains("moved, call winner → level"), "{d}");
        assert!(d.contains("1 moved"), "{d}");
    }
}
