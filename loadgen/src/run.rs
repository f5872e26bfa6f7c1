//! The load engine, in strict phases:
//!
//! 1. **Connect**: every thread opens its share of connections, paced at `--connect-rate`;
//!    each connect is timed from its own start, so connect latency is the server's and the
//!    network's, not the loadgen's own queue. A connect completes from the server's accept
//!    queue, before the server has accepted it, so each connection then echoes one probe
//!    message (sequence number [`PROBE_SEQ`], verified, never measured): a connection is
//!    up once the server has served it.
//! 2. **Barrier**: once every thread's connections are up, all threads agree on one start
//!    (no earlier than `--start-at`). Nothing before it lands in a message histogram.
//! 3. **Warm-up**, then the **measured window**: the open-loop clock starts at the barrier,
//!    and only echoes completing inside the window are recorded.
//!
//! Each connection runs a writer and a reader over one socket: up to `--pipeline` messages
//! in flight, every echoed byte verified in order, each message timed three ways (intended,
//! sent, echoed). Each thread keeps its own histograms and counts, merged at the end.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use hdrhistogram::Histogram;
use tokio::io::Interest;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Notify;

use crate::pace::{Arrivals, Pacer, Schedule};
use crate::payload::Payload;

/// Highest latency the histograms hold, in µs (a minute); larger values are clamped.
const MAX_LATENCY_US: u64 = 60_000_000;

/// A new latency histogram: 1 µs to a minute, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("static bounds are valid")
}

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
    fn next_close_is_rst(&self) -> bool {
        let n = self.close_tickets.fetch_add(1, Ordering::Relaxed) as f64;
        let share = self.rst_share;
        ((n + 1.0) * share + 0.5).floor() > (n * share + 0.5).floor()
    }

    /// Fixes the clock; called by the barrier's leader once every connection is up.
    ///
    /// The load begins a settling time after the barrier: each thread then starts one task
    /// per connection, and those first polls (about 2 µs each) must be over before the first
    /// message is due, or they would delay it.
    fn set_clock(&self) {
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

    fn clock(&self) -> Clock {
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

/// One thread's results, merged into the run's report.
#[derive(Debug, Clone)]
pub struct Tally {
    /// Latency of measured messages from their intended send (open loop) or their send
    /// (closed loop) to the echo, µs.
    pub latency: Histogram<u64>,
    /// Service time: from the send to the echo, µs.
    pub service: Histogram<u64>,
    /// Send lag: from the intended send time to the send, µs (open loop).
    pub send_lag: Histogram<u64>,
    /// The loadgen's own lateness: from when a message could go (its time had come and the
    /// connection's pipeline had room) to the send, µs (open loop).
    pub late: Histogram<u64>,
    /// Connect latency, µs.
    pub connect: Histogram<u64>,
    /// Measured messages.
    pub messages: u64,
    /// Measured bytes.
    pub bytes: u64,
    /// Connections we closed with FIN.
    pub fin: u64,
    /// Connections we closed with RST: the share's, and FINs that unread bytes turned into RST.
    pub rst: u64,
    /// Of `rst`, closes meant as FIN that went out as RST because bytes were unread.
    pub rst_unread: u64,
    /// Connections the server closed (EOF or reset) while we expected an echo.
    pub server_closed: u64,
    /// Echoed bytes that differed from what was sent.
    pub mismatches: u64,
    /// Failed connections by error kind.
    pub errors: BTreeMap<String, u64>,
    /// Messages sent, measured or not (progress and sanity).
    pub sent: u64,
    /// Echoes verified, measured or not: probes, warm-up and all (what the server echoed).
    pub all_messages: u64,
    /// Bytes of those echoes.
    pub all_bytes: u64,
    /// Connections open now.
    pub open: u64,
    /// Seconds the pacer spun towards deadlines inside the measured window.
    pub spin_s: f64,
    /// Every echo since the load began, in short slices, for the warm-up's judgement.
    pub timeline: crate::settle::Timeline,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            latency: new_histogram(),
            service: new_histogram(),
            send_lag: new_histogram(),
            late: new_histogram(),
            connect: new_histogram(),
            messages: 0,
            bytes: 0,
            fin: 0,
            rst: 0,
            rst_unread: 0,
            server_closed: 0,
            mismatches: 0,
            errors: BTreeMap::new(),
            sent: 0,
            all_messages: 0,
            all_bytes: 0,
            open: 0,
            spin_s: 0.0,
            timeline: Default::default(),
        }
    }
}

impl Tally {
    /// Adds another thread's results.
    pub fn merge(&mut self, o: &Tally) {
        self.latency.add(&o.latency).expect("same bounds");
        self.service.add(&o.service).expect("same bounds");
        self.send_lag.add(&o.send_lag).expect("same bounds");
        self.late.add(&o.late).expect("same bounds");
        self.connect.add(&o.connect).expect("same bounds");
        self.messages += o.messages;
        self.bytes += o.bytes;
        self.fin += o.fin;
        self.rst += o.rst;
        self.rst_unread += o.rst_unread;
        self.server_closed += o.server_closed;
        self.mismatches += o.mismatches;
        self.sent += o.sent;
        self.all_messages += o.all_messages;
        self.all_bytes += o.all_bytes;
        self.open += o.open;
        self.spin_s += o.spin_s;
        for (k, v) in &o.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
    }

    fn error(&mut self, kind: impl Into<String>) {
        *self.errors.entry(kind.into()).or_default() += 1;
    }
}

/// Live figures for the progress line, copied from each thread's tally a few times a second
/// (the per-message path never touches an atomic).
#[derive(Debug, Default)]
pub struct Progress {
    /// Messages sent so far.
    pub sent: AtomicU64,
    /// Connections open now.
    pub open: AtomicU64,
    /// Failed connections so far.
    pub errors: AtomicU64,
}

/// Why a connection's life ended.
enum Ending {
    /// We close it (FIN or RST by the share).
    Ours,
    /// The server closed or reset it first.
    Server,
    /// An error, already counted.
    Failed,
}

/// A connect error that will not get better by retrying, worth stopping the run for.
pub fn connect_error_label(err: &io::Error) -> String {
    match err.raw_os_error() {
        Some(libc::EADDRNOTAVAIL) => "ephemeral_ports_exhausted".into(),
        _ => error_label(err),
    }
}

/// A snake_case label for an error (`ConnectionRefused` → `connection_refused`).
pub fn error_label(err: &io::Error) -> String {
    ringecho_common::error_kind_label(err.kind())
}

/// Connects to the server's current address; when it refuses and the name had more, moves
/// every slot on to the next one, as a client tries each address of a host name in turn.
async fn connect(plan: &Plan, slot: u32) -> io::Result<TcpStream> {
    loop {
        let i = plan.addr_index.load(Ordering::Relaxed);
        let addr = plan.addrs[i];
        match connect_to(plan, slot, addr).await {
            Err(e) if i + 1 < plan.addrs.len() && is_unserved(&e) => {
                if plan
                    .addr_index
                    .compare_exchange(i, i + 1, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
                {
                    tracing::info!(
                        "cannot connect to {addr}: {e}; trying {}",
                        plan.addrs[i + 1]
                    );
                }
            }
            res => return res,
        }
    }
}

/// Whether a connect error says nothing serves that address (so the next one may).
fn is_unserved(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::AddrNotAvailable
            | io::ErrorKind::NetworkUnreachable
            | io::ErrorKind::HostUnreachable
    )
}

async fn connect_to(plan: &Plan, slot: u32, addr: SocketAddr) -> io::Result<TcpStream> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if !plan.source_addrs.is_empty() {
        let ip = plan.source_addrs[slot as usize % plan.source_addrs.len()];
        // Pick the port at connect time, per destination, not at bind time per source
        // address: otherwise every bound socket reserves a port of its own.
        socket2::SockRef::from(&socket).set_reuse_address(true)?;
        crate::sys::set_bind_address_no_port(socket.as_raw_fd())?;
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = tokio::time::timeout(plan.io_timeout, socket.connect(addr))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Connects, timing the connect from its own start into the connect histogram.
async fn timed_connect(plan: &Plan, slot: u32, tally: &RefCell<Tally>) -> Option<TcpStream> {
    let began = Instant::now();
    match connect(plan, slot).await {
        Ok(s) => {
            let mut t = tally.borrow_mut();
            t.connect
                .saturating_record(began.elapsed().as_micros() as u64);
            t.open += 1;
            Some(s)
        }
        Err(e) => {
            tally.borrow_mut().error(connect_error_label(&e));
            None
        }
    }
}

/// When the oldest echo a slot awaits was sent, if any; the thread's watchdog aborts a slot
/// whose echo takes longer than the I/O timeout (one check per slot a few times a second,
/// instead of a timer armed and disarmed for every message).
type BusySince = Rc<Cell<Option<Instant>>>;

/// A message in flight: its sequence number, when it was due, when it could first go (due,
/// and the pipeline had room) and when it left.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    seq: u64,
    intended: Option<Instant>,
    ready: Instant,
    sent: Instant,
}

/// What one connection slot carries across its connections (churn reconnects).
struct Slot {
    id: u32,
    plan: Arc<Plan>,
    clock: Clock,
    tally: Rc<RefCell<Tally>>,
    busy: BusySince,
    pacer: Option<Rc<Pacer>>,
    schedule: RefCell<Option<Schedule>>,
    /// The slot's notifier for the pacer.
    wake: Rc<Notify>,
    /// The thread's notifier for the end of the window: wakes slots sleeping far ahead (their
    /// next message fell after it), so the run ends on time. Not at the warm-up's decision:
    /// thousands of wake-ups there would land in the window's first milliseconds.
    window_over: Rc<Notify>,
    /// Messages sent on this slot so far, across its connections.
    sent: u64,
}

/// A wait longer than this, while the window's end is not yet known, is slept in a way the
/// warm-up's decision can cut short (the pacer's waits cannot be cancelled).
const FAR: Duration = Duration::from_millis(50);

impl Slot {
    fn done(&self) -> bool {
        self.done_at(self.sent)
    }

    /// Whether the slot is done once `sent` messages have gone.
    fn done_at(&self, sent: u64) -> bool {
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

    fn measured(&self, now: Instant) -> bool {
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
    async fn run(mut self, mut stream: TcpStream) {
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
                Ok(()) => t.rst += 1,
                Err(e) => t.error(error_label(&e)),
            }
        } else {
            match crate::sys::unread_bytes(stream.as_raw_fd()) {
                Ok(0) => t.fin += 1,
                Ok(extra) => {
                    // Bytes the server sent beyond every echo: not ours, so corrupt.
                    t.mismatches += extra as u64;
                    t.rst += 1;
                    t.rst_unread += 1;
                }
                Err(e) => t.error(error_label(&e)),
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
                self.tally.borrow_mut().server_closed += 1;
                Ending::Server
            }
            Err(e) => {
                self.tally.borrow_mut().error(error_label(&e));
                Ending::Failed
            }
        }
    }

    /// The next open-loop send time, if the run is open loop.
    fn schedule_take(&self) -> Option<Instant> {
        self.schedule.borrow_mut().as_mut().map(Schedule::take)
    }

    fn schedule_peek(&self) -> Option<Instant> {
        self.schedule.borrow().as_ref().map(Schedule::peek)
    }

    /// A time-bound run whose warm-up has not yet decided where the window starts.
    fn window_undecided(&self) -> bool {
        self.plan.measure_for.is_some() && self.plan.measured().is_none()
    }
}

/// One connection's conversation: a writer and a reader over one socket, sharing the
/// messages in flight and two notifiers. The writer sends when a message is due (open loop)
/// or the pipeline has room (closed loop); the reader verifies every echoed byte in order
/// and times each message three ways.
struct Conversation<'a> {
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
    sent: Cell<u64>,
}

/// What the writer's wait for the next message ended with.
enum Due {
    /// Far off with the window still undecided: look again.
    Later,
    /// Go now; open loop: the message's intended send time.
    Now(Option<Instant>),
}

impl<'a> Conversation<'a> {
    fn new(slot: &'a Slot, stream: &'a TcpStream) -> Self {
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
    async fn write(&self, mut payload: Payload) -> io::Result<()> {
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
    async fn read(&self, verify: Payload) -> io::Result<()> {
        let size = self.slot.plan.payload;
        // Room for every echo in flight (bounded), so one read takes all that arrived.
        let mut buf = vec![0u8; (size * self.pipeline).clamp(size, (256 << 10).max(size))];
        let mut have = 0usize;
        loop {
            if !self.owed().await {
                // Bytes beyond every echo we were owed: the server sent what we never did.
                self.slot.tally.borrow_mut().mismatches += have as u64;
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
            t.mismatches += verify.mismatches_at(front.seq, &buf[used..used + size]);
            used += size;
            t.all_messages += 1;
            t.all_bytes += size as u64;
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
            t.messages += 1;
            t.bytes += self.slot.plan.payload as u64;
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

/// Echoes the probe on a new connection; returns the mismatched bytes.
async fn probe(plan: &Plan, slot: u32, stream: &TcpStream) -> io::Result<u64> {
    let mut payload = Payload::new(slot as u64, plan.payload);
    let mut echo = vec![0u8; plan.payload];
    let exchange = async {
        write_all(stream, payload.stamp(PROBE_SEQ)).await?;
        read_exact(stream, &mut echo).await
    };
    tokio::time::timeout(plan.io_timeout, exchange)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "probe echo timed out"))??;
    Ok(payload.mismatches_at(PROBE_SEQ, &echo))
}

/// Writes all of `buf` through tokio's readiness, without `&mut` (the reader shares the
/// stream).
async fn write_all(stream: &TcpStream, mut buf: &[u8]) -> io::Result<()> {
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
async fn read_exact(stream: &TcpStream, buf: &mut [u8]) -> io::Result<()> {
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
fn is_peer_close(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
    )
}

/// Runs `slots` on the calling thread's own runtime, in the plan's phases, and returns their
/// tally. Always reaches the barrier (twice), so one thread's failure cannot hang the rest.
///
/// Long because it is the thread's whole life in order — connect, barrier, one task per
/// slot, the ticks that report slices and catch stuck echoes — over locals that every step
/// shares; each step is a few lines.
pub fn run_thread(
    thread: usize,
    slots: Vec<u32>,
    plan: Arc<Plan>,
    progress: Arc<Progress>,
) -> io::Result<Tally> {
    // Waits end when asked, not up to 50 µs later; the sleeping pacer keeps the kernel's
    // slack, which is what it trades precision for.
    if plan.rate.is_none() || plan.pacer == crate::pace::PacerMode::Precise {
        crate::sys::tighten_timer_slack();
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let tally = Rc::new(RefCell::new(Tally::default()));
    let local = tokio::task::LocalSet::new();
    let streams = match &rt {
        Ok(rt) => local.block_on(rt, connect_phase(thread, &slots, &plan, &tally)),
        Err(_) => Vec::new(),
    };
    if plan.barrier.wait().is_leader() {
        plan.set_clock();
    }
    plan.barrier.wait();
    let rt = rt?;
    let clock = plan.clock();
    let pacer = plan.rate.map(|_| Pacer::new(plan.pacer));
    let window_over = Rc::new(Notify::new());
    let (mut window_known, mut window_ended) = (false, false);
    local.block_on(&rt, async {
        let mut tasks = tokio::task::JoinSet::new();
        let pacer_task = pacer.clone().map(|p| tokio::task::spawn_local(p.run()));
        let mut watched = Vec::with_capacity(streams.len());
        for (id, stream) in streams {
            let busy = BusySince::default();
            let schedule = plan.rate.map(|rate| {
                Schedule::new(
                    clock.begin,
                    rate,
                    plan.connections,
                    id,
                    plan.arrivals,
                    plan.seed,
                )
            });
            let slot = Slot {
                id,
                plan: plan.clone(),
                clock,
                tally: tally.clone(),
                busy: busy.clone(),
                pacer: pacer.clone(),
                schedule: RefCell::new(schedule),
                wake: Rc::new(Notify::new()),
                window_over: window_over.clone(),
                sent: 0,
            };
            let abort = tasks.spawn_local(slot.run(stream));
            watched.push((busy, abort));
        }
        // Every 50 ms: hand finished slices to the warm-up's board; every 250 ms: look for
        // stuck echoes and publish progress.
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        let mut ticks = 0u64;
        loop {
            tokio::select! {
                done = tasks.join_next() => if done.is_none() { break },
                _ = tick.tick() => {
                    let now = Instant::now();
                    ticks += 1;
                    tally
                        .borrow_mut()
                        .timeline
                        .report(now.saturating_duration_since(clock.begin), &plan.board);
                    if let Some(m) = plan.measured() {
                        if !window_known {
                            window_known = true;
                            if let Some(p) = &pacer {
                                p.count_spin_within(m.from, m.end);
                            }
                        }
                        if !window_ended && m.end.is_some_and(|end| now >= end) {
                            window_ended = true;
                            window_over.notify_waiters();
                        }
                    }
                    if ticks % 5 != 0 {
                        continue;
                    }
                    for (busy, abort) in &watched {
                        if busy.get().is_some_and(|t| now.duration_since(t) > plan.io_timeout) {
                            busy.set(None);
                            abort.abort();
                            let mut t = tally.borrow_mut();
                            t.error("echo_timed_out");
                            t.open -= 1;
                        }
                    }
                    let t = tally.borrow();
                    progress.sent.store(t.sent, Ordering::Relaxed);
                    progress.open.store(t.open, Ordering::Relaxed);
                    progress.errors.store(t.errors.values().sum(), Ordering::Relaxed);
                }
            }
        }
        if let Some(t) = pacer_task {
            t.abort();
        }
    });
    tally.borrow_mut().timeline.finish(&plan.board);
    let mut t = tally.borrow().clone();
    t.spin_s = pacer.map_or(0.0, |p| p.spin_s());
    progress.sent.store(t.sent, Ordering::Relaxed);
    progress.open.store(0, Ordering::Relaxed);
    Ok(t)
}

/// Opens this thread's connections, paced: thread `thread` of `n` starts its k-th connect at
/// `(k × n + thread) / connect_rate`, so the threads interleave into one even stream.
async fn connect_phase(
    thread: usize,
    slots: &[u32],
    plan: &Arc<Plan>,
    tally: &Rc<RefCell<Tally>>,
) -> Vec<(u32, TcpStream)> {
    let threads = plan.threads;
    let mut tasks = tokio::task::JoinSet::new();
    for (k, &slot) in slots.iter().enumerate() {
        let at = plan.connect_from
            + Duration::from_secs_f64((k * threads + thread) as f64 / plan.connect_rate);
        let (plan, tally) = (plan.clone(), tally.clone());
        tasks.spawn_local(async move {
            tokio::time::sleep_until(at.into()).await;
            let stream = timed_connect(&plan, slot, &tally).await?;
            match probe(&plan, slot, &stream).await {
                Ok(0) => {
                    let mut t = tally.borrow_mut();
                    t.all_messages += 1;
                    t.all_bytes += plan.payload as u64;
                    Some((slot, stream))
                }
                Ok(bad) => {
                    let mut t = tally.borrow_mut();
                    t.mismatches += bad;
                    t.error("probe_mismatch");
                    t.open -= 1;
                    None
                }
                Err(e) => {
                    let mut t = tally.borrow_mut();
                    t.error(format!("probe_{}", error_label(&e)));
                    t.open -= 1;
                    None
                }
            }
        });
    }
    let mut out = Vec::with_capacity(slots.len());
    while let Some(r) = tasks.join_next().await {
        if let Ok(Some(s)) = r {
            out.push(s);
        }
    }
    out.sort_by_key(|(slot, _)| *slot);
    out
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
