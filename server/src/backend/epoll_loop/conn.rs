//! One epoll-loop connection's rules, with no I/O: the driver in [`super`] reports readiness
//! and the results of its `read` and `write` calls, and asks [`Session::next`] what to do.
//! Everything that decides what a connection holds and when it ends is here, so the
//! property tests below can drive it through any interleaving of arrivals, short writes and
//! edges against a model of the kernel that gives as few edges as the kernel may.
//!
//! # The rules
//! - **Edge-triggered.** The socket is registered once for reading and writing; an edge says
//!   that something changed. A read that fills less than the buffer took everything there
//!   was (as nginx takes it), so the connection waits for the next edge, unless the peer's
//!   FIN or an error was reported with the edge: then one more read will tell it.
//! - **Echo straight from the receive buffer.** Received bytes are written back at once from
//!   the thread's one receive buffer; only what a short write leaves is copied into a buffer
//!   of the connection's own, and written when the socket is writable again.
//! - **Per-connection cap.** A connection holds at most one buffer of unsent bytes: it is not
//!   read while it holds any, so a peer that does not read its echoes fills its own socket
//!   buffers, and TCP flow control pushes back on that peer alone.
//! - **Large reads while memory allows.** The thread's receive buffer is large (64 KiB by
//!   default), so a large message is one read and one write, not sixteen of each. What a
//!   short write leaves is copied into a spill of its own size, so once the thread's spills
//!   hold [`SPILL_BUDGET`] bytes, every read is cut to [`SMALL_READ`] ([`read_size`]): a
//!   flood of peers that never read holds at most the budget, one large read and a small
//!   spill each, never a large spill each.
//! - **Fairness.** A connection does at most [`BUDGET`] reads per turn; one with more to read
//!   yields ([`Next::Yield`]) and is served again after the others' events.
//! - **Closing.** The peer's FIN ends the connection once everything received was echoed;
//!   a reset, any other error, or the thread (idle timeout, shutdown) ends it at once. The
//!   close's kind is [`CloseKind::from_error`]'s, the rule every backend shares.

use std::io;

use crate::stats::CloseKind;

/// Reads a connection may do in one turn before it yields to the others.
pub(crate) const BUDGET: u32 = 16;

/// Spill bytes a thread's connections hold before reads are cut to [`SMALL_READ`].
pub(crate) const SPILL_BUDGET: usize = 4 << 20;
/// The read size once spills are over budget (and the size of a pooled spill buffer).
pub(crate) const SMALL_READ: usize = 4096;

/// How much the next read may take into a receive buffer of `buffer` bytes while the
/// thread's spills hold `spilled` bytes.
pub(crate) fn read_size(buffer: usize, spilled: usize) -> usize {
    if spilled >= SPILL_BUDGET {
        buffer.min(SMALL_READ)
    } else {
        buffer
    }
}

/// Spare spill buffers a thread keeps for reuse; more are freed at the sweep.
pub(crate) const SPARE_SPILLS: usize = 64;

/// A connection's unsent bytes: what a short write left, in a buffer of its own, as
/// `buf[len - unsent..len]` while [`Session::unsent`] says `unsent` are left.
#[derive(Debug)]
pub(crate) struct Spill {
    buf: Box<[u8]>,
    len: u32,
}

impl Spill {
    /// The `unsent` bytes still to write.
    pub(crate) fn unsent(&self, unsent: u32) -> &[u8] {
        let end = self.len as usize;
        &self.buf[end - unsent as usize..end]
    }
}

/// A thread's spills, the rule of what a short write may keep: a pooled buffer of the small
/// size when the leftover fits one, else a buffer of the leftover's own size; and once the
/// thread's spills hold [`SPILL_BUDGET`] bytes, reads cut to [`SMALL_READ`] ([`read_size`]).
#[derive(Debug)]
pub(crate) struct Spills {
    /// Spare buffers of the small size.
    pool: Vec<Box<[u8]>>,
    /// Spills held by connections.
    held: u64,
    /// Their bytes.
    bytes: usize,
    /// The small size: [`SMALL_READ`], or the receive buffer if that is smaller.
    small: usize,
}

impl Spills {
    /// The spills of a thread whose receive buffer is `buffer` bytes.
    pub(crate) fn new(buffer: usize) -> Spills {
        Spills {
            pool: Vec::new(),
            held: 0,
            bytes: 0,
            small: buffer.min(SMALL_READ),
        }
    }

    /// How much the next read may take into the thread's `buffer`-byte receive buffer.
    pub(crate) fn read_size(&self, buffer: usize) -> usize {
        read_size(buffer, self.bytes)
    }

    /// Keeps `left`, the bytes a short write left, for the connection to write later.
    pub(crate) fn keep(&mut self, left: &[u8]) -> Spill {
        let mut buf = if left.len() <= self.small {
            self.pool
                .pop()
                .unwrap_or_else(|| vec![0; self.small].into_boxed_slice())
        } else {
            vec![0; left.len()].into_boxed_slice()
        };
        buf[..left.len()].copy_from_slice(left);
        self.held += 1;
        self.bytes += buf.len();
        Spill {
            buf,
            len: left.len() as u32,
        }
    }

    /// Takes back a connection's spill: a small one into the pool, a larger one freed.
    pub(crate) fn give_back(&mut self, spill: Spill) {
        self.held -= 1;
        self.bytes -= spill.buf.len();
        if spill.buf.len() == self.small {
            self.pool.push(spill.buf);
        }
    }

    /// Spills held by connections (the `spill` buffers-held gauge).
    pub(crate) fn held(&self) -> u64 {
        self.held
    }

    /// Frees the spare buffers past [`SPARE_SPILLS`].
    pub(crate) fn trim(&mut self) {
        self.pool.truncate(SPARE_SPILLS);
    }
}

/// What the driver must do next for a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Next {
    /// Read into the thread's receive buffer and report it with [`Session::received`].
    Recv,
    /// Write the unsent bytes and report it with [`Session::sent`].
    Send,
    /// Nothing until the next edge.
    Park,
    /// More to read, but this turn's budget is spent: serve it again after the others.
    Yield,
    /// Close the socket and forget the connection.
    Close(CloseKind),
}

bitflags::bitflags! {
    /// A connection's yes-or-no state, a bit each.
    #[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
    struct Flags: u8 {
        /// A read may find bytes (or the FIN, or an error).
        const READABLE = 1;
        /// A write may make progress.
        const WRITABLE = 1 << 1;
        /// An edge reported the peer's FIN or an error: a short read has not told all.
        const HUP = 1 << 2;
        /// The peer's FIN was read.
        const EOF = 1 << 3;
    }
}

/// One connection's state.
#[derive(Debug)]
pub(crate) struct Session {
    /// Bytes received and not yet written back (at most one buffer).
    unsent: u32,
    /// The size of the receive that `unsent` came from, counted once it is all written.
    received: u32,
    flags: Flags,
    /// Reads done in this turn.
    reads: u32,
    closing: Option<CloseKind>,
}

impl Default for Session {
    /// A fresh connection: readable (bytes may have come with the handshake) and writable.
    fn default() -> Self {
        Session {
            unsent: 0,
            received: 0,
            flags: Flags::READABLE | Flags::WRITABLE,
            reads: 0,
            closing: None,
        }
    }
}

impl Session {
    /// An edge: what it says became ready. `hup`: it reported the peer's FIN or an error.
    pub fn ready(&mut self, readable: bool, writable: bool, hup: bool) {
        if readable || hup {
            self.flags.insert(Flags::READABLE);
        }
        if writable || hup {
            self.flags.insert(Flags::WRITABLE);
        }
        if hup {
            self.flags.insert(Flags::HUP);
        }
    }

    /// A new turn: the read budget starts again.
    pub fn turn(&mut self) {
        self.reads = 0;
    }

    /// What to do next.
    pub fn next(&self) -> Next {
        if let Some(how) = &self.closing {
            return Next::Close(how.clone());
        }
        if self.unsent > 0 {
            return if self.flags.contains(Flags::WRITABLE) {
                Next::Send
            } else {
                Next::Park
            };
        }
        if self.flags.contains(Flags::EOF) {
            return Next::Close(CloseKind::Fin);
        }
        if !self.flags.contains(Flags::READABLE) {
            Next::Park
        } else if self.reads >= BUDGET {
            Next::Yield
        } else {
            Next::Recv
        }
    }

    /// The result of a read into a buffer of `size` bytes.
    pub fn received(&mut self, res: &io::Result<usize>, size: usize) {
        debug_assert_eq!(self.unsent, 0, "read while holding unsent bytes");
        self.reads += 1;
        match res {
            Ok(0) => self.flags.insert(Flags::EOF),
            Ok(n) => {
                self.unsent = *n as u32;
                self.received = *n as u32;
                if *n < size && !self.flags.contains(Flags::HUP) {
                    self.flags.remove(Flags::READABLE);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.flags.remove(Flags::READABLE | Flags::HUP);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => self.close(CloseKind::from_error(e)),
        }
    }

    /// The result of writing the unsent bytes. `Some(bytes)`: a receive of that many bytes is
    /// now echoed whole.
    pub fn sent(&mut self, res: &io::Result<usize>) -> Option<u32> {
        match res {
            Ok(n) => {
                assert!(*n as u32 <= self.unsent, "wrote more than was unsent");
                self.unsent -= *n as u32;
                if self.unsent == 0 {
                    return Some(std::mem::take(&mut self.received));
                }
                // A short write: the socket's buffer is full; the next edge says when not.
                self.flags.remove(Flags::WRITABLE);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.flags.remove(Flags::WRITABLE);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => self.close(CloseKind::from_error(e)),
        }
        None
    }

    /// The thread ends the connection (idle timeout, shutdown); the first reason stands.
    pub fn close(&mut self, how: CloseKind) {
        if self.closing.is_none() {
            self.unsent = 0;
            self.closing = Some(how);
        }
    }

    /// Whether the connection is closing.
    pub fn is_closing(&self) -> bool {
        self.closing.is_some()
    }

    /// Bytes received and not yet written back.
    pub fn unsent(&self) -> u32 {
        self.unsent
    }
}

#[cfg(test)]
mod tests;
