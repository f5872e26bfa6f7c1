//! io_uring through tokio-uring: each receive and send is one submission with an owned
//! buffer, moved into the operation and handed back with its result.

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use tokio_uring::buf::BoundedBuf;
use tokio_uring::net::{TcpListener, TcpStream};

use crate::echo::{run_accept_loop, Acceptor, EchoStream};
use crate::ready::Ready;
use crate::worker::Worker;

/// Submission queue entries per ring: enough that a burst of completions and re-submissions
/// from thousands of connections rarely forces an early submit.
const RING_ENTRIES: u32 = 4096;

struct UringStream(TcpStream);

impl EchoStream for UringStream {
    async fn recv(&mut self, buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        self.0.read(buf).await
    }

    async fn send_all(&mut self, buf: Vec<u8>, len: usize) -> (io::Result<()>, Vec<u8>) {
        let (res, slice) = self.0.write_all(buf.slice(..len)).await;
        (res, slice.into_inner())
    }

    fn raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

struct UringAcceptor(TcpListener);

impl Acceptor for UringAcceptor {
    type Stream = UringStream;

    async fn accept(&self) -> io::Result<(UringStream, std::net::SocketAddr)> {
        let (stream, peer) = self.0.accept().await?;
        Ok((UringStream(stream), peer))
    }

    fn raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// The ring's set-up: COOP_TASKRUN, so a completion's task work waits for the thread's next
/// entry into the kernel (tokio's epoll_wait, which it wakes from) instead of interrupting it
/// with an IPI; TASKRUN_FLAG, so the kernel marks when such work is pending; SINGLE_ISSUER,
/// since one thread owns the runtime. DEFER_TASKRUN is not used: its task work runs only in
/// an io_uring_enter that waits for completions, and tokio-uring waits in epoll_wait on the
/// ring's descriptor instead, so completions would never be posted. A kernel that refuses
/// the flags (before 6.0) gets the default ring.
fn runtime(ready: &Ready) -> io::Result<tokio_uring::Runtime> {
    let tuned = tokio_uring::Runtime::new(
        tokio_uring::builder().entries(RING_ENTRIES).uring_builder(
            tokio_uring::uring_builder()
                .setup_coop_taskrun()
                .setup_taskrun_flag()
                .setup_single_issuer(),
        ),
    );
    match tuned {
        Ok(rt) => Ok(rt),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            tracing::info!("kernel refused COOP_TASKRUN or SINGLE_ISSUER; using a default ring");
            ready.report(tokio_uring::Runtime::new(
                tokio_uring::builder().entries(RING_ENTRIES),
            ))
        }
        Err(e) => ready.report(Err(e)),
    }
}

/// Runs one worker thread's tokio-uring runtime until its connections are drained: one accept
/// loop per listener (one per address `--listen` named), all on this thread.
pub fn run(listeners: Vec<std::net::TcpListener>, worker: Worker, ready: Ready) -> io::Result<()> {
    let rt = runtime(&ready)?;
    rt.block_on(async move {
        let loops: Vec<_> = listeners
            .into_iter()
            .map(|l| {
                let acceptor = UringAcceptor(TcpListener::from_std(l));
                tokio_uring::spawn(run_accept_loop(acceptor, worker.clone()))
            })
            .collect();
        ready.done();
        for l in loops {
            l.await.map_err(io::Error::other)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::Shutdown;

    use super::*;

    /// A connected pair on loopback: tokio-uring's end (inside a runtime) and a blocking std end.
    fn pair() -> (std::net::TcpStream, std::net::TcpStream) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (ours, _) = l.accept().unwrap();
        (ours, peer)
    }

    #[test]
    fn a_receive_returns_what_the_peer_sent_and_then_its_fin() {
        let (ours, mut peer) = pair();
        tokio_uring::start(async move {
            let mut s = UringStream(TcpStream::from_std(ours));
            // Posted before the bytes exist: the receive waits for them.
            let writer = std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(20));
                peer.write_all(b"hello").unwrap();
                peer.shutdown(Shutdown::Write).unwrap();
                peer
            });
            let (res, buf) = s.recv(Vec::with_capacity(64)).await;
            assert_eq!(res.unwrap(), 5);
            assert_eq!(buf, b"hello");
            assert_eq!(buf.capacity(), 64);
            let _peer = writer.join().unwrap();
            let (res, _) = s.recv(buf).await;
            assert_eq!(res.unwrap(), 0);
        });
    }

    #[test]
    fn a_send_larger_than_the_socket_buffers_arrives_whole_and_in_order() {
        let (ours, mut peer) = pair();
        let data: Vec<u8> = (0..8 << 20).map(|i: u32| (i % 251) as u8).collect();
        let expected = data.clone();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            peer.read_to_end(&mut got).unwrap();
            got
        });
        tokio_uring::start(async move {
            let mut s = UringStream(TcpStream::from_std(ours));
            let len = data.len();
            let (res, buf) = s.send_all(data, len).await;
            res.unwrap();
            assert_eq!(buf.len(), len);
            s.0.shutdown(Shutdown::Write).unwrap();
        });
        assert!(reader.join().unwrap() == expected);
    }

    #[test]
    fn a_send_to_a_reset_peer_fails_with_the_reset() {
        let (ours, peer) = pair();
        socket2::SockRef::from(&peer)
            .set_linger(Some(std::time::Duration::ZERO))
            .unwrap();
        drop(peer);
        tokio_uring::start(async move {
            let mut s = UringStream(TcpStream::from_std(ours));
            let mut failed = None;
            for _ in 0..100 {
                let (res, _) = s.send_all(vec![7; 1024], 1024).await;
                if let Err(e) = res {
                    failed = Some(e);
                    break;
                }
            }
            let e = failed.expect("a reset peer never failed a send");
            assert!(
                matches!(e.raw_os_error(), Some(libc::ECONNRESET | libc::EPIPE)),
                "{e}"
            );
        });
    }
}
