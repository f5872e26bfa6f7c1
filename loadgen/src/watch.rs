//! What the main thread does while the load threads run: the progress line, the warm-up's
//! judgement, and the samples at the edges of the measured window (our CPU and the
//! server's).

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::RunConfig;
use crate::engine::{Plan, Progress, Tally};
use crate::sys::{self, CpuTime};
use crate::witness::{self, ProcSample, ServerCost, SyscallCounter};
use ringecho_common::procfs::CoreTimes;

/// Samples taken at the edges of the measured window: our own CPU, and the server's.
pub(crate) struct Window {
    server_pid: Option<u32>,
    /// Without a pid: the server's metrics endpoint, for its own CPU and memory.
    server_metrics: Option<String>,
    count_syscalls: bool,
    opened: Option<(CpuTime, Option<io::Result<ProcSample>>)>,
    closed: Option<(CpuTime, Option<io::Result<ProcSample>>)>,
    perf: Option<io::Result<SyscallCounter>>,
    syscalls: Option<io::Result<u64>>,
    /// The server's CPUs, when none of them is ours: their busy time is then the server's
    /// and whatever else ran there, never the loadgen.
    cores: Option<Vec<usize>>,
    /// Their times at the window's edges.
    cores_at: [Option<CoreTimes>; 2],
}

impl Window {
    pub(crate) fn new(
        server_pid: Option<u32>,
        server_metrics: Option<String>,
        count_syscalls: bool,
    ) -> Self {
        Window {
            server_pid,
            server_metrics: server_metrics.filter(|_| server_pid.is_none()),
            count_syscalls,
            opened: None,
            closed: None,
            perf: None,
            syscalls: None,
            cores: server_pid.and_then(cores_apart_from_ours),
            cores_at: [None, None],
        }
    }

    fn sample(&self) -> (CpuTime, Option<io::Result<ProcSample>>) {
        let server = match (self.server_pid, &self.server_metrics) {
            (Some(pid), _) => Some(ProcSample::read_tree(pid)),
            (None, Some(url)) => Some(witness::scrape_process(url)),
            (None, None) => None,
        };
        (sys::process_cpu(), server)
    }

    fn open(&mut self) {
        if self.opened.is_none() {
            self.cores_at[0] = self.cores.as_deref().and_then(|c| CoreTimes::read(c).ok());
            self.opened = Some(self.sample());
            if let (Some(pid), true) = (self.server_pid, self.count_syscalls) {
                match ringecho_common::perf::syscall_counting() {
                    Ok(()) => self.perf = Some(SyscallCounter::start(pid)),
                    Err(why) => eprintln!("ringecho-loadgen: --count-syscalls skipped: {why}"),
                }
            }
        }
    }

    pub(crate) fn close(&mut self) {
        self.open();
        if self.closed.is_none() {
            self.closed = Some(self.sample());
            self.cores_at[1] = self.cores.as_deref().and_then(|c| CoreTimes::read(c).ok());
            self.syscalls = self.perf.take().map(|p| p.and_then(SyscallCounter::stop));
        }
    }

    pub(crate) fn own_cpu(&self) -> CpuTime {
        match (&self.opened, &self.closed) {
            (Some((a, _)), Some((b, _))) => b.saturating_sub(*a),
            _ => CpuTime::default(),
        }
    }

    pub(crate) fn server_cost(&mut self, messages: u64) -> io::Result<Option<ServerCost>> {
        if self.server_pid.is_none() && self.server_metrics.is_none() {
            return Ok(None);
        }
        // pid 0: measured through the metrics endpoint.
        let pid = self.server_pid.unwrap_or(0);
        let a = self
            .opened
            .as_mut()
            .and_then(|o| o.1.take())
            .expect("window opened")?;
        let b = self
            .closed
            .as_mut()
            .and_then(|c| c.1.take())
            .expect("window closed")?;
        // Counting is extra: a count that failed is left out, said once, not the run's end.
        let syscalls = match self.syscalls.take().transpose() {
            Ok(n) => n,
            Err(e) => {
                eprintln!("ringecho-loadgen: system calls not counted: {e}");
                None
            }
        };
        let cost = ServerCost::between(pid, &a, &b, messages, syscalls);
        Ok(Some(match self.cores_at {
            [Some(a), Some(b)] => cost.with_cores(&a.until(&b), messages),
            _ => cost,
        }))
    }
}

/// The CPUs process `pid` may run on, if none of them is one this process may run on.
fn cores_apart_from_ours(pid: u32) -> Option<Vec<usize>> {
    let theirs = ringecho_common::procfs::allowed_cpus_of(pid).ok()?;
    let ours = ringecho_common::allowed_cores().ok()?;
    (!theirs.iter().any(|c| ours.contains(c))).then_some(theirs)
}

impl Window {
    /// The window for this run's flags: the server by pid, or by its metrics endpoint.
    pub(crate) fn for_run(cfg: &RunConfig) -> Self {
        Window::new(
            cfg.server_pid,
            cfg.server_metrics.clone().filter(|_| !cfg.server_shared),
            cfg.count_syscalls,
        )
    }
}

/// Shows progress until every thread finished, opening and closing the measured window.
pub(crate) fn watch_until_done(
    handles: &[std::thread::JoinHandle<std::io::Result<Tally>>],
    progress: &[Arc<Progress>],
    window: &mut Window,
    plan: &Plan,
    show: bool,
) {
    let bar = show.then(|| {
        let b = indicatif::ProgressBar::new_spinner();
        b.set_style(
            indicatif::ProgressStyle::with_template("{elapsed:>4} {msg}").expect("static template"),
        );
        b
    });
    let mut last = (Instant::now(), 0u64);
    let mut next_tick = Instant::now() + Duration::from_secs(1);
    while !handles.iter().all(|h| h.is_finished()) {
        std::thread::sleep(Duration::from_millis(2));
        let now = Instant::now();
        plan.judge_warmup(now);
        if let Some(m) = plan.measured() {
            if now >= m.from {
                window.open();
            }
            if m.end.is_some_and(|end| now >= end) {
                window.close();
            }
        }
        if now >= next_tick {
            next_tick += Duration::from_secs(1);
            let sum = |f: fn(&Progress) -> &AtomicU64| -> u64 {
                progress.iter().map(|p| f(p).load(Ordering::Relaxed)).sum()
            };
            let sent = sum(|p| &p.sent);
            let rate = (sent - last.1) as f64 / now.duration_since(last.0).as_secs_f64();
            last = (now, sent);
            if let Some(b) = &bar {
                b.set_message(format!(
                    "{rate:>9.0} msgs/s  {:>6} open  {} errors",
                    sum(|p| &p.open),
                    sum(|p| &p.errors)
                ));
                b.tick();
            }
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
}
