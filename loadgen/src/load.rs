//! One load run from start to report: check the limits, take the witnesses' first readings,
//! build the plan, run the threads while the main thread watches, then put the report
//! together from the tally, the window's samples and the witnesses' second readings.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Barrier, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::config::{RunConfig, Warmup};
use crate::engine::{self, Clock, Measured, Plan, Progress, Tally};
use crate::report::{self, Cpu, Percentiles, Phases, Report, StartAt};
use crate::settle::Board;
use crate::sys::CpuTime;
use crate::watch::{watch_until_done, Window};
use crate::witness::{self, KernelCounters, ServerCloses};
use crate::LoadError;

/// A finished run: the report and the histograms behind it.
pub struct Outcome {
    /// What was measured.
    pub report: Report,
    /// The merged round-trip histogram, µs.
    pub latency: Histogram<u64>,
    /// The merged service-time histogram, µs.
    pub service: Histogram<u64>,
    /// The merged send-lag histogram, µs.
    pub send_lag: Histogram<u64>,
    /// The merged connect histogram, µs.
    pub connect: Histogram<u64>,
}

/// Descriptors the process needs besides one per connection.
const SPARE_FDS: u64 = 64;

/// How long to wait for the server's close counters to catch up with ours.
const WITNESS_WAIT: Duration = Duration::from_secs(5);

/// The witnesses' readings before the load: the server's close counters and the kernel's.
struct Before {
    server: Option<ServerCloses>,
    kernel: Option<KernelCounters>,
}

/// What the run's threads and watcher produced, for the report.
struct Ran {
    tally: Tally,
    clock: Clock,
    /// The measured window, and how long it lasted, s.
    measured: Measured,
    elapsed: f64,
    /// Our own CPU over the window.
    cpu: CpuTime,
    window: Window,
}

/// Runs the load described by `cfg`.
pub fn run_load(cfg: &RunConfig) -> Result<Outcome, LoadError> {
    check_fd_limit(cfg)?;
    let before = Before {
        server: match &cfg.server_metrics {
            Some(url) => {
                if !cfg.server_shared {
                    await_quiet_server(url)?;
                }
                Some(witness::scrape_closes(url).map_err(|e| unreadable(url, e))?)
            }
            None => None,
        },
        kernel: KernelCounters::read(),
    };
    let plan = Arc::new(plan(cfg)?);
    let ran = run_threads(cfg, &plan)?;
    let report = report(cfg, &plan, before, ran)?;
    Ok(report)
}

/// A server we have to ourselves should have no connections before we open ours: an earlier
/// client's closes still landing would be counted as ours. Waits up to [`WITNESS_WAIT`] for
/// them to finish, then warns and goes on.
fn await_quiet_server(url: &str) -> Result<(), LoadError> {
    let active =
        poll_server(|| witness::scrape_active(url), |&n| n == 0).map_err(|e| unreadable(url, e))?;
    if active > 0 {
        eprintln!(
            "ringecho-loadgen: warning: the server still has {active} connections from \
             another client; its close counts may include theirs (--server-shared if that is \
             expected)"
        );
    }
    Ok(())
}

/// Reads the server with `scrape` every 20 ms until what it read is `done`, for at most
/// [`WITNESS_WAIT`]; returns the last reading (done or not).
fn poll_server<T>(
    mut scrape: impl FnMut() -> std::io::Result<T>,
    done: impl Fn(&T) -> bool,
) -> std::io::Result<T> {
    let deadline = Instant::now() + WITNESS_WAIT;
    loop {
        let read = scrape()?;
        if done(&read) || Instant::now() >= deadline {
            return Ok(read);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn unreadable(url: &str, e: std::io::Error) -> LoadError {
    LoadError(format!("cannot read the server's metrics at {url}: {e}"))
}

/// Refuses a run that would run out of descriptors, before opening any.
fn check_fd_limit(cfg: &RunConfig) -> Result<(), LoadError> {
    let limit = match ringecho_common::raise_nofile_limit() {
        Ok((_, new)) => new,
        Err(e) => return Err(LoadError(format!("cannot read the open-file limit: {e}"))),
    };
    if cfg.connections as u64 + SPARE_FDS > limit {
        return Err(LoadError(format!(
            "{} connections need {} descriptors but the open-file limit is {limit}; raise it \
             (ulimit -Hn, or prlimit) or open fewer connections",
            cfg.connections,
            cfg.connections as u64 + SPARE_FDS
        )));
    }
    Ok(())
}

/// The plan every thread follows, from the flags.
fn plan(cfg: &RunConfig) -> Result<Plan, LoadError> {
    let threads = cfg.thread_count();
    let source_addrs = cfg.source_addrs.clone().map(|s| s.0).unwrap_or_default();
    // A socket bound to an IPv4 source cannot reach an IPv6 server, and the reverse.
    let addrs: Vec<SocketAddr> = cfg
        .addr
        .addrs
        .iter()
        .copied()
        .filter(|a| {
            source_addrs
                .first()
                .map_or(true, |s| s.is_ipv4() == a.is_ipv4())
        })
        .collect();
    if addrs.is_empty() {
        return Err(LoadError(format!(
            "{} ({}) has no address of the --source-addrs family",
            cfg.addr,
            cfg.addr.list()
        )));
    }
    let measure_for = cfg.measure_for();
    Ok(Plan {
        addrs,
        addr_index: AtomicUsize::new(0),
        payload: cfg.payload as usize,
        messages: cfg.messages,
        churn: cfg.churn,
        rst_share: cfg.rst_share,
        rate: cfg.rate,
        arrivals: cfg.arrivals,
        pacer: cfg.pacer,
        pipeline: cfg.pipeline,
        connections: cfg.connections,
        threads,
        connect_rate: cfg.connect_rate,
        io_timeout: cfg.io_timeout,
        source_addrs,
        board: match (measure_for, effective_warmup(cfg)) {
            (Some(_), Warmup::Auto) => Board::new(threads),
            (Some(_), Warmup::Fixed(d)) => Board::fixed(threads, d),
            (None, _) => Board::fixed(threads, Duration::ZERO),
        },
        warmup_cap: match effective_warmup(cfg) {
            Warmup::Auto => cfg.warmup_max,
            Warmup::Fixed(d) => d,
        },
        measure_for,
        start_at: cfg.start_at,
        seed: cfg.seed,
        connect_from: Instant::now(),
        barrier: Barrier::new(threads),
        clock: OnceLock::new(),
        close_tickets: AtomicU64::new(0),
    })
}

/// The warm-up this run uses: with `--start-at` (loadgens on several hosts merged into one
/// report) every host must measure the same window, which a settle judged per host would
/// not give, so `auto` means no warm-up there; give a fixed `--warmup` for one.
fn effective_warmup(cfg: &RunConfig) -> Warmup {
    match (cfg.warmup, cfg.start_at) {
        (Warmup::Auto, Some(_)) => Warmup::Fixed(Duration::ZERO),
        (w, _) => w,
    }
}

/// Starts the threads (slot `s` goes to thread `s mod threads`), watches them to the end,
/// and merges their tallies.
fn run_threads(cfg: &RunConfig, plan: &Arc<Plan>) -> Result<Ran, LoadError> {
    let threads = plan.threads;
    let progress: Vec<Arc<Progress>> = (0..threads).map(|_| Arc::default()).collect();
    let mut handles: Vec<JoinHandle<std::io::Result<Tally>>> = Vec::with_capacity(threads);
    for (t, prog) in progress.iter().enumerate() {
        let slots: Vec<u32> = (0..cfg.connections)
            .filter(|s| *s as usize % threads == t)
            .collect();
        let (plan, prog) = (plan.clone(), prog.clone());
        let h = std::thread::Builder::new()
            .name(format!("loadgen-{t}"))
            .spawn(move || engine::run_thread(t, slots, plan, prog))
            .map_err(|e| LoadError(format!("cannot start a thread: {e}")))?;
        handles.push(h);
    }
    let show = cfg.progress || std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut window = Window::for_run(cfg);
    watch_until_done(&handles, &progress, &mut window, plan, show);
    let mut tally = Tally::default();
    for h in handles {
        let t = h
            .join()
            .map_err(|_| LoadError("a loadgen thread panicked".into()))?
            .map_err(|e| LoadError(format!("cannot start a runtime: {e}")))?;
        tally.merge(&t);
    }
    let finished = Instant::now();
    window.close();
    let cpu = window.own_cpu();
    let clock = check_connected(cfg, plan, &tally)?;
    // A run that ended before its warm-up decided (every connection failed) measured nothing.
    let measured = plan.measured().unwrap_or(Measured {
        from: finished,
        end: None,
    });
    let elapsed = match measured.end {
        Some(end) => end.min(finished).saturating_duration_since(measured.from),
        None => finished.saturating_duration_since(measured.from),
    }
    .as_secs_f64();
    Ok(Ran {
        tally,
        clock,
        measured,
        elapsed,
        cpu,
        window,
    })
}

/// The clock, if the run got going: an error naming why no connection could be made, or
/// that the ephemeral ports ran out.
fn check_connected(cfg: &RunConfig, plan: &Plan, tally: &Tally) -> Result<Clock, LoadError> {
    let connects = tally.counts.connects;
    if let Some(n) = tally.counts.errors.get("ephemeral_ports_exhausted") {
        return Err(LoadError(format!(
            "ran out of ephemeral ports to {} after {connects} connects ({n} failed); spread \
             connections over more source addresses with --source-addrs 127.0.0.2-127.0.0.9",
            cfg.addr
        )));
    }
    match (plan.clock.get().copied(), connects > 0) {
        (Some(clock), true) => Ok(clock),
        _ => {
            let why = tally
                .counts
                .errors
                .keys()
                .map(|k| k.replace('_', " "))
                .collect::<Vec<_>>()
                .join(", ");
            let tried = match cfg.addr.addrs.len() {
                1 => String::new(),
                _ => format!(" (tried {})", cfg.addr.list()),
            };
            Err(LoadError(format!(
                "cannot connect to {}{tried}: {why}",
                cfg.addr
            )))
        }
    }
}

/// The report: the tally's figures, the witnesses' second readings beside ours, the CPU
/// over the window, and whether the loadgen may have limited the run.
fn report(cfg: &RunConfig, plan: &Plan, before: Before, ran: Ran) -> Result<Outcome, LoadError> {
    let Ran {
        tally,
        clock,
        measured,
        elapsed,
        cpu,
        mut window,
    } = ran;
    let (server_closes, server_agrees) = witness_closes(cfg, before.server, &tally)?;
    let server = window
        .server_cost(tally.counts.messages)
        .map_err(|e| LoadError(format!("cannot measure the server process: {e}")))?;
    let mut report = Report {
        tags: tags(cfg),
        server,
        addr: match plan.addr() {
            used if cfg.addr.text == used.to_string() => cfg.addr.text.clone(),
            used => format!("{used} ({})", cfg.addr),
        },
        connections: cfg.connections,
        threads: plan.threads,
        payload: cfg.payload,
        rst_share: cfg.rst_share,
        rate: cfg.rate,
        churn: cfg.churn,
        elapsed_s: elapsed,
        msgs_per_s: per_s(tally.counts.messages as f64, elapsed),
        mib_per_s: per_s(tally.counts.bytes as f64 / (1 << 20) as f64, elapsed),
        arrivals: cfg.rate.map(|_| cfg.arrivals),
        pipeline: cfg.pipeline,
        connect_rate: cfg.connect_rate,
        latency_us: Percentiles::of(&tally.latency),
        service_us: Percentiles::of(&tally.service),
        send_lag_us: Percentiles::of(&tally.send_lag),
        loadgen_late_us: Percentiles::of(&tally.late),
        connect_latency_us: Percentiles::of(&tally.connect),
        phases: phases(cfg, plan, &clock, &measured, elapsed),
        timeline: plan.board.timeline(),
        start_at: cfg.start_at.map(|at| StartAt {
            unix_s: at
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64(),
            late_s: clock.start_late_s,
            assumed_offset_s: 0.0,
        }),
        counts: tally.counts.clone(),
        server_closes,
        // Informative: a server that does not count per thread leaves it empty.
        server_accepted_by_thread: cfg
            .server_metrics
            .as_deref()
            .and_then(|url| witness::scrape_accepted_by_thread(url).ok())
            .unwrap_or_default(),
        server_agrees,
        kernel: match (before.kernel, KernelCounters::read()) {
            (Some(b), Some(a)) => Some(a.since(&b)),
            _ => None,
        },
        loadgen_cpu: loadgen_cpu(cfg, &tally, cpu, elapsed * plan.threads as f64),
        ..Report::default()
    };
    report.limited_reasons = report::limited_reasons(&report);
    report.loadgen_limited = !report.limited_reasons.is_empty();
    Ok(Outcome {
        report,
        latency: tally.latency,
        service: tally.service,
        send_lag: tally.send_lag,
        connect: tally.connect,
    })
}

/// The server's close counts over the run, once they account for ours, and whether its
/// FIN and RST counts equal ours (not judged for a shared server, whose counts include the
/// other loadgens': merge checks the sum).
fn witness_closes(
    cfg: &RunConfig,
    before: Option<ServerCloses>,
    tally: &Tally,
) -> Result<(Option<ServerCloses>, Option<bool>), LoadError> {
    let (Some(url), Some(before)) = (&cfg.server_metrics, before) else {
        return Ok((None, None));
    };
    let ours = &tally.counts.closes;
    let delta = await_server_closes(url, &before, ours.fin + ours.rst + ours.server)
        .map_err(|e| unreadable(url, e))?;
    let agrees = (!cfg.server_shared).then_some(delta.fin == ours.fin && delta.rst == ours.rst);
    Ok((Some(delta), agrees))
}

/// `--tag`s, with this host's name unless one was given.
fn tags(cfg: &RunConfig) -> BTreeMap<String, String> {
    let mut tags: BTreeMap<String, String> = cfg.tags.iter().cloned().collect();
    if !tags.contains_key("host") {
        if let Ok(h) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
            tags.insert("host".into(), h.trim().to_string());
        }
    }
    tags
}

/// How long each phase took, and what the warm-up decided.
fn phases(cfg: &RunConfig, plan: &Plan, clock: &Clock, m: &Measured, elapsed: f64) -> Phases {
    Phases {
        connect_s: clock.connect_s,
        warmup_s: m.from.saturating_duration_since(clock.begin).as_secs_f64(),
        measure_s: elapsed,
        warmup_settled: match (effective_warmup(cfg), plan.measure_for) {
            (Warmup::Auto, Some(_)) => plan.board.decision().map(|d| d.settled),
            _ => None,
        },
    }
}

/// The loadgen's own CPU over the window; its busy share is CPU over `thread_s` (wall time
/// times threads), less the pacer's spinning towards deadlines (time it chose to burn, not
/// work it could not keep up with).
fn loadgen_cpu(cfg: &RunConfig, tally: &Tally, cpu: CpuTime, thread_s: f64) -> Cpu {
    let cpu_s = cpu.total();
    let work_s = (cpu_s - tally.spin_s).max(0.0);
    Cpu {
        user_s: cpu.user,
        sys_s: cpu.sys,
        us_per_msg: per_s(cpu_s * 1e6, tally.counts.messages as f64),
        utilisation: per_s(work_s, thread_s),
        pacer_spin_s: tally.spin_s,
        us_per_msg_outside_pacer: per_s(work_s * 1e6, tally.counts.messages as f64),
        pacer: cfg.rate.map(|_| cfg.pacer),
    }
}

/// `x` per unit of `over`, or 0 when `over` is 0.
fn per_s(x: f64, over: f64) -> f64 {
    if over > 0.0 {
        x / over
    } else {
        0.0
    }
}

/// Polls the server's close counters until they account for `ours` closes (the server
/// counts a close when it reads the FIN or RST, a moment after we sent it).
fn await_server_closes(
    url: &str,
    before: &ServerCloses,
    ours: u64,
) -> std::io::Result<ServerCloses> {
    poll_server(
        || Ok(witness::scrape_closes(url)?.since(before)),
        |delta| delta.total() >= ours,
    )
}
