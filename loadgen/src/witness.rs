//! Second and third opinions on how connections closed: the server's own counters (scraped
//! from its Prometheus endpoint) and the kernel's TCP counters.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The server's close counters, from `ringecho_closes_total{how=...}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerCloses {
    pub fin: u64,
    pub rst: u64,
    pub error: u64,
    pub server: u64,
}

impl ServerCloses {
    /// What happened between two scrapes.
    pub fn since(&self, before: &ServerCloses) -> ServerCloses {
        ServerCloses {
            fin: self.fin.saturating_sub(before.fin),
            rst: self.rst.saturating_sub(before.rst),
            error: self.error.saturating_sub(before.error),
            server: self.server.saturating_sub(before.server),
        }
    }

    /// Every close the server counted.
    pub fn total(&self) -> u64 {
        self.fin + self.rst + self.error + self.server
    }
}

/// Fetches `url` (http://HOST:PORT/PATH) with a plain HTTP/1.0 GET and returns the body.
pub fn http_get(url: &str, timeout: Duration) -> io::Result<String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("'{url}' is not an http:// URL"),
        )
    })?;
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/"), |(h, _)| (h, &rest[h.len()..]));
    let addr = host.to_socket_addrs()?.next().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("cannot resolve '{host}'"),
        )
    })?;
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n")?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let (head, body) = resp
        .split_once("\r\n\r\n")
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "malformed HTTP response"))?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        let status = head.lines().next().unwrap_or_default();
        return Err(io::Error::other(format!("{url} answered '{status}'")));
    }
    Ok(body.to_string())
}

/// Reads the close counters out of a Prometheus text exposition.
pub fn parse_closes(text: &str) -> io::Result<ServerCloses> {
    let mut c = ServerCloses::default();
    let mut seen = false;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("ringecho_closes_total{how=\"") else {
            continue;
        };
        let Some((how, value)) = rest.split_once("\"} ") else {
            continue;
        };
        let v: u64 = value.trim().parse().map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidData, format!("bad value in '{line}'"))
        })?;
        seen = true;
        match how {
            "fin" => c.fin = v,
            "rst" => c.rst = v,
            "error" => c.error = v,
            "server" => c.server = v,
            _ => {}
        }
    }
    if !seen {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "no ringecho_closes_total in the metrics",
        ));
    }
    Ok(c)
}

/// Scrapes a ringecho server's close counters.
pub fn scrape_closes(url: &str) -> io::Result<ServerCloses> {
    parse_closes(&http_get(url, Duration::from_secs(5))?)
}

/// The kernel's TCP counters that witness resets, read from /proc (system-wide, so exact only
/// inside a private network namespace).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelCounters {
    /// Tcp OutRsts: segments sent with RST.
    pub out_rsts: u64,
    /// Tcp EstabResets: connections reset from ESTABLISHED or CLOSE_WAIT.
    pub estab_resets: u64,
    /// TcpExt TCPAbortOnData: connections reset because data was unread at close.
    pub abort_on_data: u64,
    /// TcpExt TCPAbortOnClose: connections aborted by close with SO_LINGER=0 and the like.
    pub abort_on_close: u64,
}

impl KernelCounters {
    /// Reads the counters now; None where /proc does not have them.
    pub fn read() -> Option<KernelCounters> {
        let snmp = proc_table(&std::fs::read_to_string("/proc/net/snmp").ok()?, "Tcp:");
        let ext = proc_table(
            &std::fs::read_to_string("/proc/net/netstat").ok()?,
            "TcpExt:",
        );
        Some(KernelCounters {
            out_rsts: *snmp.get("OutRsts")?,
            estab_resets: *snmp.get("EstabResets")?,
            abort_on_data: *ext.get("TCPAbortOnData")?,
            abort_on_close: ext.get("TCPAbortOnClose").copied().unwrap_or(0),
        })
    }

    /// What happened between two readings.
    pub fn since(&self, before: &KernelCounters) -> KernelCounters {
        KernelCounters {
            out_rsts: self.out_rsts.saturating_sub(before.out_rsts),
            estab_resets: self.estab_resets.saturating_sub(before.estab_resets),
            abort_on_data: self.abort_on_data.saturating_sub(before.abort_on_data),
            abort_on_close: self.abort_on_close.saturating_sub(before.abort_on_close),
        }
    }
}

/// Parses the two-line "Prefix: names…" / "Prefix: values…" tables of /proc/net/{snmp,netstat}.
fn proc_table(text: &str, prefix: &str) -> BTreeMap<String, u64> {
    let mut lines = text.lines().filter(|l| l.starts_with(prefix));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return BTreeMap::new();
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .skip(1)
        .filter_map(|(n, v)| Some((n.to_string(), v.parse().ok()?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_closes_and_proc_tables() {
        let text = "# HELP x\nringecho_closes_total{how=\"fin\"} 7\nringecho_closes_total{how=\"rst\"} 3\nringecho_closes_total{how=\"error\"} 0\n";
        assert_eq!(
            parse_closes(text).unwrap(),
            ServerCloses {
                fin: 7,
                rst: 3,
                error: 0,
                server: 0
            }
        );
        assert!(parse_closes("nothing here").is_err());
        let t = proc_table("Tcp: RtoAlgorithm OutRsts\nTcp: 1 42\n", "Tcp:");
        assert_eq!(t["OutRsts"], 42);
        assert!(KernelCounters::read().is_some(), "Linux has these counters");
    }
}
