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

/// A server that exits before it listens gets a FAILED row saying so, in the table and the
/// summary, and the comparison exits 1; a file that is not there is named.
#[test]
fn a_server_that_never_listens_becomes_a_failed_row_and_a_missing_file_is_named() {
    let dir = std::env::temp_dir().join(format!("ringecho-perf-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = bin()
        .args(["compare", "--quick", "--no-syscalls", "--rounds", "1"])
        .args(["--backends", "", "--scenarios", "c100x64", "--out"])
        .arg(&dir)
        .args(["--server", "gone=sh -c 'echo no socket for me >&2; exit 3'"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let table = std::fs::read_to_string(dir.join("table.txt")).unwrap();
    assert!(
        table.contains("FAILED: the server exited (status 3) before listening: no socket for me"),
        "{table}"
    );
    let summary = std::fs::read_to_string(dir.join("summary.json")).unwrap();
    assert!(summary.contains("\"gone\""), "{summary}");
    assert!(dir.join("report.html").exists());
    let out = bin()
        .arg("summarise")
        .arg(dir.join("absent.json"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("absent.json"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Flags the comparison cannot run with exit 2 with one clear line, before anything runs.
#[test]
fn a_comparison_with_bad_flags_exits_2_saying_why() {
    for (args, says) in [
        (&["--scenarios", "c5x5"][..], "unknown scenario 'c5x5'"),
        (&["--server", "a b=true"], "must be letters, digits"),
        (&["--server", "no-command"], "NAME='COMMAND'"),
        (&["--backends", ""], "nothing to compare"),
        (
            &["--backends", "epoll,epoll"],
            "two servers are called 'epoll'",
        ),
        (&["--duration", "soon"], "not a duration"),
        (&["--cap", "0"], "not a positive fraction"),
        (
            &["--paired", "--backends", "epoll"],
            "--paired needs at least two servers",
        ),
    ] {
        let out = bin().arg("compare").args(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

/// `split` on a recorded tree prints the server's CPU list, the loadgen's, then the reason;
/// a tree that is not one and a bad CPU list are errors that say so (exit 2).
#[test]
fn split_prints_the_lists_then_the_reason_and_refuses_a_bad_tree() {
    let tree = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sysfs/smt-16");
    let out = bin().args(["split", "--sysfs", tree]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "server: 0-3,8-11", "{text}");
    assert_eq!(lines[1], "loadgen: 4-7,12-15", "{text}");
    assert!(lines[2].starts_with("reason: "), "{text}");
    let out = bin()
        .args([
            "split",
            "--sysfs",
            tree,
            "--threads",
            "2",
            "--allowed",
            "0-3,8-11",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("server: 0-1,8-9\nloadgen: 2-3,10-11\n"),
        "{text}"
    );
    for args in [
        &["split", "--sysfs", "/nonexistent"][..],
        &["split", "--sysfs", tree, "--allowed", "3-1"][..],
    ] {
        let out = bin().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!out.stderr.is_empty());
    }
}
