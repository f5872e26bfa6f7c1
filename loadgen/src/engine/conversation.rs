//! One connection's conversation: a writer and a reader over one socket, sharing the
//! messages in flight. Every echoed byte is verified in order and each message is timed
//! three ways (intended, sent, echoed).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::time::{Duration, Instant};

use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::sync::Notify;

use super::slot::{Slot, FAR};
use super::tally::Tally;
use crate::payload::Payload;

/// A message in flight: its sequence number, when it was due, when it could first go (due,
/// and the pipeline had room) and when it left.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    seq: u64,
    intended: Option<Instant>,
    ready: Instant,
    sent: Instant,
}

/// One connection's conversation: a writer and a reader over one socket, sharing the
/// messages in flight and two notifiers. The writer sends when a message is due (open loop)
/// or the pipeline has room (closed loop); the reader verifies every echoed byte in order
/// and times each message three ways.
pub(super) struct Conversation<'a> {
    slot: &'a Slot,
    stream: &'a TcpStream,
    /// When the connection was (re)opened: a message due earlier counts from here.
    opened: Instant,
    pipeline: usize,
    inflight: RefCell<VecDeque<InFlight>>,
    /// The reader freed a pipeline slot.
    credit: Notify,
    /// The writer queued a message, or finished.
    queued: Notify,
    /// One side failed: the other stops.
    stop: Cell<bool>,
    writer_done: Cell<bool>,
    /// When the reader last freed a pipeline slot.
    freed: Cell<Instant>,
    /// Messages sent on the slot so far, across its connections.
    pub(super) sent: Cell<u64>,
}

/// What the writer's wait for the next message ended with.
enum Due {
    /// Far off with the window still undecided: look again.
    Later,
    /// Go now; open loop: the message's intended send time.
    Now(Option<Instant>),
}

impl<'a> Conversation<'a> {
    pub(super) fn new(slot: &'a Slot, stream: &'a TcpStream) -> Self {
        let opened = Instant::now();
        let pipeline = slot.plan.pipeline as usize;
        Conversation {
            slot,
            stream,
            opened,
            pipeline,
            inflight: RefCell::new(VecDeque::with_capacity(pipeline)),
            credit: Notify::new(),
            queued: Notify::new(),
            stop: Cell::new(false),
            writer_done: Cell::new(false),
            freed: Cell::new(opened),
            sent: Cell::new(slot.sent),
        }
    }

    /// Sends until the slot is done, the churn quota is used up, or either side fails.
    pub(super) async fn write(&self, mut payload: Payload) -> io::Result<()> {
        let (this, quota) = (self.slot, self.slot.plan.churn);
        let mut batch = Vec::with_capacity(self.pipeline * this.plan.payload);
        let mut on_conn = 0u64;
        let res = loop {
            if self.stop.get()
                || this.done_at(self.sent.get())
                || quota.is_some_and(|k| on_conn >= k)
            {
                break Ok(());
            }
            let intended = match self.due().await {
                Due::Later => continue,
                Due::Now(at) => at,
            };
            let Some(waited) = self.room().await else {
                break Ok(());
            };
            let ready = match (intended, waited) {
                (Some(at), true) => at.max(self.freed.get()),
                (Some(at), false) => at,
                (None, _) => Instant::now(),
            };
            // Closed loop fills the window in one write; open loop sends each message at
            // its own time.
            let room = self.pipeline - self.inflight.borrow().len();
            let mut n = if intended.is_some() { 1 } else { room as u64 };
            if let Some(limit) = this.plan.messages {
                n = n.min(limit - self.sent.get());
            }
            if let Some(k) = quota {
                n = n.min(k - on_conn);
            }
            self.queue(n, intended, ready, &mut payload, &mut batch);
            on_conn += n;
            this.tally.borrow_mut().sent += n;
            if let Err(e) = write_all(self.stream, &batch).await {
                break Err(e);
            }
        };
        self.writer_done.set(true);
        self.queued.notify_one();
        if res.is_err() {
            self.stop.set(true);
        }
        res
    }

    /// Open loop: waits for the next message's time (one due while the connection was being
    /// reopened counts from when it could first be sent).
    async fn due(&self) -> Due {
        let this = self.slot;
        let (Some(p), Some(at)) = (&this.pacer, this.schedule_peek()) else {
            return Due::Now(None);
        };
        let at = at.max(self.opened);
        if this.window_undecided() && at > Instant::now() + FAR {
            // Far off, and whether it falls in the window is not known yet: sleep towards it
            // (or to the window's end), then look again.
            tokio::select! {
                _ = tokio::time::sleep_until((at - FAR).into()) => {}
                _ = this.window_over.notified() => {}
            }
            return Due::Later;
        }
        this.schedule_take();
        p.until(at, &this.wake).await;
        Due::Now(Some(at))
    }

    /// Waits for room in the pipeline: whether it had to, or None if the reader stopped.
    async fn room(&self) -> Option<bool> {
        let mut waited = false;
        while self.inflight.borrow().len() >= self.pipeline && !self.stop.get() {
            self.credit.notified().await;
            waited = true;
        }
        (!self.stop.get()).then_some(waited)
    }

    /// Puts `n` messages in flight and their bytes in `batch`.
    fn queue(
        &self,
        n: u64,
        intended: Option<Instant>,
        ready: Instant,
        payload: &mut Payload,
        batch: &mut Vec<u8>,
    ) {
        let now = Instant::now();
        batch.clear();
        let mut q = self.inflight.borrow_mut();
        if q.is_empty() {
            self.slot.busy.set(Some(now));
        }
        for _ in 0..n {
            let seq = self.sent.get();
            q.push_back(InFlight {
                seq,
                intended,
                ready,
                sent: now,
            });
            batch.extend_from_slice(payload.stamp(seq));
            self.sent.set(seq + 1);
        }
        drop(q);
        self.queued.notify_one();
    }

    /// Reads echoes while any is owed, verifying and timing each.
    pub(super) async fn read(&self, verify: Payload) -> io::Result<()> {
        let size = self.slot.plan.payload;
        // Room for every echo in flight (bounded), so one read takes all that arrived.
        let mut buf = vec![0u8; (size * self.pipeline).clamp(size, (256 << 10).max(size))];
        let mut have = 0usize;
        loop {
            if !self.owed().await {
                // Bytes beyond every echo we were owed: the server sent what we never did.
                self.slot.tally.borrow_mut().counts.mismatches += have as u64;
                return Ok(());
            }
            match read_some(self.stream, &mut buf[have..]).await {
                Ok(n) => have += n,
                Err(e) => {
                    self.stop.set(true);
                    self.credit.notify_one();
                    return Err(e);
                }
            }
            let now = Instant::now();
            let used = self.take_echoes(&buf[..have], now, &verify);
            buf.copy_within(used..have, 0);
            have -= used;
            if used > 0 {
                self.freed_slots(now, have);
            }
        }
    }

    /// Waits until an echo is owed: true, or false once the writer is done and none is.
    async fn owed(&self) -> bool {
        loop {
            if !self.inflight.borrow().is_empty() {
                return true;
            }
            if self.writer_done.get() || self.stop.get() {
                return false;
            }
            self.queued.notified().await;
        }
    }

    /// Verifies and times every whole echo at the front of `buf`; returns the bytes used.
    fn take_echoes(&self, buf: &[u8], now: Instant, verify: &Payload) -> usize {
        let size = self.slot.plan.payload;
        let mut used = 0;
        let mut t = self.slot.tally.borrow_mut();
        while buf.len() - used >= size {
            let Some(front) = self.inflight.borrow_mut().pop_front() else {
                break;
            };
            t.counts.mismatches += verify.mismatches_at(front.seq, &buf[used..used + size]);
            used += size;
            t.counts.messages_total += 1;
            t.counts.bytes_total += size as u64;
            self.record(&mut t, &front, now);
        }
        used
    }

    /// Times one echo: into the timeline always, into the histograms inside the window.
    fn record(&self, t: &mut Tally, front: &InFlight, now: Instant) {
        let us = |d: Duration| d.as_micros() as u64;
        let latency = us(now.duration_since(front.intended.unwrap_or(front.sent)));
        let service = us(now.duration_since(front.sent));
        let late = front
            .intended
            .map(|_| us(front.sent.saturating_duration_since(front.ready)));
        t.timeline.record(
            now.saturating_duration_since(self.slot.clock.begin),
            latency,
            service,
            late,
        );
        if self.slot.measured(now) {
            t.latency.saturating_record(latency);
            t.service.saturating_record(service);
            if let (Some(i), Some(late)) = (front.intended, late) {
                t.send_lag
                    .saturating_record(us(front.sent.saturating_duration_since(i)));
                t.late.saturating_record(late);
            }
            t.counts.messages += 1;
            t.counts.bytes += self.slot.plan.payload as u64;
        }
    }

    /// Echoes were taken: frees their pipeline slots, and with nothing more owed and
    /// nothing buffered drops the socket's read readiness.
    fn freed_slots(&self, now: Instant, have: usize) {
        let q = self.inflight.borrow();
        self.slot.busy.set(q.front().map(|f| f.sent));
        if q.is_empty() && have == 0 {
            // Nothing more is due back: the socket stays empty until the next send. Drop
            // tokio's read readiness now instead of learning it from a read that fails with
            // EAGAIN: one syscall less per message. (A reset still wakes us: it raises a new
            // readiness event.)
            let _ = self.stream.try_io(Interest::READABLE, || {
                Err::<(), _>(io::ErrorKind::WouldBlock.into())
            });
        }
        drop(q);
        self.freed.set(now);
        self.credit.notify_one();
    }
}

/// Writes all of `buf` through tokio's readiness, without `&mut` (the reader shares the
/// stream).
pub(super) async fn write_all(stream: &TcpStream, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        stream.writable().await?;
        match stream.try_write(buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads what has arrived (at least one byte) into `buf`; EOF is `UnexpectedEof`.
async fn read_some(stream: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        stream.readable().await?;
        match stream.try_read(buf) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
}

/// Reads exactly `buf.len()` bytes; EOF first is `UnexpectedEof`.
pub(super) async fn read_exact(stream: &TcpStream, buf: &mut [u8]) -> io::Result<()> {
    let mut got = 0;
    while got < buf.len() {
        stream.readable().await?;
        match stream.try_read(&mut buf[got..]) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// EOF before the whole echo arrived, or a reset: the server ended the connection.
pub(super) fn is_peer_close(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
    )
}
