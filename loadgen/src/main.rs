//! `ringecho-loadgen`: parses flags, sets up logging, and runs [`ringecho_loadgen::main_with`].

use clap::Parser;

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    ringecho_loadgen::main_with(ringecho_loadgen::config::Cli::parse())
}
