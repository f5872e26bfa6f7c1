//! Benchmarks and the reference load client for ringecho.
//!
//! `benches/` holds the criterion benchmarks (`cargo bench`); `blocking-client` is the classic
//! echo benchmark client (one OS thread per connection, blocking read/write) that the loadgen's
//! own cost is measured against (`scripts/loadgen-vs-blocking.sh`).

#![forbid(unsafe_code)]
