//! The load engine: threads, each a current-thread runtime driving its share of connection
//! slots; each slot connects, echoes verified messages, closes with FIN or RST, and (with
//! churn) reconnects. Each thread keeps its own histograms and counts, merged at the end.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{TcpSocket, TcpStream};

use crate::payload::Payload;

/// Highest latency the histograms hold, in µs (a minute); larger values are clamped.
const MAX_LATENCY_US: u64 = 60_000_000;

/// A new latency histogram: 1 µs to a minute, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("static bounds are valid")
}

/// What every slot of every thread follows; shared read-only across threads.
#[derive(Debug)]
pub struct Plan {
    /// Server address.
    pub addr: SocketAddr,
    /// Bytes per message.
    pub payload: usize,
    /// Messages per slot, in a message-bound run.
    pub messages: Option<u64>,
    /// Messages per connection before it is replaced.
    pub churn: Option<u64>,
    /// Share of closes made with SO_LINGER=0.
    pub rst_share: f64,
    /// Open-loop: seconds between two sends of the whole run.
    pub interval_s: Option<f64>,
    /// Connection slots in the whole run.
    pub connections: u32,
    /// Longest a connect or an echo may take.
    pub io_timeout: Duration,
    /// Local addresses to connect from, by slot; empty: the kernel chooses.
    pub source_addrs: Vec<IpAddr>,
    /// When the first message may go.
    pub start: Instant,
    /// Messages completing from here on are measured.
    pub measure_from: Instant,
    /// Time-bound runs stop sending here.
    pub end: Option<Instant>,
    /// Closes taken so far across all threads: the n-th close is an RST exactly when the
    /// share's running total rounds up at n, so the RST count is round(share × closes).
    pub close_tickets: AtomicU64,
}

impl Plan {
    /// Whether the close that draws the next ticket is an RST.
    fn next_close_is_rst(&self) -> bool {
        let n = self.close_tickets.fetch_add(1, Ordering::Relaxed) as f64;
        let share = self.rst_share;
        ((n + 1.0) * share + 0.5).floor() > (n * share + 0.5).floor()
    }

    /// When slot `slot` should send its `seq`-th message in an open-loop run.
    fn intended(&self, slot: u32, seq: u64) -> Option<Instant> {
        let interval = self.interval_s?;
        let k = seq as f64 * self.connections as f64 + slot as f64;
        Some(self.start + Duration::from_secs_f64(k * interval))
    }

    /// Whether a message completing at `now` counts: in time-bound runs, inside the window
    /// after the warm-up; in message-bound runs, every message.
    fn measured(&self, now: Instant) -> bool {
        match self.end {
            Some(end) => now >= self.measure_from && now < end,
            None => true,
        }
    }

    fn slot_done(&self, sent: u64) -> bool {
        match (self.messages, self.end) {
            (Some(n), _) => sent >= n,
            (None, Some(end)) => Instant::now() >= end,
            (None, None) => true,
        }
    }
}

/// One thread's results, merged into the run's report.
#[derive(Debug, Clone)]
pub struct Tally {
    /// Round-trip latency of measured messages, µs.
    pub latency: Histogram<u64>,
    /// Connect latency, µs.
    pub connect: Histogram<u64>,
    /// Measured messages.
    pub messages: u64,
    /// Measured bytes.
    pub bytes: u64,
    /// Connections we closed with FIN.
    pub fin: u64,
    /// Connections we closed with RST.
    pub rst: u64,
    /// Connections the server closed (EOF or reset) while we expected an echo.
    pub server_closed: u64,
    /// Echoed bytes that differed from what was sent.
    pub mismatches: u64,
    /// Failed connections by error kind.
    pub errors: BTreeMap<String, u64>,
    /// Messages sent, measured or not (progress and sanity).
    pub sent: u64,
    /// Connections open now.
    pub open: u64,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            latency: new_histogram(),
            connect: new_histogram(),
            messages: 0,
            bytes: 0,
            fin: 0,
            rst: 0,
            server_closed: 0,
            mismatches: 0,
            errors: BTreeMap::new(),
            sent: 0,
            open: 0,
        }
    }
}

impl Tally {
    /// Adds another thread's results.
    pub fn merge(&mut self, o: &Tally) {
        self.latency.add(&o.latency).expect("same bounds");
        self.connect.add(&o.connect).expect("same bounds");
        self.messages += o.messages;
        self.bytes += o.bytes;
        self.fin += o.fin;
        self.rst += o.rst;
        self.server_closed += o.server_closed;
        self.mismatches += o.mismatches;
        self.sent += o.sent;
        self.open += o.open;
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
    ringecho_server::stats::error_kind_label(err.kind())
}

async fn connect(plan: &Plan, slot: u32) -> io::Result<TcpStream> {
    let socket = match plan.addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if !plan.source_addrs.is_empty() {
        let ip = plan.source_addrs[slot as usize % plan.source_addrs.len()];
        // Pick the port at connect time, per destination, not at bind time per source
        // address: otherwise every bound socket reserves a port of its own.
        socket2::SockRef::from(&socket).set_reuse_address(true)?;
        set_bind_address_no_port(&socket)?;
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = tokio::time::timeout(plan.io_timeout, socket.connect(plan.addr))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

fn set_bind_address_no_port(socket: &TcpSocket) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: setsockopt reads an int from a pointer that is valid for the call.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// When a slot's current echo began, if one is under way; the thread's watchdog aborts a
/// slot whose echo takes longer than the I/O timeout (one check per slot a few times a
/// second, instead of a timer armed and disarmed for every message).
type BusySince = Rc<Cell<Option<Instant>>>;

/// Drives one connection slot for the whole run.
async fn run_slot(slot: u32, plan: Arc<Plan>, tally: Rc<RefCell<Tally>>, busy: BusySince) {
    let mut payload = Payload::new(slot as u64, plan.payload);
    let mut echo = vec![0u8; plan.payload];
    let mut sent = 0u64;
    // Every thread starts its slots together, once all threads are up.
    tokio::time::sleep_until(plan.start.into()).await;
    while !plan.slot_done(sent) {
        let began = Instant::now();
        let mut stream = match connect(&plan, slot).await {
            Ok(s) => s,
            Err(e) => {
                tally.borrow_mut().error(connect_error_label(&e));
                return;
            }
        };
        {
            let mut t = tally.borrow_mut();
            t.connect
                .saturating_record(began.elapsed().as_micros() as u64);
            t.open += 1;
        }
        let mut on_this_conn = 0u64;
        let ending = loop {
            if plan.slot_done(sent) || plan.churn.is_some_and(|k| on_this_conn >= k) {
                break Ending::Ours;
            }
            // Open loop: a message due while its connection still awaited the previous echo is
            // timed from when it was due (coordinated omission: the server held it up); one
            // sent on schedule is timed from when it left, so the timer's 1 ms granularity is
            // not counted as server latency.
            let t_send = match plan.intended(slot, sent) {
                Some(at) if Instant::now() >= at => at,
                Some(at) => {
                    tokio::time::sleep_until(at.into()).await;
                    Instant::now()
                }
                None => Instant::now(),
            };
            let msg = payload.stamp(sent);
            busy.set(Some(Instant::now()));
            let result = async {
                stream.write_all(msg).await?;
                stream.read_exact(&mut echo).await?;
                // The server sends only what we sent, and we have read all of it: the socket
                // stays empty until our next message. Drop tokio's read readiness now instead
                // of learning it from a read that fails with EAGAIN: one syscall less per
                // message. (A reset still wakes us: it raises a new readiness event.)
                let _ = stream.try_io(Interest::READABLE, || {
                    Err::<(), _>(io::ErrorKind::WouldBlock.into())
                });
                Ok::<(), io::Error>(())
            }
            .await;
            busy.set(None);
            sent += 1;
            on_this_conn += 1;
            let mut t = tally.borrow_mut();
            t.sent += 1;
            match result {
                Ok(()) => {}
                Err(e) if is_peer_close(&e) => {
                    t.server_closed += 1;
                    break Ending::Server;
                }
                Err(e) => {
                    t.error(error_label(&e));
                    break Ending::Failed;
                }
            }
            t.mismatches += payload.mismatches(&echo);
            let now = Instant::now();
            if plan.measured(now) {
                t.latency
                    .saturating_record(now.duration_since(t_send).as_micros() as u64);
                t.messages += 1;
                t.bytes += plan.payload as u64;
            }
        };
        let mut t = tally.borrow_mut();
        t.open -= 1;
        if let Ending::Ours = ending {
            if plan.next_close_is_rst() {
                match socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO)) {
                    Ok(()) => t.rst += 1,
                    Err(e) => t.error(error_label(&e)),
                }
            } else {
                t.fin += 1;
            }
        }
        drop(stream);
        if !matches!(ending, Ending::Ours) {
            return;
        }
    }
}

/// EOF before the whole echo arrived, or a reset: the server ended the connection.
fn is_peer_close(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
    )
}

/// Runs `slots` on the calling thread's own runtime and returns their tally.
pub fn run_thread(slots: Vec<u32>, plan: Arc<Plan>, progress: Arc<Progress>) -> io::Result<Tally> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    let tally = Rc::new(RefCell::new(Tally::default()));
    local.block_on(&rt, async {
        let mut tasks = tokio::task::JoinSet::new();
        let mut watched = Vec::with_capacity(slots.len());
        for slot in slots {
            let busy = BusySince::default();
            let abort =
                tasks.spawn_local(run_slot(slot, plan.clone(), tally.clone(), busy.clone()));
            watched.push((busy, abort));
        }
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                done = tasks.join_next() => if done.is_none() { break },
                _ = tick.tick() => {
                    let now = Instant::now();
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
    });
    let t = tally.borrow().clone();
    progress.sent.store(t.sent, Ordering::Relaxed);
    progress.open.store(0, Ordering::Relaxed);
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(share: f64) -> Plan {
        let now = Instant::now();
        Plan {
            addr: "127.0.0.1:1".parse().unwrap(),
            payload: 16,
            messages: Some(1),
            churn: None,
            rst_share: share,
            interval_s: None,
            connections: 1,
            io_timeout: Duration::from_secs(1),
            source_addrs: vec![],
            start: now,
            measure_from: now,
            end: None,
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
    fn open_loop_schedule_spreads_slots() {
        let mut p = plan(0.0);
        p.connections = 4;
        p.interval_s = Some(0.001);
        let t = |slot, seq| p.intended(slot, seq).unwrap().duration_since(p.start);
        assert_eq!(t(0, 0), Duration::ZERO);
        assert_eq!(t(1, 0), Duration::from_millis(1));
        assert_eq!(t(0, 1), Duration::from_millis(4));
    }
}
