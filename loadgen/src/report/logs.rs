//! The run's histograms on disk: the .hgrm percentile distribution, the HdrHistogram
//! interval log with the run's counts in a comment, and the merge of several logs into one
//! report.

use std::io::{self, BufRead, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use hdrhistogram::serialization::interval_log::{
    IntervalLogIterator, IntervalLogWriterBuilder, LogEntry, Tag,
};
use hdrhistogram::serialization::{Deserializer, V2DeflateSerializer};
use hdrhistogram::Histogram;

use super::{Percentiles, Report};
use crate::engine::new_histogram;

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
        merged.msgs_per_s = merged.counts.messages as f64 / merged.elapsed_s;
        merged.mib_per_s = merged.counts.bytes as f64 / merged.elapsed_s / (1 << 20) as f64;
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
    m.counts += &r.counts;
    if let Some(h) = r.tags.get("host") {
        let hosts = m.tags.entry("hosts".into()).or_default();
        if !hosts.is_empty() {
            hosts.push(',');
        }
        hosts.push_str(h);
    }
    m.elapsed_s = m.elapsed_s.max(r.elapsed_s);
    m.loadgen_cpu.user_s += r.loadgen_cpu.user_s;
    m.loadgen_cpu.sys_s += r.loadgen_cpu.sys_s;
    if m.counts.messages > 0 {
        m.loadgen_cpu.us_per_msg =
            (m.loadgen_cpu.user_s + m.loadgen_cpu.sys_s) * 1e6 / m.counts.messages as f64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counts::{Closes, Counts};
    use crate::report::Report;

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
                elapsed_s: 1.0 + i as f64,
                counts: Counts {
                    messages: 500,
                    bytes: 500 * 64,
                    closes: Closes {
                        fin: 3,
                        rst: 1,
                        server: 0,
                        rst_unread: 0,
                    },
                    ..Counts::default()
                },
                ..Report::default()
            };
            let p = dir.join(format!("{i}.hlog"));
            write_hist_log(&r, &h, &hist([5]), &mut std::fs::File::create(&p).unwrap()).unwrap();
            paths.push(p);
        }
        let m = merge_logs(&paths).unwrap();
        assert_eq!(m.counts.messages, 1000);
        assert_eq!(
            m.counts.closes,
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
