//! What every backend's worker thread shares, whichever drives its I/O: the settings each
//! connection reads, the admission and close accounting (`--max-conns`, close counts), the
//! drain phase, and the rate-limited warning and back-off for a failing accept.

use std::cell::RefCell;
use std::collections::HashSet;
use std::io;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::shutdown::Phase;
use crate::stats::{CloseKind, Counters};

/// Settings every connection reads; copied, never shared mutably.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Receive buffer size.
    pub buffer_size: usize,
    /// Close a connection after this long without progress.
    pub idle_timeout: Option<Duration>,
    /// Connections open at most across all threads.
    pub max_conns: Option<u64>,
}

/// What one worker thread's tasks share.
#[derive(Clone)]
pub(crate) struct Worker {
    pub counters: Arc<Counters>,
    pub limits: Limits,
    /// Open connections across all threads, for `--max-conns`.
    pub open: Arc<AtomicU64>,
    pub phase: watch::Receiver<Phase>,
    /// Descriptors of this thread's open connections, shut down when draining times out.
    pub(crate) fds: Rc<RefCell<HashSet<RawFd>>>,
}

impl Worker {
    pub fn new(
        counters: Arc<Counters>,
        limits: Limits,
        open: Arc<AtomicU64>,
        phase: watch::Receiver<Phase>,
    ) -> Self {
        Worker {
            counters,
            limits,
            open,
            phase,
            fds: Rc::default(),
        }
    }

    /// Counts an accepted connection and says whether `--max-conns` leaves room for it.
    pub fn admit(&self) -> bool {
        self.counters.accepted.add(1);
        let before = self.open.fetch_add(1, Ordering::Relaxed);
        if self.limits.max_conns.is_some_and(|max| before >= max) {
            self.open.fetch_sub(1, Ordering::Relaxed);
            self.counters.rejected.add(1);
            self.counters.record_close(&CloseKind::Server);
            return false;
        }
        true
    }

    /// Records the end of an admitted connection.
    pub fn release(&self, how: &CloseKind) {
        self.counters.record_close(how);
        self.open.fetch_sub(1, Ordering::Relaxed);
        tracing::debug!(how = how.label(), "session closed");
    }

    /// Whether the drain deadline passed: a close now is the server's doing.
    pub fn closing(&self) -> bool {
        *self.phase.borrow() == Phase::Closing
    }
}

/// Logs a recurring warning at most once a second, with the number suppressed.
pub(crate) struct RateLimitedWarn {
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimitedWarn {
    pub fn new() -> Self {
        RateLimitedWarn {
            last: None,
            suppressed: 0,
        }
    }

    pub fn warn(&mut self, what: &str, err: &io::Error) {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            self.suppressed += 1;
            return;
        }
        tracing::warn!(
            suppressed = self.suppressed,
            "{what}: {err}; backing off and serving the open connections"
        );
        self.last = Some(now);
        self.suppressed = 0;
    }
}

/// How long to pause accepting after running out of descriptors or memory: long enough not to
/// spin on a full backlog, short enough that service resumes promptly when clients leave.
pub(crate) const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);
