//! Reading a `tcpdump -S -nn` text capture of one client session: which side sent what,
//! so the FIN four-way close and the single RST can be checked, not just looked at.

use std::fmt::Write as _;

/// One TCP segment from the capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Sent by the client (not from the server's port).
    pub from_client: bool,
    /// tcpdump's flags: S (SYN), F (FIN), R (RST), P (PUSH), . (ACK).
    pub flags: String,
    /// Payload bytes.
    pub len: usize,
    /// The line as tcpdump printed it.
    pub line: String,
}

impl Segment {
    /// A SYN (handshake).
    pub fn syn(&self) -> bool {
        self.flags.contains('S')
    }
    /// A FIN: the sender has no more to send.
    pub fn fin(&self) -> bool {
        self.flags.contains('F')
    }
    /// An RST: the connection is aborted.
    pub fn rst(&self) -> bool {
        self.flags.contains('R')
    }
    /// Carries an acknowledgement.
    pub fn ack(&self) -> bool {
        self.flags.contains('.')
    }
}

/// A parsed capture of sessions with the server on one port.
#[derive(Debug, Clone, Default)]
pub struct Capture {
    /// The segments in capture order.
    pub segments: Vec<Segment>,
}

impl Capture {
    /// Parses tcpdump's text output, keeping the TCP segments to or from `server_port`.
    pub fn parse(text: &str, server_port: u16) -> Self {
        let port = format!(".{server_port}");
        let segments = text
            .lines()
            .filter_map(|line| {
                let (_, rest) = line
                    .split_once(" IP ")
                    .or_else(|| line.split_once(" IP6 "))?;
                let (src, rest) = rest.split_once(" > ")?;
                let (dst, rest) = rest.split_once(": ")?;
                if !src.ends_with(&port) && !dst.ends_with(&port) {
                    return None;
                }
                let flags = rest.split_once("Flags [")?.1.split_once(']')?.0.to_string();
                let len = rest
                    .rsplit_once("length ")?
                    .1
                    .split(|c: char| !c.is_ascii_digit())
                    .next()?
                    .parse()
                    .ok()?;
                Some(Segment {
                    from_client: !src.ends_with(&port),
                    flags,
                    len,
                    line: line.to_string(),
                })
            })
            .collect();
        Capture { segments }
    }

    /// Payload lengths sent by one side, in order.
    pub fn data_lengths(&self, from_client: bool) -> Vec<usize> {
        self.segments
            .iter()
            .filter(|s| s.from_client == from_client && s.len > 0)
            .map(|s| s.len)
            .collect()
    }

    /// Segments with FIN from one side.
    pub fn fins(&self, from_client: bool) -> usize {
        self.segments
            .iter()
            .filter(|s| s.from_client == from_client && s.fin())
            .count()
    }

    /// Segments with RST from one side.
    pub fn rsts(&self, from_client: bool) -> usize {
        self.segments
            .iter()
            .filter(|s| s.from_client == from_client && s.rst())
            .count()
    }

    /// Whether the capture opens with SYN, SYN-ACK, ACK.
    pub fn has_handshake(&self) -> bool {
        matches!(self.segments.as_slice(),
            [a, b, c, ..] if a.from_client && a.syn() && !a.ack()
                && !b.from_client && b.syn() && b.ack()
                && c.from_client && !c.syn() && c.ack())
    }

    /// Whether one side advertised a zero window (it stopped reading, its buffer full).
    pub fn zero_window(&self, from_client: bool) -> bool {
        self.segments
            .iter()
            .any(|s| s.from_client == from_client && s.line.contains(" win 0,"))
    }

    /// Checks a `ringecho-client stalled-close` capture in mode `linger` (the client is the
    /// side that wrote; the peer, which stopped reading, is on the port): the peer's zero
    /// window, then for the default and a positive linger one FIN from the client after all
    /// its data and no RST, for 0 an RST from the client and no FIN from it.
    pub fn check_stalled(&self, linger: crate::Linger) -> Result<String, String> {
        if !self.has_handshake() {
            return Err("no handshake in the capture".into());
        }
        if !self.zero_window(false) {
            return Err("the peer never advertised a zero window: it did not stall".into());
        }
        let data: usize = self.data_lengths(true).iter().sum();
        let last_data = self
            .segments
            .iter()
            .rposition(|s| s.from_client && s.len > 0);
        let fin_at = self.segments.iter().position(|s| s.from_client && s.fin());
        let (fins, rsts) = (self.fins(true), self.rsts(true));
        match linger {
            crate::Linger::Abort if rsts >= 1 && fins == 0 => Ok(format!(
                "{data} bytes of data, the peer's window closed, then the client's RST and no FIN: the rest was discarded"
            )),
            crate::Linger::Default | crate::Linger::Seconds(_)
                if fins == 1 && rsts == 0 && fin_at >= last_data =>
            {
                Ok(format!(
                    "{data} bytes of data, the peer's window closed, the rest sent as it reopened, then the client's FIN after the last byte; no RST"
                ))
            }
            _ => Err(format!(
                "{linger}: client FIN {fins}, RST {rsts}, {data} bytes of data; FIN at segment {fin_at:?}, last data at {last_data:?}"
            )),
        }
    }

    /// The capture with each segment named, and a verdict on how the session closed.
    pub fn explain(&self) -> String {
        let mut out = String::new();
        let mut fin_seen = false;
        for (i, s) in self.segments.iter().enumerate() {
            let who = if s.from_client { "client" } else { "server" };
            let what = if i < 3 && self.has_handshake() {
                [
                    "handshake 1/3: SYN",
                    "handshake 2/3: SYN-ACK",
                    "handshake 3/3: ACK",
                ][i]
                    .to_string()
            } else if s.rst() {
                "RST: connection aborted, no FIN exchange, no TIME_WAIT".into()
            } else if s.fin() {
                let n = if fin_seen { "second" } else { "first" };
                fin_seen = true;
                format!("{n} FIN: {who} has no more to send")
            } else if s.len > 0 {
                format!("data: {} bytes", s.len)
            } else {
                "ACK".into()
            };
            let _ = writeln!(out, "{:>2}. {who:<6} {what:<55} | {}", i + 1, s.line.trim());
        }
        let _ = writeln!(
            out,
            "summary: handshake {}; data client→server {:?}, server→client {:?}; FIN client {} server {}; RST client {} server {}",
            if self.has_handshake() { "complete" } else { "MISSING" },
            self.data_lengths(true),
            self.data_lengths(false),
            self.fins(true),
            self.fins(false),
            self.rsts(true),
            self.rsts(false),
        );
        let verdict = match (
            self.fins(true) + self.fins(false),
            self.rsts(true) + self.rsts(false),
        ) {
            (2, 0) => "closed by the FIN four-way exchange (FIN, ACK, FIN, ACK)",
            (0, 1) => "closed by a single RST from SO_LINGER=0",
            _ => "an unusual close: see the segments above",
        };
        let _ = writeln!(out, "verdict: {verdict}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIN_CAPTURE: &str = "\
10:00:00.000001 IP 127.0.0.1.50000 > 127.0.0.1.8000: Flags [S], seq 1, win 65495, options [mss 65495], length 0
10:00:00.000002 IP 127.0.0.1.8000 > 127.0.0.1.50000: Flags [S.], seq 9, ack 2, win 65483, options [mss 65495], length 0
10:00:00.000003 IP 127.0.0.1.50000 > 127.0.0.1.8000: Flags [.], ack 10, win 512, length 0
10:00:00.000004 IP 127.0.0.1.50000 > 127.0.0.1.8000: Flags [P.], seq 2:13, ack 10, win 512, length 11
10:00:00.000005 IP 127.0.0.1.8000 > 127.0.0.1.50000: Flags [.], ack 13, win 512, length 0
10:00:00.000006 IP 127.0.0.1.8000 > 127.0.0.1.50000: Flags [P.], seq 10:21, ack 13, win 512, length 11
10:00:00.000007 IP 127.0.0.1.50000 > 127.0.0.1.8000: Flags [.], ack 21, win 512, length 0
10:00:00.000008 IP 127.0.0.1.50000 > 127.0.0.1.8000: Flags [F.], seq 13, ack 21, win 512, length 0
10:00:00.000009 IP 127.0.0.1.8000 > 127.0.0.1.50000: Flags [F.], seq 21, ack 14, win 512, length 0
10:00:00.000010 IP 127.0.0.1.50000 > 127.0.0.1.8000: Flags [.], ack 22, win 512, length 0
";

    #[test]
    fn reads_a_fin_session() {
        let c = Capture::parse(FIN_CAPTURE, 8000);
        assert_eq!(c.segments.len(), 10);
        assert!(c.has_handshake());
        assert_eq!(c.data_lengths(true), vec![11]);
        assert_eq!(c.data_lengths(false), vec![11]);
        assert_eq!(
            (c.fins(true), c.fins(false), c.rsts(true) + c.rsts(false)),
            (1, 1, 0)
        );
        assert!(c.explain().contains("FIN four-way"));
    }

    #[test]
    fn ignores_other_ports_and_sees_rst() {
        let text = "10:00:00.1 IP 127.0.0.1.50000 > 127.0.0.1.8000: Flags [R.], seq 13, ack 21, win 512, length 0\n\
                    10:00:00.2 IP 127.0.0.1.1 > 127.0.0.1.2: Flags [R], seq 1, win 0, length 0\n";
        let c = Capture::parse(text, 8000);
        assert_eq!((c.rsts(true), c.rsts(false)), (1, 0));
        assert!(c.explain().contains("single RST"));
    }
}
