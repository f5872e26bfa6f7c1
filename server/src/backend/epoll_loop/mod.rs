//! epoll driven by hand (mio, no async runtime): one event loop per worker thread, as Redis's
//! `ae_epoll.c` and nginx's epoll module run theirs. It is the epoll half of the hand-written
//! pair: beside `multishot` it measures what io_uring's interface gives, with no runtime's
//! cost on either side.
//!
//! - **Edge-triggered, EPOLLOUT only when needed.** Each socket is added for reading when it
//!   is accepted; writability is added after a short write and taken away once the bytes are
//!   out (Redis's practice), so the ACKs that free send-buffer space wake nobody, and a
//!   message costs no `epoll_ctl`.
//! - **A batch per wait, untimed.** One `epoll_wait` returns up to [`EVENTS`] events; the
//!   loop serves them all before waiting again. The wait has no timeout: a timerfd ticks
//!   for the shutdown phase and idle timers.
//! - **No allocation per message.** Every connection is read into the thread's one receive
//!   buffer and echoed from it at once; only the bytes a short write leaves are copied into a
//!   buffer of the connection's own, from a pool, and the connection reads nothing more
//!   until they are sent.
//! - **A short read is taken as drained**, as nginx takes it: the next edge says when more
//!   arrives, so a message costs one `read` and one `write`, not a third call to see EAGAIN.
//!
//! What a connection holds and when it ends is decided in [`conn`], with no I/O, under
//! property tests against a model of the kernel's edges; this module carries it out.
//!
//! Memory per thread: one receive buffer (`--buffer-size`, 64 KiB by default), `64` bytes or
//! so per connection, and per connection whose peer is not reading its echoes one spill of
//! what its short write left: of that size while the thread's spills hold less than
//! [`conn::SPILL_BUDGET`], then at most [`conn::SMALL_READ`] (reads are cut to it), the small ones
//! from a pool that keeps at most [`conn::SPARE_SPILLS`] spare ([`Spills`]).

mod conn;

use std::io;
use std::time::Instant;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use super::shell::{self, Shell, Step};
use crate::admission::{Admission, Seen};
use crate::ready::Ready;
use crate::stats::{CloseKind, Counters};
use crate::worker::Worker;
use conn::{Next, Session, Spill, Spills};

/// Events taken from one `epoll_wait` at most. Not more: the wait polls each ready socket
/// before the loop reads and writes it, and with a longer batch the first sockets' lines
/// have left the cache by the time they are served (1,024 measured 1.7 % (0.4–4.2 %) more
/// CPU per message at 10,000 connections side by side, 0.7 % at 1,000).
const EVENTS: usize = 128;
/// Connections accepted from one listener per turn before the others' events are served.
const ACCEPTS_PER_TURN: usize = 64;

/// One connection: its socket, its rules' state, the bytes a short write left, and when it
/// last moved.
struct Conn {
    stream: TcpStream,
    session: Session,
    /// The unsent bytes a short write left.
    spill: Option<Spill>,
    /// When it last moved, on the loop's millisecond clock.
    last_active: u32,
    /// Which connection of its slot's this is, for the idle order.
    gen: u32,
    /// Registered for writability too: only while unsent bytes wait for room.
    out_armed: bool,
}

impl Conn {
    /// What the idle order needs to know of it (its generation `gen`).
    fn seen(&self, gen: u32, now: u32) -> Seen {
        shell::seen(
            self.gen == gen,
            self.session.is_closing(),
            self.last_active,
            self.session.unsent() > 0,
            now,
            Some(std::os::fd::AsRawFd::as_raw_fd(&self.stream)),
        )
    }
}

/// `slot`'s connection as the idle order sees it.
fn seen(conns: &Slab<Conn>, slot: usize, gen: u32, now: u32) -> Seen {
    conns.get(slot).map_or(Seen::Gone, |c| c.seen(gen, now))
}

/// Runs one worker thread's event loop until its connections are drained.
pub fn run(listeners: Vec<std::net::TcpListener>, worker: Worker, ready: Ready) -> io::Result<()> {
    let poll = ready.report(Poll::new())?;
    let mut mio_listeners = Vec::with_capacity(listeners.len());
    for (i, l) in listeners.into_iter().enumerate() {
        let mut l = TcpListener::from_std(l);
        ready.report(
            poll.registry()
                .register(&mut l, listener_token(i), Interest::READABLE),
        )?;
        mio_listeners.push(l);
    }
    let tick = ready.report(tick_timer())?;
    ready.report(poll.registry().register(
        &mut mio::unix::SourceFd(&std::os::fd::AsRawFd::as_raw_fd(&tick)),
        TICK_TOKEN,
        Interest::READABLE,
    ))?;
    ready.done();
    let size = worker.limits.buffer_size;
    let mut lp = Loop {
        poll,
        listeners: mio_listeners,
        conns: Slab::new(),
        buf: vec![0; size].into_boxed_slice(),
        spills: Spills::new(size),
        again: Vec::new(),
        next_gen: 0,
        shell: Shell::new(worker),
        tick,
    };
    lp.run()
}

/// Listener `i`'s token: counted down from the top, so connections' slots can start at 0.
fn listener_token(i: usize) -> Token {
    Token(usize::MAX - i)
}

/// The tick's token, below the listeners'.
const TICK_TOKEN: Token = Token(usize::MAX / 2);

/// A timerfd that fires every [`TICK`](super::clock::TICK), so the loop looks at the shutdown
/// phase and idle timers while waiting with no timeout: a timed `epoll_wait` that sleeps arms
/// and cancels a kernel timer each time, which is what an idle-heavy loop does per message
/// (liburing's echo example and multishot wait untimed for the same reason).
fn tick_timer() -> io::Result<std::os::fd::OwnedFd> {
    use rustix::time::{
        timerfd_create, timerfd_settime, Itimerspec, TimerfdClockId, TimerfdFlags,
        TimerfdTimerFlags, Timespec,
    };
    let fd = timerfd_create(
        TimerfdClockId::Monotonic,
        TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
    )?;
    let tick = Timespec {
        tv_sec: 0,
        tv_nsec: super::clock::TICK.as_nanos() as i64,
    };
    let spec = Itimerspec {
        it_interval: tick,
        it_value: tick,
    };
    timerfd_settime(&fd, TimerfdTimerFlags::empty(), &spec)?;
    Ok(fd)
}

struct Loop {
    poll: Poll,
    /// One per address `--listen` named; emptied once accepting has stopped.
    listeners: Vec<TcpListener>,
    conns: Slab<Conn>,
    /// The thread's receive buffer, shared by every connection.
    buf: Box<[u8]>,
    /// The connections' spills ([`Spills`] holds their rule).
    spills: Spills,
    /// Connections that yielded with more to read, served after the next wait.
    again: Vec<usize>,
    next_gen: u32,
    /// The phase step, clock, sweep, back-off and admission both hand-written loops share.
    shell: Shell,
    /// The tick's timerfd (registered under [`TICK_TOKEN`]).
    tick: std::os::fd::OwnedFd,
}

impl Loop {
    fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(EVENTS);
        let mut again = Vec::new();
        loop {
            let step = self.shell.step();
            if step != Step::Serve {
                self.stop_accepting();
            }
            if step == Step::CloseAll {
                let open: Vec<usize> = self.conns.iter().map(|(slot, _)| slot).collect();
                for slot in open {
                    self.close(slot, CloseKind::Server);
                }
            }
            if step != Step::Serve && self.conns.is_empty() {
                return Ok(());
            }
            // Untimed unless work is waiting: the tick's timerfd wakes the loop.
            let timeout = if !self.again.is_empty() {
                Some(std::time::Duration::ZERO)
            } else {
                self.shell
                    .accept_retry_at
                    .map(|t| t.saturating_duration_since(Instant::now()))
            };
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let now = self.shell.stamp();
            std::mem::swap(&mut again, &mut self.again);
            for event in events.iter() {
                let Token(t) = event.token();
                if event.token() == TICK_TOKEN {
                    // Drain the expiry count; the next expiry gives the next edge.
                    let mut n = [0u8; 8];
                    let _ = rustix::io::read(&self.tick, &mut n);
                } else if t > usize::MAX - self.listeners.len() {
                    self.accept(usize::MAX - t);
                } else if let Some(c) = self.conns.get_mut(t) {
                    let hup = event.is_read_closed() || event.is_error();
                    c.session
                        .ready(event.is_readable(), event.is_writable(), hup);
                    self.serve(t);
                }
            }
            for slot in again.drain(..) {
                if self.conns.contains(slot) {
                    self.serve(slot);
                }
            }
            if self.shell.accept_retry_at.is_some_and(|t| t <= now) {
                self.shell.accept_retry_at = None;
                for i in 0..self.listeners.len() {
                    self.accept(i);
                }
            }
            if self.shell.sweep_due(now) {
                self.close_idle();
                self.spills.trim();
            }
            self.shell
                .worker
                .counters
                .spill_buffers_held
                .set(self.spills.held());
        }
    }

    /// Accepts what listener `i` has waiting, up to a turn's budget.
    fn accept(&mut self, i: usize) {
        for _ in 0..ACCEPTS_PER_TURN {
            let Some(l) = self.listeners.get(i) else {
                return;
            };
            match l.accept() {
                Ok((stream, peer)) => self.admit(stream, peer),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e)
                    if e.kind() == io::ErrorKind::Interrupted
                        || e.raw_os_error() == Some(libc::ECONNABORTED) => {}
                Err(e) => {
                    // The listener's edge is spent: look again after a pause, since what is
                    // waiting in the backlog gives no new edge.
                    self.shell.accept_failed(&e);
                    return;
                }
            }
        }
        // More may be waiting: accept again after the others' events.
        self.shell.accept_retry_at.get_or_insert_with(Instant::now);
    }

    /// Deregisters and closes the listeners.
    fn stop_accepting(&mut self) {
        for mut l in self.listeners.drain(..) {
            let _ = self.poll.registry().deregister(&mut l);
        }
        self.shell.accept_retry_at = None;
    }

    fn admit(&mut self, mut stream: TcpStream, peer: std::net::SocketAddr) {
        let now = self.shell.now;
        let conns = &self.conns;
        match self
            .shell
            .admit(Some(peer), |slot, gen| seen(conns, slot, gen, now))
        {
            Admission::In => {}
            Admission::InPlaceOf(slot) => self.close(slot, CloseKind::Server),
            Admission::Refused => return,
        }
        let peer = Some(peer);
        let entry = self.conns.vacant_entry();
        let token = Token(entry.key());
        // Added for reading alone: bytes that came with the handshake give an edge at once.
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut stream, token, Interest::READABLE)
        {
            self.shell.failed(&CloseKind::from_error(&e), peer);
            return;
        }
        tracing::debug!(slot = token.0, "session open");
        self.next_gen = self.next_gen.wrapping_add(1);
        let gen = self.next_gen;
        entry.insert(Conn {
            stream,
            session: Session::default(),
            spill: None,
            last_active: now,
            gen,
            out_armed: false,
        });
        let conns = &self.conns;
        self.shell
            .opened(token.0, gen, peer, |slot, gen| seen(conns, slot, gen, now));
    }

    /// One turn of connection `slot`: what its rules ask, until they park it, yield or close.
    fn serve(&mut self, slot: usize) {
        let now = self.shell.now;
        let counters = &self.shell.worker.counters;
        let c = &mut self.conns[slot];
        c.session.turn();
        loop {
            match c.session.next() {
                Next::Recv => {
                    let size = self.spills.read_size(self.buf.len());
                    let res = recv(&c.stream, &mut self.buf[..size]);
                    c.session.received(&res, size);
                    let Ok(n @ 1..) = res else { continue };
                    c.last_active = now;
                    let res = send(&c.stream, &self.buf[..n]);
                    echoed(counters, c.session.sent(&res));
                    let left = c.session.unsent() as usize;
                    if left > 0 && !c.session.is_closing() {
                        // A short write: keep what is left, and read no more until it is out.
                        debug_assert!(c.spill.is_none(), "read while holding a spill");
                        c.spill = Some(self.spills.keep(&self.buf[n - left..n]));
                    }
                }
                Next::Send => {
                    let spill = c.spill.as_ref().expect("unsent bytes are spilled");
                    let res = send(&c.stream, spill.unsent(c.session.unsent()));
                    if matches!(res, Ok(1..)) {
                        c.last_active = now;
                    }
                    echoed(counters, c.session.sent(&res));
                    if c.session.unsent() == 0 {
                        if let Some(spill) = c.spill.take() {
                            self.spills.give_back(spill);
                        }
                    }
                }
                Next::Park => {
                    // Writability is asked for only while bytes wait for room, as Redis's
                    // ae_epoll.c asks: registered for it always, every ACK that frees send
                    // buffer space would wake the loop for nothing. The modification
                    // reports the socket's state at once, so no edge is lost between the
                    // short write and it.
                    let want = c.session.unsent() > 0;
                    if want != c.out_armed {
                        let interest = if want {
                            Interest::READABLE | Interest::WRITABLE
                        } else {
                            Interest::READABLE
                        };
                        match self
                            .poll
                            .registry()
                            .reregister(&mut c.stream, Token(slot), interest)
                        {
                            Ok(()) => c.out_armed = want,
                            Err(e) => {
                                c.session.close(CloseKind::from_error(&e));
                                continue;
                            }
                        }
                    }
                    return;
                }
                Next::Yield => {
                    self.again.push(slot);
                    return;
                }
                Next::Close(how) => {
                    let c = self.conns.remove(slot);
                    if let Some(spill) = c.spill {
                        self.spills.give_back(spill);
                    }
                    // Closing the descriptor takes it out of the epoll set.
                    drop(c.stream);
                    self.shell.closed(slot, &how);
                    return;
                }
            }
        }
    }

    /// Ends connection `slot` now, for `how`.
    fn close(&mut self, slot: usize, how: CloseKind) {
        self.conns[slot].session.close(how);
        self.serve(slot);
    }

    /// Closes the connections past `--idle-timeout`, oldest first, from the idle order.
    fn close_idle(&mut self) {
        let now = self.shell.now;
        loop {
            let conns = &self.conns;
            let Some(slot) = self.shell.expired(|slot, gen| seen(conns, slot, gen, now)) else {
                return;
            };
            self.close(slot, CloseKind::Server);
        }
    }
}

/// recv(2), made directly (rustix): glibc's wrapper, in a process with more than one
/// thread, marks every call a cancellation point, which a profile put at several percent of
/// the loop's user time; the C servers, single-threaded, skip it.
fn recv(stream: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    rustix::net::recv(stream, buf, rustix::net::RecvFlags::empty())
        .map(|(n, _)| n)
        .map_err(io::Error::from)
}

/// send(2) with MSG_NOSIGNAL (a reset peer is EPIPE, not SIGPIPE), made directly as
/// [`recv`] is.
fn send(stream: &TcpStream, buf: &[u8]) -> io::Result<usize> {
    rustix::net::send(stream, buf, rustix::net::SendFlags::NOSIGNAL).map_err(io::Error::from)
}

/// Counts a receive whose bytes are all written back.
fn echoed(counters: &Counters, done: Option<u32>) {
    if let Some(bytes) = done {
        counters.recvs.add(1);
        counters.bytes_echoed.add(u64::from(bytes));
    }
}
