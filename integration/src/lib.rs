//! Helpers for the tests across programs, and the fault suite's table ([`faults_table`]).

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use ringecho_server::{start, Backend, Config, RunningServer};

/// A ringecho server on an ephemeral loopback port with two threads and metrics on, as
/// `tweak` adjusts it (the open-file limit raised first: some tests hold thousands of
/// sockets on both sides).
pub fn server(backend: Backend, tweak: impl FnOnce(&mut Config)) -> RunningServer {
    let _ = ringecho_server::listener::raise_nofile_limit();
    let mut c = Config::new("127.0.0.1:0".parse().unwrap(), backend);
    c.threads = Some(2);
    c.metrics = Some("127.0.0.1:0".parse().unwrap());
    tweak(&mut c);
    start(&c).expect("server starts")
}

/// The server's metrics URL.
pub fn metrics_url(srv: &RunningServer) -> String {
    format!("http://{}/metrics", srv.metrics_addr().expect("metrics on"))
}

/// Makes the next close of `s` an RST (SO_LINGER 0).
pub fn linger0(s: &TcpStream) {
    socket2::SockRef::from(s)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
}

/// `ringecho-server` as its own process, under `ulimit -n NOFILE` (soft and hard, so it cannot
/// raise it) when one is given, from its first line of output (which names the address).
pub struct ServerProcess {
    child: std::process::Child,
    stdout: std::io::BufReader<std::process::ChildStdout>,
    /// Where it listens.
    pub addr: std::net::SocketAddr,
}

impl ServerProcess {
    /// Starts the server with `args` (a listen address of 127.0.0.1:0 among them, or
    /// added here).
    pub fn start(nofile: Option<u32>, args: &[&str]) -> Self {
        use std::io::BufRead;
        let listen = if args.contains(&"--listen") {
            ""
        } else {
            "--listen 127.0.0.1:0"
        };
        let ulimit = nofile.map_or(String::new(), |n| format!("ulimit -n {n} && "));
        let script = format!(
            "{ulimit}exec '{}' {listen} {}",
            server_exe().display(),
            args.join(" ")
        );
        let mut child = Command::new("bash")
            .args(["-c", &script])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start the server");
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .rsplit(' ')
            .next()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        ServerProcess {
            child,
            stdout,
            addr,
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the server with SIGINT and returns what it printed after start-up (its
    /// summary); fails unless it exits cleanly.
    pub fn stop(mut self) -> String {
        use std::io::Read;
        let sent = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -INT {} failed", self.child.id());
        let mut summary = String::new();
        self.stdout.read_to_string(&mut summary).unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "server exited with {status}: {summary}");
        summary
    }
}

/// A number from a server's exit summary ("  accept errors         3").
pub fn figure(summary: &str, name: &str) -> u64 {
    summary
        .lines()
        .find_map(|l| l.trim().strip_prefix(name))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no '{name}' in the summary: {summary}"))
}

/// A peer that will never read: small kernel buffers (no autotuning, so it stalls after a
/// few KiB of echoes instead of megabytes), non-blocking, connected to `addr`.
pub fn never_reader(addr: std::net::SocketAddr) -> TcpStream {
    let s = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .unwrap();
    s.set_recv_buffer_size(4096).unwrap();
    s.set_send_buffer_size(4096).unwrap();
    s.connect(&addr.into()).unwrap();
    s.set_nonblocking(true).unwrap();
    s.into()
}

/// Writes `chunk` bytes at a time to every peer, never reading, until each write would block
/// five times in a row (the server has stopped taking their bytes); returns the bytes they
/// pushed. Fails after 60 s.
pub fn stall(peers: &mut [TcpStream], chunk: usize) -> usize {
    use std::io::Write;
    let chunk = vec![7u8; chunk];
    let mut pushed = 0;
    let mut blocked = vec![0u32; peers.len()];
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while blocked.iter().any(|&b| b < 5) {
        assert!(
            std::time::Instant::now() < deadline,
            "peers did not stall in 60 s"
        );
        for (p, b) in peers.iter_mut().zip(blocked.iter_mut()) {
            match p.write(&chunk) {
                Ok(n) => {
                    pushed += n;
                    *b = 0;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => *b += 1,
                Err(e) => panic!("a never-reading peer failed to write: {e}"),
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    pushed
}

/// The `ringecho-loadgen` binary of this build: beside the test executable's directory.
/// Cargo builds it for the loadgen crate's own tests (`loadgen/tests/cli.rs`), which every
/// workspace test run includes.
pub fn loadgen_exe() -> PathBuf {
    exe("ringecho-loadgen")
}

/// The `ringecho-perf` binary of this build (built for the perf crate's own tests).
pub fn perf_exe() -> PathBuf {
    exe("ringecho-perf")
}

/// The `ringecho-server` binary of this build (built for the server crate's own tests).
pub fn server_exe() -> PathBuf {
    exe("ringecho-server")
}

fn exe(name: &str) -> PathBuf {
    let test = std::env::current_exe().expect("the test executable's path");
    let dir = test
        .parent()
        .and_then(|deps| deps.parent())
        .expect("tests run from target/<profile>/deps");
    let bin = dir.join(name);
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build -p {name}` (cargo test --workspace does)",
        bin.display()
    );
    bin
}

/// The repository's top directory.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate sits in the repository")
        .to_path_buf()
}

/// Runs `ip` (or another tool) and fails loudly if it does; returns what it printed.
pub fn sh(args: &[&str]) -> String {
    let out = std::process::Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e} (scripts/test.sh installs iproute2)"));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Four "hosts": network namespaces `s` (the server, with a bridge, at [`SERVER_IP`]) and
/// `l1`..`l3` (10.233.0.11-13, each on a veth pair into the bridge); removed on drop. Needs
/// root and `ip`. Each set is its own network, so tests may build theirs at the same time.
pub struct Hosts {
    /// The namespaces' names: the server's first.
    pub names: Vec<String>,
}

/// The server host's address in [`Hosts`].
pub const SERVER_IP: &str = "10.233.0.1";

impl Hosts {
    /// Builds the four namespaces, named `{prefix}s-PID`, `{prefix}l1-PID`, ...
    pub fn new(prefix: &str) -> Hosts {
        let pid = std::process::id();
        let names: Vec<String> = ["s", "l1", "l2", "l3"]
            .iter()
            .map(|n| format!("{prefix}{n}-{pid}"))
            .collect();
        for n in &names {
            let _ = Command::new("ip").args(["netns", "del", n]).output();
            sh(&["ip", "netns", "add", n]);
            sh(&["ip", "netns", "exec", n, "ip", "link", "set", "lo", "up"]);
        }
        let hosts = Hosts { names };
        let s = hosts.names[0].as_str();
        let inns = |ns: &str, args: &[&str]| {
            let mut v = vec!["ip", "netns", "exec", ns];
            v.extend_from_slice(args);
            sh(&v);
        };
        inns(s, &["ip", "link", "add", "br0", "type", "bridge"]);
        inns(
            s,
            &[
                "ip",
                "addr",
                "add",
                &format!("{SERVER_IP}/24"),
                "dev",
                "br0",
            ],
        );
        inns(s, &["ip", "link", "set", "br0", "up"]);
        for (i, l) in hosts.names[1..].iter().enumerate() {
            let (a, b) = (format!("v{i}a"), format!("v{i}b"));
            inns(
                s,
                &["ip", "link", "add", &a, "type", "veth", "peer", "name", &b],
            );
            inns(s, &["ip", "link", "set", &b, "netns", l]);
            inns(s, &["ip", "link", "set", &a, "master", "br0"]);
            inns(s, &["ip", "link", "set", &a, "up"]);
            inns(
                l,
                &[
                    "ip",
                    "addr",
                    "add",
                    &format!("10.233.0.{}/24", 11 + i),
                    "dev",
                    &b,
                ],
            );
            inns(l, &["ip", "link", "set", &b, "up"]);
        }
        hosts
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = Command::new("ip").args(["netns", "del", n]).output();
        }
    }
}

/// The fault suite's figures (`RINGECHO_FAULTS_REPORT`: one JSON line per scenario and
/// backend, `{"scenario", "backend", "figures": {name: value}}`) as the Markdown table
/// docs/reliability.md shows; an error names the line that is not one.
pub fn faults_table(jsonl: &str) -> Result<String, String> {
    let mut out = String::from("| scenario | backend | figures |\n| --- | --- | --- |\n");
    for (i, line) in jsonl
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let bad = |what: &str| format!("line {}: {what}: {line}", i + 1);
        let row: serde_json::Value = serde_json::from_str(line).map_err(|e| bad(&e.to_string()))?;
        let text = |key: &str| -> Result<String, String> {
            Ok(match &row[key] {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Null => return Err(bad(&format!("no {key}"))),
                v => v.to_string(),
            })
        };
        let figures = row["figures"]
            .as_object()
            .ok_or_else(|| bad("no figures"))?
            .iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => format!("{k} {s}"),
                v => format!("{k} {v}"),
            })
            .collect::<Vec<_>>()
            .join(", ");
        out.push_str(&format!(
            "| {} | {} | {figures} |\n",
            text("scenario")?,
            text("backend")?
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_faults_table_has_a_row_per_line_and_names_a_bad_one() {
        let jsonl = concat!(
            r#"{"scenario":"rst storm","backend":"epoll-loop","figures":{"rst":1000,"healthy p99 ms":1.5}}"#,
            "\n\n",
            r#"{"scenario":"vanished","backend":"multishot","figures":{"verdict":"ok"}}"#,
            "\n"
        );
        let t = faults_table(jsonl).unwrap();
        assert_eq!(
            t,
            "| scenario | backend | figures |\n| --- | --- | --- |\n\
             | rst storm | epoll-loop | healthy p99 ms 1.5, rst 1000 |\n\
             | vanished | multishot | verdict ok |\n"
        );
        let err = faults_table("{}\nnot json\n").unwrap_err();
        assert!(err.starts_with("line 1: no figures"), "{err}");
        assert!(faults_table("x").unwrap_err().starts_with("line 1:"));
    }
}
