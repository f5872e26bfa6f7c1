//! The running layer: processes. The comparison end to end (`ringecho-perf compare`, which
//! scripts/compare.sh runs): every server under the same load, interleaved round by round
//! (A B C A B C), server and loadgen pinned to different cores, capped scenarios in a
//! cgroup; then the summary, the table, the plots, the profile and report.html. A server
//! that never listens, dies or corrupts an echo gets a FAILED row and the run goes on; the
//! comparison then exits 1.
//!
//! The settings are derived once, in [`Plan::new`] (`plan`); the state of a comparison in
//! progress is one [`Bench`] ([`bench`]), whose [`Bench::run`] reads as the comparison's
//! steps. Its optional passes are apart: `paired_step` (`--paired`), `profile_step`
//! (`--profile`) and `cells` (the map's runs, `--map` and `ringecho-perf map`, planned in
//! [`map_plan`]); `machine` describes the machine the figures hold for. Below them: the
//! servers ([`server`]), the loadgen ([`loadgen`]), the CPU cap ([`cap`]), signals
//! ([`signals`]), the sockets' options read from a running server ([`sockets`]) and the
//! loadgen's own targets ([`check`]). This layer calls `crate::analysis` and
//! `crate::render`; nothing calls back up into it.

mod bench;
pub mod cap;
mod cells;
pub mod check;
pub mod loadgen;
mod machine;
pub mod map_plan;
mod paired_step;
mod plan;
mod profile_step;
pub mod server;
pub mod signals;
pub mod sockets;

pub use bench::Bench;
pub use machine::Machine;
pub(crate) use plan::{duration as duration_arg, duration_or_zero as duration_or_zero_arg};
pub use plan::{Cores, Options, Plan, Servers};
