//! ringecho-server: a TCP echo server with one thread-per-core shape and three I/O backends
//! (`uring` via tokio-uring, `epoll` via tokio, `multishot` via the io-uring crate), so that a
//! comparison between them isolates the I/O interface.
//!
//! [`server::start`] binds one SO_REUSEPORT listener per thread and runs the chosen backend on
//! each; [`stats`] counts how every connection ended (peer FIN, peer RST, server, error).

pub(crate) mod backend;
pub mod config;
pub(crate) mod echo;
pub mod listener;
pub mod metrics;
pub mod server;
pub mod shutdown;
pub mod stats;

pub use config::{Backend, Config};
pub use echo::Limits;
pub use server::{start, RunningServer, StartError};
pub use stats::{CloseKind, Snapshot, Stats};

use std::process::ExitCode;
use std::time::Duration;

/// Runs the server from parsed flags until SIGINT or SIGTERM; the binary's whole logic.
pub fn run(config: Config) -> ExitCode {
    match listener::raise_nofile_limit() {
        Ok((old, new)) if old != new => {
            tracing::info!("raised the open-file limit from {old} to {new}")
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("cannot raise the open-file limit: {e}"),
    }
    let server = match start(&config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ringecho-server: error: {e}");
            return ExitCode::from(1);
        }
    };
    println!(
        "ringecho-server: {} backend listening on {}",
        config.backend.name(),
        server.local_addr()
    );
    if let Some(addr) = server.metrics_addr() {
        println!("ringecho-server: metrics at http://{addr}/metrics");
    }
    let failed = match wait_for_signal(&server) {
        Ok(failed) => failed,
        Err(e) => {
            eprintln!("ringecho-server: error: cannot wait for signals: {e}");
            true
        }
    };
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

/// Blocks until SIGINT/SIGTERM (returns false) or a worker thread dies (returns true).
fn wait_for_signal(server: &RunningServer) -> std::io::Result<bool> {
    use tokio::signal::unix::{signal, SignalKind};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                _ = term.recv() => return Ok(false),
                _ = int.recv() => return Ok(false),
                _ = tick.tick() => if server.worker_failed() { return Ok(true) },
            }
        }
    })
}
