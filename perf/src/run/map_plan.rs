//! The map's plan (`ringecho-perf map`, `compare --map`): its flags, the grid they ask for,
//! the machine's limits and the estimate checked before anything runs. The runs are the
//! comparison's ([`super::Bench`]); the space is `crate::analysis::map`.

use std::path::PathBuf;
use std::time::Duration;

use crate::analysis::map::{Axis, Grid, Limits};

/// `ringecho-perf map`'s flags: the servers as compare takes them, the axes as the
/// loadgen's own flags take one value.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// The servers compared.
    #[command(flatten)]
    pub servers: crate::run::Servers,
    /// Which cores each side runs on.
    #[command(flatten)]
    pub cores: crate::run::Cores,
    /// Message sizes, comma-separated (at least 16 B each).
    #[arg(long, value_name = "LIST")]
    pub payload: Option<String>,
    /// Messages in flight per connection, comma-separated.
    #[arg(long, value_name = "LIST")]
    pub pipeline: Option<String>,
    /// Connections held open at once, comma-separated.
    #[arg(long, value_name = "LIST")]
    pub connections: Option<String>,
    /// Messages per connection before it is replaced (FIN), comma-separated; 'unlimited'
    /// keeps it open.
    #[arg(long, value_name = "LIST")]
    pub churn: Option<String>,
    /// The built-in servers' --buffer-size, comma-separated; 'default' is each backend's
    /// own. Other servers run as they are.
    #[arg(long, value_name = "LIST")]
    pub buffer_size: Option<String>,
    /// Fewer cells (two values on each default axis), 2 rounds of 1 s and no A/A pair: a
    /// smoke test whose contrasts say "too few rounds to call".
    #[arg(long)]
    pub quick: bool,
    /// Rounds per cell, servers interleaved within each [default: 3; 2 with --quick].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub rounds: Option<u32>,
    /// Each run's measured window [default: 1500ms; 1s with --quick].
    #[arg(long, value_parser = crate::run::duration_arg)]
    pub duration: Option<String>,
    /// Each run's warm-up [default: 500ms; 300ms with --quick].
    #[arg(long, value_parser = crate::run::duration_or_zero_arg)]
    pub warmup: Option<String>,
    /// Refuse to start a map estimated to take longer than this.
    #[arg(long, default_value = "30m", value_parser = crate::run::duration_arg)]
    pub time_limit: String,
    /// The results directory [default: results/<UTC time>].
    #[arg(long)]
    pub out: Option<PathBuf>,
}

impl Options {
    /// The map these flags ask for; the error is a usage error's message.
    pub fn plan(&self) -> Result<MapPlan, String> {
        let given = [
            (Axis::Payload, &self.payload),
            (Axis::Pipeline, &self.pipeline),
            (Axis::Connections, &self.connections),
            (Axis::Churn, &self.churn),
            (Axis::BufferSize, &self.buffer_size),
        ];
        let mut lists = Vec::new();
        for (axis, list) in given {
            if let Some(l) = list {
                lists.push((axis, axis.parse_list(l)?));
            }
        }
        let grid = if lists.is_empty() {
            Grid::default_slices(self.quick)
        } else {
            Grid::from_axes(&lists)?
        };
        let mut plan = MapPlan::new(
            grid,
            self.quick,
            self.rounds,
            self.duration.clone(),
            self.warmup.clone(),
        );
        plan.time_limit =
            ringecho_common::parse_duration(&self.time_limit).map_err(|e| e.to_string())?;
        Ok(plan)
    }
}

impl Limits {
    /// This machine's, from /proc (generous when unreadable: the runs then say).
    pub fn here() -> Limits {
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
        let open_files = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l.split_whitespace().nth(4))
            .and_then(|v| v.parse().ok())
            .unwrap_or(u64::MAX);
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_bytes = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemAvailable:"))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(u64::MAX, |kib| kib * 1024);
        Limits {
            open_files,
            memory_bytes,
        }
    }
}

/// A map to run: its grid, rounds and windows, and the time it may take.
#[derive(Debug, Clone)]
pub struct MapPlan {
    /// The slices.
    pub grid: Grid,
    /// Fewer rounds and no A/A pair.
    pub quick: bool,
    /// Rounds per cell.
    pub rounds: u32,
    /// Each run's window.
    pub duration: String,
    /// Each run's warm-up.
    pub warmup: String,
    /// The longest the map may be estimated to take.
    pub time_limit: Duration,
}

impl MapPlan {
    /// The plan of `grid`, the defaults filled in.
    pub fn new(
        grid: Grid,
        quick: bool,
        rounds: Option<u32>,
        duration: Option<String>,
        warmup: Option<String>,
    ) -> MapPlan {
        let (d, w) = if quick {
            ("1s", "300ms")
        } else {
            ("1500ms", "500ms")
        };
        MapPlan {
            grid,
            quick,
            rounds: rounds.unwrap_or(if quick { 2 } else { 3 }),
            duration: duration.unwrap_or_else(|| d.into()),
            warmup: warmup.unwrap_or_else(|| w.into()),
            time_limit: Duration::from_secs(30 * 60),
        }
    }

    /// The server flags its axes give, one set per distinct value (for asking the server
    /// up front whether it takes them).
    pub fn server_args(&self) -> Vec<Vec<String>> {
        let mut out: Vec<Vec<String>> = Vec::new();
        for c in self.grid.cells() {
            let a = c.server_args();
            if !a.is_empty() && !out.contains(&a) {
                out.push(a);
            }
        }
        out
    }

    /// One run's warm-up and window together.
    pub fn window(&self) -> Duration {
        let d = ringecho_common::parse_duration(&self.duration).unwrap_or_default();
        let w = ringecho_common::parse_duration_or_zero(&self.warmup).unwrap_or_default();
        d + w
    }

    /// The checks before anything runs, for `servers` servers (and the baseline's A/A run
    /// unless quick): every cell within `limits`, the estimate within the time limit. Ok
    /// holds the estimate's line.
    pub fn check(&self, servers: usize, limits: &Limits) -> Result<String, String> {
        let refused = self.grid.refusals(limits);
        if !refused.is_empty() {
            return Err(format!(
                "{} cell(s) cannot run here:\n  {}",
                refused.len(),
                refused.join("\n  ")
            ));
        }
        let runs = servers + usize::from(!self.quick && servers > 1);
        let t = self.grid.estimate(self.rounds, runs, self.window());
        let line = format!(
            "map: {} cells × {runs} runs × {} rounds of {} + {} warm-up: about {} min",
            self.grid.cells().len(),
            self.rounds,
            self.duration,
            self.warmup,
            t.as_secs().div_ceil(60)
        );
        if t > self.time_limit {
            return Err(format!(
                "{line}, past --time-limit {} min: fewer values, fewer rounds or a longer limit",
                self.time_limit.as_secs() / 60
            ));
        }
        Ok(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_map_past_its_time_limit_or_the_machine_is_refused_before_it_runs() {
        let limits = Limits {
            open_files: 20_000,
            memory_bytes: 16 << 30,
        };
        let plan = MapPlan::new(Grid::default_slices(false), false, None, None, None);
        let line = plan.check(4, &limits).unwrap();
        assert!(line.contains("24 cells × 5 runs × 3 rounds"), "{line}");
        let mut long = plan.clone();
        long.time_limit = Duration::from_secs(60);
        assert!(long.check(4, &limits).unwrap_err().contains("--time-limit"));
        let few = Limits {
            open_files: 1024,
            ..limits
        };
        let err = plan.check(4, &few).unwrap_err();
        assert!(err.contains("open-file limit"), "{err}");
    }
}
