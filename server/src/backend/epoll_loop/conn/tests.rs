//! The connection rules against a model of a socket that gives as few edges as the kernel
//! may: a readable edge only when bytes or the FIN arrive, a writable edge only when the peer
//! frees space after a write found the send buffer full. A driver as small as the real one
//! runs the rules on each edge; after every step the echo so far must be a prefix of what the
//! peer sent and the connection must hold at most one buffer, and at the end every byte must
//! come back before the FIN close.

use std::collections::VecDeque;

use proptest::prelude::*;

use super::*;

const SIZE: usize = 64;

/// The peer's byte at offset `i`.
fn byte(i: usize) -> u8 {
    (i * 7 + i / 251) as u8
}

/// What can happen between two turns of the loop.
#[derive(Debug, Clone)]
enum Step {
    /// The peer sends this many bytes.
    Arrive(usize),
    /// The peer reads up to this many of its echoes, freeing send buffer space.
    PeerReads(usize),
    /// The loop waits and serves the connections with an edge or a yield.
    Poll,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (1usize..300).prop_map(Step::Arrive),
        3 => (0usize..300).prop_map(Step::PeerReads),
        4 => Just(Step::Poll),
    ]
}

/// One connection: the kernel's side of its socket, its peer, and the driver's state.
struct Model {
    session: Session,
    /// Bytes the peer has sent.
    sent: usize,
    /// The socket's receive queue.
    rx: VecDeque<u8>,
    /// The peer's FIN arrived.
    fin: bool,
    /// The peer reset the connection.
    reset: bool,
    /// Free space in the socket's send buffer.
    space: usize,
    /// The peer's receive queue: echoes sent, not read yet.
    in_flight: usize,
    /// A write found the send buffer full: freeing space gives a writable edge.
    nospace: bool,
    /// Echoes the peer has received, in order.
    echoed: Vec<u8>,
    /// Edges not yet delivered: readable, writable, hup.
    edge: Option<(bool, bool, bool)>,
    /// The connection yielded and is served again at the next poll.
    yielded: bool,
    /// Where the unsent bytes are (the driver's spill buffer).
    spill: Vec<u8>,
    closed: Option<CloseKind>,
    counted: u64,
}

impl Model {
    fn new(space: usize) -> Model {
        Model {
            session: Session::default(),
            sent: 0,
            rx: VecDeque::new(),
            fin: false,
            reset: false,
            space,
            in_flight: 0,
            nospace: false,
            echoed: Vec::new(),
            edge: None,
            yielded: false,
            spill: Vec::new(),
            closed: None,
            counted: 0,
        }
    }

    fn edge(&mut self, r: bool, w: bool, h: bool) {
        let (a, b, c) = self.edge.unwrap_or_default();
        self.edge = Some((a || r, b || w, c || h));
    }

    fn apply(&mut self, step: &Step) {
        match *step {
            Step::Arrive(n) if !self.fin && !self.reset => {
                self.rx.extend((self.sent..self.sent + n).map(byte));
                self.sent += n;
                self.edge(true, false, false);
            }
            Step::Arrive(_) => {}
            Step::PeerReads(n) => {
                let n = n.min(self.in_flight);
                self.in_flight -= n;
                self.space += n;
                if n > 0 && self.nospace {
                    self.nospace = false;
                    self.edge(false, true, false);
                }
            }
            Step::Poll => self.poll(),
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.reset {
            return Err(io::Error::from_raw_os_error(libc::ECONNRESET));
        }
        let n = buf.len().min(self.rx.len());
        if n == 0 && !self.fin {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        for b in buf.iter_mut().take(n) {
            *b = self.rx.pop_front().unwrap();
        }
        Ok(n)
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if self.reset {
            return Err(io::Error::from_raw_os_error(libc::EPIPE));
        }
        let n = bytes.len().min(self.space);
        if n < bytes.len() {
            self.nospace = true;
        }
        if n == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.space -= n;
        self.in_flight += n;
        self.echoed.extend_from_slice(&bytes[..n]);
        Ok(n)
    }

    /// The loop's wait: deliver the edge, then one turn, as the driver runs it.
    fn poll(&mut self) {
        if self.closed.is_some() {
            return;
        }
        let Some((r, w, h)) = self.edge.take() else {
            if std::mem::take(&mut self.yielded) {
                self.turn();
            }
            return;
        };
        self.session.ready(r, w, h);
        self.yielded = false;
        self.turn();
    }

    fn turn(&mut self) {
        self.session.turn();
        let mut buf = [0u8; SIZE];
        loop {
            match self.session.next() {
                Next::Recv => {
                    let res = self.read(&mut buf);
                    self.session.received(&res, SIZE);
                    if let Ok(n @ 1..) = res {
                        let w = self.write(&buf[..n]);
                        let done = self.session.sent(&w);
                        self.count(done);
                        let left = self.session.unsent() as usize;
                        if left > 0 {
                            self.spill = buf[n - left..n].to_vec();
                        }
                    }
                }
                Next::Send => {
                    let spill = std::mem::take(&mut self.spill);
                    let w = self.write(&spill);
                    let done = self.session.sent(&w);
                    self.count(done);
                    let left = self.session.unsent() as usize;
                    self.spill = spill[spill.len() - left..].to_vec();
                }
                Next::Park => return,
                Next::Yield => {
                    self.yielded = true;
                    return;
                }
                Next::Close(how) => {
                    self.closed = Some(how);
                    return;
                }
            }
            assert!(self.session.unsent() as usize <= SIZE, "more than a buffer");
        }
    }

    fn count(&mut self, done: Option<u32>) {
        self.counted += u64::from(done.unwrap_or(0));
    }

    fn check(&self) {
        assert!(self.session.unsent() as usize <= SIZE);
        assert!(self.echoed.len() <= self.sent);
        for (i, &b) in self.echoed.iter().enumerate() {
            assert_eq!(b, byte(i), "echo differs at byte {i}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Whatever arrives in whatever pieces, and however slowly the peer reads, every byte
    /// comes back once and in order, the connection never holds more than a buffer, and the
    /// peer's FIN ends it as a FIN close once all is echoed.
    #[test]
    fn every_byte_comes_back_in_order_before_the_fin(
        space in 1usize..200,
        steps in prop::collection::vec(step(), 0..120),
    ) {
        let mut m = Model::new(space);
        for s in &steps {
            m.apply(s);
            m.check();
            prop_assert!(m.closed.is_none(), "closed early: {:?}", m.closed);
        }
        // The peer closes its side and reads everything: the rest must come out by itself.
        m.fin = true;
        m.edge(true, false, true);
        for _ in 0..10_000 {
            if m.closed.is_some() {
                break;
            }
            m.apply(&Step::PeerReads(usize::MAX));
            m.apply(&Step::Poll);
            m.check();
        }
        prop_assert_eq!(m.closed.clone(), Some(CloseKind::Fin));
        prop_assert_eq!(m.echoed.len(), m.sent);
        prop_assert_eq!(m.counted, m.sent as u64);
    }

    /// A reset, whenever it comes, ends the connection as an RST close at the next turn,
    /// without a hang, and nothing wrong was echoed before it.
    #[test]
    fn a_reset_ends_the_connection_as_rst(
        space in 1usize..200,
        steps in prop::collection::vec(step(), 0..60),
    ) {
        let mut m = Model::new(space);
        for s in &steps {
            m.apply(s);
        }
        m.reset = true;
        m.edge(true, true, true);
        m.apply(&Step::Poll);
        m.check();
        prop_assert_eq!(m.closed, Some(CloseKind::Rst));
    }
}

#[test]
fn a_busy_connection_yields_after_its_budget() {
    let mut m = Model::new(usize::MAX / 2);
    m.apply(&Step::Arrive(SIZE * (BUDGET as usize + 3)));
    m.apply(&Step::Poll);
    assert!(m.yielded, "a turn read more than its budget");
    assert_eq!(m.echoed.len(), SIZE * BUDGET as usize);
    m.apply(&Step::Poll);
    assert_eq!(m.echoed.len(), m.sent);
    assert!(!m.yielded);
}

#[test]
fn a_short_read_with_the_fin_reported_reads_on_to_the_fin() {
    // The FIN came with the bytes on one edge: a short read must not be taken as drained.
    let mut m = Model::new(1000);
    m.rx.extend((0..10).map(byte));
    m.sent = 10;
    m.fin = true;
    m.edge(true, false, true);
    m.apply(&Step::Poll);
    assert_eq!(m.closed, Some(CloseKind::Fin));
    assert_eq!(m.echoed.len(), 10);
}

#[test]
fn a_connection_the_peer_does_not_read_stops_reading() {
    let mut m = Model::new(100);
    for _ in 0..20 {
        m.apply(&Step::Arrive(SIZE));
        m.apply(&Step::Poll);
    }
    // 100 bytes went out, one buffer is held at most, the rest waits in the socket.
    assert_eq!(m.echoed.len(), 100);
    assert!(m.session.unsent() as usize <= SIZE);
    assert!(m.rx.len() >= 20 * SIZE - 100 - SIZE);
    assert_eq!(m.session.next(), Next::Park);
}

#[test]
fn the_thread_closes_with_the_first_reason() {
    let mut s = Session::default();
    s.close(CloseKind::Server);
    s.close(CloseKind::Fin);
    assert_eq!(s.next(), Next::Close(CloseKind::Server));
}

/// What a short write leaves is kept whole: a small leftover in a pooled buffer that comes
/// back for the next one, a large one in a buffer of its own size that is freed; past the
/// budget, reads are cut to the small size.
#[test]
fn spills_pool_the_small_free_the_large_and_cut_reads_past_the_budget() {
    let mut spills = Spills::new(64 << 10);
    let small = spills.keep(b"abc");
    assert_eq!(small.unsent(2), b"bc");
    assert_eq!(spills.held(), 1);
    spills.give_back(small);
    assert_eq!((spills.held(), spills.pool.len()), (0, 1));
    let large: Vec<u8> = (0..10_000).map(|i| i as u8).collect();
    let kept = spills.keep(&large);
    assert_eq!(kept.unsent(10_000), &large[..]);
    assert_eq!(
        spills.pool.len(),
        1,
        "a large leftover does not take a pooled buffer"
    );
    spills.give_back(kept);
    assert_eq!(spills.pool.len(), 1, "and is freed, not pooled");
    assert_eq!(spills.read_size(64 << 10), 64 << 10);
    let held: Vec<Spill> = (0..SPILL_BUDGET / 10_000 + 1)
        .map(|_| spills.keep(&large))
        .collect();
    assert_eq!(spills.read_size(64 << 10), SMALL_READ);
    for s in held {
        spills.give_back(s);
    }
    assert_eq!(spills.read_size(64 << 10), 64 << 10);
    for _ in 0..SPARE_SPILLS + 5 {
        spills.pool.push(vec![0; SMALL_READ].into_boxed_slice());
    }
    spills.trim();
    assert_eq!(spills.pool.len(), SPARE_SPILLS);
}
