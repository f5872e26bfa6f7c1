//! Command-line configuration, validated before any socket is opened.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// Which I/O interface the worker threads drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// io_uring through tokio-uring: one recv and one send submission per message, owned buffers.
    Uring,
    /// epoll through tokio: readiness, then read/write syscalls.
    Epoll,
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
            Backend::Multishot => "multishot",
        }
    }
}

/// `ringecho-server`: a TCP echo server, thread-per-core, on io_uring or epoll.
#[derive(Debug, Clone, Parser)]
#[command(name = "ringecho-server", version, about)]
pub struct Config {
    /// Address to listen on (every thread binds it with SO_REUSEPORT).
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub listen: SocketAddr,

    /// I/O backend.
    #[arg(long, value_enum, default_value = "uring")]
    pub backend: Backend,

    /// Worker threads, each with its own runtime and listener [default: available cores].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,

    /// Receive buffer size in bytes (per connection; per ring entry for multishot).
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u32).range(64..=(16 << 20)))]
    pub buffer_size: u32,

    /// Provided buffers per thread for the multishot backend (a power of two).
    #[arg(long, default_value_t = 4096, value_parser = parse_ring_buffers)]
    pub ring_buffers: u16,

    /// Connections held open at most across all threads; beyond it new ones are closed at once.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_conns: Option<u64>,

    /// Close a connection that makes no progress for this long (e.g. 30s) [default: never].
    #[arg(long, value_parser = parse_duration)]
    pub idle_timeout: Option<Duration>,

    /// On SIGINT/SIGTERM, wait this long for open connections to finish before closing them.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub drain_timeout: Duration,

    /// Serve Prometheus metrics at http://ADDR/metrics [default: off].
    #[arg(long)]
    pub metrics: Option<SocketAddr>,

    /// Listen backlog.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(i32).range(1..=65535))]
    pub backlog: i32,
}

impl Config {
    /// A configuration with defaults, for tests and embedding.
    pub fn new(listen: SocketAddr, backend: Backend) -> Self {
        let mut c = Config::parse_from(["ringecho-server"]);
        c.listen = listen;
        c.backend = backend;
        c
    }

    /// Worker threads to start.
    pub fn thread_count(&self) -> usize {
        match self.threads {
            Some(n) => n as usize,
            None => available_cores(),
        }
    }
}

/// The cores this process may run on: the default thread count of every ringecho program.
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Parses a human duration such as `500ms`, `5s` or `2m`; zero is refused.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d =
        humantime::parse_duration(s).map_err(|e| format!("{e} (expected e.g. 500ms, 5s, 2m)"))?;
    if d.is_zero() {
        return Err("must be greater than zero".into());
    }
    Ok(d)
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
        assert_eq!(c.backend, Backend::Uring);
        assert!(c.metrics.is_none());
        assert_eq!(c.drain_timeout, Duration::from_secs(5));
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
        ] {
            assert!(Config::try_parse_from(args).is_err(), "{args:?} accepted");
        }
    }
}
