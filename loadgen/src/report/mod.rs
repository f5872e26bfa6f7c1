//! The run's report: what was measured (its JSON is the contract scripts read), the human
//! summary as its `Display`, and whether the loadgen may have limited the run. `logs`
//! writes the histograms and merges several hosts' logs into one report.

mod logs;

use std::collections::BTreeMap;
use std::fmt;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

pub use crate::counts::Closes;
use crate::counts::Counts;
use crate::witness::{KernelCounters, ServerCloses, ServerCost};
pub use logs::{merge_logs, write_hgrm, write_hist_log};

/// Latency percentiles in µs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// 99.99th percentile.
    pub p9999: u64,
    /// Largest value recorded.
    pub max: u64,
    /// Mean, to 0.1 µs.
    pub mean: f64,
}

impl Percentiles {
    /// The percentiles of a histogram (all zero when it is empty).
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            p9999: h.value_at_quantile(0.9999),
            max: h.max(),
            mean: (h.mean() * 10.0).round() / 10.0,
        }
    }
}

/// How long each phase of the run took, s.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Phases {
    /// Opening every connection, to the barrier.
    pub connect_s: f64,
    /// Unmeasured load after the barrier.
    pub warmup_s: f64,
    /// The measured window.
    pub measure_s: f64,
    /// `--warmup auto`: whether latency had settled when the window opened (false: the cap
    /// opened it, and the window may hold a transient). Absent for a fixed warm-up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_settled: Option<bool>,
}

/// The loadgen's own CPU over the run, so a reader can tell whether it was the bottleneck.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Cpu {
    /// User CPU seconds over the measured window.
    pub user_s: f64,
    /// System CPU seconds over the window.
    pub sys_s: f64,
    /// CPU µs (user + sys) per measured message.
    pub us_per_msg: f64,
    /// CPU time over wall time per thread, less the pacer's spin; near 1.0 means the loadgen
    /// was saturated.
    pub utilisation: f64,
    /// Seconds the open-loop pacer spun towards send times (time it chose to burn).
    #[serde(default)]
    pub pacer_spin_s: f64,
    /// CPU µs per measured message less the pacer's spin: sending, receiving, verifying.
    #[serde(default)]
    pub us_per_msg_outside_pacer: f64,
    /// Open loop: how the pacer waited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pacer: Option<crate::pace::PacerMode>,
}

/// Everything a run measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Report {
    /// Set instead of figures when the run could not be made (the server never listened,
    /// died, or the loadgen failed): why, in a sentence. Written by scripts, read by `compare`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// Labels given with --tag (scenario, backend, round…).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Server address.
    pub addr: String,
    /// Connections held concurrently.
    pub connections: u32,
    /// Loadgen threads.
    pub threads: usize,
    /// Bytes per message.
    pub payload: u32,
    /// Share of closes made with RST.
    pub rst_share: f64,
    /// Open-loop rate, msgs/s.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// Messages per connection before it is replaced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub churn: Option<u64>,
    /// Messages, bytes, connects, closes and failures (their keys sit at the top level of
    /// the JSON).
    #[serde(flatten)]
    pub counts: Counts,
    /// Length of the measured window, s.
    pub elapsed_s: f64,
    /// Measured messages per second.
    pub msgs_per_s: f64,
    /// Measured MiB per second.
    pub mib_per_s: f64,
    /// Open loop: how sends were spaced (`poisson` or `uniform`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arrivals: Option<crate::pace::Arrivals>,
    /// Messages in flight per connection at most.
    #[serde(default = "one")]
    pub pipeline: u32,
    /// Connects per second in the connect phase.
    #[serde(default)]
    pub connect_rate: f64,
    /// Latency percentiles: from the intended send time (open loop, coordinated omission
    /// corrected) or from the send (closed loop) to the echo.
    pub latency_us: Percentiles,
    /// Service time percentiles: from the send to the echo.
    #[serde(default)]
    pub service_us: Percentiles,
    /// Send lag percentiles: from the intended send time to the send (open loop; zero in
    /// closed loop).
    #[serde(default)]
    pub send_lag_us: Percentiles,
    /// The loadgen's own lateness: from when a message could go (due, and its connection's
    /// pipeline had room) to its send (open loop). Send lag minus this is queueing behind
    /// the connection's earlier messages, which is the server's doing.
    #[serde(default)]
    pub loadgen_late_us: Percentiles,
    /// How long each phase took.
    #[serde(default)]
    pub phases: Phases,
    /// Every echo since the load began (warm-up and window), in intervals of at least 200:
    /// latency p50/p99, service time p99 and the loadgen's own lateness p99, so a transient
    /// can be told apart as the server's (service time) or the loadgen's (lateness).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timeline: Vec<crate::settle::Interval>,
    /// `--start-at`, as Unix seconds, and how late past it the load began (0: on time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_at: Option<StartAt>,
    /// The loadgen, not the server, may have limited this run (see `limited_reasons`).
    #[serde(default)]
    pub loadgen_limited: bool,
    /// Why the run is marked loadgen-limited.
    #[serde(default)]
    pub limited_reasons: Vec<String>,
    /// Connect latency percentiles.
    pub connect_latency_us: Percentiles,
    /// The server's close counts over the run (with --server-metrics).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_closes: Option<ServerCloses>,
    /// Connections each of the server's echo threads had accepted by the run's end (with
    /// --server-metrics; a ringecho server): how evenly SO_REUSEPORT spread them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub server_accepted_by_thread: Vec<u64>,
    /// Whether the server's fin/rst counts equal what we initiated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_agrees: Option<bool>,
    /// The kernel's TCP counter deltas over the run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel: Option<KernelCounters>,
    /// The loadgen's own CPU over the window.
    pub loadgen_cpu: Cpu,
    /// The server process's cost over the window, with --server-pid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerCost>,
}

fn one() -> u32 {
    1
}

/// A synchronised start: when it was asked for, and how it went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct StartAt {
    /// The wall-clock start asked for, Unix seconds.
    pub unix_s: f64,
    /// How late past it the load began (the connect phase ran over), s; 0 when on time.
    pub late_s: f64,
    /// The clock offset assumed between hosts: their clocks are taken as synchronised (NTP or
    /// PTP), as HdrHistogram's log merging assumes too.
    pub assumed_offset_s: f64,
}

impl Report {
    /// Whether a script may trust the run: every byte matched and nothing failed.
    pub fn is_clean(&self) -> bool {
        self.failure.is_none()
            && self.counts.mismatches == 0
            && self.counts.errors.is_empty()
            && self.server_agrees != Some(false)
    }
}

/// The human summary printed on stdout: one line per figure, in the order a reader looks.
impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_load(f)?;
        self.fmt_closes(f)?;
        self.fmt_costs(f)
    }
}

impl Report {
    /// What was run, its throughput, latencies and phases.
    fn fmt_load(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let open_loop = self
            .rate
            .map(|r| format!(", open loop at {r} msg/s"))
            .unwrap_or_default();
        let churn = self
            .churn
            .map(|k| format!(", churn every {k} msgs"))
            .unwrap_or_default();
        writeln!(
            f,
            "ringecho-loadgen: {} connections × {} B to {} ({} threads{open_loop}{churn})",
            self.connections, self.payload, self.addr, self.threads,
        )?;
        writeln!(
            f,
            "  throughput   {:.0} msgs/s  {:.2} MiB/s  ({} msgs in {:.2} s)",
            self.msgs_per_s, self.mib_per_s, self.counts.messages, self.elapsed_s
        )?;
        let l = &self.latency_us;
        writeln!(
            f,
            "  latency µs   p50 {}  p90 {}  p99 {}  p99.9 {}  p99.99 {}  max {}",
            l.p50, l.p90, l.p99, l.p999, l.p9999, l.max
        )?;
        if self.rate.is_some() || self.pipeline > 1 {
            let (v, g) = (&self.service_us, &self.send_lag_us);
            writeln!(
                f,
                "  service µs   p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
                v.p50, v.p90, v.p99, v.p999, v.max
            )?;
            writeln!(
                f,
                "  send lag µs  p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  (loadgen late: p99 {})",
                g.p50, g.p90, g.p99, g.p999, g.max, self.loadgen_late_us.p99
            )?;
        }
        writeln!(
            f,
            "  connect µs   p50 {}  p99 {}  ({} connects)",
            self.connect_latency_us.p50, self.connect_latency_us.p99, self.counts.connects
        )?;
        let p = &self.phases;
        let settled = match p.warmup_settled {
            Some(true) => " (latency settled)",
            Some(false) => " (latency had not settled: the window may hold a transient)",
            None => "",
        };
        let start_at = self
            .start_at
            .map(|a| format!("  (start-at {:.3}, {:.3} s late)", a.unix_s, a.late_s))
            .unwrap_or_default();
        writeln!(
            f,
            "  phases       connect {:.2} s  warm-up {:.2} s{settled}  measured {:.2} s{start_at}",
            p.connect_s, p.warmup_s, p.measure_s,
        )
    }

    /// How connections ended, as we, the server and the kernel saw it; failures.
    fn fmt_closes(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.counts.closes;
        let unread = if c.rst_unread > 0 {
            format!(
                " (of which {} FIN closes sent as RST: unread bytes)",
                c.rst_unread
            )
        } else {
            String::new()
        };
        writeln!(
            f,
            "  closes       fin {}  rst {}{unread}  by server {}",
            c.fin, c.rst, c.server
        )?;
        if let Some(sc) = &self.server_closes {
            let verdict = match self.server_agrees {
                Some(true) => "agrees",
                _ => "DISAGREES",
            };
            writeln!(
                f,
                "  server saw   fin {}  rst {}  error {}  server {}  ({verdict})",
                sc.fin, sc.rst, sc.error, sc.server
            )?;
        }
        if let Some(k) = &self.kernel {
            writeln!(
                f,
                "  kernel       OutRsts +{}  EstabResets +{}  TCPAbortOnData +{}  TCPAbortOnClose +{}",
                k.out_rsts, k.estab_resets, k.abort_on_data, k.abort_on_close
            )?;
        }
        let errors = if self.counts.errors.is_empty() {
            "none".to_string()
        } else {
            self.counts
                .errors
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        writeln!(f, "  errors       {errors}")?;
        writeln!(f, "  mismatches   {} bytes", self.counts.mismatches)
    }

    /// The server's cost and the loadgen's own, and whether the loadgen limited the run.
    fn fmt_costs(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(sv) = &self.server {
            writeln!(
                f,
                "  server cpu   {:.2} µs/msg (user {:.2}, sys {:.2}){}  {:.3} ctx switches/msg  rss {} KiB (peak {})",
                sv.cpu_us_per_msg,
                sv.user_us_per_msg,
                sv.sys_us_per_msg,
                sv.syscalls_per_msg.map(|n| format!("  {n:.2} syscalls/msg")).unwrap_or_default(),
                sv.ctx_switches_per_msg,
                sv.rss_kb,
                sv.peak_rss_kb
            )?;
            if let Some(busy) = sv.cores_busy_us_per_msg {
                writeln!(
                    f,
                    "  server cores {busy:.2} µs/msg busy (every mode, from /proc/stat), {:.2} of it not the server's, {:.2} stolen{}",
                    sv.cores_other_us_per_msg.unwrap_or(0.0),
                    sv.cores_steal_us_per_msg.unwrap_or(0.0),
                    if sv.cores_differ() {
                        "  DIFFERS from the process's CPU by more than 5 %"
                    } else {
                        ""
                    }
                )?;
            }
        }
        let c = &self.loadgen_cpu;
        let pacer = match c.pacer {
            Some(mode) => format!(
                "; {:.2} µs/msg outside the {} pacer, which spun {:.2} s",
                c.us_per_msg_outside_pacer,
                format!("{mode:?}").to_lowercase(),
                c.pacer_spin_s
            ),
            None => String::new(),
        };
        writeln!(
            f,
            "  loadgen cpu  {:.2} µs/msg (user {:.2} s, sys {:.2} s, {:.0}% of its threads busy){pacer}",
            c.us_per_msg,
            c.user_s,
            c.sys_s,
            c.utilisation * 100.0,
        )?;
        if self.loadgen_limited {
            writeln!(
                f,
                "  LOADGEN-LIMITED: {} — throughput and latency here measure the loadgen, not the server",
                self.limited_reasons.join("; ")
            )?;
        }
        Ok(())
    }
}

/// Share of the loadgen threads' time busy (not counting the pacer's spin) past which a run
/// counts as loadgen-limited.
pub const BUSY_LIMIT: f64 = 0.9;

/// Why a run's figures may describe the loadgen rather than the server; empty if none.
///
/// - the achieved rate fell short of the asked one by more than 5 % (or three standard
///   deviations of a Poisson count, for short runs);
/// - the loadgen's own lateness (send lag less queueing behind the connection's earlier
///   messages) has a p99 over 20 % of the latency p99 and over 25 µs: latency from the
///   intended time includes it;
/// - the loadgen's threads were more than 90 % busy.
pub fn limited_reasons(r: &Report) -> Vec<String> {
    let mut why = Vec::new();
    if let Some(rate) = r.rate {
        let expected = rate * r.elapsed_s;
        let slack = 0.05f64.max(3.0 / expected.max(1.0).sqrt());
        if (r.counts.messages as f64) < expected * (1.0 - slack) {
            why.push(format!(
                "achieved {:.0} msg/s, {:.0}% of the {rate} asked",
                r.msgs_per_s,
                100.0 * r.msgs_per_s / rate
            ));
        }
        let (lag, lat) = (r.loadgen_late_us.p99, r.latency_us.p99);
        if lag > 25 && lag as f64 > 0.2 * lat as f64 {
            // The precise pacer wakes each sender on time, so its lateness is the thread
            // being busy: on loopback, mostly its own earlier sends (each runs the server's
            // receive path, ~10 µs). The sleeping pacer adds its timer's slack.
            let cause = match r.loadgen_cpu.pacer {
                Some(crate::pace::PacerMode::Sleep) => {
                    "the sleeping pacer's timer slack, and sends queued behind the loadgen's own sends"
                }
                _ => "sends queued behind the loadgen's own sends: add --threads or load hosts",
            };
            why.push(format!(
                "the loadgen's send lag p99 {lag} µs is {:.0}% of the latency p99 ({lat} µs): {cause}",
                100.0 * lag as f64 / lat.max(1) as f64
            ));
        }
    }
    if r.loadgen_cpu.utilisation > BUSY_LIMIT {
        why.push(format!(
            "its threads were {:.0}% busy",
            100.0 * r.loadgen_cpu.utilisation
        ));
    }
    why
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Send lag that the precise pacer did not cause is named as the loadgen's own queue;
    /// with the sleeping pacer its slack is named too.
    #[test]
    fn loadgen_lateness_names_its_cause() {
        let mut r = Report {
            rate: Some(1000.0),
            elapsed_s: 1.0,
            ..Report::default()
        };
        r.counts.messages = 1000;
        r.loadgen_late_us.p99 = 300;
        r.latency_us.p99 = 600;
        r.loadgen_cpu.pacer = Some(crate::pace::PacerMode::Precise);
        let why = limited_reasons(&r).join("; ");
        assert!(
            why.contains("sends queued behind the loadgen's own sends: add --threads"),
            "{why}"
        );
        r.loadgen_cpu.pacer = Some(crate::pace::PacerMode::Sleep);
        assert!(limited_reasons(&r).join("; ").contains("timer slack"));
        r.loadgen_late_us.p99 = 20;
        assert!(limited_reasons(&r).is_empty());
    }
}
