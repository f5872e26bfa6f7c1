//! ringecho-server: a TCP echo server with one thread-per-core shape and three I/O backends
//! (`uring` via tokio-uring, `epoll` via tokio, `multishot` via the io-uring crate), so that a
//! comparison between them isolates the I/O interface.
//!
//! [`server::start`] binds one SO_REUSEPORT listener per thread and runs the chosen backend on
//! each; [`stats`] counts how every connection ended (peer FIN, peer RST, server, error).

#![warn(missing_docs)]

pub(crate) mod backend;
pub mod config;
pub(crate) mod echo;
pub mod listener;
pub mod metrics;
mod ready;
pub mod server;
pub mod shutdown;
pub mod stats;
pub(crate) mod worker;

pub use config::{Backend, Config};
pub use server::{start, RunningServer, StartError};
pub use stats::{CloseKind, Snapshot, Stats};

use std::process::ExitCode;
use std::time::Duration;

/// Runs the server from parsed flags until SIGINT or SIGTERM; the binary's whole logic.
///
/// Long because it is the process's life in order (limits, signals, start, readiness,
/// wait, drain), each step with its own message and exit code.
pub fn run(config: Config) -> ExitCode {
    match listener::raise_nofile_limit() {
        Ok((old, new)) if old != new => {
            tracing::info!("raised the open-file limit from {old} to {new}")
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("cannot raise the open-file limit: {e}"),
    }
    // Signal handlers go in before the address is printed: whoever reads that line may
    // signal at once.
    let signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ringecho-server: error: cannot install signal handlers: {e}");
            return ExitCode::from(1);
        }
    };
    // A ready file from an earlier run would tell a waiter this server is up before it is.
    if let Some(path) = &config.ready_file {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                eprintln!(
                    "ringecho-server: error: cannot remove the old ready file {}: {e}",
                    path.display()
                );
                return ExitCode::from(1);
            }
        }
    }
    let server = match start(&config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ringecho-server: error: {e}");
            return ExitCode::from(1);
        }
    };
    let addrs: Vec<String> = server.local_addrs().iter().map(|a| a.to_string()).collect();
    println!(
        "ringecho-server: {} backend listening on {}",
        config.backend.name(),
        addrs.join(", ")
    );
    if let Some(addr) = server.metrics_addr() {
        println!("ringecho-server: metrics at http://{addr}/metrics");
    }
    if let Some(path) = &config.ready_file {
        if let Err(e) = write_ready_file(path, &server) {
            eprintln!(
                "ringecho-server: error: cannot write the ready file {}: {e}",
                path.display()
            );
            let _ = server.shutdown();
            return ExitCode::from(1);
        }
    }
    // systemd's notify protocol (Type=notify), and anyone else who sets NOTIFY_SOCKET: every
    // listener is up. Without NOTIFY_SOCKET this does nothing.
    if let Err(e) = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]) {
        tracing::warn!("cannot send READY=1 to $NOTIFY_SOCKET: {e}");
    }
    let failed = signals.wait(&server);
    if !failed {
        println!(
            "ringecho-server: signal received, draining (up to {:?})",
            config.drain_timeout
        );
    }
    match server.shutdown() {
        Ok(summary) => {
            print!("{}", summary.summary());
            if failed {
                eprintln!("ringecho-server: error: a worker thread stopped unexpectedly");
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("ringecho-server: error: {e}");
            ExitCode::from(1)
        }
    }
}

/// The io_uring features this kernel offers, a `name: yes|no` line each (`--probe`).
pub fn probe() -> String {
    // On a thread of its own: a ring's teardown queues task work on its creator.
    std::thread::spawn(backend::multishot::probe)
        .join()
        .unwrap_or_else(|_| "io_uring: probe panicked\n".into())
}

/// Writes `--ready-file`: `listen ADDR` per address, `metrics ADDR`; whole or not at all (a
/// reader that sees the file sees all of it).
fn write_ready_file(path: &std::path::Path, server: &RunningServer) -> std::io::Result<()> {
    let mut text = String::new();
    for a in server.local_addrs() {
        text.push_str(&format!("listen {a}\n"));
    }
    if let Some(m) = server.metrics_addr() {
        text.push_str(&format!("metrics {m}\n"));
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// SIGINT and SIGTERM, caught from installation on.
struct Signals {
    rt: tokio::runtime::Runtime,
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (term, int) = rt.block_on(async {
            Ok::<_, std::io::Error>((
                signal(SignalKind::terminate())?,
                signal(SignalKind::interrupt())?,
            ))
        })?;
        Ok(Signals { rt, term, int })
    }

    /// Blocks until SIGINT/SIGTERM (returns false) or a worker thread dies (returns true).
    fn wait(mut self, server: &RunningServer) -> bool {
        self.rt.block_on(async {
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            loop {
                tokio::select! {
                    _ = self.term.recv() => return false,
                    _ = self.int.recv() => return false,
                    _ = tick.tick() => if server.worker_failed() { return true },
                }
            }
        })
    }
}
