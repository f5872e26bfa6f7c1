//! What one load thread counts: its histograms and [`Counts`], merged into the run's report
//! at the end, and the few live figures it publishes for the progress line.

use std::sync::atomic::{AtomicU64, Ordering};

use hdrhistogram::Histogram;

use crate::counts::Counts;

/// Highest latency the histograms hold, in µs (a minute); larger values are clamped.
const MAX_LATENCY_US: u64 = 60_000_000;

/// A new latency histogram: 1 µs to a minute, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("static bounds are valid")
}

/// One thread's results, merged into the run's report.
#[derive(Debug, Clone)]
pub struct Tally {
    /// Latency of measured messages from their intended send (open loop) or their send
    /// (closed loop) to the echo, µs.
    pub latency: Histogram<u64>,
    /// Service time: from the send to the echo, µs.
    pub service: Histogram<u64>,
    /// Send lag: from the intended send time to the send, µs (open loop).
    pub send_lag: Histogram<u64>,
    /// The loadgen's own lateness: from when a message could go (its time had come and the
    /// connection's pipeline had room) to the send, µs (open loop).
    pub late: Histogram<u64>,
    /// Connect latency, µs.
    pub connect: Histogram<u64>,
    /// Messages, bytes, closes and failures, as the report carries them. `closes.rst`
    /// holds the share's RSTs and FIN closes that unread bytes turned into RSTs;
    /// `closes.server`, connections the server closed while we expected an echo.
    pub counts: Counts,
    /// Messages sent, measured or not (progress and sanity).
    pub sent: u64,
    /// Connections open now.
    pub open: u64,
    /// Seconds the pacer spun towards deadlines inside the measured window.
    pub spin_s: f64,
    /// Every echo since the load began, in short slices, for the warm-up's judgement.
    pub timeline: crate::settle::Timeline,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            latency: new_histogram(),
            service: new_histogram(),
            send_lag: new_histogram(),
            late: new_histogram(),
            connect: new_histogram(),
            counts: Counts::default(),
            sent: 0,
            open: 0,
            spin_s: 0.0,
            timeline: Default::default(),
        }
    }
}

impl Tally {
    /// Adds another thread's results.
    pub fn merge(&mut self, o: &Tally) {
        for (into, from) in [
            (&mut self.latency, &o.latency),
            (&mut self.service, &o.service),
            (&mut self.send_lag, &o.send_lag),
            (&mut self.late, &o.late),
            (&mut self.connect, &o.connect),
        ] {
            into.add(from).expect("same bounds");
        }
        self.counts += &o.counts;
        self.sent += o.sent;
        self.open += o.open;
        self.spin_s += o.spin_s;
    }
}

/// Live figures for the progress line, copied from each thread's tally a few times a second
/// (the per-message path never touches an atomic).
#[derive(Debug, Default)]
pub struct Progress {
    /// Messages sent so far.
    pub sent: AtomicU64,
    /// Connections open now.
    pub open: AtomicU64,
    /// Failed connections so far.
    pub errors: AtomicU64,
}

impl Progress {
    /// Publishes `t`'s live figures.
    pub(super) fn publish(&self, t: &Tally) {
        self.sent.store(t.sent, Ordering::Relaxed);
        self.open.store(t.open, Ordering::Relaxed);
        self.errors.store(t.counts.failed(), Ordering::Relaxed);
    }
}
