//! Helpers for the tests across programs.

use std::path::PathBuf;

/// The `ringecho-loadgen` binary of this build: beside the test executable's directory.
/// Cargo builds it for the loadgen crate's own tests (`loadgen/tests/cli.rs`), which every
/// workspace test run includes.
pub fn loadgen_exe() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("tests run from target/<profile>/deps");
    let bin = dir.join("ringecho-loadgen");
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build -p ringecho-loadgen` (cargo test --workspace does)",
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
