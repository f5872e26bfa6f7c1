//! Per-thread counters, summed when read.
//!
//! Each worker thread owns one [`Counters`]; only that thread writes it, so an increment is a
//! relaxed load and store (no locked read-modify-write on the hot path). Readers (metrics,
//! summary) sum every thread's counters with relaxed loads; a scrape may be a few events
//! behind, never torn.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A counter with a single writer thread.
#[derive(Debug, Default)]
pub struct LocalCounter(AtomicU64);

impl LocalCounter {
    /// Adds `n`. Only the owning thread may call this: a load and a store, not an atomic add,
    /// because no other thread writes.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    /// Sets the value, for a counter used as a gauge. Only the owning thread may call this.
    #[inline]
    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }

    /// Reads the current value from any thread.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// How a connection ended, as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseKind {
    /// The peer closed its sending side (recv returned 0) and everything was echoed.
    Fin,
    /// The peer reset the connection (ECONNRESET on recv, EPIPE or ECONNRESET on send).
    Rst,
    /// The server closed it: idle timeout, refused or evicted at a limit, or shutdown.
    Server,
    /// Any other error, by kind (e.g. `timed_out`, `host_unreachable`).
    Error(String),
}

impl CloseKind {
    /// Classifies an I/O error that ended a connection.
    pub fn from_error(err: &io::Error) -> Self {
        match err.raw_os_error() {
            Some(libc::ECONNRESET) | Some(libc::EPIPE) => CloseKind::Rst,
            _ => match err.kind() {
                io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => CloseKind::Rst,
                kind => CloseKind::Error(error_kind_label(kind)),
            },
        }
    }

    /// Classifies a negative errno returned in an io_uring completion.
    pub fn from_errno(errno: i32) -> Self {
        Self::from_error(&io::Error::from_raw_os_error(errno))
    }

    /// The `how` label used in metrics and summaries.
    pub fn label(&self) -> &'static str {
        match self {
            CloseKind::Fin => "fin",
            CloseKind::Rst => "rst",
            CloseKind::Server => "server",
            CloseKind::Error(_) => "error",
        }
    }
}

pub use ringecho_common::error_kind_label;

/// One worker thread's counters.
#[derive(Debug, Default)]
pub struct Counters {
    /// Connections accepted, including those refused at once.
    pub accepted: LocalCounter,
    /// Connections refused at the connection limit (nothing could give way).
    pub refused_limit: LocalCounter,
    /// Connections refused because their source held `--max-conns-per-source`.
    pub refused_per_source: LocalCounter,
    /// Idle connections closed to make room for new ones.
    pub evicted: LocalCounter,
    /// Bytes sent back to peers.
    pub bytes_echoed: LocalCounter,
    /// Messages (completed receives) echoed back.
    pub recvs: LocalCounter,
    /// Closes by peer FIN.
    pub fin: LocalCounter,
    /// Closes by peer RST.
    pub rst: LocalCounter,
    /// Closes the server initiated.
    pub server: LocalCounter,
    /// Closes by any other error.
    pub error: LocalCounter,
    /// Accept calls that failed (EMFILE and the like); the server backs off and goes on.
    pub accept_errors: LocalCounter,
    /// Send requests made (multishot).
    pub sends: LocalCounter,
    /// Held buffers those sends carried (multishot).
    pub send_buffers: LocalCounter,
    /// Receive completions that carried bytes (multishot).
    pub recv_completions: LocalCounter,
    /// Ring buffers those completions filled (multishot).
    pub recv_buffers: LocalCounter,
    /// Ring buffers held by connections now (multishot), a gauge.
    pub ring_buffers_held: LocalCounter,
    /// Spill buffers held by connections now (multishot), a gauge.
    pub spill_buffers_held: LocalCounter,
    /// Error closes by kind; rare, so a lock is fine here.
    errors_by_kind: Mutex<BTreeMap<String, u64>>,
}

impl Counters {
    /// Records how a connection ended.
    pub fn record_close(&self, how: &CloseKind) {
        match how {
            CloseKind::Fin => self.fin.add(1),
            CloseKind::Rst => self.rst.add(1),
            CloseKind::Server => self.server.add(1),
            CloseKind::Error(kind) => {
                self.error.add(1);
                let mut map = self
                    .errors_by_kind
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                *map.entry(kind.clone()).or_default() += 1;
            }
        }
    }

    /// Connections this thread holds open now.
    pub fn active(&self) -> u64 {
        let closed = self.fin.get() + self.rst.get() + self.server.get() + self.error.get();
        self.accepted.get().saturating_sub(closed)
    }
}

/// Every thread's counters, for readers.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    threads: Arc<Mutex<Vec<Arc<Counters>>>>,
}

impl Stats {
    /// Registers a new thread's counters and returns them to the thread.
    pub fn register_thread(&self) -> Arc<Counters> {
        let counters = Arc::new(Counters::default());
        self.threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(counters.clone());
        counters
    }

    /// Polls the counters until `done` holds (Ok) or `timeout` passes (Err), returning the
    /// last snapshot either way: the counters are the only view into what the workers did.
    // Both arms are the same snapshot; boxing one would only obscure that.
    #[allow(clippy::result_large_err)]
    pub fn wait_until(
        &self,
        timeout: std::time::Duration,
        done: impl Fn(&Snapshot) -> bool,
    ) -> Result<Snapshot, Snapshot> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let s = self.snapshot();
            if done(&s) {
                return Ok(s);
            }
            if std::time::Instant::now() >= deadline {
                return Err(s);
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// Sums all threads' counters.
    pub fn snapshot(&self) -> Snapshot {
        let threads = self.threads.lock().unwrap_or_else(|e| e.into_inner());
        let mut s = Snapshot::default();
        for c in threads.iter() {
            s.accepted += c.accepted.get();
            s.accepted_by_thread.push(c.accepted.get());
            s.refused_limit += c.refused_limit.get();
            s.refused_per_source += c.refused_per_source.get();
            s.evicted += c.evicted.get();
            s.bytes_echoed += c.bytes_echoed.get();
            s.recvs += c.recvs.get();
            s.fin += c.fin.get();
            s.rst += c.rst.get();
            s.server += c.server.get();
            s.error += c.error.get();
            s.accept_errors += c.accept_errors.get();
            s.sends += c.sends.get();
            s.send_buffers += c.send_buffers.get();
            s.recv_completions += c.recv_completions.get();
            s.recv_buffers += c.recv_buffers.get();
            s.ring_buffers_held += c.ring_buffers_held.get();
            s.spill_buffers_held += c.spill_buffers_held.get();
            let map = c.errors_by_kind.lock().unwrap_or_else(|e| e.into_inner());
            for (k, v) in map.iter() {
                *s.errors_by_kind.entry(k.clone()).or_default() += v;
            }
        }
        s
    }
}

/// A sum of all threads' counters at one moment.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Connections accepted, including those refused at once.
    pub accepted: u64,
    /// The same, per echo thread, in the order the threads registered.
    pub accepted_by_thread: Vec<u64>,
    /// Connections refused at the connection limit, nothing being able to give way.
    pub refused_limit: u64,
    /// Connections refused because their source held `--max-conns-per-source` already.
    pub refused_per_source: u64,
    /// Idle connections closed to make room for new ones (also server closes).
    pub evicted: u64,
    /// Bytes sent back to peers.
    pub bytes_echoed: u64,
    /// Receives whose bytes were sent back in full.
    pub recvs: u64,
    /// Closes by peer FIN.
    pub fin: u64,
    /// Closes by peer RST.
    pub rst: u64,
    /// Closes the server made.
    pub server: u64,
    /// Closes by any other error.
    pub error: u64,
    /// Failed accept calls (the server backed off and went on).
    pub accept_errors: u64,
    /// Send requests made (multishot).
    pub sends: u64,
    /// Held buffers those sends carried (multishot): above `sends` where gathered.
    pub send_buffers: u64,
    /// Receive completions that carried bytes (multishot).
    pub recv_completions: u64,
    /// Ring buffers they filled (multishot): above `recv_completions` where bundled.
    pub recv_buffers: u64,
    /// Ring buffers held by connections (multishot): received bytes queued for sending.
    pub ring_buffers_held: u64,
    /// Spill buffers held by connections (multishot): bytes copied out of the ring.
    pub spill_buffers_held: u64,
    /// Error closes by error kind.
    pub errors_by_kind: BTreeMap<String, u64>,
}

impl Snapshot {
    /// Connections refused at once, for either reason.
    pub fn refused(&self) -> u64 {
        self.refused_limit + self.refused_per_source
    }

    /// Connections open now: accepted minus every kind of close.
    pub fn active(&self) -> u64 {
        self.accepted
            .saturating_sub(self.fin + self.rst + self.server + self.error)
    }
}

/// The one-screen summary printed at shutdown.
impl std::fmt::Display for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "ringecho-server summary")?;
        writeln!(f, "  connections accepted  {}", self.accepted)?;
        writeln!(f, "  refused (limit)       {}", self.refused_limit)?;
        writeln!(f, "  refused (per source)  {}", self.refused_per_source)?;
        writeln!(f, "  evicted (idle)        {}", self.evicted)?;
        writeln!(f, "  still open            {}", self.active())?;
        writeln!(
            f,
            "  closes: fin {}  rst {}  server {}  error {}",
            self.fin, self.rst, self.server, self.error
        )?;
        writeln!(f, "  bytes echoed          {}", self.bytes_echoed)?;
        writeln!(f, "  receives echoed       {}", self.recvs)?;
        writeln!(f, "  accept errors         {}", self.accept_errors)?;
        for (kind, n) in &self.errors_by_kind {
            writeln!(f, "  error {kind:<20} {n}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_resets_and_errors() {
        let reset = io::Error::from_raw_os_error(libc::ECONNRESET);
        let pipe = io::Error::from_raw_os_error(libc::EPIPE);
        let timeout = io::Error::from_raw_os_error(libc::ETIMEDOUT);
        assert_eq!(CloseKind::from_error(&reset), CloseKind::Rst);
        assert_eq!(CloseKind::from_error(&pipe), CloseKind::Rst);
        assert_eq!(
            CloseKind::from_error(&timeout),
            CloseKind::Error("timed_out".into())
        );
        assert_eq!(CloseKind::from_errno(libc::EHOSTUNREACH).label(), "error");
    }

    #[test]
    fn sums_threads_and_derives_active() {
        let stats = Stats::default();
        let a = stats.register_thread();
        let b = stats.register_thread();
        a.accepted.add(3);
        b.accepted.add(2);
        a.record_close(&CloseKind::Fin);
        b.record_close(&CloseKind::Rst);
        b.record_close(&CloseKind::Error("timed_out".into()));
        let s = stats.snapshot();
        assert_eq!((s.accepted, s.fin, s.rst, s.error), (5, 1, 1, 1));
        assert_eq!(s.active(), 2);
        assert_eq!(s.errors_by_kind["timed_out"], 1);
        assert!(s.to_string().contains("fin 1  rst 1"));
    }
}
