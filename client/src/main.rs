//! `ringecho-client`: parses flags, sets up logging, runs [`ringecho_client::run_cli`] and
//! turns its outcome into the exit code (0, or 1 with one `error:` line).

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use ringecho_client::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(kind) = cli.generate {
        return ringecho_common::generate_or_fail(kind, Cli::command());
    }
    ringecho_common::init_logging("info");
    match ringecho_client::run_cli(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringecho-client: error: {e}");
            ExitCode::from(1)
        }
    }
}
