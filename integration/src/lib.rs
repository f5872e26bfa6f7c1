//! Helpers for the tests across programs.

use std::path::PathBuf;

/// The `ringecho-loadgen` binary of this build: beside the test executable's directory.
/// Cargo builds it for the loadgen crate's own tests (`loadgen/tests/cli.rs`), which every
/// workspace test run includes.
pub fn loadgen_exe() -> PathBuf {
    exe("ringecho-loadgen")
}

/// The `ringecho-server` binary of this build (built for the server crate's own tests).
pub fn server_exe() -> PathBuf {
    exe("ringecho-server")
}

fn exe(name: &str) -> PathBuf {
    let test = std::env::current_exe().expect("the test executable's path");
    let dir = test
        .parent()
        .and_then(|deps| deps.parent())
        .expect("tests run from target/<profile>/deps");
    let bin = dir.join(name);
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build -p {name}` (cargo test --workspace does)",
        bin.display()
    );
    bin
}

/// The repository's top directory.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate sits in the repository")
        .to_path_buf()
}

/// Runs `ip` (or another tool) and fails loudly if it does.
pub fn sh(args: &[&str]) {
    let out = std::process::Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e} (scripts/test.sh installs iproute2)"));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
