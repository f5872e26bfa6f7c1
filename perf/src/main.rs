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
                let text = serde_json::to_string_pretty(&rows).map_err(|e| e.to_string())?;
                std::fs::write(&p, text + "\n")
                    .map_err(|e| format!("cannot write {}: {e}", p.display()))?;
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
            let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
            std::fs::write(&out, text + "\n")
                .map_err(|e| format!("cannot write {}: {e}", out.display()))?;
            Ok(true)
        }
        Command::FreePort => {
            let l = std::net::TcpListener::bind("127.0.0.1:0")
                .map_err(|e| format!("cannot find a free port: {e}"))?;
            let port = l.local_addr().map_err(|e| e.to_string())?.port();
            println!("{port}");
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
