//! What the table and the report show, derived once from the summary's rows (as ripgrep
//! derives its high-level settings once from the flags): the scenarios in the order they ran,
//! each scenario's 2×2 of interface × driver with its ratios and sentences, and each server's
//! socket options. The renderings (`crate::render`) only lay these out; none of them names a
//! backend or recomputes an order.

use super::grid::{self, Contrast, Question, DRIVERS, INTERFACES};
use super::sockopts::SocketOptions;
use super::stats::first_seen;
use super::summary::Row;

/// Scenarios in the order they first appear in `rows`.
pub fn scenario_order(rows: &[Row]) -> Vec<String> {
    first_seen(rows.iter().map(|r| r.scenario.clone()))
}

/// A ratio as shown: the median of per-round ratios and their spread.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ratio {
    /// The median.
    pub median: f64,
    /// The lowest and highest per-round ratio.
    pub spread: (f64, f64),
}

impl From<&Contrast> for Ratio {
    fn from(c: &Contrast) -> Ratio {
        Ratio {
            median: c.cpu_ratio,
            spread: c.cpu_ratio_spread,
        }
    }
}

/// One built-in server's place in a scenario's 2×2.
#[derive(Debug, Clone, PartialEq)]
pub struct Place {
    /// The server.
    pub server: &'static str,
    /// Its median CPU µs per message and user µs per message; `None` without a clean run.
    pub cpu: Option<(f64, f64)>,
}

/// One driver's row of the 2×2: a place per interface ([`INTERFACES`]'s order) and the
/// io_uring ×epoll ratio between them.
#[derive(Debug, Clone, PartialEq)]
pub struct DriverRow {
    /// The driver ([`DRIVERS`]).
    pub driver: &'static str,
    /// Each interface's server.
    pub places: [Place; 2],
    /// io_uring's server over epoll's, this driver held equal.
    pub interface: Option<Ratio>,
}

/// One scenario's 2×2 of interface × driver.
#[derive(Debug, Clone)]
pub struct GridView {
    /// The scenario.
    pub scenario: String,
    /// The column heads: the interfaces.
    pub interfaces: [&'static str; 2],
    /// A row per driver.
    pub rows: [DriverRow; 2],
    /// What the runtime costs, per interface: the runtime's server over the loop's.
    pub runtime: [Option<Ratio>; 2],
    /// Every contrast the scenario's rows carry, by question: its sentences.
    pub contrasts: Vec<Contrast>,
}

/// Per scenario, in the rows' order, the 2×2 of the scenarios whose rows carry contrasts.
pub fn grids(rows: &[Row]) -> Vec<GridView> {
    scenario_order(rows)
        .into_iter()
        .filter_map(|scenario| {
            let mut contrasts: Vec<Contrast> = rows
                .iter()
                .filter(|r| r.scenario == scenario)
                .flat_map(|r| r.contrasts.iter().cloned())
                .collect();
            if contrasts.is_empty() {
                return None;
            }
            contrasts.sort_by_key(|c| c.question);
            let ratio = |q: Question, along: &str| {
                let (server, over) = grid::pair(q, along)?;
                contrasts
                    .iter()
                    .find(|c| c.server == server && c.over == over)
                    .map(Ratio::from)
            };
            let place = |interface: &str, driver: &str| {
                let server = grid::cell(interface, driver);
                let cpu = rows
                    .iter()
                    .find(|r| r.scenario == scenario && r.backend == server && r.failure.is_none())
                    .map(|r| (r.server_cpu_us_per_msg, r.server_user_us_per_msg));
                Place { server, cpu }
            };
            let row = |driver: &'static str| DriverRow {
                driver,
                places: INTERFACES.map(|i| place(i, driver)),
                interface: ratio(Question::Interface, driver),
            };
            Some(GridView {
                rows: DRIVERS.map(row),
                runtime: INTERFACES.map(|i| ratio(Question::Runtime, i)),
                interfaces: INTERFACES,
                scenario,
                contrasts,
            })
        })
        .collect()
}

/// Each server's accepted-socket options, in the order the servers first appear, and the
/// servers whose TCP_NODELAY differs from `baseline`'s.
pub fn socket_options(rows: &[Row], baseline: &str) -> (Vec<(String, SocketOptions)>, Vec<String>) {
    let options: Vec<(String, SocketOptions)> = first_seen(
        rows.iter()
            .filter(|r| r.socket_options.is_some())
            .map(|r| r.backend.clone()),
    )
    .into_iter()
    .filter_map(|name| {
        let o = rows
            .iter()
            .find(|r| r.backend == name)
            .and_then(|r| r.socket_options.clone())?;
        Some((name, o))
    })
    .collect();
    let differ = super::sockopts::differing(&options, baseline)
        .into_iter()
        .map(String::from)
        .collect();
    (options, differ)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::summary::{summarise, tests::run};

    #[test]
    fn the_grid_view_places_each_server_and_its_ratios() {
        let mut reports = Vec::new();
        for round in ["1", "2", "3"] {
            reports.push(run("s", "epoll-loop", round, 100.0, 5.0));
            reports.push(run("s", "multishot", round, 100.0, 4.0));
            reports.push(run("s", "epoll", round, 100.0, 6.0));
        }
        let rows = summarise(&reports, "epoll-loop");
        let views = grids(&rows);
        assert_eq!(views.len(), 1);
        let v = &views[0];
        assert_eq!(v.interfaces, INTERFACES);
        assert_eq!(v.rows[0].places[1].server, "multishot");
        assert_eq!(v.rows[0].places[1].cpu.map(|c| c.0), Some(4.0));
        assert_eq!(v.rows[0].interface.map(|r| r.median), Some(0.8));
        // uring did not run: its place is empty and so is every ratio it is part of.
        assert_eq!(v.rows[1].places[1].cpu, None);
        assert_eq!(v.rows[1].interface, None);
        assert_eq!(v.runtime[0].map(|r| r.median), Some(1.2));
        assert_eq!(v.runtime[1], None);
    }
}
