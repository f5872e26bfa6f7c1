//! io_uring driven directly (io-uring crate): one multishot accept per listener, one multishot
//! receive per connection drawing from a per-thread provided buffer ring, and each received
//! buffer sent back as it is and returned to the ring when its send completes.
//!
//! With `--direct-descriptors on`, connections live in the ring's own file table instead of
//! the process's descriptor table, accepted by one-shot accepts bounded by the free slots
//! ([`Table`] says why).
//!
//! Compared with one recv submission per message, a multishot receive is armed once and then
//! completes every time data arrives, and buffers belong to the ring, not to connections, so an
//! idle connection costs no buffer memory at all.
//!
//! # Why no set of peers can starve the others
//!
//! The ring is shared by every connection of the thread, so a buffer held by a connection
//! whose peer never reads would be lost to everyone. The rules that bound what such peers
//! hold — a zero-copy budget of half the ring, spilling into buffers of the connection's own,
//! and a cap on each connection's unsent bytes enforced by the kernel's multishot receive
//! limit — are in [`conn`], a state machine with no I/O whose property tests drive it through
//! any sequence of events. This module is the driver: it turns completions into
//! [`conn::Event`]s and carries out the [`conn::Action`]s that come back.
//!
//! Memory bound per thread: `B × S` of ring (`--ring-buffers × --buffer-size`) plus, per
//! connection with a send blocked, at most `MAX_HELD × S` unsent bytes in at most
//! `MAX_HELD + 2` buffers (on kernels without the receive limit, plus what arrives before
//! the receive's cancellation lands), plus a pool of at most 1,024 spare spill buffers
//! (trimmed to 64 after a quiet tick). At the defaults (256 × 4 KiB, cap 4) that is 1 MiB +
//! at most 24 KiB per blocked connection; with large receives ([`conn`]), plus the large
//! ring (32 × 32 KiB, at most half of it held) and, for each of the at most ten connections
//! with a large-mode credit, its 128 KiB cap in spills (a bulk connection without one keeps
//! the small cap).
//!
//! Alternatives weighed are in docs/backends.md: per-connection buffer rings cost memory for
//! idle connections, which the shared ring exists to avoid.
//!
//! The raw memory handling lives in [`ring`], the one module of this crate allowed `unsafe`
//! blocks besides two single calls (a socket's shutdown, its SIOCOUTQ).

mod conn;
#[allow(unsafe_code)]
mod ring;

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Instant;

use slab::Slab;

use super::clock::TICK;
use super::shell::{self, Shell, Step};
use crate::admission::{Admission, Seen};
use crate::listener::is_resource_exhaustion;
use crate::ready::Ready;
use crate::stats::CloseKind;
use crate::worker::Worker;
use conn::{Action, Event, Session, Shared, Spills};
use ring::{accepted_fd, Buf, Completion, Ring, Sock, TaskRun, MAX_IOV};

const _: () = assert!(conn::MAX_SEGS <= MAX_IOV);

/// The buffer ring's shape, from `--ring-buffers` and `--buffer-size`.
#[derive(Debug, Clone, Copy)]
pub struct RingConfig {
    pub buffers: u16,
    pub buffer_size: u32,
    /// Connections as direct descriptors (`--direct-descriptors`).
    pub direct: bool,
    /// Held buffers sent together at the end of a batch (`--gather-sends`, [`conn`]).
    pub gather: bool,
    /// A second ring of large buffers for connections moving bulk data (`--large-receives`,
    /// and no `--buffer-size` given: that flag gives one ring of one size).
    pub large: bool,
    /// Receives fill several buffers per completion where the kernel can
    /// (`--recv-bundles`, IORING_RECVSEND_BUNDLE).
    pub bundles: bool,
}

/// The large ring: 32 buffers of 32 KiB (1 MiB of address space per thread, resident only
/// as bulk traffic touches it; half of it held at most). 64 measured the same at 100 ×
/// 16 KiB and 10 × 64 KiB and kept 2 MiB resident under a never-reading flood
/// (docs/results.md, "Levers tried on multishot").
const LARGE_BUFFERS: u16 = 32;
const LARGE_SIZE: u32 = 32 << 10;
/// Connections that may hold the large cap at once (`conn::Large::cap`).
const LARGE_CREDITS: usize = 10;

/// Submission queue entries per ring (the completion queue has four times as many). Small,
/// as liburing's echo example keeps it, so the rings' memory stays in cache: with the
/// 256-buffer ring it measured the same or less CPU per message than 4,096 entries (256 KiB
/// of SQEs and as much of CQEs) in interleaved A/Bs (docs/results.md, "Levers tried on multishot"). A full queue is
/// submitted and refilled; a full completion queue overflows into the kernel's list, which the
/// next wait flushes, so nothing is lost.
const SQ_ENTRIES: u32 = 256;
/// Buffers' worth of unsent bytes a connection may hold before its receive stops; it resumes
/// at half this. Small, because a connection whose peer does not read holds them for as long
/// as it likes.
const MAX_HELD: u32 = 4;
/// One-shot direct accepts kept in flight while the file table has room for them.
const ACCEPT_DEPTH: u32 = 8;

/// The ring's file table of direct descriptors, and how much of it is spoken for.
///
/// A multishot accept into the table would, with the table full, take a connection off the
/// backlog and then drop it (the kernel fails to install it). So the table is filled only by
/// one-shot accepts, never more in flight than free slots: a full table leaves connections
/// waiting in the backlog, as running out of descriptors does with ordinary ones.
#[derive(Debug)]
struct Table {
    slots: u32,
    /// Slots held by connections, counting closes not yet completed.
    used: u32,
    /// The table was found full (logged and counted once per spell).
    full: bool,
}

/// What a completion belongs to, packed into user_data with the connection's slot and
/// generation (so a completion can never be mistaken for a later connection's in that slot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Accept = 0,
    Recv = 1,
    Send = 2,
    Cancel = 3,
    Close = 4,
    Tick = 5,
}

fn tag(op: Op, slot: usize, gen: u32) -> u64 {
    (op as u64) | ((slot as u64) << 8) | ((gen as u64) << 40)
}

fn untag(user_data: u64) -> (Option<Op>, usize, u32) {
    let op = match user_data & 0xff {
        0 => Some(Op::Accept),
        1 => Some(Op::Recv),
        2 => Some(Op::Send),
        3 => Some(Op::Cancel),
        4 => Some(Op::Close),
        5 => Some(Op::Tick),
        _ => None,
    };
    let slot = ((user_data >> 8) & 0xffff_ffff) as usize;
    (op, slot, (user_data >> 40) as u32)
}

/// A connection's socket, owned: a descriptor, or a slot in the ring's file table.
#[derive(Debug)]
enum Socket {
    Fd(OwnedFd),
    Direct(u32),
}

impl Socket {
    fn sock(&self) -> Sock {
        match self {
            Socket::Fd(fd) => Sock::Fd(fd.as_raw_fd()),
            Socket::Direct(slot) => Sock::Direct(*slot),
        }
    }

    fn fd(&self) -> Option<std::os::fd::RawFd> {
        match self {
            Socket::Fd(fd) => Some(fd.as_raw_fd()),
            Socket::Direct(_) => None,
        }
    }
}

/// `slot`'s connection as the idle order sees it.
fn seen(conns: &Slab<Conn>, slot: usize, gen: u32, now: u32) -> Seen {
    conns.get(slot).map_or(Seen::Gone, |c| {
        shell::seen(
            c.gen == gen,
            c.session.is_closing(),
            c.last_active,
            c.session.unsent() > 0,
            now,
            c.sock.fd(),
        )
    })
}

/// One connection: its socket, its rules' state, and when it last moved. One cache line,
/// aligned to one (`a_connection_is_one_cache_line` holds it there): every completion reads
/// it, and a connection that keeps up touches nothing else of its own. Where it was a slab
/// entry of about 100 bytes plus a heap block for its queue, this measured about 1 MB less
/// heap at 10,000 connections and less user time per message, at the same CPU per message
/// (docs/results.md, "Levers tried on multishot").
#[repr(align(64))]
struct Conn {
    sock: Socket,
    gen: u32,
    /// When it last moved, on the loop's millisecond clock ([`Clock`]).
    last_active: u32,
    session: Session,
}

/// The ring hands out spill buffers; failing to map one leaves the bytes in the ring buffer.
impl Spills for Ring {
    fn take(&mut self) -> Option<Buf> {
        self.take_spill().ok()
    }
}

/// Runs one worker thread's ring until its connections are drained.
pub fn run(
    listeners: Vec<std::net::TcpListener>,
    worker: Worker,
    cfg: RingConfig,
    ready: Ready,
) -> io::Result<()> {
    let mut ring = ready.report(Ring::new(SQ_ENTRIES, cfg.buffers, cfg.buffer_size))?;
    let table = if cfg.direct {
        // The kernel caps a ring's file table at RLIMIT_NOFILE (and 2^20).
        let slots = ringecho_common::procfs::max_fds()
            .unwrap_or(1024)
            .clamp(1, 1 << 20) as u32;
        match ring.register_direct(slots) {
            Ok(()) => Some(Table {
                slots,
                used: 0,
                full: false,
            }),
            Err(e) => {
                tracing::info!(error = %e, "no direct descriptors; using ordinary ones");
                None
            }
        }
    } else {
        None
    };
    ready.done();
    // The kernel's multishot receive limit makes the per-connection cap exact; without it
    // the receive is cancelled at the cap.
    let recv_limit = match ring.probe_recv_limit() {
        Ok(true) => true,
        Ok(false) => {
            tracing::info!("kernel has no multishot receive limit; cancelling at the cap");
            false
        }
        Err(e) => {
            tracing::warn!("cannot probe the multishot receive limit: {e}");
            false
        }
    };
    // Large receives need the exact cap, so the kernel's receive limit; the large buffers'
    // bytes must fit the spills one receive may take.
    let large = if cfg.large && recv_limit && LARGE_SIZE <= cfg.buffer_size * conn::MAX_FRESH as u32
    {
        match ring.add_large(LARGE_BUFFERS, LARGE_SIZE) {
            Ok(()) => Some(conn::Large::new(LARGE_BUFFERS, LARGE_SIZE, LARGE_CREDITS)),
            Err(e) => {
                tracing::info!(error = %e, "no large ring; every receive uses the small one");
                None
            }
        }
    } else {
        None
    };
    let gather = cfg.gather && ring.has_sendmsg();
    if cfg.gather && !gather {
        tracing::info!("kernel has no io_uring sendmsg; sending held buffers one at a time");
    }
    // Bundles need the exact cap too: cancelled at the cap, a receive could overshoot it by
    // a whole bundle.
    let bundles = cfg.bundles && recv_limit && ring.has_bundles();
    if cfg.bundles && !bundles {
        tracing::info!("no receive bundles (kernel without them or the receive limit); one buffer per receive completion");
    }
    match ring.taskrun() {
        TaskRun::Deferred => tracing::debug!("ring set up with SINGLE_ISSUER and DEFER_TASKRUN"),
        TaskRun::Cooperative => tracing::info!("kernel refused DEFER_TASKRUN; using COOP_TASKRUN"),
        TaskRun::Default => {
            tracing::info!("kernel refused DEFER_TASKRUN and COOP_TASKRUN; using default task run")
        }
    }
    let mut lp = Loop {
        ring,
        conns: Slab::new(),
        shell: Shell::new(worker),
        armed: vec![0; listeners.len()],
        listeners,
        accepts: 0,
        accept_cancelling: false,
        accepted_since_exhaustion: false,
        starved: Vec::new(),
        returned: false,
        shared: Shared {
            large,
            bundles,
            ..Shared::new(cfg.buffers, cfg.buffer_size, MAX_HELD, recv_limit, gather)
        },
        flush: Vec::new(),
        actions: Vec::new(),
        bundle: Vec::new(),
        table,
        next_gen: 0,
        tick: TickBy::Completion,
    };
    lp.shell.accept_retry_at = Some(Instant::now());
    lp.run()
}

/// What this kernel offers the multishot backend, a `name: value` line each.
pub fn probe() -> String {
    let yes = |b: bool| if b { "yes" } else { "no" };
    let mut ring = match Ring::new(8, 8, 4096) {
        Ok(r) => r,
        Err(e) => return format!("io_uring: no ({e})\n"),
    };
    let limit = match ring.probe_recv_limit() {
        Ok(b) => yes(b).to_string(),
        Err(e) => format!("no ({e})"),
    };
    let taskrun = ring.taskrun();
    let large = limit == "yes" && ring.add_large(2, LARGE_SIZE).is_ok();
    format!(
        "io_uring: yes\nprovided buffer rings: yes\nmultishot receive: {}\n\
         multishot receive limit: {limit}\nsendmsg (gathered sends): {}\n\
         large receive ring (needs the limit): {}\nreceive bundles (need the limit): {}\n\
         DEFER_TASKRUN: {}\nCOOP_TASKRUN: {}\n",
        if limit.starts_with("no (") {
            "no"
        } else {
            "yes"
        },
        yes(ring.has_sendmsg()),
        yes(large),
        yes(limit == "yes" && ring.has_bundles()),
        yes(taskrun == TaskRun::Deferred),
        yes(taskrun != TaskRun::Default),
    )
}

struct Loop {
    ring: Ring,
    conns: Slab<Conn>,
    /// The phase step, clock, sweep, back-off and admission both hand-written loops share.
    shell: Shell,
    /// One listener per address `--listen` named; emptied once accepting has stopped.
    listeners: Vec<std::net::TcpListener>,
    /// Accept operations in flight per listener: its multishot accept, or up to
    /// [`ACCEPT_DEPTH`] one-shot accepts into the file table. Tagged with the listener's index.
    armed: Vec<u32>,
    /// Accept operations in flight on all listeners.
    accepts: u32,
    accept_cancelling: bool,
    /// A connection was accepted since accepting last ran out of descriptors.
    accepted_since_exhaustion: bool,
    /// Connections whose receive stopped on an empty ring.
    starved: Vec<usize>,
    /// Buffers went back to the ring since the last look at `starved`.
    returned: bool,
    /// What the connections share: buffers held, the budget and the cap.
    shared: Shared,
    /// The actions of the event being handled (kept to reuse its allocation).
    actions: Vec<Action>,
    /// Connections that asked for [`Event::Flush`] once the batch is handled.
    flush: Vec<(usize, u32)>,
    /// The buffers of the receive completion being handled (kept to reuse its allocation).
    bundle: Vec<(u16, u32)>,
    /// The ring's file table, when connections are direct descriptors.
    table: Option<Table>,
    next_gen: u32,
    /// How the loop wakes at least every [`TICK`].
    tick: TickBy,
}

/// How the loop wakes at least every [`TICK`] to look at the shutdown phase and idle timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TickBy {
    /// A multishot timeout's completion (6.4 and later): waits carry no timeout, so no
    /// timer is armed and cancelled per wait, as liburing's echo example waits.
    Completion,
    /// A timeout on every wait (kernels without multishot timeouts).
    Timeout,
}

impl Loop {
    fn run(&mut self) -> io::Result<()> {
        let mut cqes = Vec::with_capacity(1024);
        self.ring.tick_every(TICK, tag(Op::Tick, 0, 0))?;
        loop {
            let step = self.shell.step();
            if step != Step::Serve {
                self.stop_accepting()?;
            }
            if step == Step::CloseAll {
                let open: Vec<usize> = self.conns.iter().map(|(slot, _)| slot).collect();
                for slot in open {
                    if !self.conns[slot].session.is_closing() {
                        self.feed(slot, Event::Close(CloseKind::Server))?;
                    }
                }
            }
            if step != Step::Serve && self.listeners.is_empty() && self.conns.is_empty() {
                return Ok(());
            }
            let now = self.shell.stamp();
            if step == Step::Serve && self.shell.accept_retry_at.is_some_and(|t| t <= now) {
                self.arm_accept()?;
            }
            if self.shell.sweep_due(now) {
                self.close_idle()?;
                self.ring.trim_spills();
            }
            if self.returned && !self.starved.is_empty() {
                self.wake_starved()?;
            }
            self.returned = false;
            self.flush_sends()?;
            let counters = &self.shell.worker.counters;
            let large_held = self.shared.large.as_ref().map_or(0, |l| l.held);
            counters
                .ring_buffers_held
                .set((self.shared.ring_held + large_held) as u64);
            counters
                .spill_buffers_held
                .set(self.shared.spill_held as u64);
            self.ring.submit_and_wait(match self.tick {
                TickBy::Completion => None,
                TickBy::Timeout => Some(TICK),
            })?;
            // One clock read per batch of completions stamps their activity: idle timeouts
            // are seconds, the batch takes microseconds.
            self.shell.stamp();
            self.ring.drain_completions(&mut cqes);
            for c in cqes.drain(..) {
                let (op, slot, gen) = untag(c.user_data);
                match op {
                    Some(Op::Accept) => self.on_accept(slot, c)?,
                    Some(Op::Recv) if self.is_live(slot, gen) => self.on_recv(slot, c)?,
                    Some(Op::Send) if self.is_live(slot, gen) => self.on_send(slot, c)?,
                    Some(Op::Close) => self.on_close(c)?,
                    Some(Op::Tick) => self.on_tick(c)?,
                    // Cancellations report only whether they found their target; the target's
                    // own completion carries what matters.
                    _ => {}
                }
            }
        }
    }

    fn is_live(&self, slot: usize, gen: u32) -> bool {
        self.conns.get(slot).is_some_and(|c| c.gen == gen)
    }

    /// Arms accepting on every listener: its multishot accept if it is not armed, or one-shot
    /// direct accepts up to [`ACCEPT_DEPTH`] each and the free slots of the file table.
    fn arm_accept(&mut self) -> io::Result<()> {
        self.shell.accept_retry_at = None;
        if self.accept_cancelling {
            // Re-armed when the cancelled accepts have completed (see `on_accept`).
            return Ok(());
        }
        match &mut self.table {
            None => {
                for (i, l) in self.listeners.iter().enumerate() {
                    if self.armed[i] == 0 {
                        self.ring
                            .accept_multi(l.as_raw_fd(), tag(Op::Accept, i, 0))?;
                        self.armed[i] = 1;
                        self.accepts += 1;
                    }
                }
            }
            Some(t) => {
                let mut free = t.slots - t.used - self.accepts;
                if free == 0 && self.accepts == 0 && !t.full {
                    t.full = true;
                    // Counted with the accept errors: the direct analogue of EMFILE.
                    self.shell.worker.counters.accept_errors.add(1);
                    let err = io::Error::other(format!(
                        "all {} direct descriptors in use; new connections wait in the backlog",
                        t.slots
                    ));
                    self.shell.warn.warn("accept paused", &err);
                }
                for (i, l) in self.listeners.iter().enumerate() {
                    let n = free.min(ACCEPT_DEPTH.saturating_sub(self.armed[i]));
                    for _ in 0..n {
                        self.ring
                            .accept_direct(l.as_raw_fd(), tag(Op::Accept, i, 0))?;
                    }
                    self.armed[i] += n;
                    self.accepts += n;
                    free -= n;
                }
            }
        }
        Ok(())
    }

    /// Cancels every accept in flight.
    fn cancel_accepts(&mut self) -> io::Result<()> {
        if self.accepts > 0 && !self.accept_cancelling {
            for (i, &armed) in self.armed.iter().enumerate() {
                if armed > 0 {
                    self.ring
                        .cancel_all(tag(Op::Accept, i, 0), tag(Op::Cancel, 0, 0))?;
                }
            }
            self.accept_cancelling = true;
        }
        Ok(())
    }

    /// Cancels the accepts and closes the listeners once the kernel has let go of them.
    fn stop_accepting(&mut self) -> io::Result<()> {
        self.shell.accept_retry_at = None;
        if self.accepts > 0 {
            self.cancel_accepts()
        } else {
            self.listeners.clear();
            Ok(())
        }
    }

    /// Whether accepts may be (re-)armed now: serving, not backing off, not cancelling.
    fn may_accept(&self) -> bool {
        self.shell.accept_retry_at.is_none()
            && !self.accept_cancelling
            && self.shell.step() == Step::Serve
    }

    fn on_accept(&mut self, listener: usize, c: Completion) -> io::Result<()> {
        // A multishot accept ends with its last completion, a one-shot one with its only one.
        if !c.more {
            self.armed[listener] -= 1;
            self.accepts -= 1;
            if self.accepts == 0 {
                self.accept_cancelling = false;
            }
        }
        match c.result {
            Err(libc::ECANCELED | libc::ECONNABORTED) => {}
            Err(errno) => {
                let err = io::Error::from_raw_os_error(errno);
                if is_resource_exhaustion(&err) {
                    // Pause accepting: an armed accept would complete with the same error
                    // for every connection waiting in the backlog.
                    self.shell.accept_failed(&err);
                    if std::mem::take(&mut self.accepted_since_exhaustion) {
                        // The multishot accept ran ahead of this batch: its sockets, still in
                        // the completion queue, took the descriptors that refusing or
                        // admitting them frees. Look again after the batch, not after the
                        // pause, or a flood at the limit is taken a tick at a time.
                        self.shell.accept_retry_at = Some(Instant::now());
                    }
                    self.cancel_accepts()?;
                    return Ok(());
                }
                // Anything else fails that one connection: the accept stays armed.
                self.shell.worker.counters.accept_errors.add(1);
                self.shell.warn.warn("accept failed", &err);
            }
            Ok(n) => {
                self.accepted_since_exhaustion = true;
                let sock = match &mut self.table {
                    Some(t) => {
                        t.used += 1;
                        Socket::Direct(n)
                    }
                    None => Socket::Fd(accepted_fd(n)),
                };
                self.admit(sock)?;
            }
        }
        if self.may_accept() {
            self.arm_accept()?;
        }
        Ok(())
    }

    /// The tick's completion: re-armed if it ended; a kernel without multishot timeouts
    /// (EINVAL) puts a timeout on every wait instead.
    fn on_tick(&mut self, c: Completion) -> io::Result<()> {
        if c.result == Err(libc::EINVAL) {
            tracing::info!("kernel has no multishot timeouts; every wait carries one");
            self.tick = TickBy::Timeout;
        } else if !c.more && self.tick == TickBy::Completion {
            self.ring.tick_every(TICK, tag(Op::Tick, 0, 0))?;
        }
        Ok(())
    }

    /// A direct descriptor's close completed: its slot is free for the next accept.
    fn on_close(&mut self, c: Completion) -> io::Result<()> {
        if let Err(errno) = c.result {
            let err = io::Error::from_raw_os_error(errno);
            self.shell
                .warn
                .warn("closing a direct descriptor failed", &err);
        }
        if let Some(t) = &mut self.table {
            t.used -= 1;
            t.full = false;
        }
        if self.may_accept() {
            self.arm_accept()?;
        }
        Ok(())
    }

    fn admit(&mut self, sock: Socket) -> io::Result<()> {
        if self.shell.step() != Step::Serve {
            // Accepted as accepting stopped: counted, and closed by the server.
            let counters = &self.shell.worker.counters;
            counters.accepted.add(1);
            counters.record_close(&CloseKind::Server);
            return self.close_socket(sock);
        }
        // The peer's address only where sources are counted (ordinary descriptors then).
        let peer = match (&sock, self.shell.wants_sources()) {
            (Socket::Fd(fd), true) => socket2::SockRef::from(fd)
                .peer_addr()
                .ok()
                .and_then(|a| a.as_socket()),
            _ => None,
        };
        let now = self.shell.now;
        let conns = &self.conns;
        match self
            .shell
            .admit(peer, |slot, gen| seen(conns, slot, gen, now))
        {
            Admission::In => {}
            Admission::InPlaceOf(slot) => {
                if !self.conns[slot].session.is_closing() {
                    self.feed(slot, Event::Close(CloseKind::Server))?;
                }
            }
            Admission::Refused => return self.close_socket(sock),
        }
        self.next_gen = self.next_gen.wrapping_add(1) & 0x00ff_ffff;
        let gen = self.next_gen;
        let s = sock.sock();
        let slot = self.conns.insert(Conn {
            sock,
            gen,
            session: Session::default(),
            last_active: now,
        });
        let conns = &self.conns;
        self.shell
            .opened(slot, gen, peer, |slot, gen| seen(conns, slot, gen, now));
        tracing::debug!(sock = ?s, "session open");
        self.feed(slot, Event::Opened)
    }

    /// A receive completion, as the connection's event.
    fn on_recv(&mut self, slot: usize, c: Completion) -> io::Result<()> {
        let more = c.more;
        let event = match c.result {
            Ok(0) => Event::PeerClosed { more },
            Ok(len) => {
                let bid = c
                    .buffer
                    .ok_or_else(|| io::Error::other("receive without a buffer"))?;
                let conn = &mut self.conns[slot];
                // The large ring's ids follow the small ring's.
                let bid = if conn.session.recv_large() {
                    bid + self.shared.small_count
                } else {
                    bid
                };
                tracing::debug!(sock = ?conn.sock, n = len, "read");
                if !conn.session.is_closing() {
                    conn.last_active = self.shell.now;
                }
                let counters = &self.shell.worker.counters;
                counters.recv_completions.add(1);
                if self.shared.bundles {
                    return self.on_bundle(slot, bid, len, more, c.nonempty);
                }
                // Without bundles a completion fills the one buffer it names.
                counters.recv_buffers.add(1);
                Event::Received {
                    bid,
                    len,
                    more,
                    rest: c.nonempty,
                }
            }
            Err(libc::ENOBUFS) => Event::NoBuffers { more },
            Err(libc::ECANCELED) => Event::RecvCancelled { more },
            Err(errno) => Event::RecvFailed { errno, more },
        };
        self.feed(slot, event)
    }

    /// A bundle's completion: one event per buffer filled, in ring order
    /// ([`conn::received`]).
    fn on_bundle(
        &mut self,
        slot: usize,
        bid: u16,
        len: u32,
        more: bool,
        rest: bool,
    ) -> io::Result<()> {
        let mut bufs = std::mem::take(&mut self.bundle);
        self.ring.bundle(bid, len, &mut bufs);
        let counters = &self.shell.worker.counters;
        counters.recv_buffers.add(bufs.len() as u64);
        let mut result = Ok(());
        for event in conn::received(&bufs, more, rest) {
            if result.is_ok() {
                result = self.feed(slot, event);
            }
        }
        bufs.clear();
        self.bundle = bufs;
        result
    }

    /// A send completion, as the connection's event.
    fn on_send(&mut self, slot: usize, c: Completion) -> io::Result<()> {
        let conn = &mut self.conns[slot];
        if c.result.is_ok() && !conn.session.is_closing() {
            conn.last_active = self.shell.now;
        }
        self.feed(slot, Event::Sent(c.result))
    }

    /// Hands one event to a connection's rules and carries out what they ask, in order.
    fn feed(&mut self, slot: usize, event: Event) -> io::Result<()> {
        let mut actions = std::mem::take(&mut self.actions);
        let c = &mut self.conns[slot];
        c.session
            .handle(event, &mut self.shared, &mut self.ring, &mut actions);
        let (sock, gen) = (c.sock.sock(), c.gen);
        let mut result = Ok(());
        for action in actions.drain(..) {
            if result.is_ok() {
                result = self.execute(slot, sock, gen, action);
            }
        }
        self.actions = actions;
        result
    }

    /// Carries out one action of connection `slot`.
    fn execute(&mut self, slot: usize, sock: Sock, gen: u32, action: Action) -> io::Result<()> {
        match action {
            Action::Recv { limit, large, len } => self.ring.recv_multi(
                sock,
                limit,
                len,
                large,
                self.shared.bundles,
                tag(Op::Recv, slot, gen),
            )?,
            Action::CancelRecv => self
                .ring
                .cancel(tag(Op::Recv, slot, gen), tag(Op::Cancel, slot, gen))?,
            Action::Send(segs) => {
                let counters = &self.shell.worker.counters;
                counters.sends.add(1);
                counters.send_buffers.add(segs.as_slice().len() as u64);
                self.send(sock, slot, gen, &segs)?
            }
            Action::Flush => self.flush.push((slot, gen)),
            Action::CancelSend => self
                .ring
                .cancel(tag(Op::Send, slot, gen), tag(Op::Cancel, slot, gen))?,
            Action::Copy {
                bid,
                from,
                len,
                to,
                at,
            } => self.ring.copy_to_spill(bid, from, len, to, at),
            Action::Recycle(buf) => {
                self.ring.recycle(buf);
                self.returned |= matches!(buf, Buf::Ring(_));
            }
            Action::Starved => self.starved.push(slot),
            Action::Echoed { recvs, bytes } => {
                self.shell.worker.counters.recvs.add(u64::from(recvs));
                self.shell
                    .worker
                    .counters
                    .bytes_echoed
                    .add(u64::from(bytes));
            }
            Action::Release(how) => {
                let c = self.conns.remove(slot);
                // The descriptor goes before the close is counted, as in epoll-loop: whoever
                // sees the count sees the descriptor gone.
                let closed = self.close_socket(c.sock);
                self.shell.closed(slot, &how);
                closed?;
            }
        }
        Ok(())
    }

    /// Submits a send of `segs`: a plain send for one buffer, a gathered one for several.
    fn send(&mut self, sock: Sock, slot: usize, gen: u32, segs: &conn::Segments) -> io::Result<()> {
        match segs.as_slice() {
            [one] => self
                .ring
                .send(sock, one.buf, one.offset, one.len, tag(Op::Send, slot, gen)),
            many => {
                let mut v = [(Buf::Spill(0), 0, 0); MAX_IOV];
                for (v, s) in v.iter_mut().zip(many) {
                    *v = (s.buf, s.offset, s.len);
                }
                self.ring
                    .send_gather(sock, &v[..many.len()], slot, tag(Op::Send, slot, gen))
            }
        }
    }

    /// The batch is handled: the connections that asked send what they queued.
    fn flush_sends(&mut self) -> io::Result<()> {
        let mut flush = std::mem::take(&mut self.flush);
        let mut result = Ok(());
        for (slot, gen) in flush.drain(..) {
            if result.is_ok() && self.is_live(slot, gen) {
                result = self.feed(slot, Event::Flush);
            }
        }
        self.flush = flush;
        result
    }

    /// Buffers came back to the ring: let the connections that ran dry receive again.
    fn wake_starved(&mut self) -> io::Result<()> {
        while let Some(slot) = self.starved.pop() {
            if self.conns.contains(slot) {
                self.feed(slot, Event::BuffersBack)?;
            }
        }
        Ok(())
    }

    /// Closes a socket no operation uses any more.
    fn close_socket(&mut self, sock: Socket) -> io::Result<()> {
        match sock {
            Socket::Fd(fd) => drop(fd),
            Socket::Direct(slot) => self.ring.close_direct(slot, tag(Op::Close, 0, 0))?,
        }
        Ok(())
    }

    /// Closes the connections past `--idle-timeout`, oldest first, from the idle order.
    fn close_idle(&mut self) -> io::Result<()> {
        let now = self.shell.now;
        loop {
            let conns = &self.conns;
            let Some(slot) = self.shell.expired(|slot, gen| seen(conns, slot, gen, now)) else {
                return Ok(());
            };
            self.feed(slot, Event::Close(CloseKind::Server))?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<Conn>(), 64);
        assert_eq!(std::mem::align_of::<Conn>(), 64);
        // The slab stores each connection in an enum with its free-list link; that link must
        // fit in the connection's unused bit patterns, not add a line of its own.
        #[allow(dead_code)]
        enum Entry {
            Vacant(usize),
            Occupied(Conn),
        }
        assert_eq!(std::mem::size_of::<Entry>(), 64);
    }

    #[test]
    fn tags_round_trip() {
        for (op, slot, gen) in [
            (Op::Recv, 0, 0),
            (Op::Send, 123_456, 0x00ff_ffff),
            (Op::Cancel, 7, 9),
        ] {
            assert_eq!(untag(tag(op, slot, gen)), (Some(op), slot, gen));
        }
    }
}
