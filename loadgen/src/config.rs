//! Command-line configuration of a load run, validated before any connection is opened.

use std::net::{IpAddr, Ipv4Addr};

use ringecho_common::HostPort;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use ringecho_common::{parse_duration, parse_duration_or_zero};

/// `ringecho-loadgen`: thousands of verified echo connections with FIN/RST closes and
/// HdrHistogram latency.
#[derive(Debug, Parser)]
#[command(
    name = "ringecho-loadgen",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// A subcommand, or none for a load run.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The load run.
    #[command(flatten)]
    pub run: RunConfig,
    /// Print a man page or shell completions for this program, then exit.
    #[arg(long, value_enum, value_name = "WHAT")]
    pub generate: Option<ringecho_common::Generate>,
}

/// Subcommands besides a load run.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Sums interval logs (--hist-log) from several loadgens into one report: histograms
    /// added, counts summed, checked against the server's counters and the expected hosts.
    Merge(MergeArgs),
    /// The latency–load curve: open-loop runs at rising rates (the run flags apply to each
    /// step) until the server or the loadgen saturates; a table, --json and --svg.
    Sweep(Box<SweepArgs>),
    /// Prints the wall-clock time DUR from now as Unix seconds, for --start-at: how
    /// fleet.sh gives every load host one start, read by the loadgens' own duration rule.
    StartIn(StartInArgs),
}

/// `start-in`'s input.
#[derive(Debug, Clone, Args)]
pub struct StartInArgs {
    /// How long from now (0s: now).
    #[arg(value_name = "DUR", value_parser = parse_duration_or_zero)]
    pub after: Duration,
}

/// `merge`'s inputs.
#[derive(Debug, Clone, Args)]
pub struct MergeArgs {
    /// Interval log files to merge.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Write the merged report as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// How many logs the run should have: fewer is reported INCOMPLETE and exits 1.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub expect: Option<u64>,
    /// The server's /metrics saved before the run (e.g. curl -s URL > before.prom).
    #[arg(long, requires = "server_after")]
    pub server_before: Option<PathBuf>,
    /// The server's /metrics saved after the run: FIN, RST, messages and bytes must equal
    /// the loadgens' sums.
    #[arg(long, requires = "server_before")]
    pub server_after: Option<PathBuf>,
}

/// A sweep: the run flags, and the rates to step through.
#[derive(Debug, Clone, Args)]
pub struct SweepArgs {
    /// The offered rates, listed (e.g. 5000,10000,20000) instead of --from/--to/--steps.
    #[arg(long, value_delimiter = ',', value_parser = parse_rate)]
    pub rates: Option<Vec<f64>>,
    /// The lowest offered rate, msgs/s.
    #[arg(long, default_value_t = 5000.0, value_parser = parse_rate)]
    pub from: f64,
    /// The highest offered rate, msgs/s.
    #[arg(long, default_value_t = 200_000.0, value_parser = parse_rate)]
    pub to: f64,
    /// Steps from --from to --to, spaced geometrically.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub steps: u32,
    /// The p99 latency that defines the knee.
    #[arg(long, default_value = "1ms", value_parser = parse_duration)]
    pub p99_bound: Duration,
    /// Draw the curve into this SVG.
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// The run each step makes (its --rate is the step's).
    #[command(flatten)]
    pub run: RunConfig,
}

fn parse_tag(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("'{s}' is not KEY=VALUE"))?;
    Ok((k.to_string(), v.to_string()))
}

/// One load run.
#[derive(Debug, Clone, Args)]
pub struct RunConfig {
    /// Server address, HOST:PORT. A host name is resolved and its addresses tried in turn
    /// until one accepts (`localhost`: ::1, then 127.0.0.1 on most hosts); the report names
    /// the one used.
    #[arg(long, default_value = "127.0.0.1:8000", value_parser = HostPort::parse, value_name = "HOST:PORT")]
    pub addr: HostPort,

    /// Connections held open concurrently.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub connections: u32,

    /// Threads, each with its own runtime [default: available cores].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,

    /// Bytes per message; at least 16 (the connection id and sequence number it carries).
    #[arg(long, default_value_t = 64, value_parser = parse_payload)]
    pub payload: u32,

    /// Measure for this long after the warm-up (e.g. 10s) [default: 10s unless --messages].
    #[arg(long, value_parser = parse_duration, conflicts_with = "messages")]
    pub duration: Option<Duration>,

    /// Messages per connection slot instead of a duration (exact counts).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub messages: Option<u64>,

    /// Load before the measured window, not counted (time-bound runs only): `auto` runs until
    /// the per-interval latency percentiles stop moving (p50 within 1.5×, p99 within 2×
    /// over three intervals of at least 200 echoes), at most --warmup-max; or a fixed time
    /// (0s: measure from the start).
    #[arg(long, default_value = "auto", value_parser = parse_warmup, value_name = "auto|DUR", conflicts_with = "messages")]
    pub warmup: Warmup,

    /// The longest `--warmup auto` waits for latency to settle; past it the window opens and
    /// the report says it may hold a transient.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub warmup_max: Duration,

    /// Share of closes made with SO_LINGER=0 (RST), from 0 to 1.
    #[arg(long, default_value_t = 0.0, value_parser = parse_share, allow_hyphen_values = true)]
    pub rst_share: f64,

    /// Open-loop: this many messages per second in total, latency from each intended send
    /// time (coordinated omission corrected) [default: closed loop].
    #[arg(long, value_parser = parse_rate)]
    pub rate: Option<f64>,

    /// Open loop: how sends are spaced. Poisson (the default) is how independent clients
    /// arrive, so queueing shows as it would in service; uniform is the gentlest load.
    #[arg(long, value_enum, default_value = "poisson")]
    pub arrivals: crate::pace::Arrivals,

    /// Open loop: `precise` spins the last 250 µs before each send's time (sends leave within
    /// microseconds; the spin's CPU is reported apart); `sleep` sleeps on a timer with the
    /// kernel's slack instead (no spinning, for shared machines; sends leave tens of µs late;
    /// docs/loadgen.md has both measured).
    #[arg(long, value_enum, default_value = "precise")]
    pub pacer: crate::pace::PacerMode,

    /// Messages in flight per connection at most (closed and open loop).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub pipeline: u32,

    /// Connects per second in the connect phase (before anything is measured).
    #[arg(long, default_value_t = 10_000.0, value_parser = parse_connect_rate)]
    pub connect_rate: f64,

    /// Begin the load at this wall-clock time (RFC 3339, e.g. 2026-11-25T10:00:00Z, or
    /// Unix seconds), after connecting: loadgens on several hosts start together.
    #[arg(long, value_parser = parse_start_at)]
    pub start_at: Option<std::time::SystemTime>,

    /// Exit non-zero when the run is loadgen-limited (see the report's reasons).
    #[arg(long)]
    pub strict: bool,

    /// Seed of the open-loop schedules (same seed, same send times).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// Close each connection after this many messages and open a new one.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub churn: Option<u64>,

    /// Local addresses to connect from, spread over connections: a list (127.0.0.2,127.0.0.3)
    /// or a range (127.0.0.2-127.0.0.9); each gives ~28k more ephemeral ports.
    #[arg(long, value_parser = parse_source_addrs)]
    pub source_addrs: Option<SourceAddrs>,

    /// Give up on a connect, or on an echo, after this long.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub io_timeout: Duration,

    /// Write the report as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,

    /// Write the latency histogram in HdrHistogram's percentile-distribution (.hgrm) format.
    #[arg(long)]
    pub hgrm: Option<PathBuf>,

    /// Write the raw histograms as an HdrHistogram interval log (V2, compressed), with the
    /// run's counts and tags, for `merge`; `-` writes it to stdout (the summary to stderr).
    #[arg(long)]
    pub hist_log: Option<PathBuf>,

    /// The server's Prometheus endpoint (http://HOST:PORT/metrics), scraped before and after
    /// to compare its FIN/RST counts with ours and, without --server-pid, to read its CPU
    /// per message and memory over the window (from any host).
    #[arg(long)]
    pub server_metrics: Option<String>,

    /// Other loadgens load the same server (a fleet): its close counts and its cost are
    /// checked by `merge` over every host, not against this loadgen's share alone.
    #[arg(long, requires = "server_metrics")]
    pub server_shared: bool,

    /// The server's process id: report its CPU per message, context switches and memory over
    /// the measured window (from /proc), of it and every process it started (a server behind
    /// a launcher such as `go run` or a shell is measured whole).
    #[arg(long)]
    pub server_pid: Option<u32>,

    /// With --server-pid, also count the server's system calls (perf's raw_syscalls
    /// tracepoint; adds a little cost per syscall to the server).
    #[arg(long, requires = "server_pid")]
    pub count_syscalls: bool,

    /// A label for the report, KEY=VALUE (repeatable), e.g. scenario=c1000 backend=epoll.
    #[arg(long = "tag", value_parser = parse_tag)]
    pub tags: Vec<(String, String)>,

    /// Show a live progress line on stderr (default: when stderr is a terminal).
    #[arg(long)]
    pub progress: bool,
}

impl RunConfig {
    /// Threads to start: never more than connections.
    pub fn thread_count(&self) -> usize {
        let n = match self.threads {
            Some(n) => n as usize,
            None => ringecho_common::available_cores(),
        };
        n.min(self.connections as usize)
    }

    /// The measured duration, when the run is time-bound.
    pub fn measure_for(&self) -> Option<Duration> {
        match (self.duration, self.messages) {
            (Some(d), _) => Some(d),
            (None, Some(_)) => None,
            (None, None) => Some(Duration::from_secs(10)),
        }
    }
}

/// Local source addresses for outgoing connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceAddrs(pub Vec<IpAddr>);

/// Smallest payload: an 8-byte connection id and an 8-byte sequence number.
pub const MIN_PAYLOAD: u32 = 16;

fn parse_payload(s: &str) -> Result<u32, String> {
    let n: u32 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a byte count"))?;
    if n < MIN_PAYLOAD {
        return Err(format!(
            "{n} bytes cannot carry the connection id and sequence number; use at least {MIN_PAYLOAD}"
        ));
    }
    if n > 64 << 20 {
        return Err("at most 64 MiB".into());
    }
    Ok(n)
}

/// How the measured window's start is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Warmup {
    /// Once latency has settled (or at `--warmup-max`).
    Auto,
    /// After a fixed time.
    Fixed(Duration),
}

fn parse_warmup(s: &str) -> Result<Warmup, String> {
    match s {
        "auto" => Ok(Warmup::Auto),
        _ => parse_duration_or_zero(s)
            .map(Warmup::Fixed)
            .map_err(|e| format!("{e}, or auto")),
    }
}

fn parse_share(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("'{s}' is not a number"))?;
    if !(0.0..=1.0).contains(&v) {
        return Err(format!(
            "{v} is outside 0..1 (0: every close a FIN, 1: every close an RST)"
        ));
    }
    Ok(v)
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("'{s}' is not a number"))?;
    if !(v.is_finite() && v > 0.0) {
        return Err("must be a positive number of messages per second".into());
    }
    Ok(v)
}

fn parse_connect_rate(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("'{s}' is not a number"))?;
    if !(v.is_finite() && v > 0.0) {
        return Err("must be a positive number of connects per second".into());
    }
    Ok(v)
}

/// Parses RFC 3339 (`2026-11-25T10:00:00Z`) or Unix seconds (`1795600000.5`).
pub fn parse_start_at(s: &str) -> Result<std::time::SystemTime, String> {
    if let Ok(secs) = s.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Ok(std::time::UNIX_EPOCH + Duration::from_secs_f64(secs));
        }
    }
    humantime::parse_rfc3339_weak(s)
        .map_err(|e| format!("'{s}' is neither RFC 3339 nor Unix seconds: {e}"))
}

fn parse_source_addrs(s: &str) -> Result<SourceAddrs, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some((a, b)) = part.split_once('-') {
            let a: Ipv4Addr = a
                .trim()
                .parse()
                .map_err(|_| format!("'{a}' is not an IPv4 address"))?;
            let b: Ipv4Addr = b
                .trim()
                .parse()
                .map_err(|_| format!("'{b}' is not an IPv4 address"))?;
            let (a, b) = (u32::from(a), u32::from(b));
            if b < a {
                return Err(format!(
                    "'{part}' runs backwards: write the lower address first"
                ));
            }
            if b - a > 65_535 {
                return Err(format!(
                    "'{part}' holds {} addresses; a range holds at most 65536",
                    b as u64 - a as u64 + 1
                ));
            }
            out.extend((a..=b).map(|v| IpAddr::V4(Ipv4Addr::from(v))));
        } else {
            out.push(
                part.parse()
                    .map_err(|_| format!("'{part}' is not an IP address"))?,
            );
        }
    }
    if out.is_empty() {
        return Err("no addresses given".into());
    }
    Ok(SourceAddrs(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("ringecho-loadgen").chain(args.iter().copied()))
    }

    #[test]
    fn bad_input_is_refused() {
        for args in [
            &["--rst-share", "1.5"][..],
            &["--rst-share", "-0.1"],
            &["--connections", "0"],
            &["--payload", "8"],
            &["--duration", "0s"],
            &["--duration", "1s", "--messages", "5"],
            &["--rate", "0"],
            &["--source-addrs", "127.0.0.9-127.0.0.2"],
            &["--addr", "localhost"],
            &["--pipeline", "0"],
            &["--connect-rate", "0"],
            &["--arrivals", "bogus"],
            &["--start-at", "tomorrow"],
            &["--warmup", "soon"],
            &["--warmup", "2s", "--messages", "5"],
        ] {
            assert!(parse(args).is_err(), "{args:?} accepted");
        }
    }

    #[test]
    fn ranges_and_defaults() {
        let cli = parse(&["--source-addrs", "127.0.0.2-127.0.0.4,127.0.0.9"]).unwrap();
        assert_eq!(cli.run.source_addrs.unwrap().0.len(), 4);
        let cli = parse(&[]).unwrap();
        assert_eq!(cli.run.measure_for(), Some(Duration::from_secs(10)));
        assert_eq!(cli.run.pipeline, 1);
        assert_eq!(cli.run.arrivals, crate::pace::Arrivals::Poisson);
        assert_eq!(cli.run.warmup, Warmup::Auto);
        assert_eq!(cli.run.warmup_max, Duration::from_secs(5));
        let fixed = parse(&["--warmup", "0s"]).unwrap().run.warmup;
        assert_eq!(fixed, Warmup::Fixed(Duration::ZERO));
        let t = parse(&["--start-at", "1795600000"]).unwrap().run.start_at;
        let u = parse(&["--start-at", "2026-11-25T09:46:40Z"])
            .unwrap()
            .run
            .start_at;
        assert_eq!(t, u);
        let cli = parse(&["--messages", "3"]).unwrap();
        assert_eq!(cli.run.measure_for(), None);
        assert!(matches!(
            parse(&["merge", "a.hlog"]).unwrap().command,
            Some(Command::Merge { .. })
        ));
    }
}
