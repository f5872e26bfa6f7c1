//! ringecho-client: the seed's demo client. Connects, sends a message (or several), logs each
//! echo, and closes after a delay: with FIN (shutdown, then wait for the server's FIN) or, with
//! `--linger0`, with a single RST (SO_LINGER=0 makes close() abort the connection).
//!
//! [`capture`] reads a tcpdump of such a session and says what each segment was.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod capture;
pub mod linger;

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use ringecho_common::{parse_duration, parse_duration_or_zero, HostPort};

pub use linger::Linger;

/// `ringecho-client`: send a message, print the echo, close with FIN or RST.
#[derive(Debug, Parser)]
#[command(
    name = "ringecho-client",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// A subcommand, or none for a session.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The session.
    #[command(flatten)]
    pub session: Session,
    /// Print a man page or shell completions for this program, then exit.
    #[arg(long, value_enum, value_name = "WHAT")]
    pub generate: Option<ringecho_common::Generate>,
}

/// Subcommands besides a session.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Annotates a `tcpdump -S -nn` text capture of a session with the server on PORT.
    ExplainCapture {
        /// The server's port.
        #[arg(long)]
        port: u16,
        /// The capture (tcpdump's text output).
        file: std::path::PathBuf,
        /// Check it as a `stalled-close` in this mode (the peer on PORT): its FIN or RST,
        /// its zero window; exits 1 if it differs.
        #[arg(long, value_name = "SECS", allow_hyphen_values = true, value_parser = Linger::parse)]
        stalled: Option<Linger>,
    },
    /// The seed's SetLinger modes where they differ: a peer of this command's own stops
    /// reading, the client fills its send buffer and closes in each mode; prints how long
    /// close() took and what the peer received when it read again.
    StalledClose {
        /// The modes to run, SetLinger's seconds: negative is the default, 0 an RST, N > 0
        /// a close that blocks up to N s.
        #[arg(long, default_value = "-1,0,2", value_delimiter = ',', allow_hyphen_values = true, value_parser = Linger::parse)]
        linger: Vec<Linger>,
        /// How long the peer does not read after accepting.
        #[arg(long, default_value = "3s", value_parser = parse_duration)]
        hold: Duration,
        /// Where the peer listens (a fixed port lets tcpdump filter on it).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
    },
}

/// One demo session.
#[derive(Debug, Clone, Args)]
pub struct Session {
    /// Server address, HOST:PORT; a host name is resolved and every address tried in turn.
    #[arg(long, default_value = "127.0.0.1:8000", value_parser = HostPort::parse, value_name = "HOST:PORT")]
    pub addr: HostPort,
    /// What to send.
    #[arg(long, default_value = "Hi, gopher?")]
    pub message: String,
    /// How many times to send it.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub count: u32,
    /// Pause between sends (0s: none).
    #[arg(long, default_value = "0s", value_parser = parse_duration_or_zero)]
    pub interval: Duration,
    /// Wait this long after the last echo before closing (0s: close at once).
    #[arg(long, default_value = "0s", value_parser = parse_duration_or_zero)]
    pub close_after: Duration,
    /// Close with SO_LINGER=0: the kernel sends one RST instead of the FIN handshake (the
    /// same as `--linger 0`).
    #[arg(long, conflicts_with = "linger")]
    pub linger0: bool,
    /// SetLinger's seconds for the close: negative is the default (FIN; close returns at
    /// once), 0 an RST, N > 0 a close that blocks until the data is acknowledged or N s pass.
    #[arg(long, value_name = "SECS", allow_hyphen_values = true, value_parser = Linger::parse)]
    pub linger: Option<Linger>,
    /// Give up on connecting or on an echo after this long.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// Connects to the first of `target`'s addresses that accepts, as a client should when a
/// name resolves to several (IPv6 and IPv4, say).
fn connect(target: &HostPort, timeout: Duration) -> Result<TcpStream, ClientError> {
    let mut last = None;
    for a in &target.addrs {
        match TcpStream::connect_timeout(a, timeout) {
            Ok(s) => return Ok(s),
            Err(e) => {
                tracing::debug!("cannot connect to {a}: {e}");
                last = Some(e);
            }
        }
    }
    Err(ClientError::Connect(
        target.text.clone(),
        last.unwrap_or_else(|| io::Error::other("no address")),
    ))
}

/// Why a session failed.
#[derive(Debug)]
pub enum ClientError {
    /// Could not connect.
    Connect(String, io::Error),
    /// The server closed before echoing everything.
    ClosedEarly {
        /// Bytes echoed before the close.
        echoed: usize,
        /// Bytes sent.
        expected: usize,
    },
    /// The echo differs from what was sent.
    WrongEcho {
        /// The message sent.
        sent: String,
        /// What came back.
        got: String,
    },
    /// Any other I/O failure, with what was being done.
    Io(&'static str, io::Error),
    /// A capture file that cannot be read or holds no segment of the port.
    Capture(String),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Connect(a, e) => write!(f, "cannot connect to {a}: {e}"),
            ClientError::ClosedEarly { echoed, expected } => write!(
                f,
                "the server closed the connection after echoing {echoed} of {expected} bytes"
            ),
            ClientError::WrongEcho { sent, got } => write!(f, "sent {sent:?} but got back {got:?}"),
            ClientError::Io(what, e) => write!(f, "{what}: {e}"),
            ClientError::Capture(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for ClientError {}

/// What a session did, for callers and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The local address the session used.
    pub local: SocketAddr,
    /// Echoes received and checked.
    pub echoes: u32,
    /// Whether it closed with RST.
    pub reset: bool,
    /// How long `close()` itself took.
    pub close_took: Duration,
}

impl Session {
    /// The close mode: `--linger`, or `--linger0`, or the default.
    pub fn close_mode(&self) -> Linger {
        match (self.linger, self.linger0) {
            (Some(l), _) => l,
            (None, true) => Linger::Abort,
            (None, false) => Linger::Default,
        }
    }
}

/// Runs one session as the flags describe.
pub fn run(s: &Session) -> Result<Report, ClientError> {
    let mut stream = connect(&s.addr, s.timeout)?;
    let io = |what| move |e| ClientError::Io(what, e);
    stream.set_nodelay(true).map_err(io("set TCP_NODELAY"))?;
    stream
        .set_read_timeout(Some(s.timeout))
        .map_err(io("set a read timeout"))?;
    let local = stream.local_addr().map_err(io("read the local address"))?;
    let peer = stream.peer_addr().map_err(io("read the peer's address"))?;
    tracing::info!("TCP session open ({local} -> {peer})");
    let msg = s.message.as_bytes();
    let mut back = vec![0u8; msg.len()];
    for i in 0..s.count {
        if i > 0 {
            std::thread::sleep(s.interval);
        }
        stream.write_all(msg).map_err(io("send"))?;
        read_echo(&mut stream, &mut back)?;
        if back != msg {
            return Err(ClientError::WrongEcho {
                sent: s.message.clone(),
                got: String::from_utf8_lossy(&back).into_owned(),
            });
        }
        tracing::info!(
            "Reading data from server: {}",
            String::from_utf8_lossy(&back)
        );
    }
    std::thread::sleep(s.close_after);
    let mode = s.close_mode();
    mode.apply(&stream).map_err(io("set SO_LINGER"))?;
    if mode != Linger::Abort {
        // Half-close, then wait for the server's FIN: the whole four-way close, observed.
        stream.shutdown(Shutdown::Write).map_err(io("send FIN"))?;
        let mut rest = [0u8; 64];
        let n = stream
            .read(&mut rest)
            .map_err(io("wait for the server's FIN"))?;
        if n != 0 {
            return Err(ClientError::Io(
                "wait for the server's FIN",
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    "unexpected data after the echoes",
                ),
            ));
        }
    }
    let (close_took, closed) = linger::timed_close(stream);
    closed.map_err(io("close"))?;
    let ms = close_took.as_secs_f64() * 1e3;
    match mode {
        Linger::Abort => {
            tracing::info!(
                "closed with SO_LINGER=0: one RST, no FIN, no TIME_WAIT (close() took {ms:.2} ms)"
            )
        }
        Linger::Default => tracing::info!(
            "closed with FIN; the server answered with its FIN (close() took {ms:.2} ms)"
        ),
        Linger::Seconds(n) => tracing::info!(
            "closed with FIN under SO_LINGER {n} s; nothing was unacknowledged, so close() \
             took {ms:.2} ms (ringecho-client stalled-close shows it blocking)"
        ),
    }
    Ok(Report {
        local,
        echoes: s.count,
        reset: mode == Linger::Abort,
        close_took,
    })
}

fn read_echo(stream: &mut TcpStream, buf: &mut [u8]) -> Result<(), ClientError> {
    let mut got = 0;
    while got < buf.len() {
        match stream.read(&mut buf[got..]) {
            Ok(0) => {
                return Err(ClientError::ClosedEarly {
                    echoed: got,
                    expected: buf.len(),
                })
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ClientError::Io("read the echo", e)),
        }
    }
    Ok(())
}

/// Runs the command line (a session, or `explain-capture`); the binary maps the error to
/// its exit code.
pub fn run_cli(cli: &Cli) -> Result<(), ClientError> {
    match &cli.command {
        Some(Command::ExplainCapture {
            port,
            file,
            stalled,
        }) => {
            let text = std::fs::read_to_string(file).map_err(|e| {
                ClientError::Capture(format!("cannot read {}: {e}", file.display()))
            })?;
            let cap = capture::Capture::parse(&text, *port);
            if cap.segments.is_empty() {
                return Err(ClientError::Capture(format!(
                    "{} holds no TCP segment to or from port {port}: is it `tcpdump -n -S` \
                     text output of that port?",
                    file.display()
                )));
            }
            print!("{}", cap.explain());
            match stalled.map(|mode| cap.check_stalled(mode)) {
                None => Ok(()),
                Some(Ok(says)) => {
                    println!("check: {says}");
                    Ok(())
                }
                Some(Err(why)) => Err(ClientError::Capture(format!("check FAILED: {why}"))),
            }
        }
        Some(Command::StalledClose {
            linger,
            hold,
            listen,
        }) => {
            let mut failed = Vec::new();
            for &mode in linger {
                let r = linger::stalled_close(mode, *hold, *listen)
                    .map_err(|e| ClientError::Io("stage a stalled close", e))?;
                print!("{r}");
                match r.check() {
                    Ok(says) => println!("  check: {says}"),
                    Err(why) => {
                        println!("  check FAILED: {why}");
                        failed.push(why);
                    }
                }
            }
            match failed.is_empty() {
                true => Ok(()),
                false => Err(ClientError::Capture(failed.join("; "))),
            }
        }
        None => run(&cli.session).map(drop),
    }
}
