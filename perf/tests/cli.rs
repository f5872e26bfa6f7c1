//! The binary: exit codes and messages, and the table from run reports.

use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ringecho-perf"))
}

#[test]
fn an_unknown_scenario_exits_2_naming_the_known_ones() {
    let out = bin().args(["scenario", "c5x5"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown scenario 'c5x5'") && err.contains("c100x64"),
        "{err}"
    );
    let out = bin().args(["scenario", "cap10kx64"]).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "--connections 10000 --payload 64"
    );
}

#[test]
fn a_failed_run_becomes_a_failed_row_and_a_missing_file_is_named() {
    let dir = std::env::temp_dir().join(format!("ringecho-perf-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("c100x64-gone-1.json");
    let ok = bin()
        .arg("failed")
        .arg(&f)
        .args([
            "c100x64",
            "gone",
            "1",
            "never listened on 127.0.0.1:9 (10 s)",
        ])
        .status()
        .unwrap();
    assert!(ok.success());
    let out = bin().arg("summarise").arg(&f).output().unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("FAILED: never listened"), "{table}");
    assert_eq!(out.status.code(), Some(1), "a failed run is not clean");
    let out = bin()
        .arg("summarise")
        .arg(dir.join("absent.json"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("absent.json"));
    std::fs::remove_dir_all(&dir).unwrap();
}
