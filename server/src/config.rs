//! Command-line configuration, validated before any socket is opened.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use ringecho_common::HostPort;

use crate::listener::DeadPeer;

/// Which I/O interface the worker threads drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// io_uring through tokio-uring: one recv and one send submission per message, owned buffers.
    Uring,
    /// epoll through tokio: readiness, then read/write syscalls.
    Epoll,
    /// epoll driven by hand (mio, no async runtime): edge-triggered, a batch of events per
    /// wait, echoed straight from the receive buffer.
    #[value(name = "epoll-loop")]
    EpollLoop,
    /// io_uring through the io-uring crate: multishot accept, multishot recv into a provided
    /// buffer ring, zero-copy echo of the received buffer.
    Multishot,
}

impl Backend {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Uring => "uring",
            Backend::Epoll => "epoll",
            Backend::EpollLoop => "epoll-loop",
            Backend::Multishot => "multishot",
        }
    }
}

/// `ringecho-server`: a TCP echo server, thread-per-core, on io_uring or epoll.
#[derive(Debug, Clone, Parser)]
#[command(name = "ringecho-server", version, about)]
pub struct Config {
    /// Address to listen on, HOST:PORT. A host name listens on every address it resolves to
    /// (`localhost:8000`: 127.0.0.1 and ::1 where /etc/hosts names both); every thread binds
    /// each with SO_REUSEPORT.
    #[arg(long, default_value = "127.0.0.1:8000", value_parser = HostPort::parse, value_name = "HOST:PORT")]
    pub listen: HostPort,

    /// I/O backend.
    #[arg(long, value_enum, default_value = "uring")]
    pub backend: Backend,

    /// Worker threads, each with its own runtime and listener [default: available cores].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,

    /// Receive buffer size in bytes: per thread for epoll-loop [default: 65536], per ring
    /// entry for multishot and per connection for epoll and uring [default: 4096].
    /// `--buffer-size 4096` gives epoll-loop its old single size (4 KiB reads and spills).
    #[arg(long, value_parser = clap::value_parser!(u32).range(64..=(16 << 20)))]
    pub buffer_size: Option<u32>,

    /// Provided buffers per thread for the multishot backend (a power of two). 256 keeps the
    /// ring (1 MiB at 4 KiB) in cache: a buffer comes back long before it is reused, so each
    /// receive is copied into warm memory (4,096 cost more CPU and 16 MiB per thread).
    #[arg(long, default_value_t = 256, value_parser = parse_ring_buffers)]
    pub ring_buffers: u16,

    /// Connections held open at most across all threads [default: what the open-file limit
    /// allows]. At the limit a new connection takes the place of the longest-idle one (idle
    /// 1 s or more, nothing unsent); when none is, the new one is refused (closed at once).
    #[arg(long, value_parser = parse_max_conns)]
    pub max_conns: Option<u64>,

    /// Connections one source address may hold across all threads; past it, that source's
    /// new connections are refused (closed at once) [default: no bound: behind a NAT or a
    /// proxy one address is many clients, and an idle flood is met by eviction]. Needs
    /// ordinary descriptors (not --direct-descriptors on).
    #[arg(long, value_parser = parse_max_conns, value_name = "N")]
    pub max_conns_per_source: Option<u64>,

    /// Close a connection that makes no progress for this long (e.g. 30s) [default: never].
    #[arg(long, value_parser = parse_duration)]
    pub idle_timeout: Option<Duration>,

    /// On SIGINT/SIGTERM, wait this long for open connections to finish before closing them.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub drain_timeout: Duration,

    /// Serve Prometheus metrics at http://ADDR/metrics [default: off].
    #[arg(long)]
    pub metrics: Option<SocketAddr>,

    /// TCP keepalive: probe a connection idle this long, so a peer that vanished (no FIN, no
    /// RST) is found and closed; `off` to disable. Closed peers count as error `timed_out`.
    #[arg(long, default_value = "30s", value_parser = parse_duration_or_off)]
    pub keepalive: OrOff<Duration>,

    /// Time between keepalive probes.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub keepalive_interval: Duration,

    /// Unanswered keepalive probes that end a connection.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=127))]
    pub keepalive_probes: u32,

    /// TCP_USER_TIMEOUT: close a connection whose sent bytes stay unacknowledged, or wait
    /// behind a peer's zero window (it stopped reading), this long; `off` for the kernel's
    /// default (minutes of retransmission, zero-window probing forever).
    #[arg(long, default_value = "30s", value_parser = parse_duration_or_off)]
    pub user_timeout: OrOff<Duration>,

    /// Print the io_uring features this kernel offers the io_uring backends, one per line,
    /// then exit (compare.sh writes them into machine.txt).
    #[arg(long)]
    pub probe: bool,

    /// Print a man page or shell completions for this program, then exit.
    #[arg(long, value_enum, value_name = "WHAT")]
    pub generate: Option<ringecho_common::Generate>,

    /// Listen backlog.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(i32).range(1..=65535))]
    pub backlog: i32,

    /// multishot: keep connections in each ring's own file table (direct descriptors): no file
    /// reference taken per operation, and not in the process's descriptor table, so each
    /// thread holds up to RLIMIT_NOFILE connections. Off by default: it measured no CPU gain
    /// (docs/results.md, "Levers tried on multishot"), and ordinary descriptors show in `ss -p`, lsof and /proc.
    #[arg(long, default_value = "off", value_parser = parse_on_off, value_name = "on|off", action = clap::ArgAction::Set)]
    pub direct_descriptors: bool,

    /// multishot: hold received ring buffers as they are (within half the ring, shared by the
    /// thread's connections) and send a connection's queued buffers together, one sendmsg of
    /// up to 8 per batch of completions, instead of sending the first alone and copying the
    /// rest into spill buffers. `off` is the single-buffer rule, the baseline of the A/B.
    #[arg(long, default_value = "on", value_parser = parse_on_off, value_name = "on|off", action = clap::ArgAction::Set)]
    pub gather_sends: bool,

    /// multishot: a second ring of 64 large buffers of 64 KiB per thread, for connections
    /// moving bulk data (a receive that filled a 4 KiB buffer), ten at a time; idle and
    /// small-message connections never touch it. Needs the kernel's multishot receive limit
    /// (6.17), and is off whenever --buffer-size is given (one ring of that size, as before).
    #[arg(long, default_value = "on", value_parser = parse_on_off, value_name = "on|off", action = clap::ArgAction::Set)]
    pub large_receives: bool,

    /// multishot: receive bundles (IORING_RECVSEND_BUNDLE, 6.10; used with the receive limit,
    /// 6.17): one receive completion may fill several ring buffers, within the connection's
    /// cap. Off by default: it measured dearer (1.4–3.6× the CPU per message on streams and
    /// 16–64 KiB, docs/results.md, "Levers tried on multishot"): a short bundle ends the
    /// kernel's retry loop, so a message's bytes come in more completions across batches and
    /// leave in more sends. `--probe` says whether this kernel has them.
    #[arg(long, default_value = "off", value_parser = parse_on_off, value_name = "on|off", action = clap::ArgAction::Set)]
    pub recv_bundles: bool,

    /// Once every listener is up, write this file (atomically: written beside it, then
    /// renamed): a line `listen ADDR` per listening address, then `metrics ADDR` with
    /// --metrics. A file left there by an earlier run is removed at start, so whoever waits
    /// for it never mistakes the old one for this server. Scripts wait for it instead of
    /// reading the log; systemd's NOTIFY_SOCKET is the other way to learn the server is ready.
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<std::path::PathBuf>,

    /// Pin worker thread i to the i-th core this process may run on (wrapping around).
    #[arg(long)]
    pub pin: bool,
}

impl Config {
    /// A configuration with defaults, for tests and embedding.
    pub fn new(listen: SocketAddr, backend: Backend) -> Self {
        let mut c = Config::parse_from(["ringecho-server"]);
        c.listen = HostPort::one(listen);
        c.backend = backend;
        c
    }

    /// The dead-peer settings the listeners pass on to accepted sockets.
    pub fn dead_peer(&self) -> DeadPeer {
        DeadPeer {
            keepalive: self
                .keepalive
                .0
                .map(|idle| (idle, self.keepalive_interval, self.keepalive_probes)),
            user_timeout: self.user_timeout.0,
        }
    }

    /// The receive buffer size `--buffer-size` gives this backend (its default when unset).
    pub fn buffer_size(&self) -> u32 {
        self.buffer_size.unwrap_or(match self.backend {
            Backend::EpollLoop => 64 << 10,
            _ => 4096,
        })
    }

    /// Worker threads to start.
    pub fn thread_count(&self) -> usize {
        match self.threads {
            Some(n) => n as usize,
            None => available_cores(),
        }
    }
}

pub use ringecho_common::{available_cores, parse_duration};

/// A setting that can be turned off with the word `off` (`None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrOff<T>(pub Option<T>);

/// Parses a duration as [`parse_duration`] does, or `off`.
pub fn parse_duration_or_off(s: &str) -> Result<OrOff<Duration>, String> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(OrOff(None));
    }
    parse_duration(s).map(|d| OrOff(Some(d)))
}

/// Parses `on` or `off`.
fn parse_on_off(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("'{s}' is neither on nor off")),
    }
}

fn parse_max_conns(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(0) => Err("must be at least 1 (leave it out for no limit)".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("'{s}' is not a whole number")),
    }
}

fn parse_ring_buffers(s: &str) -> Result<u16, String> {
    let n: u32 = s.parse().map_err(|_| format!("'{s}' is not a number"))?;
    if !(2..=32768).contains(&n) || !n.is_power_of_two() {
        return Err("must be a power of two from 2 to 32768".into());
    }
    Ok(n as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_safe() {
        let c = Config::parse_from(["ringecho-server"]);
        assert_eq!(c.listen.to_string(), "127.0.0.1:8000");
        assert_eq!(c.listen.addrs, ["127.0.0.1:8000".parse().unwrap()]);
        let named = Config::parse_from(["x", "--listen", "localhost:8001"]).listen;
        assert!(!named.addrs.is_empty());
        assert!(named
            .addrs
            .iter()
            .all(|a| a.ip().is_loopback() && a.port() == 8001));
        assert_eq!(c.backend, Backend::Uring);
        assert!(c.metrics.is_none());
        assert_eq!(c.drain_timeout, Duration::from_secs(5));
        let dp = c.dead_peer();
        assert_eq!(
            dp.keepalive,
            Some((Duration::from_secs(30), Duration::from_secs(5), 3))
        );
        assert_eq!(dp.user_timeout, Some(Duration::from_secs(30)));
        let off = Config::parse_from(["x", "--keepalive", "off", "--user-timeout", "OFF"]);
        assert_eq!(off.dead_peer(), DeadPeer::OFF);
        assert!(!c.direct_descriptors && !c.pin);
        assert!(Config::parse_from(["x", "--direct-descriptors", "on"]).direct_descriptors);
    }

    #[test]
    fn bad_values_are_refused() {
        for args in [
            &["x", "--threads", "0"][..],
            &["x", "--buffer-size", "1"],
            &["x", "--ring-buffers", "1000"],
            &["x", "--idle-timeout", "soon"],
            &["x", "--idle-timeout", "0s"],
            &["x", "--listen", "localhost"],
            &["x", "--backend", "kqueue"],
            &["x", "--max-conns", "0"],
            &["x", "--max-conns-per-source", "0"],
            &["x", "--keepalive", "never"],
            &["x", "--keepalive-probes", "0"],
            &["x", "--user-timeout", "0s"],
            &["x", "--direct-descriptors", "yes"],
        ] {
            assert!(Config::try_parse_from(args).is_err(), "{args:?} accepted");
        }
    }
}
