//! A connection's unsent bytes stay capped on every backend at default flags, with large
//! messages: the server runs as its own process, 1,000 peers push 64 KiB writes and never
//! read, and the server's peak resident memory (VmHWM, the kernel's high-water mark) stays
//! at or below 32 MiB; meanwhile a healthy peer's 64 KiB echo comes back whole and exact.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use ringecho_integration::{never_reader, stall, ServerProcess};

/// Peers that push and never read.
const PEERS: usize = 1_000;
/// Each write's size.
const WRITE: usize = 64 << 10;
/// The server's peak resident memory may not pass this.
const BOUND_KIB: u64 = 32 * 1024;

/// Every backend at default flags, and multishot with its levers off.
const VARIANTS: [(&str, &[&str]); 5] = [
    ("uring", &[]),
    ("epoll", &[]),
    ("epoll-loop", &[]),
    ("multishot", &[]),
    (
        "multishot",
        &[
            "--gather-sends",
            "off",
            "--large-receives",
            "off",
            "--recv-bundles",
            "off",
        ],
    ),
];

/// The peak resident memory of process `pid` so far (VmHWM), in KiB.
fn peak_kib(pid: u32) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the server's /proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmHWM line")
}

/// A healthy peer's 64 KiB echo, written and read by two threads, within `limit`.
fn healthy_echo(addr: SocketAddr, limit: Duration) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(limit)).unwrap();
    let data: Vec<u8> = (0..WRITE).map(|i| (i % 251) as u8).collect();
    let mut w = s.try_clone().unwrap();
    let sent = data.clone();
    let writer = std::thread::spawn(move || w.write_all(&sent).unwrap());
    let mut back = vec![0u8; WRITE];
    s.read_exact(&mut back)
        .unwrap_or_else(|e| panic!("the healthy echo was not back within {limit:?}: {e}"));
    writer.join().unwrap();
    assert!(back == data, "the healthy echo was altered");
}

#[test]
fn never_readers_pushing_64k_writes_keep_the_server_under_32_mib() {
    let _ = ringecho_common::raise_nofile_limit();
    for (backend, args) in VARIANTS {
        let mut all = vec!["--backend", backend, "--drain-timeout", "200ms"];
        all.extend_from_slice(args);
        let srv = ServerProcess::start(None, &all);
        let mut peers: Vec<TcpStream> = (0..PEERS).map(|_| never_reader(srv.addr)).collect();
        let pushed = stall(&mut peers, WRITE);
        healthy_echo(srv.addr, Duration::from_secs(5));
        let peak = peak_kib(srv.pid());
        eprintln!(
            "{backend} {args:?}: {PEERS} never-readers pushed {} MiB; server peak RSS {peak} KiB",
            pushed >> 20
        );
        assert!(
            peak <= BOUND_KIB,
            "{backend} {args:?}: peak RSS {peak} KiB, bound {BOUND_KIB} KiB"
        );
        drop(peers);
        let _ = srv.stop();
    }
}
