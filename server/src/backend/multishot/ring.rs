//! The one place the multishot backend touches raw memory: an io_uring with provided buffer
//! rings registered on it (a small one, and a large one with large receives), and the
//! submissions that point the kernel at that memory.
//!
//! Ownership rules the rest of the backend keeps (and this module relies on):
//! - A buffer id is either in the ring (the kernel may fill it) or held by exactly one
//!   connection (from the receive that filled it until its send completes), never both:
//!   [`Ring::recycle`] is called once per id the kernel handed out.
//! - A spill buffer ([`Buf::Spill`]) is heap memory this module owns; it is handed out by
//!   [`Ring::take_spill`], held by exactly one connection, written only while no send reads it,
//!   and given back once with [`Ring::recycle`].
//! - A descriptor passed to a submission stays open until every operation on it completed; a
//!   direct descriptor's slot is closed ([`Ring::close_direct`]) only then, too.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use io_uring::types::{
    BufRingEntry, CancelBuilder, DestinationSlot, Fd, Fixed, SubmitArgs, TimeoutFlags, Timespec,
};
use io_uring::{cqueue, opcode, squeue, IoUring};

/// The buffer group ids of the small ring and of the large one.
const BUF_GROUP: u16 = 0;
const LARGE_GROUP: u16 = 1;

/// One provided buffer ring: its entries, its buffers, and the ids its buffers have as a
/// [`Buf::Ring`] (`first..first + count`; the kernel knows them as `0..count`).
struct Pool {
    entries: Mapping,
    buffers: Mapping,
    count: u16,
    size: u32,
    tail: u16,
    first: u16,
    group: u16,
    /// The ring position (the tail's value) each buffer was last put at, by local id, and
    /// the buffer at each slot: a receive bundle takes buffers in ring order from the one
    /// its completion names, and these say which ([`Ring::bundle`]).
    at: Vec<u16>,
    order: Vec<u16>,
}

impl Pool {
    fn new(count: u16, size: u32, first: u16, group: u16) -> io::Result<Pool> {
        Ok(Pool {
            entries: Mapping::new(count as usize * std::mem::size_of::<BufRingEntry>())?,
            buffers: Mapping::new(count as usize * size as usize)?,
            count,
            size,
            tail: 0,
            first,
            group,
            at: vec![0; count as usize],
            order: vec![0; count as usize],
        })
    }

    /// Buffer `local`'s start.
    fn ptr(&self, local: u16) -> *mut u8 {
        assert!(local < self.count, "buffer {local} out of range");
        // SAFETY: local < count, so the offset lies inside the buffers mapping.
        unsafe {
            self.buffers
                .ptr
                .as_ptr()
                .add(local as usize * self.size as usize)
        }
    }

    /// Hands buffer `local` back to the kernel.
    fn recycle(&mut self, local: u16) {
        let addr = self.ptr(local) as u64;
        let base = self.entries.ptr.as_ptr().cast::<BufRingEntry>();
        let slot = (self.tail & (self.count - 1)) as usize;
        // SAFETY: slot < count, so the entry lies inside the mapping; the kernel only reads
        // entries between its head and our published tail, and this one is past the tail.
        unsafe {
            let entry = &mut *base.add(slot);
            entry.set_addr(addr);
            entry.set_len(self.size);
            entry.set_bid(local);
        }
        self.order[slot] = local;
        self.at[local as usize] = self.tail;
        self.tail = self.tail.wrapping_add(1);
        // SAFETY: the tail field overlays entry 0's `resv`, inside the mapping; the kernel reads
        // it with acquire semantics, so a release store publishes the entry written above.
        unsafe {
            let tail = &*(BufRingEntry::tail(base) as *const AtomicU16);
            tail.store(self.tail, Ordering::Release);
        }
    }

    /// Registers the ring with the kernel and fills it.
    fn register(&mut self, uring: &IoUring) -> io::Result<()> {
        // SAFETY: `entries` holds `count` entries (a power of two, checked by the caller) and
        // lives until after the ring is destroyed (field order in `Ring`), as registration
        // requires.
        unsafe {
            uring.submitter().register_buf_ring_with_flags(
                self.entries.ptr.as_ptr() as u64,
                self.count,
                self.group,
                0,
            )?;
        }
        for local in 0..self.count {
            self.recycle(local);
        }
        Ok(())
    }
}

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

/// A buffer a connection holds: one of the ring's, or a spill buffer of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Buf {
    /// A provided buffer, by id; goes back to the ring when recycled.
    Ring(u16),
    /// A heap buffer of the ring's buffer size, by index; goes back to the spill pool.
    Spill(u32),
}

/// A connection's socket as submissions name it: a descriptor of the process, or a slot in
/// the ring's own file table (a direct descriptor: no file lookup and reference count per
/// operation, and no entry in the process's descriptor table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sock {
    Fd(RawFd),
    Direct(u32),
}

/// Builds a submission on a [`Sock`], whichever kind it is (the crate's builders take the two
/// kinds as different types).
macro_rules! on_sock {
    ($sock:expr, $t:ident => $build:expr) => {
        match $sock {
            Sock::Fd(fd) => {
                let $t = Fd(fd);
                $build
            }
            Sock::Direct(slot) => {
                let $t = Fixed(slot);
                $build
            }
        }
    };
}

/// Spill buffers kept for reuse at most; past this, recycled ones are freed, so a storm of
/// blocked peers leaves no lasting memory behind. Enough for a thousand pipelined
/// connections each with a spill in flight, so steady load never maps and unmaps.
const SPILL_POOL_MAX: usize = 1024;
/// Spill buffers the pool keeps when it is trimmed after a quiet spell.
const SPILL_POOL_QUIET: usize = 64;

/// An io_uring plus one provided buffer ring of `count` buffers of `size` bytes, and the spill
/// buffers that hold bytes copied out of the ring.
pub(crate) struct Ring {
    // Field order matters: the ring is destroyed (cancelling every operation) before the
    // memory it points into, ring buffers and spill buffers alike.
    uring: IoUring,
    small: Pool,
    /// The large ring, with `--large-receives` ([`Ring::add_large`]).
    large: Option<Pool>,
    /// Spill buffers by index; `None` once freed. Each is its own mapping (which never
    /// moves when this Vec grows), unmapped when freed, so memory a storm of blocked peers
    /// took goes back to the system instead of staying in the allocator's free lists.
    spills: Vec<Option<Mapping>>,
    /// Indexes of spill buffers that are allocated and free for reuse.
    spill_pool: Vec<u32>,
    /// Indexes whose buffer was freed, for reuse by the next allocation.
    spill_vacant: Vec<u32>,
    /// A spill buffer was mapped since the last [`Ring::trim_spills`].
    spill_mapped: bool,
    /// The small buffers' size, which spill buffers share.
    size: u32,
    taskrun: TaskRun,
    /// The tick's period, where the kernel reads it (boxed: its address never moves).
    tick: Box<Timespec>,
    /// The message header and iovec of each gathered send, by the caller's key (boxed: the
    /// kernel reads them at submission, and they never move while this Vec grows).
    msgs: Vec<Option<Box<Gather>>>,
}

/// One gathered send's `msghdr` and the iovec it points at.
struct Gather {
    hdr: libc::msghdr,
    iov: [libc::iovec; MAX_IOV],
}

/// Buffers one gathered send names at most.
pub(crate) const MAX_IOV: usize = 8;

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
        let mut ring = Ring {
            uring,
            small: Pool::new(count, size, 0, BUF_GROUP)?,
            large: None,
            spills: Vec::new(),
            spill_pool: Vec::new(),
            spill_vacant: Vec::new(),
            spill_mapped: false,
            size,
            taskrun,
            tick: Box::new(Timespec::new()),
            msgs: Vec::new(),
        };
        ring.small.register(&ring.uring)?;
        Ok(ring)
    }

    /// Registers a second ring, of `count` (a power of two) large buffers of `size` bytes,
    /// whose ids as [`Buf::Ring`] follow the small ring's.
    pub fn add_large(&mut self, count: u16, size: u32) -> io::Result<()> {
        let mut pool = Pool::new(count, size, self.small.count, LARGE_GROUP)?;
        pool.register(&self.uring)?;
        self.large = Some(pool);
        Ok(())
    }

    /// The pool ring buffer `bid` belongs to, and its id there.
    fn pool(&self, bid: u16) -> (&Pool, u16) {
        match &self.large {
            Some(l) if bid >= l.first => (l, bid - l.first),
            _ => (&self.small, bid),
        }
    }

    /// A held buffer's size.
    fn size_of(&self, buf: Buf) -> u32 {
        match buf {
            Buf::Ring(bid) => self.pool(bid).0.size,
            Buf::Spill(_) => self.size,
        }
    }

    /// Hands a held buffer back: a ring buffer to the kernel, a spill buffer to the pool.
    pub fn recycle(&mut self, buf: Buf) {
        match buf {
            Buf::Ring(bid) => self.recycle_ring(bid),
            Buf::Spill(i) => {
                if self.spill_pool.len() < SPILL_POOL_MAX {
                    self.spill_pool.push(i);
                } else {
                    self.free_spill(i);
                }
            }
        }
    }

    fn free_spill(&mut self, i: u32) {
        self.spills[i as usize] = None;
        self.spill_vacant.push(i);
    }

    /// Called now and then: if no spill buffer had to be mapped since the last call, unmaps
    /// pooled ones down to a small reserve, so memory taken in a burst goes back.
    pub fn trim_spills(&mut self) {
        if !std::mem::take(&mut self.spill_mapped) {
            while self.spill_pool.len() > SPILL_POOL_QUIET {
                let i = self.spill_pool.pop().expect("len checked");
                self.free_spill(i);
            }
        }
    }

    /// Takes a spill buffer from the pool, allocating one when the pool is empty.
    pub fn take_spill(&mut self) -> io::Result<Buf> {
        if let Some(i) = self.spill_pool.pop() {
            return Ok(Buf::Spill(i));
        }
        let mem = Mapping::new(self.size as usize)?;
        self.spill_mapped = true;
        match self.spill_vacant.pop() {
            Some(i) => {
                self.spills[i as usize] = Some(mem);
                Ok(Buf::Spill(i))
            }
            None => {
                self.spills.push(Some(mem));
                Ok(Buf::Spill((self.spills.len() - 1) as u32))
            }
        }
    }

    /// Copies `len` bytes of held ring buffer `bid` from `from` into held spill buffer `spill`
    /// at `at`. The caller holds both and no send is reading the spill buffer's range.
    pub fn copy_to_spill(&mut self, bid: u16, from: u32, len: u32, spill: Buf, at: u32) {
        let Buf::Spill(i) = spill else {
            panic!("copy target {spill:?} is not a spill buffer");
        };
        let (pool, local) = self.pool(bid);
        assert!(
            from + len <= pool.size && at + len <= self.size,
            "copy outside buffer {bid}"
        );
        // SAFETY: the range lies inside buffer `bid` (asserted; `ptr` checks the id); the
        // caller holds that buffer (the receive that filled it completed and it is not back
        // in the ring), so the kernel neither writes it now nor will until it is recycled.
        let src =
            unsafe { std::slice::from_raw_parts(pool.ptr(local).add(from as usize), len as usize) };
        let dst = self.spills[i as usize]
            .as_ref()
            .expect("a held spill buffer is allocated");
        // SAFETY: `at + len` ≤ size (asserted), the spill mapping's length; the caller holds
        // the spill buffer and no send reads this range (module rules), and a spill mapping
        // never overlaps the ring's buffers, so the two ranges are disjoint.
        unsafe {
            std::ptr::copy_nonoverlapping(
                src.as_ptr(),
                dst.ptr.as_ptr().add(at as usize),
                len as usize,
            )
        };
    }

    /// Held buffers' start address, for a send.
    fn buf_ptr(&self, buf: Buf) -> *const u8 {
        match buf {
            Buf::Ring(bid) => {
                let (pool, local) = self.pool(bid);
                pool.ptr(local)
            }
            Buf::Spill(i) => self.spills[i as usize]
                .as_ref()
                .expect("a held spill buffer is allocated")
                .ptr
                .as_ptr(),
        }
    }

    /// Whether this kernel has IORING_OP_SENDMSG (5.3 and later), which gathered sends use.
    pub fn has_sendmsg(&self) -> bool {
        let mut probe = io_uring::Probe::new();
        self.uring.submitter().register_probe(&mut probe).is_ok()
            && probe.is_supported(opcode::SendMsg::CODE)
    }

    /// Whether this kernel fills several buffers per receive completion (a bundle,
    /// IORING_RECVSEND_BUNDLE: 6.10 and later, announced as IORING_FEAT_RECVSEND_BUNDLE).
    pub fn has_bundles(&self) -> bool {
        self.uring.params().is_feature_recvsend_bundle()
    }

    /// The buffers a receive completion of `len` bytes filled, starting with ring buffer
    /// `bid` (an id as [`Buf::Ring`] names it), each with the bytes it holds, appended to
    /// `out` in order: one buffer, or with a bundle as many as `len` needs, taken in ring
    /// order from `bid`'s position. Every buffer but the last is full.
    pub fn bundle(&self, bid: u16, len: u32, out: &mut Vec<(u16, u32)>) {
        let (pool, mut local) = self.pool(bid);
        let mut position = pool.at[local as usize];
        let mut left = len;
        loop {
            let n = left.min(pool.size);
            out.push((pool.first + local, n));
            left -= n;
            if left == 0 {
                return;
            }
            position = position.wrapping_add(1);
            local = pool.order[usize::from(position & (pool.count - 1))];
        }
    }

    /// How the ring was set up.
    pub fn taskrun(&self) -> TaskRun {
        self.taskrun
    }

    /// Hands ring buffer `bid` back to the kernel for the next receive.
    fn recycle_ring(&mut self, bid: u16) {
        match &mut self.large {
            Some(l) if bid >= l.first => {
                let local = bid - l.first;
                l.recycle(local)
            }
            _ => self.small.recycle(bid),
        }
    }

    /// Gives the ring a file table of `slots` empty entries, for direct descriptors.
    pub fn register_direct(&mut self, slots: u32) -> io::Result<()> {
        self.uring.submitter().register_files_sparse(slots)
    }

    /// Queues a multishot accept on `listener`.
    pub fn accept_multi(&mut self, listener: RawFd, user_data: u64) -> io::Result<()> {
        let sqe = opcode::AcceptMulti::new(Fd(listener))
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(user_data);
        self.push(sqe)
    }

    /// Queues a one-shot accept on `listener` whose connection goes into a free slot of the
    /// file table (the completion's result is the slot).
    pub fn accept_direct(&mut self, listener: RawFd, user_data: u64) -> io::Result<()> {
        let sqe = opcode::Accept::new(Fd(listener), std::ptr::null_mut(), std::ptr::null_mut())
            .file_index(Some(DestinationSlot::auto_target()))
            .build()
            .user_data(user_data);
        self.push(sqe)
    }

    /// Queues the close of direct descriptor `slot` (frees the slot; the socket closes once
    /// no operation uses it).
    pub fn close_direct(&mut self, slot: u32, user_data: u64) -> io::Result<()> {
        let sqe = opcode::Close::new(Fixed(slot)).build().user_data(user_data);
        self.push(sqe)
    }

    /// Queues a multishot receive on `sock` that picks buffers from the ring. With `limit`
    /// above zero it ends by itself (a completion without MORE) once it has received that
    /// many bytes in all (the last receive is not shortened to fit: it may overshoot by up to
    /// a receive; a bundle's is: it stops at the limit); [`Ring::probe_recv_limit`] says
    /// whether the kernel knows the limit. With `len` above zero each receive takes at most
    /// that many bytes of its buffer (the SQE's `len`; a bundle ignores it, its limit caps
    /// it; older kernels refuse a multishot receive with a `len`, and the rules give one only
    /// on the large ring, which needs the limit's kernel). With `bundle`, one completion may
    /// fill several buffers in ring order ([`Ring::bundle`] names them).
    pub fn recv_multi(
        &mut self,
        sock: Sock,
        limit: u32,
        len: u32,
        large: bool,
        bundle: bool,
        user_data: u64,
    ) -> io::Result<()> {
        let group = match &self.large {
            Some(l) if large => l.group,
            _ => BUF_GROUP,
        };
        let mut sqe = if bundle {
            on_sock!(sock, t => opcode::RecvMultiBundle::new(t, group).build())
        } else {
            on_sock!(sock, t => opcode::RecvMulti::new(t, group).len(len).build())
        };
        if limit > 0 {
            set_optlen(&mut sqe, limit);
        }
        // A bundle's bytes are capped by its limit; the crate's bundle builder has no `len`.
        debug_assert!(
            !bundle || len == 0 || limit > 0,
            "a shortened bundle needs a limit"
        );
        self.push(sqe.user_data(user_data))
    }

    /// Whether this kernel caps a multishot receive's total bytes (the SQE's `optlen`; a
    /// kernel without it fails such a receive with EINVAL): a receive limited to 8 bytes on
    /// a socket pair holding 16 must end with its first completion (which takes all 16 in
    /// one buffer: the limit ends the receive once reached, it does not shorten a receive).
    /// Run before any connection is admitted; it leaves the ring as it found it.
    pub fn probe_recv_limit(&mut self) -> io::Result<bool> {
        const PROBE: u64 = u64::MAX;
        let (a, b) = std::os::unix::net::UnixStream::pair()?;
        use std::io::Write;
        use std::os::fd::AsRawFd;
        (&b).write_all(&[0u8; 16])?;
        self.recv_multi(Sock::Fd(a.as_raw_fd()), 8, 0, false, false, PROBE)?;
        let mut verdict = None;
        let mut cqes = Vec::new();
        for _ in 0..50 {
            self.submit_and_wait(Some(Duration::from_millis(20)))?;
            self.drain_completions(&mut cqes);
            for c in cqes.drain(..) {
                if c.user_data != PROBE {
                    continue;
                }
                if let Some(bid) = c.buffer {
                    self.recycle_ring(bid);
                }
                if verdict.is_none() {
                    verdict = Some(matches!(c.result, Ok(n) if n > 0) && !c.more);
                    if c.more {
                        // Still armed: the limit was ignored. Cancel it and wait for its end.
                        self.cancel(PROBE, PROBE - 1)?;
                    }
                }
                if !c.more {
                    return Ok(verdict.unwrap_or(false));
                }
            }
        }
        Err(io::Error::other(
            "the receive-limit probe did not complete in 1 s",
        ))
    }

    /// Queues a send of `len` bytes of held buffer `buf` from `offset`, straight from its
    /// memory (no copy).
    pub fn send(
        &mut self,
        sock: Sock,
        buf: Buf,
        offset: u32,
        len: u32,
        user_data: u64,
    ) -> io::Result<()> {
        assert!(
            offset + len <= self.size_of(buf),
            "send outside buffer {buf:?}"
        );
        // SAFETY: the range lies inside the buffer (asserted). The caller holds it until this
        // send completes and writes no byte of the range meanwhile; ring memory and spill
        // boxes outlive the io_uring (field order), and a spill box is freed only when
        // recycled, which the caller does after the send completed.
        let ptr = unsafe { self.buf_ptr(buf).add(offset as usize) };
        let sqe = on_sock!(sock, t => opcode::Send::new(t, ptr, len)
            .flags(libc::MSG_NOSIGNAL)
            .build());
        self.push(sqe.user_data(user_data))
    }

    /// Queues one send of several held buffers' ranges, `(buf, offset, len)` in order (a
    /// `sendmsg` with an iovec), straight from their memory. `key` names the header's storage:
    /// the caller has at most one gathered send per key in flight.
    pub fn send_gather(
        &mut self,
        sock: Sock,
        segs: &[(Buf, u32, u32)],
        key: usize,
        user_data: u64,
    ) -> io::Result<()> {
        assert!(
            (1..=MAX_IOV).contains(&segs.len()),
            "{} segments in one send",
            segs.len()
        );
        if self.msgs.len() <= key {
            self.msgs.resize_with(key + 1, || None);
        }
        let mut iov = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; MAX_IOV];
        for (v, &(buf, offset, len)) in iov.iter_mut().zip(segs) {
            assert!(
                offset + len <= self.size_of(buf),
                "send outside buffer {buf:?}"
            );
            // SAFETY: the range lies inside the buffer (asserted); as for `send`, the caller
            // holds every buffer named until this send completes and writes none meanwhile.
            let ptr = unsafe { self.buf_ptr(buf).add(offset as usize) };
            *v = libc::iovec {
                iov_base: ptr as *mut libc::c_void,
                iov_len: len as usize,
            };
        }
        let g = self.msgs[key].get_or_insert_with(|| {
            Box::new(Gather {
                // SAFETY: msghdr is plain data (pointers and integers); all zeroes is an
                // empty header.
                hdr: unsafe { std::mem::zeroed() },
                iov,
            })
        });
        g.iov = iov;
        g.hdr.msg_iov = g.iov.as_mut_ptr();
        g.hdr.msg_iovlen = segs.len();
        let hdr: *const libc::msghdr = &g.hdr;
        // SAFETY: `hdr` and the iovec it points at are boxed in `msgs`, which keeps them at
        // this address until the key's next gathered send, after this one completed (the
        // caller's rule); the iovec names held buffers only (see above).
        let sqe = on_sock!(sock, t => opcode::SendMsg::new(t, hdr)
            .flags(libc::MSG_NOSIGNAL as u32)
            .build());
        self.push(sqe.user_data(user_data))
    }

    /// Queues a cancellation of every operation tagged `target`.
    pub fn cancel_all(&mut self, target: u64, user_data: u64) -> io::Result<()> {
        let sqe = opcode::AsyncCancel2::new(CancelBuilder::user_data(target).all())
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

    /// Queues a multishot timeout that completes every `every` (with MORE set) until removed:
    /// the loop's tick as a completion, so waits need no timeout of their own (a timed wait
    /// arms and cancels a timer on every call; this one is armed once). Kernels before 6.4
    /// fail it with EINVAL.
    pub fn tick_every(&mut self, every: Duration, user_data: u64) -> io::Result<()> {
        *self.tick = Timespec::from(every);
        let ts: *const Timespec = &*self.tick;
        let sqe = opcode::Timeout::new(ts)
            .count(0)
            .flags(TimeoutFlags::MULTISHOT)
            .build()
            .user_data(user_data);
        self.push(sqe)
    }

    /// Submits what is queued and waits for at least one completion, or at most `timeout`
    /// (`None`: however long). A timeout or an interruption is not an error: the caller
    /// looks at what completed, if anything.
    pub fn submit_and_wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let submitter = self.uring.submitter();
        let res = match timeout {
            None => submitter.submit_and_wait(1),
            Some(t) => {
                let ts = Timespec::from(t);
                submitter.submit_with_args(1, &SubmitArgs::new().timespec(&ts))
            }
        };
        match res {
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

    /// Moves every available completion into `out`, decoded.
    pub fn drain_completions(&mut self, out: &mut Vec<Completion>) {
        out.extend(self.uring.completion().map(|c: cqueue::Entry| Completion {
            user_data: c.user_data(),
            result: match c.result() {
                res if res >= 0 => Ok(res as u32),
                res => Err(-res),
            },
            more: cqueue::more(c.flags()),
            buffer: cqueue::buffer_select(c.flags()),
            nonempty: cqueue::sock_nonempty(c.flags()),
        }));
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        let _ = self.uring.submitter().unregister_buf_ring(BUF_GROUP);
        if self.large.is_some() {
            let _ = self.uring.submitter().unregister_buf_ring(LARGE_GROUP);
        }
    }
}

/// Sets a submission's `optlen` (bytes 44..48 of the SQE, shared with `splice_fd_in` and
/// `file_index`), which the io-uring crate has no builder for: a multishot receive's total
/// byte limit.
fn set_optlen(sqe: &mut squeue::Entry, optlen: u32) {
    const OPTLEN_OFFSET: usize = 44;
    const _: () = assert!(std::mem::size_of::<squeue::Entry>() == 64);
    // SAFETY: `squeue::Entry` is `#[repr(C)]` around the kernel's 64-byte `io_uring_sqe`
    // (size asserted above), whose bytes 44..48 are the `optlen` member of a union of u32s;
    // the write is in bounds and, the SQE being 8-byte aligned, 4-byte aligned.
    unsafe {
        let base = (sqe as *mut squeue::Entry).cast::<u8>();
        base.add(OPTLEN_OFFSET).cast::<u32>().write(optlen);
    }
}

/// One completion, decoded once: whose it is, what the operation returned, whether a
/// multishot operation stays armed, and the ring buffer a receive filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Completion {
    /// The tag its submission carried.
    pub user_data: u64,
    /// A count (bytes, or an accepted descriptor), or the errno it failed with.
    pub result: Result<u32, i32>,
    /// The multishot operation stays armed after this completion.
    pub more: bool,
    /// The ring buffer a receive filled, if it used one.
    pub buffer: Option<u16>,
    /// A receive left bytes in the socket (`IORING_CQE_F_SOCK_NONEMPTY`).
    pub nonempty: bool,
}

/// Takes ownership of the descriptor an accept completion returned.
pub(crate) fn accepted_fd(fd: u32) -> OwnedFd {
    let fd = i32::try_from(fd).expect("a descriptor fits an i32");
    // SAFETY: a successful accept's result is a new descriptor the kernel opened for this
    // process and that nothing else refers to, so owning (and later closing) it is sound.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The running kernel's (major, minor) version.
    fn kernel() -> (u32, u32) {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        let mut parts = release
            .trim()
            .split(['.', '-'])
            .map(|p| p.parse().unwrap_or(0));
        (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
    }

    /// The multishot receive limit came with 6.17: the probe must find it there (a probe
    /// that misreads the kernel leaves every connection on the looser cancel-at-the-cap
    /// path), and must leave the ring's buffers usable either way.
    #[test]
    fn the_receive_limit_probe_finds_the_kernels_support() {
        let mut ring = Ring::new(8, 4, 64).expect("an io_uring");
        let found = ring.probe_recv_limit().unwrap();
        if kernel() >= (6, 17) {
            assert!(found, "kernel {:?} has the receive limit", kernel());
        }
        // The probe's buffer went back: all four can be filled again.
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        use std::io::Write;
        use std::os::fd::AsRawFd;
        let mut got = Vec::new();
        ring.recv_multi(Sock::Fd(a.as_raw_fd()), 0, 0, false, false, 7)
            .unwrap();
        for _ in 0..4 {
            (&b).write_all(&[1u8; 64]).unwrap();
            ring.submit_and_wait(Some(Duration::from_millis(200)))
                .unwrap();
            ring.drain_completions(&mut got);
        }
        let filled = got
            .iter()
            .filter(|c| c.user_data == 7 && matches!(c.result, Ok(n) if n > 0))
            .count();
        assert!(filled >= 1, "{got:?}");
        assert!(
            got.iter().all(|c| c.result != Err(libc::ENOBUFS)),
            "a buffer was lost: {got:?}"
        );
    }

    /// A bundle's completion names its first buffer; the others are the ones after it in
    /// ring order, which after buffers came back out of order is not id order. Received
    /// bytes land in them in that order, and the receive's limit holds exactly.
    #[test]
    fn a_bundle_is_split_into_its_buffers_in_ring_order() {
        let mut ring = Ring::new(8, 8, 64).expect("an io_uring");
        if !ring.has_bundles() {
            eprintln!("kernel without receive bundles: nothing to split");
            return;
        }
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let b = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (a, _) = l.accept().unwrap();
        use std::io::Write;
        use std::os::fd::AsRawFd;
        // Take four buffers out and give them back as 3, 1, 2, 0: the ring now holds
        // 4 5 6 7 3 1 2 0 from its head.
        let mut got = Vec::new();
        ring.recv_multi(Sock::Fd(a.as_raw_fd()), 256, 0, false, true, 1)
            .unwrap();
        (&b).write_all(&[0u8; 256]).unwrap();
        while !got.iter().any(|c: &Completion| c.user_data == 1 && !c.more) {
            ring.submit_and_wait(Some(Duration::from_millis(200)))
                .unwrap();
            ring.drain_completions(&mut got);
        }
        let mut taken = Vec::new();
        for c in got.drain(..) {
            ring.bundle(c.buffer.unwrap(), c.result.unwrap(), &mut taken);
        }
        assert_eq!(
            taken.iter().map(|t| t.0).collect::<Vec<_>>(),
            [0, 1, 2, 3],
            "the first four in order"
        );
        for bid in [3, 1, 2, 0] {
            ring.recycle_ring(bid);
        }
        // 7 buffers' worth and a bit, the receive limited to 400 bytes.
        let sent: Vec<u8> = (0..460u32).map(|i| i as u8).collect();
        (&b).write_all(&sent).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        ring.recv_multi(Sock::Fd(a.as_raw_fd()), 400, 0, false, true, 2)
            .unwrap();
        while !got.iter().any(|c: &Completion| c.user_data == 2 && !c.more) {
            ring.submit_and_wait(Some(Duration::from_millis(200)))
                .unwrap();
            ring.drain_completions(&mut got);
        }
        let mut taken = Vec::new();
        for c in &got {
            ring.bundle(c.buffer.unwrap(), c.result.unwrap(), &mut taken);
        }
        let ids: Vec<u16> = taken.iter().map(|t| t.0).collect();
        assert_eq!(ids, [4, 5, 6, 7, 3, 1, 2], "{got:?}");
        assert_eq!(
            taken.iter().map(|t| t.1).sum::<u32>(),
            400,
            "the limit holds exactly"
        );
        let mut bytes = Vec::new();
        for (bid, n) in taken {
            let p = ring.small.ptr(bid);
            // SAFETY: the kernel filled `n` bytes of buffer `bid` and is done with it (the
            // receive ended); nothing else writes it until it is recycled.
            bytes.extend_from_slice(unsafe { std::slice::from_raw_parts(p, n as usize) });
        }
        assert_eq!(bytes, sent[..400]);
    }
}
