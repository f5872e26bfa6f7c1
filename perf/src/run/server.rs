//! A server under test, from spawn to stop. It is pinned to the server's cores with taskset
//! (which execs it, so its process id is the server's), known ready when its ready file says
//! so (our own servers) or when its port accepts (servers we did not write), stopped with
//! SIGTERM and reaped, and killed if it is dropped while still running, so no run leaves a
//! server behind.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};

pub use crate::with_suffix;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// How often a start or a stop looks again.
const POLL: Duration = Duration::from_millis(50);
/// How long our own server may take to write its ready file.
const READY_WITHIN: Duration = Duration::from_secs(5);
/// How long a server we did not write may take to accept on its port.
const LISTEN_WITHIN: Duration = Duration::from_secs(10);
/// How long a stopped server may take to exit before it is killed.
const EXIT_WITHIN: Duration = Duration::from_secs(10);

/// Which server a row measures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spec {
    /// A ringecho-server backend (uring, epoll, multishot).
    Backend(String),
    /// Any echo server, started as `command` with `{addr}` and `{port}` substituted.
    External {
        /// Its row's name.
        name: String,
        /// The command line, run by bash.
        command: String,
        /// A reference peer (`--peers`): shown beside ours, its failure is its own row's,
        /// never the comparison's exit status.
        reference: bool,
    },
}

impl Spec {
    /// Parses `--server NAME='COMMAND'`.
    pub fn external(arg: &str) -> crate::Result<Spec> {
        let (name, command) = arg
            .split_once('=')
            .ok_or_else(|| format!("--server takes NAME='COMMAND', not '{arg}'"))?;
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        {
            return Err(format!("server name '{name}' must be letters, digits, . _ -").into());
        }
        Ok(Spec::External {
            name: name.to_string(),
            command: command.to_string(),
            reference: false,
        })
    }

    /// The same server as a reference peer (`--peers`).
    pub fn into_reference(self) -> Spec {
        match self {
            Spec::External { name, command, .. } => Spec::External {
                name,
                command,
                reference: true,
            },
            backend => backend,
        }
    }

    /// A failure of this server fails the comparison: every server but a reference peer.
    pub fn failure_counts(&self) -> bool {
        !matches!(
            self,
            Spec::External {
                reference: true,
                ..
            }
        )
    }

    /// Its row's name.
    pub fn name(&self) -> &str {
        match self {
            Spec::Backend(b) => b,
            Spec::External { name, .. } => name,
        }
    }

    /// A server we did not write: measured from outside, and it may die by SIGTERM.
    pub fn is_external(&self) -> bool {
        matches!(self, Spec::External { .. })
    }
}

/// Where and how servers are started.
#[derive(Debug, Clone)]
pub struct Launcher {
    /// ringecho-server.
    pub exe: PathBuf,
    /// The server's CPU list (taskset -c).
    pub cpus: String,
    /// ringecho-server's --threads.
    pub threads: usize,
}

/// A started server: its address, its metrics (our own servers) and its process.
#[derive(Debug)]
pub struct Running {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its Prometheus endpoint, for the loadgen's --server-metrics (our own servers).
    pub metrics_url: Option<String>,
}

impl Launcher {
    /// ringecho-server from `bin`, one thread per server core of `split`.
    pub fn new(bin: &Path, split: &crate::cores::Split) -> Launcher {
        Launcher {
            exe: bin.join("ringecho-server"),
            cpus: split.server_cpus.clone(),
            threads: split.server_threads,
        }
    }

    /// The same launcher on `split`'s server cores and threads.
    pub fn on(&self, split: &crate::cores::Split) -> Launcher {
        Launcher {
            exe: self.exe.clone(),
            cpus: split.server_cpus.clone(),
            threads: split.server_threads,
        }
    }

    /// Starts `spec`, its output in `LOG.server.out` and `LOG.server.err`, and waits until it
    /// listens. The error says why it never did.
    pub fn start(&self, spec: &Spec, log: &Path) -> crate::Result<Running> {
        self.start_with(spec, &[], log)
    }

    /// As [`Launcher::start`], with `args` added to a built-in backend's command line (a
    /// map's server axis); other servers run as they are.
    pub fn start_with(&self, spec: &Spec, args: &[String], log: &Path) -> crate::Result<Running> {
        let out = create(&with_suffix(log, ".server.out"))?;
        let err_path = with_suffix(log, ".server.err");
        let err = create(&err_path)?;
        let mut cmd = Command::new("taskset");
        cmd.arg("-c").arg(&self.cpus);
        let ready = with_suffix(log, ".ready");
        let port = match spec {
            Spec::Backend(backend) => {
                let _ = std::fs::remove_file(&ready);
                cmd.arg(&self.exe)
                    .args(["--backend", backend, "--threads"])
                    .arg(self.threads.to_string())
                    .args(["--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0"])
                    .arg("--ready-file")
                    .arg(&ready)
                    .args(args);
                None
            }
            Spec::External { command, .. } => {
                let port = free_port()?;
                let command = command
                    .replace("{addr}", &format!("127.0.0.1:{port}"))
                    .replace("{port}", &port.to_string());
                cmd.args(["bash", "-c", &format!("exec {command}")]);
                Some(port)
            }
        };
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("could not be started (taskset: {e})"))?;
        let mut running = Running {
            child,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port.unwrap_or(0))),
            metrics_url: None,
        };
        let within = if port.is_some() {
            LISTEN_WITHIN
        } else {
            READY_WITHIN
        };
        let deadline = Instant::now() + within;
        loop {
            match port {
                None => {
                    if let Some((addr, metrics)) = read_ready(&ready) {
                        running.addr = addr;
                        running.metrics_url = metrics.map(|m| format!("http://{m}/metrics"));
                        return Ok(running);
                    }
                }
                Some(_) => {
                    if TcpStream::connect_timeout(&running.addr, POLL).is_ok() {
                        return Ok(running);
                    }
                }
            }
            if let Some(status) = running.child.try_wait().ok().flatten() {
                return Err(format!(
                    "exited ({}) before listening: {}",
                    describe(status),
                    tail(&err_path, 2)
                )
                .into());
            }
            if Instant::now() >= deadline {
                return Err(match port {
                    None => format!("did not write its ready file in {}", secs(within)),
                    Some(p) => format!("never listened on 127.0.0.1:{p} ({})", secs(within)),
                }
                .into());
            }
            std::thread::sleep(POLL);
        }
    }
}

impl Running {
    /// Its process id (taskset and bash exec it, so this is the server itself).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Still running.
    pub fn is_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends SIGTERM, waits for the exit and returns its status; one that outlives the
    /// signal by 10 s is killed, and that is the error.
    pub fn stop(mut self) -> crate::Result<ExitStatus> {
        let signal = Signal::SIGTERM;
        let pid = Pid::from_raw(self.child.id() as i32);
        // An exited, unreaped server still has its pid: the signal cannot reach another.
        let _ = kill(pid, signal);
        let deadline = Instant::now() + EXIT_WITHIN;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Ok(status),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(POLL),
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return Err(format!(
                        "did not exit within {} of {signal}: killed",
                        secs(EXIT_WITHIN)
                    )
                    .into());
                }
            }
        }
    }
}

impl Drop for Running {
    /// A server nobody stopped (an early return, a panic) is killed and reaped.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `listen ADDR` and `metrics ADDR` from a ready file, once it is there (the server writes
/// it whole).
fn read_ready(path: &Path) -> Option<(SocketAddr, Option<String>)> {
    let text = std::fs::read_to_string(path).ok()?;
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
    };
    let addr = field("listen ")?.parse().ok()?;
    Some((addr, field("metrics ")))
}

/// A free TCP port on 127.0.0.1, for a server started with `{port}`.
pub fn free_port() -> crate::Result<u16> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("cannot find a free port: {e}"))
        .map_err(crate::Error::from)
}

/// An exit status in words: `status 3` or `signal 9`.
pub fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("status {c}"),
        (None, Some(s)) => format!("signal {s}"),
        _ => status.to_string(),
    }
}

/// The last `n` lines of a file, joined by spaces (a log's last words for an error).
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join(" ")
}

/// A file created for a child's output, or an error naming it.
pub fn create(path: &Path) -> crate::Result<File> {
    File::create(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))
        .map_err(crate::Error::from)
}

fn secs(d: Duration) -> String {
    format!("{} s", d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_servers_are_named_safely() {
        let s = Spec::external("py=python3 echo.py --port {port}").unwrap();
        assert_eq!(s.name(), "py");
        assert!(s.is_external());
        assert!(Spec::external("no command").is_err());
        assert!(Spec::external("a b=cmd")
            .unwrap_err()
            .to_string()
            .contains("letters"));
        assert!(Spec::external("=cmd").is_err());
        assert!(!Spec::Backend("epoll".into()).is_external());
        assert!(s.failure_counts() && Spec::Backend("epoll".into()).failure_counts());
        assert!(!s.into_reference().failure_counts());
    }

    #[test]
    fn a_ready_file_gives_the_address_and_metrics() {
        let dir = std::env::temp_dir().join(format!("ringecho-ready-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("r");
        assert!(read_ready(&f).is_none());
        std::fs::write(
            &f,
            "listen 127.0.0.1:7\nlisten [::1]:7\nmetrics 127.0.0.1:9\n",
        )
        .unwrap();
        let (addr, metrics) = read_ready(&f).unwrap();
        assert_eq!(addr.to_string(), "127.0.0.1:7");
        assert_eq!(metrics.as_deref(), Some("127.0.0.1:9"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_server_that_exits_early_is_reported_with_its_last_words() {
        let dir = std::env::temp_dir().join(format!("ringecho-start-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let launcher = Launcher {
            exe: PathBuf::from("unused"),
            cpus: "0".into(),
            threads: 1,
        };
        let spec = Spec::external("dies=sh -c 'echo cannot bind >&2; exit 3'").unwrap();
        let err = launcher
            .start(&spec, &dir.join("log"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("status 3") && err.contains("cannot bind"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
