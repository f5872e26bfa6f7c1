//! `ringecho-server`: parses the flags once and owns the process: the open-file limit,
//! SIGINT and SIGTERM, the ready file and readiness notice, what is printed, and the exit
//! code (0, or 1 with one `error:` line). Serving is the library's ([`ringecho_server::run`]).

#![forbid(unsafe_code)]

use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use ringecho_server::{Config, RunError, RunningServer, StartError};

/// Why the process ends with exit code 1.
#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("cannot install signal handlers: {0}")]
    Signals(io::Error),
    #[error("cannot remove the old ready file {}: {source}", path.display())]
    StaleReadyFile { path: PathBuf, source: io::Error },
    #[error("cannot write the ready file {}: {source}", path.display())]
    ReadyFile { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    Run(#[from] RunError),
}

fn main() -> ExitCode {
    let config = Config::parse();
    if let Some(kind) = config.generate {
        return ringecho_common::generate_or_fail(kind, Config::command());
    }
    if config.probe {
        print!("{}", ringecho_server::probe());
        return ExitCode::SUCCESS;
    }
    ringecho_common::init_logging("info");
    match try_main(&config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Error::Run(RunError::WorkerFailed(summary)) = &e {
                print!("{summary}");
            }
            eprintln!("ringecho-server: error: {e}");
            ExitCode::from(1)
        }
    }
}

/// The process's life in order: limits, signals, start, readiness, serve, drain.
fn try_main(config: &Config) -> Result<(), Error> {
    match ringecho_server::listener::raise_nofile_limit() {
        Ok((old, new)) if old != new => {
            tracing::info!("raised the open-file limit from {old} to {new}")
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("cannot raise the open-file limit: {e}"),
    }
    // Signal handlers go in before the address is printed: whoever reads that line may
    // signal at once.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Signals)?;
    let signalled = rt.block_on(signals()).map_err(Error::Signals)?;
    if let Some(path) = &config.ready_file {
        remove_stale(path)?;
    }
    let server = ringecho_server::start(config)?;
    if let Err(e) = announce(config, &server) {
        let _ = server.shutdown();
        return Err(e);
    }
    let drain = config.drain_timeout;
    let shutdown = async move {
        signalled.await;
        println!("ringecho-server: signal received, draining (up to {drain:?})");
    };
    let summary = rt.block_on(ringecho_server::run(server, shutdown))?;
    print!("{summary}");
    Ok(())
}

/// Installs the SIGINT and SIGTERM handlers; the future completes at the first of either.
async fn signals() -> io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

/// A ready file from an earlier run would tell a waiter this server is up before it is.
fn remove_stale(path: &Path) -> Result<(), Error> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::StaleReadyFile {
            path: path.to_owned(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// Says the server is up: the addresses on stdout, the ready file, and READY=1 to systemd.
fn announce(config: &Config, server: &RunningServer) -> Result<(), Error> {
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
        write_ready_file(path, server).map_err(|source| Error::ReadyFile {
            path: path.to_owned(),
            source,
        })?;
    }
    // systemd's notify protocol (Type=notify), and anyone else who sets NOTIFY_SOCKET: every
    // listener is up. Without NOTIFY_SOCKET this does nothing.
    if let Err(e) = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]) {
        tracing::warn!("cannot send READY=1 to $NOTIFY_SOCKET: {e}");
    }
    Ok(())
}

/// Writes `--ready-file`: `listen ADDR` per address, `metrics ADDR`; whole or not at all (a
/// reader that sees the file sees all of it).
fn write_ready_file(path: &Path, server: &RunningServer) -> io::Result<()> {
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
