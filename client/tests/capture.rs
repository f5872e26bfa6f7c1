//! The seed's experiment as a check: capture a real session on loopback with tcpdump and
//! assert what the packets say. Needs tcpdump and the right to capture (root); `.ci/run`
//! installs tcpdump, and a missing one fails the test rather than skipping it.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ringecho_client::capture::Capture;
use ringecho_server::{start, Backend, Config};

const MESSAGE: &str = "Hi, gopher?";

/// A running tcpdump, killed if a test fails before stopping it.
struct Tcpdump(Child);

impl Drop for Tcpdump {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts tcpdump on loopback for `port` and returns once it is capturing.
fn start_tcpdump(port: u16) -> Tcpdump {
    let mut child = Command::new("tcpdump")
        .args(["-i", "lo", "-S", "-nn", "-l", "-U", "tcp", "port", &port.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("tcpdump is required for this test (apt-get install tcpdump; .ci/run installs it): {e}"));
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut said = String::new();
    while !said.contains("listening on") {
        let mut line = String::new();
        if err.read_line(&mut line).unwrap() == 0 {
            panic!("tcpdump did not start (run as root?): {said}");
        }
        said.push_str(&line);
    }
    Tcpdump(child)
}

fn capture_session(backend: Backend, linger0: bool) -> Capture {
    let mut cfg = Config::new("127.0.0.1:0".parse().unwrap(), backend);
    cfg.threads = Some(1);
    let srv = start(&cfg).unwrap();
    let port = srv.local_addr().port();
    let mut tcpdump = start_tcpdump(port);
    let mut client = Command::new(env!("CARGO_BIN_EXE_ringecho-client"));
    client.args([
        "--addr",
        &srv.local_addr().to_string(),
        "--message",
        MESSAGE,
    ]);
    if linger0 {
        client.arg("--linger0");
    }
    let out = client.output().unwrap();
    assert!(
        out.status.success(),
        "client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Let the last ACK (or the server's reaction to the RST) reach the capture.
    let _ = srv
        .stats()
        .wait_until(Duration::from_secs(5), |s| s.active() == 0);
    std::thread::sleep(Duration::from_millis(200));
    // SAFETY: signalling a child we spawned and have not reaped; SIGINT makes tcpdump flush.
    unsafe { libc::kill(tcpdump.0.id() as i32, libc::SIGINT) };
    let mut text = String::new();
    tcpdump
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    tcpdump.0.wait().unwrap();
    srv.shutdown().unwrap();
    let c = Capture::parse(&text, port);
    println!("{}", c.explain());
    c
}

#[test]
fn fin_close_is_the_four_way_exchange() {
    if !ringecho_testkit::can_run(
        "fin_close_is_the_four_way_exchange",
        &[
            ringecho_testkit::Need::Root,
            ringecho_testkit::Need::Tool("tcpdump"),
        ],
    ) {
        return;
    }
    for backend in [Backend::Uring, Backend::Epoll, Backend::Multishot] {
        let c = capture_session(backend, false);
        assert!(c.has_handshake(), "{backend:?}: {c:#?}");
        assert_eq!(c.data_lengths(true), vec![MESSAGE.len()], "{backend:?}");
        assert_eq!(
            c.data_lengths(false),
            vec![MESSAGE.len()],
            "{backend:?}: echo exactly the bytes read"
        );
        assert_eq!(
            (c.fins(true), c.fins(false)),
            (1, 1),
            "{backend:?}: a FIN from each side"
        );
        assert_eq!(c.rsts(true) + c.rsts(false), 0, "{backend:?}: no RST");
    }
}

#[test]
fn linger0_close_is_one_rst_from_the_client() {
    if !ringecho_testkit::can_run(
        "linger0_close_is_one_rst_from_the_client",
        &[
            ringecho_testkit::Need::Root,
            ringecho_testkit::Need::Tool("tcpdump"),
        ],
    ) {
        return;
    }
    for backend in [Backend::Uring, Backend::Epoll, Backend::Multishot] {
        let c = capture_session(backend, true);
        assert!(c.has_handshake(), "{backend:?}: {c:#?}");
        assert_eq!(c.data_lengths(true), vec![MESSAGE.len()], "{backend:?}");
        assert_eq!(c.data_lengths(false), vec![MESSAGE.len()], "{backend:?}");
        assert_eq!(
            (c.rsts(true), c.rsts(false)),
            (1, 0),
            "{backend:?}: exactly one RST, from the client"
        );
        assert_eq!(c.fins(true) + c.fins(false), 0, "{backend:?}: no FIN");
    }
}

/// A free port on loopback for a stalled-close peer (bound and released: tcpdump filters on
/// it before the peer listens).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The seed's three SetLinger modes on the wire, where they differ: the peer stops reading
/// (its window goes to zero), the client closes with data unacknowledged; the default and
/// a positive linger end with the client's FIN after its last byte and no RST, 0 with the
/// client's RST and no FIN. Each capture checked segment by segment.
#[test]
fn stalled_close_modes_on_the_wire() {
    if !ringecho_testkit::can_run(
        "stalled_close_modes_on_the_wire",
        &[
            ringecho_testkit::Need::Root,
            ringecho_testkit::Need::Tool("tcpdump"),
        ],
    ) {
        return;
    }
    for (secs, mode) in [
        ("-1", ringecho_client::Linger::Default),
        ("0", ringecho_client::Linger::Abort),
        ("2", ringecho_client::Linger::Seconds(2)),
    ] {
        let port = free_port();
        let mut tcpdump = start_tcpdump(port);
        let out = Command::new(env!("CARGO_BIN_EXE_ringecho-client"))
            .args(["stalled-close", "--linger", secs, "--hold", "3s"])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "--linger {secs}: {said}");
        std::thread::sleep(Duration::from_millis(300));
        // SAFETY: signalling a child we spawned and have not reaped; SIGINT makes tcpdump flush.
        unsafe { libc::kill(tcpdump.0.id() as i32, libc::SIGINT) };
        let mut text = String::new();
        tcpdump
            .0
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        tcpdump.0.wait().unwrap();
        let c = Capture::parse(&text, port);
        println!("{said}{}", c.explain());
        let verdict = c.check_stalled(mode);
        assert!(
            verdict.is_ok(),
            "--linger {secs}: {verdict:?}\n{}",
            c.explain()
        );
    }
}
