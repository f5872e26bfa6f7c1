//! The scaling curve (`compare --threads 1,2,4`): each backend's figures at each server
//! thread count, its ratio to the baseline at that count, the loadgen's share of its cores
//! (a point where the loadgen saturated is marked, not read as the server's), and how evenly
//! SO_REUSEPORT spread the connections over the server's threads. Pure: a function of the
//! summary's rows.

use serde::{Deserialize, Serialize};

use super::summary::Row;

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
}
