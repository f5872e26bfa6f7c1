//! The I/O backends, a 2×2 of interface and driver: `epoll` (tokio) and `uring` (tokio-uring)
//! only adapt their runtime's socket types to [`crate::echo`]'s traits; `epoll_loop` and
//! `multishot` are hand-written loops with no runtime, over epoll and io_uring.

pub(crate) mod clock;
pub mod epoll;
pub mod epoll_loop;
pub mod multishot;
mod shell;
pub mod uring;
