//! The map's space: its axes (the loadgen's own flags, and the server's `--buffer-size`), the
//! cells a grid of them holds, the 2-D slices the default map draws, and the checks that
//! refuse a cell before anything runs. Pure: functions of values, tested without processes.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::scenario::Workload;

/// One axis of the map, named by the flag it sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Axis {
    /// Bytes per message (`--payload`).
    Payload,
    /// Messages in flight per connection (`--pipeline`).
    Pipeline,
    /// Connections held open at once (`--connections`).
    Connections,
    /// Messages per connection before it is closed and replaced (`--churn`; 0: unlimited).
    Churn,
    /// The built-in servers' receive buffer (`ringecho-server --buffer-size`; 0: the
    /// backend's default).
    BufferSize,
}

/// Every axis, in the order a cell's name lists them.
pub const AXES: [Axis; 5] = [
    Axis::Connections,
    Axis::Payload,
    Axis::Pipeline,
    Axis::Churn,
    Axis::BufferSize,
];

impl Axis {
    /// The flag it is given as, to the map and to the loadgen (or server).
    pub fn flag(self) -> &'static str {
        match self {
            Axis::Payload => "--payload",
            Axis::Pipeline => "--pipeline",
            Axis::Connections => "--connections",
            Axis::Churn => "--churn",
            Axis::BufferSize => "--buffer-size",
        }
    }

    /// What it is, in a chart's words.
    pub fn label(self) -> &'static str {
        match self {
            Axis::Payload => "message size",
            Axis::Pipeline => "messages in flight per connection",
            Axis::Connections => "connections",
            Axis::Churn => "messages per connection",
            Axis::BufferSize => "server receive buffer",
        }
    }

    /// A value in a chart's words: `16 KiB`, `unlimited`, `default`.
    pub fn show(self, v: u64) -> String {
        match (self, v) {
            (Axis::Churn, 0) => "unlimited".into(),
            (Axis::BufferSize, 0) => "default".into(),
            (Axis::Payload | Axis::BufferSize, v) => bytes(v),
            (_, v) => thousands(v),
        }
    }

    /// One value of a list given on the command line (`unlimited` for churn, `default` for
    /// the buffer size).
    fn parse_value(self, s: &str) -> Result<u64, String> {
        let s = s.trim();
        match (self, s) {
            (Axis::Churn, "unlimited" | "0") => return Ok(0),
            (Axis::BufferSize, "default") => return Ok(0),
            _ => {}
        }
        let v: u64 = s.parse().map_err(|_| {
            format!(
                "{} {s}: not a whole number{}",
                self.flag(),
                match self {
                    Axis::Churn => " (or 'unlimited')",
                    Axis::BufferSize => " (or 'default')",
                    _ => "",
                }
            )
        })?;
        let min = match self {
            Axis::Payload => u64::from(ringecho_loadgen::config::MIN_PAYLOAD),
            _ => 1,
        };
        if v < min {
            return Err(match self {
                Axis::Payload => format!(
                    "--payload {v}: a message under {min} B cannot carry the connection id and \
                     sequence number the echo is checked by"
                ),
                _ => format!("{} {v}: must be at least {min}", self.flag()),
            });
        }
        let max = match self {
            Axis::Payload | Axis::BufferSize => 64 << 20,
            Axis::Pipeline => 4096,
            Axis::Connections => 1_000_000,
            Axis::Churn => u64::MAX,
        };
        if v > max {
            return Err(format!("{} {v}: at most {max}", self.flag()));
        }
        Ok(v)
    }

    /// A comma-separated list of values, each checked, none twice.
    pub fn parse_list(self, list: &str) -> Result<Vec<u64>, String> {
        let mut out = Vec::new();
        for item in list.split(',') {
            let v = self.parse_value(item)?;
            if out.contains(&v) {
                return Err(format!("{} {list}: {item} is listed twice", self.flag()));
            }
            out.push(v);
        }
        Ok(out)
    }
}

/// `64 B`, `16 KiB`, `1 MiB`.
fn bytes(v: u64) -> String {
    if v >= 1 << 20 && v % (1 << 20) == 0 {
        format!("{} MiB", v >> 20)
    } else if v >= 1024 && v % 1024 == 0 {
        format!("{} KiB", v >> 10)
    } else {
        format!("{v} B")
    }
}

/// `10,000`.
fn thousands(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// One point of the space: what the loadgen does and what the server is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cell {
    /// Connections held open at once.
    pub connections: u32,
    /// Bytes per message.
    pub payload: u32,
    /// Messages in flight per connection.
    pub pipeline: u32,
    /// Messages per connection before it is replaced; None: as long as the run.
    pub churn: Option<u64>,
    /// The built-in servers' `--buffer-size`; None: each backend's default.
    pub buffer_size: Option<u32>,
}

impl Default for Cell {
    /// Where an axis the grid does not vary stands: 100 connections × 64 B, one in flight,
    /// never replaced, each backend's own buffer.
    fn default() -> Cell {
        Cell {
            connections: 100,
            payload: 64,
            pipeline: 1,
            churn: None,
            buffer_size: None,
        }
    }
}

impl Cell {
    /// Its value on `axis` (0 for unlimited churn and the default buffer).
    pub fn get(&self, axis: Axis) -> u64 {
        match axis {
            Axis::Payload => u64::from(self.payload),
            Axis::Pipeline => u64::from(self.pipeline),
            Axis::Connections => u64::from(self.connections),
            Axis::Churn => self.churn.unwrap_or(0),
            Axis::BufferSize => self.buffer_size.map_or(0, u64::from),
        }
    }

    /// The cell with `axis` set to `v` (a value [`Axis::parse_list`] checked).
    pub fn with(mut self, axis: Axis, v: u64) -> Cell {
        let small = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
        match axis {
            Axis::Payload => self.payload = small(v),
            Axis::Pipeline => self.pipeline = small(v),
            Axis::Connections => self.connections = small(v),
            Axis::Churn => self.churn = (v > 0).then_some(v),
            Axis::BufferSize => self.buffer_size = (v > 0).then(|| small(v)),
        }
        self
    }

    /// Its name in tags and file names: `c10.p16384.f16.mall` (connections, payload, in
    /// flight, messages per connection), `.b65536` when the buffer is set. No name of one
    /// cell begins another's followed by `-`, so a cell's runs are found by prefix.
    pub fn name(&self) -> String {
        let m = self.churn.map_or("all".to_string(), |n| n.to_string());
        let mut s = format!(
            "c{}.p{}.f{}.m{m}",
            self.connections, self.payload, self.pipeline
        );
        if let Some(b) = self.buffer_size {
            s.push_str(&format!(".b{b}"));
        }
        s
    }

    /// The cell a name stands for; None for a name that is not one (a scenario's).
    pub fn parse(name: &str) -> Option<Cell> {
        let mut parts = name.split('.');
        let mut num = |prefix: char| -> Option<String> {
            parts.next()?.strip_prefix(prefix).map(String::from)
        };
        let connections = num('c')?.parse().ok()?;
        let payload = num('p')?.parse().ok()?;
        let pipeline = num('f')?.parse().ok()?;
        let churn = match num('m')?.as_str() {
            "all" => None,
            n => Some(n.parse().ok()?),
        };
        let buffer_size = match parts.next() {
            None => None,
            Some(b) => Some(b.strip_prefix('b')?.parse().ok()?),
        };
        if parts.next().is_some() {
            return None;
        }
        Some(Cell {
            connections,
            payload,
            pipeline,
            churn,
            buffer_size,
        })
    }

    /// One line in words: `10 connections × 16 KiB, 16 in flight, unlimited messages per
    /// connection`.
    pub fn describe(&self) -> String {
        let per = match self.churn {
            Some(1) => "one message per connection".to_string(),
            _ => format!(
                "{} messages per connection",
                Axis::Churn.show(self.get(Axis::Churn))
            ),
        };
        let mut s = format!(
            "{} connections × {}, {} in flight, {per}",
            Axis::Connections.show(self.get(Axis::Connections)),
            Axis::Payload.show(self.get(Axis::Payload)),
            self.pipeline,
        );
        if let Some(b) = self.buffer_size {
            s.push_str(&format!(", --buffer-size {b}"));
        }
        s
    }

    /// The loadgen flags it stands for; a replaced connection closes with FIN.
    pub fn loadgen_flags(&self) -> String {
        let mut s = format!(
            "--connections {} --payload {} --pipeline {}",
            self.connections, self.payload, self.pipeline
        );
        if let Some(n) = self.churn {
            s.push_str(&format!(" --churn {n} --rst-share 0"));
        }
        s
    }

    /// What the built-in servers are given in this cell.
    pub fn server_args(&self) -> Vec<String> {
        self.buffer_size
            .map(|b| vec!["--buffer-size".to_string(), b.to_string()])
            .unwrap_or_default()
    }

    /// The cell as the comparison's rounds run it.
    pub fn workload(&self) -> Workload {
        Workload {
            name: self.name(),
            flags: self.loadgen_flags(),
            capped: false,
            server_args: self.server_args(),
            in_map: true,
            split: None,
        }
    }

    /// The bytes it keeps in flight at once.
    pub fn bytes_in_flight(&self) -> u64 {
        u64::from(self.connections) * u64::from(self.pipeline) * u64::from(self.payload)
    }

    /// Why this cell cannot run within `limits`, if it cannot.
    pub fn refusal(&self, limits: &Limits) -> Option<String> {
        // Each side holds a descriptor per connection, and a few of its own.
        let fds = u64::from(self.connections) + FD_MARGIN;
        if fds > limits.open_files {
            return Some(format!(
                "{}: {} connections need {fds} descriptors in the loadgen and as many in the \
                 server; the open-file limit here is {}",
                self.name(),
                self.connections,
                limits.open_files
            ));
        }
        // Each byte in flight sits in the loadgen's buffers, the kernel's queues both ways
        // and the server's buffers: four copies at worst.
        let need = self.bytes_in_flight().saturating_mul(4);
        if need > limits.memory_bytes / 2 {
            return Some(format!(
                "{}: {} MiB in flight (×4 for the copies each side and the kernel hold) is more \
                 than half the {} MiB of memory available",
                self.name(),
                self.bytes_in_flight() >> 20,
                limits.memory_bytes >> 20
            ));
        }
        if let Some(n) = self.churn {
            if n < u64::from(self.pipeline) {
                return Some(format!(
                    "{}: {} in flight on a connection that carries {n} message(s): it could \
                     never have more than {n} in flight",
                    self.name(),
                    self.pipeline
                ));
            }
        }
        None
    }
}

/// Descriptors each side needs beyond one per connection.
const FD_MARGIN: u64 = 64;

/// What this machine allows a cell: open files and memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The hard open-file limit the loadgen and the server may raise theirs to.
    pub open_files: u64,
    /// Memory available, bytes.
    pub memory_bytes: u64,
}

/// A 2-D slice of the space: two axes varied, the others where `at` has them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slice {
    /// What it shows, in words.
    pub name: String,
    /// The axis across.
    pub x: Axis,
    /// Its values, left to right.
    pub xs: Vec<u64>,
    /// The axis down.
    pub y: Axis,
    /// Its values, top to bottom.
    pub ys: Vec<u64>,
    /// Where the other axes stand.
    pub at: Cell,
}

impl Slice {
    /// Its cells, row by row.
    pub fn cells(&self) -> Vec<Cell> {
        let mut out = Vec::new();
        for &y in &self.ys {
            for &x in &self.xs {
                out.push(self.at.with(self.y, y).with(self.x, x));
            }
        }
        out
    }

    /// The cell at column `x`, row `y` (values of its axes).
    pub fn cell(&self, x: u64, y: u64) -> Cell {
        self.at.with(self.y, y).with(self.x, x)
    }
}

/// The slices a map runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grid {
    /// Drawn one heat map per slice and contrast.
    pub slices: Vec<Slice>,
}

impl Grid {
    /// The default map: message size × messages in flight on ten connections (where streams
    /// and large messages sit), and connections × messages per connection at 64 B (where
    /// churn and many connections sit); `quick`: two values on each axis.
    pub fn default_slices(quick: bool) -> Grid {
        let (payloads, flights, conns, churns): (&[u64], &[u64], &[u64], &[u64]) = if quick {
            (&[64, 16384], &[1, 16], &[10, 1000], &[1, 0])
        } else {
            (
                &[64, 1024, 16384, 65536],
                &[1, 16, 64],
                &[1, 100, 1000, 10000],
                &[1, 10, 0],
            )
        };
        let ten = Cell {
            connections: 10,
            ..Cell::default()
        };
        Grid {
            slices: vec![
                Slice {
                    name: "message size × messages in flight, 10 connections".into(),
                    x: Axis::Payload,
                    xs: payloads.to_vec(),
                    y: Axis::Pipeline,
                    ys: flights.to_vec(),
                    at: ten,
                },
                Slice {
                    name: "connections × messages per connection, 64 B, one in flight".into(),
                    x: Axis::Connections,
                    xs: conns.to_vec(),
                    y: Axis::Churn,
                    ys: churns.to_vec(),
                    at: Cell::default(),
                },
            ],
        }
    }

    /// The grid the axis lists give: their full product, axes not listed where
    /// [`Cell::default`] has them. The first two axes listed with more than one value are
    /// each slice's across and down; a third or more splits it into a slice per
    /// combination of theirs.
    pub fn from_axes(lists: &[(Axis, Vec<u64>)]) -> Result<Grid, String> {
        let mut at = Cell::default();
        let mut varied: Vec<(Axis, Vec<u64>)> = Vec::new();
        for (axis, values) in lists {
            match values.as_slice() {
                [] => return Err(format!("{}: an empty list", axis.flag())),
                [v] => at = at.with(*axis, *v),
                _ => varied.push((*axis, values.clone())),
            }
        }
        // Fewer than two varied axes: the missing ones are the fixed axes' single values.
        let fixed = |taken: &[(Axis, Vec<u64>)]| {
            AXES.into_iter()
                .find(|a| !taken.iter().any(|(t, _)| t == a))
                .map(|a| (a, vec![at.get(a)]))
                .expect("five axes")
        };
        while varied.len() < 2 {
            let f = fixed(&varied);
            varied.push(f);
        }
        let (x, xs) = varied[0].clone();
        let (y, ys) = varied[1].clone();
        let mut combos: Vec<Cell> = vec![at];
        for (axis, values) in &varied[2..] {
            combos = combos
                .iter()
                .flat_map(|c| values.iter().map(move |v| c.with(*axis, *v)))
                .collect();
        }
        let slices = combos
            .into_iter()
            .map(|c| {
                let rest: Vec<String> = AXES
                    .into_iter()
                    .filter(|a| *a != x && *a != y)
                    .map(|a| format!("{} {}", a.label(), a.show(c.get(a))))
                    .collect();
                Slice {
                    name: format!("{} × {}, {}", x.label(), y.label(), rest.join(", ")),
                    x,
                    xs: xs.clone(),
                    y,
                    ys: ys.clone(),
                    at: c,
                }
            })
            .collect();
        Ok(Grid { slices })
    }

    /// Every cell once, in run order.
    pub fn cells(&self) -> Vec<Cell> {
        let mut out: Vec<Cell> = Vec::new();
        for c in self.slices.iter().flat_map(Slice::cells) {
            if !out.contains(&c) {
                out.push(c);
            }
        }
        out
    }

    /// Every cell that cannot run here, each with its reason; empty when all can.
    pub fn refusals(&self, limits: &Limits) -> Vec<String> {
        self.cells()
            .iter()
            .filter_map(|c| c.refusal(limits))
            .collect()
    }

    /// How long the map takes: each cell's rounds of `runs_per_round` runs, each its
    /// warm-up and window, the server's start and stop, and the loadgen's connect phase
    /// (10,000 connections a second).
    pub fn estimate(&self, rounds: u32, runs_per_round: usize, window: Duration) -> Duration {
        self.cells()
            .iter()
            .map(|c| {
                let connect = Duration::from_secs_f64(f64::from(c.connections) / 10_000.0);
                (window + RUN_OVERHEAD + connect) * rounds * runs_per_round as u32
            })
            .sum()
    }
}

/// A run's cost beyond its windows: the server started and stopped, the loadgen's start.
const RUN_OVERHEAD: Duration = Duration::from_millis(400);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cells_name_reads_back_and_no_name_prefixes_another() {
        let cells = [
            Cell::default(),
            Cell::default().with(Axis::Churn, 1),
            Cell::default().with(Axis::BufferSize, 65536),
            Cell::default()
                .with(Axis::Payload, 16384)
                .with(Axis::Pipeline, 16),
        ];
        for c in cells {
            assert_eq!(Cell::parse(&c.name()), Some(c), "{}", c.name());
            for d in cells.iter().filter(|d| **d != c) {
                assert!(!d.name().starts_with(&format!("{}-", c.name())));
            }
        }
        assert_eq!(Cell::default().name(), "c100.p64.f1.mall");
        assert!(Cell::parse("c100x64").is_none() && Cell::parse("cpr").is_none());
        assert!(Cell::parse("c1.p2.f3.mall.b4.x").is_none());
        assert_eq!(
            Cell::default().with(Axis::Churn, 10).loadgen_flags(),
            "--connections 100 --payload 64 --pipeline 1 --churn 10 --rst-share 0"
        );
    }

    #[test]
    fn lists_are_checked_value_by_value() {
        assert_eq!(
            Axis::Payload.parse_list("64,1024,16384"),
            Ok(vec![64, 1024, 16384])
        );
        assert_eq!(Axis::Churn.parse_list("1,10,unlimited"), Ok(vec![1, 10, 0]));
        assert_eq!(
            Axis::BufferSize.parse_list("default,65536"),
            Ok(vec![0, 65536])
        );
        let small = Axis::Payload.parse_list("64,8").unwrap_err();
        assert!(small.contains("under 16 B"), "{small}");
        assert!(Axis::Pipeline.parse_list("0").is_err());
        assert!(Axis::Connections.parse_list("1,x").is_err());
        assert!(Axis::Payload
            .parse_list("64,64")
            .unwrap_err()
            .contains("twice"));
        assert_eq!(Axis::Payload.show(16384), "16 KiB");
        assert_eq!(Axis::Connections.show(10000), "10,000");
    }

    #[test]
    fn cells_past_the_machine_are_refused_with_their_reason() {
        let limits = Limits {
            open_files: 20_000,
            memory_bytes: 1 << 30,
        };
        let many = Cell::default().with(Axis::Connections, 50_000);
        assert!(many.refusal(&limits).unwrap().contains("open-file limit"));
        let big = Cell::default()
            .with(Axis::Connections, 1000)
            .with(Axis::Pipeline, 64)
            .with(Axis::Payload, 65536);
        assert!(big.refusal(&limits).unwrap().contains("in flight"));
        let churn = Cell::default().with(Axis::Churn, 1).with(Axis::Pipeline, 4);
        assert!(churn.refusal(&limits).is_some());
        assert!(Grid::default_slices(false).refusals(&limits).is_empty());
    }

    #[test]
    fn the_axes_given_make_slices_and_the_default_map_fits_its_time() {
        let g = Grid::from_axes(&[
            (Axis::Payload, vec![64, 1024]),
            (Axis::Pipeline, vec![1, 16]),
            (Axis::Connections, vec![10]),
            (Axis::BufferSize, vec![4096, 65536]),
        ])
        .unwrap();
        assert_eq!(g.slices.len(), 2);
        assert_eq!(g.cells().len(), 8);
        assert!(g.cells().iter().all(|c| c.connections == 10));
        assert_eq!(
            (g.slices[0].x, g.slices[0].y),
            (Axis::Payload, Axis::Pipeline)
        );
        let one = Grid::from_axes(&[(Axis::Payload, vec![64, 1024])]).unwrap();
        assert_eq!((one.slices.len(), one.cells().len()), (1, 2));
        let full = Grid::default_slices(false);
        assert_eq!(full.cells().len(), 24);
        // Four backends and the A/A run, three rounds of 1.5 s windows and 0.5 s warm-ups.
        let t = full.estimate(3, 5, Duration::from_secs(2));
        assert!(t < Duration::from_secs(20 * 60), "{t:?}");
        let quick = Grid::default_slices(true);
        let t = quick.estimate(2, 4, Duration::from_millis(1300));
        assert!(t < Duration::from_secs(5 * 60), "{t:?}");
    }
}
