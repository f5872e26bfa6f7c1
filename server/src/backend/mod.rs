//! The I/O backends. `uring` and `epoll` only adapt their runtime's socket types to
//! [`crate::echo`]'s traits; `multishot` drives its own ring and completion loop.

pub mod epoll;
pub mod multishot;
mod ring;
pub mod uring;
