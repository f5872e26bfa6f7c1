//! What a server sets on the sockets it accepts: TCP_NODELAY (whose absence lets Nagle
//! coalesce a stream's small sends, a saving a comparison would credit to the I/O interface),
//! SO_SNDBUF, SO_RCVBUF and TCP_CORK, as data; how they are read from a running server is
//! `crate::run::sockopts`.

use serde::{Deserialize, Serialize};

/// The options read from one accepted socket.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SocketOptions {
    /// TCP_NODELAY.
    pub nodelay: Option<bool>,
    /// SO_SNDBUF, bytes (as the kernel reports it: twice what was set).
    pub sndbuf: Option<usize>,
    /// SO_RCVBUF, bytes.
    pub rcvbuf: Option<usize>,
    /// TCP_CORK.
    pub cork: Option<bool>,
    /// Why they could not be read, if they could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unknown: Option<String>,
}

impl SocketOptions {
    /// Options that could not be read, and why.
    pub fn unknown(why: impl Into<String>) -> Self {
        SocketOptions {
            unknown: Some(why.into()),
            ..Default::default()
        }
    }

    /// One line: `TCP_NODELAY on, SO_SNDBUF 2.5 MiB, …`, or `unknown (why)`.
    pub fn describe(&self) -> String {
        if let Some(why) = &self.unknown {
            return format!("unknown ({why})");
        }
        let on = |b: Option<bool>| match b {
            Some(true) => "on",
            Some(false) => "off",
            None => "?",
        };
        let kib = |n: Option<usize>| n.map_or("?".to_string(), |n| format!("{} KiB", n / 1024));
        format!(
            "TCP_NODELAY {}, TCP_CORK {}, SO_SNDBUF {}, SO_RCVBUF {}",
            on(self.nodelay),
            on(self.cork),
            kib(self.sndbuf),
            kib(self.rcvbuf)
        )
    }
}

/// The servers whose TCP_NODELAY differs from `baseline`'s, known on both sides.
pub fn differing<'a>(options: &'a [(String, SocketOptions)], baseline: &str) -> Vec<&'a str> {
    let Some(base) = options
        .iter()
        .find(|(n, _)| n == baseline)
        .and_then(|(_, o)| o.nodelay)
    else {
        return Vec::new();
    };
    options
        .iter()
        .filter(|(_, o)| o.nodelay.is_some_and(|n| n != base))
        .map(|(n, _)| n.as_str())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_differing_from_the_baseline_is_flagged() {
        let on = SocketOptions {
            nodelay: Some(true),
            ..Default::default()
        };
        let off = SocketOptions {
            nodelay: Some(false),
            ..Default::default()
        };
        let opts = vec![
            ("epoll-loop".to_string(), on.clone()),
            ("multishot".to_string(), on),
            ("liburing".to_string(), off),
            ("x".to_string(), SocketOptions::unknown("no rights")),
        ];
        assert_eq!(differing(&opts, "epoll-loop"), ["liburing"]);
        assert!(opts[3].1.describe().starts_with("unknown (no rights"));
    }
}
