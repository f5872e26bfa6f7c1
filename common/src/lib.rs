//! What the server, the loadgen and the client all need, kept small so that depending on it
//! pulls in no I/O backend: the open-file limit, the core count, durations, error labels,
//! `HOST:PORT` resolution, logging set-up, and generated completions and man pages.

#![warn(missing_docs)]
#![deny(unsafe_code)]

pub mod metric;
pub mod perf;
pub mod procfs;

use std::io::{self, IsTerminal};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// Raises RLIMIT_NOFILE's soft limit to its hard limit: each connection is a descriptor, and
/// the usual soft limit (1024) is far below the thousands of connections a load test opens.
/// Returns the (old, new) soft limits.
#[allow(unsafe_code)]
pub fn raise_nofile_limit() -> io::Result<(u64, u64)> {
    let mut lim = nofile_limit()?;
    let old = lim.rlim_cur;
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: setrlimit reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok((old, lim.rlim_cur))
}

/// Closes `fd` and returns what close(2) said, which dropping an `OwnedFd` discards: a
/// socket's lingering close (SO_LINGER) blocks in this call, and could report an error.
#[allow(unsafe_code)]
pub fn close_with_result(fd: std::os::fd::OwnedFd) -> io::Result<()> {
    use std::os::fd::IntoRawFd;
    let raw = fd.into_raw_fd();
    // SAFETY: `raw` came out of an OwnedFd just now, so nothing else owns or closes it; it is
    // closed exactly once, here.
    if unsafe { libc::close(raw) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// RLIMIT_NOFILE as it stands (soft and hard).
#[allow(unsafe_code)]
pub(crate) fn nofile_limit() -> io::Result<libc::rlimit> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass; no other memory is touched.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(lim)
}

/// The CPUs this thread may run on (its affinity mask), in ascending order: what `--pin`
/// assigns threads from, so pinning respects `taskset` and cgroup limits.
#[allow(unsafe_code)]
pub fn allowed_cores() -> io::Result<Vec<usize>> {
    // SAFETY: cpu_set_t is plain bits; zeroed is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: sched_getaffinity writes at most the size we pass into the set we own.
    if unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) } != 0
    {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: CPU_ISSET reads the set; i is below CPU_SETSIZE.
    let cores: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
        .filter(|&i| unsafe { libc::CPU_ISSET(i, &set) })
        .collect();
    if cores.is_empty() {
        return Err(io::Error::other("the affinity mask is empty"));
    }
    Ok(cores)
}

/// Pins the calling thread to one CPU.
#[allow(unsafe_code)]
pub fn pin_to_core(core: usize) -> io::Result<()> {
    // SAFETY: cpu_set_t is plain bits; zeroed is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    if core >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "no such CPU"));
    }
    // SAFETY: core is below CPU_SETSIZE (checked), so CPU_SET writes inside the set.
    unsafe { libc::CPU_SET(core, &mut set) };
    // SAFETY: sched_setaffinity reads the set we own; pid 0 is the calling thread.
    if unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The cores this process may run on: the default thread count of every ringecho program.
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// How every ringecho program and script reads a duration: a number with a unit, as
/// humantime reads it (`500ms`, `5s`, `2m`, `1h 30m`), or a bare number of seconds (`3`,
/// `0.5`). Zero is refused: a timeout, an interval or a measured window of zero is a
/// mistake. Settings where zero means "none" (a `0s` warm-up, no pause between sends) take
/// [`parse_duration_or_zero`] and say so.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = parse_duration_or_zero(s)?;
    if d.is_zero() {
        return Err(format!("'{s}' is zero; give a duration greater than zero"));
    }
    Ok(d)
}

/// Reads a duration as [`parse_duration`] does, zero included.
pub fn parse_duration_or_zero(s: &str) -> Result<Duration, String> {
    if let Ok(secs) = s.trim().parse::<f64>() {
        return Duration::try_from_secs_f64(secs)
            .map_err(|_| format!("'{s}' is not a duration: seconds must be finite, 0 or more"));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("'{s}' is not a duration: {e} (e.g. 500ms, 5s, 2m)"))
}

/// A stable snake_case label for an error kind (`TimedOut` → `timed_out`).
pub fn error_kind_label(kind: io::ErrorKind) -> String {
    let name = format!("{kind:?}");
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Resolves `HOST:PORT` (a literal IPv4 or `[IPv6]` address, or a host name) to every
/// address it names, in the resolver's order.
pub fn resolve_all(s: &str) -> Result<Vec<SocketAddr>, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(vec![a]);
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(format!("'{s}' is not HOST:PORT (e.g. localhost:8000)"));
    };
    if port.parse::<u16>().is_err() {
        return Err(format!("'{port}' in '{s}' is not a port number"));
    }
    let addrs: Vec<SocketAddr> = s
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve host '{host}': {e}"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("host '{host}' has no address"));
    }
    Ok(addrs)
}

/// `HOST:PORT` as given on a command line, and every address it names: what `--addr` and
/// `--listen` take in all three programs, so a host name means the same everywhere (the
/// server listens on every address, the client and the loadgen try each in turn).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    /// As given, for messages.
    pub text: String,
    /// In the resolver's order, without repeats; never empty.
    pub addrs: Vec<SocketAddr>,
}

impl HostPort {
    /// Resolves `HOST:PORT` now: a clap value parser.
    pub fn parse(s: &str) -> Result<HostPort, String> {
        let mut addrs = resolve_all(s)?;
        let mut seen = std::collections::HashSet::new();
        addrs.retain(|a| seen.insert(*a));
        Ok(HostPort {
            text: s.to_string(),
            addrs,
        })
    }

    /// One literal address.
    pub fn one(addr: SocketAddr) -> HostPort {
        HostPort {
            text: addr.to_string(),
            addrs: vec![addr],
        }
    }

    /// The addresses, for messages: `[::1]:8000, 127.0.0.1:8000`.
    pub fn list(&self) -> String {
        let v: Vec<String> = self.addrs.iter().map(|a| a.to_string()).collect();
        v.join(", ")
    }
}

impl std::fmt::Display for HostPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// Sets up logging to stderr at `default` level (RUST_LOG overrides), with colour only when
/// stderr is a terminal and `NO_COLOR` is not set (<https://no-color.org>).
pub fn init_logging(default: &str) {
    let color = io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default.into()),
        )
        .with_ansi(color)
        .with_writer(io::stderr)
        .init();
}

/// What `--generate` writes to stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Generate {
    /// A man page (roff), e.g. for /usr/local/share/man/man1/.
    Man,
    /// bash completions.
    CompleteBash,
    /// zsh completions.
    CompleteZsh,
    /// fish completions.
    CompleteFish,
}

/// Writes a man page or shell completions for `cmd` (a binary's clap definition).
pub fn generate(kind: Generate, mut cmd: clap::Command, out: &mut dyn io::Write) -> io::Result<()> {
    let name = cmd.get_name().to_string();
    match kind {
        Generate::Man => clap_mangen::Man::new(cmd).render(out),
        Generate::CompleteBash => {
            clap_complete::generate(clap_complete::Shell::Bash, &mut cmd, name, out);
            Ok(())
        }
        Generate::CompleteZsh => {
            clap_complete::generate(clap_complete::Shell::Zsh, &mut cmd, name, out);
            Ok(())
        }
        Generate::CompleteFish => {
            clap_complete::generate(clap_complete::Shell::Fish, &mut cmd, name, out);
            Ok(())
        }
    }
}

/// Writes what `--generate` asked for to stdout; the exit code says whether that worked.
pub fn generate_or_fail(kind: Generate, cmd: clap::Command) -> std::process::ExitCode {
    let name = cmd.get_name().to_string();
    match generate(kind, cmd, &mut io::stdout().lock()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // The reader had what it wanted (`| head`): not an error, as for any Unix filter.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: error: cannot write the output: {e}");
            std::process::ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_resolve_and_bad_ones_say_which_host() {
        let v = resolve_all("localhost:8000").unwrap();
        assert!(v.iter().all(|a| a.port() == 8000 && a.ip().is_loopback()));
        assert_eq!(resolve_all("127.0.0.1:9").unwrap()[0].port(), 9);
        assert_eq!(resolve_all("[::1]:9").unwrap()[0].to_string(), "[::1]:9");
        assert!(resolve_all("localhost").unwrap_err().contains("HOST:PORT"));
        assert!(resolve_all("localhost:http").unwrap_err().contains("port"));
        let hp = HostPort::parse("localhost:8000").unwrap();
        assert_eq!(hp.to_string(), "localhost:8000");
        let mut dedup = hp.addrs.clone();
        dedup.dedup();
        assert_eq!(dedup.len(), hp.addrs.len());
        assert_eq!(
            HostPort::one("127.0.0.1:9".parse().unwrap()).list(),
            "127.0.0.1:9"
        );
        let e = HostPort::parse("no-such-host.invalid:80").unwrap_err();
        assert!(e.contains("no-such-host.invalid"), "{e}");
    }

    #[test]
    fn completions_and_man_pages_are_generated() {
        #[derive(clap::Parser)]
        #[command(name = "demo")]
        struct Demo {
            /// A flag worth completing.
            #[arg(long)]
            listen: Option<String>,
        }
        use clap::CommandFactory;
        for kind in [
            Generate::Man,
            Generate::CompleteBash,
            Generate::CompleteZsh,
            Generate::CompleteFish,
        ] {
            let mut out = Vec::new();
            generate(kind, Demo::command(), &mut out).unwrap();
            let text = String::from_utf8(out).unwrap();
            assert!(text.contains("listen"), "{kind:?}: {text}");
        }
    }

    #[test]
    fn labels_are_snake_case() {
        assert_eq!(error_kind_label(io::ErrorKind::TimedOut), "timed_out");
        assert_eq!(
            error_kind_label(io::ErrorKind::ConnectionReset),
            "connection_reset"
        );
    }

    #[test]
    fn durations_refuse_zero_and_nonsense() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("soon").is_err());
        assert_eq!(parse_duration_or_zero("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration_or_zero("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration_or_zero("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("0.25"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration_or_zero("-1").is_err());
        assert!(parse_duration_or_zero("NaN").is_err());
    }
}
