//! The backend-independent half of the server: the accept loop and the per-connection echo
//! loop, written once over two small traits that each async backend implements.
//!
//! Both loops run on one thread's single-threaded runtime, so connection state is `Rc`, not
//! `Arc`, and nothing on the per-message path takes a lock or an atomic read-modify-write.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::RawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use slab::Slab;
use tokio::task::JoinSet;

use crate::admission::{Admission, IdleOrder, Seen};
use crate::backend::clock::Clock;
use crate::listener::is_resource_exhaustion;
use crate::shutdown::Phase;
use crate::stats::CloseKind;
use crate::worker::{RateLimitedWarn, Worker, ACCEPT_BACKOFF};

/// A connected socket that can receive into and send from an owned buffer.
///
/// Owned buffers are what io_uring needs (the kernel writes into the memory after the call
/// returns); readiness-based backends accept the same shape at no cost.
pub(crate) trait EchoStream {
    /// Receives into the start of `buf`'s capacity; returns the count and the buffer.
    async fn recv(&mut self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>);
    /// Sends `buf[..len]` completely (short writes are continued); returns the buffer.
    async fn send_all(&mut self, buf: Vec<u8>, len: usize) -> (io::Result<()>, Vec<u8>);
    /// The socket's descriptor, so shutdown can wake a connection blocked in the kernel.
    fn raw_fd(&self) -> RawFd;
}

/// A listener whose accepted sockets are [`EchoStream`]s.
pub(crate) trait Acceptor {
    type Stream: EchoStream + 'static;
    /// Accepts one connection and sets TCP_NODELAY on it; returns it and its peer.
    async fn accept(&self) -> io::Result<(Self::Stream, SocketAddr)>;
    /// The listening socket's descriptor.
    fn raw_fd(&self) -> RawFd;
}

/// One connection as its accept loop sees it: when it last moved, whether the server holds
/// bytes of its peer's, and whether it was asked to give way.
struct Tracked {
    fd: RawFd,
    gen: u32,
    last: Cell<u32>,
    holding: Cell<bool>,
    evicted: Cell<bool>,
}

impl Tracked {
    fn seen(&self, gen: u32, now: u32) -> Seen {
        crate::admission::seen(
            self.gen == gen,
            self.evicted.get(),
            self.last.get(),
            self.holding.get(),
            now,
            Some(self.fd),
        )
    }
}

/// An accept loop's open connections, in its idle order.
#[derive(Default)]
struct Tracker {
    conns: Slab<Rc<Tracked>>,
    order: IdleOrder,
    next_gen: u32,
}

impl Tracker {
    /// Files a new connection on `fd` at `now`; returns its slot and its handle.
    fn open(&mut self, fd: RawFd, now: u32) -> (usize, Rc<Tracked>) {
        self.next_gen = self.next_gen.wrapping_add(1);
        let t = Rc::new(Tracked {
            fd,
            gen: self.next_gen,
            last: Cell::new(now),
            holding: Cell::new(false),
            evicted: Cell::new(false),
        });
        let slot = self.conns.insert(t.clone());
        self.order.insert(slot, t.gen, now);
        let Tracker { conns, order, .. } = self;
        order.compact(conns.len(), |slot, gen| {
            conns.get(slot).map_or(Seen::Gone, |t| t.seen(gen, now))
        });
        (slot, t)
    }
}

/// Accepts until shutdown, spawning one echo task per connection; then drains.
pub(crate) async fn run_accept_loop<A: Acceptor>(acceptor: A, worker: Worker) {
    let mut conns = JoinSet::new();
    let mut phase = worker.phase.clone();
    let mut warn = RateLimitedWarn::new();
    let clock = Clock::new();
    let tracker = Rc::new(RefCell::new(Tracker::default()));
    loop {
        while conns.try_join_next().is_some() {}
        let accepted = tokio::select! {
            biased;
            _ = phase.wait_for(|p| *p != Phase::Running) => break,
            r = acceptor.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                let source = Some(peer.ip()).filter(|_| worker.gate.counts_sources());
                let now = clock.stamp(Instant::now());
                let mut tr = tracker.borrow_mut();
                let Tracker {
                    conns: tracked,
                    order,
                    ..
                } = &mut *tr;
                let verdict = worker.admit(source, order, now, |slot, gen| {
                    tracked.get(slot).map_or(Seen::Gone, |t| t.seen(gen, now))
                });
                match verdict {
                    Admission::In => {}
                    Admission::InPlaceOf(slot) => {
                        // Its task sees the shutdown as the end and counts a server close.
                        let victim = &tr.conns[slot];
                        victim.evicted.set(true);
                        shutdown_socket(victim.fd);
                    }
                    Admission::Refused => continue,
                }
                let (slot, t) = tr.open(stream.raw_fd(), now);
                drop(tr);
                let conn = Conn {
                    worker: worker.clone(),
                    tracker: tracker.clone(),
                    slot,
                    tracked: t,
                    clock,
                    source,
                };
                conns.spawn_local(serve(stream, conn));
            }
            Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => {}
            Err(e) => {
                worker.counters.accept_errors.add(1);
                warn.warn("accept failed", &e);
                if is_resource_exhaustion(&e) {
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            }
        }
    }
    // Stop listening now: a cancelled io_uring accept can keep the listener open after it is
    // dropped, and the kernel would go on completing handshakes nobody will accept.
    shutdown_socket(acceptor.raw_fd());
    drop(acceptor);
    tokio::select! {
        _ = async { while conns.join_next().await.is_some() {} } => return,
        _ = phase.wait_for(|p| *p == Phase::Closing) => {}
    }
    for (_, t) in tracker.borrow().conns.iter() {
        shutdown_socket(t.fd);
    }
    while conns.join_next().await.is_some() {}
}

/// What a connection's task holds besides its stream.
struct Conn {
    worker: Worker,
    tracker: Rc<RefCell<Tracker>>,
    slot: usize,
    tracked: Rc<Tracked>,
    clock: Clock,
    source: Option<IpAddr>,
}

/// Echoes one connection until it ends, then records how.
async fn serve<S: EchoStream>(mut stream: S, conn: Conn) {
    let fd = stream.raw_fd();
    tracing::debug!(fd, "session open");
    let mut how = echo_until_closed(&mut stream, &conn).await;
    conn.tracker.borrow_mut().conns.remove(conn.slot);
    if conn.worker.closing() || conn.tracked.evicted.get() {
        how = CloseKind::Server;
    }
    if how == CloseKind::Server {
        // A timed-out io_uring operation may still hold the socket open in the kernel after
        // its future is dropped; shutting the socket down ends it so the peer sees the close.
        shutdown_socket(fd);
    }
    drop(stream);
    conn.worker.release(&how, conn.source);
}

/// The echo loop: receive, send back exactly the bytes received, repeat. One buffer for the
/// connection's life; the next receive is posted only after the send completes, so a peer
/// that never reads holds at most one buffer and kernel socket buffers, never a queue.
/// Each receive and each completed send stamps the connection's activity for the idle order.
async fn echo_until_closed<S: EchoStream>(stream: &mut S, conn: &Conn) -> CloseKind {
    let counters = &conn.worker.counters;
    let idle = conn.worker.limits.idle_timeout;
    let t = &conn.tracked;
    let stamp = || t.last.set(conn.clock.stamp(Instant::now()));
    let mut buf = Vec::with_capacity(conn.worker.limits.buffer_size);
    loop {
        let Some((res, b)) = within(idle, stream.recv(buf)).await else {
            return CloseKind::Server;
        };
        buf = b;
        let n = match res {
            Ok(0) => return CloseKind::Fin,
            Ok(n) => n,
            Err(e) => return CloseKind::from_error(&e),
        };
        tracing::debug!(n, "read");
        stamp();
        t.holding.set(true);
        let Some((res, b)) = within(idle, stream.send_all(buf, n)).await else {
            return CloseKind::Server;
        };
        buf = b;
        if let Err(e) = res {
            return CloseKind::from_error(&e);
        }
        t.holding.set(false);
        stamp();
        counters.recvs.add(1);
        counters.bytes_echoed.add(n as u64);
    }
}

/// Shuts a socket down both ways, waking any operation blocked on it (on a listener: it
/// stops listening).
#[allow(unsafe_code)]
fn shutdown_socket(fd: RawFd) {
    // SAFETY: callers pass the descriptor of a socket this thread still owns (its stream or
    // listener is alive); shutdown does not close or free it.
    unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
}

/// Runs `f` to completion, or gives up after `limit` (None: never). No timer is armed when
/// there is no limit, so the default configuration pays nothing per message.
async fn within<F: Future>(limit: Option<Duration>, f: F) -> Option<F::Output> {
    match limit {
        Some(d) => tokio::time::timeout(d, f).await.ok(),
        None => Some(f.await),
    }
}
