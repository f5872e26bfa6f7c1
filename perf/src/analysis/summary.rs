//! Side-by-side summary of runs tagged `scenario=…`, `backend=…` and `round=…`: medians over
//! rounds, ratios to a baseline backend measured in the same rounds, and the spread of those
//! ratios, so that noise on a shared machine shows instead of hiding.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use ringecho_loadgen::report::Report;

use super::grid::{Contrast, Point};
use super::stats::{median, spread};

/// One backend in one scenario, summarised over its rounds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Row {
    /// Scenario tag.
    pub scenario: String,
    /// Backend tag.
    pub backend: String,
    /// Runs summarised.
    pub rounds: usize,
    /// Median messages per second.
    pub msgs_per_s: f64,
    /// Median MiB per second.
    pub mib_per_s: f64,
    /// Median p50 latency.
    pub p50_us: f64,
    /// Median p99 latency.
    pub p99_us: f64,
    /// Median p99.9 latency.
    pub p999_us: f64,
    /// Median maximum latency.
    pub max_us: f64,
    /// Median server CPU µs per message.
    pub server_cpu_us_per_msg: f64,
    /// Median server user µs per message.
    pub server_user_us_per_msg: f64,
    /// Median server system µs per message.
    pub server_sys_us_per_msg: f64,
    /// Median server CPU µs per connection (µs per message × messages per connection), in
    /// the scenarios where each connection carries one message (`cpr`, `cprrst`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cpu_us_per_conn: Option<f64>,
    /// Server syscalls per message, from the counting pass.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_syscalls_per_msg: Option<f64>,
    /// Median busy time of the server's cores per message (/proc/stat, every mode), where
    /// the server ran on cores apart from the loadgen's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cores_busy_us_per_msg: Option<f64>,
    /// Median of that busy time not charged to the server's process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cores_other_us_per_msg: Option<f64>,
    /// Median time stolen from the server's cores by the hypervisor, per message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cores_steal_us_per_msg: Option<f64>,
    /// Rounds whose cores' busy time differed from the process's CPU by more than 5 %.
    pub cores_differ_rounds: usize,
    /// Largest server RSS at the end of a window, MiB.
    pub server_rss_mib: f64,
    /// Median loadgen CPU µs per message.
    pub loadgen_us_per_msg: f64,
    /// Median loadgen CPU over its threads' wall time.
    pub loadgen_utilisation: f64,
    /// FIN closes, all rounds.
    pub fin: u64,
    /// RST closes, all rounds.
    pub rst: u64,
    /// Whether the server's FIN/RST counts matched in every round.
    pub server_agrees: bool,
    /// Mismatched bytes, all rounds.
    pub mismatches: u64,
    /// Failed connections, all rounds.
    pub errors: u64,
    /// Median msgs/s over the baseline's, round by round.
    pub msgs_ratio: Option<f64>,
    /// Median server CPU per message over the baseline's, round by round.
    pub cpu_ratio: Option<f64>,
    /// Lowest and highest per-round CPU ratio.
    pub cpu_ratio_spread: Option<(f64, f64)>,
    /// The baseline's row only: its second run in each round over its first (an A/A pair),
    /// the median; what one server measures against itself here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aa_ratio: Option<f64>,
    /// The lowest and highest of those A/A ratios: the noise floor a winner must clear.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aa_spread: Option<(f64, f64)>,
    /// Rounds the loadgen marked loadgen-limited.
    pub loadgen_limited_rounds: usize,
    /// Whether the server reported its own close counts (a metrics endpoint); without them
    /// its FIN/RST are shown as "—", not as agreement.
    pub witnessed: bool,
    /// Why the server's runs could not be made, if they could not (the row has no figures).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// The server the ratio columns divide by.
    pub baseline: String,
    /// What the server set on a socket it accepted (read once per comparison).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket_options: Option<super::sockopts::SocketOptions>,
    /// The server's threads, at a scaling point (`compare --threads`; scenario `NAME@Nt`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_threads: Option<usize>,
    /// How evenly SO_REUSEPORT spread the connections over the server's threads: the round
    /// with the widest spread (a ringecho server with two threads or more).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accepted_balance: Option<super::scaling::Balance>,
    /// Its runs' JSON files, relative to the results directory (`runs/…`), every pass.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub runs: Vec<String>,
    /// This server against its counterparts in the 2×2 of interface × driver, from the
    /// same rounds (`crate::grid`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub contrasts: Vec<Contrast>,
}

/// The median of a figure the server's runs may lack; `None` when none has it.
fn some_median(
    runs: &[&Report],
    f: impl Fn(&ringecho_loadgen::witness::ServerCost) -> Option<f64>,
) -> Option<f64> {
    let v: Vec<f64> = runs
        .iter()
        .filter_map(|r| r.server.as_ref().and_then(&f))
        .collect();
    (!v.is_empty()).then(|| median(v))
}

fn tag<'a>(r: &'a Report, k: &str) -> &'a str {
    r.tags.get(k).map(String::as_str).unwrap_or("")
}

/// The reports of a comparison, grouped per scenario and server.
struct Groups<'a> {
    /// Measured runs (failed ones too), by scenario and server.
    runs: BTreeMap<(String, String), Vec<&'a Report>>,
    /// The syscall pass's syscalls per message, by scenario and server.
    syscalls: BTreeMap<(String, String), Vec<f64>>,
    /// The baseline's second run of each round (`pass=aa`), by scenario and server.
    aa: BTreeMap<(String, String), Vec<&'a Report>>,
    /// Scenarios in the order first seen.
    order: Vec<String>,
    /// Why a server's run failed, the first reason per scenario and server.
    failures: BTreeMap<(String, String), String>,
}

fn group(reports: &[Report]) -> Groups<'_> {
    let mut g = Groups {
        runs: BTreeMap::new(),
        syscalls: BTreeMap::new(),
        aa: BTreeMap::new(),
        order: Vec::new(),
        failures: BTreeMap::new(),
    };
    for r in reports {
        let key = (
            tag(r, "scenario").to_string(),
            tag(r, "backend").to_string(),
        );
        // Runs that counted syscalls paid for the counting: they give syscalls/msg only.
        if tag(r, "pass") == "syscalls" {
            if let Some(n) = r.server.and_then(|s| s.syscalls_per_msg) {
                g.syscalls.entry(key).or_default().push(n);
            }
            continue;
        }
        if tag(r, "pass") == "aa" {
            if r.failure.is_none() {
                g.aa.entry(key).or_default().push(r);
            }
            continue;
        }
        if let Some(why) = &r.failure {
            g.failures.entry(key.clone()).or_insert_with(|| why.clone());
        }
        if !g.order.contains(&key.0) {
            g.order.push(key.0.clone());
        }
        g.runs.entry(key).or_default().push(r);
    }
    g
}

/// Summarises `reports` per scenario and backend, with ratios to `baseline`, each round
/// paired with the baseline's same round; then the scenario's contrasts on its rows.
pub fn summarise(reports: &[Report], baseline: &str) -> Vec<Row> {
    let g = group(reports);
    let mut rows = Vec::new();
    for scenario in &g.order {
        let base: BTreeMap<&str, &Report> = g
            .runs
            .get(&(scenario.clone(), baseline.to_string()))
            .map(|v| v.iter().map(|r| (tag(r, "round"), *r)).collect())
            .unwrap_or_default();
        let aa = aa_ratios(&g, scenario, baseline, &base);
        let aa_spread = (!aa.is_empty()).then(|| spread(&aa));
        for ((s, backend), all) in g.runs.iter().filter(|((s, _), _)| s == scenario) {
            let mut r = row(s, backend, all, &base, &g, baseline);
            if backend == baseline && !aa.is_empty() {
                r.aa_ratio = Some(median(aa.clone()));
                r.aa_spread = aa_spread;
            }
            rows.push(r);
        }
        contrasts(&mut rows, scenario, &g, aa_spread);
    }
    rows
}

/// The baseline's A/A ratios in `scenario`: each round's second run's CPU per message over
/// its first's (the second is tagged with the round and `aa` after it).
fn aa_ratios(
    g: &Groups,
    scenario: &str,
    baseline: &str,
    base: &BTreeMap<&str, &Report>,
) -> Vec<f64> {
    let cpu = |r: &Report| r.server.map_or(0.0, |s| s.cpu_us_per_msg);
    g.aa.get(&(scenario.to_string(), baseline.to_string()))
        .into_iter()
        .flatten()
        .filter_map(|r| {
            let round = tag(r, "round");
            let first = base.get(round.strip_suffix("aa").unwrap_or(round))?;
            let (x, y) = (cpu(r), cpu(first));
            (x > 0.0 && y > 0.0).then_some(x / y)
        })
        .collect()
}

/// One server's row in one scenario: medians over its clean rounds, ratios to the
/// baseline's same rounds.
fn row(
    s: &str,
    backend: &str,
    all: &[&Report],
    base: &BTreeMap<&str, &Report>,
    g: &Groups,
    baseline: &str,
) -> Row {
    let failure = g
        .failures
        .get(&(s.to_string(), backend.to_string()))
        .cloned();
    let runs: Vec<&Report> = all
        .iter()
        .copied()
        .filter(|r| r.failure.is_none())
        .collect();
    let col = |f: &dyn Fn(&Report) -> f64| median(runs.iter().map(|r| f(r)).collect());
    let server = |f: &dyn Fn(&ringecho_loadgen::witness::ServerCost) -> f64| {
        median(
            runs.iter()
                .filter_map(|r| r.server.as_ref().map(f))
                .collect(),
        )
    };
    let paired = |f: &dyn Fn(&Report) -> f64| -> Vec<f64> {
        runs.iter()
            .filter_map(|r| {
                let b = base.get(tag(r, "round"))?;
                let (x, y) = (f(r), f(b));
                (y > 0.0).then_some(x / y)
            })
            .collect()
    };
    let cpu = |r: &Report| r.server.map_or(0.0, |s| s.cpu_us_per_msg);
    let cpu_ratios = paired(&cpu);
    let msg_ratios = paired(&|r: &Report| r.msgs_per_s);
    let syscalls = g
        .syscalls
        .get(&(s.to_string(), backend.to_string()))
        .cloned()
        .unwrap_or_default();
    Row {
        scenario: s.to_string(),
        backend: backend.to_string(),
        rounds: runs.len(),
        msgs_per_s: col(&|r| r.msgs_per_s),
        mib_per_s: col(&|r| r.mib_per_s),
        p50_us: col(&|r| r.latency_us.p50 as f64),
        p99_us: col(&|r| r.latency_us.p99 as f64),
        p999_us: col(&|r| r.latency_us.p999 as f64),
        max_us: col(&|r| r.latency_us.max as f64),
        server_cpu_us_per_msg: server(&|s| s.cpu_us_per_msg),
        server_user_us_per_msg: server(&|s| s.user_us_per_msg),
        server_sys_us_per_msg: server(&|s| s.sys_us_per_msg),
        server_cpu_us_per_conn: per_connection(s)
            .then(|| {
                runs.iter()
                    .filter_map(|r| {
                        let per_msg = r.server.as_ref()?.cpu_us_per_msg;
                        (r.counts.connects > 0).then(|| {
                            per_msg * r.counts.messages_total as f64 / r.counts.connects as f64
                        })
                    })
                    .collect::<Vec<f64>>()
            })
            .filter(|v| !v.is_empty())
            .map(median),
        server_syscalls_per_msg: (!syscalls.is_empty()).then(|| median(syscalls)),
        server_cores_busy_us_per_msg: some_median(&runs, |s| s.cores_busy_us_per_msg),
        server_cores_other_us_per_msg: some_median(&runs, |s| s.cores_other_us_per_msg),
        server_cores_steal_us_per_msg: some_median(&runs, |s| s.cores_steal_us_per_msg),
        cores_differ_rounds: runs
            .iter()
            .filter(|r| r.server.is_some_and(|s| s.cores_differ()))
            .count(),
        server_rss_mib: runs
            .iter()
            .filter_map(|r| r.server.map(|s| s.rss_kb as f64 / 1024.0))
            .fold(0.0, f64::max),
        loadgen_us_per_msg: col(&|r| r.loadgen_cpu.us_per_msg),
        loadgen_utilisation: col(&|r| r.loadgen_cpu.utilisation),
        fin: runs.iter().map(|r| r.counts.closes.fin).sum(),
        rst: runs.iter().map(|r| r.counts.closes.rst).sum(),
        server_agrees: runs.iter().all(|r| r.server_agrees != Some(false)),
        mismatches: runs.iter().map(|r| r.counts.mismatches).sum(),
        errors: runs.iter().map(|r| r.counts.failed()).sum(),
        msgs_ratio: (!msg_ratios.is_empty()).then(|| median(msg_ratios)),
        cpu_ratio: (!cpu_ratios.is_empty()).then(|| median(cpu_ratios.clone())),
        cpu_ratio_spread: (!cpu_ratios.is_empty()).then(|| spread(&cpu_ratios)),
        aa_ratio: None,
        aa_spread: None,
        loadgen_limited_rounds: runs.iter().filter(|r| r.loadgen_limited).count(),
        witnessed: runs.iter().all(|r| r.server_closes.is_some()),
        failure,
        baseline: baseline.to_string(),
        socket_options: None,
        server_threads: crate::scenario::at_threads(s).1,
        runs: Vec::new(),
        accepted_balance: runs
            .iter()
            .filter(|r| r.server_accepted_by_thread.len() > 1)
            .filter_map(|r| super::scaling::Balance::of(&r.server_accepted_by_thread))
            .max_by(|a, b| a.cv.total_cmp(&b.cv)),
        contrasts: Vec::new(),
    }
}

/// Attaches the 2×2's contrasts to `scenario`'s rows.
fn contrasts(rows: &mut [Row], scenario: &str, g: &Groups, aa: Option<(f64, f64)>) {
    let servers: Vec<&str> = g
        .runs
        .keys()
        .filter(|(s, _)| s == scenario)
        .map(|(_, b)| b.as_str())
        .collect();
    let points = |name: &str| -> Vec<Point> {
        g.runs
            .get(&(scenario.to_string(), name.to_string()))
            .into_iter()
            .flatten()
            // A run that lost or altered bytes answers no question about cost.
            .filter(|r| r.is_clean())
            .map(|r| Point {
                round: tag(r, "round"),
                cpu: r.server.map_or(0.0, |s| s.cpu_us_per_msg),
                msgs: r.msgs_per_s,
            })
            .collect()
    };
    for c in super::grid::contrasts(&servers, points, aa) {
        if let Some(row) = rows
            .iter_mut()
            .find(|r| r.scenario == scenario && r.backend == c.server)
        {
            row.contrasts.push(c);
        }
    }
}

/// Whether the scenario or map cell called `name` carries one message per connection.
pub fn per_connection(name: &str) -> bool {
    let name = crate::scenario::at_threads(name).0;
    crate::scenario::find(name).is_some_and(crate::scenario::Scenario::per_connection)
        || super::map::Cell::parse(name).is_some_and(|c| c.churn == Some(1))
}

/// Whether a row's runs can be trusted, said once for the table and the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// What the table and the report show.
    pub text: String,
    /// How the report marks the row: `good`, `note` or `bad`.
    pub class: &'static str,
}

/// The verdict on a row: failed, corrupted or erroring runs; no server counts to check; the
/// server's FIN/RST counts against ours.
pub fn verdict(r: &Row) -> Verdict {
    let (text, class) = if let Some(why) = &r.failure {
        (format!("FAILED: {why}"), "bad")
    } else if r.mismatches > 0 || r.errors > 0 {
        (
            format!(
                "FAILED: {} bytes corrupted, {} errors",
                r.mismatches, r.errors
            ),
            "bad",
        )
    } else if !r.witnessed {
        (
            "— (the server reports no counts; kernel counters in the JSON)".into(),
            "note",
        )
    } else if !r.server_agrees {
        ("DISAGREE".into(), "bad")
    } else {
        ("agree".into(), "good")
    };
    Verdict { text, class }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use ringecho_loadgen::witness::ServerCost;

    /// A measured run's report, tagged as compare tags it.
    pub(crate) fn run(scenario: &str, backend: &str, round: &str, msgs: f64, cpu: f64) -> Report {
        Report {
            tags: [
                ("scenario", scenario),
                ("backend", backend),
                ("round", round),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            msgs_per_s: msgs,
            server: Some(ServerCost {
                cpu_us_per_msg: cpu,
                ..ServerCost::default()
            }),
            ..Report::default()
        }
    }

    /// The baseline's second run per round is its A/A pair: on its row as `aa_ratio` and
    /// `aa_spread`, kept out of its medians, and the band the contrasts are called against.
    #[test]
    fn the_a_a_pair_sets_the_noise_floor() {
        let mut reports = Vec::new();
        for (round, base, again, ms) in [
            ("1", 5.0, 5.5, 4.5),
            ("2", 5.0, 4.6, 4.6),
            ("3", 5.0, 5.2, 4.4),
        ] {
            reports.push(run("a", "epoll-loop", round, 100.0, base));
            reports.push(run("a", "multishot", round, 100.0, ms));
            let mut r = run("a", "epoll-loop", &format!("{round}aa"), 100.0, again);
            r.tags.insert("pass".into(), "aa".into());
            reports.push(r);
        }
        let rows = summarise(&reports, "epoll-loop");
        assert_eq!(rows.len(), 2, "the A/A runs are not a row of their own");
        let base = rows.iter().find(|r| r.backend == "epoll-loop").unwrap();
        assert_eq!(base.rounds, 3);
        assert_eq!(
            base.server_cpu_us_per_msg, 5.0,
            "A/A runs stay out of the medians"
        );
        assert!((base.aa_ratio.unwrap() - 1.04).abs() < 1e-9);
        let (lo, hi) = base.aa_spread.unwrap();
        assert!((lo - 0.92).abs() < 1e-9 && (hi - 1.1).abs() < 1e-9);
        let ms = rows.iter().find(|r| r.backend == "multishot").unwrap();
        assert!(ms.aa_ratio.is_none());
        // 0.88–0.92 against a band of 0.91–1.1: not wholly outside it, so level.
        let c = &ms.contrasts[0];
        assert_eq!(
            c.call,
            Some(crate::analysis::grid::Call::Level),
            "{}",
            c.verdict
        );
    }

    #[test]
    fn ratios_pair_rounds_and_take_medians() {
        let reports = vec![
            run("a", "epoll", "1", 100.0, 5.0),
            run("a", "multishot", "1", 120.0, 4.0),
            run("a", "epoll", "2", 200.0, 10.0),
            run("a", "multishot", "2", 220.0, 9.0),
            run("a", "epoll", "3", 100.0, 5.0),
            run("a", "multishot", "3", 100.0, 4.5),
            {
                let mut r = run("a", "multishot", "s", 1.0, 99.0);
                r.tags.insert("pass".into(), "syscalls".into());
                r.server.as_mut().unwrap().syscalls_per_msg = Some(0.5);
                r
            },
        ];
        let rows = summarise(&reports, "epoll");
        let ms = rows.iter().find(|r| r.backend == "multishot").unwrap();
        assert_eq!(ms.rounds, 3);
        // Per-round CPU ratios 0.8, 0.9, 0.9: median 0.9, spread 0.8–0.9.
        assert_eq!(ms.cpu_ratio, Some(0.9));
        assert_eq!(ms.cpu_ratio_spread, Some((0.8, 0.9)));
        assert_eq!(ms.msgs_ratio, Some(1.1));
        assert_eq!(ms.server_syscalls_per_msg, Some(0.5));
        let ep = rows.iter().find(|r| r.backend == "epoll").unwrap();
        assert_eq!(ep.cpu_ratio, Some(1.0));
    }

    #[test]
    fn a_scenario_or_a_cell_of_one_message_per_connection_is_counted_per_connection() {
        assert!(per_connection("cpr") && per_connection("cprrst"));
        assert!(!per_connection("churn") && !per_connection("c100x64"));
        assert!(per_connection("cpr@2t"));
    }
}
