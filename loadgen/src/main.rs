//! `ringecho-loadgen`: parses flags, sets up logging, and runs [`ringecho_loadgen::main_with`].

use clap::Parser;

fn main() -> std::process::ExitCode {
    ringecho_common::init_logging("warn");
    ringecho_loadgen::main_with(ringecho_loadgen::config::Cli::parse())
}
