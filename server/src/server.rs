//! Starting the worker threads, and stopping them: the part of the server every backend shares.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::watch;

use crate::admission::{Gate, FDS_PER_THREAD};
use crate::backend;
use crate::config::{Backend, Config};
use crate::listener::bind_group;
use crate::metrics::MetricsServer;
use crate::ready::Ready;
use crate::shutdown::Phase;
use crate::stats::{Snapshot, Stats};
use crate::worker::{Limits, Worker};

/// Why the server could not start; each names what to change.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct StartError {
    what: String,
    #[source]
    source: io::Error,
}

impl StartError {
    fn new(what: impl Into<String>, source: io::Error) -> Self {
        StartError {
            what: what.into(),
            source,
        }
    }
}

/// Why a running server ended other than by its shutdown signal.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A worker thread exited while the server should have been running; the others were
    /// drained, and these are the final counters.
    #[error("a worker thread stopped unexpectedly")]
    WorkerFailed(Box<Snapshot>),
    /// A worker failed while draining.
    #[error("{0}")]
    Drain(#[from] io::Error),
}

/// The listening sockets, one group per worker thread (each group one socket per address,
/// SO_REUSEPORT across groups): what [`bind`] opens and [`start_on`] serves.
pub struct Listeners {
    groups: Vec<Vec<std::net::TcpListener>>,
}

impl Listeners {
    /// The addresses they are bound to (the real port when asked for port 0).
    pub fn local_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        self.groups[0].iter().map(|l| l.local_addr()).collect()
    }
}

/// Serves until `shutdown` completes (a signal, a test's trigger) or a worker thread dies,
/// then drains and returns the final counters: the server's life after [`start`], as
/// mini-redis's `server::run` is.
pub async fn run(
    server: RunningServer,
    shutdown: impl Future<Output = ()>,
) -> Result<Snapshot, RunError> {
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    tokio::pin!(shutdown);
    let failed = loop {
        tokio::select! {
            _ = &mut shutdown => break false,
            _ = tick.tick() => if server.worker_failed() { break true },
        }
    };
    let summary = server.shutdown()?;
    match failed {
        true => Err(RunError::WorkerFailed(Box::new(summary))),
        false => Ok(summary),
    }
}

/// A started server: worker threads echoing on `local_addr` until [`RunningServer::shutdown`].
pub struct RunningServer {
    local_addrs: Vec<SocketAddr>,
    stats: Stats,
    phase: watch::Sender<Phase>,
    threads: Vec<JoinHandle<io::Result<()>>>,
    drain_timeout: Duration,
    metrics: Option<MetricsServer>,
}

impl RunningServer {
    /// The first address the listeners are bound to (the real port when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addrs[0]
    }

    /// Every address the listeners are bound to: one per address `--listen` named.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// The metrics endpoint's address, when `--metrics` was given.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|m| m.local_addr())
    }

    /// The live counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Whether a worker thread has exited while the server should be running (a runtime
    /// failure); the process should then report it and exit non-zero.
    pub fn worker_failed(&self) -> bool {
        self.threads.iter().any(|t| t.is_finished())
    }

    /// Stops accepting, lets open connections finish for up to the drain timeout, closes the
    /// rest, joins the workers and returns the final counters.
    pub fn shutdown(self) -> io::Result<Snapshot> {
        let _ = self.phase.send(Phase::Draining);
        // Drained, or out of time (or every worker already gone): close what is left.
        let _ = self.stats.wait_until(self.drain_timeout, |s| {
            s.active() == 0 || self.threads.iter().all(|t| t.is_finished())
        });
        let _ = self.phase.send(Phase::Closing);
        let mut first_err = None;
        for t in self.threads {
            let res = t
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("worker thread panicked")));
            if let Err(e) = res {
                tracing::error!("worker failed: {e}");
                first_err.get_or_insert(e);
            }
        }
        drop(self.metrics);
        match first_err {
            Some(e) => Err(e),
            None => Ok(self.stats.snapshot()),
        }
    }
}

/// Checks that this process may create an io_uring, so that a kernel without it (or with
/// `kernel.io_uring_disabled` set, or a seccomp filter) gets a clear message up front.
///
/// The probe ring lives on a thread of its own: tearing a ring down queues kernel task work on
/// the thread that created it, which would interrupt that thread's next blocking socket call
/// (EINTR where SO_RCVTIMEO is set), and the caller may be an application thread.
fn probe_io_uring() -> Result<(), StartError> {
    let probe = std::thread::spawn(|| io_uring::IoUring::new(8).map(drop))
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("io_uring probe panicked")));
    probe.map_err(|e| {
        StartError::new(
            "io_uring is not available (old kernel, kernel.io_uring_disabled, or a seccomp \
             filter); run with --backend epoll",
            e,
        )
    })
}

/// Binds the listeners and starts the worker threads: [`bind`], then [`start_on`].
pub fn start(config: &Config) -> Result<RunningServer, StartError> {
    if matches!(config.backend, Backend::Uring | Backend::Multishot) {
        // Before binding, so a kernel without io_uring is named even when the address is
        // taken too.
        probe_io_uring()?;
    }
    start_on(config, bind(config)?)
}

/// Opens one listener per address for each worker thread.
pub fn bind(config: &Config) -> Result<Listeners, StartError> {
    let groups = bind_group(
        &config.listen.addrs,
        config.backlog,
        config.thread_count(),
        config.dead_peer(),
    )
    .map_err(|e| StartError::new(format!("cannot listen on {}", config.listen), e))?;
    Ok(Listeners { groups })
}

/// Starts the worker threads on `listeners` and returns once every one serves, so callers
/// see set-up failures as errors and measurements start from a settled process.
/// [`start`] checks first that io_uring is there, for a clearer message than a worker's.
pub fn start_on(config: &Config, listeners: Listeners) -> Result<RunningServer, StartError> {
    let local_addrs = listeners
        .local_addrs()
        .map_err(|e| StartError::new("cannot read the listener's address", e))?;
    let stats = Stats::default();
    let metrics = match config.metrics {
        Some(addr) => Some(
            MetricsServer::start(addr, stats.clone())
                .map_err(|e| StartError::new(format!("cannot serve metrics on {addr}"), e))?,
        ),
        None => None,
    };
    let (phase, phase_rx) = watch::channel(Phase::Running);
    let (threads, ready) = spawn_workers(config, listeners.groups, &stats, phase_rx)?;
    if let Err(e) = await_ready(config, threads.len(), &ready) {
        let _ = phase.send(Phase::Closing);
        for t in threads {
            let _ = t.join();
        }
        return Err(e);
    }
    tracing::info!(
        backend = config.backend.name(),
        threads = threads.len(),
        addrs = ?local_addrs,
        "listening"
    );
    Ok(RunningServer {
        local_addrs,
        stats,
        phase,
        threads,
        drain_timeout: config.drain_timeout,
        metrics,
    })
}

/// The worker threads, and where each reports that it serves.
type Workers = (
    Vec<JoinHandle<io::Result<()>>>,
    std::sync::mpsc::Receiver<io::Result<()>>,
);

/// Starts one worker thread per listener group, each pinned when `--pin` asks.
fn spawn_workers(
    config: &Config,
    listeners: Vec<Vec<std::net::TcpListener>>,
    stats: &Stats,
    phase_rx: watch::Receiver<Phase>,
) -> Result<Workers, StartError> {
    let limits = Limits {
        buffer_size: config.buffer_size() as usize,
        idle_timeout: config.idle_timeout,
    };
    let gate = Arc::new(gate(config, listeners.len())?);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let mut threads = Vec::with_capacity(listeners.len());
    // Read only for --pin: an unpinned server does not depend on its affinity mask.
    let cores = config
        .pin
        .then(ringecho_common::allowed_cores)
        .transpose()
        .map_err(|e| StartError::new("cannot read this process's CPU affinity", e))?;
    for (i, listeners) in listeners.into_iter().enumerate() {
        let counters = stats.register_thread();
        let (gate, phase_rx, backend) = (gate.clone(), phase_rx.clone(), config.backend);
        let ready = Ready(ready_tx.clone());
        let ring = backend::multishot::RingConfig {
            buffers: config.ring_buffers,
            buffer_size: config.buffer_size(),
            direct: config.direct_descriptors,
            gather: config.gather_sends,
            large: config.large_receives && config.buffer_size.is_none(),
            bundles: config.recv_bundles,
        };
        let core = cores.as_ref().map(|c| c[i % c.len()]);
        let spawned = std::thread::Builder::new()
            .name(format!("ringecho-{}-{i}", backend.name()))
            .spawn(move || {
                if let Some(core) = core {
                    if let Err(e) = ringecho_common::pin_to_core(core) {
                        ready.report::<()>(Err(io::Error::new(
                            e.kind(),
                            format!("cannot pin to core {core}: {e}"),
                        )))?;
                    }
                }
                let worker = Worker::new(counters, limits, gate, phase_rx);
                match backend {
                    Backend::Epoll => backend::epoll::run(listeners, worker, ready),
                    Backend::EpollLoop => backend::epoll_loop::run(listeners, worker, ready),
                    Backend::Uring => backend::uring::run(listeners, worker, ready),
                    Backend::Multishot => backend::multishot::run(listeners, worker, ring, ready),
                }
            })
            .map_err(|e| StartError::new("cannot start a worker thread", e))?;
        threads.push(spawned);
    }
    // Only the workers hold senders now: if every one exits, the wait for them ends.
    drop(ready_tx);
    Ok((threads, ready_rx))
}

/// The admission gate: `--max-conns` and what the descriptor table leaves (read now, with the
/// listeners open and `threads` workers' own descriptors to come), `--max-conns-per-source`.
/// Direct descriptors take no entries of the process's table: their rings' tables bound them.
fn gate(config: &Config, threads: usize) -> Result<Gate, StartError> {
    let direct = config.direct_descriptors && config.backend == Backend::Multishot;
    if direct && config.max_conns_per_source.is_some() {
        return Err(StartError::new(
            "--max-conns-per-source needs ordinary descriptors",
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "a direct descriptor has no peer address to count; use --direct-descriptors off",
            ),
        ));
    }
    let fd_base = if direct {
        None
    } else {
        let open = ringecho_common::procfs::open_fds()
            .map_err(|e| StartError::new("cannot count the open descriptors", e))?;
        Some(open + FDS_PER_THREAD * threads as u64)
    };
    let per_source = config
        .max_conns_per_source
        .map(|n| n.min(u64::from(u32::MAX)) as u32);
    Ok(Gate::new(config.max_conns, fd_base, per_source))
}

/// Waits for each of the `n` workers to report that it serves; the first failure, named.
fn await_ready(
    config: &Config,
    n: usize,
    ready: &std::sync::mpsc::Receiver<io::Result<()>>,
) -> Result<(), StartError> {
    for _ in 0..n {
        let failure = match ready.recv() {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => e,
            Err(_) => io::Error::other("a worker thread exited during start-up"),
        };
        return Err(StartError::new(
            format!("cannot start the {} backend", config.backend.name()),
            failure,
        ));
    }
    Ok(())
}
