//! `ringecho-perf diff A B`: two results directories side by side, for the user who upgrades a
//! kernel or runs on a second machine. Only ratios are compared (each measured within its own
//! run, against its own baseline); a ratio has moved when the two runs' per-round spreads do
//! not overlap. Absolute figures from two runs are not compared: the machine's state moves
//! them more than any change does. Then the lines of machine.txt that differ.

use std::fmt::Write as _;
use std::path::Path;

use crate::analysis::summary::Row;
use crate::results::Results;

/// The diff of results directories `a` and `b` as text.
pub fn diff(a: &Path, b: &Path) -> crate::Result<String> {
    let (xa, xb) = (Results::new(a), Results::new(b));
    let maps = (xa.map()?, xb.map()?);
    let (sa, sb) = (xa.summary()?, xb.summary()?);
    let mut out = String::new();
    match (sa, sb) {
        (Some(ra), Some(rb)) => {
            let machine = |d: &Path| Results::new(d).machine().map(Option::unwrap_or_default);
            out.push_str(&text(&ra, &rb, &machine(a)?, &machine(b)?, a, b));
        }
        (sa, _) if maps.0.is_none() || maps.1.is_none() => {
            return Err(if sa.is_none() {
                xa.no_summary()
            } else {
                xb.no_summary()
            });
        }
        _ => {}
    }
    if let (Some(ma), Some(mb)) = maps {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&crate::render::changes::diff(&ma, &mb));
    }
    Ok(out)
}

fn text(ra: &[Row], rb: &[Row], ma: &str, mb: &str, a: &Path, b: &Path) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "A: {}\nB: {}\n", a.display(), b.display());
    let base = |rows: &[Row]| rows.first().map(|r| r.baseline.clone()).unwrap_or_default();
    let (ba, bb) = (base(ra), base(rb));
    if ba != bb {
        let _ = writeln!(
            s,
            "note: the baselines differ (A: {ba}, B: {bb}); ratios divide by different servers\n"
        );
    }
    let _ = writeln!(
        s,
        "{:<12} {:<12} {:>22} {:>22} {:>7}  verdict",
        "scenario", "server", "A ×baseline (spread)", "B ×baseline (spread)", "B/A"
    );
    let mut moved = 0;
    let mut compared = 0;
    for x in ra {
        let Some(y) = rb
            .iter()
            .find(|y| y.scenario == x.scenario && y.backend == x.backend)
        else {
            continue;
        };
        let (Some(ca), Some(cb)) = (x.cpu_ratio, y.cpu_ratio) else {
            continue;
        };
        if x.backend == x.baseline && y.backend == y.baseline {
            continue;
        }
        compared += 1;
        let (sa, sb) = (
            x.cpu_ratio_spread.unwrap_or((ca, ca)),
            y.cpu_ratio_spread.unwrap_or((cb, cb)),
        );
        let verdict = if sb.0 > sa.1 {
            moved += 1;
            "MOVED up: the spreads do not overlap"
        } else if sb.1 < sa.0 {
            moved += 1;
            "MOVED down: the spreads do not overlap"
        } else {
            "same within the spreads"
        };
        let _ = writeln!(
            s,
            "{:<12} {:<12} {:>22} {:>22} {:>7.3}  {verdict}",
            x.scenario,
            x.backend,
            format!("{ca:.3} ({:.3}–{:.3})", sa.0, sa.1),
            format!("{cb:.3} ({:.3}–{:.3})", sb.0, sb.1),
            cb / ca
        );
    }
    let _ = writeln!(
        s,
        "\n{moved} of {compared} CPU-per-message ratios moved beyond their rounds' spread."
    );
    let _ = writeln!(s, "\nmachine.txt lines that differ:");
    let mut any = false;
    let la: Vec<&str> = ma.lines().collect();
    let lb: Vec<&str> = mb.lines().collect();
    for l in &la {
        if !lb.contains(l) && !l.starts_with("date:") {
            any = true;
            let _ = writeln!(s, "  A: {l}");
        }
    }
    for l in &lb {
        if !la.contains(l) && !l.starts_with("date:") {
            any = true;
            let _ = writeln!(s, "  B: {l}");
        }
    }
    if !any {
        s.push_str("  none (beside the date)\n");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(backend: &str, ratio: f64, spread: (f64, f64)) -> Row {
        Row {
            scenario: "c1000x64".into(),
            backend: backend.into(),
            baseline: "epoll-loop".into(),
            cpu_ratio: Some(ratio),
            cpu_ratio_spread: Some(spread),
            ..Row::default()
        }
    }

    #[test]
    fn a_ratio_moves_only_when_the_spreads_part() {
        let a = [
            row("epoll-loop", 1.0, (1.0, 1.0)),
            row("multishot", 0.95, (0.93, 0.97)),
            row("epoll", 1.10, (1.08, 1.12)),
        ];
        let b = [
            row("epoll-loop", 1.0, (1.0, 1.0)),
            row("multishot", 0.96, (0.94, 0.99)),
            row("epoll", 1.25, (1.20, 1.30)),
        ];
        let t = text(
            &a,
            &b,
            "date: x\nkernel: 6.1\n",
            "date: y\nkernel: 6.18\n",
            Path::new("A"),
            Path::new("B"),
        );
        let line = |name: &str| t.lines().find(|l| l.contains(name)).unwrap().to_string();
        assert!(
            line("multishot").ends_with("same within the spreads"),
            "{t}"
        );
        assert!(line(" epoll ").contains("MOVED up"), "{t}");
        assert!(t.contains("1 of 2 CPU-per-message ratios moved"), "{t}");
        assert!(
            t.contains("A: kernel: 6.1\n") && t.contains("B: kernel: 6.18\n"),
            "{t}"
        );
        assert!(!t.contains("date:"), "{t}");
    }
}
