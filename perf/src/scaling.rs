//! The scaling curve (`compare --threads 1,2,4`): each backend's figures at each server
//! thread count, its ratio to the baseline at that count, the loadgen's share of its cores
//! (a point where the loadgen saturated is marked, not read as the server's), and how evenly
//! SO_REUSEPORT spread the connections over the server's threads. Pure: a function of the
//! summary's rows.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::scenario::at_threads;
use crate::summary::Row;

/// How evenly one run's connections were spread over the server's threads.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Balance {
    /// The fewest connections one thread accepted.
    pub min: u64,
    /// The most.
    pub max: u64,
    /// Their coefficient of variation (standard deviation over mean; 0: even).
    pub cv: f64,
}

impl Balance {
    /// The balance of per-thread counts; None for none, or for nothing accepted.
    pub fn of(by_thread: &[u64]) -> Option<Balance> {
        let n = by_thread.len() as f64;
        let sum: u64 = by_thread.iter().sum();
        if by_thread.is_empty() || sum == 0 {
            return None;
        }
        let mean = sum as f64 / n;
        let var = by_thread
            .iter()
            .map(|&v| (v as f64 - mean).powi(2))
            .sum::<f64>()
            / n;
        Some(Balance {
            min: *by_thread.iter().min().expect("not empty"),
            max: *by_thread.iter().max().expect("not empty"),
            cv: var.sqrt() / mean,
        })
    }
}

/// The loadgen's cores this busy or more mark a point as loadgen-bound.
pub const LOADGEN_BUSY: f64 = 0.9;

/// Whether the loadgen, not the server, may have set a row's pace.
pub fn loadgen_bound(r: &Row) -> bool {
    r.loadgen_limited_rounds > 0 || r.loadgen_utilisation >= LOADGEN_BUSY
}

/// The scaling section of table.txt, or None when no row is a scaling point.
pub fn table(rows: &[Row], baseline: &str) -> Option<String> {
    let points: Vec<&Row> = rows
        .iter()
        .filter(|r| at_threads(&r.scenario).1.is_some())
        .collect();
    if points.is_empty() {
        return None;
    }
    let mut s = String::from(
        "\nScaling (--threads): per server thread count, messages per second at capacity, \
         server CPU µs per message and its ratio to the baseline at that count, the \
         loadgen's share of its cores, and SO_REUSEPORT's spread of the connections over \
         the server's threads (min–max, coefficient of variation); `!` marks a point the \
         loadgen may have paced (loadgen-limited, or its cores ≥ 90 % busy): not the \
         server's figure.\n",
    );
    let mut scenarios: Vec<&str> = Vec::new();
    for r in &points {
        let base = at_threads(&r.scenario).0;
        if !scenarios.contains(&base) {
            scenarios.push(base);
        }
    }
    for sc in scenarios {
        let _ = writeln!(s, "\n{sc}:");
        let _ = writeln!(
            s,
            "  {:<12} {:>7} {:>12} {:>9} {:>8} {:>8} {:>16}",
            "server", "threads", "msgs/s", "µs/msg", "×base", "loadgen", "spread (cv)"
        );
        let mut servers: Vec<&str> = Vec::new();
        for r in points.iter().filter(|r| at_threads(&r.scenario).0 == sc) {
            if !servers.contains(&r.backend.as_str()) {
                servers.push(&r.backend);
            }
        }
        for server in servers {
            let mut mine: Vec<&&Row> = points
                .iter()
                .filter(|r| at_threads(&r.scenario).0 == sc && r.backend == server)
                .collect();
            mine.sort_by_key(|r| at_threads(&r.scenario).1);
            for r in mine {
                let n = at_threads(&r.scenario).1.unwrap_or(0);
                if let Some(why) = &r.failure {
                    let _ = writeln!(s, "  {server:<12} {n:>7}  FAILED: {why}");
                    continue;
                }
                let ratio = if r.backend == baseline {
                    "1.00".to_string()
                } else {
                    r.cpu_ratio.map_or("—".into(), |x| format!("{x:.2}"))
                };
                let spread = r.accepted_balance.map_or("—".into(), |b| {
                    format!("{}–{} ({:.2})", b.min, b.max, b.cv)
                });
                let _ = writeln!(
                    s,
                    "  {server:<12} {n:>7} {:>12.0} {:>9.2} {ratio:>8} {:>7.0}%{} {spread:>16}",
                    r.msgs_per_s,
                    r.server_cpu_us_per_msg,
                    r.loadgen_utilisation * 100.0,
                    if loadgen_bound(r) { "!" } else { " " },
                );
            }
        }
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balance_is_even_at_zero_and_grows_with_the_skew() {
        let even = Balance::of(&[50, 50]).unwrap();
        assert_eq!((even.min, even.max), (50, 50));
        assert!(even.cv.abs() < 1e-9);
        let skew = Balance::of(&[90, 10]).unwrap();
        assert!((skew.cv - 0.8).abs() < 1e-9, "{skew:?}");
        assert!(Balance::of(&[]).is_none() && Balance::of(&[0, 0]).is_none());
    }

    #[test]
    fn the_table_shows_each_point_and_marks_a_loadgen_bound_one() {
        let row = |s: &str, b: &str, busy: f64| Row {
            scenario: s.into(),
            backend: b.into(),
            rounds: 3,
            msgs_per_s: 1000.0,
            server_cpu_us_per_msg: 5.0,
            cpu_ratio: Some(0.9),
            loadgen_utilisation: busy,
            accepted_balance: Balance::of(&[40, 60]),
            ..Row::default()
        };
        let rows = [
            row("c100x64@1t", "epoll-loop", 0.5),
            row("c100x64@2t", "epoll-loop", 0.95),
            row("c100x64@1t", "multishot", 0.5),
            row("c100x64", "multishot", 0.5),
        ];
        let t = table(&rows, "epoll-loop").unwrap();
        assert!(t.contains("c100x64:"), "{t}");
        assert_eq!(t.matches("epoll-loop").count(), 2, "{t}");
        assert!(t.contains("95%!"), "{t}");
        assert!(t.contains("40–60 (0.20)"), "{t}");
        assert!(table(&rows[3..], "epoll-loop").is_none());
    }
}
