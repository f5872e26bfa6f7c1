//! A finished map as data (map.json): one record per cell and server, made from the
//! summary's rows of the cell's runs, and what each heat map draws in a cell.

use serde::{Deserialize, Serialize};

use super::axes::{Cell, Slice};
use crate::analysis::grid::{loops, Call, Contrast, Question};
use crate::analysis::summary::Row;

/// map.json.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct MapFile {
    /// The command that made it.
    pub command: String,
    /// When it started (RFC 3339, UTC).
    pub date: String,
    /// The machine, one line (kernel, CPUs).
    pub machine: String,
    /// The server the ratios divide by.
    pub baseline: String,
    /// Rounds per cell.
    pub rounds: u32,
    /// Each run's window and warm-up.
    pub duration: String,
    /// Each run's warm-up.
    pub warmup: String,
    /// Whether every cell ran (false: interrupted; the records hold the cells that did).
    pub complete: bool,
    /// The slices drawn.
    pub slices: Vec<Slice>,
    /// One per cell and server.
    pub records: Vec<Record>,
}

/// One server in one cell.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Record {
    /// The cell's name (`c10.p16384.f16.mall`).
    pub cell: String,
    /// The server.
    pub server: String,
    /// Rounds summarised.
    pub rounds: usize,
    /// Median messages per second.
    pub msgs_per_s: f64,
    /// Median server CPU µs per message, and its user and system parts.
    pub server_cpu_us_per_msg: f64,
    /// Median server user µs per message.
    pub server_user_us_per_msg: f64,
    /// Median server system µs per message.
    pub server_sys_us_per_msg: f64,
    /// Median server CPU µs per connection, where each connection carries one message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cpu_us_per_conn: Option<f64>,
    /// Median CPU per message over the baseline's, round by round.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_ratio: Option<f64>,
    /// Lowest and highest per-round ratio.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_ratio_spread: Option<(f64, f64)>,
    /// The baseline's own A/A spread in this cell (its row only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aa_spread: Option<(f64, f64)>,
    /// Rounds the loadgen marked loadgen-limited.
    pub loadgen_limited_rounds: usize,
    /// Why the server failed this cell, if it did (it never listened, died, corrupted an
    /// echo, or the loadgen failed against it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// Its contrasts in this cell, each called by the one rule.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub contrasts: Vec<Contrast>,
}

/// The records of `rows` (the summary of every finished cell's runs).
pub fn build(rows: &[Row]) -> Vec<Record> {
    rows.iter()
        .filter(|r| Cell::parse(&r.scenario).is_some())
        .map(|r| {
            let v = crate::analysis::summary::verdict(r);
            let failure = r.failure.clone().or_else(|| {
                (v.class == "bad").then(|| v.text.trim_start_matches("FAILED: ").to_string())
            });
            Record {
                cell: r.scenario.clone(),
                server: r.backend.clone(),
                rounds: r.rounds,
                msgs_per_s: r.msgs_per_s,
                server_cpu_us_per_msg: r.server_cpu_us_per_msg,
                server_user_us_per_msg: r.server_user_us_per_msg,
                server_sys_us_per_msg: r.server_sys_us_per_msg,
                server_cpu_us_per_conn: r.server_cpu_us_per_conn,
                cpu_ratio: r.cpu_ratio,
                cpu_ratio_spread: r.cpu_ratio_spread,
                aa_spread: r.aa_spread,
                loadgen_limited_rounds: r.loadgen_limited_rounds,
                failure,
                contrasts: r.contrasts.clone(),
            }
        })
        .collect()
}

/// What a heat map shows in one cell for one contrast.
#[derive(Debug, Clone, PartialEq)]
pub enum HeatCell {
    /// The contrast, called: its ratio, spread and call.
    Called {
        /// Median CPU per message ratio.
        ratio: f64,
        /// The rounds' spread.
        spread: (f64, f64),
        /// The rule's call.
        call: Call,
    },
    /// One of the pair failed the cell.
    Failed(String),
    /// Not run (an interrupted map), or the pair has no common round.
    Missing,
}

impl MapFile {
    /// The contrasts its heat maps draw, as (server, over): io_uring against epoll between
    /// equals (multishot ×epoll-loop, uring ×epoll), then each other server against the
    /// epoll loop, in the order the records first show them.
    pub fn pairs(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        let push = |out: &mut Vec<(String, String)>, s: &str, o: &str| {
            if !out.iter().any(|(a, b)| a == s && b == o) {
                out.push((s.into(), o.into()));
            }
        };
        for q in [Question::Interface, Question::Peer] {
            for c in self.records.iter().flat_map(|r| &r.contrasts) {
                let wanted = match q {
                    Question::Interface => c.question == Some(Question::Interface),
                    _ => c.question == Some(Question::Peer) && c.over == loops()[0],
                };
                if wanted {
                    push(&mut out, &c.server, &c.over);
                }
            }
        }
        // A server whose every cell failed has no contrast to find it by: it is drawn too,
        // against the baseline, its cells FAILED.
        for r in &self.records {
            let known = out.iter().any(|(s, _)| *s == r.server);
            if !known && r.server != self.baseline && r.failure.is_some() {
                let over = if self.baseline.is_empty() {
                    loops()[0]
                } else {
                    &self.baseline
                };
                push(&mut out, &r.server, over);
            }
        }
        out
    }

    /// The record of `server` in `cell`.
    pub fn record(&self, cell: &str, server: &str) -> Option<&Record> {
        self.records
            .iter()
            .find(|r| r.cell == cell && r.server == server)
    }

    /// What the heat map of `server` over `over` shows in `cell`.
    pub fn heat(&self, cell: &Cell, server: &str, over: &str) -> HeatCell {
        let name = cell.name();
        for who in [server, over] {
            if let Some(why) = self.record(&name, who).and_then(|r| r.failure.clone()) {
                return HeatCell::Failed(format!("{who}: {why}"));
            }
        }
        let found = self.record(&name, server).and_then(|r| {
            r.contrasts
                .iter()
                .find(|c| c.over == over)
                .map(|c| HeatCell::Called {
                    ratio: c.cpu_ratio,
                    spread: c.cpu_ratio_spread,
                    call: c.call.unwrap_or(Call::TooFewRounds),
                })
        });
        if let Some(h) = found {
            return h;
        }
        // A pair the 2×2 does not contrast (a peer over the baseline): the row's own ratio.
        match (self.record(&name, server), over == self.baseline) {
            (Some(r), true) => match (r.cpu_ratio, r.cpu_ratio_spread) {
                (Some(ratio), Some(spread)) => {
                    let aa = self.record(&name, over).and_then(|b| b.aa_spread);
                    HeatCell::Called {
                        ratio,
                        spread,
                        call: crate::analysis::grid::call(
                            r.rounds,
                            spread,
                            crate::analysis::grid::noise_band(aa),
                        ),
                    }
                }
                _ => HeatCell::Missing,
            },
            _ => HeatCell::Missing,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::analysis::map::axes::{Axis, Grid};

    /// A map of one cell where multishot against epoll-loop ran `ratios` per round, and
    /// epoll-loop against itself `aa`.
    pub(crate) fn one_cell(ratios: &[f64], aa: &[f64]) -> MapFile {
        let cell = Cell::default();
        let points = |f: &dyn Fn(usize) -> f64| -> Vec<(String, f64)> {
            (0..ratios.len())
                .map(|i| ((i + 1).to_string(), f(i)))
                .collect()
        };
        let base = points(&|_| 10.0);
        let ms = points(&|i| 10.0 * ratios[i]);
        fn pt(v: &[(String, f64)]) -> Vec<crate::analysis::grid::Point<'_>> {
            v.iter()
                .map(|(r, c)| crate::analysis::grid::Point {
                    round: r,
                    cpu: *c,
                    msgs: 1.0,
                })
                .collect()
        }
        let aa_spread = (!aa.is_empty()).then(|| crate::analysis::stats::spread(aa));
        let c = crate::analysis::grid::contrast(
            Question::Interface,
            "multishot",
            "epoll-loop",
            "hand-written loops",
            &pt(&ms),
            &pt(&base),
            aa_spread,
        )
        .unwrap();
        let rec = |server: &str, contrasts: Vec<Contrast>| Record {
            cell: cell.name(),
            server: server.into(),
            rounds: ratios.len(),
            contrasts,
            aa_spread: if server == "epoll-loop" {
                aa_spread
            } else {
                None
            },
            ..Record::default()
        };
        MapFile {
            baseline: "epoll-loop".into(),
            complete: true,
            slices: Grid::from_axes(&[(Axis::Payload, vec![64])])
                .unwrap()
                .slices,
            records: vec![rec("epoll-loop", vec![]), rec("multishot", vec![c])],
            ..MapFile::default()
        }
    }

    #[test]
    fn the_heat_map_calls_a_cell_by_the_one_rule() {
        let cell = Cell::default();
        let call = |ratios: &[f64], aa: &[f64]| match one_cell(ratios, aa).heat(
            &cell,
            "multishot",
            "epoll-loop",
        ) {
            HeatCell::Called { call, .. } => call,
            other => panic!("{other:?}"),
        };
        // Two rounds: too few, however far apart.
        assert_eq!(call(&[0.5, 0.5], &[1.0, 1.0]), Call::TooFewRounds);
        // Inside the A/A band: level, though every round says cheaper.
        assert_eq!(call(&[0.93, 0.95, 0.94], &[0.92, 1.05, 1.0]), Call::Level);
        // Wholly outside it: a winner.
        assert_eq!(call(&[0.80, 0.82, 0.85], &[0.97, 1.02, 1.0]), Call::Winner);
        let m = one_cell(&[0.8, 0.8, 0.8], &[1.0, 1.0, 1.0]);
        assert_eq!(
            m.pairs(),
            vec![("multishot".to_string(), "epoll-loop".to_string())]
        );
    }

    #[test]
    fn a_failed_server_fills_its_cells_with_its_reason() {
        let mut m = one_cell(&[0.8, 0.8, 0.8], &[1.0, 1.0, 1.0]);
        m.records.push(Record {
            cell: Cell::default().name(),
            server: "bad".into(),
            failure: Some("12 bytes corrupted, 0 errors".into()),
            ..Record::default()
        });
        assert!(m.pairs().contains(&("bad".into(), "epoll-loop".into())));
        match m.heat(&Cell::default(), "bad", "epoll-loop") {
            HeatCell::Failed(why) => assert!(why.contains("corrupted"), "{why}"),
            other => panic!("{other:?}"),
        }
        let other = Cell::default().with(Axis::Payload, 1024);
        assert_eq!(m.heat(&other, "multishot", "epoll-loop"), HeatCell::Missing);
    }
}
