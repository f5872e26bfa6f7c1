//! What a run counts, in one type: each thread's tally keeps one, the report carries one
//! (its JSON keys are these fields'), and both merge through [`AddAssign`], so a new count
//! is added, summed and reported in one place.

use std::collections::BTreeMap;
use std::ops::AddAssign;

use serde::{Deserialize, Serialize};

/// Closes the loadgen initiated, and those the server made first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Closes {
    /// Closed by us with FIN.
    pub fin: u64,
    /// Closed by us with RST (SO_LINGER=0).
    pub rst: u64,
    /// The server closed or reset the connection while an echo was due.
    pub server: u64,
    /// Of `rst`: closes meant as FIN that went out as RST because received bytes were unread
    /// (a server that echoed more than it was sent).
    #[serde(default)]
    pub rst_unread: u64,
}

impl AddAssign<&Closes> for Closes {
    fn add_assign(&mut self, o: &Closes) {
        self.fin += o.fin;
        self.rst += o.rst;
        self.server += o.server;
        self.rst_unread += o.rst_unread;
    }
}

/// Messages, bytes, connects, closes and failures: everything a run adds up.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Counts {
    /// Measured messages.
    pub messages: u64,
    /// Measured bytes.
    pub bytes: u64,
    /// Every echo verified, measured or not (connect probes and warm-up too): what the
    /// server's counters should show for this loadgen.
    pub messages_total: u64,
    /// Bytes of those echoes.
    pub bytes_total: u64,
    /// Connections opened.
    pub connects: u64,
    /// How connections ended, as we saw it.
    pub closes: Closes,
    /// Failed connections by error kind.
    pub errors: BTreeMap<String, u64>,
    /// Echoed bytes that differed from what was sent.
    pub mismatches: u64,
}

impl Counts {
    /// Counts one failed connection of `kind`.
    pub fn error(&mut self, kind: impl Into<String>) {
        *self.errors.entry(kind.into()).or_default() += 1;
    }

    /// Failed connections of every kind.
    pub fn failed(&self) -> u64 {
        self.errors.values().sum()
    }
}

impl AddAssign<&Counts> for Counts {
    fn add_assign(&mut self, o: &Counts) {
        self.messages += o.messages;
        self.bytes += o.bytes;
        self.messages_total += o.messages_total;
        self.bytes_total += o.bytes_total;
        self.connects += o.connects;
        self.closes += &o.closes;
        for (k, v) in &o.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
        self.mismatches += o.mismatches;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_field_by_field_and_errors_by_kind() {
        let mut a = Counts {
            messages: 1,
            bytes: 2,
            messages_total: 3,
            bytes_total: 4,
            connects: 5,
            closes: Closes {
                fin: 6,
                rst: 7,
                server: 8,
                rst_unread: 9,
            },
            mismatches: 10,
            ..Counts::default()
        };
        a.error("reset");
        let mut b = a.clone();
        b.error("timed_out");
        a += &b;
        assert_eq!(
            (
                a.messages,
                a.bytes,
                a.messages_total,
                a.bytes_total,
                a.connects
            ),
            (2, 4, 6, 8, 10)
        );
        assert_eq!(
            a.closes,
            Closes {
                fin: 12,
                rst: 14,
                server: 16,
                rst_unread: 18
            }
        );
        assert_eq!(a.mismatches, 20);
        assert_eq!(a.errors.get("reset"), Some(&2));
        assert_eq!(a.errors.get("timed_out"), Some(&1));
        assert_eq!(a.failed(), 3);
    }

    /// The report's JSON keeps the keys it had before the counts were one type.
    #[test]
    fn counts_serialise_under_the_report_keys() {
        let v = serde_json::to_value(Counts::default()).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        for k in [
            "messages",
            "bytes",
            "messages_total",
            "bytes_total",
            "connects",
            "closes",
            "errors",
            "mismatches",
        ] {
            assert!(keys.contains(&k), "{k} missing from {keys:?}");
        }
    }
}
