//! The client's exit codes: 0 for a clean session, 1 with a clear message otherwise.

use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use ringecho_server::{start, Backend, Config};

fn client(addr: &str, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ringecho-client"))
        .args(["--addr", addr, "--timeout", "2s"])
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn clean_sessions_exit_0_with_fin_or_rst() {
    let srv = start(&Config::new("127.0.0.1:0".parse().unwrap(), Backend::Epoll)).unwrap();
    let addr = srv.local_addr().to_string();
    let out = client(&addr, &["--count", "3", "--interval", "10ms"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr)
            .matches("Reading data from server: Hi, gopher?")
            .count(),
        3
    );
    assert!(client(&addr, &["--linger0"]).status.success());
    let _ = srv
        .stats()
        .wait_until(Duration::from_secs(5), |s| s.active() == 0);
    let s = srv.shutdown().unwrap();
    assert_eq!((s.fin, s.rst), (1, 1));
}

#[test]
fn refused_connect_exits_1() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = client(&format!("127.0.0.1:{port}"), &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot connect") && err.contains("refused"),
        "{err}"
    );
}

#[test]
fn server_closing_early_exits_1() {
    let mut cfg = Config::new("127.0.0.1:0".parse().unwrap(), Backend::Uring);
    cfg.max_conns = Some(1);
    let srv = start(&cfg).unwrap();
    let _held = TcpStream::connect(srv.local_addr()).unwrap();
    srv.stats()
        .wait_until(Duration::from_secs(5), |s| s.active() == 1)
        .expect("the held connection is accepted");
    let out = client(&srv.local_addr().to_string(), &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("closed the connection") || err.contains("reset"),
        "{err}"
    );
}

#[test]
fn bad_flags_exit_2() {
    for args in [
        &["--count", "0"][..],
        &["--interval", "x"],
        &["--addr", "here"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_ringecho-client"))
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}

/// `localhost:PORT`, as the seed's client dials: resolved, every address tried (::1 may come
/// first and be refused; 127.0.0.1 serves), and the logs carry no colour codes in a pipe.
#[test]
fn host_names_resolve_and_every_address_is_tried() {
    let srv = start(&Config::new("127.0.0.1:0".parse().unwrap(), Backend::Epoll)).unwrap();
    let port = srv.local_addr().port();
    let out = client(&format!("localhost:{port}"), &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("Reading data from server: Hi, gopher?"),
        "{err}"
    );
    assert!(
        !err.contains('\u{1b}'),
        "escape codes in piped logs: {err:?}"
    );
    srv.shutdown().unwrap();
    let out = client("no-such-host.invalid:8000", &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("no-such-host.invalid"), "{err}");
}

#[test]
fn explain_capture_of_something_that_is_not_a_capture_exits_1() {
    let f = std::env::temp_dir().join(format!("ringecho-garbage-{}.txt", std::process::id()));
    std::fs::write(&f, "not a tcpdump capture\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ringecho-client"))
        .args(["explain-capture", "--port", "8000"])
        .arg(&f)
        .output()
        .unwrap();
    std::fs::remove_file(&f).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("no TCP segment"), "{err}");
}

/// `--linger SECS` on a session: the server counts how it ended (0 is an RST, any other value
/// a FIN), and the client reports how long close() took.
#[test]
fn every_linger_mode_closes_a_session_as_set() {
    let srv = start(&Config::new(
        "127.0.0.1:0".parse().unwrap(),
        Backend::EpollLoop,
    ))
    .unwrap();
    let addr = srv.local_addr().to_string();
    for secs in ["-1", "0", "3"] {
        let out = client(&addr, &["--linger", secs]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "--linger {secs}: {err}");
        assert!(err.contains("close() took"), "--linger {secs}: {err}");
    }
    let _ = srv
        .stats()
        .wait_until(Duration::from_secs(5), |s| s.active() == 0);
    let s = srv.shutdown().unwrap();
    assert_eq!((s.fin, s.rst), (2, 1), "{s:?}");
    let both = client(&addr, &["--linger", "0", "--linger0"]);
    assert_eq!(
        both.status.code(),
        Some(2),
        "--linger and --linger0 conflict"
    );
    let bad = client(&addr, &["--linger", "soon"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("whole number"));
}

/// The three modes where they differ, by what they did (no capture, no root): with the peer
/// not reading, the default and a positive linger deliver every byte and a FIN, 0 discards
/// with an RST; the default returns at once and a positive linger blocks while the data is
/// unacknowledged (the command's own checks, generous about time, say so and exit 0).
#[test]
fn stalled_close_shows_the_three_modes() {
    let out = Command::new(env!("CARGO_BIN_EXE_ringecho-client"))
        .args(["stalled-close", "--linger", "-1,0,1", "--hold", "2s"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text.matches("  check: ").count(), 3, "{text}");
    assert!(text.contains("close() returned at once"), "{text}");
    assert!(text.contains("sent RST"), "{text}");
    assert!(text.contains("close() blocked"), "{text}");
    assert!(!text.contains("FAILED"), "{text}");
}
