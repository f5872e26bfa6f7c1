//! The backend-independent half of the server: the accept loop and the per-connection echo
//! loop, written once over two small traits that each async backend implements.
//!
//! Both loops run on one thread's single-threaded runtime, so connection state is `Rc`, not
//! `Arc`, and nothing on the per-message path takes a lock or an atomic read-modify-write.

use std::future::Future;
use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use tokio::task::JoinSet;

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
    /// Accepts one connection and sets TCP_NODELAY on it.
    async fn accept(&self) -> io::Result<Self::Stream>;
    /// The listening socket's descriptor.
    fn raw_fd(&self) -> RawFd;
}

/// Accepts until shutdown, spawning one echo task per connection; then drains.
pub(crate) async fn run_accept_loop<A: Acceptor>(acceptor: A, worker: Worker) {
    let mut conns = JoinSet::new();
    let mut phase = worker.phase.clone();
    let mut warn = RateLimitedWarn::new();
    loop {
        while conns.try_join_next().is_some() {}
        let accepted = tokio::select! {
            biased;
            _ = phase.wait_for(|p| *p != Phase::Running) => break,
            r = acceptor.accept() => r,
        };
        match accepted {
            Ok(stream) => {
                if worker.admit() {
                    conns.spawn_local(serve(stream, worker.clone()));
                }
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
    for &fd in worker.fds.borrow().iter() {
        shutdown_socket(fd);
    }
    while conns.join_next().await.is_some() {}
}

/// Echoes one connection until it ends, then records how.
async fn serve<S: EchoStream>(mut stream: S, worker: Worker) {
    let fd = stream.raw_fd();
    worker.fds.borrow_mut().insert(fd);
    tracing::debug!(fd, "session open");
    let mut how = echo_until_closed(&mut stream, &worker).await;
    worker.fds.borrow_mut().remove(&fd);
    if worker.closing() {
        how = CloseKind::Server;
    }
    if how == CloseKind::Server {
        // A timed-out io_uring operation may still hold the socket open in the kernel after
        // its future is dropped; shutting the socket down ends it so the peer sees the close.
        shutdown_socket(fd);
    }
    drop(stream);
    worker.release(&how);
}

/// The echo loop: receive, send back exactly the bytes received, repeat. One buffer for the
/// connection's life; the next receive is posted only after the send completes, so a peer
/// that never reads holds at most one buffer and kernel socket buffers, never a queue.
async fn echo_until_closed<S: EchoStream>(stream: &mut S, worker: &Worker) -> CloseKind {
    let counters = &worker.counters;
    let idle = worker.limits.idle_timeout;
    let mut buf = Vec::with_capacity(worker.limits.buffer_size);
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
        let Some((res, b)) = within(idle, stream.send_all(buf, n)).await else {
            return CloseKind::Server;
        };
        buf = b;
        if let Err(e) = res {
            return CloseKind::from_error(&e);
        }
        counters.recvs.add(1);
        counters.bytes_echoed.add(n as u64);
    }
}

/// Shuts a socket down both ways, waking any operation blocked on it (on a listener: it
/// stops listening).
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
