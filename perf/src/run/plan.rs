//! What a comparison will do, derived once from the flags: scenarios, servers, windows,
//! rounds and passes.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::run::server::Spec;
use crate::scenario::{self, Scenario};

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
    /// The servers compared.
    #[command(flatten)]
    pub servers: Servers,
    /// Which cores each side runs on.
    #[command(flatten)]
    pub cores: Cores,
    /// Rounds per scenario (servers interleaved within each) [default: 3, the fewest that can
    /// name a winner; 2 with --quick, which then says "too few rounds to call"].
    #[arg(long, env = "ROUNDS", value_parser = clap::value_parser!(u32).range(1..))]
    pub rounds: Option<u32>,
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
    /// One more short run of the plot scenario per server under `perf record -e cpu-clock
    /// -g`: its CPU per message by category (profile.txt, profile.json, report.html).
    #[arg(long)]
    pub profile: bool,
    /// Then each server once more per round at the same time as the baseline, the two
    /// sharing the cores, so both see the same machine: their CPU per message ratio without
    /// the drift between runs (paired.txt, paired.json, report.html).
    #[arg(long)]
    pub paired: bool,
    /// Server thread counts, comma-separated (1,2,4): each scenario at each count, servers
    /// interleaved, on a split of the cores for that count; table.txt, summary.json and
    /// report.html then show each backend's scaling curve. A count this machine cannot give
    /// cores of their own is skipped with one line (unless --server-cpus says).
    #[arg(long, value_name = "LIST", value_parser = thread_list)]
    pub threads: Option<ThreadList>,
    /// Then the map of the workload space (`ringecho-perf map`'s default slices, or its
    /// quick ones with --quick, in their own windows and --rounds): map.json, map.txt and
    /// its heat maps in report.html, beside the scenarios' results.
    #[arg(long)]
    pub map: bool,
}

/// The cores each side runs on: by default the topology's split (`ringecho-perf split`
/// prints it), or these.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Cores {
    /// The server's CPUs (a list like 0-3,8-11), one server thread per physical core in it
    /// [default: the topology's split]; the loadgen then gets the allowed CPUs off those
    /// cores unless --loadgen-cpus says.
    #[arg(long, value_name = "LIST", value_parser = cpu_list)]
    pub server_cpus: Option<CpuList>,
    /// The loadgen's CPUs, one loadgen thread each [default: the topology's split].
    #[arg(long, value_name = "LIST", value_parser = cpu_list)]
    pub loadgen_cpus: Option<CpuList>,
}

/// CPUs given on the command line (`0-3,8`), in number order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuList(pub Vec<usize>);

/// Server thread counts given on the command line (`1,2,4`), in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadList(pub Vec<usize>);

fn thread_list(s: &str) -> Result<ThreadList, String> {
    let mut out: Vec<usize> = Vec::new();
    for part in s.split(',') {
        match part.trim().parse::<usize>() {
            Ok(n) if (1..=1024).contains(&n) && !out.contains(&n) => out.push(n),
            _ => return Err(format!("'{s}' is not a list of thread counts like 1,2,4")),
        }
    }
    Ok(ThreadList(out))
}

fn cpu_list(s: &str) -> Result<CpuList, String> {
    match crate::cores::parse_list(s)? {
        v if v.is_empty() => Err("an empty CPU list".into()),
        v => Ok(CpuList(v)),
    }
}

impl Cores {
    /// The split these flags give on this machine; the error is a usage error's message.
    pub fn split(&self) -> Result<crate::cores::Split, String> {
        self.split_for(None)
    }

    /// The split for `threads` server threads (None: the default's); the error says why
    /// this machine cannot give them cores apart from the loadgen's.
    pub fn split_for(&self, threads: Option<usize>) -> Result<crate::cores::Split, String> {
        use crate::cores::{Split, Topology};
        if self.server_cpus.is_none() && self.loadgen_cpus.is_none() {
            let Some(n) = threads else {
                return Ok(Split::here());
            };
            let t = Topology::here()?;
            let s = t.split(Some(n));
            if s.server_threads < n || s.shared {
                return Err(format!(
                    "this machine cannot give {n} server threads cores of their own beside the \
                     loadgen's ({}); --server-cpus and --loadgen-cpus can share them",
                    t.describe()
                ));
            }
            return Ok(s);
        }
        let t = Topology::here()?;
        let all: Vec<usize> = t.cpus.iter().map(|c| c.id).collect();
        // One side given: the other gets the allowed CPUs off its physical cores (or the
        // same ones, shared, where none is left).
        let rest = |given: &[usize]| -> Vec<usize> {
            let cores: Vec<_> = t
                .cpus
                .iter()
                .filter(|c| given.contains(&c.id))
                .map(|c| c.core)
                .collect();
            let v: Vec<usize> = t
                .cpus
                .iter()
                .filter(|c| !cores.contains(&c.core))
                .map(|c| c.id)
                .collect();
            if v.is_empty() {
                given.to_vec()
            } else {
                v
            }
        };
        let (server, loadgen) = match (&self.server_cpus, &self.loadgen_cpus) {
            (Some(CpuList(s)), Some(CpuList(l))) => (s.clone(), l.clone()),
            (Some(CpuList(s)), None) => (s.clone(), rest(s)),
            (None, Some(CpuList(l))) => (rest(l), l.clone()),
            (None, None) => (all.clone(), all),
        };
        t.given(&server, &loadgen, threads)
    }
}

/// Which servers a comparison or a map runs, and which one the ratios divide by.
#[derive(Debug, Clone, clap::Args)]
pub struct Servers {
    /// Built-in backends to run, comma-separated; '' compares --server rows alone.
    #[arg(
        long,
        env = "BACKENDS",
        default_value = crate::analysis::grid::BACKENDS
    )]
    pub backends: String,
    /// The server the × columns divide by [default: epoll-loop, the hand-written epoll
    /// loop, when it runs; else epoll; else the first server].
    #[arg(long)]
    pub baseline: Option<String>,
    /// Any echo server as NAME='COMMAND', {addr} (127.0.0.1:PORT) and {port} substituted;
    /// pinned like the built-in ones, measured from outside (/proc, the kernel). Repeatable.
    /// Its failure fails the run.
    #[arg(long = "server", value_name = "NAME=COMMAND", value_parser = Spec::external)]
    pub servers: Vec<Spec>,
    /// The reference peers as --server rows (liburing, c-epoll, tokio, monoio; =NAME,NAME
    /// for some), fetched and built by scripts/peers.sh. A peer that fails shows FAILED
    /// with its reason and leaves the exit status alone.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "all", value_name = "NAMES")]
    pub peers: Option<String>,
    /// Where scripts/peers.sh builds the peers [default: ~/.cache/ringecho-peers].
    #[arg(long)]
    pub peers_cache: Option<PathBuf>,
}

/// A duration checked by the one rule every program reads durations by, handed on to the
/// loadgen as written.
pub(crate) fn duration(s: &str) -> Result<String, String> {
    ringecho_common::parse_duration(s).map(|_| s.to_string())
}

/// As [`duration`], zero allowed (a `0s` warm-up).
pub(crate) fn duration_or_zero(s: &str) -> Result<String, String> {
    ringecho_common::parse_duration_or_zero(s).map(|_| s.to_string())
}

fn fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if f > 0.0 && f.is_finite() => Ok(f),
        _ => Err(format!("'{s}' is not a positive fraction of a core (0.3)")),
    }
}

/// The results directory: `out`, or results/<UTC time>.
fn out_dir(out: Option<PathBuf>) -> PathBuf {
    out.unwrap_or_else(|| PathBuf::from("results").join(crate::stamp()))
}

/// The scenario whose latency percentiles are plotted and profiled, when it runs.
const PLOT_SCENARIO: &str = "c1000x64";

/// A comparison's settings, derived from the flags in one place.
#[derive(Debug)]
pub struct Plan {
    pub(super) scenarios: Vec<&'static Scenario>,
    /// The map to run after the scenarios, if one is asked for.
    pub(super) map: Option<crate::run::map_plan::MapPlan>,
    /// Which cores the server and the loadgen run on.
    pub(super) split: crate::cores::Split,
    /// `--threads`: each count and its split, or why the machine cannot give it.
    pub(super) counts: Vec<(usize, Result<crate::cores::Split, String>)>,
    pub(super) servers: Vec<Spec>,
    pub(super) rounds: u32,
    pub(super) duration: String,
    pub(super) warmup: String,
    pub(super) quick: bool,
    pub(super) syscalls: bool,
    pub(super) out: PathBuf,
    pub(super) sweep_range: Vec<String>,
    pub(super) cap: f64,
    pub(super) profile: bool,
    pub(super) paired: bool,
    pub(super) baseline: String,
    pub(super) plot_scenario: String,
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
        let (servers, baseline) = opts.servers.resolve()?;
        if opts.paired && servers.len() < 2 {
            return Err("--paired needs at least two servers".into());
        }
        let plot_scenario = if scenarios.iter().any(|s| s.name == PLOT_SCENARIO) {
            PLOT_SCENARIO
        } else {
            scenarios[0].name
        };
        let split = opts.cores.split()?;
        let scaling = opts.threads.is_some();
        let counts = opts
            .threads
            .map(|t| t.0)
            .unwrap_or_default()
            .into_iter()
            .map(|n| (n, opts.cores.split_for(Some(n))))
            .collect();
        let map = opts.map.then(|| {
            let grid = crate::analysis::map::Grid::default_slices(opts.quick);
            crate::run::map_plan::MapPlan::new(grid, opts.quick, opts.rounds, None, None)
        });
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
            map,
            split,
            counts,
            servers,
            rounds: opts.rounds.unwrap_or(if opts.quick { 2 } else { 3 }),
            duration: opts.duration.unwrap_or_else(|| duration.into()),
            warmup: opts.warmup.unwrap_or_else(|| warmup.into()),
            quick: opts.quick,
            // Scaling points leave the syscall pass out: it would run at one count alone.
            syscalls: !opts.quick && !opts.no_syscalls && !scaling,
            out: out_dir(opts.out),
            sweep_range,
            cap: opts.cap,
            profile: opts.profile,
            paired: opts.paired,
        })
    }
}

impl Servers {
    /// The servers in run order and the baseline; the error is a usage error. Fetches and
    /// builds the peers when asked.
    pub fn resolve(&self) -> Result<(Vec<Spec>, String), String> {
        let servers = servers(
            &self.backends,
            self.servers.clone(),
            &self.peers,
            &self.peers_cache,
        )?;
        let names: Vec<&str> = servers.iter().map(Spec::name).collect();
        let baseline = match &self.baseline {
            Some(b) if names.contains(&b.as_str()) => b.clone(),
            Some(b) => {
                return Err(format!(
                    "--baseline {b}: not among the servers compared ({})",
                    names.join(", ")
                ))
            }
            None => crate::analysis::grid::default_baseline(&names)
                .unwrap_or(names[0])
                .to_string(),
        };
        Ok((servers, baseline))
    }
}

impl Plan {
    /// The plan of a map alone (`ringecho-perf map`): no scenarios, the map's cells; the
    /// error is a usage error (exit 2).
    pub fn for_map(
        servers: &Servers,
        cores: &Cores,
        map: crate::run::map_plan::MapPlan,
        out: Option<PathBuf>,
    ) -> crate::Result<Plan> {
        let (servers, baseline) = servers.resolve().map_err(crate::Error::Usage)?;
        let split = cores.split().map_err(crate::Error::Usage)?;
        Ok(Plan {
            baseline,
            plot_scenario: PLOT_SCENARIO.to_string(),
            scenarios: Vec::new(),
            quick: map.quick,
            rounds: map.rounds,
            duration: map.duration.clone(),
            warmup: map.warmup.clone(),
            map: Some(map),
            split,
            counts: Vec::new(),
            servers,
            syscalls: false,
            out: out_dir(out),
            sweep_range: Vec::new(),
            cap: 0.3,
            profile: false,
            paired: false,
        })
    }

    /// The checks before anything runs, each a usage error: the ringecho-server in `bin`
    /// asked whether it knows each backend named (and each server flag a map's axis gives),
    /// so that a misspelt one is refused now rather than a FAILED row in every scenario —
    /// its own flag parser answers (`--backend NAME --generate man` parses and prints, or
    /// refuses); and a map's cells within this machine and its estimate within its time
    /// limit, the estimate printed.
    pub fn check(&self, bin: &Path) -> crate::Result<()> {
        if let Some(m) = &self.map {
            let line = m
                .check(self.servers.len(), &crate::analysis::map::Limits::here())
                .map_err(crate::Error::Usage)?;
            eprintln!("{line}");
        }
        self.backends_run(bin).map_err(crate::Error::Usage)
    }

    fn backends_run(&self, bin: &Path) -> Result<(), String> {
        let exe = bin.join("ringecho-server");
        // A map's server axis (`--buffer-size 4096,65536`) is asked about too, each value.
        let mut extra: Vec<Vec<String>> = vec![Vec::new()];
        if let Some(m) = &self.map {
            extra.extend(m.server_args());
        }
        for (s, args) in self
            .servers
            .iter()
            .flat_map(|s| extra.iter().map(move |a| (s, a)))
        {
            let Spec::Backend(name) = s else { continue };
            let out = Command::new(&exe)
                .args(["--backend", name])
                .args(args)
                .args(["--generate", "man"])
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
                let with = if args.is_empty() {
                    String::new()
                } else {
                    format!(" with {}", args.join(" "))
                };
                return Err(format!(
                    "--backends {name}{with}: ringecho-server says: {line}"
                ));
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
                .map(Spec::into_reference)
                .map_err(|e| eprintln!("compare: peers.sh gave a bad row: {e}"))
                .ok()
        })
        .collect()
}
