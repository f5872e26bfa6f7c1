//! The server's metric names, defined once: the server registers them, the loadgen's witness
//! and the tests read them (the interface contract names them too: docs/usage.md lists them).
//!
//! Counters are registered under their base name; the Prometheus text format shows them with
//! `_total` appended, which is the name readers look for ([`total`]).

/// Connections accepted (including those rejected by `--max-conns`). Counter.
pub const CONNECTIONS_ACCEPTED: &str = "ringecho_connections_accepted";
/// Connections closed at once because `--max-conns` were open. Counter.
pub const CONNECTIONS_REJECTED: &str = "ringecho_connections_rejected";
/// Connections open now. Gauge.
pub const CONNECTIONS_ACTIVE: &str = "ringecho_connections_active";
/// Bytes sent back to peers. Counter.
pub const BYTES_ECHOED: &str = "ringecho_bytes_echoed";
/// Receives whose bytes were sent back in full (not messages: an echo server has no
/// framing). Counter.
pub const RECEIVES_ECHOED: &str = "ringecho_receives_echoed";
/// The same count as [`RECEIVES_ECHOED`], under its first name, kept for existing readers.
/// Counter.
pub const MESSAGES_ECHOED: &str = "ringecho_messages_echoed";
/// Accept calls that failed. Counter.
pub const ACCEPT_ERRORS: &str = "ringecho_accept_errors";
/// Connection closes by how they ended, label [`HOW`]. Counter.
pub const CLOSES: &str = "ringecho_closes";
/// Connections that ended in an error, label `kind`. Counter.
pub const CONNECTION_ERRORS: &str = "ringecho_connection_errors";
/// Buffers held with bytes not yet echoed (multishot), label `kind` (`ring`, `spill`). Gauge.
pub const BUFFERS_HELD: &str = "ringecho_buffers_held";
/// The server process's CPU seconds, label `mode` (`user`, `system`). Counter, written
/// under this full name.
pub const PROCESS_CPU_SECONDS_TOTAL: &str = "ringecho_process_cpu_seconds_total";
/// The label of [`CLOSES`]: `fin`, `rst`, `error`, `server`.
pub const HOW: &str = "how";

/// The name a counter's samples carry in the text format: `NAME_total`.
pub fn total(counter: &str) -> String {
    format!("{counter}_total")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_read_with_total_appended() {
        assert_eq!(total(CLOSES), "ringecho_closes_total");
        assert_eq!(total(RECEIVES_ECHOED), "ringecho_receives_echoed_total");
    }
}
