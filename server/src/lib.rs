//! ringecho-server: a TCP echo server with one thread-per-core shape and four I/O backends
//! (`epoll` via tokio, `epoll-loop` by hand on mio, `uring` via tokio-uring, `multishot` via
//! the io-uring crate), so that a comparison between them isolates the I/O interface.
//!
//! [`bind`] opens one SO_REUSEPORT listener per thread, [`start_on`] runs the
//! chosen backend on each, and [`run`] serves until a shutdown future completes,
//! then drains; `stats` counts how every connection ended (peer FIN, peer RST, server,
//! error). The process around it (signals, the ready file, exit codes) is the binary's.

#![warn(missing_docs)]
#![deny(unsafe_code)]

pub(crate) mod admission;
pub(crate) mod backend;
pub mod config;
pub(crate) mod echo;
pub mod listener;
mod metrics;
mod ready;
mod server;
mod shutdown;
mod stats;
pub(crate) mod worker;

pub use config::{Backend, Config};
pub use server::{bind, run, start, start_on, Listeners, RunError, RunningServer, StartError};
pub use stats::{CloseKind, Snapshot, Stats};

/// The io_uring features this kernel offers, a `name: yes|no` line each (`--probe`).
pub fn probe() -> String {
    // On a thread of its own: a ring's teardown queues task work on its creator.
    std::thread::spawn(backend::multishot::probe)
        .join()
        .unwrap_or_else(|_| "io_uring: probe panicked\n".into())
}
