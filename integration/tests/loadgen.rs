//! The loadgen against the real server on loopback: exact counts, agreement with the server's
//! metrics, the JSON contract, and proof that verification can fail.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::Command;

use clap::Parser;
use ringecho_integration::metrics_url;
use ringecho_loadgen::config::Cli;
use ringecho_loadgen::{run_load, Outcome};
use ringecho_server::{Backend, RunningServer};

fn server(backend: Backend) -> RunningServer {
    ringecho_integration::server(backend, |_| {})
}

/// Runs the loadgen against `srv` with `args`, its metrics as the witness of the closes.
fn load_witnessed(srv: &RunningServer, args: &[&str]) -> Outcome {
    let (addr, url) = (srv.local_addr().to_string(), metrics_url(srv));
    let mut all = vec!["--addr", &addr];
    all.extend_from_slice(args);
    all.extend(["--server-metrics", &url]);
    load(&all)
}

fn load(args: &[&str]) -> Outcome {
    let cli = Cli::try_parse_from(std::iter::once("ringecho-loadgen").chain(args.iter().copied()))
        .unwrap();
    run_load(&cli.run).expect("run completes")
}

fn bin() -> Command {
    Command::new(ringecho_integration::loadgen_exe())
}

fn fin_rst_counts_agree_with_the_server(backend: Backend) {
    let srv = server(backend);
    let out = load_witnessed(
        &srv,
        &[
            "--connections",
            "300",
            "--messages",
            "5",
            "--rst-share",
            "0.3",
            "--threads",
            "2",
        ],
    );
    let r = &out.report;
    assert_eq!(
        (
            r.counts.closes.fin,
            r.counts.closes.rst,
            r.counts.closes.server
        ),
        (210, 90, 0)
    );
    assert_eq!(r.counts.messages, 1500);
    assert_eq!(r.counts.mismatches, 0);
    assert!(r.counts.errors.is_empty(), "{:?}", r.counts.errors);
    let sc = r.server_closes.unwrap();
    assert_eq!((sc.fin, sc.rst, sc.error), (210, 90, 0));
    assert_eq!(r.server_agrees, Some(true));
    if let Some(k) = r.kernel {
        assert!(
            k.out_rsts >= 90,
            "the kernel sent at least our resets: {k:?}"
        );
    }
    srv.shutdown().unwrap();
}

fn churn_counts_are_exact(backend: Backend) {
    let srv = server(backend);
    let out = load_witnessed(
        &srv,
        &[
            "--connections",
            "20",
            "--messages",
            "50",
            "--churn",
            "10",
            "--rst-share",
            "0.25",
        ],
    );
    let r = &out.report;
    // 20 slots × 50 messages, a new connection every 10: 100 connections, 25 of them reset.
    assert_eq!(r.counts.messages, 1000);
    assert_eq!(r.counts.connects, 100);
    assert_eq!((r.counts.closes.fin, r.counts.closes.rst), (75, 25));
    assert_eq!(r.server_agrees, Some(true));
    assert!(r.latency_us.p50 > 0);
    srv.shutdown().unwrap();
}

#[test]
fn fin_rst_counts_agree_with_the_server_uring() {
    fin_rst_counts_agree_with_the_server(Backend::Uring)
}
#[test]
fn fin_rst_counts_agree_with_the_server_epoll() {
    fin_rst_counts_agree_with_the_server(Backend::Epoll)
}
#[test]
fn fin_rst_counts_agree_with_the_server_epoll_loop() {
    fin_rst_counts_agree_with_the_server(Backend::EpollLoop)
}
#[test]
fn fin_rst_counts_agree_with_the_server_multishot() {
    fin_rst_counts_agree_with_the_server(Backend::Multishot)
}
#[test]
fn churn_counts_are_exact_uring() {
    churn_counts_are_exact(Backend::Uring)
}
#[test]
fn churn_counts_are_exact_epoll() {
    churn_counts_are_exact(Backend::Epoll)
}
#[test]
fn churn_counts_are_exact_epoll_loop() {
    churn_counts_are_exact(Backend::EpollLoop)
}
#[test]
fn churn_counts_are_exact_multishot() {
    churn_counts_are_exact(Backend::Multishot)
}

#[test]
fn timed_open_loop_run_writes_every_output() {
    let srv = server(Backend::Epoll);
    let dir = std::env::temp_dir().join(format!("ringecho-lg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (json, hgrm, hlog) = (dir.join("r.json"), dir.join("r.hgrm"), dir.join("r.hlog"));
    let status = bin()
        .args([
            "--addr",
            &srv.local_addr().to_string(),
            "--connections",
            "50",
            "--duration",
            "1s",
            "--warmup",
            "200ms",
            "--rate",
            "2000",
        ])
        .args(["--server-metrics", &metrics_url(&srv)])
        .arg("--json")
        .arg(&json)
        .arg("--hgrm")
        .arg(&hgrm)
        .arg("--hist-log")
        .arg(&hlog)
        .status()
        .unwrap();
    assert!(status.success());
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    for key in [
        "messages",
        "bytes",
        "elapsed_s",
        "msgs_per_s",
        "latency_us",
        "closes",
        "errors",
        "mismatches",
        "server_closes",
    ] {
        assert!(v.get(key).is_some(), "JSON lacks {key}: {v}");
    }
    for key in ["p50", "p90", "p99", "p999", "max"] {
        assert!(
            v["latency_us"][key].as_u64().is_some(),
            "latency_us lacks {key}"
        );
    }
    for key in ["fin", "rst"] {
        assert!(v["closes"][key].as_u64().is_some() && v["server_closes"][key].as_u64().is_some());
    }
    // Open loop at 2,000 msg/s for 1 s: the count follows the schedule, not the server's speed.
    let messages = v["messages"].as_u64().unwrap();
    assert!(
        (1800..=2100).contains(&messages),
        "{messages} messages at 2000/s for 1 s"
    );
    assert_eq!(v["bytes"].as_u64().unwrap(), messages * 64);
    assert_eq!(v["closes"]["fin"].as_u64().unwrap(), 50);
    assert!(std::fs::read_to_string(&hgrm)
        .unwrap()
        .contains("Total count"));
    // merge reads the interval log back to the same counts.
    let merged = dir.join("m.json");
    assert!(bin()
        .arg("merge")
        .arg(&hlog)
        .arg(&hlog)
        .arg("--json")
        .arg(&merged)
        .status()
        .unwrap()
        .success());
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&merged).unwrap()).unwrap();
    assert_eq!(m["messages"].as_u64().unwrap(), 2 * messages);
    assert_eq!(m["latency_us"]["p99"], v["latency_us"]["p99"]);
    let svg = dir.join("p.svg");
    assert!(Command::new(ringecho_integration::perf_exe())
        .arg("plot")
        .arg("--out")
        .arg(&svg)
        .arg(format!("epoll={}", hgrm.display()))
        .status()
        .unwrap()
        .success());
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<svg"));
    std::fs::remove_dir_all(&dir).unwrap();
    srv.shutdown().unwrap();
}

type Peers = std::sync::Arc<std::sync::Mutex<Vec<SocketAddr>>>;

/// A thread-per-connection echo server in test code that records its peers' addresses and,
/// with `flip_every`, flips one bit of every n-th byte it echoes.
fn std_echo_server(flip_every: Option<usize>) -> (SocketAddr, Peers) {
    misbehaving_echo_server(flip_every, 0)
}

/// As [`std_echo_server`], and with `extra` > 0 it sends that many bytes more than it
/// received with every echo.
fn misbehaving_echo_server(flip_every: Option<usize>, extra: usize) -> (SocketAddr, Peers) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let peers = Peers::default();
    let seen = peers.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            seen.lock().unwrap().push(s.peer_addr().unwrap());
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let mut total = 0usize;
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        return;
                    }
                    if let Some(k) = flip_every {
                        for (i, b) in buf[..n].iter_mut().enumerate() {
                            if (total + i) % k == k - 1 {
                                *b ^= 1;
                            }
                        }
                    }
                    total += n;
                    let mut out = buf[..n].to_vec();
                    out.extend(std::iter::repeat(b'!').take(extra));
                    if s.write_all(&out).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, peers)
}

#[test]
fn source_addrs_spread_connections() {
    let (addr, peers) = std_echo_server(None);
    let out = load(&[
        "--addr",
        &addr.to_string(),
        "--connections",
        "30",
        "--messages",
        "4",
        "--source-addrs",
        "127.0.0.2-127.0.0.3,127.0.0.7",
    ]);
    assert_eq!(out.report.counts.messages, 120);
    assert_eq!(out.report.counts.mismatches, 0);
    let mut ips: Vec<String> = peers
        .lock()
        .unwrap()
        .iter()
        .map(|p| p.ip().to_string())
        .collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips, ["127.0.0.2", "127.0.0.3", "127.0.0.7"]);
}

#[test]
fn corrupted_echoes_are_caught_and_fail_the_run() {
    let (addr, _) = std_echo_server(Some(1000));
    let out = bin()
        .args([
            "--addr",
            &addr.to_string(),
            "--connections",
            "4",
            "--messages",
            "100",
            "--payload",
            "100",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    // 4 connections × 10,000 bytes, one flipped bit per 1,000 bytes.
    assert!(stdout.contains("mismatches   40 bytes"), "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("differed"));
}

#[test]
fn ten_thousand_concurrent_connections() {
    let _ = ringecho_server::listener::raise_nofile_limit();
    let srv = server(Backend::Multishot);
    let dir = std::env::temp_dir().join(format!("ringecho-10k-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("r.json");
    // The loadgen runs as its own process, so each side holds its 10,000 descriptors.
    let mut child = bin()
        .args([
            "--addr",
            &srv.local_addr().to_string(),
            "--connections",
            "10000",
            "--duration",
            "2s",
            "--rst-share",
            "0.1",
        ])
        .args(["--server-metrics", &metrics_url(&srv)])
        .arg("--json")
        .arg(&json)
        .spawn()
        .unwrap();
    let mut peak = 0;
    while child.try_wait().unwrap().is_none() {
        peak = peak.max(srv.stats().snapshot().active());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(child.wait().unwrap().success());
    assert_eq!(peak, 10_000, "all connections open at once");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["closes"]["fin"], 9_000);
    assert_eq!(v["closes"]["rst"], 1_000);
    assert_eq!(v["server_agrees"], true);
    assert_eq!(v["mismatches"], 0);
    assert!(v["messages"].as_u64().unwrap() > 10_000);
    std::fs::remove_dir_all(&dir).unwrap();
    srv.shutdown().unwrap();
}

fn pipelined_echo_is_verified_and_counted_exactly(backend: Backend) {
    let srv = server(backend);
    let before = srv.stats().snapshot();
    let out = load_witnessed(
        &srv,
        &[
            "--connections",
            "40",
            "--messages",
            "300",
            "--pipeline",
            "16",
            "--payload",
            "100",
            "--rst-share",
            "0.25",
            "--churn",
            "100",
        ],
    );
    let r = &out.report;
    assert_eq!(r.counts.messages, 12_000);
    assert_eq!(r.counts.mismatches, 0);
    assert!(r.counts.errors.is_empty(), "{:?}", r.counts.errors);
    // 40 slots × 3 connections each.
    assert_eq!((r.counts.closes.fin, r.counts.closes.rst), (90, 30));
    assert_eq!(r.server_agrees, Some(true));
    // Every byte sent came back: the measured messages and one probe per slot.
    let s = srv
        .stats()
        .wait_until(std::time::Duration::from_secs(5), |s| {
            s.bytes_echoed - before.bytes_echoed >= (12_000 + 40) * 100
        })
        .unwrap();
    assert_eq!(s.bytes_echoed - before.bytes_echoed, (12_000 + 40) * 100);
    assert_eq!(r.pipeline, 16);
    srv.shutdown().unwrap();
}

#[test]
fn pipelined_echo_is_verified_and_counted_exactly_uring() {
    pipelined_echo_is_verified_and_counted_exactly(Backend::Uring);
}
#[test]
fn pipelined_echo_is_verified_and_counted_exactly_epoll() {
    pipelined_echo_is_verified_and_counted_exactly(Backend::Epoll);
}
#[test]
fn pipelined_echo_is_verified_and_counted_exactly_epoll_loop() {
    pipelined_echo_is_verified_and_counted_exactly(Backend::EpollLoop);
}
#[test]
fn pipelined_echo_is_verified_and_counted_exactly_multishot() {
    pipelined_echo_is_verified_and_counted_exactly(Backend::Multishot);
}

/// A server that sends more than it was sent leaves unread bytes at our close, which turns a
/// FIN into an RST on the wire: counted as an RST (with the reason) and as corrupt bytes.
#[test]
fn unread_bytes_at_close_are_counted_as_the_rst_they_become() {
    let (addr, _) = misbehaving_echo_server(None, 10);
    let out = load(&[
        "--addr",
        &addr.to_string(),
        "--connections",
        "10",
        "--messages",
        "1",
    ]);
    let r = &out.report;
    assert_eq!(
        (
            r.counts.closes.fin,
            r.counts.closes.rst,
            r.counts.closes.rst_unread
        ),
        (0, 10, 10)
    );
    assert!(
        r.counts.mismatches >= 10,
        "extra bytes are not echoes: {r:?}"
    );
    assert!(!r.is_clean());
    if let Some(k) = r.kernel {
        assert!(k.out_rsts >= 10, "the kernel sent them as RSTs: {k:?}");
    }
}

/// The connect phase never reaches message latency: a server that accepts slowly shows up in
/// the connect phase only.
#[test]
fn slow_accepts_land_in_the_connect_phase_not_in_latency() {
    let socket = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .unwrap();
    socket
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    socket.listen(1).unwrap();
    let l: TcpListener = socket.into();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
            // The next connection waits in the backlog (or for a SYN retry) meanwhile.
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
    });
    let out = load(&[
        "--addr",
        &addr.to_string(),
        "--connections",
        "6",
        "--duration",
        "1s",
        "--rate",
        "300",
        "--threads",
        "2",
    ]);
    let r = &out.report;
    assert!(
        r.phases.connect_s >= 1.0,
        "6 accepts 250 ms apart: {:?}",
        r.phases
    );
    // Nothing of that second and more shows in any message's latency.
    assert!(r.counts.messages > 100, "{r:?}");
    assert!(
        r.latency_us.max < 200_000,
        "message latency {:?} includes the connect phase",
        r.latency_us
    );
}

/// A rate the loadgen cannot send is flagged, and --strict makes that an error.
#[test]
fn an_impossible_rate_is_flagged_loadgen_limited() {
    let srv = server(Backend::Epoll);
    let out = bin()
        .args([
            "--addr",
            &srv.local_addr().to_string(),
            "--connections",
            "1",
            "--duration",
            "500ms",
            "--rate",
            "50000000",
            "--strict",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("LOADGEN-LIMITED"), "{stdout}");
    assert!(stdout.contains("% of the 50000000 asked"), "{stdout}");
    assert_eq!(out.status.code(), Some(1), "--strict exits non-zero");
    srv.shutdown().unwrap();
}

/// An open-loop run at a low rate per connection ends with its window: a message due after
/// the end is never sent (with 300 connections at 30 msg/s each one's mean gap is 10 s, so
/// waiting for the next one would overrun the run by tens of seconds).
#[test]
fn a_low_rate_open_loop_run_ends_with_its_window() {
    let (addr, _) = std_echo_server(None);
    let t0 = std::time::Instant::now();
    let out = load(&[
        "--addr",
        &addr.to_string(),
        "--connections",
        "300",
        "--rate",
        "30",
        "--duration",
        "1s",
    ]);
    let took = t0.elapsed();
    assert_eq!(out.report.counts.mismatches, 0);
    // Ending early is not a reason to reconnect: one connect per slot.
    assert_eq!(out.report.counts.connects, 300);
    assert_eq!(out.report.counts.closes.fin, 300);
    assert!(
        took < std::time::Duration::from_secs(15),
        "a 1 s window took {took:?}"
    );
}

/// The default warm-up decides where the window opens — once latency settles, or at
/// --warmup-max — and says which; the report's timeline holds every echo since the load
/// began (not the probes), the measured ones among them.
#[test]
fn the_default_warm_up_decides_the_window_and_reports_its_timeline() {
    let (addr, _) = std_echo_server(None);
    let out = load(&[
        "--addr",
        &addr.to_string(),
        "--connections",
        "20",
        "--duration",
        "500ms",
        "--warmup-max",
        "1s",
    ]);
    let r = &out.report;
    assert!(r.phases.warmup_settled.is_some(), "{:?}", r.phases);
    assert!(r.phases.warmup_s <= 1.5, "{:?}", r.phases);
    let in_timeline: u64 = r.timeline.iter().map(|i| i.messages).sum();
    assert_eq!(
        in_timeline,
        r.counts.messages_total - r.counts.connects,
        "probes excluded"
    );
    assert!(r.counts.messages > 0 && r.counts.messages <= in_timeline);
    assert!(r.to_string().contains("warm-up"), "{r}");
}

/// `merge` checks bytes and closes against the server's counter deltas, not receives: with
/// `--pipeline` several messages share a receive, so receives and messages differ.
#[test]
fn merge_agrees_with_the_server_when_messages_share_receives() {
    use ringecho_loadgen::witness::http_get;
    let srv = server(Backend::Epoll);
    let dir = std::env::temp_dir().join(format!("ringecho-merge-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = metrics_url(&srv);
    let scrape = |name: &str| {
        let p = dir.join(name);
        let text = http_get(&url, std::time::Duration::from_secs(5)).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    };
    let before = scrape("before.prom");
    let hlog = dir.join("r.hlog");
    let status = bin()
        .args(["--addr", &srv.local_addr().to_string()])
        .args(["--connections", "2", "--messages", "200", "--pipeline", "8"])
        .arg("--hist-log")
        .arg(&hlog)
        .status()
        .unwrap();
    assert!(status.success());
    // The server counts the closes a moment after the loadgen made them.
    srv.stats()
        .wait_until(std::time::Duration::from_secs(5), |s| s.active() == 0)
        .unwrap();
    let after = scrape("after.prom");
    let out = bin()
        .arg("merge")
        .arg(&hlog)
        .arg("--server-before")
        .arg(&before)
        .arg("--server-after")
        .arg(&after)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains(": agrees)"), "{text}");
    // 400 measured messages and two probes of 64 bytes.
    assert!(text.contains("bytes 25728"), "{text}");
    let receives: u64 = text
        .split(" receives for")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no receive count in {text}"));
    assert!(receives > 0, "{text}");
    std::fs::remove_dir_all(&dir).unwrap();
    srv.shutdown().unwrap();
}
