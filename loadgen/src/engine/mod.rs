//! The load engine, in strict phases:
//!
//! 1. **Connect**: every thread opens its share of connections, paced at `--connect-rate`;
//!    each connect is timed from its own start, so connect latency is the server's and the
//!    network's, not the loadgen's own queue. A connect completes from the server's accept
//!    queue, before the server has accepted it, so each connection then echoes one probe
//!    message (sequence number [`PROBE_SEQ`], verified, never measured): a connection is
//!    up once the server has served it.
//! 2. **Barrier**: once every thread's connections are up, all threads agree on one start
//!    (no earlier than `--start-at`). Nothing before it lands in a message histogram.
//! 3. **Warm-up**, then the **measured window**: the open-loop clock starts at the barrier,
//!    and only echoes completing inside the window are recorded.
//!
//! Each connection runs a writer and a reader over one socket: up to `--pipeline` messages
//! in flight, every echoed byte verified in order, each message timed three ways (intended,
//! sent, echoed). Each thread keeps its own histograms and counts, merged at the end.
//!
//! By concern: `plan` holds what every thread follows and the run's clock; `tally` what
//! a thread counts and publishes; `connect` opens and probes connections; `slot` drives
//! one connection slot across its connections and closes them; `conversation` is one
//! connection's writer and reader; `thread` is a load thread's life in order.

pub mod connect;
mod conversation;
pub mod plan;
mod slot;
pub mod tally;
mod thread;

pub use connect::{connect_error_label, error_label};
pub use plan::{Clock, Measured, Plan, PROBE_SEQ};
pub use tally::{new_histogram, Progress, Tally};
pub use thread::run_thread;
