//! What every slot of every thread follows, and the run's clock that the barrier sets.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Barrier, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use crate::pace::Arrivals;

/// The sequence number of the probe each connection echoes before the barrier.
pub const PROBE_SEQ: u64 = u64::MAX;

/// The run's clock, fixed by the barrier once every connection is up.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// When the load began (the barrier, or `--start-at` if later).
    pub begin: Instant,
    /// How long the connect phase took, to the barrier.
    pub connect_s: f64,
    /// How far past `--start-at` the barrier fell (0 if before, or no `--start-at`).
    pub start_late_s: f64,
}

/// What every slot of every thread follows; shared read-only across threads, except the
/// barrier, the clock it sets and the close tickets.
#[derive(Debug)]
pub struct Plan {
    /// The server's addresses, tried in turn: the first that accepts serves the run.
    pub addrs: Vec<SocketAddr>,
    /// Which of `addrs` connects go to: moves on (once, for every slot) when one refuses.
    pub addr_index: AtomicUsize,
    /// Bytes per message.
    pub payload: usize,
    /// Messages per slot, in a message-bound run.
    pub messages: Option<u64>,
    /// Messages per connection before it is replaced.
    pub churn: Option<u64>,
    /// Share of closes made with SO_LINGER=0.
    pub rst_share: f64,
    /// Open loop: messages per second across the run.
    pub rate: Option<f64>,
    /// Open loop: how sends are spaced.
    pub arrivals: Arrivals,
    /// Open loop: how the pacer waits (precise spin or plain sleep).
    pub pacer: crate::pace::PacerMode,
    /// Messages in flight per connection at most.
    pub pipeline: u32,
    /// Connection slots in the whole run.
    pub connections: u32,
    /// Loadgen threads (the barrier's party).
    pub threads: usize,
    /// Connects per second in the connect phase, across all threads.
    pub connect_rate: f64,
    /// Longest a connect or an echo may take.
    pub io_timeout: Duration,
    /// Local addresses to connect from, by slot; empty: the kernel chooses.
    pub source_addrs: Vec<IpAddr>,
    /// Where the warm-up's slices meet and the window's start is decided (at once for a
    /// fixed `--warmup`, once latency settles for `--warmup auto`).
    pub board: crate::settle::Board,
    /// The longest the warm-up may last (`--warmup-max`; the fixed warm-up itself).
    pub warmup_cap: Duration,
    /// Measured window in a time-bound run.
    pub measure_for: Option<Duration>,
    /// Wall-clock time the load may begin at, at the earliest.
    pub start_at: Option<SystemTime>,
    /// Seed of the open-loop schedules.
    pub seed: u64,
    /// When the connect phase began.
    pub connect_from: Instant,
    /// Every thread waits here twice: once all are connected, and once the clock is set.
    pub barrier: Barrier,
    /// Set by the barrier's leader.
    pub clock: OnceLock<Clock>,
    /// Closes taken so far across all threads: the n-th close is an RST exactly when the
    /// share's running total rounds up at n, so the RST count is round(share × closes).
    pub close_tickets: AtomicU64,
}

impl Plan {
    /// The server address connects go to now.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[self.addr_index.load(Ordering::Relaxed)]
    }

    /// Whether the close that draws the next ticket is an RST.
    pub(super) fn next_close_is_rst(&self) -> bool {
        let n = self.close_tickets.fetch_add(1, Ordering::Relaxed) as f64;
        let share = self.rst_share;
        ((n + 1.0) * share + 0.5).floor() > (n * share + 0.5).floor()
    }

    /// Fixes the clock; called by the barrier's leader once every connection is up.
    ///
    /// The load begins a settling time after the barrier: each thread then starts one task
    /// per connection, and those first polls (about 2 µs each) must be over before the first
    /// message is due, or they would delay it.
    pub(super) fn set_clock(&self) {
        let now = Instant::now();
        let per_thread = self.connections as u64 / self.threads.max(1) as u64;
        let settle = Duration::from_millis(10) + Duration::from_micros(8 * per_thread);
        let mut begin = now + settle;
        let mut start_late_s = 0.0;
        if let Some(at) = self.start_at {
            match at.duration_since(SystemTime::now()) {
                Ok(wait) => begin = begin.max(now + wait),
                Err(late) => start_late_s = late.duration().as_secs_f64(),
            }
        }
        let _ = self.clock.set(Clock {
            begin,
            connect_s: now.duration_since(self.connect_from).as_secs_f64(),
            start_late_s,
        });
    }

    pub(super) fn clock(&self) -> Clock {
        *self.clock.get().expect("the clock is set at the barrier")
    }

    /// The measured window, once the clock is set and the warm-up has decided its start.
    pub fn measured(&self) -> Option<Measured> {
        let begin = self.clock.get()?.begin;
        let from = begin + self.board.window_from()?;
        Some(Measured {
            from,
            end: self.measure_for.map(|d| from + d),
        })
    }

    /// Lets the warm-up judge the slices reported so far (called every few milliseconds by
    /// the run's watcher); opens the window at the cap whatever they say.
    pub fn judge_warmup(&self, now: Instant) {
        if let Some(c) = self.clock.get() {
            self.board
                .judge(now.saturating_duration_since(c.begin), self.warmup_cap);
        }
    }
}

/// The measured window, once the warm-up has decided where it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Measured {
    /// Echoes completing from here on are measured.
    pub from: Instant,
    /// Time-bound runs stop sending here.
    pub end: Option<Instant>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(share: f64) -> Plan {
        Plan {
            addrs: vec!["127.0.0.1:1".parse().unwrap()],
            addr_index: AtomicUsize::new(0),
            payload: 16,
            messages: Some(1),
            churn: None,
            rst_share: share,
            rate: None,
            arrivals: Arrivals::Poisson,
            pacer: crate::pace::PacerMode::Precise,
            pipeline: 1,
            connections: 1,
            threads: 1,
            connect_rate: 1000.0,
            io_timeout: Duration::from_secs(1),
            source_addrs: vec![],
            board: crate::settle::Board::fixed(1, Duration::ZERO),
            warmup_cap: Duration::ZERO,
            measure_for: None,
            start_at: None,
            seed: 1,
            connect_from: Instant::now(),
            barrier: Barrier::new(1),
            clock: OnceLock::new(),
            close_tickets: AtomicU64::new(0),
        }
    }

    #[test]
    fn rst_share_is_exact() {
        for (share, closes, want) in [
            (0.3, 300, 90),
            (1.0 / 3.0, 300, 100),
            (0.0, 50, 0),
            (1.0, 50, 50),
            (0.25, 7, 2),
        ] {
            let p = plan(share);
            let rst = (0..closes).filter(|_| p.next_close_is_rst()).count();
            assert_eq!(rst, want, "share {share} of {closes}");
        }
    }

    #[test]
    fn the_clock_starts_at_the_barrier_or_at_start_at() {
        let mut p = plan(0.0);
        p.board = crate::settle::Board::fixed(1, Duration::from_secs(2));
        p.measure_for = Some(Duration::from_secs(3));
        p.set_clock();
        let c = p.clock();
        let m = p.measured().expect("a fixed warm-up decides at once");
        assert_eq!(m.from - c.begin, Duration::from_secs(2));
        assert_eq!(m.end.unwrap() - m.from, Duration::from_secs(3));
        assert_eq!(c.start_late_s, 0.0);

        let mut p = plan(0.0);
        p.start_at = Some(SystemTime::now() + Duration::from_millis(500));
        p.set_clock();
        let wait = p.clock().begin.saturating_duration_since(Instant::now());
        assert!(wait > Duration::from_millis(300), "{wait:?}");

        let mut p = plan(0.0);
        p.start_at = Some(SystemTime::now() - Duration::from_secs(2));
        p.set_clock();
        assert!(p.clock().start_late_s >= 2.0);
    }
}
