//! The run's report: a human summary, JSON, the .hgrm percentile distribution and the
//! HdrHistogram interval log, and the merge of several logs into one report.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, BufRead, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use hdrhistogram::serialization::interval_log::{
    IntervalLogIterator, IntervalLogWriterBuilder, LogEntry, Tag,
};
use hdrhistogram::serialization::{Deserializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::run::new_histogram;
use crate::witness::{KernelCounters, ServerCloses, ServerCost};

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

/// Closes the loadgen initiated, and those the server made first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Closes {
    /// Closed by us with FIN.
    pub fin: u64,
    /// Closed by us with RST (SO_LINGER=0).
    pub rst: u64,
    /// The server closed or reset the connection while an echo was due.
    pub server: u64,
    /// Of `rst`: closes meant as FIN that went out as RST because received bytes were unread
    /// (a server that echoed more than it was sent).
    #[serde(default)]
    pub rst_unread: u64,
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
    /// Measured messages.
    pub messages: u64,
    /// Every echo verified, measured or not (connect probes and warm-up too): what the
    /// server's counters should show for this loadgen.
    pub messages_total: u64,
    /// Bytes of those echoes.
    pub bytes_total: u64,
    /// Measured bytes.
    pub bytes: u64,
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
    /// Connections opened.
    pub connects: u64,
    /// How connections ended, as we saw it.
    pub closes: Closes,
    /// Failed connections by error kind.
    pub errors: BTreeMap<String, u64>,
    /// Echoed bytes that differed from what was sent.
    pub mismatches: u64,
    /// The server's close counts over the run (with --server-metrics).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_closes: Option<ServerCloses>,
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
            && self.mismatches == 0
            && self.errors.is_empty()
            && self.server_agrees != Some(false)
    }

    /// The human summary printed on stdout.
    ///
    /// Long because it is the report's layout: one `writeln!` per line a reader sees, in the
    /// order they read it; split up, the layout would be scattered over functions.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let l = &self.latency_us;
        let _ = writeln!(
            s,
            "ringecho-loadgen: {} connections × {} B to {} ({} threads{}{})",
            self.connections,
            self.payload,
            self.addr,
            self.threads,
            self.rate
                .map(|r| format!(", open loop at {r} msg/s"))
                .unwrap_or_default(),
            self.churn
                .map(|k| format!(", churn every {k} msgs"))
                .unwrap_or_default(),
        );
        let _ = writeln!(
            s,
            "  throughput   {:.0} msgs/s  {:.2} MiB/s  ({} msgs in {:.2} s)",
            self.msgs_per_s, self.mib_per_s, self.messages, self.elapsed_s
        );
        let _ = writeln!(
            s,
            "  latency µs   p50 {}  p90 {}  p99 {}  p99.9 {}  p99.99 {}  max {}",
            l.p50, l.p90, l.p99, l.p999, l.p9999, l.max
        );
        if self.rate.is_some() || self.pipeline > 1 {
            let (v, g) = (&self.service_us, &self.send_lag_us);
            let _ = writeln!(
                s,
                "  service µs   p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
                v.p50, v.p90, v.p99, v.p999, v.max
            );
            let _ = writeln!(
                s,
                "  send lag µs  p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  (loadgen late: p99 {})",
                g.p50, g.p90, g.p99, g.p999, g.max, self.loadgen_late_us.p99
            );
        }
        let _ = writeln!(
            s,
            "  connect µs   p50 {}  p99 {}  ({} connects)",
            self.connect_latency_us.p50, self.connect_latency_us.p99, self.connects
        );
        let p = &self.phases;
        let _ = writeln!(
            s,
            "  phases       connect {:.2} s  warm-up {:.2} s{}  measured {:.2} s{}",
            p.connect_s,
            p.warmup_s,
            match p.warmup_settled {
                Some(true) => " (latency settled)",
                Some(false) => " (latency had not settled: the window may hold a transient)",
                None => "",
            },
            p.measure_s,
            self.start_at
                .map(|a| format!("  (start-at {:.3}, {:.3} s late)", a.unix_s, a.late_s))
                .unwrap_or_default()
        );
        let _ = writeln!(
            s,
            "  closes       fin {}  rst {}{}  by server {}",
            self.closes.fin,
            self.closes.rst,
            if self.closes.rst_unread > 0 {
                format!(
                    " (of which {} FIN closes sent as RST: unread bytes)",
                    self.closes.rst_unread
                )
            } else {
                String::new()
            },
            self.closes.server
        );
        if let Some(sc) = &self.server_closes {
            let verdict = match self.server_agrees {
                Some(true) => "agrees",
                _ => "DISAGREES",
            };
            let _ = writeln!(
                s,
                "  server saw   fin {}  rst {}  error {}  server {}  ({verdict})",
                sc.fin, sc.rst, sc.error, sc.server
            );
        }
        if let Some(k) = &self.kernel {
            let _ = writeln!(
                s,
                "  kernel       OutRsts +{}  EstabResets +{}  TCPAbortOnData +{}  TCPAbortOnClose +{}",
                k.out_rsts, k.estab_resets, k.abort_on_data, k.abort_on_close
            );
        }
        let errors = if self.errors.is_empty() {
            "none".to_string()
        } else {
            self.errors
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(s, "  errors       {errors}");
        let _ = writeln!(s, "  mismatches   {} bytes", self.mismatches);
        if let Some(sv) = &self.server {
            let _ = writeln!(
                s,
                "  server cpu   {:.2} µs/msg (user {:.2}, sys {:.2}){}  {:.3} ctx switches/msg  rss {} KiB (peak {})",
                sv.cpu_us_per_msg,
                sv.user_us_per_msg,
                sv.sys_us_per_msg,
                sv.syscalls_per_msg.map(|n| format!("  {n:.2} syscalls/msg")).unwrap_or_default(),
                sv.ctx_switches_per_msg,
                sv.rss_kb,
                sv.peak_rss_kb
            );
            if let Some(busy) = sv.cores_busy_us_per_msg {
                let _ = writeln!(
                    s,
                    "  server cores {busy:.2} µs/msg busy (every mode, from /proc/stat), {:.2} of it not the server's, {:.2} stolen{}",
                    sv.cores_other_us_per_msg.unwrap_or(0.0),
                    sv.cores_steal_us_per_msg.unwrap_or(0.0),
                    if sv.cores_differ() {
                        "  DIFFERS from the process's CPU by more than 5 %"
                    } else {
                        ""
                    }
                );
            }
        }
        let c = &self.loadgen_cpu;
        let _ = writeln!(
            s,
            "  loadgen cpu  {:.2} µs/msg (user {:.2} s, sys {:.2} s, {:.0}% of its threads busy){}",
            c.us_per_msg,
            c.user_s,
            c.sys_s,
            c.utilisation * 100.0,
            match c.pacer {
                Some(mode) => format!(
                    "; {:.2} µs/msg outside the {} pacer, which spun {:.2} s",
                    c.us_per_msg_outside_pacer,
                    format!("{mode:?}").to_lowercase(),
                    c.pacer_spin_s
                ),
                None => String::new(),
            },
        );
        if self.loadgen_limited {
            let _ = writeln!(
                s,
                "  LOADGEN-LIMITED: {} — throughput and latency here measure the loadgen, not the server",
                self.limited_reasons.join("; ")
            );
        }
        s
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
        if (r.messages as f64) < expected * (1.0 - slack) {
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

/// Writes `h` (µs) in HdrHistogram's percentile-distribution format, values in milliseconds
/// as the standard plotters expect.
pub fn write_hgrm(h: &Histogram<u64>, out: &mut impl Write) -> io::Result<()> {
    writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    )?;
    for v in h.iter_quantiles(1) {
        let q = v.quantile_iterated_to();
        let value = h.highest_equivalent(v.value_iterated_to()) as f64 / 1000.0;
        if q < 1.0 {
            writeln!(
                out,
                "{value:12.3} {q:14.12} {:10} {:14.2}",
                v.count_since_last_iteration(),
                1.0 / (1.0 - q)
            )?;
        } else {
            writeln!(
                out,
                "{value:12.3} {q:14.12} {:10}",
                v.count_since_last_iteration()
            )?;
        }
    }
    writeln!(
        out,
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]",
        h.mean() / 1000.0,
        h.stdev() / 1000.0
    )?;
    writeln!(
        out,
        "#[Max     = {:12.3}, Total count    = {:12}]",
        h.max() as f64 / 1000.0,
        h.len()
    )?;
    writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.buckets(),
        h.distinct_values()
    )?;
    Ok(())
}

/// Tag of the round-trip latency histogram in an interval log.
const LATENCY_TAG: &str = "latency";
/// Tag of the connect latency histogram in an interval log.
const CONNECT_TAG: &str = "connect";
/// Prefix of the comment line carrying the run's counts, for `merge`.
const COUNTS_PREFIX: &str = "ringecho-counts ";

/// Writes the histograms as an HdrHistogram interval log (V2, deflate-compressed), with the
/// run's counts in a comment so `merge` can sum throughput as well.
pub fn write_hist_log(
    report: &Report,
    latency: &Histogram<u64>,
    connect: &Histogram<u64>,
    out: &mut impl Write,
) -> io::Result<()> {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let start = now.saturating_sub(Duration::from_secs_f64(report.elapsed_s));
    let mut ser = V2DeflateSerializer::new();
    let mut log = IntervalLogWriterBuilder::new()
        .with_start_time(SystemTime::UNIX_EPOCH + start)
        .with_base_time(SystemTime::UNIX_EPOCH + start)
        .with_max_value_divisor(1.0)
        .begin_log_with(out, &mut ser)?;
    let counts = serde_json::to_string(report).map_err(io::Error::other)?;
    log.write_comment(&format!("{COUNTS_PREFIX}{counts}"))?;
    let span = Duration::from_secs_f64(report.elapsed_s);
    for (tag, h) in [(LATENCY_TAG, latency), (CONNECT_TAG, connect)] {
        log.write_histogram(h, Duration::ZERO, span, Tag::new(tag))
            .map_err(|e| io::Error::other(format!("{e:?}")))?;
    }
    Ok(())
}

/// Sums interval logs written by several loadgens: histograms are added (percentiles are
/// computed from the sum, never averaged) and counts summed; throughput is the total over the
/// longest run.
pub fn merge_logs(paths: &[impl AsRef<Path>]) -> io::Result<Report> {
    let mut latency = new_histogram();
    let mut connect = new_histogram();
    let mut merged = Report::default();
    let mut de = Deserializer::new();
    for path in paths {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        let bad = |what: String| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: {what}", path.display()),
            )
        };
        let mut found = false;
        for line in io::Cursor::new(&text).lines() {
            let line = line?;
            if let Some(json) = line
                .strip_prefix("#")
                .and_then(|l| l.strip_prefix(COUNTS_PREFIX))
            {
                let r: Report =
                    serde_json::from_str(json).map_err(|e| bad(format!("bad counts line: {e}")))?;
                add_counts(&mut merged, &r);
            }
        }
        for entry in IntervalLogIterator::new(text.as_bytes()) {
            let LogEntry::Interval(ilh) =
                entry.map_err(|e| bad(format!("not an interval log: {e:?}")))?
            else {
                continue;
            };
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(ilh.encoded_histogram())
                .map_err(|e| bad(format!("bad histogram encoding: {e}")))?;
            let h: Histogram<u64> = de
                .deserialize(&mut io::Cursor::new(bytes))
                .map_err(|e| bad(format!("bad histogram: {e:?}")))?;
            let into = match ilh.tag().map(|t| t.as_str()) {
                Some(CONNECT_TAG) => &mut connect,
                _ => &mut latency,
            };
            into.add(&h)
                .map_err(|e| bad(format!("cannot add histogram: {e:?}")))?;
            found = true;
        }
        if !found {
            return Err(bad("no histograms in it".into()));
        }
    }
    merged.latency_us = Percentiles::of(&latency);
    merged.connect_latency_us = Percentiles::of(&connect);
    if merged.elapsed_s > 0.0 {
        merged.msgs_per_s = merged.messages as f64 / merged.elapsed_s;
        merged.mib_per_s = merged.bytes as f64 / merged.elapsed_s / (1 << 20) as f64;
    }
    Ok(merged)
}

fn add_counts(m: &mut Report, r: &Report) {
    if m.addr.is_empty() {
        m.addr = r.addr.clone();
        m.payload = r.payload;
        m.rst_share = r.rst_share;
    }
    m.connections += r.connections;
    m.threads += r.threads;
    m.messages += r.messages;
    m.bytes += r.bytes;
    m.messages_total += r.messages_total;
    m.bytes_total += r.bytes_total;
    if let Some(h) = r.tags.get("host") {
        let hosts = m.tags.entry("hosts".into()).or_default();
        if !hosts.is_empty() {
            hosts.push(',');
        }
        hosts.push_str(h);
    }
    m.connects += r.connects;
    m.elapsed_s = m.elapsed_s.max(r.elapsed_s);
    m.closes.fin += r.closes.fin;
    m.closes.rst += r.closes.rst;
    m.closes.server += r.closes.server;
    m.closes.rst_unread += r.closes.rst_unread;
    m.mismatches += r.mismatches;
    for (k, v) in &r.errors {
        *m.errors.entry(k.clone()).or_default() += v;
    }
    m.loadgen_cpu.user_s += r.loadgen_cpu.user_s;
    m.loadgen_cpu.sys_s += r.loadgen_cpu.sys_s;
    if m.messages > 0 {
        m.loadgen_cpu.us_per_msg =
            (m.loadgen_cpu.user_s + m.loadgen_cpu.sys_s) * 1e6 / m.messages as f64;
    }
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
            messages: 1000,
            ..Report::default()
        };
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

    fn hist(values: impl IntoIterator<Item = u64>) -> Histogram<u64> {
        let mut h = new_histogram();
        for v in values {
            h.record(v).unwrap();
        }
        h
    }

    #[test]
    fn hgrm_has_the_standard_shape() {
        let h = hist(1..=1000);
        let mut out = Vec::new();
        write_hgrm(&h, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)\n\n"));
        assert!(text.contains("#[Max     =        1.000, Total count    =         1000]"));
        let last_value_line = text.lines().rfind(|l| !l.starts_with('#')).unwrap();
        assert!(
            last_value_line.contains("1.000000000000"),
            "{last_value_line}"
        );
    }

    #[test]
    fn merged_logs_sum_histograms_not_percentiles() {
        let dir = std::env::temp_dir().join(format!("ringecho-merge-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // Two hosts: one fast (all 10 µs), one slow (all 1000 µs), equal counts.
        let mut paths = Vec::new();
        for (i, v) in [10u64, 1000].into_iter().enumerate() {
            let h = hist(std::iter::repeat(v).take(500));
            let r = Report {
                addr: "127.0.0.1:1".into(),
                messages: 500,
                bytes: 500 * 64,
                elapsed_s: 1.0 + i as f64,
                closes: Closes {
                    fin: 3,
                    rst: 1,
                    server: 0,
                    rst_unread: 0,
                },
                ..Report::default()
            };
            let p = dir.join(format!("{i}.hlog"));
            write_hist_log(&r, &h, &hist([5]), &mut std::fs::File::create(&p).unwrap()).unwrap();
            paths.push(p);
        }
        let m = merge_logs(&paths).unwrap();
        assert_eq!(m.messages, 1000);
        assert_eq!(
            m.closes,
            Closes {
                fin: 6,
                rst: 2,
                server: 0,
                rst_unread: 0,
            }
        );
        assert_eq!(m.elapsed_s, 2.0);
        assert_eq!(m.msgs_per_s, 500.0);
        // The median of the sum is the fast host's value, p99 the slow one's: no averaging.
        assert_eq!(m.latency_us.p50, 10);
        assert!(m.latency_us.p99 >= 1000 && m.latency_us.p99 < 1010);
        assert_eq!(m.connect_latency_us.p50, 5);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(merge_logs(&[dir.join("missing.hlog")]).is_err());
    }
}
