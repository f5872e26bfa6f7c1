//! The loadgen's command line: bad input gets a clear error and an exit code, never a panic.
//! (Its runs against the real server are in the integration crate.)

use std::net::TcpListener;
use std::process::Command;

/// A port nothing listens on (just freed).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ringecho-loadgen"))
}

#[test]
fn bad_input_gets_a_clear_error_and_non_zero_exit() {
    for (args, expect) in [
        (&["--rst-share", "1.5"][..], "outside 0..1"),
        (&["--rst-share", "-0.1"], "-0.1 is outside 0..1"),
        (&["--source-addrs", "127.0.0.9-127.0.0.2"], "runs backwards"),
        (&["--source-addrs", "10.0.0.0-10.2.0.0"], "131073 addresses"),
        (&["--connections", "0"], "connections"),
        (&["--payload", "8"], "at least 16"),
        (&["--duration", "soon"], "duration"),
        (&["--addr", "nowhere"], "addr"),
        (&["merge"], "FILES"),
    ] {
        let out = bin().args(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(expect), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    // Nothing listens on a port we just freed: refused at once, named, exit 1.
    let port = free_port();
    let out = bin()
        .args([
            "--addr",
            &format!("127.0.0.1:{port}"),
            "--messages",
            "1",
            "--connections",
            "3",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot connect") && err.contains("connection refused"),
        "{err}"
    );
    // A sweep climbs: a range that falls is refused, not run as one step.
    let out = bin()
        .args(["sweep", "--from", "100", "--to", "10"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("--to 10 is below --from 100"), "{err}");
    let out = bin().args(["merge", "/nonexistent.hlog"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.hlog"));
}

#[test]
fn host_names_are_resolved_and_unknown_ones_named() {
    let out = bin()
        .args(["--addr", "no-such-host.invalid:8000", "--messages", "1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("no-such-host.invalid"), "{err}");
    // localhost resolves; nothing listens on the freed port, so the run fails to connect.
    let port = free_port();
    let out = bin()
        .args(["--addr", &format!("localhost:{port}"), "--messages", "1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot connect"), "{err}");
}

#[test]
fn completions_and_man_page_are_generated() {
    for (what, expect) in [
        ("man", ".TH"),
        ("complete-bash", "ringecho-loadgen"),
        ("complete-zsh", "#compdef ringecho-loadgen"),
        ("complete-fish", "complete -c ringecho-loadgen"),
    ] {
        let out = bin().args(["--generate", what]).output().unwrap();
        assert!(out.status.success(), "{what}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(expect), "{what}: {text}");
        assert!(text.contains("pipeline"), "{what} lacks the flags");
    }
}

#[test]
fn piped_logs_carry_no_colour_codes() {
    // A warning is logged (the run is loadgen-limited or fails); stderr is a pipe here.
    let out = bin()
        .args(["--addr", "127.0.0.1:1", "--messages", "1"])
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains('\u{1b}'),
        "escape codes in piped output: {err}"
    );
}
