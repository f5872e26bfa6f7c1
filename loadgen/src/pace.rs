//! Open-loop pacing: when each connection's messages are due, and a pacer that wakes each
//! sender within microseconds of that time.
//!
//! Tokio's timer is millisecond-grained by design, so sends paced by it leave in bursts once
//! a tick. The pacer here keeps one deadline heap per loadgen thread, sleeps on a timerfd
//! (nanosecond deadlines, no timer slack) until [`SPIN`] before the earliest deadline, then
//! yields in a loop (letting every other task and the I/O driver run) until it is due. Time
//! spent in that last stretch is counted, so the loadgen's busy share excludes it.

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use clap::ValueEnum;
use tokio::sync::Notify;

use crate::sys::TimerFd;

/// How long before a deadline the pacer stops sleeping and spins: above the wake-up latency
/// of a timerfd on a busy virtual machine, small against any gap worth pacing.
pub const SPIN: Duration = Duration::from_micros(250);

/// How the pacer waits for a send's time: what precision costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PacerMode {
    /// Sleep on a timerfd with no timer slack until [`SPIN`] before a deadline, then yield in a
    /// loop until it: sends leave within microseconds of their time, and the spin burns CPU
    /// (counted apart, as `loadgen_cpu.pacer_spin_s`).
    Precise,
    /// Sleep on a timerfd until the deadline itself, with the kernel's default timer slack
    /// (50 µs): no spinning, for shared machines; sends leave tens of µs late.
    Sleep,
}

impl PacerMode {
    /// How long before a deadline the pacer stops sleeping.
    fn spin(self) -> Duration {
        match self {
            PacerMode::Precise => SPIN,
            PacerMode::Sleep => Duration::ZERO,
        }
    }
}

/// How open-loop sends are spaced in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arrivals {
    /// Exponential gaps (a Poisson process per connection, so the whole run is one too): how
    /// independent clients arrive; queueing shows as it would in service.
    Poisson,
    /// Equal gaps, connections evenly staggered: the gentlest load a rate can be.
    Uniform,
}

/// A small, seedable generator (splitmix64): reproducible schedules without a dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

/// splitmix64's finaliser: a bijection that scatters nearby inputs.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    /// A generator for stream `stream` of run seed `seed`. The start state goes through the
    /// mixer twice: plain `seed ^ stream × γ` would make every stream a shifted copy of one
    /// sequence (splitmix steps by γ), so many slots would draw the same gaps.
    pub fn new(seed: u64, stream: u64) -> Self {
        Rng(mix64(
            mix64(seed) ^ mix64(stream.wrapping_add(0x5851_F42D_4C95_7F2D)),
        ))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.0)
    }

    /// Uniform in (0, 1].
    pub fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    }

    /// Exponentially distributed with the given mean.
    pub fn exp(&mut self, mean: f64) -> f64 {
        -self.unit().ln() * mean
    }
}

/// One connection slot's open-loop send times.
#[derive(Debug, Clone)]
pub struct Schedule {
    next: Instant,
    mean_gap_s: f64,
    arrivals: Arrivals,
    rng: Rng,
}

impl Schedule {
    /// Slot `slot` of `slots`, sending `rate / slots` messages per second from `begin`.
    ///
    /// Phase offsets keep connections out of lockstep: uniform slots are staggered evenly
    /// across one gap; Poisson slots start after an exponential gap of their own.
    pub fn new(
        begin: Instant,
        rate: f64,
        slots: u32,
        slot: u32,
        arrivals: Arrivals,
        seed: u64,
    ) -> Self {
        let mean_gap_s = slots as f64 / rate;
        let mut rng = Rng::new(seed, slot as u64);
        let offset = match arrivals {
            Arrivals::Uniform => mean_gap_s * slot as f64 / slots as f64,
            Arrivals::Poisson => rng.exp(mean_gap_s),
        };
        Schedule {
            next: begin + Duration::from_secs_f64(offset),
            mean_gap_s,
            arrivals,
            rng,
        }
    }

    /// The next message's intended send time, without advancing.
    pub fn peek(&self) -> Instant {
        self.next
    }

    /// The next message's intended send time; advances the schedule.
    pub fn take(&mut self) -> Instant {
        let at = self.next;
        let gap = match self.arrivals {
            Arrivals::Uniform => self.mean_gap_s,
            Arrivals::Poisson => self.rng.exp(self.mean_gap_s),
        };
        self.next = at + Duration::from_secs_f64(gap);
        at
    }
}

/// A deadline waiting in the pacer's heap.
struct Due {
    at: Instant,
    id: u64,
    wake: Rc<Notify>,
}

impl PartialEq for Due {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.id) == (o.at, o.id)
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Due {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.id).cmp(&(o.at, o.id))
    }
}

/// One thread's pacer: senders wait on it, its own task wakes them when due.
pub struct Pacer {
    heap: RefCell<BinaryHeap<Reverse<Due>>>,
    ids: Cell<u64>,
    /// Wakes the pacer task when a deadline earlier than the one it sleeps for arrives.
    replan: Notify,
    /// Seconds spent spinning towards a deadline inside `[count_from, count_until)`.
    spin_s: Cell<f64>,
    count_from: Cell<Option<(Instant, Option<Instant>)>>,
    mode: PacerMode,
}

impl Pacer {
    /// A pacer with nothing due.
    pub fn new(mode: PacerMode) -> Rc<Pacer> {
        Rc::new(Pacer {
            mode,
            heap: RefCell::new(BinaryHeap::new()),
            ids: Cell::new(0),
            replan: Notify::new(),
            spin_s: Cell::new(0.0),
            count_from: Cell::new(None),
        })
    }

    /// Counts spinning only inside this window (the measured one).
    pub fn count_spin_within(&self, from: Instant, until: Option<Instant>) {
        self.count_from.set(Some((from, until)));
    }

    /// Seconds spent spinning inside the counted window.
    pub fn spin_s(&self) -> f64 {
        self.spin_s.get()
    }

    /// Waits until `at`. `wake` is the caller's own notifier, reused across waits.
    pub async fn until(&self, at: Instant, wake: &Rc<Notify>) {
        if Instant::now() >= at {
            return;
        }
        let id = self.ids.get();
        self.ids.set(id + 1);
        let earliest = {
            let mut heap = self.heap.borrow_mut();
            let earliest = heap.peek().map_or(true, |Reverse(d)| at < d.at);
            heap.push(Reverse(Due {
                at,
                id,
                wake: wake.clone(),
            }));
            earliest
        };
        if earliest {
            self.replan.notify_one();
        }
        wake.notified().await;
    }

    /// The pacer task: runs until aborted.
    pub async fn run(self: Rc<Self>) -> std::io::Result<()> {
        // The thread's timer slack is set once for it, by `run::run_thread`, from the mode.
        let spin = self.mode.spin();
        let timer = TimerFd::registered()?;
        loop {
            let next = self.heap.borrow().peek().map(|Reverse(d)| d.at);
            let Some(at) = next else {
                self.replan.notified().await;
                continue;
            };
            let now = Instant::now();
            if at <= now {
                {
                    let mut heap = self.heap.borrow_mut();
                    while heap.peek().is_some_and(|Reverse(d)| d.at <= now) {
                        let Reverse(d) = heap.pop().expect("peeked");
                        d.wake.notify_one();
                    }
                }
                // Let the woken senders run before looking again.
                tokio::task::yield_now().await;
            } else if at - now > spin {
                timer.get_ref().arm_at(at - spin)?;
                tokio::select! {
                    r = timer.readable() => {
                        let mut guard = r?;
                        if matches!(guard.get_inner().clear(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock) {
                            guard.clear_ready();
                        }
                    }
                    _ = self.replan.notified() => {}
                }
            } else {
                tokio::task::yield_now().await;
                let after = Instant::now();
                if let Some((from, until)) = self.count_from.get() {
                    if now >= from && until.map_or(true, |u| now < u) {
                        self.spin_s
                            .set(self.spin_s.get() + (after - now).as_secs_f64());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poisson_gaps_have_the_asked_mean() {
        let t0 = Instant::now();
        // 1,000 msg/s over 10 slots: each slot's mean gap is 10 ms.
        let mut s = Schedule::new(t0, 1000.0, 10, 3, Arrivals::Poisson, 42);
        let n = 20_000;
        let first = s.take();
        let mut last = first;
        let mut gaps = Vec::with_capacity(n);
        for _ in 0..n {
            let at = s.take();
            gaps.push((at - last).as_secs_f64());
            last = at;
        }
        let mean = gaps.iter().sum::<f64>() / n as f64;
        assert!((mean - 0.010).abs() < 0.0005, "mean gap {mean}");
        // Exponential: the standard deviation equals the mean, and a third of the gaps
        // exceed it (e^-1).
        let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / n as f64;
        assert!((var.sqrt() - mean).abs() < 0.001, "sd {}", var.sqrt());
        let above = gaps.iter().filter(|&&g| g > mean).count() as f64 / n as f64;
        assert!(
            (above - (-1f64).exp()).abs() < 0.02,
            "share above mean {above}"
        );
    }

    #[test]
    fn many_slots_together_keep_the_asked_rate() {
        // 200 slots × 100 gaps each: the pooled mean must match, which needs the slots'
        // streams to be independent, not shifted copies of one sequence.
        let t0 = Instant::now();
        let mut total = 0.0;
        for slot in 0..200 {
            let mut s = Schedule::new(t0, 10_000.0, 200, slot, Arrivals::Poisson, 1);
            let first = s.take();
            let mut last = first;
            for _ in 0..100 {
                last = s.take();
            }
            total += (last - first).as_secs_f64();
        }
        // Each gap's mean is 20 ms: 20,000 gaps, so the pooled mean's sd is 0.7 %.
        let mean = total / 20_000.0;
        assert!(
            (mean - 0.020).abs() < 0.020 * 0.03,
            "pooled mean gap {mean}"
        );
    }

    #[test]
    fn uniform_slots_are_staggered_across_one_gap() {
        let t0 = Instant::now();
        let starts: Vec<Duration> = (0..4)
            .map(|slot| Schedule::new(t0, 400.0, 4, slot, Arrivals::Uniform, 1).take() - t0)
            .collect();
        // 4 slots at 400 msg/s: each sends every 10 ms, offset 2.5 ms apart.
        for (i, d) in starts.iter().enumerate() {
            let want = 0.0025 * i as f64;
            assert!((d.as_secs_f64() - want).abs() < 1e-9, "slot {i}: {d:?}");
        }
        let mut s = Schedule::new(t0, 400.0, 4, 1, Arrivals::Uniform, 1);
        let a = s.take();
        let b = s.take();
        assert!(((b - a).as_secs_f64() - 0.010).abs() < 1e-9);
    }

    #[test]
    fn poisson_phase_offsets_differ_between_slots() {
        let t0 = Instant::now();
        let firsts: Vec<Instant> = (0..50)
            .map(|slot| Schedule::new(t0, 5000.0, 50, slot, Arrivals::Poisson, 7).take())
            .collect();
        let mut sorted = firsts.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 50, "two slots fire in lockstep");
    }

    /// Both modes wake senders in deadline order and never early.
    #[test]
    fn pacer_wakes_senders_in_deadline_order_and_on_time() {
        for mode in [PacerMode::Precise, PacerMode::Sleep] {
            pacer_wakes_in_order(mode);
        }
    }

    fn pacer_wakes_in_order(mode: PacerMode) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async {
            let pacer = Pacer::new(mode);
            let runner = tokio::task::spawn_local(pacer.clone().run());
            let t0 = Instant::now() + Duration::from_millis(5);
            let order = Rc::new(RefCell::new(Vec::new()));
            let mut tasks = Vec::new();
            for (i, ms) in [(0u32, 9u64), (1, 3), (2, 6)] {
                let (p, o) = (pacer.clone(), order.clone());
                tasks.push(tokio::task::spawn_local(async move {
                    let wake = Rc::new(Notify::new());
                    let at = t0 + Duration::from_millis(ms);
                    p.until(at, &wake).await;
                    assert!(Instant::now() >= at, "woken early");
                    o.borrow_mut().push(i);
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
            runner.abort();
            assert_eq!(*order.borrow(), vec![1, 2, 0]);
        });
    }
}
