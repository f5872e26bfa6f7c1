//! The classic echo benchmark client: one OS thread per connection, each a blocking
//! write-then-read loop. The yardstick for the loadgen's own CPU per message.

#![deny(unsafe_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;

/// One thread per connection, blocking write/read, for a fixed time.
#[derive(Debug, Parser)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:8000")]
    addr: SocketAddr,
    #[arg(long, default_value_t = 100)]
    connections: u32,
    #[arg(long, default_value_t = 64)]
    payload: usize,
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    duration: Duration,
}

#[allow(unsafe_code)]
fn cpu_s() -> f64 {
    // SAFETY: getrusage fills the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let _ = ringecho_server::listener::raise_nofile_limit();
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for i in 0..args.connections {
        let mut s = match TcpStream::connect(args.addr) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("blocking-client: connection {i} failed: {e}");
                stop.store(true, Ordering::Relaxed);
                return ExitCode::from(1);
            }
        };
        let _ = s.set_nodelay(true);
        let (stop_flag, counter, len) = (stop.clone(), count.clone(), args.payload);
        let spawned = std::thread::Builder::new()
            .stack_size(64 << 10)
            .spawn(move || {
                let msg = vec![0x5au8; len];
                let mut back = vec![0u8; len];
                let mut n = 0;
                while !stop_flag.load(Ordering::Relaxed) {
                    if s.write_all(&msg)
                        .and_then(|_| s.read_exact(&mut back))
                        .is_err()
                    {
                        break;
                    }
                    n += 1;
                }
                counter.fetch_add(n, Ordering::Relaxed);
            });
        match spawned {
            Ok(t) => threads.push(t),
            Err(e) => {
                eprintln!("blocking-client: cannot start thread {i}: {e}");
                stop.store(true, Ordering::Relaxed);
                return ExitCode::from(1);
            }
        }
    }
    let (t0, c0) = (Instant::now(), cpu_s());
    std::thread::sleep(args.duration);
    stop.store(true, Ordering::Relaxed);
    let (elapsed, cpu) = (t0.elapsed().as_secs_f64(), cpu_s() - c0);
    for t in threads {
        let _ = t.join();
    }
    let msgs = count.load(Ordering::Relaxed);
    println!(
        "blocking-client: {} connections, {:.0} msgs/s, {:.2} µs CPU/msg",
        args.connections,
        msgs as f64 / elapsed,
        cpu * 1e6 / msgs.max(1) as f64
    );
    ExitCode::SUCCESS
}
