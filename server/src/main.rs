//! `ringecho-server`: parses flags, sets up logging, and runs [`ringecho_server::run`].

use clap::{CommandFactory, Parser};

fn main() -> std::process::ExitCode {
    let config = ringecho_server::Config::parse();
    if let Some(kind) = config.generate {
        return ringecho_common::generate_or_fail(kind, ringecho_server::Config::command());
    }
    if config.probe {
        print!("{}", ringecho_server::probe());
        return std::process::ExitCode::SUCCESS;
    }
    ringecho_common::init_logging("info");
    ringecho_server::run(config)
}
