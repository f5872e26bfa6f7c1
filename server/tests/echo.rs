//! The echo contract, for real, on loopback, against every backend: exact bytes, half-close,
//! FIN/RST accounting, thousands of connections, limits, and shutdown.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use ringecho_server::listener::raise_nofile_limit;
use ringecho_server::{start, Backend, Config, RunningServer, Snapshot};

/// A backend, and for multishot whether connections are direct descriptors.
#[derive(Debug, Clone, Copy)]
struct Setup(Backend, bool);

fn server(setup: Setup, tweak: impl FnOnce(&mut Config)) -> RunningServer {
    let _ = raise_nofile_limit();
    let mut c = Config::new("127.0.0.1:0".parse().unwrap(), setup.0);
    c.direct_descriptors = setup.1;
    c.threads = Some(2);
    c.drain_timeout = Duration::from_secs(2);
    tweak(&mut c);
    start(&c).expect("server starts")
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

/// Polls the server's counters until `done` holds, failing after a generous bound.
fn wait_for(srv: &RunningServer, what: &str, done: impl Fn(&Snapshot) -> bool) -> Snapshot {
    srv.stats()
        .wait_until(Duration::from_secs(20), done)
        .unwrap_or_else(|s| panic!("timed out waiting for {what}: {s:?}"))
}

fn pattern(len: usize, seed: usize) -> Vec<u8> {
    (0..len).map(|i| ((i * 31 + seed) % 251) as u8).collect()
}

/// Sends `data` from one thread while reading the echo on another, so payloads larger than
/// the socket buffers cannot deadlock, then returns what came back.
fn echo_concurrently(stream: TcpStream, data: Vec<u8>) -> Vec<u8> {
    let mut writer = stream.try_clone().unwrap();
    let len = data.len();
    let w = std::thread::spawn(move || writer.write_all(&data).unwrap());
    let mut got = vec![0u8; len];
    (&stream).read_exact(&mut got).unwrap();
    w.join().unwrap();
    got
}

fn set_linger0(s: &TcpStream) {
    socket2::SockRef::from(s)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
}

fn scrape(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in\n{text}"))
}

fn exact_echo_of_all_sizes(backend: Setup) {
    let srv = server(backend, |_| {});
    for (i, size) in [1usize, 7, 64, 4096, 4097, 65_537, 1 << 20, 5 << 20]
        .into_iter()
        .enumerate()
    {
        let data = pattern(size, i);
        let got = echo_concurrently(connect(srv.local_addr()), data.clone());
        assert!(got == data, "{size}-byte echo differs");
    }
    let s = wait_for(&srv, "closes", |s| s.fin == 8);
    assert_eq!(
        s.bytes_echoed,
        [1u64, 7, 64, 4096, 4097, 65_537, 1 << 20, 5 << 20]
            .iter()
            .sum::<u64>()
    );
    srv.shutdown().unwrap();
}

fn half_close_gets_everything_back(backend: Setup) {
    let srv = server(backend, |_| {});
    let mut s = connect(srv.local_addr());
    let data = pattern(300_000, 3);
    let mut w = s.try_clone().unwrap();
    let sent = data.clone();
    let t = std::thread::spawn(move || {
        w.write_all(&sent).unwrap();
        w.shutdown(Shutdown::Write).unwrap();
    });
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    t.join().unwrap();
    assert!(
        got == data,
        "half-closed peer got {} of {} bytes",
        got.len(),
        data.len()
    );
    let snap = wait_for(&srv, "fin", |s| s.fin == 1);
    assert_eq!(snap.rst + snap.error, 0);
    srv.shutdown().unwrap();
}

fn fin_and_rst_are_counted_exactly(backend: Setup) {
    let srv = server(backend, |c| {
        c.metrics = Some("127.0.0.1:0".parse().unwrap())
    });
    for i in 0..300 {
        let mut s = connect(srv.local_addr());
        let msg = pattern(16, i);
        s.write_all(&msg).unwrap();
        let mut back = [0u8; 16];
        s.read_exact(&mut back).unwrap();
        assert_eq!(&back[..], &msg[..]);
        if i % 3 == 2 {
            set_linger0(&s);
        }
    }
    wait_for(&srv, "300 closes", |s| s.fin + s.rst + s.error == 300);
    let text = scrape(srv.metrics_addr().unwrap());
    assert_eq!(metric(&text, "ringecho_closes_total{how=\"fin\"}"), 200);
    assert_eq!(metric(&text, "ringecho_closes_total{how=\"rst\"}"), 100);
    assert_eq!(metric(&text, "ringecho_closes_total{how=\"error\"}"), 0);
    assert_eq!(metric(&text, "ringecho_connections_accepted_total"), 300);
    assert_eq!(metric(&text, "ringecho_connections_active"), 0);
    assert_eq!(metric(&text, "ringecho_bytes_echoed_total"), 300 * 16);
    // The process's own cost, in Prometheus's usual names.
    for name in [
        "process_cpu_seconds_total ",
        "ringecho_process_cpu_seconds_total{mode=\"user\"} ",
        "ringecho_process_cpu_seconds_total{mode=\"system\"} ",
        "process_resident_memory_bytes ",
        "process_open_fds ",
        "process_max_fds ",
        "process_start_time_seconds ",
    ] {
        let line = text.lines().find(|l| l.starts_with(name));
        let v: f64 = line
            .and_then(|l| l[name.len()..].parse().ok())
            .unwrap_or_else(|| panic!("{name} missing in\n{text}"));
        assert!(v > 0.0 || name.contains("cpu"), "{name}{v}");
    }
    assert!(text.trim_end().ends_with("# EOF"));
    srv.shutdown().unwrap();
}

fn thousands_of_concurrent_connections(backend: Setup) {
    const N: usize = 2_500;
    let srv = server(backend, |_| {});
    let conns: Vec<TcpStream> = (0..N).map(|_| connect(srv.local_addr())).collect();
    wait_for(&srv, "all accepted", |s| s.active() == N as u64);
    for (i, mut s) in conns.iter().enumerate() {
        s.write_all(&(i as u64).to_le_bytes()).unwrap();
    }
    for (i, mut s) in conns.iter().enumerate() {
        let mut back = [0u8; 8];
        s.read_exact(&mut back).unwrap();
        assert_eq!(u64::from_le_bytes(back), i as u64);
    }
    drop(conns);
    let s = wait_for(&srv, "all closed", |s| s.fin == N as u64);
    assert_eq!(s.active(), 0);
    srv.shutdown().unwrap();
}

fn never_reading_peer_does_not_block_others(backend: Setup) {
    let srv = server(backend, |c| c.threads = Some(1));
    // A peer that only writes: the server's sends back to it block once its receive buffer
    // fills, and the server must then stop reading from it, not queue without bound.
    let hog = connect(srv.local_addr());
    hog.set_write_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let chunk = vec![7u8; 64 * 1024];
    let mut pushed = 0usize;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        match (&hog).write(&chunk) {
            Ok(n) => pushed += n,
            Err(_) => break, // the pipe is full both ways: backpressure reached us
        }
    }
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "server kept reading a peer that never reads"
    );
    assert!(
        pushed < 64 << 20,
        "server absorbed {pushed} bytes from a peer that never reads"
    );
    // Meanwhile, on the same thread, a healthy peer is served byte for byte.
    let mut ok = connect(srv.local_addr());
    for i in 0..200 {
        let msg = pattern(100, i);
        ok.write_all(&msg).unwrap();
        let mut back = [0u8; 100];
        ok.read_exact(&mut back).unwrap();
        assert_eq!(&back[..], &msg[..]);
    }
    drop(ok);
    // The hog resets: the server notices however it was blocked.
    set_linger0(&hog);
    drop(hog);
    let s = wait_for(&srv, "both closed", |s| s.active() == 0);
    assert_eq!((s.fin, s.rst), (1, 1), "{s:?}");
    srv.shutdown().unwrap();
}

fn idle_connections_are_closed_and_counted(backend: Setup) {
    let srv = server(backend, |c| {
        c.idle_timeout = Some(Duration::from_millis(300))
    });
    let mut s = connect(srv.local_addr());
    let mut buf = [0u8; 1];
    assert_eq!(
        s.read(&mut buf).unwrap(),
        0,
        "idle connection should be closed by the server"
    );
    let snap = wait_for(&srv, "server close", |s| s.server == 1);
    assert_eq!(snap.active(), 0);
    srv.shutdown().unwrap();
}

fn max_conns_rejects_the_excess(backend: Setup) {
    let srv = server(backend, |c| c.max_conns = Some(2));
    let a = connect(srv.local_addr());
    let b = connect(srv.local_addr());
    wait_for(&srv, "two open", |s| s.active() == 2);
    let mut c = connect(srv.local_addr());
    let mut buf = [0u8; 1];
    let closed = matches!(c.read(&mut buf), Ok(0) | Err(_));
    assert!(closed, "third connection should be closed at once");
    // Neither open connection has been idle a second: nobody gives way.
    let s = wait_for(&srv, "refusal", |s| s.refused_limit == 1);
    assert_eq!((s.server, s.active(), s.evicted), (1, 2, 0));
    for mut s in [&a, &b] {
        s.write_all(b"still served").unwrap();
        let mut back = [0u8; 12];
        s.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"still served");
    }
    srv.shutdown().unwrap();
}

/// Echoes `msg` on `s` and reads it back.
fn echo_on(s: &mut TcpStream, msg: &[u8]) {
    s.write_all(msg).unwrap();
    let mut back = vec![0u8; msg.len()];
    s.read_exact(&mut back).unwrap();
    assert_eq!(back, msg);
}

/// At `--max-conns`, a newcomer takes the place of the connection idle longest (a second or
/// more): the idle one is closed by the server and counted as evicted; one that echoed
/// within the last second stays, and the newcomer is served.
fn max_conns_evicts_the_longest_idle(backend: Setup) {
    // One thread: who gives way is chosen among the accepting thread's connections.
    let srv = server(backend, |c| {
        c.max_conns = Some(2);
        c.threads = Some(1);
    });
    let mut idle = connect(srv.local_addr());
    let mut busy = connect(srv.local_addr());
    wait_for(&srv, "two open", |s| s.active() == 2);
    // The busy one echoes now and then for 1.3 s; the idle one says nothing.
    for _ in 0..6 {
        echo_on(&mut busy, b"busy");
        std::thread::sleep(Duration::from_millis(220));
    }
    let mut new = connect(srv.local_addr());
    echo_on(&mut new, b"the newcomer is served");
    let mut buf = [0u8; 1];
    assert!(
        matches!(idle.read(&mut buf), Ok(0) | Err(_)),
        "the idle connection gave way"
    );
    echo_on(&mut busy, b"the busy one stays");
    let s = wait_for(&srv, "an eviction", |s| s.evicted == 1);
    assert_eq!((s.server, s.active(), s.refused()), (1, 2, 0), "{s:?}");
    srv.shutdown().unwrap();
}

/// `--max-conns-per-source`: a source at its bound is refused; another source is not.
fn per_source_bound_refuses_only_that_source(backend: Setup) {
    if backend.1 {
        return; // direct descriptors refuse the flag (tested in cli.rs)
    }
    let srv = server(backend, |c| c.max_conns_per_source = Some(2));
    let addr = srv.local_addr();
    let mut first: Vec<TcpStream> = (0..2).map(|_| connect(addr)).collect();
    wait_for(&srv, "two open", |s| s.active() == 2);
    let mut third = connect(addr);
    let mut buf = [0u8; 1];
    assert!(
        matches!(third.read(&mut buf), Ok(0) | Err(_)),
        "a third connection from one source is refused"
    );
    let other = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    other
        .bind(&"127.0.0.2:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    other.connect(&addr.into()).unwrap();
    let mut other: TcpStream = other.into();
    other
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    echo_on(&mut other, b"another source");
    for s in &mut first {
        echo_on(s, b"still served");
    }
    let s = wait_for(&srv, "one refusal", |s| s.refused_per_source == 1);
    assert_eq!((s.active(), s.evicted, s.refused_limit), (3, 0, 0), "{s:?}");
    // A source's count goes down as its connections close.
    drop(first.pop());
    wait_for(&srv, "one closed", |s| s.active() == 2);
    let mut again = connect(addr);
    echo_on(&mut again, b"room again");
    srv.shutdown().unwrap();
}

fn shutdown_drains_then_closes(backend: Setup) {
    let srv = server(backend, |c| c.drain_timeout = Duration::from_millis(400));
    // One connection finishes during the drain, one stays open past it.
    let mut leaving = connect(srv.local_addr());
    let mut staying = connect(srv.local_addr());
    wait_for(&srv, "two open", |s| s.active() == 2);
    let addr = srv.local_addr();
    let t = std::thread::spawn(move || srv.shutdown().unwrap());
    std::thread::sleep(Duration::from_millis(100));
    // Draining stops listening: a newcomer is refused, not left in the backlog.
    assert!(
        TcpStream::connect(addr).is_err(),
        "a draining server accepted a connection"
    );
    leaving.write_all(b"bye").unwrap();
    let mut back = [0u8; 3];
    leaving.read_exact(&mut back).unwrap();
    assert_eq!(
        &back, b"bye",
        "an open connection is still echoed while draining"
    );
    drop(leaving);
    let mut buf = [0u8; 1];
    let end = staying.read(&mut buf);
    assert!(
        matches!(end, Ok(0) | Err(_)),
        "server closes what is left after the drain"
    );
    let s = t.join().unwrap();
    assert_eq!((s.fin, s.server, s.active()), (1, 1, 0), "{s:?}");
}

/// A host name listens on every address it names, IPv4 and IPv6 alike, on one port; every
/// address echoes, and draining closes them all.
fn every_address_of_a_name_serves(backend: Setup) {
    let srv = server(backend, |c| {
        c.listen = ringecho_common::HostPort {
            text: "localhost:0".into(),
            addrs: vec!["127.0.0.1:0".parse().unwrap(), "[::1]:0".parse().unwrap()],
        };
    });
    let addrs = srv.local_addrs().to_vec();
    assert_eq!(addrs.len(), 2);
    assert_eq!(addrs[0].port(), addrs[1].port());
    for (i, &addr) in addrs.iter().enumerate() {
        for j in 0..4 {
            let data = pattern(1000, i * 10 + j);
            assert_eq!(echo_concurrently(connect(addr), data.clone()), data);
        }
    }
    let s = wait_for(&srv, "eight FIN closes", |s| s.fin == 8);
    assert_eq!(s.accepted, 8);
    let s = srv.shutdown().unwrap();
    assert_eq!((s.fin, s.active()), (8, 0), "{s:?}");
    for addr in addrs {
        assert!(TcpStream::connect(addr).is_err(), "{addr} still listens");
    }
}

macro_rules! per_backend {
    ($($module:ident => $setup:expr),*) => {$(
        mod $module {
            use super::*;
            #[test] fn exact_echo_of_all_sizes() { super::exact_echo_of_all_sizes($setup) }
            #[test] fn half_close_gets_everything_back() { super::half_close_gets_everything_back($setup) }
            #[test] fn fin_and_rst_are_counted_exactly() { super::fin_and_rst_are_counted_exactly($setup) }
            #[test] fn thousands_of_concurrent_connections() { super::thousands_of_concurrent_connections($setup) }
            #[test] fn never_reading_peer_does_not_block_others() { super::never_reading_peer_does_not_block_others($setup) }
            #[test] fn idle_connections_are_closed_and_counted() { super::idle_connections_are_closed_and_counted($setup) }
            #[test] fn max_conns_rejects_the_excess() { super::max_conns_rejects_the_excess($setup) }
            #[test] fn max_conns_evicts_the_longest_idle() { super::max_conns_evicts_the_longest_idle($setup) }
            #[test] fn per_source_bound_refuses_only_that_source() { super::per_source_bound_refuses_only_that_source($setup) }
            #[test] fn shutdown_drains_then_closes() { super::shutdown_drains_then_closes($setup) }
            #[test] fn every_address_of_a_name_serves() { super::every_address_of_a_name_serves($setup) }
        }
    )*};
}

per_backend!(
    uring => Setup(Backend::Uring, false),
    epoll => Setup(Backend::Epoll, false),
    epoll_loop => Setup(Backend::EpollLoop, false),
    multishot => Setup(Backend::Multishot, false),
    multishot_direct => Setup(Backend::Multishot, true)
);

/// `run` serves until its shutdown future completes, then drains: a connection still open
/// is closed by the server once the drain times out, and the counts come back.
#[test]
fn run_serves_until_its_shutdown_future_then_drains() {
    let srv = server(Setup(Backend::EpollLoop, false), |c| {
        c.drain_timeout = Duration::from_millis(300)
    });
    let mut s = connect(srv.local_addr());
    s.write_all(b"hello").unwrap();
    let mut back = [0u8; 5];
    s.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"hello");
    let done = connect(srv.local_addr());
    drop(done);
    wait_for(&srv, "one fin", |s| s.fin == 1);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let trigger = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        tx.send(()).unwrap();
    });
    let snap = rt
        .block_on(ringecho_server::run(srv, async {
            let _ = rx.await;
        }))
        .expect("a clean drain");
    trigger.join().unwrap();
    assert_eq!(
        (snap.fin, snap.server, snap.accepted),
        (1, 1, 2),
        "{snap:?}"
    );
    let mut rest = Vec::new();
    assert_eq!(
        s.read_to_end(&mut rest).unwrap_or(0),
        0,
        "closed by the server"
    );
}

/// multishot gathers held buffers into one send while a stream keeps several in hand, and
/// with `--gather-sends off` every send carries one buffer; the counters say which.
#[test]
fn multishot_sends_count_the_buffers_they_gather() {
    for (gather, large) in [(true, true), (true, false), (false, false)] {
        let srv = server(Setup(Backend::Multishot, false), |c| {
            c.gather_sends = gather;
            c.large_receives = large;
        });
        let data = pattern(8 << 20, 5);
        assert!(echo_concurrently(connect(srv.local_addr()), data.clone()) == data);
        let s = wait_for(&srv, "the close", |s| s.fin == 1);
        assert!(s.sends > 0, "{s:?}");
        if gather {
            assert!(
                s.send_buffers > s.sends,
                "gather {gather}, large {large}: {s:?}"
            );
        } else {
            assert_eq!(s.send_buffers, s.sends, "{s:?}");
        }
        srv.shutdown().unwrap();
    }
}

/// multishot's receive bundles fill several ring buffers per completion on a stream, where
/// the kernel has them and the receive limit (`--probe` says); with `--recv-bundles off`
/// every completion fills one. Every byte comes back either way.
#[test]
fn multishot_receive_bundles_count_the_buffers_they_fill() {
    let probe = ringecho_server::probe();
    let has = probe.contains("receive bundles (need the limit): yes");
    for bundles in [true, false] {
        let srv = server(Setup(Backend::Multishot, false), |c| {
            c.recv_bundles = bundles;
            c.large_receives = false;
        });
        let data = pattern(8 << 20, 7);
        assert!(echo_concurrently(connect(srv.local_addr()), data.clone()) == data);
        let s = wait_for(&srv, "the close", |s| s.fin == 1);
        assert!(s.recv_completions > 0, "{s:?}");
        if bundles && has {
            assert!(s.recv_buffers > s.recv_completions, "{s:?}");
        } else {
            assert_eq!(s.recv_buffers, s.recv_completions, "{s:?}");
        }
        srv.shutdown().unwrap();
    }
}
