//! When the measured window starts: after the system has settled.
//!
//! Every echo from the start of the load is also recorded into a [`Timeline`] of short
//! slices ([`SLICE`]) per thread. Threads hand finished slices to the run's [`Board`], which
//! joins them into intervals of at least [`MIN_MESSAGES`] echoes and asks [`steady`] whether
//! the last [`STEADY`] intervals agree: p50 within [`P50_SPREAD`] and p99 within
//! [`P99_SPREAD`] of each other. With `--warmup auto` (the default) the window opens at the
//! first such point, or at `--warmup-max` with the report saying the window may hold a
//! transient. The intervals (latency, service time and the loadgen's own lateness) go into
//! the JSON, so whose delay a transient was can be read off afterwards.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// The timeline's resolution.
pub const SLICE: Duration = Duration::from_millis(100);
/// Slices a timeline holds at most (a minute); later echoes are not in the timeline.
pub const MAX_SLICES: usize = 600;
/// Echoes an interval needs before its percentiles are judged (slices join until then).
pub const MIN_MESSAGES: u64 = 200;
/// Consecutive intervals that must agree.
pub const STEADY: usize = 3;
/// Highest p50 over lowest, across the steady intervals.
pub const P50_SPREAD: f64 = 1.5;
/// Highest p99 over lowest, across the steady intervals.
pub const P99_SPREAD: f64 = 2.0;

/// A coarse histogram (2 significant digits) of 1 µs to a minute: enough for percentiles
/// of one slice, and small enough to keep hundreds of them.
fn coarse() -> Histogram<u32> {
    Histogram::new_with_bounds(1, 60_000_000, 2).expect("static bounds")
}

/// One slice's echoes: latency, service time, and the loadgen's own lateness (open loop).
#[derive(Debug, Clone)]
pub struct Slice {
    /// From the intended send (open loop) or the send (closed loop) to the echo, µs.
    pub latency: Histogram<u32>,
    /// From the send to the echo, µs.
    pub service: Histogram<u32>,
    /// From when the message could go to its send, µs (open loop).
    pub late: Histogram<u32>,
}

impl Default for Slice {
    fn default() -> Self {
        Slice {
            latency: coarse(),
            service: coarse(),
            late: coarse(),
        }
    }
}

impl Slice {
    fn add(&mut self, o: &Slice) {
        self.latency.add(&o.latency).expect("same bounds");
        self.service.add(&o.service).expect("same bounds");
        self.late.add(&o.late).expect("same bounds");
    }
}

/// One thread's slices since the load began.
#[derive(Debug, Default, Clone)]
pub struct Timeline {
    slices: Vec<Slice>,
    /// Slices already handed to the board.
    reported: usize,
}

impl Timeline {
    /// Records one echo that completed `since_begin` after the load began.
    pub fn record(
        &mut self,
        since_begin: Duration,
        latency_us: u64,
        service_us: u64,
        late_us: Option<u64>,
    ) {
        let i = (since_begin.as_nanos() / SLICE.as_nanos()) as usize;
        if i >= MAX_SLICES {
            return;
        }
        if self.slices.len() <= i {
            self.slices.resize_with(i + 1, Slice::default);
        }
        let s = &mut self.slices[i];
        s.latency.saturating_record(latency_us);
        s.service.saturating_record(service_us);
        if let Some(l) = late_us {
            s.late.saturating_record(l);
        }
    }

    /// Hands the slices that ended before `since_begin` to the board (each exactly once).
    pub fn report(&mut self, since_begin: Duration, board: &Board) {
        let done = ((since_begin.as_nanos() / SLICE.as_nanos()) as usize).min(MAX_SLICES);
        if self.slices.len() < done {
            self.slices.resize_with(done, Slice::default);
        }
        self.hand_over(done, board);
    }

    /// Hands every slice not yet reported to the board (the thread's load is over).
    pub fn finish(&mut self, board: &Board) {
        self.hand_over(self.slices.len(), board);
    }

    /// Hands slices `reported..done` to the board.
    fn hand_over(&mut self, done: usize, board: &Board) {
        if done > self.reported {
            board.add(self.reported..done, &self.slices[self.reported..done]);
            self.reported = done;
        }
    }
}

/// One interval of the timeline, as reported.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// Start, seconds after the load began.
    pub from_s: f64,
    /// End, seconds after the load began.
    pub to_s: f64,
    /// Echoes that completed in it.
    pub messages: u64,
    /// Latency p50.
    pub p50_us: u64,
    /// Latency p99.
    pub p99_us: u64,
    /// Send to echo.
    pub service_p99_us: u64,
    /// The loadgen's own lateness (open loop; 0 in closed loop).
    pub late_p99_us: u64,
}

/// Whether intervals agree closely enough to call the system settled.
pub fn steady(intervals: &[Interval]) -> bool {
    let spread = |f: fn(&Interval) -> u64| {
        let hi = intervals.iter().map(f).max().unwrap_or(0).max(1) as f64;
        let lo = intervals.iter().map(f).min().unwrap_or(0).max(1) as f64;
        hi / lo
    };
    intervals.len() >= STEADY
        && intervals.iter().all(|i| i.messages >= MIN_MESSAGES)
        && spread(|i| i.p50_us) <= P50_SPREAD
        && spread(|i| i.p99_us) <= P99_SPREAD
}

/// Joins consecutive slices, the first numbered `first`, into intervals of at least
/// [`MIN_MESSAGES`] echoes, pushing each to `out` as it fills. Returns the number of the
/// first slice of the unfinished interval left over, and what it holds so far.
fn join<'a>(
    slices: impl IntoIterator<Item = &'a Slice>,
    first: usize,
    out: &mut Vec<Interval>,
) -> (usize, Slice) {
    let mut acc = Slice::default();
    let (mut from, mut i) = (first, first);
    for s in slices {
        acc.add(s);
        i += 1;
        if acc.latency.len() >= MIN_MESSAGES {
            out.push(interval(from, i, &acc));
            acc = Slice::default();
            from = i;
        }
    }
    (from, acc)
}

fn interval(from: usize, to: usize, s: &Slice) -> Interval {
    let secs = |i: usize| (SLICE * i as u32).as_secs_f64();
    Interval {
        from_s: secs(from),
        to_s: secs(to),
        messages: s.latency.len(),
        p50_us: s.latency.value_at_quantile(0.5),
        p99_us: s.latency.value_at_quantile(0.99),
        service_p99_us: s.service.value_at_quantile(0.99),
        late_p99_us: s.late.value_at_quantile(0.99),
    }
}

/// Where the threads' slices meet: merged, judged, and the window's start decided once.
#[derive(Debug)]
pub struct Board {
    threads: usize,
    state: Mutex<BoardState>,
    /// When the window opens, in ns after the load began; `u64::MAX` while undecided.
    window_from_ns: AtomicU64,
}

#[derive(Debug, Default)]
struct BoardState {
    /// Merged slices, and how many threads have reported each.
    slices: Vec<(usize, Slice)>,
    /// Slices every thread has reported.
    complete: usize,
    /// The judged intervals so far, and the slice the next one starts at.
    intervals: Vec<Interval>,
    next_from: usize,
    /// The window opened because the intervals agreed (not at the cap).
    settled: Option<bool>,
}

/// What the board decided, for the report.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    /// When the window opened, after the load began.
    pub window_from: Duration,
    /// True if the latency had settled; false if the cap opened the window.
    pub settled: bool,
}

impl Board {
    /// A board for `threads` reporting threads.
    pub fn new(threads: usize) -> Board {
        Board {
            threads,
            state: Mutex::default(),
            window_from_ns: AtomicU64::new(u64::MAX),
        }
    }

    /// A board whose window opens at a fixed time (a given `--warmup`).
    pub fn fixed(threads: usize, warmup: Duration) -> Board {
        let b = Board::new(threads);
        b.open(warmup, true);
        b
    }

    /// When the window opens, if decided.
    pub fn window_from(&self) -> Option<Duration> {
        match self.window_from_ns.load(Ordering::Acquire) {
            u64::MAX => None,
            ns => Some(Duration::from_nanos(ns)),
        }
    }

    fn open(&self, at: Duration, settled: bool) {
        let ns = at.as_nanos().min(u128::from(u64::MAX - 1)) as u64;
        if self
            .window_from_ns
            .compare_exchange(u64::MAX, ns, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.state.lock().expect("board lock").settled = Some(settled);
        }
    }

    fn add(&self, range: std::ops::Range<usize>, slices: &[Slice]) {
        let mut st = self.state.lock().expect("board lock");
        if st.slices.len() < range.end {
            st.slices.resize_with(range.end, Default::default);
        }
        for (i, s) in range.zip(slices) {
            st.slices[i].0 += 1;
            st.slices[i].1.add(s);
        }
        while st.complete < st.slices.len() && st.slices[st.complete].0 == self.threads {
            st.complete += 1;
        }
    }

    /// Judges the slices every thread has reported; opens the window once the last
    /// [`STEADY`] intervals agree (at the end of the slices judged, or `now` if later), or
    /// at `cap` whatever they say. Called by the run's watcher every few milliseconds.
    pub fn judge(&self, now: Duration, cap: Duration) {
        if self.window_from().is_some() {
            return;
        }
        let mut guard = self.state.lock().expect("board lock");
        let st = &mut *guard;
        let judged = st.intervals.len();
        let complete = st.slices[st.next_from..st.complete].iter().map(|(_, s)| s);
        st.next_from = join(complete, st.next_from, &mut st.intervals).0;
        // The first interval holds the start itself: never part of a steady run. Earlier
        // ends were judged before; the first new one that ends a steady run opens the window.
        let settled_at = ((judged + 1).max(STEADY + 1)..=st.intervals.len())
            .find(|&n| steady(&st.intervals[n - STEADY..n]))
            .map(|n| SLICE * (st.intervals[n - 1].to_s / SLICE.as_secs_f64()).round() as u32);
        drop(guard);
        match settled_at {
            Some(at) => self.open(at.max(now).min(cap.max(now)), true),
            None if now >= cap => self.open(cap, false),
            None => {}
        }
    }

    /// What was decided, once it has been.
    pub fn decision(&self) -> Option<Decision> {
        let window_from = self.window_from()?;
        let settled = self.state.lock().expect("board lock").settled?;
        Some(Decision {
            window_from,
            settled,
        })
    }

    /// The whole run's intervals, from the merged slices (for the report); the last one
    /// may hold fewer than [`MIN_MESSAGES`] echoes.
    pub fn timeline(&self) -> Vec<Interval> {
        let st = self.state.lock().expect("board lock");
        let mut out = Vec::new();
        let (from, rest) = join(st.slices.iter().map(|(_, s)| s), 0, &mut out);
        if from < st.slices.len() {
            out.push(interval(from, st.slices.len(), &rest));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice_of(latencies: &[u64]) -> Slice {
        let mut s = Slice::default();
        for &l in latencies {
            s.latency.record(l).unwrap();
            s.service.record(l).unwrap();
        }
        s
    }

    fn feed(board: &Board, slices: &[Slice]) {
        board.add(0..slices.len(), slices);
    }

    #[test]
    fn a_falling_tail_is_not_steady_and_a_flat_one_is() {
        let iv = |p50, p99| Interval {
            from_s: 0.0,
            to_s: 0.1,
            messages: MIN_MESSAGES,
            p50_us: p50,
            p99_us: p99,
            service_p99_us: p99,
            late_p99_us: 0,
        };
        assert!(!steady(&[iv(80, 90_000), iv(60, 9_000), iv(60, 900)]));
        assert!(steady(&[iv(60, 500), iv(62, 700), iv(58, 450)]));
        assert!(!steady(&[iv(60, 500), iv(62, 700)]), "too few intervals");
        let mut thin = iv(60, 500);
        thin.messages = 10;
        assert!(!steady(&[thin, iv(60, 500), iv(60, 500)]), "too few echoes");
    }

    #[test]
    fn the_window_opens_after_the_transient_or_at_the_cap() {
        // 1 thread; slices of 300 echoes: a transient for 5 slices, then flat.
        let board = Board::new(1);
        let mut slices: Vec<Slice> = (0..5).map(|i| slice_of(&[50_000 / (i + 1); 300])).collect();
        slices.extend((0..6).map(|_| slice_of(&[60; 300])));
        feed(&board, &slices);
        board.judge(SLICE * 8, Duration::from_secs(10));
        let d = board.decision().expect("decided");
        assert!(d.settled);
        // The first steady run of three flat intervals ends with slice 8 (the 9th).
        assert_eq!(d.window_from, SLICE * 8);
        // Judged later, the window opens then: echoes before it have gone unmeasured.
        let late = Board::new(1);
        feed(&late, &slices);
        late.judge(SLICE * 11, Duration::from_secs(10));
        assert_eq!(late.window_from(), Some(SLICE * 11));

        let never = Board::new(1);
        let noisy: Vec<Slice> = (0..30)
            .map(|i| slice_of(&[if i % 2 == 0 { 50 } else { 5_000 }; 300]))
            .collect();
        feed(&never, &noisy);
        never.judge(Duration::from_secs(2), Duration::from_secs(3));
        assert_eq!(never.decision(), None, "before the cap");
        never.judge(Duration::from_secs(3), Duration::from_secs(3));
        let d = never.decision().expect("decided at the cap");
        assert!(!d.settled);
        assert_eq!(d.window_from, Duration::from_secs(3));
    }

    #[test]
    fn slices_wait_for_every_thread_and_thin_ones_join() {
        let board = Board::new(2);
        let flat: Vec<Slice> = (0..12).map(|_| slice_of(&[60; 50])).collect();
        feed(&board, &flat);
        board.judge(SLICE * 8, Duration::from_secs(10));
        assert_eq!(board.decision(), None, "one thread of two has reported");
        feed(&board, &flat);
        board.judge(SLICE * 8, Duration::from_secs(10));
        // 100 echoes per merged slice: intervals of two slices; the fourth ends at 8.
        assert_eq!(board.decision().map(|d| d.window_from), Some(SLICE * 8));
        let t = board.timeline();
        assert_eq!(t.len(), 6);
        assert!(t.iter().all(|i| i.messages == 200 && i.p50_us == 60));
    }

    #[test]
    fn a_timeline_reports_each_slice_once() {
        let board = Board::new(1);
        let mut tl = Timeline::default();
        tl.record(Duration::from_millis(50), 100, 90, None);
        tl.record(Duration::from_millis(150), 200, 190, Some(5));
        tl.report(Duration::from_millis(120), &board);
        tl.report(Duration::from_millis(130), &board);
        tl.report(Duration::from_millis(250), &board);
        let t = board.timeline();
        assert_eq!(t.iter().map(|i| i.messages).sum::<u64>(), 2);
    }
}
