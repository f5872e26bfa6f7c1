//! The binary itself: exit codes and messages for bad input, and a SIGTERM drain.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ringecho-server"))
}

#[test]
fn bad_flags_exit_2_with_a_message() {
    for args in [
        &["--threads", "0"][..],
        &["--listen", "nowhere"],
        &["--backend", "select"],
        &["--idle-timeout", "forever"],
        &["--buffer-size", "-5"],
        &["--no-such-flag"],
    ] {
        let out = bin().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("error"), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn bad_values_say_what_would_do() {
    for (args, expect) in [
        (&["--max-conns", "0"][..], "at least 1"),
        (&["--listen", "localhost"], "HOST:PORT"),
        (
            &["--listen", "no-such-host.invalid:80"],
            "no-such-host.invalid",
        ),
    ] {
        let out = bin().args(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(expect), "{args:?}: {err}");
    }
}

/// `--generate man | head`: the reader leaving early is not an error.
#[test]
fn generated_output_cut_short_by_its_reader_is_not_an_error() {
    let mut child = bin()
        .args(["--generate", "man"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

/// systemd's notify protocol: with NOTIFY_SOCKET set, READY=1 arrives once the server
/// listens, and the port then takes connections.
#[test]
fn ready_is_notified_once_listening() {
    let dir = std::env::temp_dir().join(format!("ringecho-notify-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock_path = dir.join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = bin()
        .args(["--listen", &addr, "--backend", "epoll", "--threads", "1"])
        .env("NOTIFY_SOCKET", &sock_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 256];
    let n = sock.recv(&mut buf).expect("READY=1 within 20 s");
    let msg = String::from_utf8_lossy(&buf[..n]).to_string();
    let listening = TcpStream::connect(&addr).is_ok();
    stop(&mut child);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(msg.lines().any(|l| l == "READY=1"), "{msg:?}");
    assert!(listening, "READY=1 came before the port listened");
}

/// `--ready-file`: written once listening, whole, with every address and the metrics one.
#[test]
fn ready_file_names_every_listener_once_listening() {
    let dir = std::env::temp_dir().join(format!("ringecho-ready-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ready");
    let mut child = bin()
        .args([
            "--listen",
            "127.0.0.1:0",
            "--metrics",
            "127.0.0.1:0",
            "--backend",
            "multishot",
        ])
        .arg("--ready-file")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !path.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "no ready file in 20 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let text = std::fs::read_to_string(&path).unwrap();
    let listen: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("listen "))
        .collect();
    let metrics = text.lines().find_map(|l| l.strip_prefix("metrics "));
    let echo_ok = listen
        .first()
        .map(|a| {
            let mut s = TcpStream::connect(a).unwrap();
            s.write_all(b"ready?").unwrap();
            let mut buf = [0u8; 6];
            s.read_exact(&mut buf).unwrap();
            &buf == b"ready?"
        })
        .unwrap_or(false);
    let metrics_ok = metrics.is_some_and(|m| TcpStream::connect(m).is_ok());
    stop(&mut child);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(listen.len(), 1, "{text}");
    assert!(echo_ok, "{text}");
    assert!(metrics_ok, "{text}");
}

fn stop(child: &mut std::process::Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn address_in_use_exits_1_naming_the_address() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap().to_string();
    for backend in ["uring", "epoll", "epoll-loop", "multishot"] {
        let out = bin()
            .args(["--listen", &addr, "--backend", backend])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&addr) && err.contains("in use"), "{err}");
    }
}

#[test]
fn a_ready_file_from_an_earlier_run_is_removed_before_listening() {
    // A server that cannot listen must leave no ready file, old or new: a waiter would take
    // the old one for this server.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap().to_string();
    let path = std::env::temp_dir().join(format!("ringecho-stale-ready-{}", std::process::id()));
    std::fs::write(&path, "listen 127.0.0.1:1\n").unwrap();
    let out = bin()
        .args(["--listen", &addr, "--backend", "epoll", "--ready-file"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(!path.exists(), "the old ready file is still there");
}

#[test]
fn sigterm_drains_and_exits_0_with_a_summary() {
    for backend in ["uring", "epoll", "epoll-loop", "multishot"] {
        let mut child = bin()
            .args([
                "--listen",
                "127.0.0.1:0",
                "--backend",
                backend,
                "--drain-timeout",
                "300ms",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let addr = line.trim().rsplit(' ').next().unwrap().to_string();
        let mut s = TcpStream::connect(&addr).unwrap();
        s.write_all(b"hello").unwrap();
        let mut back = [0u8; 5];
        s.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"hello");
        // SAFETY: signalling a child we spawned and have not reaped.
        assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
        let mut rest = String::new();
        out.read_to_string(&mut rest).unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(0), "{backend}: {rest}");
        assert!(
            rest.contains("connections accepted  1"),
            "{backend}: {rest}"
        );
        assert!(
            rest.contains("server 1"),
            "{backend}: the open connection is closed by the drain: {rest}"
        );
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert!(matches!(s.read(&mut back), Ok(0) | Err(_)));
    }
}
