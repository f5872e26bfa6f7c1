//! `ringecho-client`: parses flags, sets up logging, and runs [`ringecho_client::main_with`].

use clap::Parser;

fn main() -> std::process::ExitCode {
    ringecho_common::init_logging("info");
    ringecho_client::main_with(ringecho_client::Cli::parse())
}
