//! The fault suite: the server under its worst clients, every backend, on loopback (and, for
//! loss, across a veth pair dropping segments between this process and a network namespace made here).
//! The server runs in this test process (its descriptors and memory are this process's), the
//! loadgen as its own process. Each scenario is bounded in connections and time.
//!
//! `RINGECHO_FAULTS_REPORT=FILE` appends one JSON line per scenario with its figures, which
//! `scripts/faults.sh` turns into the README's reliability table.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use ringecho_integration::{figure, linger0, never_reader, server, sh, stall, ServerProcess};
use ringecho_server::{start, Backend, Config, RunningServer, Snapshot};
use serde_json::{json, Value};

const BACKENDS: [Backend; 4] = [
    Backend::Uring,
    Backend::Epoll,
    Backend::EpollLoop,
    Backend::Multishot,
];

/// The multishot ring's buffers per thread at the default flags (4 KiB each): what the memory
/// bounds below are computed from.
const RING_BUFFERS: usize = 256;

/// How a variant departs from the default flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tweak {
    Defaults,
    /// The multishot levers that are off by default, on: `--direct-descriptors on
    /// --recv-bundles on`.
    Direct,
    /// Every switchable multishot lever off (`--gather-sends off --large-receives off
    /// --recv-bundles off`): the fallbacks run too.
    LeversOff,
}

impl Tweak {
    fn apply(self, c: &mut Config) {
        match self {
            Tweak::Defaults => {}
            Tweak::Direct => {
                c.direct_descriptors = true;
                c.recv_bundles = true;
            }
            Tweak::LeversOff => {
                c.gather_sends = false;
                c.large_receives = false;
                c.recv_bundles = false;
            }
        }
    }
}

/// Every backend, and multishot once more with its off-by-default levers on (direct
/// descriptors, receive bundles) and once with its levers off: the scenarios that stress closing paths and held buffers run against all of them.
const VARIANTS: [(Backend, Tweak); 6] = [
    (Backend::Uring, Tweak::Defaults),
    (Backend::Epoll, Tweak::Defaults),
    (Backend::EpollLoop, Tweak::Defaults),
    (Backend::Multishot, Tweak::Defaults),
    (Backend::Multishot, Tweak::Direct),
    (Backend::Multishot, Tweak::LeversOff),
];

/// How a scenario's figures name what they measured.
trait Label {
    fn label(&self) -> String;
}

impl Label for Backend {
    fn label(&self) -> String {
        self.name().to_string()
    }
}

impl Label for (Backend, Tweak) {
    fn label(&self) -> String {
        match self {
            (b, Tweak::Defaults) => b.name().to_string(),
            (b, Tweak::Direct) => format!("{}-direct", b.name()),
            (b, Tweak::LeversOff) => format!("{}-levers-off", b.name()),
        }
    }
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("VmRSS:")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap()
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ringecho-faults-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Runs the loadgen binary (optionally under a prefix such as `ip netns exec NS`) and returns
/// its output and JSON report; with `witness`, it also checks the server's close counters.
fn loadgen(
    prefix: &[&str],
    witness: Option<&RunningServer>,
    addr: SocketAddr,
    args: &[&str],
) -> (Output, Value) {
    let json = tmp(&format!(
        "lg-{}.json",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    let exe = ringecho_integration::loadgen_exe();
    let mut cmd = match prefix.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(exe);
            c
        }
        None => Command::new(exe),
    };
    cmd.args(["--addr", &addr.to_string()])
        .args(args)
        .arg("--json")
        .arg(&json);
    if let Some(srv) = witness {
        cmd.args([
            "--server-metrics",
            &format!("http://{}/metrics", srv.metrics_addr().unwrap()),
        ]);
    }
    let out = cmd.output().unwrap();
    let report = std::fs::read_to_string(&json)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null);
    (out, report)
}

/// Runs the loadgen and insists on a clean run: exit 0 and no mismatched byte.
fn clean_loadgen(
    prefix: &[&str],
    witness: Option<&RunningServer>,
    addr: SocketAddr,
    args: &[&str],
) -> Value {
    let (out, r) = loadgen(prefix, witness, addr, args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(r["mismatches"], 0, "{r}");
    r
}

fn wait_settled(srv: &RunningServer, what: &str, done: impl Fn(&Snapshot) -> bool) -> Snapshot {
    srv.stats()
        .wait_until(Duration::from_secs(20), done)
        .unwrap_or_else(|s| panic!("timed out waiting for {what}: {s:?}"))
}

/// Every accepted connection is accounted for exactly once, and none was evicted: no fault
/// scenario brings the server to its connection limit with a connection idle for a second.
fn assert_adds_up(s: &Snapshot) {
    assert_eq!(
        s.accepted,
        s.fin + s.rst + s.error + s.server + s.active(),
        "{s:?}"
    );
    assert_eq!(s.evicted, 0, "an eviction below the limits: {s:?}");
}

fn record(scenario: &str, backend: impl Label, figures: Value) {
    let name = backend.label();
    println!("{scenario} {name}: {figures}");
    if let Ok(path) = std::env::var("RINGECHO_FAULTS_REPORT") {
        let line = json!({"scenario": scenario, "backend": name, "figures": figures});
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        writeln!(f, "{line}").unwrap();
    }
}

/// Sends `data`, half-closes, and reads until the server's FIN; returns what came back.
fn half_close_echo(addr: SocketAddr, data: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut wr = s.try_clone().unwrap();
    let sent = data.to_vec();
    let t = std::thread::spawn(move || {
        wr.write_all(&sent).unwrap();
        wr.shutdown(Shutdown::Write).unwrap();
    });
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    t.join().unwrap();
    got
}

/// Connections reset with data in flight both ways, and a loadgen run resetting every close.
#[test]
fn rst_storm() {
    for (backend, tweak) in VARIANTS {
        let srv = server(backend, |c| tweak.apply(c));
        let (fds0, rss0) = (open_fds(), rss_kib());
        // 400 peers write 256 KiB without reading, so the server's sends back to them block
        // with data queued, then vanish with RST.
        let addr = srv.local_addr();
        let peers: Vec<std::thread::JoinHandle<()>> = (0..4)
            .map(|_| {
                std::thread::spawn(move || {
                    let conns: Vec<TcpStream> = (0..100)
                        .map(|_| TcpStream::connect(addr).unwrap())
                        .collect();
                    let chunk = vec![0xabu8; 256 << 10];
                    for mut c in &conns {
                        c.set_write_timeout(Some(Duration::from_millis(50)))
                            .unwrap();
                        let _ = c.write(&chunk);
                    }
                    for c in &conns {
                        linger0(c);
                    }
                })
            })
            .collect();
        // Meanwhile a loadgen churns 1,000 connections, every close an RST.
        // (No server witness: the 400 raw peers' closes are counted by the server too.)
        let r = clean_loadgen(
            &[],
            None,
            addr,
            &[
                "--connections",
                "200",
                "--messages",
                "50",
                "--churn",
                "10",
                "--rst-share",
                "1",
                "--payload",
                "1024",
            ],
        );
        for p in peers {
            p.join().unwrap();
        }
        assert_eq!(r["closes"]["rst"], 1000);
        let s = wait_settled(&srv, "all closed", |s| {
            s.active() == 0 && s.accepted == 1400
        });
        assert_adds_up(&s);
        assert_eq!(s.rst + s.error, 1400 - s.fin, "{s:?}");
        std::thread::sleep(Duration::from_millis(100));
        let (fds1, rss1) = (open_fds(), rss_kib());
        assert!(
            fds1 <= fds0,
            "descriptors leaked: {fds0} before, {fds1} after"
        );
        // Back near the baseline: per-connection state is gone. The multishot backend keeps
        // its ring buffers resident once touched (RING_BUFFERS × 4 KiB per thread, 2 threads),
        // a fixed bound that does not grow with connections.
        let ring_kib = if backend == Backend::Multishot {
            2 * RING_BUFFERS as u64 * 4
        } else {
            0
        };
        assert!(
            rss1 < rss0 + ring_kib + 16 * 1024,
            "RSS {rss0} KiB before, {rss1} KiB after"
        );
        record(
            "rst_storm",
            (backend, tweak),
            json!({
                "connections": s.accepted, "resets_seen": s.rst, "errors": s.error,
                "bytes_verified": r["bytes"], "mismatches": r["mismatches"],
                "fds_before": fds0, "fds_after": fds1, "rss_kib_before": rss0, "rss_kib_after": rss1,
            }),
        );
        srv.shutdown().unwrap();
    }
}

/// Clients in a flood.
const FLOOD_CLIENTS: usize = 120;

/// The flood's client sockets, made up front (before a test lowers the descriptor limit):
/// one per client and enough more for the retries of those refused at the limit.
fn flood_sockets() -> Vec<socket2::Socket> {
    (0..FLOOD_CLIENTS * 10)
        .map(|_| {
            socket2::Socket::new(
                socket2::Domain::IPV4,
                socket2::Type::STREAM,
                Some(socket2::Protocol::TCP),
            )
            .unwrap()
        })
        .collect()
}

/// [`FLOOD_CLIENTS`] clients arrive at once; each echoes 1 KiB, holds its connection 300 ms
/// (so the server's descriptors run out) and half-closes. A client the server refuses at
/// its limit (closed before the echo, as nobody has been idle long enough to give way)
/// tries again 100 ms later on a fresh socket, as a real client would; one past the limit
/// that waits in the backlog is served when earlier ones leave. Returns how many got
/// exactly their bytes back, and the retries.
fn flood(sockets: Vec<socket2::Socket>, addr: SocketAddr) -> (usize, usize) {
    let pool = std::sync::Arc::new(std::sync::Mutex::new(sockets));
    let clients: Vec<_> = (0..FLOOD_CLIENTS as u32)
        .map(|i| {
            let pool = pool.clone();
            std::thread::spawn(move || {
                let data: Vec<u8> = (0..1024u32).map(|k| (k ^ i) as u8).collect();
                let mut retries = 0;
                let deadline = Instant::now() + Duration::from_secs(30);
                let mut s = loop {
                    assert!(Instant::now() < deadline, "client {i} never got in");
                    let sock = pool.lock().unwrap().pop().expect("a spare client socket");
                    sock.connect(&addr.into()).unwrap();
                    let mut s: TcpStream = sock.into();
                    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                    let mut back = vec![0u8; data.len()];
                    let echoed = s.write_all(&data).and_then(|()| s.read_exact(&mut back));
                    match echoed {
                        Ok(()) => {
                            assert_eq!(back, data, "client {i}'s echo altered");
                            break s;
                        }
                        // Refused: closed (FIN, or RST over the unread bytes) before the echo.
                        Err(_) => {
                            retries += 1;
                            std::thread::sleep(Duration::from_millis(100));
                        }
                    }
                };
                std::thread::sleep(Duration::from_millis(300));
                s.shutdown(Shutdown::Write).unwrap();
                let mut rest = Vec::new();
                s.read_to_end(&mut rest).unwrap();
                (rest.is_empty(), retries)
            })
        })
        .collect();
    clients
        .into_iter()
        .map(|c| c.join().expect("client served"))
        .fold((0, 0), |(ok, tries), (exact, r)| {
            (ok + usize::from(exact), tries + r)
        })
}

/// Sets RLIMIT_NOFILE's soft limit and returns the previous one.
fn set_nofile(soft: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: get/setrlimit read and write the struct we pass.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        let old = lim.rlim_cur;
        lim.rlim_cur = soft.min(lim.rlim_max);
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
        old
    }
}

/// Flooded past RLIMIT_NOFILE: the server serves what it holds and refuses what comes past
/// its limit (the descriptor table less a reserve; nobody is idle long enough to give way),
/// or backs off on EMFILE; service resumes as clients leave, and every client that tries
/// again gets every byte back. One process per backend, so the limit is measured from a
/// clean descriptor table. (multishot's direct descriptors take no descriptors;
/// `direct_table_full_multishot` floods their file table instead.)
fn fd_exhaustion(backend: Backend) {
    // Start the server under a low limit, as `prlimit --nofile` would: room for about 40
    // connections. The clients live in this process too: their sockets are made before the
    // limit drops, so only the server's accepts run into it.
    let sockets = flood_sockets();
    let old = set_nofile(open_fds() as u64 + 60);
    let mut cfg = Config::new("127.0.0.1:0".parse().unwrap(), backend);
    cfg.threads = Some(2);
    cfg.metrics = Some("127.0.0.1:0".parse().unwrap());
    let srv = start(&cfg).expect("server starts");
    let addr = srv.local_addr();
    let (exact, retries) = flood(sockets, addr);
    set_nofile(old);
    assert_eq!(
        exact, FLOOD_CLIENTS,
        "every client got exactly its bytes back"
    );
    let n = FLOOD_CLIENTS as u64;
    let s = wait_settled(&srv, "all served", |s| s.fin == n && s.active() == 0);
    assert!(
        s.refused_limit + s.accept_errors > 0,
        "the flood never reached the limit: {s:?}"
    );
    assert_eq!(s.evicted, 0, "nobody was idle a second: {s:?}");
    assert_eq!(s.server, s.refused_limit, "{s:?}");
    assert_adds_up(&s);
    // Service resumes fully once the limit is no longer in the way.
    let (out, _) = loadgen(
        &[],
        Some(&srv),
        srv.local_addr(),
        &["--connections", "50", "--messages", "20"],
    );
    assert!(out.status.success());
    record(
        "fd_exhaustion",
        backend,
        json!({
            "connections": s.accepted, "accept_errors": s.accept_errors, "refused": s.refused_limit,
            "client_retries": retries, "bytes_verified": n * 1024, "exact_echoes": exact,
        }),
    );
    srv.shutdown().unwrap();
}

#[test]
fn fd_exhaustion_uring() {
    fd_exhaustion(Backend::Uring)
}
#[test]
fn fd_exhaustion_epoll() {
    fd_exhaustion(Backend::Epoll)
}
#[test]
fn fd_exhaustion_epoll_loop() {
    fd_exhaustion(Backend::EpollLoop)
}
#[test]
fn fd_exhaustion_multishot() {
    fd_exhaustion(Backend::Multishot)
}

/// The multishot backend's direct descriptors, flooded past one thread's file table: the
/// server stops accepting while the table is full (connections wait in the backlog; a
/// multishot accept into a full table would take them off the backlog and drop them), counts
/// the pause with the accept errors and serves every client exactly. The server runs as its
/// own process under `ulimit -n 48`, which caps its table at 48 slots.
#[test]
fn direct_table_full_multishot() {
    let sockets = flood_sockets();
    let srv = direct_server(48, &["--threads", "1"]);
    let (exact, retries) = flood(sockets, srv.addr);
    let summary = srv.stop();
    assert_eq!(exact, 120, "every client got exactly its bytes back");
    assert_eq!(
        retries, 0,
        "a full table leaves clients in the backlog: {summary}"
    );
    assert_eq!(figure(&summary, "connections accepted"), 120, "{summary}");
    let pauses = figure(&summary, "accept errors");
    assert!(pauses > 0, "the table never filled: {summary}");
    assert!(summary.contains("closes: fin 120  rst 0"), "{summary}");
    record(
        "direct_table_full",
        Backend::Multishot,
        json!({ "connections": 120, "table_slots": 48, "accept_pauses": pauses, "exact_echoes": exact }),
    );
}

/// Direct descriptors are not the process's: under `ulimit -n 64`, a two-thread multishot
/// server holds 80 connections open at once (each thread's table has 64 slots; with ordinary
/// descriptors the 60-odd left after its own would be all it could hold) and echoes on
/// every one. 80, not more, so that SO_REUSEPORT's hash never gives one thread over 64.
#[test]
fn direct_descriptors_hold_more_than_the_descriptor_limit() {
    let srv = direct_server(64, &["--threads", "2"]);
    let mut conns: Vec<TcpStream> = (0..80)
        .map(|_| {
            let s = TcpStream::connect(srv.addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s
        })
        .collect();
    for (i, s) in conns.iter_mut().enumerate() {
        let msg = format!("connection {i} still here");
        s.write_all(msg.as_bytes()).unwrap();
        let mut back = vec![0u8; msg.len()];
        s.read_exact(&mut back).unwrap();
        assert_eq!(back, msg.as_bytes());
    }
    drop(conns);
    let summary = srv.stop();
    assert_eq!(figure(&summary, "connections accepted"), 80, "{summary}");
    assert_eq!(figure(&summary, "accept errors"), 0, "{summary}");
}

/// A multishot server with direct descriptors as its own process, under `ulimit -n LIMIT`.
fn direct_server(limit: u32, args: &[&str]) -> ServerProcess {
    let mut all = vec!["--backend", "multishot", "--direct-descriptors", "on"];
    all.extend_from_slice(args);
    ServerProcess::start(Some(limit), &all)
}

/// Peers that never read, mixed with healthy ones: healthy peers get every byte back, memory
/// stays bounded, and the idle timeout closes the stuck peers.
#[test]
fn slow_and_never_reading_peers() {
    for backend in BACKENDS {
        let srv = server(backend, |c| {
            c.idle_timeout = Some(Duration::from_millis(800))
        });
        let rss0 = rss_kib();
        let addr = srv.local_addr();
        let hogs: Vec<TcpStream> = (0..50)
            .map(|_| {
                let s = TcpStream::connect(addr).unwrap();
                s.set_write_timeout(Some(Duration::from_millis(20)))
                    .unwrap();
                s
            })
            .collect();
        let chunk = vec![1u8; 1 << 20];
        let mut pushed = 0usize;
        for mut h in &hogs {
            for _ in 0..16 {
                match h.write(&chunk) {
                    Ok(n) => pushed += n,
                    Err(_) => break,
                }
            }
        }
        let r = clean_loadgen(
            &[],
            Some(&srv),
            addr,
            &[
                "--connections",
                "200",
                "--messages",
                "200",
                "--payload",
                "512",
            ],
        );
        assert_eq!(r["messages"], 40_000);
        let rss1 = rss_kib();
        // 50 stuck peers may pin kernel buffers, not server memory: bounded well under what
        // they pushed.
        assert!(
            rss1 < rss0 + 64 * 1024,
            "server memory grew from {rss0} to {rss1} KiB"
        );
        let s = wait_settled(&srv, "idle peers closed", |s| {
            s.server >= 50 && s.active() == 0
        });
        assert_adds_up(&s);
        drop(hogs);
        record(
            "never_reading_peers",
            backend,
            json!({
                "stuck_peers": 50, "bytes_pushed_by_stuck_peers": pushed, "idle_closes": s.server,
                "bytes_verified": r["bytes"], "mismatches": r["mismatches"], "rss_kib_before": rss0, "rss_kib_during": rss1,
            }),
        );
        srv.shutdown().unwrap();
    }
}

/// Large messages and streams beside peers that never read: 64 KiB messages four in flight,
/// 16 KiB ones, and a 1 KiB stream 64 in flight all come back whole and exact, on every
/// variant, while 100 stuck peers hold what the server may give them.
#[test]
fn large_messages_and_streams_beside_never_readers() {
    for (backend, tweak) in VARIANTS {
        let srv = server(backend, |c| tweak.apply(c));
        let addr = srv.local_addr();
        let mut hogs: Vec<TcpStream> = (0..100).map(|_| never_reader(addr)).collect();
        let pushed = stall(&mut hogs, 16 << 10);
        let mut verified = 0u64;
        for args in [
            [
                "--connections",
                "10",
                "--payload",
                "65536",
                "--pipeline",
                "4",
                "--messages",
                "200",
            ],
            [
                "--connections",
                "20",
                "--payload",
                "16384",
                "--pipeline",
                "1",
                "--messages",
                "200",
            ],
            [
                "--connections",
                "1",
                "--payload",
                "1024",
                "--pipeline",
                "64",
                "--messages",
                "20000",
            ],
        ] {
            let r = clean_loadgen(&[], None, addr, &args);
            let (conns, msgs): (u64, u64) = (args[1].parse().unwrap(), args[7].parse().unwrap());
            assert_eq!(r["messages"], conns * msgs, "{args:?}: {r}");
            verified += r["bytes"].as_u64().unwrap_or(0);
        }
        drop(hogs);
        let s = wait_settled(&srv, "all closed and buffers back", |s| {
            s.active() == 0 && s.ring_buffers_held == 0 && s.spill_buffers_held == 0
        });
        assert_adds_up(&s);
        record(
            "large_messages_and_streams",
            (backend, tweak),
            json!({
                "stuck_peers": 100, "bytes_pushed_by_stuck_peers": pushed,
                "bytes_verified": verified, "mismatches": 0,
            }),
        );
        srv.shutdown().unwrap();
    }
}

/// Many peers half-close with data still in flight: each gets every byte back, then a FIN.
#[test]
fn half_close_storm() {
    for (backend, tweak) in VARIANTS {
        let srv = server(backend, |c| tweak.apply(c));
        let addr = srv.local_addr();
        let workers: Vec<_> = (0..8u8)
            .map(|w| {
                std::thread::spawn(move || {
                    let mut bytes = 0usize;
                    for i in 0..60usize {
                        let data: Vec<u8> = (0..20_000 + i * 97).map(|j| (j as u8) ^ w).collect();
                        let got = half_close_echo(addr, &data);
                        assert!(
                            got == data,
                            "half-closed peer got {} of {} bytes",
                            got.len(),
                            data.len()
                        );
                        bytes += got.len();
                    }
                    bytes
                })
            })
            .collect();
        let bytes: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
        let s = wait_settled(&srv, "all closed", |s| s.fin == 480 && s.active() == 0);
        assert_adds_up(&s);
        record(
            "half_close_storm",
            (backend, tweak),
            json!({"connections": 480, "bytes_verified": bytes, "fin": s.fin}),
        );
        srv.shutdown().unwrap();
    }
}

/// SIGTERM-equivalent shutdown in the middle of a load: the server drains within its timeout
/// and the loadgen reports the closes as the server's, never as corruption.
#[test]
fn shutdown_during_load() {
    for backend in BACKENDS {
        let srv = server(backend, |c| c.drain_timeout = Duration::from_millis(300));
        let addr = srv.local_addr();
        let json_path = tmp(&format!("sd-{}.json", backend.name()));
        let mut child = Command::new(ringecho_integration::loadgen_exe())
            .args([
                "--addr",
                &addr.to_string(),
                "--connections",
                "300",
                "--duration",
                "10s",
                // Measured from the start: the server goes away within the first second.
                "--warmup",
                "0s",
                "--json",
            ])
            .arg(&json_path)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        wait_settled(&srv, "load running", |s| {
            s.active() == 300 && s.recvs > 10_000
        });
        let t0 = Instant::now();
        let s = srv.shutdown().unwrap();
        let took = t0.elapsed();
        let status = child.wait().unwrap();
        let r: Value = serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
        assert!(took < Duration::from_secs(3), "drain took {took:?}");
        assert_eq!(r["mismatches"], 0, "{r}");
        assert!(r["errors"].as_object().unwrap().is_empty(), "{r}");
        assert!(status.success(), "server closes are not failures: {r}");
        assert_eq!(
            r["closes"]["server"].as_u64().unwrap(),
            s.server,
            "{r} vs {s:?}"
        );
        assert_eq!(s.active(), 0);
        assert_adds_up(&s);
        record(
            "shutdown_during_load",
            backend,
            json!({
                "connections": s.accepted, "server_closes": s.server, "drain_ms": took.as_millis() as u64,
                "bytes_verified": r["bytes"], "mismatches": r["mismatches"],
            }),
        );
    }
}

/// A veth pair from this network namespace into a namespace made here; removed on drop.
struct NamespaceLink {
    ns: String,
    host_if: String,
}

impl NamespaceLink {
    fn new(tag: &str, host_ip: &str, peer_ip: &str) -> Self {
        let ns = format!("ringecho-{tag}-{}", std::process::id());
        // Interface names hold 15 bytes: a tag letter and the process id keep them unique.
        let t = tag.chars().next().unwrap_or('x');
        let (host_if, peer_if) = (
            format!("r{t}{}h", std::process::id()),
            format!("r{t}{}p", std::process::id()),
        );
        let _ = Command::new("ip").args(["netns", "del", &ns]).output();
        let link = NamespaceLink {
            ns: ns.clone(),
            host_if: host_if.clone(),
        };
        sh(&["ip", "netns", "add", &ns]);
        sh(&[
            "ip", "link", "add", &host_if, "type", "veth", "peer", "name", &peer_if,
        ]);
        sh(&["ip", "link", "set", &peer_if, "netns", &ns]);
        sh(&[
            "ip",
            "addr",
            "add",
            &format!("{host_ip}/30"),
            "dev",
            &host_if,
        ]);
        sh(&["ip", "link", "set", &host_if, "up"]);
        sh(&[
            "ip",
            "netns",
            "exec",
            &ns,
            "ip",
            "addr",
            "add",
            &format!("{peer_ip}/30"),
            "dev",
            &peer_if,
        ]);
        sh(&[
            "ip", "netns", "exec", &ns, "ip", "link", "set", &peer_if, "up",
        ]);
        sh(&["ip", "netns", "exec", &ns, "ip", "link", "set", "lo", "up"]);
        link
    }

    /// Drops a share of TCP segments each way inside the namespace (iptables' statistic
    /// match: the kernels here have no sch_netem). RSTs are spared: TCP never retransmits
    /// one, so a lost RST leaves the server holding a connection no count can account for.
    fn drop_share(&self, probability: &str) {
        for chain in ["INPUT", "OUTPUT"] {
            sh(&[
                "ip",
                "netns",
                "exec",
                &self.ns,
                "iptables",
                "-A",
                chain,
                "-p",
                "tcp",
                "--tcp-flags",
                "RST",
                "NONE",
                "-m",
                "statistic",
                "--mode",
                "random",
                "--probability",
                probability,
                "-j",
                "DROP",
            ]);
        }
    }
}

impl Drop for NamespaceLink {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}

/// Loss and delay between loadgen and server: retransmission must not look like corruption,
/// and FIN/RST counts still agree.
#[test]
fn lossy_network() {
    if !ringecho_testkit::can_run(
        "lossy_network",
        &[
            ringecho_testkit::Need::Root,
            ringecho_testkit::Need::Tool("ip"),
            ringecho_testkit::Need::Tool("iptables"),
        ],
    ) {
        return;
    }
    let link = NamespaceLink::new("loss", "10.231.0.1", "10.231.0.2");
    link.drop_share("0.02");
    for backend in BACKENDS {
        let mut cfg = Config::new("10.231.0.1:0".parse().unwrap(), backend);
        cfg.threads = Some(2);
        cfg.metrics = Some("127.0.0.1:0".parse().unwrap());
        let srv = start(&cfg).unwrap();
        let prefix = ["ip", "netns", "exec", link.ns.as_str()];
        let r = clean_loadgen(
            &prefix,
            None,
            srv.local_addr(),
            &[
                "--connections",
                "100",
                "--messages",
                "30",
                "--payload",
                "3000",
                "--rst-share",
                "0.3",
                "--io-timeout",
                "30s",
            ],
        );
        assert_eq!(r["messages"], 3000);
        assert_eq!(
            (r["closes"]["fin"].as_u64(), r["closes"]["rst"].as_u64()),
            (Some(70), Some(30))
        );
        let s = wait_settled(&srv, "closes seen", |s| s.fin + s.rst + s.error == 100);
        // A reset can overtake the FIN/ACK dance on a lossy link; it must never show as a fin.
        assert_eq!(s.fin, 70, "{s:?}");
        assert_eq!(s.rst + s.error, 30, "{s:?}");
        record(
            "lossy_network",
            backend,
            json!({
                "connections": 100, "loss": "2% each way", "bytes_verified": r["bytes"], "mismatches": r["mismatches"],
                "server_fin": s.fin, "server_rst": s.rst, "p99_us": r["latency_us"]["p99"],
            }),
        );
        srv.shutdown().unwrap();
    }
}

/// A seeded random mix of the above against one server for a bounded time.
#[test]
fn mixed_chaos() {
    let seed: u64 = std::env::var("RINGECHO_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!("mixed_chaos seed {seed} (replay with RINGECHO_CHAOS_SEED={seed})");
    for (backend, tweak) in VARIANTS {
        let srv = server(backend, |c| {
            c.idle_timeout = Some(Duration::from_secs(2));
            tweak.apply(c);
        });
        let addr = srv.local_addr();
        let fds0 = open_fds();
        let mut x = seed | 1;
        let mut rand = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let mut healthy = 0u64;
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut loads = Vec::new();
        let mut idle = Vec::new();
        while Instant::now() < deadline {
            match rand(4) {
                0 => {
                    // A reset with data in flight.
                    let mut s = TcpStream::connect(addr).unwrap();
                    let _ = s.write_all(&vec![9u8; rand(200_000) as usize + 1]);
                    linger0(&s);
                }
                1 => {
                    // A half-close with a random payload, checked.
                    let data: Vec<u8> = (0..rand(50_000) + 1).map(|i| i as u8).collect();
                    assert!(
                        half_close_echo(addr, &data) == data,
                        "seed {seed}: half-close lost bytes"
                    );
                }
                2 => {
                    // A connection that goes idle and is left to the idle timeout.
                    idle.push(TcpStream::connect(addr).unwrap());
                }
                _ => {
                    let share = format!("{}", rand(100) as f64 / 100.0);
                    let (c, m) = (rand(50) + 1, rand(50) + 1);
                    healthy += c * m;
                    loads.push(
                        Command::new(ringecho_integration::loadgen_exe())
                            .args([
                                "--addr",
                                &addr.to_string(),
                                "--connections",
                                &c.to_string(),
                                "--messages",
                                &m.to_string(),
                                "--rst-share",
                                &share,
                            ])
                            .output()
                            .unwrap(),
                    );
                }
            }
        }
        for out in &loads {
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "seed {seed}: {stdout}");
            assert!(
                stdout.contains("mismatches   0 bytes"),
                "seed {seed}: {stdout}"
            );
        }
        let s = wait_settled(&srv, "chaos settled", |s| s.active() == 0);
        assert_adds_up(&s);
        assert!(
            s.server as usize >= idle.len(),
            "seed {seed}: idle peers not closed: {s:?}"
        );
        drop(idle);
        let fds1 = open_fds();
        assert!(
            fds1 <= fds0,
            "seed {seed}: descriptors leaked: {fds0} before, {fds1} after"
        );
        record(
            "mixed_chaos",
            (backend, tweak),
            json!({"seed": seed, "connections": s.accepted, "resets": s.rst, "healthy_messages": healthy, "idle_closes": s.server}),
        );
        srv.shutdown().unwrap();
    }
}

/// Out of ephemeral ports: a namespace with five of them, twenty connections. The loadgen
/// must say what ran out and what to do, and exit non-zero, not hang or panic.
#[test]
fn ephemeral_port_exhaustion_is_a_clear_error() {
    if !ringecho_testkit::can_run(
        "ephemeral_port_exhaustion_is_a_clear_error",
        &[
            ringecho_testkit::Need::Root,
            ringecho_testkit::Need::Tool("ip"),
        ],
    ) {
        return;
    }
    let link = NamespaceLink::new("ports", "10.232.0.1", "10.232.0.2");
    sh(&[
        "ip",
        "netns",
        "exec",
        &link.ns,
        "sh",
        "-c",
        "echo 40000 40004 > /proc/sys/net/ipv4/ip_local_port_range",
    ]);
    let mut cfg = Config::new("10.232.0.1:0".parse().unwrap(), Backend::Epoll);
    cfg.threads = Some(1);
    let srv = start(&cfg).unwrap();
    let prefix = ["ip", "netns", "exec", link.ns.as_str()];
    let (out, _) = loadgen(
        &prefix,
        None,
        srv.local_addr(),
        &["--connections", "20", "--duration", "1s"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("ran out of ephemeral ports") && err.contains("--source-addrs"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    srv.shutdown().unwrap();
}

/// Sends `n` bytes of a pattern on a fresh connection and reads them back within `limit`;
/// returns how long the echo took.
fn timed_echo(addr: SocketAddr, n: usize, seed: u8, limit: Duration) -> Duration {
    let t0 = Instant::now();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(limit)).unwrap();
    let data: Vec<u8> = (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect();
    s.write_all(&data).unwrap();
    let mut back = vec![0u8; n];
    s.read_exact(&mut back)
        .unwrap_or_else(|e| panic!("healthy echo {seed} not back within {limit:?}: {e}"));
    assert_eq!(back, data, "healthy echo {seed} altered");
    t0.elapsed()
}

/// 2,000 peers that never read, at default flags, cannot starve healthy ones: every healthy
/// echo comes back exact within a second, memory stays under the stated bound, and once the
/// peers leave, descriptors and held buffers return to where they started.
#[test]
fn never_reading_flood_cannot_starve_healthy_peers() {
    let defaults = Config::new("127.0.0.1:0".parse().unwrap(), Backend::Multishot);
    assert_eq!(
        defaults.ring_buffers as usize, RING_BUFFERS,
        "the bound below follows the default ring"
    );
    const PEERS: usize = 2_000;
    const HEALTHY: usize = 50;
    for (backend, tweak) in VARIANTS {
        let srv = server(backend, |c| tweak.apply(c));
        let addr = srv.local_addr();
        let (fds0, rss0) = (open_fds(), rss_kib());
        let mut peers: Vec<TcpStream> = (0..PEERS).map(|_| never_reader(addr)).collect();
        let pushed = stall(&mut peers, 16 << 10);
        let during = srv.stats().snapshot();
        let rss1 = rss_kib();
        let mut worst = Duration::ZERO;
        for i in 0..HEALTHY {
            worst = worst.max(timed_echo(addr, 600, i as u8, Duration::from_secs(1)));
        }
        // The bound the multishot module states: the rings (threads × buffers × size) plus at
        // most cap + 2 = 6 buffers per blocked connection, each 4 KiB (the kernel's receive
        // limit makes the cap exact); the other backends hold one buffer each.
        let held = during.ring_buffers_held + during.spill_buffers_held;
        assert!(
            held <= (PEERS * 6) as u64,
            "{}: {held} buffers held by {PEERS} blocked peers (bound 6 each)",
            backend.name()
        );
        let bound_kib = (2 * RING_BUFFERS * 4 + PEERS * 6 * 4 + 16 * 1024) as u64;
        assert!(
            rss1.saturating_sub(rss0) < bound_kib,
            "{}: memory grew {rss0} -> {rss1} KiB (bound {bound_kib} KiB over the start)",
            backend.name()
        );
        drop(peers);
        // Held buffers are published once per loop turn, a moment after the last release.
        let s = wait_settled(&srv, "stuck peers closed and their buffers back", |s| {
            s.active() == 0 && s.ring_buffers_held == 0 && s.spill_buffers_held == 0
        });
        assert_adds_up(&s);
        let fds_ok = (0..200).any(|_| {
            std::thread::sleep(Duration::from_millis(10));
            open_fds() <= fds0
        });
        assert!(fds_ok, "descriptors {} after, {fds0} before", open_fds());
        record(
            "never_reading_flood",
            (backend, tweak),
            json!({
                "stuck_peers": PEERS, "bytes_pushed_by_stuck_peers": pushed, "healthy_echoes": HEALTHY,
                "worst_healthy_echo_ms": worst.as_secs_f64() * 1e3,
                "ring_buffers_held": during.ring_buffers_held, "spill_buffers_held": during.spill_buffers_held,
                "rss_kib_before": rss0, "rss_kib_during": rss1, "fds_before": fds0,
            }),
        );
        srv.shutdown().unwrap();
    }
}

/// A peer that stops reading while the server has bytes for it (its window stays at zero)
/// is closed after `--user-timeout`, and counted as an error of kind `timed_out`; a slow
/// reader that keeps making progress is kept, and every byte it reads is what it sent.
#[test]
fn zero_window_peers_close_and_slow_readers_stay() {
    for backend in BACKENDS {
        let srv = server(backend, |c| {
            c.user_timeout = ringecho_server::config::OrOff(Some(Duration::from_secs(1)))
        });
        let addr = srv.local_addr();
        let mut peers: Vec<TcpStream> = (0..20).map(|_| never_reader(addr)).collect();
        stall(&mut peers, 16 << 10);
        // The slow reader: a few hundred bytes a second, checked byte for byte.
        let slow = std::thread::spawn(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
            let mut w = s.try_clone().unwrap();
            let sent = data.clone();
            let writer = std::thread::spawn(move || {
                let _ = w.write_all(&sent);
            });
            let mut got = 0usize;
            let mut buf = [0u8; 64];
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(4) {
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0, "slow reader closed after {got} bytes");
                assert_eq!(&buf[..n], &data[got..got + n], "slow reader at byte {got}");
                got += n;
                std::thread::sleep(Duration::from_millis(25));
            }
            drop(s);
            drop(writer);
            got
        });
        let s = wait_settled(&srv, "zero-window peers closed", |s| {
            s.errors_by_kind.get("timed_out").copied().unwrap_or(0) >= 20
        });
        let slow_read = slow.join().expect("slow reader kept and exact");
        timed_echo(addr, 600, 1, Duration::from_secs(1));
        drop(peers);
        record(
            "zero_window_and_slow_reader",
            backend,
            json!({
                "zero_window_peers": 20, "user_timeout_s": 1, "closed_timed_out": s.errors_by_kind.get("timed_out"),
                "slow_reader_bytes_read_exact": slow_read,
            }),
        );
        srv.shutdown().unwrap();
    }
}

/// Enters a network namespace on this thread only (other threads stay where they are).
fn enter_netns(ns: &str) {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(format!("/var/run/netns/{ns}")).unwrap();
    // SAFETY: setns with a namespace descriptor changes only this thread's network namespace.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
}

/// A peer that vanishes (its packets dropped, so no FIN or RST ever arrives) is found by
/// keepalive and closed within the configured time, counted as `timed_out`.
#[test]
fn vanished_peer_is_closed_by_keepalive() {
    if !ringecho_testkit::can_run(
        "vanished_peer_is_closed_by_keepalive",
        &[
            ringecho_testkit::Need::Root,
            ringecho_testkit::Need::Tool("ip"),
            ringecho_testkit::Need::Tool("iptables"),
        ],
    ) {
        return;
    }
    let link = NamespaceLink::new("gone", "10.231.1.1", "10.231.1.2");
    for backend in BACKENDS {
        let mut cfg = Config::new("10.231.1.1:0".parse().unwrap(), backend);
        cfg.threads = Some(1);
        cfg.keepalive = ringecho_server::config::OrOff(Some(Duration::from_secs(1)));
        cfg.keepalive_interval = Duration::from_secs(1);
        cfg.keepalive_probes = 2;
        cfg.user_timeout = ringecho_server::config::OrOff(None);
        let srv = start(&cfg).unwrap();
        let addr = srv.local_addr();
        let ns = link.ns.clone();
        let peer = std::thread::spawn(move || {
            enter_netns(&ns);
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"still here?").unwrap();
            let mut back = [0u8; 11];
            s.read_exact(&mut back).unwrap();
            assert_eq!(&back, b"still here?");
            s
        })
        .join()
        .unwrap();
        // The peer vanishes: everything into and out of its namespace is dropped.
        for chain in ["INPUT", "OUTPUT"] {
            sh(&[
                "ip", "netns", "exec", &link.ns, "iptables", "-I", chain, "-j", "DROP",
            ]);
        }
        let t0 = Instant::now();
        let s = srv
            .stats()
            .wait_until(Duration::from_secs(15), |s| s.active() == 0)
            .unwrap_or_else(|s| panic!("{}: vanished peer still open: {s:?}", backend.name()));
        let took = t0.elapsed();
        assert_eq!(s.errors_by_kind.get("timed_out"), Some(&1), "{s:?}");
        assert_eq!((s.fin, s.rst, s.server), (0, 0, 0), "{s:?}");
        for chain in ["INPUT", "OUTPUT"] {
            sh(&[
                "ip", "netns", "exec", &link.ns, "iptables", "-D", chain, "-j", "DROP",
            ]);
        }
        drop(peer);
        record(
            "vanished_peer",
            backend,
            json!({"keepalive": "1s + 2 × 1s", "closed_after_s": took.as_secs_f64(), "counted_as": "timed_out"}),
        );
        srv.shutdown().unwrap();
    }
}
