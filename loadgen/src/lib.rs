//! ringecho-loadgen: opens many echo connections, sends messages that carry their connection
//! id and sequence number, verifies every echoed byte, closes a chosen share with
//! SO_LINGER=0 (RST) and the rest with FIN, and reports HdrHistogram latency, throughput and
//! close counts, with the server's and the kernel's counts beside ours.
//!
//! By concern: `cli` dispatches the command line; `load` runs one load from start to
//! report over the [`engine`]'s threads, while `watch` shows progress and samples the
//! measured window; `settle` decides where that window starts; [`counts`] is what every
//! thread and the report add up; [`report`] and `output` say and write what was measured;
//! [`witness`] reads the server's and the kernel's counts.

#![warn(missing_docs)]
#![deny(unsafe_code)]

mod cli;
pub mod config;
pub mod counts;
pub mod engine;
mod load;
mod output;
mod pace;
pub mod payload;
pub mod plot;
pub mod report;
mod settle;
pub mod sweep;
#[allow(unsafe_code)]
mod sys;
mod watch;
pub mod witness;

use std::fmt;

pub use cli::run_cli;
pub use load::{run_load, Outcome};

/// A run that could not be carried out, with what to do about it.
#[derive(Debug)]
pub struct LoadError(pub String);

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LoadError {}
