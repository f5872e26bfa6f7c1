//! `ringecho-client`: parses flags, sets up logging, and runs [`ringecho_client::main_with`].

use clap::Parser;

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    ringecho_client::main_with(ringecho_client::Cli::parse())
}
