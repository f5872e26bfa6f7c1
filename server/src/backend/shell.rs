//! The outer loop both hand-written drivers share, as Redis's `ae.c` runs one event loop over
//! its thin `ae_epoll.c`: the shutdown phase's step, the clock and the idle sweep, the
//! accept back-off, and admission (the [`admission`](crate::admission) rule, with the idle
//! order that finds who gives way). Each driver keeps only its I/O: how it waits, accepts,
//! receives, sends and closes.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use super::clock::{Clock, TICK};
pub(crate) use crate::admission::seen;
use crate::admission::{Admission, IdleOrder, Seen};
use crate::listener::is_resource_exhaustion;
use crate::shutdown::Phase;
use crate::stats::CloseKind;
use crate::worker::{RateLimitedWarn, Worker, ACCEPT_BACKOFF};

/// What the loop does this turn, by the shutdown phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Serving: accept and echo.
    Serve,
    /// Draining: stop accepting, let open connections finish.
    Drain,
    /// Out of time: stop accepting and close every connection now.
    CloseAll,
}

/// The shared part of a hand-written driver's loop.
pub(crate) struct Shell {
    pub worker: Worker,
    pub warn: RateLimitedWarn,
    clock: Clock,
    /// The current batch's time on the clock.
    pub now: u32,
    last_sweep: Instant,
    /// When to accept again: after the turn's budget (now) or after running out of
    /// descriptors (a little later).
    pub accept_retry_at: Option<Instant>,
    /// This thread's connections by last activity.
    order: IdleOrder,
    /// Each connection's source address, by slot, while the gate counts sources.
    sources: HashMap<usize, IpAddr>,
    /// Connections open on this thread.
    open: usize,
}

impl Shell {
    pub fn new(worker: Worker) -> Self {
        Shell {
            worker,
            warn: RateLimitedWarn::new(),
            clock: Clock::new(),
            now: 0,
            last_sweep: Instant::now(),
            accept_retry_at: None,
            order: IdleOrder::default(),
            sources: HashMap::new(),
            open: 0,
        }
    }

    /// The turn's step, from the shutdown phase.
    pub fn step(&self) -> Step {
        match *self.worker.phase.borrow() {
            Phase::Running => Step::Serve,
            Phase::Draining => Step::Drain,
            Phase::Closing => Step::CloseAll,
        }
    }

    /// Stamps a batch of events with the clock (one read per batch: timeouts are seconds,
    /// a batch takes microseconds); returns the time read.
    pub fn stamp(&mut self) -> Instant {
        let now = Instant::now();
        self.now = self.clock.stamp(now);
        now
    }

    /// Whether a [`TICK`] has passed since the last sweep (idle timers, spare buffers);
    /// true restarts the count.
    pub fn sweep_due(&mut self, now: Instant) -> bool {
        if now.duration_since(self.last_sweep) < TICK {
            return false;
        }
        self.last_sweep = now;
        true
    }

    /// An accept failed: counted, warned about (rate-limited), and accepting paused a
    /// little (longer when descriptors or memory ran out).
    pub fn accept_failed(&mut self, e: &io::Error) {
        self.worker.counters.accept_errors.add(1);
        self.warn.warn("accept failed", e);
        let pause = if is_resource_exhaustion(e) {
            ACCEPT_BACKOFF
        } else {
            ACCEPT_BACKOFF / 4
        };
        self.accept_retry_at = Some(Instant::now() + pause);
    }

    /// Whether admission needs each new connection's peer address.
    pub fn wants_sources(&self) -> bool {
        self.worker.gate.counts_sources()
    }

    /// Admits a new connection from `peer` (known when [`Self::wants_sources`]), with the
    /// connections' state as `seen` tells it (see [`seen`]) for choosing who gives way.
    pub fn admit(
        &mut self,
        peer: Option<SocketAddr>,
        seen: impl FnMut(usize, u32) -> Seen,
    ) -> Admission {
        let source = peer.map(|a| a.ip()).filter(|_| self.wants_sources());
        self.worker.admit(source, &mut self.order, self.now, seen)
    }

    /// A connection admitted from `peer` opened in `slot` as generation `gen`.
    pub fn opened(
        &mut self,
        slot: usize,
        gen: u32,
        peer: Option<SocketAddr>,
        seen: impl FnMut(usize, u32) -> Seen,
    ) {
        if let Some(ip) = peer.map(|a| a.ip()).filter(|_| self.wants_sources()) {
            self.sources.insert(slot, ip);
        }
        self.open += 1;
        self.order.insert(slot, gen, self.now);
        self.order.compact(self.open, seen);
    }

    /// A connection admitted but not opened (its set-up failed) ended for `how`.
    pub fn failed(&mut self, how: &CloseKind, peer: Option<SocketAddr>) {
        let source = peer.map(|a| a.ip()).filter(|_| self.wants_sources());
        self.worker.release(how, source);
    }

    /// The connection in `slot` ended for `how`.
    pub fn closed(&mut self, slot: usize, how: &CloseKind) {
        self.open -= 1;
        let source = self.sources.remove(&slot);
        self.worker.release(how, source);
    }

    /// The next connection past `--idle-timeout` (stuck ones too), if one is.
    pub fn expired(&mut self, seen: impl FnMut(usize, u32) -> Seen) -> Option<usize> {
        let limit = Clock::limit(self.worker.limits.idle_timeout?);
        self.order
            .take_idle(self.now, limit, true, false, seen)
            .map(|(slot, _)| slot)
    }
}
