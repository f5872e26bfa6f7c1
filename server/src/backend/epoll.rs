//! epoll through tokio: a current-thread runtime per worker thread.

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::echo::{run_accept_loop, Acceptor, EchoStream};
use crate::ready::Ready;
use crate::worker::Worker;

struct EpollStream(TcpStream);

impl EchoStream for EpollStream {
    async fn recv(&mut self, mut buf: Vec<u8>) -> (io::Result<usize>, Vec<u8>) {
        // Readiness I/O reads into initialised memory: zero it once, on the first receive.
        if buf.len() < buf.capacity() {
            buf.resize(buf.capacity(), 0);
        }
        let res = self.0.read(&mut buf).await;
        (res, buf)
    }

    async fn send_all(&mut self, buf: Vec<u8>, len: usize) -> (io::Result<()>, Vec<u8>) {
        let res = self.0.write_all(&buf[..len]).await;
        (res, buf)
    }

    fn raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

struct EpollAcceptor(TcpListener);

impl Acceptor for EpollAcceptor {
    type Stream = EpollStream;

    async fn accept(&self) -> io::Result<(EpollStream, std::net::SocketAddr)> {
        let (stream, peer) = self.0.accept().await?;
        Ok((EpollStream(stream), peer))
    }

    fn raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// Runs one worker thread's runtime until its connections are drained: one accept loop per
/// listener (one per address `--listen` named), all on this thread.
pub fn run(listeners: Vec<std::net::TcpListener>, worker: Worker, ready: Ready) -> io::Result<()> {
    let rt = ready.report(
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
    )?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let mut loops = Vec::with_capacity(listeners.len());
        for l in listeners {
            let acceptor = EpollAcceptor(ready.report(TcpListener::from_std(l))?);
            loops.push(tokio::task::spawn_local(run_accept_loop(
                acceptor,
                worker.clone(),
            )));
        }
        ready.done();
        for l in loops {
            l.await.map_err(io::Error::other)?;
        }
        Ok(())
    })
}
