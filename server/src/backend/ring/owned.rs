//! The `uring` backend's receive and send: tokio-uring operations built here, submitted
//! through tokio-uring's own driver (`UnsubmittedOneshot`, its public way to run a submission
//! it has no method for), because its socket methods cost more per message than the kernel
//! needs. Measured with `perf record` at 1,000 connections × 64 B (docs/results.md):
//! - its `write` is a generic WRITE, and a WRITE's completion runs the file-write bookkeeping
//!   (`io_req_io_notify`, fsnotify) and `io_file_get_flags` (0.5–0.8 µs per message together);
//!   a SEND on a socket has neither.
//! - its `read` is a generic READ, tried at once on a socket that is still empty (the echo was
//!   just sent; the peer has not answered), then poll-armed and retried: two receive attempts
//!   per message. A RECV with `IORING_RECVSEND_POLL_FIRST` arms the poll first and receives
//!   once, when the data is there.
//!
//! Each operation owns its buffer and an `Rc` of the stream while it is in flight, and
//! tokio-uring keeps both until the completion arrives even if the future is dropped (an idle
//! timeout), so the kernel never writes into freed memory and the descriptor is never closed
//! (and reused by another connection) under an operation.

use std::io;
use std::os::fd::AsRawFd;
use std::rc::Rc;

use io_uring_tokio::{cqueue, opcode, squeue, types};
use tokio_uring::net::TcpStream;
use tokio_uring::{OneshotOutputTransform, UnsubmittedOneshot};

/// `IORING_RECVSEND_POLL_FIRST` (kernel 5.19): poll before the first receive attempt.
const RECVSEND_POLL_FIRST: u16 = 1;

/// What an operation in flight holds until its completion: the buffer the kernel reads or
/// writes, and the stream, so its descriptor stays open.
pub(crate) struct InFlight {
    _stream: Rc<TcpStream>,
    buf: Vec<u8>,
}

/// A receive's completion: the byte count, the buffer filled that far.
pub(crate) struct Received;

impl OneshotOutputTransform for Received {
    type Output = (io::Result<usize>, Vec<u8>);
    type StoredData = InFlight;

    fn transform_oneshot_output(self, data: InFlight, cqe: cqueue::Entry) -> Self::Output {
        let mut buf = data.buf;
        match cqe.result() {
            n if n >= 0 => {
                let n = (n as usize).min(buf.capacity());
                // SAFETY: the kernel initialised the first `n` bytes of the buffer's capacity
                // (a receive reports at most the length it was given: the capacity).
                unsafe { buf.set_len(n) };
                (Ok(n), buf)
            }
            e => (Err(io::Error::from_raw_os_error(-e)), buf),
        }
    }
}

/// A send's completion: the bytes the socket took, the buffer untouched.
pub(crate) struct Sent;

impl OneshotOutputTransform for Sent {
    type Output = (io::Result<usize>, Vec<u8>);
    type StoredData = InFlight;

    fn transform_oneshot_output(self, data: InFlight, cqe: cqueue::Entry) -> Self::Output {
        match cqe.result() {
            n if n >= 0 => (Ok(n as usize), data.buf),
            e => (Err(io::Error::from_raw_os_error(-e)), data.buf),
        }
    }
}

/// A receive into `buf`'s whole capacity (from its start), polled first.
pub(crate) fn recv(
    stream: &Rc<TcpStream>,
    mut buf: Vec<u8>,
) -> UnsubmittedOneshot<InFlight, Received> {
    let fd = types::Fd(stream.as_raw_fd());
    let (ptr, len) = (buf.as_mut_ptr(), buf.capacity() as u32);
    let mut sqe = opcode::Recv::new(fd, ptr, len).build();
    set_ioprio(&mut sqe, RECVSEND_POLL_FIRST);
    // The Vec moves into the operation; its heap memory, which `ptr` points at, does not.
    let data = InFlight {
        _stream: Rc::clone(stream),
        buf,
    };
    UnsubmittedOneshot::new(data, Received, sqe)
}

/// A send of `buf[from..to]`.
pub(crate) fn send(
    stream: &Rc<TcpStream>,
    buf: Vec<u8>,
    from: usize,
    to: usize,
) -> UnsubmittedOneshot<InFlight, Sent> {
    assert!(from <= to && to <= buf.len(), "send outside the buffer");
    let fd = types::Fd(stream.as_raw_fd());
    // SAFETY: `from <= buf.len()` (asserted), so the pointer is inside the buffer or one past
    // its end; the Vec moves into the operation and its heap memory stays where it is.
    let ptr = unsafe { buf.as_ptr().add(from) };
    let sqe = opcode::Send::new(fd, ptr, (to - from) as u32)
        .flags(libc::MSG_NOSIGNAL)
        .build();
    let data = InFlight {
        _stream: Rc::clone(stream),
        buf,
    };
    UnsubmittedOneshot::new(data, Sent, sqe)
}

/// Sets a submission's `ioprio` (bytes 2..4 of the SQE), which the io-uring crate's receive
/// builder does not expose; for a receive it carries the `IORING_RECVSEND_*` flags.
fn set_ioprio(sqe: &mut squeue::Entry, ioprio: u16) {
    super::set_sqe_field(sqe, 2, ioprio);
}
