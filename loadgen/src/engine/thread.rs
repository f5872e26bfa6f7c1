//! A load thread's life in order: connect its slots, meet the others at the barrier twice,
//! run one task per slot, and tick: hand the warm-up its slices, mark the window's end,
//! catch stuck echoes and publish progress. It returns the thread's tally.

use std::cell::RefCell;
use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::task::{AbortHandle, JoinSet, LocalSet};

use super::connect::connect_phase;
use super::plan::{Clock, Plan};
use super::slot::{BusySince, Slot};
use super::tally::{Progress, Tally};
use crate::pace::{Pacer, PacerMode, Schedule};

/// How often a thread ticks.
const TICK: Duration = Duration::from_millis(50);
/// Every this many ticks (250 ms) it looks for stuck echoes and publishes progress.
const WATCH_EVERY: u64 = 5;

/// Runs `slots` on the calling thread's own runtime, in the plan's phases, and returns their
/// tally. Always reaches the barrier (twice), so one thread's failure cannot hang the rest.
pub fn run_thread(
    thread: usize,
    slots: Vec<u32>,
    plan: Arc<Plan>,
    progress: Arc<Progress>,
) -> io::Result<Tally> {
    // Waits end when asked, not up to 50 µs later; the sleeping pacer keeps the kernel's
    // slack, which is what it trades precision for.
    if plan.rate.is_none() || plan.pacer == PacerMode::Precise {
        crate::sys::tighten_timer_slack();
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let tally = Rc::new(RefCell::new(Tally::default()));
    let local = LocalSet::new();
    let streams = match &rt {
        Ok(rt) => local.block_on(rt, connect_phase(thread, &slots, &plan, &tally)),
        Err(_) => Vec::new(),
    };
    if plan.barrier.wait().is_leader() {
        plan.set_clock();
    }
    plan.barrier.wait();
    let rt = rt?;
    let mut load = Load {
        clock: plan.clock(),
        pacer: plan.rate.map(|_| Pacer::new(plan.pacer)),
        plan,
        tally,
        progress,
        window_over: Rc::new(Notify::new()),
        window_known: false,
        window_ended: false,
        watched: Vec::new(),
    };
    local.block_on(&rt, load.run(streams));
    Ok(load.finish())
}

/// The load phase of one thread, after the barrier.
struct Load {
    plan: Arc<Plan>,
    clock: Clock,
    tally: Rc<RefCell<Tally>>,
    progress: Arc<Progress>,
    pacer: Option<Rc<Pacer>>,
    /// Wakes slots sleeping past the window's end.
    window_over: Rc<Notify>,
    window_known: bool,
    window_ended: bool,
    /// Each slot's oldest unanswered send, and the handle that aborts it.
    watched: Vec<(BusySince, AbortHandle)>,
}

impl Load {
    /// Runs every slot to its end, ticking meanwhile.
    async fn run(&mut self, streams: Vec<(u32, TcpStream)>) {
        let mut tasks = JoinSet::new();
        let pacer_task = self
            .pacer
            .clone()
            .map(|p| tokio::task::spawn_local(p.run()));
        for (id, stream) in streams {
            let slot = self.slot(id);
            let busy = slot.busy.clone();
            let abort = tasks.spawn_local(slot.run(stream));
            self.watched.push((busy, abort));
        }
        let mut tick = tokio::time::interval(TICK);
        let mut ticks = 0u64;
        loop {
            tokio::select! {
                done = tasks.join_next() => if done.is_none() { break },
                _ = tick.tick() => {
                    ticks += 1;
                    self.tick(Instant::now(), ticks % WATCH_EVERY == 0);
                }
            }
        }
        if let Some(t) = pacer_task {
            t.abort();
        }
    }

    /// Slot `id`, with its open-loop schedule if the run has a rate.
    fn slot(&self, id: u32) -> Slot {
        let plan = &self.plan;
        let schedule = plan.rate.map(|rate| {
            Schedule::new(
                self.clock.begin,
                rate,
                plan.connections,
                id,
                plan.arrivals,
                plan.seed,
            )
        });
        Slot {
            id,
            plan: plan.clone(),
            clock: self.clock,
            tally: self.tally.clone(),
            busy: BusySince::default(),
            pacer: self.pacer.clone(),
            schedule: RefCell::new(schedule),
            wake: Rc::new(Notify::new()),
            window_over: self.window_over.clone(),
            sent: 0,
        }
    }

    /// Hands finished slices to the warm-up's board and marks the window's edges; with
    /// `watch`, also aborts stuck echoes and publishes progress.
    fn tick(&mut self, now: Instant, watch: bool) {
        self.tally.borrow_mut().timeline.report(
            now.saturating_duration_since(self.clock.begin),
            &self.plan.board,
        );
        if let Some(m) = self.plan.measured() {
            if !self.window_known {
                self.window_known = true;
                if let Some(p) = &self.pacer {
                    p.count_spin_within(m.from, m.end);
                }
            }
            if !self.window_ended && m.end.is_some_and(|end| now >= end) {
                self.window_ended = true;
                self.window_over.notify_waiters();
            }
        }
        if watch {
            self.abort_stuck(now);
            self.progress.publish(&self.tally.borrow());
        }
    }

    /// Aborts every slot whose oldest echo has taken longer than the I/O timeout.
    fn abort_stuck(&self, now: Instant) {
        for (busy, abort) in &self.watched {
            if busy
                .get()
                .is_some_and(|t| now.duration_since(t) > self.plan.io_timeout)
            {
                busy.set(None);
                abort.abort();
                let mut t = self.tally.borrow_mut();
                t.counts.error("echo_timed_out");
                t.open -= 1;
            }
        }
    }

    /// The thread's tally, with the pacer's spin, once every slot has ended.
    fn finish(self) -> Tally {
        self.tally.borrow_mut().timeline.finish(&self.plan.board);
        let mut t = self.tally.borrow().clone();
        t.spin_s = self.pacer.map_or(0.0, |p| p.spin_s());
        self.progress.publish(&t);
        self.progress
            .open
            .store(0, std::sync::atomic::Ordering::Relaxed);
        t
    }
}
