//! The server's metrics, defined once: name, type, label and help text. The server registers
//! them from this table, the loadgen's witness and the tests read them by it, and a test
//! checks docs/usage.md's list against it.
//!
//! Counters are registered under their base name; the Prometheus text format shows them with
//! `_total` appended, which is the name readers look for ([`Metric::exposed`]).

/// Whether a metric only grows or moves both ways.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only grows; shown as `NAME_total`.
    Counter,
    /// Moves both ways.
    Gauge,
}

/// One metric the server exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric {
    /// The name it is registered under.
    pub name: &'static str,
    /// Its type.
    pub kind: Kind,
    /// Its label, if it has one.
    pub label: Option<&'static str>,
    /// Its help text (`# HELP`).
    pub help: &'static str,
}

impl Metric {
    /// The name its samples carry in the text format: counters end in `_total`.
    pub fn exposed(&self) -> String {
        match self.kind {
            Kind::Counter if !self.name.ends_with("_total") => total(self.name),
            _ => self.name.to_string(),
        }
    }
}

const fn counter(name: &'static str, label: Option<&'static str>, help: &'static str) -> Metric {
    Metric {
        name,
        kind: Kind::Counter,
        label,
        help,
    }
}

const fn gauge(name: &'static str, label: Option<&'static str>, help: &'static str) -> Metric {
    Metric {
        name,
        kind: Kind::Gauge,
        label,
        help,
    }
}

/// Connections accepted (including those refused at once).
pub const CONNECTIONS_ACCEPTED: Metric = counter(
    "ringecho_connections_accepted",
    None,
    "Connections accepted (including those refused at once)",
);
/// Connections accepted by each echo thread, label [`THREAD`] (`0`, `1`, … in the order the
/// threads started): how evenly SO_REUSEPORT spread them. Their sum is
/// [`CONNECTIONS_ACCEPTED`].
pub const THREAD_CONNECTIONS_ACCEPTED: Metric = counter(
    "ringecho_thread_connections_accepted",
    Some(THREAD),
    "Connections accepted by each echo thread (how SO_REUSEPORT spread them); their sum is \
     ringecho_connections_accepted_total",
);
/// Connections refused at once, for any reason: the sum of [`CONNECTIONS_REFUSED`]'s
/// reasons, under its first name.
pub const CONNECTIONS_REJECTED: Metric = counter(
    "ringecho_connections_rejected",
    None,
    "Connections closed at once, refused for any reason (the sum of \
     ringecho_connections_refused_total), kept under its first name",
);
/// Connections refused at once, label [`REASON`]: `limit` (at the connection limit, no
/// connection idle enough to give way) or `per_source` (`--max-conns-per-source`).
pub const CONNECTIONS_REFUSED: Metric = counter(
    "ringecho_connections_refused",
    Some(REASON),
    "Connections closed at once: at the connection limit with nothing idle to give way \
     (limit), or past --max-conns-per-source (per_source)",
);
/// Idle connections closed to make room for new ones at the connection limit.
pub const CONNECTIONS_EVICTED: Metric = counter(
    "ringecho_connections_evicted",
    None,
    "Connections idle a second or more, holding nothing unsent, closed to admit a new one \
     at the connection limit (also counted as closes by the server)",
);
/// Connections open now.
pub const CONNECTIONS_ACTIVE: Metric =
    gauge("ringecho_connections_active", None, "Connections open now");
/// Bytes sent back to peers.
pub const BYTES_ECHOED: Metric = counter("ringecho_bytes_echoed", None, "Bytes sent back to peers");
/// Receives whose bytes were sent back in full (not messages: an echo server has no
/// framing).
pub const RECEIVES_ECHOED: Metric = counter(
    "ringecho_receives_echoed",
    None,
    "Receives whose bytes were sent back in full; an echo server has no framing, so a \
     receive may hold part of a message or several",
);
/// The same count as [`RECEIVES_ECHOED`], under its first name, kept for existing readers.
pub const MESSAGES_ECHOED: Metric = counter(
    "ringecho_messages_echoed",
    None,
    "The same count as ringecho_receives_echoed_total (receives, not messages), kept \
     under its first name for existing readers",
);
/// Accept calls that failed.
pub const ACCEPT_ERRORS: Metric = counter(
    "ringecho_accept_errors",
    None,
    "Accept calls that failed (EMFILE and the like)",
);
/// Connection closes by how they ended, label [`HOW`].
pub const CLOSES: Metric = counter(
    "ringecho_closes",
    Some(HOW),
    "Connection closes by how they ended: peer fin, peer rst, error, or by the server",
);
/// Connections that ended in an error, by error kind.
pub const CONNECTION_ERRORS: Metric = counter(
    "ringecho_connection_errors",
    Some("kind"),
    "Connections that ended in an error, by error kind",
);
/// Send requests made (multishot).
pub const SENDS: Metric = counter(
    "ringecho_sends",
    None,
    "Send requests made (multishot): each sends one held buffer, or several gathered",
);
/// Held buffers those sends carried (multishot).
pub const SEND_BUFFERS: Metric = counter(
    "ringecho_send_buffers",
    None,
    "Held buffers the send requests carried (multishot): more than one per send where \
     gathered",
);
/// Receive completions that carried bytes (multishot).
pub const RECV_COMPLETIONS: Metric = counter(
    "ringecho_recv_completions",
    None,
    "Receive completions that carried bytes (multishot): each fills one ring buffer, or \
     several with a bundle",
);
/// Ring buffers those completions filled (multishot).
pub const RECV_BUFFERS: Metric = counter(
    "ringecho_recv_buffers",
    None,
    "Ring buffers the receive completions filled (multishot): more than one per completion \
     where bundled",
);
/// Buffers held with bytes not yet echoed (multishot), label `kind` (`ring`, `spill`).
pub const BUFFERS_HELD: Metric = gauge(
    "ringecho_buffers_held",
    Some("kind"),
    "Buffers connections hold with bytes not yet echoed (multishot): from the ring, or copied out",
);
/// The server process's CPU seconds, label `mode` (`user`, `system`), written under this
/// full name beside the Prometheus client libraries' `process_*` metrics.
pub const PROCESS_CPU_SECONDS_TOTAL: Metric = counter(
    "ringecho_process_cpu_seconds_total",
    Some("mode"),
    "CPU time spent in seconds, by mode.",
);
/// The label of [`CLOSES`]: `fin`, `rst`, `error`, `server`.
pub const HOW: &str = "how";
/// The label of [`THREAD_CONNECTIONS_ACCEPTED`]: the echo thread's number.
pub const THREAD: &str = "thread";
/// The label of [`CONNECTIONS_REFUSED`]: `limit`, `per_source`.
pub const REASON: &str = "reason";

/// Every metric the server exports under the `ringecho_` prefix, in the order it writes them.
pub const ALL: &[Metric] = &[
    CONNECTIONS_ACCEPTED,
    THREAD_CONNECTIONS_ACCEPTED,
    CONNECTIONS_REJECTED,
    CONNECTIONS_REFUSED,
    CONNECTIONS_EVICTED,
    CONNECTIONS_ACTIVE,
    BYTES_ECHOED,
    RECEIVES_ECHOED,
    MESSAGES_ECHOED,
    ACCEPT_ERRORS,
    CLOSES,
    CONNECTION_ERRORS,
    SENDS,
    SEND_BUFFERS,
    RECV_COMPLETIONS,
    RECV_BUFFERS,
    BUFFERS_HELD,
    PROCESS_CPU_SECONDS_TOTAL,
];

/// The name a counter's samples carry in the text format: `NAME_total`.
pub fn total(counter: &str) -> String {
    format!("{counter}_total")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_read_with_total_appended() {
        assert_eq!(CLOSES.exposed(), "ringecho_closes_total");
        assert_eq!(RECEIVES_ECHOED.exposed(), "ringecho_receives_echoed_total");
        assert_eq!(
            PROCESS_CPU_SECONDS_TOTAL.exposed(),
            "ringecho_process_cpu_seconds_total"
        );
        assert_eq!(CONNECTIONS_ACTIVE.exposed(), "ringecho_connections_active");
    }

    #[test]
    fn names_are_unique_and_prefixed() {
        let mut names: Vec<&str> = ALL.iter().map(|m| m.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
        assert!(ALL.iter().all(|m| m.name.starts_with("ringecho_")));
    }
}
