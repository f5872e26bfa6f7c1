//! ringecho-loadgen: opens many echo connections, sends messages that carry their connection
//! id and sequence number, verifies every echoed byte, closes a chosen share with
//! SO_LINGER=0 (RST) and the rest with FIN, and reports HdrHistogram latency, throughput and
//! close counts, with the server's and the kernel's counts beside ours.

#![warn(missing_docs)]

pub mod compare;
pub mod config;
pub mod pace;
pub mod payload;
pub mod plot;
pub mod profile;
pub mod report;
pub mod run;
pub mod settle;
pub mod sweep;
pub mod sys;
pub mod witness;

use std::fmt;
use std::io::{self, IsTerminal};
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use config::{Cli, Command, RunConfig};
use report::{Closes, Cpu, Percentiles, Phases, Report, StartAt};
use run::{Plan, Progress, Tally};
use sys::CpuTime;
use witness::{KernelCounters, ProcSample, ServerCloses, ServerCost, SyscallCounter};

/// A run that could not be carried out, with what to do about it.
#[derive(Debug)]
pub struct LoadError(pub String);

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LoadError {}

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

/// Runs the load described by `cfg`.
pub fn run_load(cfg: &RunConfig) -> Result<Outcome, LoadError> {
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
    let server_before =
        match &cfg.server_metrics {
            Some(url) => Some(witness::scrape_closes(url).map_err(|e| {
                LoadError(format!("cannot read the server's metrics at {url}: {e}"))
            })?),
            None => None,
        };
    let kernel_before = KernelCounters::read();
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
    let plan = Arc::new(Plan {
        addrs,
        addr_index: std::sync::atomic::AtomicUsize::new(0),
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
        board: match (measure_for, cfg.warmup) {
            (Some(_), config::Warmup::Auto) => settle::Board::new(threads),
            (Some(_), config::Warmup::Fixed(d)) => settle::Board::fixed(threads, d),
            (None, _) => settle::Board::fixed(threads, Duration::ZERO),
        },
        warmup_cap: match cfg.warmup {
            config::Warmup::Auto => cfg.warmup_max,
            config::Warmup::Fixed(d) => d,
        },
        measure_for,
        start_at: cfg.start_at,
        seed: cfg.seed,
        connect_from: Instant::now(),
        barrier: std::sync::Barrier::new(threads),
        clock: std::sync::OnceLock::new(),
        close_tickets: AtomicU64::new(0),
    });
    let progress: Vec<Arc<Progress>> = (0..threads).map(|_| Arc::default()).collect();
    let mut handles = Vec::with_capacity(threads);
    for (t, prog) in progress.iter().enumerate() {
        let slots: Vec<u32> = (0..cfg.connections)
            .filter(|s| *s as usize % threads == t)
            .collect();
        let (plan, prog) = (plan.clone(), prog.clone());
        let h = std::thread::Builder::new()
            .name(format!("loadgen-{t}"))
            .spawn(move || run::run_thread(t, slots, plan, prog))
            .map_err(|e| LoadError(format!("cannot start a thread: {e}")))?;
        handles.push(h);
    }
    let show = cfg.progress || std::io::stderr().is_terminal();
    let mut window = Window::new(
        cfg.server_pid,
        cfg.server_metrics.clone().filter(|_| !cfg.server_shared),
        cfg.count_syscalls,
    );
    watch_until_done(&handles, &progress, &mut window, &plan, show);
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
    let clock = plan.clock.get().copied();
    let connects = tally.connect.len();
    if let Some(n) = tally.errors.get("ephemeral_ports_exhausted") {
        return Err(LoadError(format!(
            "ran out of ephemeral ports to {} after {connects} connects ({n} failed); spread \
             connections over more source addresses with --source-addrs 127.0.0.2-127.0.0.9",
            cfg.addr
        )));
    }
    let (Some(clock), true) = (clock, connects > 0) else {
        let why = tally
            .errors
            .keys()
            .map(|k| k.replace('_', " "))
            .collect::<Vec<_>>()
            .join(", ");
        let tried = match cfg.addr.addrs.len() {
            1 => String::new(),
            _ => format!(" (tried {})", cfg.addr.list()),
        };
        return Err(LoadError(format!(
            "cannot connect to {}{tried}: {why}",
            cfg.addr
        )));
    };
    // A run that ended before its warm-up decided (every connection failed) measured nothing.
    let measured = plan.measured().unwrap_or(run::Measured {
        from: finished,
        end: None,
    });
    let elapsed = match measured.end {
        Some(end) => end.min(finished).saturating_duration_since(measured.from),
        None => finished.saturating_duration_since(measured.from),
    }
    .as_secs_f64();
    let (server_closes, server_agrees) = match (&cfg.server_metrics, server_before) {
        (Some(url), Some(before)) => {
            let ours = tally.fin + tally.rst + tally.server_closed;
            let delta = await_server_closes(url, &before, ours).map_err(|e| {
                LoadError(format!("cannot read the server's metrics at {url}: {e}"))
            })?;
            // A shared server's counts include the other loadgens': merge checks the sum.
            let agrees =
                (!cfg.server_shared).then_some(delta.fin == tally.fin && delta.rst == tally.rst);
            (Some(delta), agrees)
        }
        _ => (None, None),
    };
    let kernel = match (kernel_before, KernelCounters::read()) {
        (Some(b), Some(a)) => Some(a.since(&b)),
        _ => None,
    };
    let server = window
        .server_cost(tally.messages)
        .map_err(|e| LoadError(format!("cannot measure the server process: {e}")))?;
    let cpu_s = cpu.total();
    // Busy share of the loadgen's threads: CPU over wall time, less the pacer's spinning
    // towards deadlines (time it chose to burn, not work it could not keep up with).
    let work_s = (cpu_s - tally.spin_s).max(0.0);
    let utilisation = per_s(work_s, elapsed * threads as f64);
    let mut report = Report {
        failure: None,
        tags: {
            let mut tags: std::collections::BTreeMap<String, String> =
                cfg.tags.iter().cloned().collect();
            if !tags.contains_key("host") {
                if let Ok(h) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
                    tags.insert("host".into(), h.trim().to_string());
                }
            }
            tags
        },
        server,
        addr: match plan.addr() {
            used if cfg.addr.text == used.to_string() => cfg.addr.text.clone(),
            used => format!("{used} ({})", cfg.addr),
        },
        connections: cfg.connections,
        threads,
        payload: cfg.payload,
        rst_share: cfg.rst_share,
        rate: cfg.rate,
        churn: cfg.churn,
        messages: tally.messages,
        bytes: tally.bytes,
        messages_total: tally.all_messages,
        bytes_total: tally.all_bytes,
        elapsed_s: elapsed,
        msgs_per_s: per_s(tally.messages as f64, elapsed),
        mib_per_s: per_s(tally.bytes as f64 / (1 << 20) as f64, elapsed),
        arrivals: cfg.rate.map(|_| cfg.arrivals),
        pipeline: cfg.pipeline,
        connect_rate: cfg.connect_rate,
        latency_us: Percentiles::of(&tally.latency),
        service_us: Percentiles::of(&tally.service),
        send_lag_us: Percentiles::of(&tally.send_lag),
        loadgen_late_us: Percentiles::of(&tally.late),
        phases: Phases {
            connect_s: clock.connect_s,
            warmup_s: measured
                .from
                .saturating_duration_since(clock.begin)
                .as_secs_f64(),
            measure_s: elapsed,
            warmup_settled: match (cfg.warmup, measure_for) {
                (config::Warmup::Auto, Some(_)) => plan.board.decision().map(|d| d.settled),
                _ => None,
            },
        },
        timeline: plan.board.timeline(),
        start_at: cfg.start_at.map(|at| StartAt {
            unix_s: at
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64(),
            late_s: clock.start_late_s,
            assumed_offset_s: 0.0,
        }),
        loadgen_limited: false,
        limited_reasons: Vec::new(),
        connect_latency_us: Percentiles::of(&tally.connect),
        connects,
        closes: Closes {
            fin: tally.fin,
            rst: tally.rst,
            server: tally.server_closed,
            rst_unread: tally.rst_unread,
        },
        errors: tally.errors.clone(),
        mismatches: tally.mismatches,
        server_closes,
        server_agrees,
        kernel,
        loadgen_cpu: Cpu {
            user_s: cpu.user,
            sys_s: cpu.sys,
            us_per_msg: per_s(cpu_s * 1e6, tally.messages as f64),
            utilisation,
            pacer_spin_s: tally.spin_s,
            us_per_msg_outside_pacer: per_s(work_s * 1e6, tally.messages as f64),
            pacer: cfg.rate.map(|_| cfg.pacer),
        },
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

fn per_s(x: f64, over: f64) -> f64 {
    if over > 0.0 {
        x / over
    } else {
        0.0
    }
}

/// Samples taken at the edges of the measured window: our own CPU, and the server's.
struct Window {
    server_pid: Option<u32>,
    /// Without a pid: the server's metrics endpoint, for its own CPU and memory.
    server_metrics: Option<String>,
    count_syscalls: bool,
    opened: Option<(CpuTime, Option<io::Result<ProcSample>>)>,
    closed: Option<(CpuTime, Option<io::Result<ProcSample>>)>,
    perf: Option<io::Result<SyscallCounter>>,
    syscalls: Option<io::Result<u64>>,
}

impl Window {
    fn new(server_pid: Option<u32>, server_metrics: Option<String>, count_syscalls: bool) -> Self {
        Window {
            server_pid,
            server_metrics: server_metrics.filter(|_| server_pid.is_none()),
            count_syscalls,
            opened: None,
            closed: None,
            perf: None,
            syscalls: None,
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
            self.opened = Some(self.sample());
            if let (Some(pid), true) = (self.server_pid, self.count_syscalls) {
                self.perf = Some(SyscallCounter::start(pid));
            }
        }
    }

    fn close(&mut self) {
        self.open();
        if self.closed.is_none() {
            self.closed = Some(self.sample());
            self.syscalls = self.perf.take().map(|p| p.and_then(SyscallCounter::stop));
        }
    }

    fn own_cpu(&self) -> CpuTime {
        match (&self.opened, &self.closed) {
            (Some((a, _)), Some((b, _))) => b.saturating_sub(*a),
            _ => CpuTime::default(),
        }
    }

    fn server_cost(&mut self, messages: u64) -> io::Result<Option<ServerCost>> {
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
        let syscalls = self.syscalls.take().transpose()?;
        Ok(Some(ServerCost::between(pid, &a, &b, messages, syscalls)))
    }
}

/// Shows progress until every thread finished, opening and closing the measured window.
fn watch_until_done(
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

/// Polls the server's close counters until they account for `ours` closes (the server
/// counts a close when it reads the FIN or RST, a moment after we sent it).
fn await_server_closes(
    url: &str,
    before: &ServerCloses,
    ours: u64,
) -> std::io::Result<ServerCloses> {
    let deadline = Instant::now() + WITNESS_WAIT;
    loop {
        let delta = witness::scrape_closes(url)?.since(before);
        if delta.total() >= ours || Instant::now() >= deadline {
            return Ok(delta);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn write_file(
    path: &Path,
    what: &str,
    f: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> std::io::Result<()>,
) -> Result<(), LoadError> {
    let file = std::fs::File::create(path)
        .map_err(|e| LoadError(format!("cannot write {what} to {}: {e}", path.display())))?;
    let mut w = std::io::BufWriter::new(file);
    f(&mut w)
        .and_then(|_| std::io::Write::flush(&mut w))
        .map_err(|e| LoadError(format!("cannot write {what} to {}: {e}", path.display())))
}

fn write_json(path: &Path, report: &Report) -> Result<(), LoadError> {
    write_file(path, "JSON", |w| {
        serde_json::to_writer_pretty(&mut *w, report).map_err(std::io::Error::other)?;
        std::io::Write::write_all(w, b"\n")
    })
}

/// Runs the command line; the binary's whole logic.
pub fn main_with(cli: Cli) -> ExitCode {
    if let Some(kind) = cli.generate {
        use clap::CommandFactory;
        return ringecho_common::generate_or_fail(kind, Cli::command());
    }
    let result = match cli.command {
        Some(Command::Merge(m)) => merge(&m),
        Some(Command::Compare {
            files,
            baseline,
            json,
        }) => compare(&files, &baseline, json.as_deref()),
        Some(Command::Plot { out, title, hgrm }) => plot::plot_hgrm(&out, &title, &hgrm)
            .map_err(|e| LoadError(format!("cannot plot: {e}")))
            .map(|_| true),
        Some(Command::Profile { json, inputs }) => profile_cmd(&inputs, json.as_deref()),
        Some(Command::Sweep(s)) => sweep_cmd(&s),
        Some(Command::PlotSweep { out, title, files }) => plot_sweeps(&out, &title, &files),
        None => load(&cli.run),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("ringecho-loadgen: error: {e}");
            ExitCode::from(1)
        }
    }
}

/// A load run with its outputs; Ok(false) when the run finished but cannot be trusted.
fn load(cfg: &RunConfig) -> Result<bool, LoadError> {
    let out = run_load(cfg)?;
    let r = &out.report;
    // With `--hist-log -` stdout carries the log (over SSH, say): the summary goes to stderr.
    let log_to_stdout = cfg.hist_log.as_deref() == Some(Path::new("-"));
    if log_to_stdout {
        eprint!("{}", r.summary());
    } else {
        print!("{}", r.summary());
    }
    if let Some(p) = &cfg.json {
        write_json(p, r)?;
    }
    if let Some(p) = &cfg.hgrm {
        write_file(p, "the histogram", |w| report::write_hgrm(&out.latency, w))?;
        for (name, h) in [("service", &out.service), ("send-lag", &out.send_lag)] {
            let path = p.with_extension(format!("{name}.hgrm"));
            write_file(&path, "the histogram", |w| report::write_hgrm(h, w))?;
        }
    }
    if log_to_stdout {
        let mut w = std::io::BufWriter::new(std::io::stdout().lock());
        report::write_hist_log(r, &out.latency, &out.connect, &mut w)
            .and_then(|_| std::io::Write::flush(&mut w))
            .map_err(|e| LoadError(format!("cannot write the interval log to stdout: {e}")))?;
    } else if let Some(p) = &cfg.hist_log {
        write_file(p, "the interval log", |w| {
            report::write_hist_log(r, &out.latency, &out.connect, w)
        })?;
    }
    if r.messages == 0 {
        return Err(LoadError(format!(
            "no message was measured: the connect phase took {:.2} s and the window {:.2} s; \
             check the server, or give a longer --duration",
            r.phases.connect_s, r.phases.measure_s
        )));
    }
    if r.loadgen_limited {
        eprintln!(
            "ringecho-loadgen: warning: loadgen-limited run: {}",
            r.limited_reasons.join("; ")
        );
    }
    if !r.is_clean() {
        let mut why = Vec::new();
        if r.mismatches > 0 {
            why.push(format!(
                "{} echoed bytes differed from what was sent",
                r.mismatches
            ));
        }
        if !r.errors.is_empty() {
            why.push(format!(
                "{} connections failed",
                r.errors.values().sum::<u64>()
            ));
        }
        if r.server_agrees == Some(false) {
            why.push("the server's FIN/RST counts disagree with ours".into());
        }
        eprintln!("ringecho-loadgen: error: {}", why.join("; "));
    }
    Ok(r.is_clean() && !(cfg.strict && r.loadgen_limited))
}

/// `profile`: each server's perf report, categorised and scaled to its run's CPU per message.
fn profile_cmd(
    inputs: &[(String, std::path::PathBuf, std::path::PathBuf)],
    json: Option<&Path>,
) -> Result<bool, LoadError> {
    let read = |p: &Path| {
        std::fs::read_to_string(p)
            .map_err(|e| LoadError(format!("cannot read {}: {e}", p.display())))
    };
    let mut profiles = Vec::new();
    for (name, report, run) in inputs {
        let r: Report = serde_json::from_str(&read(run)?)
            .map_err(|e| LoadError(format!("{} is not a loadgen report: {e}", run.display())))?;
        let cpu = r.server.map(|s| s.cpu_us_per_msg).ok_or_else(|| {
            LoadError(format!(
                "{} has no server CPU: run the loadgen with --server-pid",
                run.display()
            ))
        })?;
        profiles.push(profile::profile(name, &read(report)?, cpu));
    }
    print!("{}", profile::table(&profiles));
    if let Some(p) = json {
        write_file(p, "JSON", |w| {
            serde_json::to_writer_pretty(&mut *w, &profiles).map_err(std::io::Error::other)
        })?;
    }
    Ok(true)
}

fn sweep_cmd(s: &config::SweepArgs) -> Result<bool, LoadError> {
    let rates = match &s.rates {
        Some(list) => list.clone(),
        None => sweep::rates(s.from, s.to, s.steps).map_err(LoadError)?,
    };
    let result = sweep::run(&s.run, &rates, s.p99_bound, |st| {
        eprintln!(
            "ringecho-loadgen: sweep step {:.0} msg/s: achieved {:.0}, p99 {} µs{}",
            st.rate,
            st.achieved,
            st.p99_us,
            if st.loadgen_limited {
                " (loadgen-limited)"
            } else {
                ""
            }
        );
    })?;
    print!("{}", result.table());
    if let Some(p) = &s.run.json {
        write_file(p, "JSON", |w| {
            serde_json::to_writer_pretty(&mut *w, &result).map_err(std::io::Error::other)
        })?;
    }
    if let Some(p) = &s.svg {
        sweep::plot(
            p,
            &format!("latency–load: {}", result.label),
            std::slice::from_ref(&result),
        )
        .map_err(|e| LoadError(format!("cannot plot: {e}")))?;
    }
    Ok(result.steps.iter().all(|st| st.clean))
}

fn plot_sweeps(out: &Path, title: &str, files: &[std::path::PathBuf]) -> Result<bool, LoadError> {
    let mut sweeps = Vec::with_capacity(files.len());
    for f in files {
        let text = std::fs::read_to_string(f)
            .map_err(|e| LoadError(format!("cannot read {}: {e}", f.display())))?;
        sweeps.push(
            serde_json::from_str::<sweep::Sweep>(&text)
                .map_err(|e| LoadError(format!("{} is not a sweep: {e}", f.display())))?,
        );
    }
    sweep::plot(out, title, &sweeps).map_err(|e| LoadError(format!("cannot plot: {e}")))?;
    Ok(true)
}

fn compare(
    files: &[std::path::PathBuf],
    baseline: &str,
    json: Option<&Path>,
) -> Result<bool, LoadError> {
    let mut reports = Vec::with_capacity(files.len());
    for f in files {
        let text = std::fs::read_to_string(f)
            .map_err(|e| LoadError(format!("cannot read {}: {e}", f.display())))?;
        let r: Report = serde_json::from_str(&text)
            .map_err(|e| LoadError(format!("{} is not a loadgen report: {e}", f.display())))?;
        reports.push(r);
    }
    let rows = compare::summarise(&reports, baseline);
    print!("{}", compare::table(&rows, baseline));
    if let Some(p) = json {
        write_file(p, "JSON", |w| {
            serde_json::to_writer_pretty(&mut *w, &rows).map_err(std::io::Error::other)
        })?;
    }
    Ok(reports.iter().all(Report::is_clean))
}

fn merge(m: &config::MergeArgs) -> Result<bool, LoadError> {
    let merged =
        report::merge_logs(&m.files).map_err(|e| LoadError(format!("cannot merge: {e}")))?;
    print!("{}", merged.summary());
    let mut ok = merged.is_clean();
    let hosts = merged.tags.get("hosts").cloned().unwrap_or_default();
    println!("  hosts        {} logs: {hosts}", m.files.len());
    if let Some(n) = m.expect {
        if m.files.len() as u64 != n {
            println!(
                "  INCOMPLETE   {} of the {n} expected logs: a loadgen did not finish; these totals are not the run's",
                m.files.len()
            );
            ok = false;
        }
    }
    if let (Some(before), Some(after)) = (&m.server_before, &m.server_after) {
        let read = |p: &Path| {
            std::fs::read_to_string(p)
                .map_err(|e| LoadError(format!("cannot read {}: {e}", p.display())))
        };
        let (b, a) = (read(before)?, read(after)?);
        let bad = |e: std::io::Error| LoadError(format!("a server scrape is not usable: {e}"));
        let closes = witness::parse_closes(&a)
            .map_err(bad)?
            .since(&witness::parse_closes(&b).map_err(bad)?);
        let (ta, tb) = (
            witness::parse_totals(&a).map_err(bad)?,
            witness::parse_totals(&b).map_err(bad)?,
        );
        let (receives, bytes) = (
            ta.receives.saturating_sub(tb.receives),
            ta.bytes.saturating_sub(tb.bytes),
        );
        // An echo server has no framing: between it and the loadgens only bytes and closes
        // can be compared (pipelined messages share a receive, a large one spans several).
        let agrees = closes.fin == merged.closes.fin
            && closes.rst == merged.closes.rst
            && bytes == merged.bytes_total;
        println!(
            "  server saw   fin {}  rst {}  bytes {}  (loadgens: fin {} rst {} bytes {}: {}); in {receives} receives for {} messages",
            closes.fin,
            closes.rst,
            bytes,
            merged.closes.fin,
            merged.closes.rst,
            merged.bytes_total,
            if agrees { "agrees" } else { "DISAGREES" },
            merged.messages_total,
        );
        if let (Ok(pb), Ok(pa)) = (witness::parse_process(&b), witness::parse_process(&a)) {
            let cost = witness::ServerCost::between(0, &pb, &pa, merged.messages_total, None);
            println!(
                "  server cpu   {:.2} µs/msg (user {:.2}, sys {:.2}) over every echo of the run, from its /metrics",
                cost.cpu_us_per_msg, cost.user_us_per_msg, cost.sys_us_per_msg
            );
        }
        ok &= agrees;
    }
    if let Some(p) = &m.json {
        write_json(p, &merged)?;
    }
    Ok(ok)
}
