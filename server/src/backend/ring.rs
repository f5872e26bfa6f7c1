//! The one place the multishot backend touches raw memory: an io_uring with a provided buffer
//! ring registered on it, and the submissions that point the kernel at that memory.
//!
//! Ownership rules the rest of the backend keeps (and this module relies on):
//! - A buffer id is either in the ring (the kernel may fill it) or held by exactly one
//!   connection (from the receive that filled it until its send completes), never both:
//!   [`Ring::recycle`] is called once per id the kernel handed out.
//! - A descriptor passed to a submission stays open until every operation on it completed.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use io_uring::types::{BufRingEntry, Fd, SubmitArgs, Timespec};
use io_uring::{cqueue, opcode, squeue, IoUring};

/// The buffer group id of the one ring per thread.
const BUF_GROUP: u16 = 0;

/// Anonymous, page-aligned memory that the kernel reads and writes; never referenced from Rust.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mapping {
    fn new(len: usize) -> io::Result<Self> {
        // SAFETY: an anonymous private mapping with no address hint touches no existing memory.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Mapping { ptr, len })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: ptr/len are exactly what mmap returned; the ring that used this memory is
        // unregistered (or destroyed) before a Mapping drops (field order in `Ring`).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// How the ring was set up, for the log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TaskRun {
    /// SINGLE_ISSUER + DEFER_TASKRUN: completions run only when this thread waits.
    Deferred,
    /// COOP_TASKRUN: no interrupting IPIs, completions at the next kernel transition.
    Cooperative,
    /// The kernel refused both.
    Default,
}

/// An io_uring plus one provided buffer ring of `count` buffers of `size` bytes.
pub(crate) struct Ring {
    // Field order matters: the ring is destroyed before the memory it points into.
    uring: IoUring,
    entries: Mapping,
    buffers: Mapping,
    count: u16,
    size: u32,
    tail: u16,
    taskrun: TaskRun,
}

impl Ring {
    /// Creates the ring (preferring the flags that suit one thread per ring) and registers a
    /// buffer ring with every buffer in it.
    pub fn new(sq_entries: u32, count: u16, size: u32) -> io::Result<Ring> {
        let cq_entries = sq_entries * 4;
        let (uring, taskrun) = match IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_cqsize(cq_entries)
            .build(sq_entries)
        {
            Ok(r) => (r, TaskRun::Deferred),
            Err(_) => match IoUring::builder()
                .setup_coop_taskrun()
                .setup_cqsize(cq_entries)
                .build(sq_entries)
            {
                Ok(r) => (r, TaskRun::Cooperative),
                Err(_) => (
                    IoUring::builder()
                        .setup_cqsize(cq_entries)
                        .build(sq_entries)?,
                    TaskRun::Default,
                ),
            },
        };
        let entries = Mapping::new(count as usize * std::mem::size_of::<BufRingEntry>())?;
        let buffers = Mapping::new(count as usize * size as usize)?;
        let mut ring = Ring {
            uring,
            entries,
            buffers,
            count,
            size,
            tail: 0,
            taskrun,
        };
        // SAFETY: `entries` holds `count` entries (a power of two, checked by the config) and
        // lives until after the ring is destroyed (field order), as registration requires.
        unsafe {
            ring.uring.submitter().register_buf_ring_with_flags(
                ring.entries.ptr.as_ptr() as u64,
                count,
                BUF_GROUP,
                0,
            )?;
        }
        for bid in 0..count {
            ring.recycle(bid);
        }
        Ok(ring)
    }

    /// How the ring was set up.
    pub fn taskrun(&self) -> TaskRun {
        self.taskrun
    }

    /// Hands buffer `bid` back to the kernel for the next receive.
    pub fn recycle(&mut self, bid: u16) {
        assert!(bid < self.count, "buffer id {bid} out of range");
        let base = self.entries.ptr.as_ptr().cast::<BufRingEntry>();
        let slot = (self.tail & (self.count - 1)) as usize;
        // SAFETY: slot < count, so the entry lies inside the mapping; the kernel only reads
        // entries between its head and our published tail, and this one is past the tail.
        unsafe {
            let entry = &mut *base.add(slot);
            entry.set_addr(
                self.buffers
                    .ptr
                    .as_ptr()
                    .add(bid as usize * self.size as usize) as u64,
            );
            entry.set_len(self.size);
            entry.set_bid(bid);
        }
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: the tail field overlays entry 0's `resv`, inside the mapping; the kernel reads
        // it with acquire semantics, so a release store publishes the entry written above.
        unsafe {
            let tail = &*(BufRingEntry::tail(base) as *const AtomicU16);
            tail.store(self.tail, Ordering::Release);
        }
    }

    /// Queues a multishot accept on `listener`.
    pub fn accept_multi(&mut self, listener: RawFd, user_data: u64) -> io::Result<()> {
        let sqe = opcode::AcceptMulti::new(Fd(listener))
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(user_data);
        self.push(sqe)
    }

    /// Queues a multishot receive on `fd` that picks buffers from the ring.
    pub fn recv_multi(&mut self, fd: RawFd, user_data: u64) -> io::Result<()> {
        let sqe = opcode::RecvMulti::new(Fd(fd), BUF_GROUP)
            .build()
            .user_data(user_data);
        self.push(sqe)
    }

    /// Queues a send of `len` bytes of buffer `bid` from `offset`, straight from ring memory.
    pub fn send(
        &mut self,
        fd: RawFd,
        bid: u16,
        offset: u32,
        len: u32,
        user_data: u64,
    ) -> io::Result<()> {
        assert!(
            bid < self.count && offset + len <= self.size,
            "send outside buffer {bid}"
        );
        // SAFETY: the range lies inside buffer `bid` (asserted), which the caller holds (not in
        // the ring) until this send completes, so nothing else writes it meanwhile.
        let ptr = unsafe {
            self.buffers
                .ptr
                .as_ptr()
                .add(bid as usize * self.size as usize + offset as usize)
        };
        let sqe = opcode::Send::new(Fd(fd), ptr, len)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(user_data);
        self.push(sqe)
    }

    /// Queues a cancellation of the operation tagged `target`.
    pub fn cancel(&mut self, target: u64, user_data: u64) -> io::Result<()> {
        let sqe = opcode::AsyncCancel::new(target)
            .build()
            .user_data(user_data);
        self.push(sqe)
    }

    fn push(&mut self, sqe: squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: every entry built above points at memory that outlives the operation
            // (ring memory by field order; fds by the caller's rule in the module docs).
            if unsafe { self.uring.submission().push(&sqe) }.is_ok() {
                return Ok(());
            }
            // Queue full: hand what is queued to the kernel and retry.
            self.uring.submit()?;
        }
    }

    /// Submits what is queued and waits for at least one completion or `timeout`.
    pub fn submit_and_wait(&mut self, timeout: Duration) -> io::Result<()> {
        let ts = Timespec::from(timeout);
        let args = SubmitArgs::new().timespec(&ts);
        match self.uring.submitter().submit_with_args(1, &args) {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Moves every available completion into `out` as (user_data, result, flags).
    pub fn drain_completions(&mut self, out: &mut Vec<(u64, i32, u32)>) {
        out.extend(
            self.uring
                .completion()
                .map(|c: cqueue::Entry| (c.user_data(), c.result(), c.flags())),
        );
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        let _ = self.uring.submitter().unregister_buf_ring(BUF_GROUP);
    }
}

/// Takes ownership of the descriptor an accept completion returned.
pub(crate) fn accepted_fd(res: i32) -> OwnedFd {
    assert!(res >= 0, "not a descriptor: {res}");
    // SAFETY: a non-negative accept result is a new descriptor the kernel opened for this
    // process and that nothing else refers to, so owning (and later closing) it is sound.
    unsafe { OwnedFd::from_raw_fd(res) }
}

/// The buffer id a receive completion used, if it used one.
pub(crate) fn buffer_id(flags: u32) -> Option<u16> {
    cqueue::buffer_select(flags)
}

/// Whether a multishot operation stays armed after this completion.
pub(crate) fn more(flags: u32) -> bool {
    cqueue::more(flags)
}
