//! The connection rules against a model of the kernel: a ring of buffers with real bytes in
//! them, peers that send, read, stop reading, close and reset, receives that end at their
//! limit or when a cancellation lands, sends that complete in part. Every action the rules
//! emit is checked as the kernel and the driver would meet it (a buffer recycled twice, a
//! copy into bytes a send is reading, a send with one in flight all fail the test), and
//! after every event the stated bounds are checked.

use std::collections::{HashMap, VecDeque};

use proptest::prelude::*;

use super::*;

const SIZE: u32 = 64;
const RING: u16 = 8;
const CAP_BUFFERS: u32 = 4;
/// The large ring: buffers of four small ones, two credits for the large cap.
const LSIZE: u32 = 4 * SIZE;
const LRING: u16 = 16;

/// The receive the model kernel has armed for a connection.
#[derive(Debug)]
struct RecvOp {
    /// Bytes left before a limited receive ends by itself.
    left: Option<u32>,
    /// Bytes one receive takes at most, where shorter than its buffer.
    len: Option<u32>,
    cancel_requested: bool,
    /// It draws from the large ring.
    large: bool,
}

/// A send in flight: the kernel reads each segment's `buf[offset..offset + len]`, in order,
/// until it completes.
#[derive(Debug, Clone)]
struct SendOp {
    segs: Segments,
    cancel_requested: bool,
}

impl SendOp {
    /// Whether the send reads any byte of `buf` in `range`.
    fn reads(&self, buf: Buf, range: std::ops::Range<u32>) -> bool {
        self.segs
            .as_slice()
            .iter()
            .any(|s| s.buf == buf && range.start < s.offset + s.len && s.offset < range.end)
    }
}

/// One connection as the kernel and its peer see it.
#[derive(Debug)]
struct Peer {
    session: Session,
    /// The peer reads its echoes; a peer that does not never sees a send complete.
    reads: bool,
    /// Bytes the peer sent that a receive took (the pattern is a function of the offset).
    delivered: u64,
    /// Bytes the peer got back, in order.
    echoed: Vec<u8>,
    recv: Option<RecvOp>,
    send: Option<SendOp>,
    starved: bool,
    released: bool,
    /// Bytes delivered after the rules asked for the receive to be cancelled.
    late: u32,
    /// The receives and bytes the rules counted as echoed.
    counted_recvs: u64,
    counted_bytes: u64,
    receives: u64,
    /// An [`Action::Flush`] is out: the end of the batch sends [`Event::Flush`].
    flush: bool,
}

impl Peer {
    fn new(reads: bool) -> Peer {
        Peer {
            session: Session::default(),
            reads,
            delivered: 0,
            echoed: Vec::new(),
            recv: None,
            send: None,
            starved: false,
            released: false,
            late: 0,
            counted_recvs: 0,
            counted_bytes: 0,
            receives: 0,
            flush: false,
        }
    }
}

/// What the peer at `conn` sends as its byte number `i`.
fn pattern(conn: usize, i: u64) -> u8 {
    (i.wrapping_mul(31).wrapping_add(conn as u64 * 7) % 251) as u8
}

/// The kernel, the buffers and the driver's bookkeeping.
struct Model {
    shared: Shared,
    peers: Vec<Peer>,
    ring_free: VecDeque<u16>,
    /// The large ring's free buffers (ids from RING on).
    large_free: VecDeque<u16>,
    /// Every ring buffer's bytes by id, small then large.
    ring_mem: Vec<Vec<u8>>,
    spills: SpillPool,
    actions: Vec<Action>,
    /// Buffers (small, large) a bundle took that the rules have not been handed yet.
    pending: (usize, usize),
}

/// Spill buffers with real memory; `fail` makes every allocation fail.
#[derive(Default)]
struct SpillPool {
    mem: HashMap<u32, Vec<u8>>,
    free: Vec<u32>,
    next: u32,
    held: usize,
    fail: bool,
}

impl Spills for SpillPool {
    fn take(&mut self) -> Option<Buf> {
        if self.fail {
            return None;
        }
        let i = self.free.pop().unwrap_or_else(|| {
            self.next += 1;
            self.next - 1
        });
        self.mem.insert(i, vec![0; SIZE as usize]);
        self.held += 1;
        Some(Buf::Spill(i))
    }
}

/// One step of the world.
#[derive(Debug, Clone)]
enum Step {
    /// The peer sends `n` bytes; an armed receive takes up to one buffer of them.
    Deliver {
        conn: usize,
        n: u32,
    },
    /// The peer reads: the send in flight completes, `part` of it (in 1/4s, at least 1 byte).
    Complete {
        conn: usize,
        part: u8,
    },
    /// A requested cancellation lands.
    CancelLands {
        conn: usize,
    },
    PeerFin {
        conn: usize,
    },
    PeerReset {
        conn: usize,
    },
    /// The thread closes the connection (idle, shutdown).
    ServerClose {
        conn: usize,
    },
    /// The driver has handled a batch of completions: the flushes asked for are sent.
    EndBatch,
}

impl Step {
    fn conn(&self) -> usize {
        match *self {
            Step::Deliver { conn, .. }
            | Step::Complete { conn, .. }
            | Step::CancelLands { conn }
            | Step::PeerFin { conn }
            | Step::PeerReset { conn }
            | Step::ServerClose { conn } => conn,
            Step::EndBatch => 0,
        }
    }
}

impl Model {
    fn new(readers: &[bool], recv_limit: bool, spill_fails: bool, gather: bool) -> Model {
        Model::with(readers, recv_limit, spill_fails, gather, false)
    }

    /// With `large`, a large ring beside the small one (on kernels with the receive limit).
    fn with(
        readers: &[bool],
        recv_limit: bool,
        spill_fails: bool,
        gather: bool,
        large: bool,
    ) -> Model {
        let mut ring_mem = vec![vec![0; SIZE as usize]; RING as usize];
        ring_mem.extend(vec![vec![0; LSIZE as usize]; LRING as usize]);
        let mut m = Model {
            shared: Shared {
                large: (large && recv_limit).then(|| Large::new(LRING, LSIZE, 2)),
                ..Shared::new(RING, SIZE, CAP_BUFFERS, recv_limit, gather)
            },
            peers: Vec::new(),
            ring_free: (0..RING).collect(),
            large_free: (RING..RING + LRING).collect(),
            ring_mem,
            spills: SpillPool {
                fail: spill_fails,
                ..SpillPool::default()
            },
            actions: Vec::new(),
            pending: (0, 0),
        };
        for &reads in readers {
            m.peers.push(Peer::new(reads));
            let conn = m.peers.len() - 1;
            m.feed(conn, Event::Opened);
        }
        m
    }

    /// Hands an event to a connection's rules and carries out the actions as the driver
    /// does, checking each against what the kernel allows.
    fn feed(&mut self, conn: usize, event: Event) {
        let mut actions = std::mem::take(&mut self.actions);
        self.peers[conn].session.handle(
            event.clone(),
            &mut self.shared,
            &mut self.spills,
            &mut actions,
        );
        let mut returned = false;
        for action in actions.drain(..) {
            returned |= self.execute(conn, action, &event);
        }
        self.actions = actions;
        if returned {
            for c in 0..self.peers.len() {
                if self.peers[c].starved && !self.peers[c].released {
                    self.peers[c].starved = false;
                    self.feed(c, Event::BuffersBack);
                }
            }
        }
        self.check();
    }

    /// Carries out one action, checking it is one the kernel may be asked for now; true if a
    /// ring buffer went back.
    fn execute(&mut self, conn: usize, action: Action, event: &Event) -> bool {
        let p = &mut self.peers[conn];
        assert!(!p.released, "{action:?} after release ({event:?})");
        match action {
            Action::Recv { limit, large, len } => {
                assert!(p.recv.is_none(), "a second receive armed ({event:?})");
                assert_eq!(limit > 0, self.shared.recv_limit, "limit {limit}");
                assert!(
                    !large || self.shared.large.is_some(),
                    "a large receive, no ring"
                );
                assert_eq!(large, p.session.recv_large(), "the receive's ring");
                let size = if large { LSIZE } else { SIZE };
                assert!(len < size, "a receive shortened to {len} of {size}");
                if limit > 0 {
                    // The most the receive can take before its limit ends it (a bundle stops
                    // at the limit), on top of what the connection holds, is within its cap.
                    let most = if self.shared.bundles {
                        limit
                    } else {
                        limit - 1 + if len > 0 { len } else { size }
                    };
                    let (unsent, cap) = (p.session.unsent(), p.session.cap(&self.shared));
                    assert!(
                        unsent + most <= cap,
                        "{unsent} unsent and a receive of up to {most} pass the cap {cap}"
                    );
                }
                p.recv = Some(RecvOp {
                    left: (limit > 0).then_some(limit),
                    len: (len > 0).then_some(len),
                    cancel_requested: false,
                    large,
                });
            }
            Action::CancelRecv => {
                let r = p.recv.as_mut().expect("cancel of no receive");
                assert!(!r.cancel_requested, "receive cancelled twice");
                r.cancel_requested = true;
            }
            Action::Send(segs) => {
                assert!(p.send.is_none(), "a second send in flight ({event:?})");
                let most = if self.shared.gather { MAX_SEGS } else { 1 };
                assert!((1..=most).contains(&segs.as_slice().len()));
                for s in segs.as_slice() {
                    let size = match s.buf {
                        Buf::Ring(bid) => self.ring_mem[bid as usize].len() as u32,
                        Buf::Spill(_) => SIZE,
                    };
                    assert!(s.len > 0 && s.offset + s.len <= size, "{s:?}");
                    if let Buf::Ring(bid) = s.buf {
                        let free = self.ring_free.contains(&bid) || self.large_free.contains(&bid);
                        assert!(!free, "send from a free buffer");
                    }
                }
                p.send = Some(SendOp {
                    segs,
                    cancel_requested: false,
                });
            }
            Action::Flush => {
                assert!(self.shared.gather, "a flush without gathering");
                assert!(!p.flush, "a second flush asked for");
                p.flush = true;
            }
            Action::CancelSend => {
                let s = p.send.as_mut().expect("cancel of no send");
                s.cancel_requested = true;
            }
            Action::Copy {
                bid,
                from,
                len,
                to,
                at,
            } => self.copy(conn, bid, from..from + len, to, at),
            Action::Recycle(buf) => return self.recycle(conn, buf),
            Action::Starved => p.starved = true,
            Action::Echoed { recvs, bytes } => {
                p.counted_recvs += u64::from(recvs);
                p.counted_bytes += u64::from(bytes);
            }
            Action::Release(_) => {
                assert!(p.recv.is_none(), "released with a receive armed");
                assert!(p.send.is_none(), "released with a send in flight");
                p.released = true;
            }
        }
        false
    }

    /// Copies ring buffer `bid`'s bytes `from` into spill `to` at `at`, never under a send.
    fn copy(&mut self, conn: usize, bid: u16, from: std::ops::Range<u32>, to: Buf, at: u32) {
        assert!(!self.is_free(bid), "copy from a free buffer");
        let len = from.end - from.start;
        if let Some(s) = &self.peers[conn].send {
            assert!(
                !s.reads(to, at..at + len),
                "copy into bytes a send is reading"
            );
        }
        let Buf::Spill(i) = to else {
            panic!("copy into {to:?}")
        };
        let src = self.ring_mem[bid as usize][from.start as usize..from.end as usize].to_vec();
        let dst = self.spills.mem.get_mut(&i).expect("copy into a free spill");
        dst[at as usize..(at + len) as usize].copy_from_slice(&src);
    }

    /// Takes back a buffer no send is reading; true if it was a ring buffer.
    fn recycle(&mut self, conn: usize, buf: Buf) -> bool {
        if let Some(s) = &self.peers[conn].send {
            assert!(
                !s.reads(buf, 0..SIZE),
                "recycled a buffer a send is reading"
            );
        }
        match buf {
            Buf::Ring(bid) => {
                assert!(!self.is_free(bid), "ring buffer {bid} twice");
                // Poison it: a later read of a recycled buffer shows as corruption.
                self.ring_mem[bid as usize].fill(0xEE);
                if bid >= RING {
                    self.large_free.push_back(bid);
                } else {
                    self.ring_free.push_back(bid);
                }
                true
            }
            Buf::Spill(i) => {
                assert!(self.spills.mem.remove(&i).is_some(), "spill {i} twice");
                self.spills.free.push(i);
                self.spills.held -= 1;
                false
            }
        }
    }

    fn is_free(&self, bid: u16) -> bool {
        self.ring_free.contains(&bid) || self.large_free.contains(&bid)
    }

    fn step(&mut self, step: Step) {
        if let Step::EndBatch = step {
            self.end_batch();
            return;
        }
        let conn = step.conn();
        if self.peers[conn].released && matches!(step, Step::Deliver { .. }) {
            // A new connection in the released one's place.
            let reads = self.peers[conn].reads;
            self.peers[conn] = Peer::new(reads);
            self.feed(conn, Event::Opened);
            return;
        }
        match step {
            Step::Deliver { conn, n } => self.deliver(conn, n),
            Step::Complete { conn, part } => self.complete(conn, part, false),
            Step::CancelLands { conn } => self.cancel_lands(conn),
            Step::PeerFin { conn } => self.end_recv(conn, None),
            Step::PeerReset { conn } => self.end_recv(conn, Some(libc::ECONNRESET)),
            Step::ServerClose { conn } => {
                if !self.peers[conn].released {
                    self.feed(conn, Event::Close(CloseKind::Server));
                }
            }
            Step::EndBatch => unreachable!(),
        }
    }

    /// The end of a batch: every connection that asked for a flush gets it, as the driver
    /// sends them (a flush may ask for none further within the same batch).
    fn end_batch(&mut self) {
        for conn in 0..self.peers.len() {
            if std::mem::take(&mut self.peers[conn].flush) && !self.peers[conn].released {
                self.feed(conn, Event::Flush);
            }
        }
    }

    fn deliver(&mut self, conn: usize, n: u32) {
        if self.shared.bundles {
            return self.deliver_bundle(conn, n);
        }
        let p = &mut self.peers[conn];
        let Some(r) = &mut p.recv else { return };
        let more_after = |r: &mut RecvOp, len: u32| match &mut r.left {
            Some(left) => {
                *left -= len.min(*left);
                *left > 0
            }
            None => true,
        };
        let (free, size) = if r.large {
            (&mut self.large_free, LSIZE)
        } else {
            (&mut self.ring_free, SIZE)
        };
        assert_eq!(
            r.large,
            p.session.recv_large(),
            "the driver's ring for this receive"
        );
        let Some(bid) = free.pop_front() else {
            p.recv = None;
            self.feed(conn, Event::NoBuffers { more: false });
            return;
        };
        let len = n.clamp(1, r.len.map_or(size, |l| l.min(size)));
        if r.cancel_requested {
            p.late += len;
        }
        for k in 0..len {
            self.ring_mem[bid as usize][k as usize] = pattern(conn, p.delivered + u64::from(k));
        }
        p.delivered += u64::from(len);
        p.receives += 1;
        let more = more_after(r, len);
        if !more {
            p.recv = None;
        }
        let rest = n > len;
        self.feed(
            conn,
            Event::Received {
                bid,
                len,
                more,
                rest,
            },
        );
    }

    /// A bundle: the kernel takes the `n` bytes that arrived (up to the receive's limit,
    /// exactly) into as many free buffers as they need, in ring order, and posts one
    /// completion, which the driver hands to the rules a buffer at a time.
    fn deliver_bundle(&mut self, conn: usize, n: u32) {
        let p = &mut self.peers[conn];
        let Some(r) = &mut p.recv else { return };
        assert_eq!(r.large, p.session.recv_large(), "the driver's ring");
        let (free, size) = if r.large {
            (&mut self.large_free, LSIZE)
        } else {
            (&mut self.ring_free, SIZE)
        };
        if free.is_empty() {
            p.recv = None;
            self.feed(conn, Event::NoBuffers { more: false });
            return;
        }
        let mut left = r.left.map_or(n, |l| n.min(l)).max(1);
        let mut bufs = Vec::new();
        while left > 0 {
            let Some(bid) = free.pop_front() else { break };
            let len = left.min(size);
            for k in 0..len {
                self.ring_mem[bid as usize][k as usize] = pattern(conn, p.delivered + u64::from(k));
            }
            p.delivered += u64::from(len);
            left -= len;
            bufs.push((bid, len));
        }
        let taken: u32 = bufs.iter().map(|b| b.1).sum();
        let large = r.large;
        let more = match &mut r.left {
            Some(l) => {
                *l -= taken.min(*l);
                *l > 0
            }
            None => true,
        };
        *if large {
            &mut self.pending.1
        } else {
            &mut self.pending.0
        } = bufs.len();
        for event in received(&bufs, more, n > taken) {
            let Event::Received { len, more, .. } = event else {
                unreachable!()
            };
            *if large {
                &mut self.pending.1
            } else {
                &mut self.pending.0
            } -= 1;
            let p = &mut self.peers[conn];
            if p.recv.as_ref().is_some_and(|r| r.cancel_requested) {
                p.late += len;
            }
            p.receives += 1;
            if !more {
                p.recv = None;
            }
            self.feed(conn, event);
        }
    }

    /// The peer reads what the send in flight carries (all of it with `all`).
    fn complete(&mut self, conn: usize, part: u8, all: bool) {
        let p = &mut self.peers[conn];
        if !p.reads && !all {
            return;
        }
        let Some(s) = p.send.take() else { return };
        let total = s.segs.len();
        let n = if all {
            total
        } else {
            (total * u32::from(part.clamp(1, 4)) / 4).max(1)
        };
        let mut left = n;
        for seg in s.segs.as_slice() {
            let take = left.min(seg.len);
            let bytes = match seg.buf {
                Buf::Ring(bid) => &self.ring_mem[bid as usize],
                Buf::Spill(i) => self.spills.mem.get(&i).expect("send from a free spill"),
            };
            p.echoed
                .extend_from_slice(&bytes[seg.offset as usize..(seg.offset + take) as usize]);
            left -= take;
        }
        self.feed(conn, Event::Sent(Ok(n)));
    }

    fn cancel_lands(&mut self, conn: usize) {
        let p = &mut self.peers[conn];
        if p.recv.as_ref().is_some_and(|r| r.cancel_requested) {
            p.recv = None;
            self.feed(conn, Event::RecvCancelled { more: false });
        } else if p.send.as_ref().is_some_and(|s| s.cancel_requested) {
            p.send = None;
            self.feed(conn, Event::Sent(Err(libc::ECANCELED)));
        }
    }

    /// The peer's FIN (`errno` None) or a receive error ends the armed receive.
    fn end_recv(&mut self, conn: usize, errno: Option<i32>) {
        let p = &mut self.peers[conn];
        if p.recv.take().is_none() {
            return;
        }
        let event = match errno {
            None => Event::PeerClosed { more: false },
            Some(errno) => Event::RecvFailed { errno, more: false },
        };
        self.feed(conn, event);
    }

    /// The bounds that hold after every event.
    fn check(&self) {
        let spills_ok = !self.spills.fail;
        assert_eq!(
            self.ring_free.len() + self.shared.ring_held + self.pending.0,
            RING as usize,
            "ring buffers lost or made up"
        );
        assert_eq!(self.spills.held, self.shared.spill_held, "spill count");
        if let Some(l) = &self.shared.large {
            assert_eq!(
                self.large_free.len() + l.held + self.pending.1,
                LRING as usize,
                "large buffers lost or made up"
            );
            assert!(l.conns <= l.max_conns, "{} in large mode", l.conns);
            assert!(
                !spills_ok || l.held <= l.budget,
                "{} large buffers held, budget {}",
                l.held,
                l.budget
            );
            let in_large = self
                .peers
                .iter()
                .filter(|p| !p.released && p.session.has_credit())
                .count();
            assert_eq!(in_large, l.conns, "large-mode credits");
        } else {
            assert_eq!(
                self.large_free.len(),
                LRING as usize,
                "the large ring, unused"
            );
        }
        if spills_ok {
            assert!(
                self.shared.ring_held <= self.shared.ring_budget,
                "connections hold {} ring buffers, budget {}",
                self.shared.ring_held,
                self.shared.ring_budget
            );
        }
        for (conn, p) in self.peers.iter().enumerate() {
            let expected: Vec<u8> = (0..p.echoed.len() as u64)
                .map(|i| pattern(conn, i))
                .collect();
            assert!(
                p.echoed == expected,
                "conn {conn}: echo altered or reordered"
            );
            let unsent = p.session.unsent();
            // A connection back from large mode may still hold what the large cap let in.
            let cap = self
                .shared
                .large
                .as_ref()
                .map_or(self.shared.cap, |l| l.cap().max(self.shared.cap));
            if self.shared.recv_limit {
                assert!(
                    unsent <= cap,
                    "conn {conn} holds {unsent} unsent bytes, cap {cap}"
                );
            } else {
                assert!(
                    unsent <= self.shared.cap + SIZE + p.late,
                    "conn {conn} holds {unsent} bytes, {} late",
                    p.late
                );
            }
            // Spills hold at most the cap and two part-filled ones; gathering adds the ring
            // buffers a connection may hold as they are.
            let ring = if self.shared.gather { CAP_BUFFERS } else { 0 };
            // Large mode: its large buffers, and spills for what its cap let in.
            let large = self.shared.large.as_ref().map_or(0, |l| {
                u32::from(LARGE_PER_CONN) + l.cap() / SIZE + MAX_FRESH as u32
            });
            if spills_ok && self.shared.recv_limit {
                assert!(
                    p.session.buffers() as u32 <= CAP_BUFFERS + 2 + ring + large,
                    "conn {conn} holds {} buffers",
                    p.session.buffers()
                );
            }
            // A chunk is counted once all of it is sent, so the count trails what was read.
            assert!(
                p.counted_bytes <= p.echoed.len() as u64,
                "conn {conn}: over-counted"
            );
        }
    }

    /// Every healthy peer reads everything, buffers come back, then every connection is
    /// closed and every cancellation lands: all echoed, all released, nothing held.
    fn finish(&mut self) {
        for _ in 0..10_000 {
            self.end_batch();
            let mut moved = false;
            for conn in 0..self.peers.len() {
                if self.peers[conn].reads && self.peers[conn].send.is_some() {
                    self.complete(conn, 4, false);
                    moved = true;
                }
            }
            if !moved {
                break;
            }
        }
        for conn in 0..self.peers.len() {
            let p = &self.peers[conn];
            let cancelled = p.recv.as_ref().is_some_and(|r| r.cancel_requested);
            if p.reads && !p.released && !p.session.is_closing() && cancelled {
                self.cancel_lands(conn);
            }
        }
        self.end_batch();
        for (conn, p) in self.peers.iter().enumerate() {
            if p.reads && !p.released && !p.session.is_closing() {
                assert_eq!(
                    p.echoed.len() as u64,
                    p.delivered,
                    "conn {conn}: a reading peer did not get every byte back"
                );
                assert_eq!(p.counted_recvs, p.receives, "conn {conn}: receives counted");
                assert_eq!(p.counted_bytes, p.delivered, "conn {conn}: bytes counted");
                // No starvation: a healthy open connection is receiving again.
                assert!(
                    p.recv.as_ref().is_some_and(|r| !r.cancel_requested) || p.starved,
                    "conn {conn}: a healthy connection stopped receiving"
                );
            }
        }
        for conn in 0..self.peers.len() {
            if !self.peers[conn].released {
                self.feed(conn, Event::Close(CloseKind::Server));
            }
            for _ in 0..4 {
                self.end_batch();
                self.cancel_lands(conn);
                if self.peers[conn].reads && self.peers[conn].send.is_some() {
                    // A send the kernel finishes before the cancellation finds it (a peer
                    // that never reads never lets a send finish: only its cancellation does).
                    self.complete(conn, 4, true);
                }
            }
            assert!(self.peers[conn].released, "conn {conn} never released");
        }
        assert_eq!(self.ring_free.len(), RING as usize, "ring buffers kept");
        assert_eq!(self.large_free.len(), LRING as usize, "large buffers kept");
        if let Some(l) = &self.shared.large {
            assert_eq!((l.held, l.conns), (0, 0), "large buffers or credits kept");
        }
        assert_eq!(self.spills.held, 0, "spill buffers kept");
        assert_eq!(self.shared.ring_held, 0);
    }
}

fn steps(conns: usize) -> impl Strategy<Value = Vec<Step>> {
    let conn = 0..conns;
    let step = prop_oneof![
        30 => (conn.clone(), 1..=2 * SIZE).prop_map(|(conn, n)| Step::Deliver { conn, n }),
        10 => (conn.clone(), 1..=2 * LSIZE).prop_map(|(conn, n)| Step::Deliver { conn, n }),
        5 => (conn.clone(), 1..=8 * SIZE).prop_map(|(conn, n)| Step::Deliver { conn, n }),
        15 => (conn.clone(), 1u8..=4).prop_map(|(conn, part)| Step::Complete { conn, part }),
        4 => conn.clone().prop_map(|conn| Step::CancelLands { conn }),
        1 => conn.clone().prop_map(|conn| Step::PeerFin { conn }),
        1 => conn.clone().prop_map(|conn| Step::PeerReset { conn }),
        1 => conn.prop_map(|conn| Step::ServerClose { conn }),
        20 => Just(Step::EndBatch),
    ];
    prop::collection::vec(step, 0..800)
}

/// Plays `steps` (those for connections that exist) and then [`Model::finish`].
fn run(
    readers: &[bool],
    (recv_limit, spill_fails, gather, large): (bool, bool, bool, bool),
    steps: Vec<Step>,
) {
    run_bundled(
        readers,
        (recv_limit, spill_fails, gather, large),
        false,
        steps,
    )
}

/// [`run`], receives bundled with `bundles` (as the driver arms them: with the limit only).
fn run_bundled(
    readers: &[bool],
    (recv_limit, spill_fails, gather, large): (bool, bool, bool, bool),
    bundles: bool,
    steps: Vec<Step>,
) {
    let mut m = Model::with(readers, recv_limit, spill_fails, gather, large);
    m.shared.bundles = bundles && recv_limit;
    for step in steps.into_iter().filter(|s| s.conn() < readers.len()) {
        m.step(step);
    }
    m.finish();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any mix of reading and never-reading peers, either kernel: every bound holds after
    /// every event, reading peers get every byte back once and in order, and closing returns
    /// everything.
    #[test]
    fn any_events_keep_the_bounds_and_echo_exactly_once(
        readers in prop::collection::vec(any::<bool>(), 1..7),
        recv_limit in any::<bool>(),
        gather in any::<bool>(),
        large in any::<bool>(),
        steps in steps(6),
    ) {
        run(&readers, (recv_limit, false, gather, large), steps);
    }

    /// Receive bundles (several buffers a completion, split by the driver): every bound
    /// holds, the cap exactly, and every byte comes back once and in order.
    #[test]
    fn bundled_receives_keep_the_bounds_and_echo_exactly_once(
        readers in prop::collection::vec(any::<bool>(), 1..7),
        gather in any::<bool>(),
        large in any::<bool>(),
        spill_fails in any::<bool>(),
        steps in steps(6),
    ) {
        run_bundled(&readers, (true, spill_fails, gather, large), true, steps);
    }

    /// With no spill buffer to be had, received ring buffers are held instead: nothing is
    /// lost or altered and closing still returns everything.
    #[test]
    fn failing_spills_lose_nothing(
        readers in prop::collection::vec(any::<bool>(), 1..4),
        gather in any::<bool>(),
        large in any::<bool>(),
        steps in steps(3),
    ) {
        run(&readers, (true, true, gather, large), steps);
    }
}

/// A peer that never reads, flooding: the connection holds at most the cap, in at most
/// cap/size + 2 buffers (and with gathering the ring buffers it may hold as they are), and
/// the ring stays at least half free for a reading peer, who gets everything back.
#[test]
fn a_flooding_peer_that_never_reads_stops_at_its_cap() {
    for gather in [false, true] {
        let mut m = Model::new(&[false, true], true, false, gather);
        for round in 0..200 {
            m.step(Step::Deliver {
                conn: 0,
                n: SIZE / 2 + round % 7,
            });
            m.step(Step::Deliver { conn: 1, n: 10 });
            m.step(Step::EndBatch);
            m.step(Step::Complete { conn: 1, part: 4 });
        }
        let flooder = &m.peers[0];
        assert!(
            flooder.recv.is_none(),
            "the flooder's receive should have ended"
        );
        assert!(flooder.session.unsent() <= m.shared.cap);
        assert!(flooder.delivered <= u64::from(m.shared.cap));
        assert!(m.ring_free.len() >= RING as usize / 2);
        m.finish();
    }
}

/// A healthy peer that found the ring empty (a never-reading peer holds it all: no spill
/// buffer could be had) receives again once buffers come back.
#[test]
fn a_connection_that_found_the_ring_empty_receives_again_when_buffers_return() {
    for gather in [false, true] {
        let mut m = Model::new(&[false, true], true, true, gather);
        while !m.ring_free.is_empty() {
            m.step(Step::Deliver { conn: 0, n: 1 });
        }
        m.step(Step::Deliver { conn: 1, n: 10 });
        assert!(m.peers[1].recv.is_none() && m.peers[1].starved);
        m.step(Step::EndBatch);
        m.step(Step::ServerClose { conn: 0 });
        m.step(Step::CancelLands { conn: 0 });
        m.step(Step::CancelLands { conn: 0 });
        assert!(m.peers[0].released);
        assert!(
            m.peers[1].recv.is_some(),
            "the healthy peer is still starved"
        );
        m.step(Step::Deliver { conn: 1, n: 10 });
        m.step(Step::EndBatch);
        m.step(Step::Complete { conn: 1, part: 4 });
        assert_eq!(m.peers[1].echoed.len(), 10);
        m.finish();
    }
}

/// The old-kernel path: the receive is cancelled at the cap and resumes at half of it.
#[test]
fn without_the_kernel_limit_the_receive_is_cancelled_at_the_cap_and_resumes() {
    for gather in [false, true] {
        let mut m = Model::new(&[true], false, false, gather);
        while m.peers[0]
            .recv
            .as_ref()
            .is_some_and(|r| !r.cancel_requested)
        {
            m.step(Step::Deliver { conn: 0, n: SIZE });
        }
        assert!(m.peers[0].session.unsent() >= m.shared.cap);
        m.step(Step::CancelLands { conn: 0 });
        assert!(m.peers[0].recv.is_none(), "re-armed above half the cap");
        for _ in 0..CAP_BUFFERS {
            m.step(Step::EndBatch);
            m.step(Step::Complete { conn: 0, part: 4 });
        }
        assert!(m.peers[0].recv.is_some(), "not re-armed after draining");
        m.finish();
    }
}

/// Without gathering, the first receive of an idle connection is sent straight from the
/// ring; a second one queued behind it is copied out, coalescing small messages into one
/// spill buffer.
#[test]
fn pipelined_messages_coalesce_into_one_spill_buffer() {
    let mut m = Model::new(&[true], true, false, false);
    for _ in 0..3 {
        m.step(Step::Deliver { conn: 0, n: 8 });
    }
    assert_eq!(m.shared.ring_held, 1);
    assert_eq!(m.shared.spill_held, 1);
    assert_eq!(m.peers[0].session.buffers(), 2);
    m.step(Step::Complete { conn: 0, part: 4 });
    m.step(Step::Complete { conn: 0, part: 4 });
    assert_eq!(m.peers[0].echoed.len(), 24);
    assert_eq!(m.peers[0].counted_recvs, 3);
    m.finish();
}

/// With gathering, the receives of one batch are held as they are and leave in one send at
/// the batch's end; past the connection's share of ring buffers, bytes are spilled, and the
/// next send gathers ring and spill buffers alike.
#[test]
fn a_batchs_receives_leave_in_one_gathered_send() {
    let mut m = Model::new(&[true], true, false, true);
    for _ in 0..3 {
        m.step(Step::Deliver { conn: 0, n: 8 });
    }
    assert!(m.peers[0].send.is_none(), "sent before the batch ended");
    assert_eq!((m.shared.ring_held, m.shared.spill_held), (3, 0));
    m.step(Step::EndBatch);
    let send = m.peers[0].send.clone().expect("one send");
    assert_eq!(send.segs.as_slice().len(), 3);
    assert_eq!(send.segs.len(), 24);
    // The ring budget is half the ring (4 of 8): the fifth receive is spilled.
    for _ in 0..3 {
        m.step(Step::Deliver { conn: 0, n: 8 });
    }
    assert_eq!((m.shared.ring_held, m.shared.spill_held), (4, 1));
    m.step(Step::Complete { conn: 0, part: 2 });
    m.step(Step::EndBatch);
    m.step(Step::Complete { conn: 0, part: 4 });
    m.step(Step::EndBatch);
    m.step(Step::Complete { conn: 0, part: 4 });
    assert_eq!(m.peers[0].echoed.len(), 48);
    assert_eq!(m.peers[0].counted_recvs, 6);
    m.finish();
}

/// Bulk data moves every bulk connection to the large ring; two credits (the large cap) go
/// to the first two, and the third receives large buffers within the small cap; small data
/// on the large ring ends that receive, and the connection's next receive is small again,
/// its credit back for the connection left out.
#[test]
fn bulk_connections_take_the_large_ring_and_credits_while_they_last() {
    let mut m = Model::with(&[true, true, true], true, false, true, true);
    let is_large =
        |m: &Model| -> Vec<bool> { m.peers.iter().map(|p| p.session.recv_large()).collect() };
    let credits =
        |m: &Model| -> Vec<bool> { m.peers.iter().map(|p| p.session.has_credit()).collect() };
    // Full small buffers with more behind them: bulk. Each receive ends at its limit and
    // the next is armed large; a large one gets more than a small buffer at a time.
    for _ in 0..8 {
        for conn in 0..3 {
            let n = if m.peers[conn].session.recv_large() {
                LSIZE
            } else {
                2 * SIZE
            };
            m.step(Step::Deliver { conn, n });
        }
        m.step(Step::EndBatch);
        for conn in 0..3 {
            m.step(Step::Complete { conn, part: 4 });
        }
    }
    assert_eq!(is_large(&m), [true; 3]);
    let credit = credits(&m);
    assert_eq!(credit.iter().filter(|&&c| c).count(), 2, "{credit:?}");
    let big = credit.iter().position(|&c| c).unwrap();
    let small = credit.iter().position(|&c| !c).unwrap();
    // Without a credit, a large receive stays within the small cap (shortened below its
    // buffer while the connection holds bytes) and its limit ends it after one receive.
    for _ in 0..4 {
        if let Some(r) = &m.peers[small].recv {
            assert!(
                r.large,
                "a bulk connection without a credit, on the small ring"
            );
            let unsent = m.peers[small].session.unsent();
            assert!(
                r.len.unwrap_or(LSIZE) + unsent <= m.shared.cap,
                "{r:?} with {unsent} unsent passes the small cap"
            );
            m.step(Step::Deliver {
                conn: small,
                n: LSIZE,
            });
            assert!(m.peers[small].recv.is_none(), "the receive went on");
        }
        m.step(Step::EndBatch);
        m.step(Step::Complete {
            conn: small,
            part: 4,
        });
    }
    // A few bytes on the large ring: copied out, the large buffer back at once, the receive
    // ended; the next one is small, and the credit goes to the bulk connection left out.
    if m.peers[big].recv.is_none() {
        m.step(Step::Deliver {
            conn: big,
            n: LSIZE,
        });
    }
    m.step(Step::Deliver { conn: big, n: 5 });
    m.step(Step::CancelLands { conn: big });
    m.step(Step::EndBatch);
    m.step(Step::Complete { conn: big, part: 4 });
    assert!(
        !m.peers[big].session.recv_large(),
        "still large after small data"
    );
    assert!(!m.peers[big].session.has_credit(), "credit kept");
    let mut took_it = false;
    for _ in 0..8 {
        let n = if m.peers[small].session.recv_large() {
            LSIZE
        } else {
            2 * SIZE
        };
        m.step(Step::Deliver { conn: small, n });
        m.step(Step::EndBatch);
        m.step(Step::Complete {
            conn: small,
            part: 4,
        });
        took_it |= m.peers[small].session.has_credit();
    }
    assert!(took_it, "the freed credit unused");
    m.finish();
}

/// A large receive the large ring has no buffer for (ENOBUFS) does not wait for one: the next
/// receive is armed on the small ring at once.
#[test]
fn an_empty_large_ring_sends_the_receive_to_the_small_one() {
    let mut m = Model::with(&[true], true, false, true, true);
    for _ in 0..4 {
        if m.peers[0].session.recv_large() {
            break;
        }
        m.step(Step::Deliver {
            conn: 0,
            n: 2 * SIZE,
        });
        m.step(Step::EndBatch);
        m.step(Step::Complete { conn: 0, part: 4 });
    }
    assert!(m.peers[0].recv.as_ref().is_some_and(|r| r.large));
    // The kernel ends the receive: the large ring is empty.
    m.peers[0].recv = None;
    m.feed(0, Event::NoBuffers { more: false });
    let r = m.peers[0].recv.as_ref().expect("a receive armed at once");
    assert!(!r.large, "armed on the large ring again");
    m.step(Step::Deliver { conn: 0, n: SIZE });
    m.step(Step::EndBatch);
    m.step(Step::Complete { conn: 0, part: 4 });
    m.finish();
}

/// A peer's FIN with echoes still queued: the connection closes as FIN once they are sent.
#[test]
fn a_fin_waits_for_the_queued_echoes() {
    for gather in [false, true] {
        let mut m = Model::new(&[true], true, false, gather);
        m.step(Step::Deliver { conn: 0, n: 20 });
        m.step(Step::PeerFin { conn: 0 });
        assert!(!m.peers[0].released);
        m.step(Step::EndBatch);
        m.step(Step::Complete { conn: 0, part: 4 });
        assert!(m.peers[0].released);
        assert_eq!(m.peers[0].echoed.len(), 20);
    }
}

/// The queue keeps its front chunk inline and the rest behind it in order, whichever end
/// chunks leave by: against a plain deque through every mix of pushes and pops.
#[test]
fn the_queue_behaves_as_a_deque() {
    proptest!(|(ops in proptest::collection::vec(0u8..3, 0..64))| {
        let mut queue = Queue::default();
        let mut model = VecDeque::new();
        for (i, op) in ops.into_iter().enumerate() {
            let chunk = |n: usize| Chunk { buf: Buf::Spill(n as u32), len: 1, sent: 0, recvs: 0 };
            let ids = |c: Option<&Chunk>| c.map(|c| c.buf);
            match op {
                0 => {
                    queue.push_back(chunk(i));
                    model.push_back(chunk(i));
                }
                1 => prop_assert_eq!(ids(queue.pop_front().as_ref()), ids(model.pop_front().as_ref())),
                _ => prop_assert_eq!(ids(queue.pop_back().as_ref()), ids(model.pop_back().as_ref())),
            }
            prop_assert_eq!(queue.len(), model.len());
            prop_assert_eq!(queue.is_empty(), model.is_empty());
            prop_assert_eq!(ids(queue.front()), ids(model.front()));
            prop_assert_eq!(ids(queue.back()), ids(model.back()));
        }
    });
}
