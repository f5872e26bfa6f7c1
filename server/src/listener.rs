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
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    // Accepted sockets inherit TCP_NODELAY on Linux (the child socket is a clone of the
    // listener's), so no backend spends a setsockopt per connection on it; compare reads it
    // back from an accepted socket of every server and shows it in table.txt.
    socket.set_nodelay(true)?;
    dead_peer.apply(&socket)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(socket.into())
}

/// Binds one listener per thread on each of `addrs`: `result[thread][i]` listens on the i-th
/// address. With port 0 the first bind picks the port and every other bind joins it, so
/// tests can start a multi-threaded server on a free port, on one port across addresses.
///
/// SO_REUSEPORT would let a second server on the same port silently share the traffic, so
/// each address is first probed without it: a port held by anyone else is "address in use".
pub fn bind_group(
    addrs: &[SocketAddr],
    backlog: i32,
    n: usize,
    dead_peer: DeadPeer,
) -> io::Result<Vec<Vec<std::net::TcpListener>>> {
    let mut per_thread: Vec<Vec<std::net::TcpListener>> = (0..n).map(|_| Vec::new()).collect();
    let mut port = None;
    for &addr in addrs {
        let mut addr = addr;
        if let Some(p) = port.filter(|_| addr.port() == 0) {
            addr.set_port(p);
        }
        let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        probe.set_reuse_address(true)?;
        if addr.is_ipv6() {
            // [::]:P listens on IPv6 alone, so 0.0.0.0:P can be bound beside it.
            probe.set_only_v6(true)?;
        }
        probe.bind(&addr.into()).map_err(|e| match addrs.len() {
            1 => e,
            _ => io::Error::new(e.kind(), format!("{addr}: {e}")),
        })?;
        let addr = probe
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("listener has no IP address"))?;
        port.get_or_insert(addr.port());
        // The probe holds the port without SO_REUSEPORT, which would refuse the group's binds.
        drop(probe);
        for listeners in &mut per_thread {
            listeners.push(bind_reuseport(addr, backlog, dead_peer)?);
        }
    }
    Ok(per_thread)
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

/// The open-file soft limit now.
pub(crate) fn nofile_soft() -> io::Result<u64> {
    ringecho_common::procfs::max_fds()
}

/// Bytes a socket's send queue holds that the peer has not acknowledged (SIOCOUTQ): bytes
/// the server took from a peer and has not yet delivered back. 0 when it cannot be read.
#[allow(unsafe_code)]
pub(crate) fn unsent_in_kernel(fd: std::os::fd::RawFd) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: SIOCOUTQ (TIOCOUTQ) writes one int into the int we pass; a bad descriptor is
    // an error return, not undefined behaviour.
    let rc = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut n) };
    if rc == 0 {
        n.max(0) as usize
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_group_shares_one_port() {
        let addrs = ["127.0.0.1:0".parse().unwrap(), "[::1]:0".parse().unwrap()];
        let ls = bind_group(&addrs, 16, 3, DeadPeer::OFF).unwrap();
        assert_eq!(ls.len(), 3);
        let ports: Vec<u16> = ls
            .iter()
            .flatten()
            .map(|l| l.local_addr().unwrap().port())
            .collect();
        assert_eq!(ports.len(), 6);
        assert!(ports.iter().all(|&p| p == ports[0] && p != 0));
        assert!(ls[2][1].local_addr().unwrap().is_ipv6());
    }

    #[test]
    fn taken_port_is_address_in_use() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let err = bind_group(&[held.local_addr().unwrap()], 16, 2, DeadPeer::OFF).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    }
}
