//! Opening connections: paced across the threads, timed from each connect's own start,
//! failing over to the name's next address when one is unserved, and each proven up by a
//! probe echo before the barrier.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpSocket, TcpStream};

use super::conversation::{read_exact, write_all};
use super::plan::{Plan, PROBE_SEQ};
use super::tally::Tally;
use crate::payload::Payload;

/// A connect error that will not get better by retrying, worth stopping the run for.
pub fn connect_error_label(err: &io::Error) -> String {
    match err.raw_os_error() {
        Some(libc::EADDRNOTAVAIL) => "ephemeral_ports_exhausted".into(),
        _ => error_label(err),
    }
}

/// A snake_case label for an error (`ConnectionRefused` → `connection_refused`).
pub fn error_label(err: &io::Error) -> String {
    ringecho_common::error_kind_label(err.kind())
}

/// Connects to the server's current address; when it refuses and the name had more, moves
/// every slot on to the next one, as a client tries each address of a host name in turn.
async fn connect(plan: &Plan, slot: u32) -> io::Result<TcpStream> {
    loop {
        let i = plan.addr_index.load(Ordering::Relaxed);
        let addr = plan.addrs[i];
        match connect_to(plan, slot, addr).await {
            Err(e) if i + 1 < plan.addrs.len() && is_unserved(&e) => {
                if plan
                    .addr_index
                    .compare_exchange(i, i + 1, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
                {
                    tracing::info!(
                        "cannot connect to {addr}: {e}; trying {}",
                        plan.addrs[i + 1]
                    );
                }
            }
            res => return res,
        }
    }
}

/// Whether a connect error says nothing serves that address (so the next one may).
fn is_unserved(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::AddrNotAvailable
            | io::ErrorKind::NetworkUnreachable
            | io::ErrorKind::HostUnreachable
    )
}

async fn connect_to(plan: &Plan, slot: u32, addr: SocketAddr) -> io::Result<TcpStream> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if !plan.source_addrs.is_empty() {
        let ip = plan.source_addrs[slot as usize % plan.source_addrs.len()];
        // Pick the port at connect time, per destination, not at bind time per source
        // address: otherwise every bound socket reserves a port of its own.
        socket2::SockRef::from(&socket).set_reuse_address(true)?;
        crate::sys::set_bind_address_no_port(socket.as_raw_fd())?;
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = tokio::time::timeout(plan.io_timeout, socket.connect(addr))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Connects, timing the connect from its own start into the connect histogram.
pub(super) async fn timed_connect(
    plan: &Plan,
    slot: u32,
    tally: &RefCell<Tally>,
) -> Option<TcpStream> {
    let began = Instant::now();
    match connect(plan, slot).await {
        Ok(s) => {
            let mut t = tally.borrow_mut();
            t.connect
                .saturating_record(began.elapsed().as_micros() as u64);
            t.counts.connects += 1;
            t.open += 1;
            Some(s)
        }
        Err(e) => {
            tally.borrow_mut().counts.error(connect_error_label(&e));
            None
        }
    }
}

/// Echoes the probe on a new connection; returns the mismatched bytes.
async fn probe(plan: &Plan, slot: u32, stream: &TcpStream) -> io::Result<u64> {
    let mut payload = Payload::new(slot as u64, plan.payload);
    let mut echo = vec![0u8; plan.payload];
    let exchange = async {
        write_all(stream, payload.stamp(PROBE_SEQ)).await?;
        read_exact(stream, &mut echo).await
    };
    tokio::time::timeout(plan.io_timeout, exchange)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "probe echo timed out"))??;
    Ok(payload.mismatches_at(PROBE_SEQ, &echo))
}

/// Opens this thread's connections, paced: thread `thread` of `n` starts its k-th connect at
/// `(k × n + thread) / connect_rate`, so the threads interleave into one even stream.
pub(super) async fn connect_phase(
    thread: usize,
    slots: &[u32],
    plan: &Arc<Plan>,
    tally: &Rc<RefCell<Tally>>,
) -> Vec<(u32, TcpStream)> {
    let threads = plan.threads;
    let mut tasks = tokio::task::JoinSet::new();
    for (k, &slot) in slots.iter().enumerate() {
        let at = plan.connect_from
            + Duration::from_secs_f64((k * threads + thread) as f64 / plan.connect_rate);
        let (plan, tally) = (plan.clone(), tally.clone());
        tasks.spawn_local(async move {
            tokio::time::sleep_until(at.into()).await;
            let stream = timed_connect(&plan, slot, &tally).await?;
            match probe(&plan, slot, &stream).await {
                Ok(0) => {
                    let mut t = tally.borrow_mut();
                    t.counts.messages_total += 1;
                    t.counts.bytes_total += plan.payload as u64;
                    Some((slot, stream))
                }
                Ok(bad) => {
                    let mut t = tally.borrow_mut();
                    t.counts.mismatches += bad;
                    t.counts.error("probe_mismatch");
                    t.open -= 1;
                    None
                }
                Err(e) => {
                    let mut t = tally.borrow_mut();
                    t.counts.error(format!("probe_{}", error_label(&e)));
                    t.open -= 1;
                    None
                }
            }
        });
    }
    let mut out = Vec::with_capacity(slots.len());
    while let Some(r) = tasks.join_next().await {
        if let Ok(Some(s)) = r {
            out.push(s);
        }
    }
    out.sort_by_key(|(slot, _)| *slot);
    out
}
