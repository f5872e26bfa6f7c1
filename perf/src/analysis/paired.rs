//! Side by side (`compare.sh --paired`): each server run at the same time as the baseline,
//! the two sharing the server cores and their two loadgens sharing the loadgen cores, so both
//! see the same machine at the same moment. One after the other, a shared machine's speed
//! drifts by several percent between two runs seconds apart, more than the servers here
//! differ by; side by side the drift falls on both, and the ratio of their CPU per message
//! holds to a fraction of a percent (a server paired with itself reads 1.00 ± 0.005 here).
//! The price: each server sees half the load of a run alone, so this ranks servers at a
//! shared load; the interleaved rounds stay the figures for one server alone.

use serde::{Deserialize, Serialize};

use super::stats::{first_seen, median, spread};

/// One paired run's figures: server CPU µs per echoed message of each side.
#[derive(Debug, Clone, PartialEq)]
pub struct Pair {
    /// The scenario.
    pub scenario: String,
    /// The server paired with the baseline.
    pub server: String,
    /// Its CPU per message.
    pub server_cpu: f64,
    /// The baseline's CPU per message in the same run.
    pub baseline_cpu: f64,
}

/// One server in one scenario, over its paired runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairedRow {
    /// The scenario.
    pub scenario: String,
    /// The server.
    pub server: String,
    /// The server it ran beside.
    pub baseline: String,
    /// Paired runs (one per round).
    pub rounds: usize,
    /// Median over the runs of its CPU per message over the baseline's in the same run.
    pub cpu_ratio: f64,
    /// The lowest and highest of those ratios.
    pub cpu_ratio_spread: (f64, f64),
    /// Median server CPU µs per message.
    pub server_cpu_us_per_msg: f64,
    /// Median baseline CPU µs per message in the same runs.
    pub baseline_cpu_us_per_msg: f64,
}

/// The rows of `pairs` (beside `baseline`), per scenario and server, in the order first seen.
pub fn rows(pairs: &[Pair], baseline: &str) -> Vec<PairedRow> {
    first_seen(
        pairs
            .iter()
            .map(|p| (p.scenario.as_str(), p.server.as_str())),
    )
    .into_iter()
    .map(|(scenario, server)| {
        let mine: Vec<&Pair> = pairs
            .iter()
            .filter(|p| p.scenario == scenario && p.server == server)
            .collect();
        let ratios: Vec<f64> = mine.iter().map(|p| p.server_cpu / p.baseline_cpu).collect();
        PairedRow {
            scenario: scenario.to_string(),
            server: server.to_string(),
            baseline: baseline.to_string(),
            rounds: mine.len(),
            cpu_ratio_spread: spread(&ratios),
            cpu_ratio: median(ratios),
            server_cpu_us_per_msg: median(mine.iter().map(|p| p.server_cpu).collect()),
            baseline_cpu_us_per_msg: median(mine.iter().map(|p| p.baseline_cpu).collect()),
        }
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(scenario: &str, server: &str, s: f64, b: f64) -> Pair {
        Pair {
            scenario: scenario.into(),
            server: server.into(),
            server_cpu: s,
            baseline_cpu: b,
        }
    }

    #[test]
    fn each_run_is_divided_by_its_own_baseline_then_the_median_taken() {
        // The baseline's speed drifts 2× between runs; the per-run ratio does not.
        let pairs = [
            pair("c1000x64", "multishot", 4.9, 5.0),
            pair("c1000x64", "multishot", 9.8, 10.0),
            pair("c1000x64", "multishot", 5.1, 5.0),
            pair("c100x64", "multishot", 3.0, 2.0),
        ];
        let rows = rows(&pairs, "c-epoll");
        assert_eq!(rows.len(), 2);
        let r = &rows[0];
        assert_eq!((r.scenario.as_str(), r.rounds), ("c1000x64", 3));
        assert!((r.cpu_ratio - 0.98).abs() < 1e-9, "{}", r.cpu_ratio);
        assert!((r.cpu_ratio_spread.0 - 0.98).abs() < 1e-9);
        assert!((r.cpu_ratio_spread.1 - 1.02).abs() < 1e-9);
        assert!((r.server_cpu_us_per_msg - 5.1).abs() < 1e-9);
        assert!((rows[1].cpu_ratio - 1.5).abs() < 1e-9);
    }
}
