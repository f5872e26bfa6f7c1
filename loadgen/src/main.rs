//! `ringecho-loadgen`: parses flags, sets up logging, runs [`ringecho_loadgen::run_cli`] and
//! turns its outcome into the exit code: 0, 1 for a run that cannot be trusted or an
//! `error:` line, 2 for a usage error (clap's).

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use ringecho_loadgen::config::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(kind) = cli.generate {
        return ringecho_common::generate_or_fail(kind, Cli::command());
    }
    ringecho_common::init_logging("warn");
    match ringecho_loadgen::run_cli(cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("ringecho-loadgen: error: {e}");
            ExitCode::from(1)
        }
    }
}
