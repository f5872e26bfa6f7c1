//! Listener set-up shared by every backend, and the process's file-descriptor limit.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, TcpKeepalive, Type};

/// How the kernel finds dead peers, set on each listener and inherited by every socket it
/// accepts (Linux copies these options to accepted sockets), so no per-connection call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeadPeer {
    /// TCP keepalive: idle time before the first probe, the time between probes, and how
    /// many unanswered probes end the connection. `None`: no keepalive.
    pub keepalive: Option<(Duration, Duration, u32)>,
    /// TCP_USER_TIMEOUT: how long sent data may stay unacknowledged, or queued data
    /// untransmitted behind a zero window, before the connection ends. `None`: the kernel's
    /// default (about 15 minutes of retransmissions; zero-window probing forever).
    pub user_timeout: Option<Duration>,
}

impl DeadPeer {
    /// The kernel's defaults: no keepalive, no user timeout.
    pub const OFF: DeadPeer = DeadPeer {
        keepalive: None,
        user_timeout: None,
    };

    fn apply(&self, socket: &Socket) -> io::Result<()> {
        if let Some((idle, interval, probes)) = self.keepalive {
            let ka = TcpKeepalive::new()
                .with_time(idle)
                .with_interval(interval)
                .with_retries(probes);
            socket.set_tcp_keepalive(&ka)?;
        }
        if let Some(t) = self.user_timeout {
            socket.set_tcp_user_timeout(Some(t))?;
        }
        Ok(())
    }
}

/// Binds a non-blocking TCP listener with SO_REUSEPORT, so every worker thread can own one
/// listener on the same address and the kernel spreads new connections across them.
pub fn bind_reuseport(
    addr: SocketAddr,
    backlog: i32,
    dead_peer: DeadPeer,
) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    // Accepted sockets inherit TCP_NODELAY on Linux; each backend still sets it per connection.
    socket.set_nodelay(true)?;
    dead_peer.apply(&socket)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(socket.into())
}

/// Binds one listener per thread on `addr`. With port 0 the first bind picks the port and the
/// rest join it, so tests can start a multi-threaded server on a free port.
///
/// SO_REUSEPORT would let a second server on the same port silently share the traffic, so the
/// address is first probed without it: a port held by anyone else is "address in use".
pub fn bind_group(
    addr: SocketAddr,
    backlog: i32,
    n: usize,
    dead_peer: DeadPeer,
) -> io::Result<Vec<std::net::TcpListener>> {
    let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    probe.set_reuse_address(true)?;
    probe.bind(&addr.into())?;
    let addr = probe
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::other("listener has no IP address"))?;
    // The probe holds the port without SO_REUSEPORT, which would refuse the group's binds.
    drop(probe);
    (0..n)
        .map(|_| bind_reuseport(addr, backlog, dead_peer))
        .collect()
}

pub use ringecho_common::raise_nofile_limit;

/// Whether an accept error means "out of descriptors or memory": back off and retry rather
/// than exit, since the condition clears as connections close.
pub fn is_resource_exhaustion(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOBUFS) | Some(libc::ENOMEM)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_group_shares_one_port() {
        let ls = bind_group("127.0.0.1:0".parse().unwrap(), 16, 3, DeadPeer::OFF).unwrap();
        let ports: Vec<u16> = ls.iter().map(|l| l.local_addr().unwrap().port()).collect();
        assert!(ports.iter().all(|&p| p == ports[0] && p != 0));
    }

    #[test]
    fn taken_port_is_address_in_use() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let err = bind_group(held.local_addr().unwrap(), 16, 2, DeadPeer::OFF).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    }
}
