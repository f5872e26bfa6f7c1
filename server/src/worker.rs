//! What every backend's worker thread shares, whichever drives its I/O: the settings each
//! connection reads, the admission and close accounting (the [`admission`](crate::admission)
//! rule's counts, close counts), the drain phase, and the rate-limited warning and back-off
//! for a failing accept.

use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::admission::{Admission, Gate, IdleOrder, Refusal, Seen, Verdict, EVICT_AFTER};
use crate::backend::clock::Clock;
use crate::shutdown::Phase;
use crate::stats::{CloseKind, Counters};

/// Settings every connection reads; copied, never shared mutably.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Receive buffer size.
    pub buffer_size: usize,
    /// Close a connection after this long without progress.
    pub idle_timeout: Option<Duration>,
}

/// What one worker thread's tasks share.
#[derive(Clone)]
pub(crate) struct Worker {
    pub counters: Arc<Counters>,
    pub limits: Limits,
    /// Who gets in: the process-wide counts and limits.
    pub gate: Arc<Gate>,
    pub phase: watch::Receiver<Phase>,
}

impl Worker {
    pub fn new(
        counters: Arc<Counters>,
        limits: Limits,
        gate: Arc<Gate>,
        phase: watch::Receiver<Phase>,
    ) -> Self {
        Worker {
            counters,
            limits,
            gate,
            phase,
        }
    }

    /// The admission rule, for every backend: counts an accepted connection from `source`
    /// and lets it in, refuses it (its source at its bound, or the process at its limit
    /// with nobody to give way), or lets it in in place of the longest-idle connection of
    /// `order` (this thread's, at clock time `now`, each as `seen` tells), which the caller
    /// then closes.
    pub fn admit(
        &self,
        source: Option<IpAddr>,
        order: &mut IdleOrder,
        now: u32,
        seen: impl FnMut(usize, u32) -> Seen,
    ) -> Admission {
        match self.enter(source) {
            Verdict::In => Admission::In,
            Verdict::SourceFull => Admission::Refused,
            Verdict::Full => {
                let min = Clock::limit(EVICT_AFTER);
                match order.take_idle(now, min, false, true, seen) {
                    Some((slot, _)) => {
                        self.counters.evicted.add(1);
                        self.gate.enter_in_place(source);
                        Admission::InPlaceOf(slot)
                    }
                    None => {
                        self.refuse(Refusal::Limit);
                        Admission::Refused
                    }
                }
            }
        }
    }

    /// Counts an accepted connection from `source` and asks the gate about it (a source at
    /// its bound is refused and counted here).
    pub fn enter(&self, source: Option<IpAddr>) -> Verdict {
        self.counters.accepted.add(1);
        let v = self.gate.enter(source);
        if v == Verdict::SourceFull {
            self.refuse(Refusal::PerSource);
        }
        v
    }

    /// Counts a refused connection: closed at once, by the server.
    fn refuse(&self, why: Refusal) {
        match why {
            Refusal::Limit => self.counters.refused_limit.add(1),
            Refusal::PerSource => self.counters.refused_per_source.add(1),
        }
        self.counters.record_close(&CloseKind::Server);
    }

    /// Records the end of an admitted connection from `source`.
    pub fn release(&self, how: &CloseKind, source: Option<IpAddr>) {
        self.counters.record_close(how);
        self.gate.leave(source);
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
