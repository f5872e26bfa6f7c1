//! Second and third opinions on how connections closed: the server's own counters (scraped
//! from its Prometheus endpoint) and the kernel's TCP counters.

use std::collections::BTreeMap;
use std::io;
use std::time::Duration;

use ringecho_common::metric;
use serde::{Deserialize, Serialize};

/// The server's close counters, from `ringecho_closes_total{how=...}` ([`metric::CLOSES`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerCloses {
    /// Peer FIN closes.
    pub fin: u64,
    /// Peer RST closes.
    pub rst: u64,
    /// Error closes.
    pub error: u64,
    /// Closes the server made.
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

/// Fetches `url` (http://HOST:PORT/PATH) and returns the body; any status but 2xx is an
/// error naming it.
pub fn http_get(url: &str, timeout: Duration) -> io::Result<String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .build()
        .into();
    let mut resp = agent
        .get(url)
        .call()
        .map_err(|e| io::Error::other(format!("{url}: {e}")))?;
    resp.body_mut()
        .read_to_string()
        .map_err(|e| io::Error::other(format!("{url}: {e}")))
}

/// The samples of a Prometheus text exposition.
fn samples(text: &str) -> io::Result<Vec<prometheus_parse::Sample>> {
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    Ok(prometheus_parse::Scrape::parse(lines)?.samples)
}

/// A sample's value, whatever its type line said.
fn value_of(s: &prometheus_parse::Sample) -> Option<f64> {
    match s.value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => Some(v),
        _ => None,
    }
}

/// Reads the close counters out of a Prometheus text exposition.
pub fn parse_closes(text: &str) -> io::Result<ServerCloses> {
    let name = metric::CLOSES.exposed();
    let mut c = ServerCloses::default();
    let mut seen = false;
    for s in samples(text)?.iter().filter(|s| s.metric == name) {
        let v = value_of(s).ok_or_else(|| bad_data(format!("{name} is not a number")))? as u64;
        seen = true;
        match s.labels.get(metric::HOW) {
            Some("fin") => c.fin = v,
            Some("rst") => c.rst = v,
            Some("error") => c.error = v,
            Some("server") => c.server = v,
            _ => {}
        }
    }
    if !seen {
        return Err(bad_data(format!("no {name} in the metrics")));
    }
    Ok(c)
}

fn bad_data(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// The server's echo totals, from `ringecho_bytes_echoed_total` and
/// `ringecho_receives_echoed_total` (`ringecho_messages_echoed_total` from servers that
/// predate that name: the same count).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerTotals {
    /// Receives echoed back in full: one per message only in ping-pong traffic, since an
    /// echo server has no framing (pipelined messages share receives, a large one spans
    /// several). Informative; only bytes can be compared with what loadgens sent.
    pub receives: u64,
    /// Bytes echoed back.
    pub bytes: u64,
}

/// Reads the echo totals out of a Prometheus text exposition.
pub fn parse_totals(text: &str) -> io::Result<ServerTotals> {
    let receives = metric_value(text, &metric::RECEIVES_ECHOED.exposed(), None)
        .or_else(|_| metric_value(text, &metric::MESSAGES_ECHOED.exposed(), None))?;
    Ok(ServerTotals {
        receives: receives as u64,
        bytes: metric_value(text, &metric::BYTES_ECHOED.exposed(), None)? as u64,
    })
}

/// The value of sample `name` in a Prometheus text exposition; with `label`, the sample
/// carrying that label with that value.
fn metric_value(text: &str, name: &str, label: Option<(&str, &str)>) -> io::Result<f64> {
    samples(text)?
        .iter()
        .filter(|s| s.metric == name)
        .find(|s| label.map_or(true, |(k, v)| s.labels.get(k) == Some(v)))
        .and_then(value_of)
        .ok_or_else(|| {
            bad_data(format!(
                "the server's metrics have no {name}: is it ringecho-server?"
            ))
        })
}

/// Scrapes a ringecho server's close counters.
pub fn scrape_closes(url: &str) -> io::Result<ServerCloses> {
    parse_closes(&http_get(url, Duration::from_secs(5))?)
}

/// The connections each echo thread of a ringecho server accepted
/// (`ringecho_thread_connections_accepted_total{thread}`), in thread order; empty from a
/// server that does not count them per thread.
pub fn parse_accepted_by_thread(text: &str) -> io::Result<Vec<u64>> {
    let name = metric::THREAD_CONNECTIONS_ACCEPTED.exposed();
    let label = metric::THREAD;
    let mut by: Vec<(u64, u64)> = samples(text)?
        .iter()
        .filter(|s| s.metric == name)
        .filter_map(|s| {
            let t = s.labels.get(label)?.parse().ok()?;
            Some((t, value_of(s)? as u64))
        })
        .collect();
    by.sort_unstable();
    Ok(by.into_iter().map(|(_, v)| v).collect())
}

/// Scrapes [`parse_accepted_by_thread`]'s figures.
pub fn scrape_accepted_by_thread(url: &str) -> io::Result<Vec<u64>> {
    parse_accepted_by_thread(&http_get(url, Duration::from_secs(5))?)
}

/// Scrapes how many connections a ringecho server has open.
pub fn scrape_active(url: &str) -> io::Result<u64> {
    let text = http_get(url, Duration::from_secs(5))?;
    Ok(metric_value(&text, metric::CONNECTIONS_ACTIVE.name, None)? as u64)
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
    fn parses_the_servers_own_cost() {
        let text = "process_cpu_seconds_total 3.5\nringecho_process_cpu_seconds_total{mode=\"user\"} 1.25\nringecho_process_cpu_seconds_total{mode=\"system\"} 2.25\nprocess_resident_memory_bytes 2097152\n";
        let p = parse_process(text).unwrap();
        assert_eq!((p.user_s, p.sys_s, p.rss_kb), (1.25, 2.25, 2048));
        assert!(parse_process("process_open_fds 3\n").is_err());
    }

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

    #[test]
    fn cpu_comes_from_run_time_split_by_ticks() {
        let tick = 1.0 / clock_ticks_per_s();
        let at = |user_ticks: f64, sys_ticks: f64, run_ns: Option<u64>| ProcSample {
            user_s: user_ticks * tick,
            sys_s: sys_ticks * tick,
            run_ns,
            ..ProcSample::default()
        };
        let close = |(u, s): (f64, f64), (eu, es): (f64, f64)| {
            assert!((u - eu).abs() < 1e-9 && (s - es).abs() < 1e-9, "{u} {s}");
        };
        let ns = |t: f64| (t * tick * 1e9) as u64;
        // 9.5 ticks of run time over a window whose ticks read 2 user + 8 system.
        close(
            cpu_between(&at(0.0, 0.0, Some(0)), &at(2.0, 8.0, Some(ns(9.5)))),
            (1.9 * tick, 7.6 * tick),
        );
        // No tick fell in the window: the run time, as system time.
        close(
            cpu_between(&at(5.0, 5.0, Some(ns(10.0))), &at(5.0, 5.0, Some(ns(10.4)))),
            (0.0, 0.4 * tick),
        );
        // Threads exited and took their run time along: the ticks stand.
        close(
            cpu_between(&at(0.0, 0.0, Some(ns(50.0))), &at(3.0, 7.0, Some(ns(51.0)))),
            (3.0 * tick, 7.0 * tick),
        );
        // No run time (a server read through its metrics): the ticks.
        close(
            cpu_between(&at(1.0, 1.0, None), &at(2.0, 4.0, None)),
            (tick, 3.0 * tick),
        );
        // This process's own run time is readable and grows while it computes.
        let a = ProcSample::read_self().unwrap();
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while t.elapsed() < std::time::Duration::from_millis(30) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let b = ProcSample::read_self().unwrap();
        assert!(b.run_ns.unwrap() > a.run_ns.unwrap());
    }
}

use ringecho_common::procfs::clock_ticks_per_s;
pub use ringecho_common::procfs::ProcSample;

/// The server's own CPU and memory from its metrics endpoint (`process_*` and
/// `ringecho_process_cpu_seconds_total{mode}`): what `--server-pid` reads from /proc, for a
/// server on another host. Context switches are not exported, so they read as zero.
pub fn parse_process(text: &str) -> io::Result<ProcSample> {
    let cpu = |mode: &str| {
        metric_value(
            text,
            metric::PROCESS_CPU_SECONDS_TOTAL.name,
            Some(("mode", mode)),
        )
    };
    let rss_kb = (metric_value(text, "process_resident_memory_bytes", None)? / 1024.0) as u64;
    Ok(ProcSample {
        user_s: cpu("user")?,
        sys_s: cpu("system")?,
        ctx_switches: 0,
        rss_kb,
        peak_rss_kb: rss_kb,
        run_ns: None,
    })
}

/// Scrapes the server's own CPU and memory.
pub fn scrape_process(url: &str) -> io::Result<ProcSample> {
    parse_process(&http_get(url, Duration::from_secs(5))?)
}

/// The server process's cost over the measured window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerCost {
    /// The server process.
    pub pid: u32,
    /// User CPU seconds over the window.
    pub user_s: f64,
    /// System CPU seconds over the window.
    pub sys_s: f64,
    /// Server CPU (user + sys) per echoed message: the figure that survives noise best.
    pub cpu_us_per_msg: f64,
    /// User CPU µs per message: the part the server's own code controls.
    pub user_us_per_msg: f64,
    /// System CPU µs per message.
    pub sys_us_per_msg: f64,
    /// Context switches per message.
    pub ctx_switches_per_msg: f64,
    /// Resident memory at the end of the window, connections still open.
    pub rss_kb: u64,
    /// Peak resident memory, KiB.
    pub peak_rss_kb: u64,
    /// System calls per message (perf's raw_syscalls tracepoint), when counted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub syscalls_per_msg: Option<f64>,
    /// The server's cores' busy time per message, every mode (softirq included), from
    /// /proc/stat; measured when the server runs on cores apart from the loadgen's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cores_busy_us_per_msg: Option<f64>,
    /// The part of that busy time not charged to the server's process: interrupts, other
    /// processes on its cores.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cores_other_us_per_msg: Option<f64>,
    /// Time the hypervisor took from the server's cores, per message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cores_steal_us_per_msg: Option<f64>,
}

impl ServerCost {
    /// The cost with the server's cores' times over the same window.
    pub fn with_cores(mut self, t: &ringecho_common::procfs::CoreTimes, messages: u64) -> Self {
        if messages > 0 {
            let per = |s: f64| s * 1e6 / messages as f64;
            self.cores_busy_us_per_msg = Some(per(t.busy_s));
            self.cores_other_us_per_msg = Some(per(t.busy_s - self.user_s - self.sys_s).max(0.0));
            self.cores_steal_us_per_msg = Some(per(t.steal_s));
        }
        self
    }

    /// Whether the cores' busy time per message differs from the process's by more than 5 %:
    /// then process accounting misses work done for the server (interrupts) or others share
    /// its cores.
    pub fn cores_differ(&self) -> bool {
        self.cores_busy_us_per_msg.is_some_and(|busy| {
            self.cpu_us_per_msg > 0.0 && (busy / self.cpu_us_per_msg - 1.0).abs() > 0.05
        })
    }

    /// The cost between two samples, per `messages`.
    pub fn between(
        pid: u32,
        a: &ProcSample,
        b: &ProcSample,
        messages: u64,
        syscalls: Option<u64>,
    ) -> ServerCost {
        let per = |x: f64| {
            if messages > 0 {
                x * 1e6 / messages as f64
            } else {
                0.0
            }
        };
        let (user_s, sys_s) = cpu_between(a, b);
        ServerCost {
            pid,
            user_s,
            sys_s,
            cpu_us_per_msg: per(user_s + sys_s),
            user_us_per_msg: per(user_s),
            sys_us_per_msg: per(sys_s),
            ctx_switches_per_msg: per(b.ctx_switches.saturating_sub(a.ctx_switches) as f64) / 1e6,
            rss_kb: b.rss_kb,
            peak_rss_kb: b.peak_rss_kb,
            syscalls_per_msg: syscalls.map(|n| per(n as f64) / 1e6),
            ..ServerCost::default()
        }
    }
}

/// User and system CPU seconds between two samples. Where both carry the scheduler's
/// nanosecond run time, that is the total (ticks quantise a light window's CPU by 10 ms
/// steps: 2,000 messages at 5 µs each are one tick), split in the ticks' proportion of user
/// to system (all system when no tick fell in the window). A total below the ticks' by more
/// than two ticks means threads exited and took their run time with them: ticks then.
fn cpu_between(a: &ProcSample, b: &ProcSample) -> (f64, f64) {
    let (user_s, sys_s) = ((b.user_s - a.user_s).max(0.0), (b.sys_s - a.sys_s).max(0.0));
    let (Some(ra), Some(rb)) = (a.run_ns, b.run_ns) else {
        return (user_s, sys_s);
    };
    let total = rb.saturating_sub(ra) as f64 / 1e9;
    let ticks = user_s + sys_s;
    if total + 2.0 / clock_ticks_per_s() < ticks {
        return (user_s, sys_s);
    }
    if ticks > 0.0 {
        (total * user_s / ticks, total * sys_s / ticks)
    } else {
        (0.0, total)
    }
}

/// Counts a process's system calls with `perf stat -e raw_syscalls:sys_enter` from `start`
/// until [`SyscallCounter::stop`].
pub struct SyscallCounter {
    child: std::process::Child,
}

impl SyscallCounter {
    /// Starts counting `pid`'s system calls.
    pub fn start(pid: u32) -> io::Result<SyscallCounter> {
        let child = std::process::Command::new("perf")
            .args([
                "stat",
                "-x",
                ",",
                "-e",
                "raw_syscalls:sys_enter",
                "-p",
                &pid.to_string(),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot run perf (apt-get install linux-perf): {e}"),
                )
            })?;
        Ok(SyscallCounter { child })
    }

    /// Stops counting and returns the count.
    pub fn stop(self) -> io::Result<u64> {
        // SIGINT makes perf print its count.
        crate::sys::interrupt(&self.child);
        let out = self.child.wait_with_output()?;
        let text = String::from_utf8_lossy(&out.stderr);
        text.lines()
            .find(|l| l.contains("raw_syscalls:sys_enter"))
            .and_then(|l| l.split(',').next()?.trim().parse().ok())
            .ok_or_else(|| io::Error::other(format!("perf counted nothing: {}", text.trim())))
    }
}
