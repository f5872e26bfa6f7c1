//! ringecho-perf: the summary table and report.html of a compare.sh run.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The comparison's summary and report, from the loadgen's run JSON.
#[derive(Debug, Parser)]
#[command(name = "ringecho-perf", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Summarises tagged run reports (scenario=, backend=, round=) side by side, with ratios
    /// to a baseline measured in the same rounds; prints the table; exits 1 if any run was
    /// not clean.
    Summarise {
        /// JSON reports written by ringecho-loadgen --json.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The server the ratios are taken against.
        #[arg(long, default_value = "epoll")]
        baseline: String,
        /// Write the summary rows as JSON (summary.json).
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Writes a run's JSON for a run that has no figures: its tags and why (a FAILED row in
    /// the summary).
    Failed {
        /// The JSON file to write.
        out: PathBuf,
        scenario: String,
        backend: String,
        round: String,
        /// Why the run has no figures, in a sentence.
        why: String,
    },
    /// Prints a free TCP port on 127.0.0.1 (for a server started with {port}).
    FreePort,
    /// Judges scripts/loadgen-check.sh's targets from the runs it left in DIR (NAME.json
    /// each); prints them and writes DIR/summary.json. Exits 0 whether or not they were met.
    Check {
        /// The check's results directory.
        dir: PathBuf,
    },
    /// Prints how compare.sh and loadgen-check.sh split the cores: the server's CPU list,
    /// the loadgen's, and each one's thread count (the first half for the server).
    Cores,
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
    /// Writes DIR/report.html from what compare.sh left in DIR (summary.json, machine.txt,
    /// the plots, sweeps and profile).
    Report {
        /// The results directory.
        dir: PathBuf,
        /// The server the ratios are taken against.
        #[arg(long, default_value = "epoll")]
        baseline: String,
        /// The scenario whose latency percentiles and profile are plotted.
        #[arg(long, default_value = "c1000x64")]
        plot_scenario: String,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("ringecho-perf: error: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> Result<bool, String> {
    match cli.command {
        Command::Summarise {
            files,
            baseline,
            json,
        } => {
            let reports = ringecho_perf::read_reports(&files)?;
            let rows = ringecho_perf::summary::summarise(&reports, &baseline);
            print!("{}", ringecho_perf::summary::table(&rows, &baseline));
            if let Some(p) = json {
                write_json(&p, &rows)?;
            }
            Ok(reports.iter().all(|r| r.is_clean()))
        }
        Command::Failed {
            out,
            scenario,
            backend,
            round,
            why,
        } => {
            let report = ringecho_loadgen::report::Report {
                failure: Some(why),
                tags: [
                    ("scenario", scenario),
                    ("backend", backend),
                    ("round", round),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
                ..Default::default()
            };
            write_json(&out, &report)?;
            Ok(true)
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
                eprintln!(
                    "ringecho-perf: error: unknown scenario '{name}' (known: {})",
                    known.join(" ")
                );
                std::process::exit(2);
            }
        },
        Command::Check { dir } => {
            let mut runs = std::collections::BTreeMap::new();
            for name in ringecho_perf::check::RUNS {
                let r = ringecho_perf::read_report(&dir.join(format!("{name}.json")))?;
                runs.insert(name.to_string(), r);
            }
            let targets = ringecho_perf::check::targets(&runs);
            print!("{}", ringecho_perf::check::table(&targets, &runs));
            let p = dir.join("summary.json");
            write_json(&p, &targets)?;
            Ok(true)
        }
        Command::Cores => {
            let n = std::thread::available_parallelism().map_or(1, |n| n.get());
            let half = (n / 2).max(1);
            let loadgen = if n < 2 {
                "0".to_string()
            } else {
                format!("{half}-{}", n - 1)
            };
            println!("0-{} {loadgen} {half} {}", half - 1, (n - half).max(1));
            Ok(true)
        }
        Command::Scenarios { quick } => {
            println!("{}", ringecho_perf::scenario::defaults(quick));
            Ok(true)
        }
        Command::FreePort => {
            let l = std::net::TcpListener::bind("127.0.0.1:0")
                .map_err(|e| format!("cannot find a free port: {e}"))?;
            let port = l.local_addr().map_err(|e| e.to_string())?.port();
            println!("{port}");
            Ok(true)
        }
        Command::Profile { json, inputs } => {
            let mut profiles = Vec::new();
            for (name, report, run) in &inputs {
                let r = ringecho_perf::read_report(run)?;
                let cpu = r.server.map(|s| s.cpu_us_per_msg).ok_or_else(|| {
                    format!(
                        "{} has no server CPU: run the loadgen with --server-pid",
                        run.display()
                    )
                })?;
                let script = ringecho_perf::read(report)?;
                profiles.push(ringecho_perf::profile::profile(name, &script, cpu));
            }
            print!("{}", ringecho_perf::profile::table(&profiles));
            if let Some(p) = json {
                write_json(&p, &profiles)?;
            }
            Ok(true)
        }
        Command::Plot { out, title, hgrm } => {
            ringecho_loadgen::plot::plot_hgrm(&out, &title, &hgrm)
                .map_err(|e| format!("cannot plot: {e}"))?;
            Ok(true)
        }
        Command::PlotSweep { out, title, files } => {
            let mut sweeps = Vec::with_capacity(files.len());
            for f in &files {
                sweeps.push(
                    serde_json::from_str::<ringecho_loadgen::sweep::Sweep>(&ringecho_perf::read(
                        f,
                    )?)
                    .map_err(|e| format!("{} is not a sweep: {e}", f.display()))?,
                );
            }
            ringecho_loadgen::sweep::plot(&out, &title, &sweeps)
                .map_err(|e| format!("cannot plot: {e}"))?;
            Ok(true)
        }
        Command::Report {
            dir,
            baseline,
            plot_scenario,
        } => {
            let page = ringecho_perf::html::page(&dir, &baseline, &plot_scenario)?;
            let p = dir.join("report.html");
            std::fs::write(&p, page).map_err(|e| format!("cannot write {}: {e}", p.display()))?;
            Ok(true)
        }
    }
}

/// Writes `value` as pretty JSON, or an error naming the file.
fn write_json(path: &std::path::Path, value: &impl serde::Serialize) -> Result<(), String> {
    let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    std::fs::write(path, text + "\n").map_err(|e| format!("cannot write {}: {e}", path.display()))
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
