//! The seed's three `SetLinger(sec)` modes, as Linux carries them out, and the case where
//! they differ: a close with data still unacknowledged because the peer has stopped reading.
//!
//! - `sec < 0` (the default): `close()` returns at once; the kernel goes on sending in the
//!   background and ends with a FIN once the data is delivered.
//! - `sec == 0`: `close()` aborts: one RST, whatever is unsent or unacknowledged discarded.
//! - `sec > 0`: `close()` blocks until the data is acknowledged or `sec` seconds pass, then
//!   carries on as the default would: on Linux nothing is discarded, and the peer still
//!   gets every byte and a FIN.
//!
//! [`stalled_close`] stages it: a peer of its own (in this process, on a small receive
//! buffer) accepts and does not read for a while; the client writes until its send buffer
//! is full, closes in the mode asked, and reports how long `close()` took and what the peer
//! received once it read again.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use socket2::{Domain, SockRef, Socket, Type};

/// How `close()` ends a connection: SO_LINGER as Go's `SetLinger(sec)` sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Linger {
    /// `sec < 0`: SO_LINGER off, the default.
    Default,
    /// `sec == 0`: abort with RST.
    Abort,
    /// `sec > 0`: block in `close()` up to this many seconds.
    Seconds(u32),
}

impl Linger {
    /// `sec` as Go's `SetLinger` reads it.
    pub fn from_secs(sec: i64) -> Self {
        match sec {
            s if s < 0 => Linger::Default,
            0 => Linger::Abort,
            s => Linger::Seconds(s.min(i64::from(u32::MAX)) as u32),
        }
    }

    /// Parses `--linger SECS`: any whole number.
    pub fn parse(s: &str) -> Result<Self, String> {
        s.trim()
            .parse::<i64>()
            .map(Linger::from_secs)
            .map_err(|_| format!("'{s}' is not a whole number of seconds (negative: the default)"))
    }

    /// The value `SetLinger` would be given.
    pub fn secs(self) -> i64 {
        match self {
            Linger::Default => -1,
            Linger::Abort => 0,
            Linger::Seconds(s) => i64::from(s),
        }
    }

    /// Sets SO_LINGER on `s` for this mode.
    pub fn apply(self, s: &TcpStream) -> io::Result<()> {
        SockRef::from(s).set_linger(match self {
            Linger::Default => None,
            Linger::Abort => Some(Duration::ZERO),
            Linger::Seconds(n) => Some(Duration::from_secs(u64::from(n))),
        })
    }
}

impl fmt::Display for Linger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Linger::Default => {
                f.write_str("linger -1 (the default: close returns, the kernel sends on)")
            }
            Linger::Abort => f.write_str("linger 0 (abort: RST)"),
            Linger::Seconds(n) => write!(f, "linger {n} (close blocks up to {n} s)"),
        }
    }
}

/// Closes `s` (a blocking socket) and times the `close()` itself, with its result (std's
/// drop discards it).
pub fn timed_close(s: TcpStream) -> (Duration, io::Result<()>) {
    let fd = std::os::fd::OwnedFd::from(s);
    let t0 = Instant::now();
    let res = ringecho_common::close_with_result(fd);
    (t0.elapsed(), res)
}

/// How the peer's reading ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerEnd {
    /// End of stream: the client's FIN, after every byte.
    Fin,
    /// ECONNRESET: the client's RST.
    Reset,
    /// Anything else, as text.
    Error(String),
}

impl fmt::Display for PeerEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerEnd::Fin => f.write_str("FIN"),
            PeerEnd::Reset => f.write_str("RST (ECONNRESET)"),
            PeerEnd::Error(e) => write!(f, "error: {e}"),
        }
    }
}

/// What a stalled close did.
#[derive(Debug, Clone)]
pub struct Stalled {
    /// The mode.
    pub linger: Linger,
    /// Bytes the client wrote before closing (all the send buffer and the peer's window took).
    pub written: usize,
    /// How long `close()` took.
    pub close_took: Duration,
    /// What `close()` returned.
    pub close_result: Result<(), String>,
    /// Bytes the peer read once it read again.
    pub peer_read: usize,
    /// Whether those bytes were exactly what was written, in order.
    pub peer_exact: bool,
    /// How the peer's reading ended.
    pub peer_end: PeerEnd,
    /// How long the peer did not read after accepting.
    pub hold: Duration,
}

impl fmt::Display for Stalled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.linger)?;
        writeln!(
            f,
            "  wrote {} bytes while the peer did not read, then closed",
            self.written
        )?;
        let result = match &self.close_result {
            Ok(()) => "0".to_string(),
            Err(e) => e.clone(),
        };
        writeln!(
            f,
            "  close() returned {result} after {:.1} ms",
            self.close_took.as_secs_f64() * 1e3
        )?;
        writeln!(
            f,
            "  the peer read again after {:.1} s: {} of {} bytes{}, then {}",
            self.hold.as_secs_f64(),
            self.peer_read,
            self.written,
            if self.peer_exact { ", exact" } else { "" },
            self.peer_end
        )
    }
}

impl Stalled {
    /// What this mode must have done, checked: `Ok` with a sentence, or `Err` saying what
    /// differed. Generous about time (a close "at once" took under a second; a lingering
    /// one blocked at least half a second while the peer was not reading, and returned
    /// within its seconds and 5 s more), exact about bytes and how the stream ended.
    pub fn check(&self) -> Result<String, String> {
        let at_once = self.close_took < Duration::from_secs(1);
        let all = self.peer_read == self.written && self.peer_exact;
        let ms = self.close_took.as_secs_f64() * 1e3;
        match self.linger {
            Linger::Default if at_once && all && self.peer_end == PeerEnd::Fin => Ok(format!(
                "close() returned at once ({ms:.1} ms); the kernel sent all {} bytes once the peer read, then FIN",
                self.written
            )),
            Linger::Abort if at_once && self.peer_end == PeerEnd::Reset && self.peer_read < self.written => Ok(format!(
                "close() returned at once ({ms:.1} ms) and sent RST; {} of {} bytes were discarded",
                self.written - self.peer_read,
                self.written
            )),
            Linger::Seconds(n)
                if self.close_took >= Duration::from_millis(500)
                    && self.close_took <= Duration::from_secs(u64::from(n) + 5)
                    && all
                    && self.peer_end == PeerEnd::Fin =>
            {
                Ok(format!(
                    "close() blocked {ms:.0} ms (up to {n} s, while the data was unacknowledged); nothing was discarded: all {} bytes, then FIN",
                    self.written
                ))
            }
            _ => Err(format!(
                "{}: unexpected: close() took {ms:.1} ms; the peer read {} of {} bytes (exact: {}), then {}",
                self.linger, self.peer_read, self.written, self.peer_exact, self.peer_end
            )),
        }
    }
}

/// The byte at offset `i` of what the client writes: a pattern the peer checks.
fn pattern(i: usize) -> u8 {
    (i % 251) as u8
}

/// A listener on `listen` whose accepted sockets have a small receive buffer (set before
/// the handshake, so the window is small from the start).
fn small_window_listener(listen: SocketAddr) -> io::Result<TcpListener> {
    let s = Socket::new(Domain::for_address(listen), Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    s.set_recv_buffer_size(4096)?;
    s.bind(&listen.into())?;
    s.listen(1)?;
    Ok(s.into())
}

/// Stages one stalled close in mode `linger`: a peer on `listen` (port 0: any) that does not
/// read for `hold`, a client that fills its send buffer and closes.
pub fn stalled_close(linger: Linger, hold: Duration, listen: SocketAddr) -> io::Result<Stalled> {
    let listener = small_window_listener(listen)?;
    let addr = listener.local_addr()?;
    let peer = std::thread::spawn(move || -> io::Result<(usize, bool, PeerEnd)> {
        let (mut s, _) = listener.accept()?;
        std::thread::sleep(hold);
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut buf = vec![0u8; 64 << 10];
        let (mut read, mut exact) = (0usize, true);
        let end = loop {
            match s.read(&mut buf) {
                Ok(0) => break PeerEnd::Fin,
                Ok(n) => {
                    exact &= buf[..n]
                        .iter()
                        .enumerate()
                        .all(|(k, &b)| b == pattern(read + k));
                    read += n;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break PeerEnd::Reset,
                Err(e) => break PeerEnd::Error(e.to_string()),
            }
        };
        Ok((read, exact, end))
    });
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    s.set_send_buffer_size(16 << 10)?;
    s.connect(&addr.into())?;
    let mut client: TcpStream = s.into();
    client.set_nodelay(true)?;
    // Write until the send buffer stays full for a while: the peer's window is closed, and
    // the rest sits unacknowledged in our send queue.
    client.set_nonblocking(true)?;
    let mut written = 0usize;
    let mut last_progress = Instant::now();
    let mut out = vec![0u8; 4096];
    while last_progress.elapsed() < Duration::from_millis(200) {
        for (k, b) in out.iter_mut().enumerate() {
            *b = pattern(written + k);
        }
        match client.write(&out) {
            Ok(n) => {
                written += n;
                last_progress = Instant::now();
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(e),
        }
    }
    client.set_nonblocking(false)?;
    linger.apply(&client)?;
    let (close_took, close_result) = timed_close(client);
    let (peer_read, peer_exact, peer_end) = peer
        .join()
        .map_err(|_| io::Error::other("the peer's thread panicked"))??;
    Ok(Stalled {
        linger,
        written,
        close_took,
        close_result: close_result.map_err(|e| e.to_string()),
        peer_read,
        peer_exact,
        peer_end,
        hold,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_read_as_go_reads_them() {
        assert_eq!(Linger::parse("-1"), Ok(Linger::Default));
        assert_eq!(Linger::parse("-30"), Ok(Linger::Default));
        assert_eq!(Linger::parse("0"), Ok(Linger::Abort));
        assert_eq!(Linger::parse("5"), Ok(Linger::Seconds(5)));
        assert!(Linger::parse("5s").is_err());
        assert_eq!(Linger::Seconds(5).secs(), 5);
        assert_eq!(Linger::Default.secs(), -1);
    }

    fn stalled(linger: Linger, took_ms: u64, read: usize, end: PeerEnd) -> Stalled {
        Stalled {
            linger,
            written: 30720,
            close_took: Duration::from_millis(took_ms),
            close_result: Ok(()),
            peer_read: read,
            peer_exact: true,
            peer_end: end,
            hold: Duration::from_secs(3),
        }
    }

    #[test]
    fn each_mode_is_checked_by_what_it_did() {
        assert!(stalled(Linger::Default, 0, 30720, PeerEnd::Fin)
            .check()
            .is_ok());
        assert!(stalled(Linger::Default, 2000, 30720, PeerEnd::Fin)
            .check()
            .is_err());
        assert!(stalled(Linger::Default, 0, 4096, PeerEnd::Fin)
            .check()
            .is_err());
        assert!(stalled(Linger::Abort, 0, 4096, PeerEnd::Reset)
            .check()
            .is_ok());
        assert!(stalled(Linger::Abort, 0, 30720, PeerEnd::Fin)
            .check()
            .is_err());
        assert!(stalled(Linger::Seconds(2), 2003, 30720, PeerEnd::Fin)
            .check()
            .is_ok());
        assert!(stalled(Linger::Seconds(2), 1, 30720, PeerEnd::Fin)
            .check()
            .is_err());
        assert!(stalled(Linger::Seconds(2), 2003, 30720, PeerEnd::Reset)
            .check()
            .is_err());
    }
}
