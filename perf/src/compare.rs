//! The comparison, end to end (`ringecho-perf compare`, which scripts/compare.sh runs): every
//! server under the same load, interleaved round by round (A B C A B C), server and loadgen
//! pinned to different cores, capped scenarios in a cgroup; then the summary, the table, the
//! plots, the profile and report.html. A server that never listens, dies or corrupts an echo
//! gets a FAILED row and the run goes on; the comparison then exits 1.
//!
//! The settings are derived once, in [`Plan::new`]; the state of a comparison in progress is
//! one [`Bench`], whose [`Bench::run`] reads as the comparison's steps.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;
use ringecho_loadgen::report::Report;

use crate::cap::{Cap, PERIOD_US};
use crate::cores::Split;
use crate::loadgen::{Interrupt, Loadgen, SOURCE_ADDRS};
use crate::scenario::{self, Scenario};
use crate::server::{create, describe, tail, with_suffix, Launcher, Running, Spec};
use crate::{list, nonempty, write};

/// compare.sh's flags (a contract: scripts and tests outside the checkout rely on them); the environment's SCENARIOS, BACKENDS,
/// ROUNDS, DURATION and WARMUP stand in for missing ones.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Short windows (1 s, 300 ms warm-up), no syscall pass, and the quick scenarios
    /// (c100x64, churn, sweep) unless --scenarios names others.
    #[arg(long)]
    pub quick: bool,
    /// Scenarios to run, comma-separated (`ringecho-perf scenarios` lists a default run's).
    #[arg(long, env = "SCENARIOS")]
    pub scenarios: Option<String>,
    /// Built-in backends to run, comma-separated; '' compares --server rows alone.
    #[arg(
        long,
        env = "BACKENDS",
        default_value = "epoll-loop,multishot,epoll,uring"
    )]
    pub backends: String,
    /// The server the × columns divide by [default: epoll-loop, the hand-written epoll
    /// loop, when it runs; else epoll; else the first server].
    #[arg(long)]
    pub baseline: Option<String>,
    /// Any echo server as NAME='COMMAND', {addr} (127.0.0.1:PORT) and {port} substituted;
    /// pinned like the built-in ones, measured from outside (/proc, the kernel). Repeatable.
    #[arg(long = "server", value_name = "NAME=COMMAND", value_parser = Spec::external)]
    pub servers: Vec<Spec>,
    /// Rounds per scenario (servers interleaved within each).
    #[arg(long, env = "ROUNDS", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    pub rounds: u32,
    /// Each run's measured window [default: 2s; 1s with --quick].
    #[arg(long, env = "DURATION", value_parser = duration)]
    pub duration: Option<String>,
    /// Each run's warm-up [default: 700ms; 300ms with --quick].
    #[arg(long, env = "WARMUP", value_parser = duration_or_zero)]
    pub warmup: Option<String>,
    /// The results directory [default: results/<UTC time>].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// No syscall-counting pass (it needs perf and costs a short run per server).
    #[arg(long)]
    pub no_syscalls: bool,
    /// The sweep's offered rates, comma-separated (default: 10,000 to 640,000 doubling).
    #[arg(long)]
    pub sweep_rates: Option<String>,
    /// The capped scenarios' CPU, in cores per server thread (a cgroup quota; needs root).
    #[arg(long, default_value_t = 0.3, value_parser = fraction)]
    pub cap: f64,
    /// The reference peers as --server rows (liburing, c-epoll, tokio, monoio; =NAME,NAME
    /// for some), fetched and built by scripts/peers.sh.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "all", value_name = "NAMES")]
    pub peers: Option<String>,
    /// Where scripts/peers.sh builds the peers [default: ~/.cache/ringecho-peers].
    #[arg(long)]
    pub peers_cache: Option<PathBuf>,
    /// One more short run of the plot scenario per server under `perf record -e cpu-clock
    /// -g`: its CPU per message by category (profile.txt, profile.json, report.html).
    #[arg(long)]
    pub profile: bool,
    /// Then each server once more per round at the same time as the baseline, the two
    /// sharing the cores, so both see the same machine: their CPU per message ratio without
    /// the drift between runs (paired.txt, paired.json, report.html).
    #[arg(long)]
    pub paired: bool,
}

/// A duration checked by the one rule every program reads durations by, handed on to the
/// loadgen as written.
fn duration(s: &str) -> Result<String, String> {
    ringecho_common::parse_duration(s).map(|_| s.to_string())
}

/// As [`duration`], zero allowed (a `0s` warm-up).
fn duration_or_zero(s: &str) -> Result<String, String> {
    ringecho_common::parse_duration_or_zero(s).map(|_| s.to_string())
}

fn fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if f > 0.0 && f.is_finite() => Ok(f),
        _ => Err(format!("'{s}' is not a positive fraction of a core (0.3)")),
    }
}

/// The scenario whose latency percentiles are plotted and profiled, when it runs.
const PLOT_SCENARIO: &str = "c1000x64";

/// A comparison's settings, derived from the flags in one place.
#[derive(Debug)]
pub struct Plan {
    scenarios: Vec<&'static Scenario>,
    servers: Vec<Spec>,
    rounds: u32,
    duration: String,
    warmup: String,
    quick: bool,
    syscalls: bool,
    out: PathBuf,
    sweep_range: Vec<String>,
    cap: f64,
    profile: bool,
    paired: bool,
    baseline: String,
    plot_scenario: String,
}

impl Plan {
    /// The plan for `opts`; the error is a usage error (exit 2). Fetches and builds the
    /// peers when asked.
    pub fn new(opts: Options) -> crate::Result<Plan> {
        Plan::from_options(opts).map_err(crate::Error::Usage)
    }

    fn from_options(opts: Options) -> Result<Plan, String> {
        let list = opts
            .scenarios
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| scenario::defaults(opts.quick));
        let scenarios = scenarios(&list)?;
        let servers = servers(&opts.backends, opts.servers, &opts.peers, &opts.peers_cache)?;
        let names: Vec<&str> = servers.iter().map(Spec::name).collect();
        if opts.paired && names.len() < 2 {
            return Err("--paired needs at least two servers".into());
        }
        let baseline = match &opts.baseline {
            Some(b) if names.contains(&b.as_str()) => b.clone(),
            Some(b) => {
                return Err(format!(
                    "--baseline {b}: not among the servers compared ({})",
                    names.join(", ")
                ))
            }
            None => ["epoll-loop", "epoll"]
                .into_iter()
                .find(|b| names.contains(b))
                .unwrap_or(names[0])
                .to_string(),
        };
        let plot_scenario = if scenarios.iter().any(|s| s.name == PLOT_SCENARIO) {
            PLOT_SCENARIO
        } else {
            scenarios[0].name
        };
        let (steps, from, to) = if opts.quick {
            ("3", "5000", "20000")
        } else {
            ("7", "10000", "640000")
        };
        let sweep_range = match opts.sweep_rates {
            Some(r) => vec!["--rates".into(), r],
            None => ["--from", from, "--to", to, "--steps", steps]
                .map(String::from)
                .to_vec(),
        };
        let (duration, warmup) = if opts.quick {
            ("1s", "300ms")
        } else {
            ("2s", "700ms")
        };
        Ok(Plan {
            baseline,
            plot_scenario: plot_scenario.to_string(),
            scenarios,
            servers,
            rounds: opts.rounds,
            duration: opts.duration.unwrap_or_else(|| duration.into()),
            warmup: opts.warmup.unwrap_or_else(|| warmup.into()),
            quick: opts.quick,
            syscalls: !opts.quick && !opts.no_syscalls,
            out: opts
                .out
                .unwrap_or_else(|| PathBuf::from("results").join(crate::stamp())),
            sweep_range,
            cap: opts.cap,
            profile: opts.profile,
            paired: opts.paired,
        })
    }
}

impl Plan {
    /// Asks the ringecho-server in `bin` whether it knows each backend named, so that a
    /// misspelt one is a usage error now rather than a FAILED row in every scenario: its own
    /// flag parser answers (`--backend NAME --generate man` parses and prints, or refuses).
    pub fn check_backends(&self, bin: &Path) -> crate::Result<()> {
        self.backends_run(bin).map_err(crate::Error::Usage)
    }

    fn backends_run(&self, bin: &Path) -> Result<(), String> {
        let exe = bin.join("ringecho-server");
        for s in &self.servers {
            let Spec::Backend(name) = s else { continue };
            let out = Command::new(&exe)
                .args(["--backend", name, "--generate", "man"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .output()
                .map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
            if !out.status.success() {
                let err = String::from_utf8_lossy(&out.stderr);
                let line = err
                    .lines()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("refused");
                return Err(format!("--backends {name}: ringecho-server says: {line}"));
            }
        }
        Ok(())
    }
}

/// The scenarios a comma-separated list names.
fn scenarios(list: &str) -> Result<Vec<&'static Scenario>, String> {
    list.split(',')
        .map(|name| {
            scenario::find(name).ok_or_else(|| {
                let known: Vec<&str> = scenario::ALL.iter().map(|s| s.name).collect();
                format!("unknown scenario '{name}' (known: {})", known.join(" "))
            })
        })
        .collect()
}

/// The servers in run order: built-in backends, then --server rows, then the peers; at least
/// one, each name once.
fn servers(
    backends: &str,
    external: Vec<Spec>,
    peers_wanted: &Option<String>,
    cache: &Option<PathBuf>,
) -> Result<Vec<Spec>, String> {
    let mut servers: Vec<Spec> = backends
        .split(',')
        .filter(|b| !b.is_empty())
        .map(|b| Spec::Backend(b.to_string()))
        .collect();
    servers.extend(external);
    if let Some(only) = peers_wanted {
        servers.extend(peers(only, cache.as_deref()));
    }
    if servers.is_empty() {
        return Err("nothing to compare (no --backends, no --server)".into());
    }
    for (i, s) in servers.iter().enumerate() {
        if servers[..i].iter().any(|t| t.name() == s.name()) {
            return Err(format!("two servers are called '{}'", s.name()));
        }
    }
    Ok(servers)
}

/// The reference peers' --server rows from scripts/peers.sh (`NAME=COMMAND` lines); one it
/// cannot fetch or build is named on stderr by the script, and the run goes on without it.
fn peers(only: &str, cache: Option<&Path>) -> Vec<Spec> {
    eprintln!("compare: fetching and building the reference peers (scripts/peers.sh)");
    if !Path::new("scripts/peers.sh").is_file() {
        eprintln!(
            "compare: no peers: scripts/peers.sh is not in this directory (run from the \
             checkout, as scripts/compare.sh does)"
        );
        return Vec::new();
    }
    let mut cmd = Command::new("bash");
    cmd.arg("scripts/peers.sh");
    if let Some(c) = cache {
        cmd.arg("--cache").arg(c);
    }
    if only != "all" {
        cmd.args(["--only", only]);
    }
    let out = match cmd.stderr(Stdio::inherit()).output() {
        Ok(out) => out,
        Err(e) => {
            eprintln!("compare: no peers: cannot run scripts/peers.sh: {e}");
            return Vec::new();
        }
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .filter_map(|l| {
            Spec::external(l)
                .map_err(|e| eprintln!("compare: peers.sh gave a bad row: {e}"))
                .ok()
        })
        .collect()
}

/// A comparison in progress: the plan, the machine's split, how servers and the loadgen are
/// started, the cap, and whether anything failed.
pub struct Bench {
    plan: Plan,
    split: Split,
    launcher: Launcher,
    loadgen: Loadgen,
    /// The capped scenarios' cgroup, or why there is none (made only if one is planned).
    cap: Option<crate::Result<Cap>>,
    failed: bool,
    interrupt: Interrupt,
    /// The ringecho-server binary, asked for the kernel's io_uring features.
    server_exe: PathBuf,
}

/// One run's identity: its scenario, server and round (`1`, `2`, … or `sc`).
struct RunId<'a> {
    scenario: &'a Scenario,
    server: &'a Spec,
    round: String,
}

impl RunId<'_> {
    /// `OUT/SCENARIO-SERVER-ROUND`, the prefix of the run's files.
    fn log(&self, out: &Path) -> PathBuf {
        out.join(format!(
            "{}-{}-{}",
            self.scenario.name,
            self.server.name(),
            self.round
        ))
    }
}

impl Bench {
    /// A comparison of `plan`, with ringecho-server and ringecho-loadgen from `bin`; SIGINT
    /// and SIGTERM end it between runs, servers stopped and the cgroup removed.
    pub fn new(plan: Plan, bin: &Path) -> crate::Result<Bench> {
        let split = Split::here();
        Ok(Bench {
            launcher: Launcher::new(bin, &split),
            loadgen: Loadgen::new(bin, &split),
            split,
            plan,
            cap: None,
            failed: false,
            interrupt: Interrupt::catch()?,
            server_exe: bin.join("ringecho-server"),
        })
    }

    /// Runs the comparison; true if every server and run succeeded.
    pub fn run(mut self) -> crate::Result<bool> {
        std::fs::create_dir_all(&self.plan.out)
            .map_err(|e| format!("cannot create {}: {e}", self.plan.out.display()))?;
        self.describe_machine()?;
        if self.plan.syscalls {
            if let Err(why) = ringecho_common::perf::syscall_counting() {
                eprintln!("compare: the syscall pass skipped: {why}");
                self.plan.syscalls = false;
            }
        }
        for scenario in self.plan.scenarios.clone() {
            eprintln!("scenario {}: {}", scenario.name, scenario.flags);
            self.scenario(scenario)?;
        }
        eprintln!();
        self.summarise()?;
        if self.plan.paired {
            self.paired()?;
        }
        if self.plan.profile {
            self.profile()?;
        }
        self.plot()?;
        self.report()?;
        eprintln!(
            "compare: results in {} (report.html, table.txt, summary.json, plots, one JSON per run)",
            self.plan.out.display()
        );
        if self.failed {
            eprintln!("compare: FAILED: at least one server or run failed (see the table)");
        }
        Ok(!self.failed)
    }

    /// machine.txt: when, which kernel and CPU, the split, the windows, and the cap.
    fn describe_machine(&mut self) -> crate::Result<()> {
        let p = &self.plan;
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or("", |(_, m)| m.trim());
        let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get());
        let s = &self.split;
        let io_uring = Command::new(&self.server_exe)
            .arg("--probe")
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .trim()
                    .replace('\n', "; ")
            })
            .unwrap_or_else(|e| format!("io_uring: unknown ({e})"));
        let mut text = format!(
            "date: {}\nkernel: {}\ncpus: {ncpu} ({model})\ncaches: {}\n{io_uring}\n{}\n\
             server: taskset -c {}, {} threads; loadgen: taskset -c {}, {} threads\n\
             warmup {}, duration {}, rounds {}\n\
             per run (table.txt, summary.json): the server's cores' busy µs per message from \
             /proc/stat beside its process CPU, and the time stolen from them\n",
            humantime::format_rfc3339_seconds(std::time::SystemTime::now()),
            kernel(),
            caches(),
            ringecho_common::perf::describe(),
            s.server_cpus,
            s.server_threads,
            s.loadgen_cpus,
            s.loadgen_threads,
            p.warmup,
            p.duration,
            p.rounds,
        );
        if p.scenarios.iter().any(|s| s.capped()) {
            let cap = Cap::create(p.cap, s.server_threads);
            if let Ok(c) = &cap {
                let line = format!(
                    "cap: the server at {} of a core per thread ({} µs per {PERIOD_US} µs, a \
                     cgroup per server run under {})\n",
                    p.cap,
                    c.quota_us,
                    c.dir().display()
                );
                text.push_str(&line);
            }
            self.cap = Some(cap);
        }
        eprint!("{text}");
        crate::write_json(&p.out.join("machine.json"), &machine_json(&text))?;
        write(&p.out.join("machine.txt"), &text)
    }

    /// One scenario: its rounds, servers interleaved, then the syscall pass; or the sweep.
    fn scenario(&mut self, scenario: &'static Scenario) -> crate::Result<()> {
        let servers = self.plan.servers.clone();
        if scenario.name == "sweep" {
            for server in &servers {
                self.sweep(scenario, server)?;
            }
            return Ok(());
        }
        if scenario.capped() {
            if let Some(Err(why)) = &self.cap {
                eprintln!("compare: {} skipped: {why}", scenario.name);
                return Ok(());
            }
        }
        let (warmup, duration) = (self.plan.warmup.clone(), self.plan.duration.clone());
        for round in 1..=self.plan.rounds {
            for server in &servers {
                let id = RunId {
                    scenario,
                    server,
                    round: round.to_string(),
                };
                self.measure(&id, &warmup, &duration, &[])?;
            }
        }
        if self.plan.syscalls && scenario.name != "idle10k" {
            // Counting syscalls costs the server a little per call: a short pass of its own,
            // whose other figures are not used.
            for server in &servers {
                let id = RunId {
                    scenario,
                    server,
                    round: "sc".into(),
                };
                let extra = ["--count-syscalls", "--tag", "pass=syscalls"];
                self.measure(&id, "300ms", "1s", &extra)?;
            }
        }
        Ok(())
    }

    /// One measured run: the server started (and capped), the loadgen run against it, the
    /// server stopped; a FAILED row where any of it went wrong.
    fn measure(
        &mut self,
        id: &RunId,
        warmup: &str,
        duration: &str,
        extra: &[&str],
    ) -> crate::Result<()> {
        let log = id.log(&self.plan.out);
        let server = match self.launcher.start(id.server, &log) {
            Ok(s) => s,
            Err(why) => return self.failed_row(id, &log, &format!("the server {why}")),
        };
        let _held = match (&self.cap, id.scenario.capped()) {
            (Some(Ok(cap)), true) => {
                let name = format!("{}-{}", id.server.name(), id.round);
                match cap
                    .server(&name)
                    .and_then(|h| h.hold(server.pid()).map(|()| h))
                {
                    Ok(held) => Some(held),
                    Err(why) => return self.failed_row(id, &log, &why.to_string()),
                }
            }
            _ => None,
        };
        let mut args = run_args(&server, id.scenario, warmup, duration);
        if let Some(url) = &server.metrics_url {
            args.extend(["--server-metrics".to_string(), url.clone()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        for tag in [
            format!("scenario={}", id.scenario.name),
            format!("backend={}", id.server.name()),
            format!("round={}", id.round),
        ] {
            args.extend(["--tag".to_string(), tag]);
        }
        let json = path(&with_suffix(&log, ".json"));
        let hgrm = path(&with_suffix(&log, ".hgrm"));
        args.extend(["--json".into(), json, "--hgrm".into(), hgrm]);
        let loadgen = self.loadgen(None, &args, &log)?;
        self.judge(id, &log, loadgen, server)
    }

    /// After a run: the server stopped, and a FAILED row if it died, exited badly or the
    /// loadgen left no report; otherwise the run's throughput on stderr.
    fn judge(
        &mut self,
        id: &RunId,
        log: &Path,
        loadgen: ExitStatus,
        mut server: Running,
    ) -> crate::Result<()> {
        if !server.is_alive() {
            let _ = server.stop();
            return self.failed_row(id, log, "the server died during the run");
        }
        let stopped = server.stop();
        let err = with_suffix(log, ".err");
        if !nonempty(&with_suffix(log, ".json")) {
            let why = format!("the loadgen could not run: {}", tail(&err, 1));
            return self.failed_row(id, log, &why);
        }
        if !loadgen.success() {
            self.failed = true;
            let err = std::fs::read_to_string(err).unwrap_or_default();
            let last = err.lines().rfind(|l| l.contains("error"));
            let said = last.unwrap_or("the loadgen failed");
            eprintln!(
                "compare: {} in {} round {}: {said}",
                id.server.name(),
                id.scenario.name,
                id.round
            );
        }
        // Built-in servers drain and exit 0 on SIGTERM; external ones may die by the signal.
        match stopped {
            Err(why) => return self.failed_row(id, log, &format!("the server {why}")),
            Ok(status) if !status.success() && !id.server.is_external() => {
                let why = format!(
                    "the server exited with {}: {}",
                    describe(status),
                    tail(&with_suffix(log, ".server.err"), 1)
                );
                return self.failed_row(id, log, &why);
            }
            Ok(_) => {}
        }
        let text = std::fs::read_to_string(with_suffix(log, ".txt")).unwrap_or_default();
        let throughput = text
            .lines()
            .find_map(|l| l.trim_start().strip_prefix("throughput "))
            .unwrap_or("")
            .trim();
        let name = log
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        eprintln!("  {name:<28} {throughput}");
        Ok(())
    }

    /// The latency–load curve of one server.
    fn sweep(&mut self, scenario: &Scenario, server: &Spec) -> crate::Result<()> {
        let log = self.plan.out.join(format!("sweep-{}", server.name()));
        let mut running = match self.launcher.start(server, &log) {
            Ok(s) => s,
            Err(why) => {
                self.failed = true;
                eprintln!(
                    "compare: sweep of {} skipped: the server {why}",
                    server.name()
                );
                return Ok(());
            }
        };
        let (duration, warmup) = if self.plan.quick {
            ("500ms", "200ms")
        } else {
            ("1s", "300ms")
        };
        let mut args = run_args(&running, scenario, warmup, duration);
        args.extend(self.plan.sweep_range.iter().cloned());
        args.extend(["--tag".into(), format!("backend={}", server.name())]);
        args.extend(["--json".into(), path(&with_suffix(&log, ".json"))]);
        if !self.loadgen(Some("sweep"), &args, &log)?.success() {
            self.failed = true;
            let why = tail(&with_suffix(&log, ".err"), 1);
            eprintln!("compare: sweep of {}: {why}", server.name());
        }
        if !running.is_alive() {
            self.failed = true;
            eprintln!("compare: {} died during its sweep", server.name());
        }
        let _ = running.stop();
        eprint!(
            "{}",
            std::fs::read_to_string(with_suffix(&log, ".txt")).unwrap_or_default()
        );
        Ok(())
    }

    /// Runs the loadgen (`sub`command, if any) pinned to the loadgen cores with the split's
    /// threads and the source addresses, then `args`; its output in `LOG.txt` and `LOG.err`.
    fn loadgen(&self, sub: Option<&str>, args: &[String], log: &Path) -> crate::Result<ExitStatus> {
        let (all, out, err) = self.loadgen_run(sub, args, log)?;
        self.loadgen.run(&all, out, err, &self.interrupt)
    }

    /// A loadgen run's full arguments and output files, as [`Bench::loadgen`] describes.
    fn loadgen_run(
        &self,
        sub: Option<&str>,
        args: &[String],
        log: &Path,
    ) -> crate::Result<(Vec<String>, File, File)> {
        let mut all: Vec<String> = sub.into_iter().map(String::from).collect();
        all.extend(["--threads".into(), self.split.loadgen_threads.to_string()]);
        all.extend(["--source-addrs", SOURCE_ADDRS].map(String::from));
        all.extend(args.iter().cloned());
        let out = create(&with_suffix(log, ".txt"))?;
        let err = create(&with_suffix(log, ".err"))?;
        Ok((all, out, err))
    }

    /// Writes the run's JSON as a FAILED row saying why, and marks the comparison failed.
    fn failed_row(&mut self, id: &RunId, log: &Path, why: &str) -> crate::Result<()> {
        self.failed = true;
        let report = Report {
            failure: Some(why.to_string()),
            tags: [
                ("scenario", id.scenario.name.to_string()),
                ("backend", id.server.name().to_string()),
                ("round", id.round.clone()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
            ..Default::default()
        };
        crate::write_json(&with_suffix(log, ".json"), &report)?;
        eprintln!(
            "compare: {} in {} round {} FAILED: {why}",
            id.server.name(),
            id.scenario.name,
            id.round
        );
        self.interrupt.check()
    }

    /// table.txt and summary.json from every run's JSON; a run that was not clean fails the
    /// comparison.
    fn summarise(&mut self) -> crate::Result<()> {
        let mut files = Vec::new();
        for s in self.plan.scenarios.iter().filter(|s| s.name != "sweep") {
            let prefix = format!("{}-", s.name);
            let mut mine: Vec<PathBuf> = list(&self.plan.out)?
                .into_iter()
                .filter(|n| n.starts_with(&prefix) && n.ends_with(".json"))
                .map(|n| self.plan.out.join(n))
                .collect();
            mine.sort();
            files.extend(mine);
        }
        if files.is_empty() {
            return Ok(());
        }
        let reports = crate::read_reports(&files)?;
        let rows = crate::summary::summarise(&reports, &self.plan.baseline);
        let table = crate::summary::table(&rows, &self.plan.baseline);
        print!("{table}");
        write(&self.plan.out.join("table.txt"), &table)?;
        crate::write_json(&self.plan.out.join("summary.json"), &rows)?;
        if !reports.iter().all(Report::is_clean) {
            self.failed = true;
        }
        Ok(())
    }

    /// `--paired`: each server beside the baseline, round by round, in every scenario with
    /// messages and no cap ([`crate::paired`] says why); paired.txt and paired.json.
    fn paired(&mut self) -> crate::Result<()> {
        let dir = self.plan.out.join("paired");
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let servers = self.plan.servers.clone();
        let Some(base) = servers.iter().find(|s| s.name() == self.plan.baseline) else {
            return Ok(());
        };
        let scenarios: Vec<&Scenario> = self
            .plan
            .scenarios
            .iter()
            .copied()
            .filter(|s| !s.capped() && !matches!(s.name, "sweep" | "idle10k"))
            .collect();
        let mut pairs = Vec::new();
        for scenario in scenarios {
            eprintln!(
                "paired {}: each server beside {}",
                scenario.name,
                base.name()
            );
            for round in 1..=self.plan.rounds {
                for other in servers.iter().filter(|s| s.name() != base.name()) {
                    match self.pair(scenario, base, other, round, &dir) {
                        Ok(p) => {
                            eprintln!(
                                "  {:<28} {:.3} µs/msg beside {:.3}: ×{:.3}",
                                format!("{}-{}-{round}", scenario.name, other.name()),
                                p.server_cpu,
                                p.baseline_cpu,
                                p.server_cpu / p.baseline_cpu
                            );
                            pairs.push(p);
                        }
                        Err(why) => {
                            self.failed = true;
                            eprintln!(
                                "compare: {} beside {} in {} round {round} FAILED: {why}",
                                other.name(),
                                base.name(),
                                scenario.name
                            );
                        }
                    }
                    self.interrupt.check()?;
                }
            }
        }
        let rows = crate::paired::rows(&pairs, base.name());
        let table = crate::paired::table(&rows, base.name());
        eprint!("{table}");
        write(&self.plan.out.join("paired.txt"), &table)?;
        crate::write_json(&self.plan.out.join("paired.json"), &rows)
    }

    /// One paired run: `base` and `other` started, a loadgen against each at once, both
    /// stopped; their CPU per message.
    fn pair(
        &self,
        scenario: &Scenario,
        base: &Spec,
        other: &Spec,
        round: u32,
        dir: &Path,
    ) -> crate::Result<crate::paired::Pair> {
        let name = |s: &Spec| format!("{}-{}-{round}", scenario.name, s.name());
        let logs = [
            dir.join(format!("{}-beside-{}", name(base), other.name())),
            dir.join(name(other)),
        ];
        let mut running = Vec::new();
        for (spec, log) in [base, other].into_iter().zip(&logs) {
            let server = self
                .launcher
                .start(spec, log)
                .map_err(|why| format!("{} {why}", spec.name()))?;
            running.push(server);
        }
        let mut runs = Vec::new();
        for (server, log) in running.iter().zip(&logs) {
            let (warmup, duration) = (&self.plan.warmup, &self.plan.duration);
            let mut args = run_args(server, scenario, warmup, duration);
            args.extend(["--json".into(), path(&with_suffix(log, ".json"))]);
            runs.push(self.loadgen_run(None, &args, log)?);
        }
        let statuses = self.loadgen.run_all(runs, &self.interrupt)?;
        let mut cpu = Vec::new();
        let sides = [base, other]
            .into_iter()
            .zip(running)
            .zip(&logs)
            .zip(statuses);
        for (((spec, mut server), log), status) in sides {
            if !server.is_alive() {
                return Err(format!("{} died during the run", spec.name()).into());
            }
            let _ = server.stop();
            let json = with_suffix(log, ".json");
            if !status.success() || !nonempty(&json) {
                let why = tail(&with_suffix(log, ".err"), 1);
                return Err(format!("the loadgen against {} failed: {why}", spec.name()).into());
            }
            let report = crate::read_report(&json)?;
            let c = report
                .server
                .map(|s| s.cpu_us_per_msg)
                .filter(|c| *c > 0.0)
                .ok_or_else(|| format!("no server CPU for {}", spec.name()))?;
            cpu.push(c);
        }
        Ok(crate::paired::Pair {
            scenario: scenario.name.to_string(),
            server: other.name().to_string(),
            server_cpu: cpu[1],
            baseline_cpu: cpu[0],
        })
    }

    /// `--profile`: one more run of the plot scenario per server under perf record, its CPU
    /// per message split by category; skipped with the reason where perf is missing.
    fn profile(&mut self) -> crate::Result<()> {
        let out = self.plan.out.clone();
        if let Err(why) = ringecho_common::perf::kernel_profiling() {
            let why = format!("--profile skipped: {why}");
            eprintln!("compare: {why}");
            return write(&out.join("profile.txt"), &format!("{why}\n"));
        }
        let scenario = scenario::find(&self.plan.plot_scenario).expect("a planned scenario");
        eprintln!(
            "compare: profiling each server ({}, perf record -e cpu-clock -g)",
            scenario.name
        );
        let mut profiles = Vec::new();
        for server in self.plan.servers.clone() {
            let log = out.join(format!("profile-{}", server.name()));
            match self.profile_one(scenario, &server, &log) {
                Ok(p) => profiles.push(p),
                Err(why) => eprintln!("compare: no profile of {}: {why}", server.name()),
            }
            self.interrupt.check()?;
        }
        if !profiles.is_empty() {
            let table = crate::profile::table(&profiles);
            print!("{table}");
            write(&out.join("profile.txt"), &table)?;
            crate::write_json(&out.join("profile.json"), &profiles)?;
        }
        Ok(())
    }

    /// One server's profile: perf record over a run, then perf script, categorised.
    fn profile_one(
        &self,
        scenario: &Scenario,
        server: &Spec,
        log: &Path,
    ) -> crate::Result<crate::profile::Profile> {
        let data = with_suffix(log, ".data");
        let perf_err = with_suffix(log, ".perf.err");
        let running = self
            .launcher
            .start(server, log)
            .map_err(|why| format!("the server {why}"))?;
        let mut perf = Command::new("perf")
            .args(["record", "-q", "-e", "cpu-clock", "-g", "-p"])
            .arg(running.pid().to_string())
            .arg("-o")
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(create(&perf_err)?)
            .spawn()
            .map_err(|e| format!("cannot start perf: {e}"))?;
        std::thread::sleep(Duration::from_millis(300));
        let mut args = run_args(&running, scenario, &self.plan.warmup, &self.plan.duration);
        let json = with_suffix(log, ".json");
        args.extend(["--json".into(), path(&json)]);
        let ran = self.loadgen(None, &args, log);
        let _ =
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(perf.id() as i32), Signal::SIGINT);
        let _ = perf.wait();
        let _ = running.stop();
        ran?;
        let script = Command::new("perf")
            .args(["script", "-F", "ip,sym,dso", "-i"])
            .arg(&data)
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| format!("cannot run perf script: {e}"));
        let _ = std::fs::remove_file(&data);
        let script = script?;
        if !script.status.success() {
            return Err(String::from_utf8_lossy(&script.stderr)
                .trim()
                .to_string()
                .into());
        }
        if !nonempty(&json) {
            return Err(format!(
                "the loadgen could not run: {}",
                tail(&with_suffix(log, ".err"), 1)
            )
            .into());
        }
        let cpu = crate::read_report(&json)?
            .server
            .map(|s| s.cpu_us_per_msg)
            .ok_or("the run has no server CPU")?;
        let text = String::from_utf8_lossy(&script.stdout);
        Ok(crate::profile::profile(server.name(), &text, cpu))
    }

    /// The latency percentiles of the plot scenario's first round, and the sweeps' curves.
    fn plot(&self) -> crate::Result<()> {
        let out = &self.plan.out;
        let k = kernel();
        let curves: Vec<(String, PathBuf)> = self
            .plan
            .servers
            .iter()
            .map(|s| {
                let f = out.join(format!("{}-{}-1.hgrm", self.plan.plot_scenario, s.name()));
                (s.name().to_string(), f)
            })
            .filter(|(_, f)| nonempty(f))
            .collect();
        if !curves.is_empty() {
            let title = format!("echo latency, {} ({k})", self.plan.plot_scenario);
            let svg = out.join(format!("latency-{}.svg", self.plan.plot_scenario));
            ringecho_loadgen::plot::plot_hgrm(&svg, &title, &curves)
                .map_err(|e| format!("cannot plot: {e}"))?;
        }
        let mut sweeps = Vec::new();
        for s in &self.plan.servers {
            let f = out.join(format!("sweep-{}.json", s.name()));
            if nonempty(&f) {
                let text = crate::read(&f)?;
                sweeps.push(
                    serde_json::from_str::<ringecho_loadgen::sweep::Sweep>(&text)
                        .map_err(|e| format!("{} is not a sweep: {e}", f.display()))?,
                );
            }
        }
        if !sweeps.is_empty() {
            let title = format!("latency against offered load ({k})");
            ringecho_loadgen::sweep::plot(&out.join("latency-load.svg"), &title, &sweeps)
                .map_err(|e| format!("cannot plot: {e}"))?;
        }
        Ok(())
    }

    /// report.html.
    fn report(&self) -> crate::Result<()> {
        let p = &self.plan;
        let page = crate::html::page(&p.out, &p.baseline, &p.plot_scenario)?;
        write(&p.out.join("report.html"), &page)
    }
}

/// The loadgen flags every run against a server shares: where it listens, the scenario's
/// flags, the windows, and its process id for the server's CPU figures.
fn run_args(server: &Running, scenario: &Scenario, warmup: &str, duration: &str) -> Vec<String> {
    let mut args = vec!["--addr".to_string(), server.addr.to_string()];
    args.extend(scenario.flags.split_whitespace().map(String::from));
    args.extend(["--warmup", warmup, "--duration", duration].map(String::from));
    args.extend(["--server-pid".into(), server.pid().to_string()]);
    args
}

/// machine.txt as a JSON object: each `key: value` line a member (io_uring's features and
/// perf's abilities, `;`-separated on their lines, each a member of their own).
fn machine_json(text: &str) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    for line in text.lines() {
        let Some((k, v)) = line.split_once(": ") else {
            continue;
        };
        if k.contains(' ') {
            continue;
        }
        if k == "io_uring" || k == "perf" {
            let mut parts = serde_json::Map::new();
            for part in v.split("; ") {
                match part.split_once(": ") {
                    Some((pk, pv)) => parts.insert(pk.to_string(), pv.into()),
                    None => parts.insert(k.to_string(), part.into()),
                };
            }
            m.insert(k.to_string(), parts.into());
        } else {
            m.insert(k.to_string(), v.into());
        }
    }
    m
}

/// CPU 0's caches from sysfs: `L1d 48K, L1i 32K, L2 2048K, L3 ...`.
fn caches() -> String {
    let dir = Path::new("/sys/devices/system/cpu/cpu0/cache");
    let mut out = Vec::new();
    for i in 0..8 {
        let d = dir.join(format!("index{i}"));
        let read = |f: &str| std::fs::read_to_string(d.join(f)).map(|s| s.trim().to_string());
        let (Ok(level), Ok(kind), Ok(size)) = (read("level"), read("type"), read("size")) else {
            continue;
        };
        let kind = match kind.as_str() {
            "Data" => "d",
            "Instruction" => "i",
            _ => "",
        };
        out.push(format!("L{level}{kind} {size}"));
    }
    if out.is_empty() {
        "unknown (no /sys/devices/system/cpu/cpu0/cache)".into()
    } else {
        out.join(", ")
    }
}

/// The running kernel's release (`uname -r`).
fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown kernel".into())
}

/// A path as a loadgen argument.
fn path(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_json_has_every_fact_and_the_features_apart() {
        let text = "date: 2026-12-02T19:00:00Z\nkernel: 6.18\ncpus: 2 (Xeon)\n\
                    io_uring: yes; multishot receive limit: yes; DEFER_TASKRUN: no\n\
                    perf: count syscalls: no (root); sample the kernel: yes\n\
                    warmup 700ms, duration 2s, rounds 3\n";
        let m = serde_json::Value::Object(machine_json(text));
        assert_eq!(m["kernel"], "6.18");
        assert_eq!(m["io_uring"]["io_uring"], "yes");
        assert_eq!(m["io_uring"]["DEFER_TASKRUN"], "no");
        assert_eq!(m["perf"]["count syscalls"], "no (root)");
        assert_eq!(m["perf"]["sample the kernel"], "yes");
    }
}
