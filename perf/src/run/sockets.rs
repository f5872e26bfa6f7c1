//! What a server sets on the sockets it accepts, read from one of them: TCP_NODELAY (whose
//! absence lets Nagle coalesce a stream's small sends, a saving a comparison would credit
//! to the I/O interface), SO_SNDBUF, SO_RCVBUF and TCP_CORK.
//!
//! compare connects once to a server it started, finds the server's end of that connection
//! in the server's descriptor table (its socket inode, from /proc/net/tcp, among the links
//! in /proc/PID/fd of the server and its children), takes a copy of the descriptor with
//! `pidfd_getfd` and reads the options from it. That needs ptrace rights over the server
//! (root, or the same user where `kernel.yama.ptrace_scope` allows): without them, or when
//! the server keeps connections outside its descriptor table (io_uring direct descriptors),
//! the options are "unknown" with the reason.

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::analysis::sockopts::SocketOptions;

/// Reads the options of one socket `pid` (or a child of it) accepts on `addr`.
pub fn read(pid: u32, addr: SocketAddr) -> SocketOptions {
    match try_read(pid, addr) {
        Ok(o) => o,
        Err(why) => SocketOptions::unknown(why),
    }
}

fn try_read(pid: u32, addr: SocketAddr) -> Result<SocketOptions, String> {
    let probe = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let ours = probe.local_addr().map_err(|e| e.to_string())?;
    // The server's end: local port = the server's, remote port = ours. Accepting may lag.
    let deadline = Instant::now() + Duration::from_secs(2);
    let (owner, fd) = loop {
        if let Some(inode) = server_inode(addr.port(), ours.port()) {
            if let Some(found) = tree(pid)
                .into_iter()
                .find_map(|p| fd_of(p, inode).map(|fd| (p, fd)))
            {
                break found;
            }
        }
        if Instant::now() >= deadline {
            return Err(
                "the accepted socket is not in the server's descriptor table (not accepted \
                 yet, or kept as an io_uring direct descriptor)"
                    .into(),
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let pid = rustix::process::Pid::from_raw(owner as i32).ok_or("no such process")?;
    let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())
        .map_err(|e| format!("pidfd_open: {e}"))?;
    let sock = rustix::process::pidfd_getfd(&pidfd, fd, rustix::process::PidfdGetfdFlags::empty())
        .map_err(|e| {
            format!("pidfd_getfd: {e} (needs ptrace rights over the server: run as root)")
        })?;
    use rustix::net::sockopt;
    let opts = SocketOptions {
        nodelay: sockopt::tcp_nodelay(&sock).ok(),
        sndbuf: sockopt::socket_send_buffer_size(&sock).ok(),
        rcvbuf: sockopt::socket_recv_buffer_size(&sock).ok(),
        cork: sockopt::tcp_cork(&sock).ok(),
        unknown: None,
    };
    drop(probe);
    Ok(opts)
}

/// The inode of the established socket whose local port is `local` and remote `remote`
/// (/proc/net/tcp and tcp6: hexadecimal ports, the inode in the tenth field).
fn server_inode(local: u16, remote: u16) -> Option<u64> {
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().find_map(|f| {
        let text = std::fs::read_to_string(f).ok()?;
        inode_in(&text, local, remote)
    })
}

/// [`server_inode`] over a /proc/net/tcp text.
fn inode_in(text: &str, local: u16, remote: u16) -> Option<u64> {
    let port = |a: &str| u16::from_str_radix(a.rsplit(':').next()?, 16).ok();
    text.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        // sl local rem st tx:rx tr:when retrnsmt uid timeout inode
        let (l_port, r_port, state) = (port(f.get(1)?)?, port(f.get(2)?)?, *f.get(3)?);
        (l_port == local && r_port == remote && state == "01")
            .then(|| f.get(9)?.parse().ok())
            .flatten()
    })
}

/// `pid` and its descendants.
fn tree(pid: u32) -> Vec<u32> {
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) {
            for t in tasks.flatten() {
                let children =
                    std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
                out.extend(
                    children
                        .split_whitespace()
                        .filter_map(|c| c.parse::<u32>().ok()),
                );
            }
        }
        i += 1;
    }
    out.dedup();
    out
}

/// The descriptor of `pid` that is socket `inode`.
fn fd_of(pid: u32, inode: u64) -> Option<i32> {
    let want = format!("socket:[{inode}]");
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .flatten()
        .find(|e| {
            std::fs::read_link(e.path()).is_ok_and(|l| l.as_os_str().to_string_lossy() == want)
        })
        .and_then(|e| e.file_name().to_str()?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_end_is_found_by_its_ports() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1 0 100 0 0 10 0\n\
   1: 0100007F:1F40 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 222 1 0 20 4 30 10 -1\n\
   2: 0100007F:C350 0100007F:1F40 01 00000000:00000000 00:00000000 00000000     0        0 333 1 0 20 4 30 10 -1\n";
        assert_eq!(inode_in(text, 8000, 50000), Some(222));
        assert_eq!(inode_in(text, 50000, 8000), Some(333));
        assert_eq!(inode_in(text, 8000, 1), None);
    }

    #[test]
    fn options_read_from_a_socket_of_our_own() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        // Set on the listener, so the accepted socket has it from the start.
        rustix::net::sockopt::set_tcp_nodelay(&l, true).unwrap();
        let addr = l.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            std::thread::sleep(Duration::from_millis(500));
            drop(s);
        });
        // This process is the "server": same user, pidfd_getfd on ourselves is allowed.
        let o = read(std::process::id(), addr);
        t.join().unwrap();
        match &o.unknown {
            None => assert_eq!(o.nodelay, Some(true), "{o:?}"),
            Some(why) => assert!(why.contains("pidfd") || why.contains("table"), "{why}"),
        }
    }
}
