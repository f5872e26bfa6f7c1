//! Prometheus text exposition at `http://ADDR/metrics`, served from its own thread so scrapes
//! never run on an echo thread.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use ringecho_common::metric;

use crate::admission::Refusal;
use crate::stats::{Snapshot, Stats};

/// Renders a snapshot, and the process's own figures, in the Prometheus text format.
///
/// The registry is built per scrape from a snapshot: the echo threads keep plain per-thread
/// counters and never touch Prometheus types. Names, help texts and labels come from
/// [`metric`]'s table; this pairs each with its figure.
pub fn render(s: &Snapshot) -> String {
    let mut reg = Registry::default();
    let counter = |v: u64| {
        let c: Counter = Counter::default();
        c.inc_by(v);
        c
    };
    reg.register(
        metric::CONNECTIONS_ACCEPTED.name,
        metric::CONNECTIONS_ACCEPTED.help,
        counter(s.accepted),
    );
    let by_thread = Family::<Vec<(String, String)>, Counter>::default();
    for (i, v) in s.accepted_by_thread.iter().enumerate() {
        by_thread
            .get_or_create(&vec![(
                label(&metric::THREAD_CONNECTIONS_ACCEPTED),
                i.to_string(),
            )])
            .inc_by(*v);
    }
    reg.register(
        metric::THREAD_CONNECTIONS_ACCEPTED.name,
        metric::THREAD_CONNECTIONS_ACCEPTED.help,
        by_thread,
    );
    reg.register(
        metric::CONNECTIONS_REJECTED.name,
        metric::CONNECTIONS_REJECTED.help,
        counter(s.refused()),
    );
    let refused = Family::<Vec<(String, String)>, Counter>::default();
    for (reason, v) in [
        (Refusal::Limit.label(), s.refused_limit),
        (Refusal::PerSource.label(), s.refused_per_source),
    ] {
        refused
            .get_or_create(&vec![(label(&metric::CONNECTIONS_REFUSED), reason.into())])
            .inc_by(v);
    }
    reg.register(
        metric::CONNECTIONS_REFUSED.name,
        metric::CONNECTIONS_REFUSED.help,
        refused,
    );
    reg.register(
        metric::CONNECTIONS_EVICTED.name,
        metric::CONNECTIONS_EVICTED.help,
        counter(s.evicted),
    );
    let active: Gauge = Gauge::default();
    active.set(s.active() as i64);
    reg.register(
        metric::CONNECTIONS_ACTIVE.name,
        metric::CONNECTIONS_ACTIVE.help,
        active,
    );
    reg.register(
        metric::BYTES_ECHOED.name,
        metric::BYTES_ECHOED.help,
        counter(s.bytes_echoed),
    );
    reg.register(
        metric::RECEIVES_ECHOED.name,
        metric::RECEIVES_ECHOED.help,
        counter(s.recvs),
    );
    reg.register(
        metric::MESSAGES_ECHOED.name,
        metric::MESSAGES_ECHOED.help,
        counter(s.recvs),
    );
    reg.register(
        metric::ACCEPT_ERRORS.name,
        metric::ACCEPT_ERRORS.help,
        counter(s.accept_errors),
    );
    let closes = Family::<Vec<(String, String)>, Counter>::default();
    for (how, v) in [
        ("fin", s.fin),
        ("rst", s.rst),
        ("error", s.error),
        ("server", s.server),
    ] {
        closes
            .get_or_create(&vec![(label(&metric::CLOSES), how.into())])
            .inc_by(v);
    }
    reg.register(metric::CLOSES.name, metric::CLOSES.help, closes);
    let errors = Family::<Vec<(String, String)>, Counter>::default();
    for (kind, v) in &s.errors_by_kind {
        errors
            .get_or_create(&vec![(label(&metric::CONNECTION_ERRORS), kind.clone())])
            .inc_by(*v);
    }
    reg.register(
        metric::CONNECTION_ERRORS.name,
        metric::CONNECTION_ERRORS.help,
        errors,
    );
    reg.register(metric::SENDS.name, metric::SENDS.help, counter(s.sends));
    reg.register(
        metric::SEND_BUFFERS.name,
        metric::SEND_BUFFERS.help,
        counter(s.send_buffers),
    );
    reg.register(
        metric::RECV_COMPLETIONS.name,
        metric::RECV_COMPLETIONS.help,
        counter(s.recv_completions),
    );
    reg.register(
        metric::RECV_BUFFERS.name,
        metric::RECV_BUFFERS.help,
        counter(s.recv_buffers),
    );
    let held = Family::<Vec<(String, String)>, Gauge>::default();
    for (kind, v) in [
        ("ring", s.ring_buffers_held),
        ("spill", s.spill_buffers_held),
    ] {
        held.get_or_create(&vec![(label(&metric::BUFFERS_HELD), kind.into())])
            .set(v as i64);
    }
    reg.register(metric::BUFFERS_HELD.name, metric::BUFFERS_HELD.help, held);
    reg.register_collector(Box::new(Process));
    let mut out = String::new();
    encode(&mut out, &reg).expect("formatting into a String cannot fail");
    out
}

/// The label name of a labelled metric in the table.
fn label(m: &metric::Metric) -> String {
    m.label.expect("a labelled metric").to_string()
}

/// The process's own cost, in the names Prometheus's client libraries use, so a loadgen on
/// another host can read the server's CPU and memory over exactly its measured window: a
/// prometheus-client collector, read from /proc at each scrape. Figures that cannot be read
/// are left out rather than reported as zero.
#[derive(Debug)]
struct Process;

impl Process {
    /// A counter's family name: the text encoder adds `_total` to its samples.
    fn family(name: &str) -> &str {
        name.strip_suffix("_total").unwrap_or(name)
    }
}

impl Collector for Process {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        use ringecho_common::procfs;
        if let Ok(p) = procfs::ProcSample::read_self() {
            let total = enc.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds.",
                None,
                MetricType::Counter,
            )?;
            ConstCounter::new(p.user_s + p.sys_s).encode(total)?;
            let m = &metric::PROCESS_CPU_SECONDS_TOTAL;
            let mut by_mode =
                enc.encode_descriptor(Self::family(m.name), m.help, None, MetricType::Counter)?;
            for (mode, v) in [("user", p.user_s), ("system", p.sys_s)] {
                let labels = [(label(m), mode.to_string())];
                ConstCounter::new(v).encode(by_mode.encode_family(&labels)?)?;
            }
            let rss = enc.encode_descriptor(
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new((p.rss_kb * 1024) as f64).encode(rss)?;
        }
        if let Ok(n) = procfs::open_fds() {
            let g = enc.encode_descriptor(
                "process_open_fds",
                "Number of open file descriptors.",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(n as f64).encode(g)?;
        }
        if let Ok(n) = procfs::max_fds() {
            let g = enc.encode_descriptor(
                "process_max_fds",
                "Maximum number of open file descriptors.",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(n as f64).encode(g)?;
        }
        if let Ok(t) = procfs::start_time_unix_s() {
            let g = enc.encode_descriptor(
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(t).encode(g)?;
        }
        Ok(())
    }
}

/// The metrics endpoint; stops when dropped.
pub struct MetricsServer {
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
    addr: SocketAddr,
}

impl MetricsServer {
    /// Binds `addr` and serves `/metrics` from `stats` on a thread of its own.
    pub fn start(addr: SocketAddr, stats: Stats) -> io::Result<Self> {
        let server = Arc::new(tiny_http::Server::http(addr).map_err(io::Error::other)?);
        let addr = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| io::Error::other("metrics listener has no IP address"))?;
        let srv = server.clone();
        let thread = std::thread::Builder::new()
            .name("ringecho-metrics".into())
            .spawn(move || {
                for req in srv.incoming_requests() {
                    let resp = if req.url() == "/metrics" {
                        let header = tiny_http::Header::from_bytes(
                            "Content-Type",
                            "text/plain; version=0.0.4; charset=utf-8",
                        )
                        .expect("static header is valid");
                        tiny_http::Response::from_string(render(&stats.snapshot()))
                            .with_header(header)
                    } else {
                        tiny_http::Response::from_string("not found; try /metrics\n")
                            .with_status_code(404)
                    };
                    if let Err(e) = req.respond(resp) {
                        tracing::debug!("metrics response failed: {e}");
                    }
                }
            })?;
        Ok(MetricsServer {
            server,
            thread: Some(thread),
            addr,
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_contract_names() {
        let s = Snapshot {
            accepted: 10,
            accepted_by_thread: vec![6, 4],
            fin: 6,
            rst: 3,
            bytes_echoed: 640,
            ..Snapshot::default()
        };
        let text = render(&s);
        for line in [
            "ringecho_connections_accepted_total 10",
            "ringecho_thread_connections_accepted_total{thread=\"0\"} 6",
            "ringecho_thread_connections_accepted_total{thread=\"1\"} 4",
            "ringecho_connections_active 1",
            "ringecho_bytes_echoed_total 640",
            "ringecho_closes_total{how=\"fin\"} 6",
            "ringecho_closes_total{how=\"rst\"} 3",
            "ringecho_closes_total{how=\"error\"} 0",
            "ringecho_closes_total{how=\"server\"} 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }

    /// Every metric in the table is written with its type and help text, and nothing else
    /// under the `ringecho_` prefix is.
    #[test]
    fn renders_the_table_and_only_the_table() {
        let text = render(&Snapshot::default());
        for m in metric::ALL {
            let kind = match m.kind {
                metric::Kind::Counter => "counter",
                metric::Kind::Gauge => "gauge",
            };
            let typed = text
                .lines()
                .any(|l| l == format!("# TYPE {} {kind}", Process::family(m.name)));
            let helped = text
                .lines()
                .any(|l| l.starts_with(&format!("# HELP {} {}", Process::family(m.name), m.help)));
            assert!(typed && helped, "{} in\n{text}", m.name);
        }
        for l in text.lines().filter(|l| l.starts_with("# TYPE ringecho_")) {
            let name = l.split(' ').nth(2).unwrap();
            assert!(
                metric::ALL.iter().any(|m| Process::family(m.name) == name),
                "{name}"
            );
        }
        // The process's figures come from the collector, before the one `# EOF`.
        for name in [
            "process_cpu_seconds_total ",
            "ringecho_process_cpu_seconds_total{mode=\"user\"} ",
            "ringecho_process_cpu_seconds_total{mode=\"system\"} ",
            "process_resident_memory_bytes ",
            "process_open_fds ",
            "process_max_fds ",
            "process_start_time_seconds ",
        ] {
            assert!(
                text.lines().any(|l| l.starts_with(name)),
                "{name} in\n{text}"
            );
        }
        assert_eq!(text.matches("# EOF").count(), 1);
        assert!(text.ends_with("# EOF\n"));
    }
}
