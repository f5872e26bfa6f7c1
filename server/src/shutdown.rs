//! The server's lifecycle as the worker threads see it, broadcast through a `watch` channel
//! (readable from any runtime, or from a plain loop with `borrow()`).

/// Where the server is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Accepting and echoing.
    Running,
    /// Stopped accepting; open connections may finish on their own.
    Draining,
    /// The drain timeout passed: close whatever is still open, counted as server closes.
    Closing,
}
