//! Echo round trip over loopback, per backend: one in-process server thread, one connection,
//! one message at a time (64 B and 4 KiB).

use std::io::{Read, Write};
use std::net::TcpStream;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringecho_server::{start, Backend, Config};

fn round_trip(c: &mut Criterion) {
    let mut group = c.benchmark_group("echo_round_trip");
    for backend in [
        Backend::Epoll,
        Backend::EpollLoop,
        Backend::Uring,
        Backend::Multishot,
    ] {
        let mut cfg = Config::new("127.0.0.1:0".parse().unwrap(), backend);
        cfg.threads = Some(1);
        let srv = start(&cfg).expect("server starts");
        for size in [64usize, 4096] {
            let mut s = TcpStream::connect(srv.local_addr()).unwrap();
            s.set_nodelay(true).unwrap();
            let msg = vec![7u8; size];
            let mut back = vec![0u8; size];
            group.throughput(Throughput::Bytes(size as u64));
            group.bench_with_input(BenchmarkId::new(backend.name(), size), &size, |b, _| {
                b.iter(|| {
                    s.write_all(&msg).unwrap();
                    s.read_exact(&mut back).unwrap();
                })
            });
        }
        srv.shutdown().unwrap();
    }
    group.finish();
}

criterion_group!(benches, round_trip);
criterion_main!(benches);
