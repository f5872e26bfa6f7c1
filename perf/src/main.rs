//! ringecho-perf: the comparison (compare.sh) and the loadgen check (loadgen-check.sh) end to
//! end, and each of their steps on its own: the summary table, report.html, the profile and
//! the plots.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ringecho_perf::{Error, Result};

/// The comparison of echo servers: runs it, summarises it and writes its report.
#[derive(Debug, Parser)]
#[command(name = "ringecho-perf", version, arg_required_else_help = true)]
struct Cli {
    /// What to do.
    #[command(subcommand)]
    command: Option<Command>,
    /// Print a man page or shell completions for this program, then exit.
    #[arg(long, value_enum, value_name = "WHAT")]
    generate: Option<ringecho_common::Generate>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Every backend and any server you bring side by side on loopback, interleaved round by
    /// round, server and loadgen pinned to different cores: table.txt, summary.json,
    /// report.html and plots under --out, one JSON per run under --out/runs (scripts/compare.sh runs this).
    /// Exits 1 if a server or run failed, 2 on a usage error.
    Compare(ringecho_perf::run::Options),
    /// The map of the workload space: every server interleaved round by round (the
    /// baseline's A/A pair last) in each cell of a grid over message size, messages in
    /// flight, connections and messages per connection (and the server's --buffer-size),
    /// each contrast called by the comparison's rule; map.json, map.txt, map.svg and
    /// report.html's heat maps under --out. Axes not given: a default of two 2-D slices
    /// (13 minutes measured on 2 cores over the four backends; --quick under 2). Prints its time estimate first;
    /// refuses past --time-limit, or a cell this machine cannot run, before anything starts.
    /// Exits 1 if a --server or built-in server failed (a reference peer's failure shows in
    /// its cells only), 2 on a usage error, 130 when interrupted (the finished cells kept).
    Map(ringecho_perf::run::map_plan::Options),
    /// Prints the split of the CPUs between server and loadgen that compare would choose:
    /// the server's CPU list, the loadgen's, one line each, then the reason. Reads the
    /// topology from DIR (laid out like /sys) instead of /sys when given.
    Split {
        /// A recorded sysfs tree: DIR/devices/system/cpu/cpuN/topology/…,
        /// DIR/devices/system/node/nodeN/cpulist, optionally
        /// DIR/fs/cgroup/cpuset.cpus.effective for the allowed CPUs.
        #[arg(long, value_name = "DIR")]
        sysfs: Option<PathBuf>,
        /// Server threads (one per physical core) [default: half the cores of the largest
        /// node].
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
        threads: Option<u16>,
        /// The CPUs this process may use, instead of its affinity mask (or the tree's
        /// cgroup file).
        #[arg(long, value_name = "LIST")]
        allowed: Option<String>,
    },
    /// Draws a map.json's heat maps as one SVG (docs/map.svg is drawn so).
    DrawMap {
        /// The map.json.
        map: PathBuf,
        /// The SVG file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Checks that ringecho-loadgen keeps itself out of the numbers on this machine: its runs
    /// against one epoll server under results/loadgen-check-<time>/, then each target, its
    /// figure and whether it was met (scripts/loadgen-check.sh runs this).
    LoadgenCheck {
        /// Shorter windows (a smoke test; noisier figures).
        #[arg(long)]
        quick: bool,
    },
    /// Summarises tagged run reports (scenario=, backend=, round=) side by side, with ratios
    /// to a baseline measured in the same rounds; prints the table; exits 1 if any run was
    /// not clean.
    Summarise {
        /// JSON reports written by ringecho-loadgen --json.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The server the ratios are taken against (tokio's epoll unless named).
        #[arg(long, default_value = ringecho_perf::analysis::grid::CELLS[2].0)]
        baseline: String,
        /// Write the summary rows as JSON (summary.json).
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Judges the loadgen check's targets again from the runs it left in DIR (NAME.json
    /// each); prints them and writes DIR/summary.json. Exits 0 whether or not they were met.
    Check {
        /// The check's results directory.
        dir: PathBuf,
    },
    /// Prints the loadgen flags of scenario NAME; exits 2 naming the known ones if it is not
    /// one.
    Scenario {
        /// The scenario's name (c100x64, churn, cap1000x64, …).
        name: String,
    },
    /// Prints the scenarios a default run includes, comma-separated (with --quick, a quick
    /// run's).
    Scenarios {
        /// A quick run's list.
        #[arg(long)]
        quick: bool,
    },
    /// Where each server's CPU went, by category (TCP/IP, scheduling, I/O interface, user),
    /// from `perf script -F ip,sym,dso` of a `perf record -e cpu-clock -g` taken during a run,
    /// scaled to that run's server CPU per message (its --json report).
    Profile {
        /// Write the profiles as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Servers as NAME=PERF_SCRIPT.txt,RUN.json.
        #[arg(required = true, value_parser = parse_profile_input)]
        inputs: Vec<(String, PathBuf, PathBuf)>,
    },
    /// Draws latency percentile curves from .hgrm files (the loadgen's --hgrm) into one SVG.
    Plot {
        /// The SVG file to write.
        #[arg(long)]
        out: PathBuf,
        /// The chart's title.
        #[arg(long, default_value = "echo round-trip latency")]
        title: String,
        /// Curves as LABEL=FILE.hgrm.
        #[arg(required = true, value_parser = parse_curve)]
        hgrm: Vec<(String, PathBuf)>,
    },
    /// Draws the latency–load curves of several sweeps (their --json files) into one SVG.
    PlotSweep {
        /// The SVG file to write.
        #[arg(long)]
        out: PathBuf,
        /// The chart's title.
        #[arg(long, default_value = "latency against offered load")]
        title: String,
        /// Sweep JSON files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Two results directories side by side: which CPU-per-message ratios moved beyond their
    /// rounds' spread, and which lines of machine.txt differ (a kernel upgrade, a second
    /// machine); where both hold a map.json, its cells one by one. Exits 0 whatever moved;
    /// 1 when a directory cannot be read.
    Diff {
        /// The earlier results directory.
        a: PathBuf,
        /// The later one.
        b: PathBuf,
    },
    /// Writes DIR/report.html from what compare.sh left in DIR (summary.json, machine.txt,
    /// the plots, sweeps and profile).
    Report {
        /// The results directory.
        dir: PathBuf,
        /// The server the ratios are taken against (tokio's epoll unless named).[default: the one summary.json names].
        #[arg(long)]
        baseline: Option<String>,
        /// The scenario whose latency percentiles and profile are plotted.
        #[arg(long, default_value = "c1000x64")]
        plot_scenario: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(kind) = cli.generate {
        use clap::CommandFactory;
        return ringecho_common::generate_or_fail(kind, Cli::command());
    }
    match try_main(cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(Error::Interrupted) => {
            eprintln!("ringecho-perf: interrupted");
            ExitCode::from(130)
        }
        Err(e) => {
            eprintln!("ringecho-perf: error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Runs the command line: Ok(false) when it ran but something it checked failed (exit 1).
fn try_main(cli: Cli) -> Result<bool> {
    match cli.command {
        Some(command) => run(command),
        None => Err(Error::Usage("name a subcommand (try --help)".into())),
    }
}

/// The directory of this binary, where ringecho-server and ringecho-loadgen of the same build
/// are.
fn bin_dir() -> Result<PathBuf> {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(PathBuf::from))
        .ok_or_else(|| "cannot tell where ringecho-perf is".into())
}

/// Runs one subcommand: one short arm per subcommand, each handing over to the library.
fn run(command: Command) -> Result<bool> {
    match command {
        Command::Compare(opts) => {
            let bin = bin_dir()?;
            let plan = ringecho_perf::run::Plan::new(opts)?;
            plan.check(&bin)?;
            ringecho_perf::run::Bench::new(plan, &bin)?.run()
        }
        Command::Map(opts) => {
            let bin = bin_dir()?;
            let map = opts.plan().map_err(Error::Usage)?;
            let plan =
                ringecho_perf::run::Plan::for_map(&opts.servers, &opts.cores, map, opts.out)?;
            plan.check(&bin)?;
            ringecho_perf::run::Bench::new(plan, &bin)?.run()
        }
        Command::Split {
            sysfs,
            threads,
            allowed,
        } => {
            print!(
                "{}",
                ringecho_perf::cores::show(sysfs.as_deref(), threads, allowed.as_deref())
                    .map_err(Error::Usage)?
            );
            Ok(true)
        }
        Command::DrawMap { map, out } => {
            let text = ringecho_perf::read(&map)?;
            let m: ringecho_perf::analysis::map::MapFile =
                ringecho_perf::parse(&map, "a map", &text)?;
            ringecho_perf::write(&out, &ringecho_perf::render::heat::svg(&m))?;
            Ok(true)
        }
        Command::LoadgenCheck { quick } => {
            ringecho_perf::run::check::run(&bin_dir()?, quick)?;
            Ok(true)
        }
        Command::Summarise {
            files,
            baseline,
            json,
        } => {
            let reports = ringecho_perf::read_reports(&files)?;
            let rows = ringecho_perf::analysis::summary::summarise(&reports, &baseline);
            print!("{}", ringecho_perf::render::text::table(&rows, &baseline));
            if let Some(p) = json {
                ringecho_perf::write_json(&p, &rows)?;
            }
            Ok(reports.iter().all(|r| r.is_clean()))
        }
        Command::Scenario { name } => match ringecho_perf::scenario::find(&name) {
            Some(s) => {
                println!("{}", s.flags);
                Ok(true)
            }
            None => {
                let known: Vec<&str> = ringecho_perf::scenario::ALL
                    .iter()
                    .map(|s| s.name)
                    .collect();
                Err(Error::Usage(format!(
                    "unknown scenario '{name}' (known: {})",
                    known.join(" ")
                )))
            }
        },
        Command::Check { dir } => {
            ringecho_perf::run::check::judge(&dir)?;
            Ok(true)
        }
        Command::Scenarios { quick } => {
            println!("{}", ringecho_perf::scenario::defaults(quick));
            Ok(true)
        }
        Command::Profile { json, inputs } => {
            let mut profiles = Vec::new();
            for (name, report, run) in &inputs {
                let r = ringecho_perf::read_report(run)?;
                let cpu = r.server.map(|s| s.cpu_us_per_msg).ok_or_else(|| {
                    Error::Failed(format!(
                        "{} has no server CPU: run the loadgen with --server-pid",
                        run.display()
                    ))
                })?;
                let script = ringecho_perf::read(report)?;
                profiles.push(ringecho_perf::analysis::profile::profile(
                    name, &script, cpu,
                ));
            }
            print!("{}", ringecho_perf::render::text::profiles(&profiles));
            if let Some(p) = json {
                ringecho_perf::write_json(&p, &profiles)?;
            }
            Ok(true)
        }
        Command::Plot { out, title, hgrm } => {
            ringecho_loadgen::plot::plot_hgrm(&out, &title, &hgrm)
                .map_err(|e| Error::Failed(format!("cannot plot: {e}")))?;
            Ok(true)
        }
        Command::PlotSweep { out, title, files } => {
            let mut sweeps = Vec::with_capacity(files.len());
            for f in &files {
                let text = ringecho_perf::read(f)?;
                sweeps.push(ringecho_perf::parse(f, "a sweep", &text)?);
            }
            ringecho_loadgen::sweep::plot(&out, &title, &sweeps)
                .map_err(|e| Error::Failed(format!("cannot plot: {e}")))?;
            Ok(true)
        }
        Command::Diff { a, b } => {
            print!("{}", ringecho_perf::render::diff::diff(&a, &b)?);
            Ok(true)
        }
        Command::Report {
            dir,
            baseline,
            plot_scenario,
        } => {
            let results = ringecho_perf::results::Results::new(dir);
            let contents = results.load(&plot_scenario)?;
            let baseline = match baseline.or_else(|| contents.baseline()) {
                Some(b) => b,
                None => return Err(results.no_summary()),
            };
            results.write_report(&ringecho_perf::render::html::page(
                &contents,
                &baseline,
                &plot_scenario,
            ))?;
            Ok(true)
        }
    }
}

fn parse_profile_input(s: &str) -> Result<(String, PathBuf, PathBuf), String> {
    let err = || format!("'{s}' is not NAME=PERF_SCRIPT.txt,RUN.json");
    let (name, files) = s.split_once('=').ok_or_else(err)?;
    let (report, run) = files.split_once(',').ok_or_else(err)?;
    Ok((name.to_string(), PathBuf::from(report), PathBuf::from(run)))
}

fn parse_curve(s: &str) -> Result<(String, PathBuf), String> {
    let (label, path) = s
        .split_once('=')
        .ok_or_else(|| format!("'{s}' is not LABEL=FILE.hgrm"))?;
    Ok((label.to_string(), PathBuf::from(path)))
}
