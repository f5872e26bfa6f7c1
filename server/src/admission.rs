//! Who gets in when the server is full: the one rule every backend calls at accept.
//!
//! A new connection is let in while the process holds fewer than its limit (the smaller of
//! `--max-conns` and what the descriptor table leaves after a reserve) and its source
//! address holds fewer than `--max-conns-per-source`. At the limit, the connection that has
//! been idle longest on the accepting thread gives way, if it has been idle at least
//! [`EVICT_AFTER`] and nothing of its peer's waits to be sent back (not in the server's
//! buffers, not in its socket's send queue); otherwise the new connection is refused. Past
//! the per-source bound it is refused at once: a busy source never evicts another's
//! connection. So a flood of silent connections cannot lock healthy clients out: each
//! newcomer takes the place of the oldest silence, and the flood's own newcomers are the ones
//! turned away while its older members are younger than a second.
//!
//! - [`Gate`] is process-wide (SO_REUSEPORT spreads one source's connections over every
//!   thread): the counts and the limits, the log lines when eviction starts and stops.
//! - [`IdleOrder`] is one thread's connections by last activity, kept lazily: a connection
//!   is filed under the time it last moved when it is looked at, never on the message path,
//!   so the order costs nothing per message and an admission looks at a bounded number of
//!   entries, never at every connection. The same order finds idle-timeout expiries.
//! - [`Worker::admit`](crate::worker::Worker::admit) puts the two together for a driver.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a connection must have been idle (no bytes either way) before it may give way
/// to a new one.
pub const EVICT_AFTER: Duration = Duration::from_secs(1);

/// Descriptors kept free below RLIMIT_NOFILE: for the metrics endpoint's scrapes, the
/// runtimes' own descriptors and whatever else the process opens after start. Redis keeps
/// 32 in reserve under `maxclients` for the same reason; an echo server opens fewer.
pub const FD_RESERVE: u64 = 16;

/// Descriptors each worker thread opens for itself (its epoll instance or ring, a timer, a
/// waker), counted in use before they exist.
pub const FDS_PER_THREAD: u64 = 4;

/// Entries of the idle order one admission may look at before it refuses: bounded work per
/// accept, whatever the number of connections.
const LOOK_BUDGET: usize = 64;

/// Why a new connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The process is at its connection limit and no connection could give way.
    Limit,
    /// Its source address holds `--max-conns-per-source` connections already.
    PerSource,
}

impl Refusal {
    /// The `reason` label of `ringecho_connections_refused_total`.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Limit => "limit",
            Refusal::PerSource => "per_source",
        }
    }
}

/// What admission decided for a new connection ([`Worker::admit`](crate::worker::Worker::admit)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Let in.
    In,
    /// Let in in place of the connection in this slot, which the driver closes now (a
    /// server close; already counted as evicted).
    InPlaceOf(usize),
    /// Refused and counted: the driver closes the new socket.
    Refused,
}

/// What the gate says of a newcomer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Let in; its place is taken.
    In,
    /// The process is full: let in only if a connection gives way ([`Gate::enter_in_place`]).
    Full,
    /// Refused: its source is at its bound.
    SourceFull,
}

/// The process-wide counts and limits.
#[derive(Debug)]
pub struct Gate {
    /// `--max-conns`.
    max_conns: Option<u64>,
    /// Descriptors in use besides connections (at start, with the threads' own to come),
    /// when connections take descriptors.
    fd_base: Option<u64>,
    /// Connections the process holds at most (`u64::MAX`: no limit): the smaller of
    /// `--max-conns` and what the open-file limit leaves, read again when it is reached,
    /// so a limit raised while the server runs is honoured.
    limit: AtomicU64,
    /// Connections open across all threads.
    open: AtomicU64,
    /// `--max-conns-per-source` and the connections each source holds.
    per_source: Option<(u32, Mutex<HashMap<IpAddr, u32>>)>,
    /// Whether evictions are happening (a connection gave way in the last second or so).
    evicting: AtomicBool,
    log: Mutex<EvictLog>,
}

#[derive(Debug, Default)]
struct EvictLog {
    since: Option<Instant>,
    last: Option<Instant>,
    count: u64,
}

impl Gate {
    /// A gate for `max_conns` connections at most, fewer if the descriptor table (with
    /// `fd_base` entries used by other things) is smaller, `per_source` per source address.
    pub fn new(max_conns: Option<u64>, fd_base: Option<u64>, per_source: Option<u32>) -> Self {
        let fds = fd_base.map(|base| (crate::listener::nofile_soft().unwrap_or(u64::MAX), base));
        Gate {
            max_conns,
            fd_base,
            limit: AtomicU64::new(Self::limit_for(max_conns, fds).unwrap_or(u64::MAX)),
            open: AtomicU64::new(0),
            per_source: per_source.map(|n| (n, Mutex::default())),
            evicting: AtomicBool::new(false),
            log: Mutex::default(),
        }
    }

    /// The connection limit: the smaller of `max_conns` and what a descriptor table of
    /// `nofile` entries, `open_fds` of them in use, leaves after [`FD_RESERVE`]. `None` for
    /// the table when connections do not take descriptors (direct descriptors).
    pub fn limit_for(max_conns: Option<u64>, fds: Option<(u64, u64)>) -> Option<u64> {
        let table = fds.map(|(nofile, open)| nofile.saturating_sub(open + FD_RESERVE).max(1));
        match (max_conns, table) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether connections are counted by source (and so need their peer's address).
    pub fn counts_sources(&self) -> bool {
        self.per_source.is_some()
    }

    /// Asks to let a connection from `source` in.
    pub fn enter(&self, source: Option<IpAddr>) -> Verdict {
        if let (Some((bound, map)), Some(ip)) = (&self.per_source, source) {
            let map = map.lock().unwrap_or_else(|e| e.into_inner());
            if map.get(&canonical(ip)).is_some_and(|n| n >= bound) {
                return Verdict::SourceFull;
            }
        }
        let before = self.open.fetch_add(1, Ordering::Relaxed);
        if before >= self.limit.load(Ordering::Relaxed) && before >= self.refresh_limit() {
            self.open.fetch_sub(1, Ordering::Relaxed);
            return Verdict::Full;
        }
        self.count_source(source);
        self.quiet_check();
        Verdict::In
    }

    /// Lets a connection in in the place of one that gave way (already left).
    pub fn enter_in_place(&self, source: Option<IpAddr>) {
        self.open.fetch_add(1, Ordering::Relaxed);
        self.count_source(source);
        let now = Instant::now();
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        if log.since.is_none() {
            tracing::warn!(
                limit = self.limit.load(Ordering::Relaxed),
                "at the connection limit: the longest-idle connections now give way to new ones"
            );
            log.since = Some(now);
            log.count = 0;
        }
        log.count += 1;
        log.last = Some(now);
        self.evicting.store(true, Ordering::Relaxed);
    }

    /// A connection let in has ended.
    pub fn leave(&self, source: Option<IpAddr>) {
        self.open.fetch_sub(1, Ordering::Relaxed);
        if let (Some((_, map)), Some(ip)) = (&self.per_source, source) {
            let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
            let ip = canonical(ip);
            if let Some(n) = map.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&ip);
                }
            }
        }
    }

    /// Connections open across all threads.
    #[cfg(test)]
    fn open(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }

    /// Reads the open-file limit again (it may have been raised) and returns the limit.
    fn refresh_limit(&self) -> u64 {
        let Some(base) = self.fd_base else {
            return self.limit.load(Ordering::Relaxed);
        };
        let Ok(nofile) = crate::listener::nofile_soft() else {
            return self.limit.load(Ordering::Relaxed);
        };
        let limit = Self::limit_for(self.max_conns, Some((nofile, base))).unwrap_or(u64::MAX);
        self.limit.store(limit, Ordering::Relaxed);
        limit
    }

    fn count_source(&self, source: Option<IpAddr>) {
        if let (Some((_, map)), Some(ip)) = (&self.per_source, source) {
            let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
            *map.entry(canonical(ip)).or_default() += 1;
        }
    }

    /// Logs once that eviction has stopped, when a connection is let in without one and the
    /// last was over a second ago. Costs one relaxed load while nothing is being evicted.
    fn quiet_check(&self) {
        if !self.evicting.load(Ordering::Relaxed) {
            return;
        }
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        if let (Some(since), Some(last)) = (log.since, log.last) {
            if last.elapsed() >= EVICT_AFTER {
                tracing::warn!(
                    evicted = log.count,
                    lasted_s = last.duration_since(since).as_secs_f64(),
                    "below the connection limit again: eviction stopped"
                );
                log.since = None;
                self.evicting.store(false, Ordering::Relaxed);
            }
        }
    }
}

/// An IPv4 peer seen through an IPv6 socket is the same source as over IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// What a driver says of one of its connections, for [`IdleOrder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Closed, closing, or the slot now holds a later connection: drop its entry.
    Gone,
    /// Open; it last moved at `last` (the loop's millisecond clock), and `holding` says
    /// whether the server holds bytes it has yet to send back.
    Open { last: u32, holding: bool },
}

/// What a driver tells the idle order of one connection: gone (or another generation, or
/// closing), or open with its last activity and whether bytes wait to go back, in the
/// server's buffers (`unsent`) or in its socket's send queue (looked up only for a
/// connection idle long enough to give way, so at most a bounded few per admission).
pub(crate) fn seen(
    gen_matches: bool,
    closing: bool,
    last: u32,
    unsent: bool,
    now: u32,
    fd: Option<std::os::fd::RawFd>,
) -> Seen {
    if !gen_matches || closing {
        return Seen::Gone;
    }
    let holding = unsent
        || (now.wrapping_sub(last) >= crate::backend::clock::Clock::limit(EVICT_AFTER)
            && fd.is_some_and(|fd| crate::listener::unsent_in_kernel(fd) > 0));
    Seen::Open { last, holding }
}

/// One entry: a connection (slot and generation) and the time it was filed under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    slot: u32,
    gen: u32,
    stamp: u32,
}

/// Bucket width of the order, in milliseconds (2^7 = 128 ms): entries in one bucket are
/// taken in any order, so "longest idle" is exact to this.
const BUCKET_SHIFT: u32 = 7;

/// One thread's connections in order of last activity, filed lazily.
///
/// A connection is filed when it opens. When an entry reaches the front, the driver says
/// whether the connection has moved since ([`Seen`]): if it has, it is filed again under the
/// time it last moved; if not, it is the longest idle. Activity itself writes only the
/// connection's own stamp, as the drivers already do, so messages pay nothing.
#[derive(Debug, Default)]
pub struct IdleOrder {
    /// Buckets by (extended) time; only non-empty ones are kept.
    buckets: BTreeMap<u64, Vec<Entry>>,
    /// Entries in all buckets.
    len: usize,
    /// The last clock reading seen, and its 64-bit extension (the clock wraps at 49 days).
    last_now: u32,
    now64: u64,
}

impl IdleOrder {
    /// Files a connection that opened (or moved) at `now`.
    pub fn insert(&mut self, slot: usize, gen: u32, now: u32) {
        self.advance(now);
        self.file(slot as u32, gen, now);
    }

    /// Takes the connection idle longest, if it has been idle at least `min_idle` ms and
    /// (unless `idle_even_if_holding`) holds nothing unsent; its entry is removed. Looks at
    /// [`LOOK_BUDGET`] entries at most when `bounded`.
    pub fn take_idle(
        &mut self,
        now: u32,
        min_idle: u32,
        idle_even_if_holding: bool,
        bounded: bool,
        mut seen: impl FnMut(usize, u32) -> Seen,
    ) -> Option<(usize, u32)> {
        self.advance(now);
        let mut looked = 0;
        loop {
            if bounded && looked >= LOOK_BUDGET {
                return None;
            }
            let mut first = self.buckets.first_entry()?;
            let Some(e) = first.get_mut().pop() else {
                first.remove();
                continue;
            };
            if first.get().is_empty() {
                first.remove();
            }
            self.len -= 1;
            looked += 1;
            let (last, holding) = match seen(e.slot as usize, e.gen) {
                Seen::Gone => continue,
                Seen::Open { last, holding } => (last, holding),
            };
            if holding && !idle_even_if_holding {
                // Bytes wait to go back: it is as good as active now.
                self.file(e.slot, e.gen, now);
                continue;
            }
            if now.wrapping_sub(last) >= min_idle {
                return Some((e.slot as usize, e.gen));
            }
            if last != e.stamp {
                // It moved since it was filed: file it under its last move and look on.
                self.file(e.slot, e.gen, last);
                continue;
            }
            // The front has not been idle long enough, so nothing behind it has.
            self.file(e.slot, e.gen, e.stamp);
            return None;
        }
    }

    /// Entries filed (connections open, plus entries not yet found gone).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is filed.
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Drops the entries of connections gone, once entries outnumber the `open` connections
    /// by half as many again (and 1,024): a pass over the order paid for by the closes
    /// since the last, so a constant per connection, and memory that follows the open count.
    pub fn compact(&mut self, open: usize, mut seen: impl FnMut(usize, u32) -> Seen) {
        if self.len <= open + open / 2 + 1024 {
            return;
        }
        for v in self.buckets.values_mut() {
            v.retain(|e| seen(e.slot as usize, e.gen) != Seen::Gone);
        }
        self.buckets.retain(|_, v| !v.is_empty());
        self.len = self.buckets.values().map(Vec::len).sum();
    }

    fn advance(&mut self, now: u32) {
        self.now64 += u64::from(now.wrapping_sub(self.last_now));
        self.last_now = now;
    }

    fn file(&mut self, slot: u32, gen: u32, stamp: u32) {
        let at = self
            .now64
            .saturating_sub(u64::from(self.last_now.wrapping_sub(stamp)));
        self.buckets
            .entry(at >> BUCKET_SHIFT)
            .or_default()
            .push(Entry { slot, gen, stamp });
        self.len += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A model of a driver's connections: last activity and whether it holds bytes.
    #[derive(Default)]
    struct Conns(HashMap<usize, (u32, bool)>);

    impl Conns {
        fn seen(&self, slot: usize, _gen: u32) -> Seen {
            match self.0.get(&slot) {
                Some(&(last, holding)) => Seen::Open { last, holding },
                None => Seen::Gone,
            }
        }
    }

    #[test]
    fn the_longest_idle_goes_first_and_only_past_the_bound() {
        let mut order = IdleOrder::default();
        let mut conns = Conns::default();
        for slot in 0..3 {
            let t = slot as u32 * 500;
            order.insert(slot, 0, t);
            conns.0.insert(slot, (t, false));
        }
        // At 1.2 s only slot 0 (opened at 0) is a second idle.
        let pick = order.take_idle(1200, 1000, false, true, |s, g| conns.seen(s, g));
        assert_eq!(pick, Some((0, 0)));
        conns.0.remove(&0);
        assert_eq!(
            order.take_idle(1200, 1000, false, true, |s, g| conns.seen(s, g)),
            None
        );
        // Slot 1 moved at 1.3 s: at 2.2 s slot 2 (idle since 1.0 s) goes before it.
        conns.0.insert(1, (1300, false));
        let pick = order.take_idle(2200, 1000, false, true, |s, g| conns.seen(s, g));
        assert_eq!(pick, Some((2, 0)));
        conns.0.remove(&2);
        assert_eq!(
            order.take_idle(2200, 1000, false, true, |s, g| conns.seen(s, g)),
            None
        );
        assert_eq!(
            order.take_idle(2400, 1000, false, true, |s, g| conns.seen(s, g)),
            Some((1, 0))
        );
    }

    #[test]
    fn a_connection_holding_bytes_never_gives_way() {
        let mut order = IdleOrder::default();
        let mut conns = Conns::default();
        order.insert(0, 0, 0);
        conns.0.insert(0, (0, true));
        order.insert(1, 0, 100);
        conns.0.insert(1, (100, false));
        assert_eq!(
            order.take_idle(5000, 1000, false, true, |s, g| conns.seen(s, g)),
            Some((1, 0))
        );
        conns.0.remove(&1);
        assert_eq!(
            order.take_idle(9000, 1000, false, true, |s, g| conns.seen(s, g)),
            None
        );
        // For the idle timeout a stuck connection is as idle as any.
        assert_eq!(
            order.take_idle(9000, 1000, true, false, |s, g| conns.seen(s, g)),
            Some((0, 0))
        );
    }

    #[test]
    fn gone_entries_are_dropped_and_work_is_bounded() {
        let mut order = IdleOrder::default();
        let mut conns = Conns::default();
        for slot in 0..1000 {
            order.insert(slot, 0, 0);
            conns.0.insert(slot, (0, true));
        }
        let mut looked = 0;
        assert_eq!(
            order.take_idle(5000, 1000, false, true, |s, g| {
                looked += 1;
                conns.seen(s, g)
            }),
            None
        );
        assert_eq!(looked, LOOK_BUDGET);
        conns.0.clear();
        assert_eq!(
            order.take_idle(5000, 1000, true, false, |s, g| conns.seen(s, g)),
            None
        );
        assert!(order.is_empty());
    }

    #[test]
    fn entries_of_closed_connections_do_not_pile_up() {
        let mut order = IdleOrder::default();
        let mut conns = Conns::default();
        // A connection per message: each opens and closes, and nothing ever looks at the
        // front. The order stays within a bound of the open count.
        for i in 0..100_000usize {
            conns.0.insert(i, (i as u32, false));
            order.insert(i, 0, i as u32);
            conns.0.remove(&i.wrapping_sub(10));
            order.compact(conns.0.len(), |s, g| conns.seen(s, g));
            assert!(order.len() <= conns.0.len() * 2 + 1025);
        }
    }

    #[test]
    fn the_order_survives_the_clock_wrapping() {
        let mut order = IdleOrder::default();
        let mut conns = Conns::default();
        let start = u32::MAX - 500;
        order.insert(0, 0, start);
        conns.0.insert(0, (start, false));
        let later = start.wrapping_add(700);
        order.insert(1, 0, later);
        conns.0.insert(1, (later, false));
        let now = start.wrapping_add(1600);
        assert_eq!(
            order.take_idle(now, 1000, false, true, |s, g| conns.seen(s, g)),
            Some((0, 0))
        );
    }

    #[test]
    fn the_gate_counts_the_limit_and_each_source() {
        let gate = Gate::new(Some(3), None, Some(2));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(gate.enter(Some(a)), Verdict::In);
        assert_eq!(gate.enter(Some(a)), Verdict::In);
        assert_eq!(gate.enter(Some(a)), Verdict::SourceFull);
        // The same source over IPv6's mapped form.
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(gate.enter(Some(mapped)), Verdict::SourceFull);
        assert_eq!(gate.enter(Some(b)), Verdict::In);
        assert_eq!(gate.enter(Some(b)), Verdict::Full);
        assert_eq!(gate.open(), 3);
        gate.leave(Some(a));
        assert_eq!(gate.enter(Some(a)), Verdict::In);
        gate.leave(Some(b));
        gate.enter_in_place(Some(b));
        assert_eq!(gate.open(), 3);
    }

    #[test]
    fn the_limit_is_the_smaller_of_the_cap_and_the_descriptor_table() {
        assert_eq!(Gate::limit_for(None, None), None);
        assert_eq!(Gate::limit_for(Some(10), None), Some(10));
        assert_eq!(
            Gate::limit_for(None, Some((4096, 10))),
            Some(4096 - 10 - FD_RESERVE)
        );
        assert_eq!(Gate::limit_for(Some(3000), Some((4096, 10))), Some(3000));
        assert_eq!(Gate::limit_for(None, Some((8, 10))), Some(1));
    }
}
