//! An idle flood cannot lock healthy clients out, on every backend at default flags: the
//! server runs as its own process under an open-file limit of 4,096 (soft and hard, as
//! `ulimit -n 4096` sets it), 5,000 connections arrive and never send (from one source
//! address, or spread over eight), and then five healthy clients from another address are
//! each echoed within a liveness deadline of 2 s. Past the limit the longest-idle connection
//! gives way; a connection that echoed within the last second, or one the server holds
//! unsent bytes for, never does.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use ringecho_integration::{figure, never_reader, stall, ServerProcess};
use socket2::{Domain, Socket, Type};

/// The server process's open-file limit, hard and soft.
const NOFILE: u32 = 4096;
/// Silent connections in a flood: more than the limit holds.
const FLOOD: usize = 5_000;
/// The healthy clients, and how long each may take to get its echo back.
const HEALTHY: usize = 5;
const LIVENESS: Duration = Duration::from_secs(2);
/// Where healthy clients come from: no flood uses this address.
const HEALTHY_SOURCE: &str = "127.0.0.10";

const BACKENDS: [&str; 4] = ["uring", "epoll", "epoll-loop", "multishot"];

/// A server as its own process under `ulimit -n NOFILE`.
fn start_server(backend: &str, args: &[&str]) -> ServerProcess {
    let mut all = vec!["--backend", backend, "--drain-timeout", "200ms"];
    all.extend_from_slice(args);
    ServerProcess::start(Some(NOFILE), &all)
}

/// Raises this process's soft open-file limit to its hard limit: the flood's sockets are
/// ours.
fn raise_nofile() {
    let _ = ringecho_common::raise_nofile_limit();
}

/// A socket bound to `source` (port chosen by the kernel at connect).
fn socket_from(source: &str) -> Socket {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let src: SocketAddr = format!("{source}:0").parse().unwrap();
    // IP_BIND_ADDRESS_NO_PORT: the port is chosen at connect, which can share it across
    // destinations, so thousands of binds do not use up the ports.
    let on: libc::c_int = 1;
    // SAFETY: setsockopt reads one int from `on`, which lives across the call.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    s.bind(&src.into()).unwrap();
    s
}

/// `n` connections that never send, from the sources in turn; kept open by the caller.
fn silent_flood(addr: SocketAddr, n: usize, sources: &[&str]) -> Vec<Socket> {
    (0..n)
        .map(|i| {
            let s = socket_from(sources[i % sources.len()]);
            s.connect_timeout(&addr.into(), Duration::from_secs(5))
                .unwrap_or_else(|e| panic!("flood connection {i}: {e}"));
            s
        })
        .collect()
}

/// A healthy client from [`HEALTHY_SOURCE`]: connects, sends a message and reads it back,
/// all within [`LIVENESS`]; returns how long it took, and the connection (kept open, so
/// that each healthy client needs a place of its own).
fn healthy_echo(addr: SocketAddr, seed: u8) -> (Duration, TcpStream) {
    let t0 = Instant::now();
    let s = socket_from(HEALTHY_SOURCE);
    s.connect_timeout(&addr.into(), LIVENESS)
        .unwrap_or_else(|e| panic!("healthy client {seed} could not connect: {e}"));
    let mut s: TcpStream = s.into();
    s.set_read_timeout(Some(LIVENESS)).unwrap();
    let msg: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(7) ^ seed).collect();
    s.write_all(&msg).unwrap();
    let mut back = vec![0u8; msg.len()];
    s.read_exact(&mut back)
        .unwrap_or_else(|e| panic!("healthy client {seed} not echoed: {e}"));
    assert_eq!(back, msg, "healthy client {seed}'s echo altered");
    let took = t0.elapsed();
    assert!(
        took <= LIVENESS,
        "healthy client {seed} took {took:?}, past the liveness deadline"
    );
    (took, s)
}

/// A connection that echoes a short message every 200 ms, from its own thread, until told
/// to stop; returns how many echoes came back exact (a failure panics the thread).
struct Chatty {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<u32>,
}

impl Chatty {
    fn start(addr: SocketAddr) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut n = 0;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let msg = format!("still here {n}");
                s.write_all(msg.as_bytes()).unwrap();
                let mut back = vec![0u8; msg.len()];
                s.read_exact(&mut back)
                    .unwrap_or_else(|e| panic!("the chatty connection lost its echo: {e}"));
                assert_eq!(back, msg.as_bytes());
                n += 1;
                std::thread::sleep(Duration::from_millis(200));
            }
            n
        });
        Chatty { stop, thread }
    }

    fn stop(self) -> u32 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().expect("the chatty connection survived")
    }
}

/// The flood, then the healthy clients: every one echoed in time; a connection active
/// throughout is never evicted; evictions happened, and no more than the newcomers needed.
fn flood_then_healthy(backend: &str, args: &[&str], sources: &[&str]) {
    raise_nofile();
    let srv = start_server(backend, args);
    let chatty = Chatty::start(srv.addr);
    let flood = silent_flood(srv.addr, FLOOD, sources);
    // The flood's oldest members pass a second of silence.
    std::thread::sleep(Duration::from_millis(1100));
    let (took, healthy): (Vec<Duration>, Vec<TcpStream>) = (0..HEALTHY)
        .map(|i| healthy_echo(srv.addr, i as u8))
        .unzip();
    let worst = took.into_iter().max().unwrap();
    let chats = chatty.stop();
    drop((flood, healthy));
    let summary = srv.stop();
    let evicted = figure(&summary, "evicted (idle)");
    let refused = figure(&summary, "refused (limit)");
    assert!(
        chats >= 5,
        "{backend}: the chatty connection echoed {chats} times"
    );
    assert!(
        evicted >= HEALTHY as u64,
        "{backend}: {evicted} evictions for {HEALTHY} healthy clients: {summary}"
    );
    // The limit held: what came past it was refused or took an idle one's place.
    let accepted = figure(&summary, "connections accepted");
    assert!(
        evicted + refused >= accepted.saturating_sub(u64::from(NOFILE)),
        "{backend}: {evicted} evicted and {refused} refused of {accepted}: {summary}"
    );
    eprintln!(
        "{backend} {args:?} sources {}: worst healthy echo {worst:?}, evicted {evicted}, refused {refused}",
        sources.len()
    );
}

#[test]
fn an_idle_flood_from_one_source_does_not_lock_clients_out() {
    for backend in BACKENDS {
        flood_then_healthy(backend, &[], &["127.0.0.1"]);
    }
}

#[test]
fn an_idle_flood_from_eight_sources_does_not_lock_clients_out() {
    let sources: Vec<String> = (2..=9).map(|i| format!("127.0.0.{i}")).collect();
    let sources: Vec<&str> = sources.iter().map(String::as_str).collect();
    for backend in BACKENDS {
        flood_then_healthy(backend, &[], &sources);
    }
}

#[test]
fn an_idle_flood_past_max_conns_does_not_lock_clients_out() {
    for backend in BACKENDS {
        flood_then_healthy(backend, &["--max-conns", "3000"], &["127.0.0.1"]);
    }
}

/// The TCP state of our end of a connection (TCP_INFO's first byte; 1 is ESTABLISHED).
fn tcp_state(s: &TcpStream) -> u8 {
    let mut info = [0u8; 232];
    let mut len = info.len() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `info`, which we own.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0, "TCP_INFO");
    info[0]
}

/// Peers that never read push 64 KiB or more each and connect first, so they are the
/// longest idle; then a silent flood fills the limit. The never-readers hold unsent bytes:
/// none of them gives way (each stays ESTABLISHED), the healthy clients take silent
/// connections' places, and each is echoed in time.
#[test]
fn never_readers_holding_bytes_do_not_give_way() {
    const READERS: usize = 100;
    raise_nofile();
    for backend in BACKENDS {
        let srv = start_server(backend, &["--max-conns", "1000"]);
        let mut readers: Vec<TcpStream> = (0..READERS).map(|_| never_reader(srv.addr)).collect();
        let pushed = stall(&mut readers, 16 << 10);
        assert!(pushed >= READERS * (64 << 10), "{backend}: pushed {pushed}");
        let flood = silent_flood(srv.addr, 1000 - READERS, &["127.0.0.1"]);
        std::thread::sleep(Duration::from_millis(1100));
        let healthy: Vec<_> = (0..HEALTHY)
            .map(|i| healthy_echo(srv.addr, i as u8))
            .collect();
        let closed = readers.iter().filter(|r| tcp_state(r) != 1).count();
        drop((flood, healthy));
        let summary = srv.stop();
        assert_eq!(closed, 0, "{backend}: never-readers gave way: {summary}");
        assert_eq!(
            figure(&summary, "evicted (idle)"),
            HEALTHY as u64,
            "{backend}: {summary}"
        );
        assert_eq!(
            figure(&summary, "refused (limit)"),
            0,
            "{backend}: {summary}"
        );
    }
}

/// With only never-readers holding bytes at the limit, nothing may give way: the newcomer is
/// refused (closed at once) and counted, and every never-reader stays.
#[test]
fn with_nothing_to_evict_a_newcomer_is_refused() {
    const READERS: usize = 20;
    raise_nofile();
    for backend in BACKENDS {
        let srv = start_server(backend, &["--max-conns", "20", "--threads", "1"]);
        let mut readers: Vec<TcpStream> = (0..READERS).map(|_| never_reader(srv.addr)).collect();
        stall(&mut readers, 16 << 10);
        std::thread::sleep(Duration::from_millis(1100));
        let mut late = TcpStream::connect(srv.addr).unwrap();
        late.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = late.write_all(b"hello");
        let mut buf = [0u8; 8];
        assert!(
            matches!(late.read(&mut buf), Ok(0) | Err(_)),
            "{backend}: the newcomer was served with nothing to evict"
        );
        let closed = readers.iter().filter(|r| tcp_state(r) != 1).count();
        let summary = srv.stop();
        assert_eq!(closed, 0, "{backend}: {summary}");
        assert_eq!(
            figure(&summary, "evicted (idle)"),
            0,
            "{backend}: {summary}"
        );
        assert_eq!(
            figure(&summary, "refused (limit)"),
            1,
            "{backend}: {summary}"
        );
    }
}
