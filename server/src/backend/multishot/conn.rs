//! One multishot connection's rules, with no I/O: the driver in [`super`] turns each
//! completion into an [`Event`], hands it to [`Session::handle`], and carries out the
//! [`Action`]s that come back, in order. Everything that decides what a connection holds —
//! the zero-copy budget, spilling, the per-connection cap, closing — is here, so the property
//! tests below can drive it through any sequence of events against a model of the kernel.
//!
//! # The rules
//! - **Zero-copy budget.** A received ring buffer is queued for sending as it is only while
//!   the thread's connections hold fewer ring buffers than [`Shared::ring_budget`] (half the
//!   ring) and the connection has nothing else queued. Otherwise its bytes are copied into a
//!   spill buffer of the connection's own — appended to the last one while it has room and no
//!   send reads it, so small pipelined messages coalesce — and the ring buffer goes straight
//!   back. At least half the ring stays free for receives, whatever the other peers do.
//! - **Per-connection cap.** A connection holds at most [`Shared::cap`] unsent bytes. Where
//!   the kernel caps a multishot receive's total bytes (6.17 and later: the SQE's `optlen`),
//!   every receive is armed with what is left below the cap less one buffer (the last
//!   receive of a capped multishot may fill a whole buffer), so the cap is exact: the
//!   receive ends by itself, and the peer's further bytes wait in its own socket buffer,
//!   where TCP flow control pushes back on that peer alone. On older kernels the receive is
//!   cancelled at the cap, and the bytes that arrive before the cancellation lands come on
//!   top. The receive resumes once sends drain the queue to half the cap.
//! - **Gathered sends** (`--gather-sends on`, the default). A connection holds up to
//!   [`Shared::ring_per_conn`] ring buffers as they are, not only the first (the budget of
//!   half the ring still bounds what all connections hold), and what it has queued goes back
//!   in one send of up to [`MAX_SEGS`] buffers (a `sendmsg` with an iovec), asked for with
//!   [`Action::Flush`] and issued when the driver has handled the whole batch of
//!   completions ([`Event::Flush`]): the receives of one batch leave in one send, and no
//!   byte is copied while the budget lasts. Off, the first held buffer is sent at once, alone,
//!   and every buffer queued behind it is copied into a spill.
//! - **Large receives** (`--large-receives on`, the default, on kernels with the receive
//!   limit). A connection whose receive filled a whole small buffer with bytes still waiting
//!   in the socket (a message that just fits is not) is moving bulk data: its next receive
//!   is armed on a second ring of large buffers ([`Large`]). While fewer than
//!   [`Large::max_conns`] connections of the thread hold one, it takes a credit, and with
//!   it a cap of one large buffer more than it may hold as they are ([`Large::cap`]), so
//!   that an armed large receive takes up to [`LARGE_PER_CONN`] buffers before its limit
//!   ends it. Without a credit its cap stays the small one: each receive is shortened to
//!   what is left below the cap, and the limit ends the receive after it (a 16 KiB message
//!   still comes in one completion, not four).
//!   It holds at most [`LARGE_PER_CONN`] large buffers, and all connections at most
//!   [`Large::budget`], half the large ring; a receive past either, or one that fits a small
//!   buffer, is copied into small spills and its large buffer goes straight back, and a
//!   receive that fits a small buffer also ends the large receive, so that the next one is
//!   small again, as is a receive the large ring had no buffer for (ENOBUFS), rather than
//!   wait. Half the large ring stays free whatever the peers do, and the large cap's
//!   spills are bounded by the credits; idle and small-message connections never touch it.
//! - **Receive bundles** (`--recv-bundles on`, off by default: measured dearer; on kernels
//!   with bundles and the receive limit). One completion may fill several ring buffers in ring order; the
//!   driver hands them to the rules one buffer at a time ([`received`]), the receive still
//!   armed for all but the last, so the budget, the per-connection cap (exact: a bundle stops
//!   at the receive's limit) and the gathered sends apply to each buffer as before. Without
//!   the receive limit a bundle could overshoot the cancel-at-the-cap rule by a bundle's worth,
//!   so bundles are used only with it.
//! - **Closing.** A close cancels what is in flight, returns every buffer not being read by
//!   a send, and releases the connection once the kernel holds nothing of it.

use std::collections::VecDeque;

use super::ring::Buf;
use crate::stats::CloseKind;

/// What every connection of a thread shares: the ring's buffers and the limits.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Ring buffers held by connections (queued for sending straight from the ring).
    pub ring_held: usize,
    /// Ring buffers connections may hold at most; beyond it, received bytes are copied out.
    pub ring_budget: usize,
    /// Spill buffers held by connections.
    pub spill_held: usize,
    /// The size of every buffer, ring or spill.
    pub buffer_size: u32,
    /// Unsent bytes a connection may hold (at least two buffers, so that a receive armed at
    /// half the cap has room for a whole buffer).
    pub cap: u32,
    /// The kernel ends a multishot receive after a total byte limit ([`Action::Recv`]).
    pub recv_limit: bool,
    /// Sends gather a connection's queued buffers at the end of a batch (the module's rules).
    pub gather: bool,
    /// Receives are armed as bundles (only with `recv_limit`): a bundle stops at its limit
    /// exactly, where a receive of one buffer may pass it by that receive.
    pub bundles: bool,
    /// Ring buffers one connection may hold as they are, with `gather`; past it, bytes are
    /// spilled (a flood of small receives would otherwise hold a ring buffer each).
    pub ring_per_conn: u8,
    /// Small ring buffers' ids are below this; large ones' ids from it on.
    pub small_count: u16,
    /// The large ring, when large receives are on.
    pub large: Option<Large>,
}

/// Large buffers one connection holds at most.
pub(crate) const LARGE_PER_CONN: u8 = 3;

/// The ring of large buffers and who may receive into it.
#[derive(Debug)]
pub(crate) struct Large {
    /// Each large buffer's size.
    pub size: u32,
    /// Connections that may hold the large cap ([`Large::cap`]) at once: its credits.
    pub max_conns: usize,
    /// Connections holding a credit now.
    pub conns: usize,
    /// Large buffers connections hold.
    pub held: usize,
    /// Large buffers connections may hold at most (half the large ring); past it, a large
    /// receive's bytes are copied out.
    pub budget: usize,
}

impl Large {
    /// Large mode for a ring of `count` buffers of `size` bytes, `credits` connections of
    /// which may hold the large cap at once.
    pub fn new(count: u16, size: u32, credits: usize) -> Self {
        Large {
            size,
            max_conns: credits.max(1),
            conns: 0,
            held: 0,
            budget: (usize::from(count) / 2).max(1),
        }
    }

    /// The unsent bytes a connection in large mode may hold: [`LARGE_PER_CONN`] buffers
    /// and one more, so that a receive armed with nothing unsent (limited to the cap less
    /// one buffer) takes as many large buffers as the connection may hold as they are, and
    /// they leave in one gathered send. A smaller cap ends the receive after fewer buffers
    /// (with two, after each one: a re-arm per 32 KiB); a larger one fills buffers past
    /// [`LARGE_PER_CONN`], which are copied out (docs/results.md,
    /// "Levers tried on multishot").
    pub fn cap(&self) -> u32 {
        (u32::from(LARGE_PER_CONN) + 1) * self.size
    }
}

impl Shared {
    /// Limits for a ring of `ring_buffers` buffers of `buffer_size` bytes and a cap of
    /// `cap_buffers` buffers' worth of bytes per connection.
    /// `gather`: the gathered-sends rule.
    pub fn new(
        ring_buffers: u16,
        buffer_size: u32,
        cap_buffers: u32,
        recv_limit: bool,
        gather: bool,
    ) -> Self {
        assert!(
            (2..=u32::from(u8::MAX)).contains(&cap_buffers),
            "the cap must hold two buffers"
        );
        Shared {
            ring_held: 0,
            ring_budget: (usize::from(ring_buffers) / 2).max(1),
            spill_held: 0,
            buffer_size,
            cap: cap_buffers * buffer_size,
            recv_limit,
            gather,
            bundles: false,
            ring_per_conn: cap_buffers as u8,
            small_count: ring_buffers,
            large: None,
        }
    }

    fn is_large(&self, bid: u16) -> bool {
        bid >= self.small_count
    }
}

/// Held buffers one send carries at most (the iovec of a gathered send).
pub(crate) const MAX_SEGS: usize = 8;

/// Fresh spill buffers one receive may need at most: a large buffer's bytes in small spills.
pub(crate) const MAX_FRESH: usize = 16;

/// Bytes of one held buffer a send reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Segment {
    pub buf: Buf,
    pub offset: u32,
    pub len: u32,
}

/// The buffers one send reads, in order: one, or up to [`MAX_SEGS`] gathered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Segments {
    n: u8,
    segs: [Segment; MAX_SEGS],
}

impl Segments {
    fn new() -> Self {
        Segments {
            n: 0,
            segs: [Segment {
                buf: Buf::Spill(0),
                offset: 0,
                len: 0,
            }; MAX_SEGS],
        }
    }

    fn push(&mut self, seg: Segment) {
        self.segs[usize::from(self.n)] = seg;
        self.n += 1;
    }

    /// The segments, in the order the peer gets their bytes.
    pub fn as_slice(&self) -> &[Segment] {
        &self.segs[..usize::from(self.n)]
    }

    /// Bytes in all.
    #[cfg(test)]
    pub fn len(&self) -> u32 {
        self.as_slice().iter().map(|s| s.len).sum()
    }
}

/// Where spill buffers come from: the driver's pool (which can fail when memory or the map
/// count runs out; holding the ring buffer is then the fallback).
pub(crate) trait Spills {
    /// A free spill buffer of [`Shared::buffer_size`] bytes, now held by the caller.
    fn take(&mut self) -> Option<Buf>;
}

/// What happened to a connection: one completion, or a decision of the thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    /// The connection was accepted; nothing is armed yet.
    Opened,
    /// A receive filled `len` bytes of ring buffer `bid`; `more`: the receive stays armed;
    /// `rest`: the socket held more bytes when it completed (`IORING_CQE_F_SOCK_NONEMPTY`).
    Received {
        bid: u16,
        len: u32,
        more: bool,
        rest: bool,
    },
    /// The peer's FIN: the receive returned 0.
    PeerClosed { more: bool },
    /// The ring was empty (ENOBUFS); the receive ended.
    NoBuffers { more: bool },
    /// The receive was cancelled (ECANCELED).
    RecvCancelled { more: bool },
    /// The receive failed with this errno (ECONNRESET and the like).
    RecvFailed { errno: i32, more: bool },
    /// The send in flight completed: bytes sent, or the errno it failed with.
    Sent(Result<u32, i32>),
    /// Ring buffers came back since this connection ran dry ([`Action::Starved`]).
    BuffersBack,
    /// The thread closes the connection (idle timeout, shutdown).
    Close(CloseKind),
    /// The batch that asked for it ([`Action::Flush`]) is handled: send what is queued.
    Flush,
}

/// The events of one receive completion that filled `bufs` in order (a bundle fills several,
/// each full but the last): an [`Event::Received`] per buffer, the receive still armed and
/// bytes still to come for every one but the last, which carries the completion's `more` and
/// `rest`. So a bundle reaches the rules as the completions of one buffer each would, and
/// every rule holds for it unchanged.
pub(crate) fn received(
    bufs: &[(u16, u32)],
    more: bool,
    rest: bool,
) -> impl Iterator<Item = Event> + '_ {
    let last = bufs.len().saturating_sub(1);
    bufs.iter()
        .enumerate()
        .map(move |(i, &(bid, len))| Event::Received {
            bid,
            len,
            more: more || i < last,
            rest: rest || i < last,
        })
}

/// What the driver must do for a connection, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Arm a multishot receive, on the large ring with `large`; `limit` > 0: it ends after
    /// that many bytes in all (give or take the last receive); `len` > 0: each receive
    /// takes at most that many bytes of its buffer.
    Recv { limit: u32, large: bool, len: u32 },
    /// Cancel the armed receive (its end comes as a completion without MORE).
    CancelRecv,
    /// Send these bytes of held buffers, in order, in one request.
    Send(Segments),
    /// Send [`Event::Flush`] once the batch of completions being handled is done.
    Flush,
    /// Cancel the send in flight.
    CancelSend,
    /// Copy `len` bytes of ring buffer `bid` from `from` into spill buffer `to` at `at`.
    Copy {
        bid: u16,
        from: u32,
        len: u32,
        to: Buf,
        at: u32,
    },
    /// Give a buffer back: a ring buffer to the ring, a spill buffer to its pool.
    Recycle(Buf),
    /// The receive stopped on an empty ring: send [`Event::BuffersBack`] once buffers return.
    Starved,
    /// Bytes that finished sending, and the receives whose last byte they held.
    Echoed { recvs: u32, bytes: u32 },
    /// Nothing is in flight and nothing is held: close the socket and forget the connection.
    Release(CloseKind),
}

/// Received bytes waiting to be sent back, in a buffer the connection holds.
#[derive(Debug)]
struct Chunk {
    buf: Buf,
    len: u32,
    sent: u32,
    /// Receives whose last byte is in this chunk: counted as echoed when it is sent.
    recvs: u32,
}

/// A connection's chunks in order, the front one inline. A connection that keeps up holds
/// one chunk at a time (the echo in flight), so its whole state stays in the one cache line
/// the driver gives a connection; only a connection with more queued reaches for the heap.
#[derive(Debug, Default)]
struct Queue {
    front: Option<Chunk>,
    /// The chunks behind the front one, allocated when a connection first holds two. Boxed:
    /// a pointer is 8 bytes where the deque's own header is 32, and this sits in every
    /// connection's one line.
    #[allow(clippy::box_collection)]
    rest: Option<Box<VecDeque<Chunk>>>,
}

/// A deque's operations, the ones the rules use: the front chunk is the one a send reads,
/// the back one the one a spill may grow.
impl Queue {
    fn len(&self) -> usize {
        usize::from(self.front.is_some()) + self.rest.as_ref().map_or(0, |r| r.len())
    }

    fn is_empty(&self) -> bool {
        self.front.is_none()
    }

    #[cfg(test)]
    fn front(&self) -> Option<&Chunk> {
        self.front.as_ref()
    }

    fn front_mut(&mut self) -> Option<&mut Chunk> {
        self.front.as_mut()
    }

    fn back(&self) -> Option<&Chunk> {
        self.rest
            .as_ref()
            .and_then(|r| r.back())
            .or(self.front.as_ref())
    }

    fn back_mut(&mut self) -> Option<&mut Chunk> {
        match self.rest.as_mut().and_then(|r| r.back_mut()) {
            Some(c) => Some(c),
            None => self.front.as_mut(),
        }
    }

    fn push_back(&mut self, chunk: Chunk) {
        if self.front.is_none() {
            self.front = Some(chunk);
        } else {
            self.rest.get_or_insert_with(Box::default).push_back(chunk);
        }
    }

    fn pop_front(&mut self) -> Option<Chunk> {
        let front = self.front.take();
        self.front = self.rest.as_mut().and_then(|r| r.pop_front());
        front
    }

    fn iter(&self) -> impl Iterator<Item = &Chunk> {
        self.front
            .iter()
            .chain(self.rest.iter().flat_map(|r| r.iter()))
    }

    fn pop_back(&mut self) -> Option<Chunk> {
        match self.rest.as_mut().and_then(|r| r.pop_back()) {
            Some(c) => Some(c),
            None => self.front.take(),
        }
    }
}

bitflags::bitflags! {
    /// A connection's yes-or-no state, a bit each, so that the state fits beside the queue.
    #[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
    struct Flags: u16 {
        /// The queue's front chunk is in a send.
        const SENDING = 1;
        const RECV_ARMED = 1 << 1;
        const RECV_CANCELLING = 1 << 2;
        /// The receive stopped because the ring was empty; re-armed when buffers come back.
        const STARVED = 1 << 3;
        const PEER_EOF = 1 << 4;
        const RELEASED = 1 << 5;
        /// An [`Action::Flush`] is out and its [`Event::Flush`] not yet handled.
        const FLUSH_ASKED = 1 << 6;
        /// The receive armed last is on the large ring.
        const LARGE = 1 << 7;
        /// The last receive filled more than a small buffer holds: bulk data.
        const BULK = 1 << 8;
        /// The connection holds one of [`Large::conns`]: while its receive is large, and
        /// after, while it still holds large buffers.
        const CREDIT = 1 << 9;
    }
}

/// One connection's state: what it holds and what it has in flight. 48 bytes, so that with
/// the driver's socket, generation and clock it fills one cache line (`Conn` there).
#[derive(Debug, Default)]
pub(crate) struct Session {
    /// Received, not yet fully sent; the front one is in flight while sending.
    queue: Queue,
    /// Bytes in `queue` not yet sent.
    unsent: u32,
    flags: Flags,
    /// Chunks at the queue's front that the send in flight reads (0 while not sending).
    inflight: u8,
    /// Small ring buffers in `queue`.
    ring_chunks: u8,
    /// Why the connection is closing, once it is (boxed: rare, and a reason can be long).
    closing: Option<Box<CloseKind>>,
}

/// The actions of one event, and where they go.
struct Out<'a, S: Spills> {
    shared: &'a mut Shared,
    spills: &'a mut S,
    actions: &'a mut Vec<Action>,
}

impl Session {
    /// Applies one event; the actions it calls for are appended to `actions`.
    pub fn handle<S: Spills>(
        &mut self,
        event: Event,
        shared: &mut Shared,
        spills: &mut S,
        actions: &mut Vec<Action>,
    ) {
        debug_assert!(
            !self.flags.contains(Flags::RELEASED),
            "event {event:?} after release"
        );
        let mut out = Out {
            shared,
            spills,
            actions,
        };
        match event {
            Event::Opened => {
                self.flags.remove(Flags::RECV_ARMED);
                self.rearm(&mut out);
            }
            Event::Received {
                bid,
                len,
                more,
                rest,
            } => {
                self.recv_ended_unless(more);
                self.received(bid, len, rest, &mut out);
            }
            Event::PeerClosed { more } => {
                self.recv_ended_unless(more);
                self.flags.insert(Flags::PEER_EOF);
                if self.queue.is_empty() {
                    self.begin_close(CloseKind::Fin, &mut out);
                }
            }
            Event::NoBuffers { more } => {
                self.recv_ended_unless(more);
                if self.closing.is_none() {
                    if self.flags.contains(Flags::LARGE) {
                        // The large ring ran dry: the next receive draws from the small one,
                        // rather than waiting for large buffers to come back.
                        self.flags.remove(Flags::BULK);
                        self.rearm(&mut out);
                    } else if !self.flags.contains(Flags::STARVED) {
                        self.flags.insert(Flags::STARVED);
                        out.actions.push(Action::Starved);
                    }
                }
            }
            Event::RecvCancelled { more } => {
                self.recv_ended_unless(more);
                self.rearm(&mut out);
            }
            Event::RecvFailed { errno, more } => {
                self.recv_ended_unless(more);
                self.begin_close(CloseKind::from_errno(errno), &mut out);
            }
            Event::Sent(res) => self.sent(res, &mut out),
            Event::BuffersBack => {
                self.flags.remove(Flags::STARVED);
                self.rearm(&mut out);
            }
            Event::Close(how) => self.begin_close(how, &mut out),
            Event::Flush => {
                self.flags.remove(Flags::FLUSH_ASKED);
                if self.closing.is_none() && !self.flags.contains(Flags::SENDING) {
                    self.send_front(&mut out);
                }
            }
        }
        self.finish_if_done(&mut out);
    }

    /// Whether the connection is closing (its activity no longer counts against idleness).
    pub fn is_closing(&self) -> bool {
        self.closing.is_some()
    }

    /// Bytes received and not yet sent back.
    pub fn unsent(&self) -> u32 {
        self.unsent
    }

    /// Whether the receive armed last draws from the large ring (its completions' buffer ids
    /// are the large ring's).
    pub fn recv_large(&self) -> bool {
        self.flags.contains(Flags::LARGE)
    }

    /// The unsent bytes the connection may hold: the large cap with a credit and a large
    /// receive, else the small one.
    fn cap(&self, shared: &Shared) -> u32 {
        match &shared.large {
            Some(l) if self.flags.contains(Flags::LARGE | Flags::CREDIT) => l.cap(),
            _ => shared.cap,
        }
    }

    /// Buffers the connection holds, ring and spill.
    #[cfg(test)]
    pub fn buffers(&self) -> usize {
        self.queue.len()
    }

    fn recv_ended_unless(&mut self, more: bool) {
        if !more {
            self.flags
                .remove(Flags::RECV_ARMED | Flags::RECV_CANCELLING);
        }
    }

    fn received<S: Spills>(&mut self, bid: u16, len: u32, rest: bool, out: &mut Out<'_, S>) {
        if self.closing.is_some() {
            out.actions.push(Action::Recycle(Buf::Ring(bid)));
            return;
        }
        let small = out.shared.buffer_size;
        let large = out.shared.is_large(bid);
        // Bulk: a small receive filled its buffer with more waiting behind it (a message
        // that just fits is not; the last full buffer of a bulk run leaves it as it is), or a
        // large one took more than a small buffer holds.
        let bulk = match (large, len >= small) {
            (true, _) => len > small,
            (false, true) => rest || self.flags.contains(Flags::BULK),
            (false, false) => false,
        };
        self.flags.set(Flags::BULK, bulk);
        let zero_copy = if large {
            // Held as it is only while it carries more than a small buffer would, the
            // connection holds fewer than its share and the thread's connections fewer than
            // the large budget; else copied out and given back at once.
            let l = out.shared.large.as_ref().expect("a large ring");
            len > small
                && l.held < l.budget
                && self.large_chunks(out.shared.small_count) < LARGE_PER_CONN
        } else {
            let room = out.shared.ring_held < out.shared.ring_budget;
            if out.shared.gather {
                room && self.ring_chunks < out.shared.ring_per_conn
            } else {
                room && self.queue.is_empty()
            }
        };
        if zero_copy || !self.spill(bid, len, out) {
            self.queue.push_back(Chunk {
                buf: Buf::Ring(bid),
                len,
                sent: 0,
                recvs: 1,
            });
            if large {
                out.shared.large.as_mut().expect("a large ring").held += 1;
            } else {
                out.shared.ring_held += 1;
                self.ring_chunks += 1;
            }
        } else {
            out.actions.push(Action::Recycle(Buf::Ring(bid)));
        }
        if large
            && len <= small
            && self.flags.contains(Flags::RECV_ARMED)
            && !self.flags.contains(Flags::RECV_CANCELLING)
        {
            // Small data on the large ring: end the receive, so the next one is small.
            self.flags.insert(Flags::RECV_CANCELLING);
            out.actions.push(Action::CancelRecv);
        }
        self.unsent += len;
        if !self.flags.contains(Flags::SENDING) {
            self.send_soon(out);
        }
        if self.unsent >= self.cap(out.shared)
            && !out.shared.recv_limit
            && self.flags.contains(Flags::RECV_ARMED)
            && !self.flags.contains(Flags::RECV_CANCELLING)
        {
            self.flags.insert(Flags::RECV_CANCELLING);
            out.actions.push(Action::CancelRecv);
        }
        self.rearm(out);
    }

    /// Copies `len` received bytes of ring buffer `bid` into the connection's spill buffers:
    /// into the last one while it has room and no send reads it, then into fresh ones (more
    /// than one where a large buffer's bytes are copied). False, with nothing copied, when
    /// the fresh buffers cannot all be had.
    fn spill<S: Spills>(&mut self, bid: u16, len: u32, out: &mut Out<'_, S>) -> bool {
        let size = out.shared.buffer_size;
        // The front `inflight` chunks are being read by the kernel; any other may grow.
        let tail_free = self.queue.len() > usize::from(self.inflight);
        let room = match self.queue.back() {
            Some(t) if tail_free && matches!(t.buf, Buf::Spill(_)) => size - t.len,
            _ => 0,
        };
        let room = room.min(len);
        // Take the fresh buffers before copying anything: on failure nothing has moved.
        let needed = (len - room).div_ceil(size) as usize;
        let mut fresh = [Buf::Spill(0); MAX_FRESH];
        assert!(needed <= MAX_FRESH, "{len} bytes need {needed} spills");
        for i in 0..needed {
            match out.spills.take() {
                Some(buf) => fresh[i] = buf,
                None => {
                    for &buf in &fresh[..i] {
                        out.actions.push(Action::Recycle(buf));
                    }
                    return false;
                }
            }
        }
        if room > 0 {
            let tail = self.queue.back_mut().expect("room implies a tail");
            out.actions.push(Action::Copy {
                bid,
                from: 0,
                len: room,
                to: tail.buf,
                at: tail.len,
            });
            tail.len += room;
        }
        let mut from = room;
        for &buf in &fresh[..needed] {
            let n = (len - from).min(size);
            out.actions.push(Action::Copy {
                bid,
                from,
                len: n,
                to: buf,
                at: 0,
            });
            self.queue.push_back(Chunk {
                buf,
                len: n,
                sent: 0,
                recvs: 0,
            });
            out.shared.spill_held += 1;
            from += n;
        }
        self.queue.back_mut().expect("just filled").recvs += 1;
        true
    }

    /// Large ring buffers in the queue (ids from `small_count` on). Counted, not kept: only
    /// a large receive asks, and a counter would not fit the connection's cache line.
    fn large_chunks(&self, small_count: u16) -> u8 {
        let large = |c: &&Chunk| matches!(c.buf, Buf::Ring(b) if b >= small_count);
        self.queue.iter().filter(large).count() as u8
    }

    /// Sends what is queued: at once without gathering, else once the batch is handled.
    fn send_soon<S: Spills>(&mut self, out: &mut Out<'_, S>) {
        if !out.shared.gather {
            self.send_front(out);
        } else if !self.flags.contains(Flags::FLUSH_ASKED) {
            self.flags.insert(Flags::FLUSH_ASKED);
            out.actions.push(Action::Flush);
        }
    }

    /// Sends the front chunk, or with gathering up to [`MAX_SEGS`] chunks from the front.
    fn send_front<S: Spills>(&mut self, out: &mut Out<'_, S>) {
        let most = if out.shared.gather { MAX_SEGS } else { 1 };
        let mut segs = Segments::new();
        for chunk in self.queue.iter().take(most) {
            segs.push(Segment {
                buf: chunk.buf,
                offset: chunk.sent,
                len: chunk.len - chunk.sent,
            });
        }
        if segs.n > 0 {
            self.flags.insert(Flags::SENDING);
            self.inflight = segs.n;
            out.actions.push(Action::Send(segs));
        }
    }

    fn sent<S: Spills>(&mut self, res: Result<u32, i32>, out: &mut Out<'_, S>) {
        assert!(
            self.flags.contains(Flags::SENDING),
            "a send completed with none in flight"
        );
        self.flags.remove(Flags::SENDING);
        let inflight = std::mem::take(&mut self.inflight);
        let n = match res {
            Ok(n) => n,
            Err(errno) => {
                self.begin_close(CloseKind::from_errno(errno), out);
                // Already closing (a cancelled send): its buffers go back now the send is
                // over.
                self.release_queue(out);
                return;
            }
        };
        assert!(n <= self.unsent, "sent more than was queued");
        self.unsent -= n;
        // The bytes sent run through the send's chunks in order; those sent whole go back.
        let (mut left, mut recvs, mut bytes) = (n, 0, 0);
        for _ in 0..inflight {
            let front = self
                .queue
                .front_mut()
                .expect("a send completed with nothing queued");
            let take = left.min(front.len - front.sent);
            front.sent += take;
            left -= take;
            if front.sent < front.len {
                break;
            }
            let done = self.queue.pop_front().expect("front exists");
            recvs += done.recvs;
            bytes += done.len;
            self.release_held(out, done.buf);
        }
        assert_eq!(left, 0, "sent more than the send carried");
        if bytes > 0 {
            out.actions.push(Action::Echoed { recvs, bytes });
        }
        if self.closing.is_some() {
            self.release_queue(out);
        } else if !self.queue.is_empty() {
            self.send_soon(out);
            self.rearm(out);
        } else if self.flags.contains(Flags::PEER_EOF) {
            self.begin_close(CloseKind::Fin, out);
        } else {
            self.rearm(out);
        }
    }

    /// Arms the receive again if nothing stops it and the queue has drained to half the cap;
    /// with the kernel's limit, for what is left below the cap less one buffer. The ring it
    /// draws from is chosen first ([`Session::choose_ring`]).
    fn rearm<S: Spills>(&mut self, out: &mut Out<'_, S>) {
        if self.closing.is_some()
            || self
                .flags
                .intersects(Flags::PEER_EOF | Flags::RECV_ARMED | Flags::STARVED)
        {
            return;
        }
        self.choose_ring(out.shared);
        let cap = self.cap(out.shared);
        if self.unsent > cap / 2 {
            return;
        }
        self.flags.insert(Flags::RECV_ARMED);
        let large = self.flags.contains(Flags::LARGE);
        let size = match &out.shared.large {
            Some(l) if large => l.size,
            _ => out.shared.buffer_size,
        };
        // One receive takes at most what is left below the cap (only a large receive
        // without a credit is shorter than its buffer: the small cap is below a large
        // buffer), and the limit ends the receive before a further one could pass the cap;
        // a shortened bundle, which stops at its limit exactly, may take all that is left.
        let most = size.min(cap - self.unsent);
        let (limit, len) = if out.shared.recv_limit {
            let len = if most < size { most } else { 0 };
            // At least 1: cap - unsent >= most.
            let limit = if out.shared.bundles && len > 0 {
                cap - self.unsent
            } else {
                cap - self.unsent - (most - 1)
            };
            (limit, len)
        } else {
            (0, 0)
        };
        out.actions.push(Action::Recv { limit, large, len });
    }

    /// Between receives: a connection moving bulk data takes the large ring, and a credit
    /// (the large cap) while one is free; one that is not gives its credit back.
    fn choose_ring(&mut self, shared: &mut Shared) {
        let Some(l) = shared.large.as_mut() else {
            return;
        };
        let bulk = self.flags.contains(Flags::BULK);
        if bulk && !self.flags.contains(Flags::CREDIT) && l.conns < l.max_conns {
            l.conns += 1;
            self.flags.insert(Flags::CREDIT);
        }
        self.flags.set(Flags::LARGE, bulk);
        self.release_credit_if_done(shared);
    }

    /// Gives the credit back once the connection neither receives into the large ring nor
    /// holds any of its buffers: so no more connections hold the large cap's bytes than
    /// there are credits.
    fn release_credit_if_done(&mut self, shared: &mut Shared) {
        if self.flags.contains(Flags::CREDIT)
            && !self.flags.contains(Flags::LARGE)
            && self.large_chunks(shared.small_count) == 0
        {
            shared.large.as_mut().expect("a large ring").conns -= 1;
            self.flags.remove(Flags::CREDIT);
        }
    }

    /// Whether the connection holds a large-ring credit.
    #[cfg(test)]
    pub fn has_credit(&self) -> bool {
        self.flags.contains(Flags::CREDIT)
    }

    /// Starts closing: cancels what is in flight and returns what no send reads.
    fn begin_close<S: Spills>(&mut self, how: CloseKind, out: &mut Out<'_, S>) {
        if self.closing.is_some() {
            return;
        }
        self.closing = Some(Box::new(how));
        if self.flags.contains(Flags::RECV_ARMED) && !self.flags.contains(Flags::RECV_CANCELLING) {
            self.flags.insert(Flags::RECV_CANCELLING);
            out.actions.push(Action::CancelRecv);
        }
        if self.flags.contains(Flags::SENDING) {
            out.actions.push(Action::CancelSend);
        }
        self.release_queue(out);
    }

    /// Returns a closing connection's buffers, except one still being sent.
    fn release_queue<S: Spills>(&mut self, out: &mut Out<'_, S>) {
        let keep = usize::from(self.inflight);
        while self.queue.len() > keep {
            let chunk = self.queue.pop_back().expect("len checked");
            self.unsent -= chunk.len - chunk.sent;
            self.release_held(out, chunk.buf);
        }
    }

    /// Gives back a buffer the queue held.
    fn release_held<S: Spills>(&mut self, out: &mut Out<'_, S>, buf: Buf) {
        match buf {
            Buf::Ring(bid) if out.shared.is_large(bid) => {
                out.shared.large.as_mut().expect("a large ring").held -= 1;
                out.actions.push(Action::Recycle(buf));
                self.release_credit_if_done(out.shared);
                return;
            }
            Buf::Ring(_) => {
                out.shared.ring_held -= 1;
                self.ring_chunks -= 1;
            }
            Buf::Spill(_) => out.shared.spill_held -= 1,
        }
        out.actions.push(Action::Recycle(buf));
    }

    /// Releases a closing connection once the kernel holds nothing of it.
    fn finish_if_done<S: Spills>(&mut self, out: &mut Out<'_, S>) {
        if self.closing.is_some()
            && !self
                .flags
                .intersects(Flags::RECV_ARMED | Flags::SENDING | Flags::RELEASED)
        {
            debug_assert!(self.queue.is_empty());
            self.flags.remove(Flags::LARGE);
            self.release_credit_if_done(out.shared);
            self.flags.insert(Flags::RELEASED);
            let how = self.closing.as_deref().expect("closing").clone();
            out.actions.push(Action::Release(how));
        }
    }
}

#[cfg(test)]
mod tests;
