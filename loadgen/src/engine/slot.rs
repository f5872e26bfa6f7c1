//! One connection slot across its connections: it converses on each until the run, the
//! churn quota or a failure ends it, closes it with FIN or RST as the share says, and
//! reconnects under churn.

use std::cell::{Cell, RefCell};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::sync::Notify;

use super::connect::{error_label, timed_connect};
use super::conversation::{is_peer_close, Conversation};
use super::plan::{Clock, Measured, Plan};
use super::tally::Tally;
use crate::pace::{Pacer, Schedule};
use crate::payload::Payload;

/// Why a connection's life ended.
enum Ending {
    /// We close it (FIN or RST by the share).
    Ours,
    /// The server closed or reset it first.
    Server,
    /// An error, already counted.
    Failed,
}

/// When the oldest echo a slot awaits was sent, if any; the thread's watchdog aborts a slot
/// whose echo takes longer than the I/O timeout (one check per slot a few times a second,
/// instead of a timer armed and disarmed for every message).
pub(super) type BusySince = Rc<Cell<Option<Instant>>>;

/// What one connection slot carries across its connections (churn reconnects).
pub(super) struct Slot {
    pub(super) id: u32,
    pub(super) plan: Arc<Plan>,
    pub(super) clock: Clock,
    pub(super) tally: Rc<RefCell<Tally>>,
    pub(super) busy: BusySince,
    pub(super) pacer: Option<Rc<Pacer>>,
    pub(super) schedule: RefCell<Option<Schedule>>,
    /// The slot's notifier for the pacer.
    pub(super) wake: Rc<Notify>,
    /// The thread's notifier for the end of the window: wakes slots sleeping far ahead (their
    /// next message fell after it), so the run ends on time. Not at the warm-up's decision:
    /// thousands of wake-ups there would land in the window's first milliseconds.
    pub(super) window_over: Rc<Notify>,
    /// Messages sent on this slot so far, across its connections.
    pub(super) sent: u64,
}

/// A wait longer than this, while the window's end is not yet known, is slept in a way the
/// warm-up's decision can cut short (the pacer's waits cannot be cancelled).
pub(super) const FAR: Duration = Duration::from_millis(50);

impl Slot {
    fn done(&self) -> bool {
        self.done_at(self.sent)
    }

    /// Whether the slot is done once `sent` messages have gone.
    pub(super) fn done_at(&self, sent: u64) -> bool {
        match (self.plan.messages, self.plan.measure_for) {
            (Some(n), _) => sent >= n,
            (None, Some(d)) => match self.plan.measured().and_then(|m| m.end) {
                Some(end) => Instant::now() >= end || self.due_after_end(end),
                // The watcher opens the window by the cap; past cap + window, stop anyway.
                None => Instant::now() >= self.clock.begin + self.plan.warmup_cap + d,
            },
            (None, None) => true,
        }
    }

    /// Open loop: the next message is due after the window, so it would never be measured
    /// (at a low rate per connection it can be many seconds away): the slot is done.
    fn due_after_end(&self, end: Instant) -> bool {
        self.schedule
            .borrow()
            .as_ref()
            .is_some_and(|s| s.peek() >= end)
    }

    pub(super) fn measured(&self, now: Instant) -> bool {
        if self.plan.measure_for.is_none() {
            return true;
        }
        match self.plan.measured() {
            Some(Measured {
                from,
                end: Some(end),
            }) => now >= from && now < end,
            _ => false,
        }
    }

    /// Drives the slot from its first (already open) connection to its end.
    pub(super) async fn run(mut self, mut stream: TcpStream) {
        if self.pacer.is_none() {
            tokio::time::sleep_until(self.clock.begin.into()).await;
        }
        loop {
            let ending = self.converse(&stream).await;
            let last = !matches!(ending, Ending::Ours) || self.done();
            if last && matches!(ending, Ending::Ours) {
                // A slot whose next message falls after the window is done early (at a low
                // rate per connection, at the very start): its close waits for the window to
                // end, so a burst of closes never lands in the measured latency.
                self.until_window_end().await;
            }
            {
                let mut t = self.tally.borrow_mut();
                t.open -= 1;
                if let Ending::Ours = ending {
                    self.close(&stream, &mut t);
                }
            }
            drop(stream);
            if last {
                return;
            }
            // Churn: the next connection. Its connect is timed into the connect histogram.
            stream = match timed_connect(&self.plan, self.id, &self.tally).await {
                Some(s) => s,
                None => return,
            };
        }
    }

    /// Waits for the end of a time-bound run's window (once the warm-up has decided it).
    async fn until_window_end(&self) {
        if self.plan.measure_for.is_none() {
            return;
        }
        loop {
            if let Some(end) = self.plan.measured().and_then(|m| m.end) {
                tokio::time::sleep_until(end.into()).await;
                return;
            }
            tokio::time::sleep(FAR).await;
        }
    }

    /// Closes with RST (SO_LINGER=0) or FIN as the share says, counting what goes on the
    /// wire: a FIN close with unread bytes in the receive buffer is sent as an RST.
    fn close(&self, stream: &TcpStream, t: &mut Tally) {
        if self.plan.next_close_is_rst() {
            match socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO)) {
                Ok(()) => t.counts.closes.rst += 1,
                Err(e) => t.counts.error(error_label(&e)),
            }
        } else {
            match crate::sys::unread_bytes(stream.as_raw_fd()) {
                Ok(0) => t.counts.closes.fin += 1,
                Ok(extra) => {
                    // Bytes the server sent beyond every echo: not ours, so corrupt.
                    t.counts.mismatches += extra as u64;
                    t.counts.closes.rst += 1;
                    t.counts.closes.rst_unread += 1;
                }
                Err(e) => t.counts.error(error_label(&e)),
            }
        }
    }

    /// Echoes on one connection until the slot is done, churn replaces it, or it fails.
    async fn converse(&mut self, stream: &TcpStream) -> Ending {
        let conv = Conversation::new(self, stream);
        let payload = Payload::new(self.id as u64, self.plan.payload);
        let (w, r) = tokio::join!(conv.write(payload.clone()), conv.read(payload));
        let sent = conv.sent.get();
        drop(conv);
        self.sent = sent;
        self.busy.set(None);
        match r.and(w) {
            Ok(()) => Ending::Ours,
            Err(e) if is_peer_close(&e) => {
                self.tally.borrow_mut().counts.closes.server += 1;
                Ending::Server
            }
            Err(e) => {
                self.tally.borrow_mut().counts.error(error_label(&e));
                Ending::Failed
            }
        }
    }

    /// The next open-loop send time, if the run is open loop.
    pub(super) fn schedule_take(&self) -> Option<Instant> {
        self.schedule.borrow_mut().as_mut().map(Schedule::take)
    }

    pub(super) fn schedule_peek(&self) -> Option<Instant> {
        self.schedule.borrow().as_ref().map(Schedule::peek)
    }

    /// A time-bound run whose warm-up has not yet decided where the window starts.
    pub(super) fn window_undecided(&self) -> bool {
        self.plan.measure_for.is_some() && self.plan.measured().is_none()
    }
}
