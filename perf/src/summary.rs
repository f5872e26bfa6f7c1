//! Side-by-side summary of runs tagged `scenario=…`, `backend=…` and `round=…`: medians over
//! rounds, ratios to a baseline backend measured in the same rounds, and the spread of those
//! ratios, so that noise on a shared machine shows instead of hiding.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use ringecho_loadgen::report::Report;

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
    /// Server syscalls per message, from the counting pass.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_syscalls_per_msg: Option<f64>,
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
    /// Rounds the loadgen marked loadgen-limited.
    pub loadgen_limited_rounds: usize,
    /// Whether the server reported its own close counts (a metrics endpoint); without them
    /// its FIN/RST are shown as "—", not as agreement.
    pub witnessed: bool,
    /// Why the server's runs could not be made, if they could not (the row has no figures).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn tag<'a>(r: &'a Report, k: &str) -> &'a str {
    r.tags.get(k).map(String::as_str).unwrap_or("")
}

/// Summarises `reports` per scenario and backend, with ratios to `baseline`.
pub fn summarise(reports: &[Report], baseline: &str) -> Vec<Row> {
    let mut groups: BTreeMap<(String, String), Vec<&Report>> = BTreeMap::new();
    let mut syscall_runs: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut failures: BTreeMap<(String, String), String> = BTreeMap::new();
    for r in reports {
        // Runs that counted syscalls paid for the counting: they give syscalls/msg only.
        if tag(r, "pass") == "syscalls" {
            if let Some(n) = r.server.and_then(|s| s.syscalls_per_msg) {
                let key = (
                    tag(r, "scenario").to_string(),
                    tag(r, "backend").to_string(),
                );
                syscall_runs.entry(key).or_default().push(n);
            }
            continue;
        }
        let scenario = tag(r, "scenario").to_string();
        if let Some(why) = &r.failure {
            failures
                .entry((scenario.clone(), tag(r, "backend").to_string()))
                .or_insert_with(|| why.clone());
        }
        if !order.contains(&scenario) {
            order.push(scenario.clone());
        }
        groups
            .entry((scenario, tag(r, "backend").to_string()))
            .or_default()
            .push(r);
    }
    let mut rows = Vec::new();
    for scenario in &order {
        let base: BTreeMap<&str, &Report> = groups
            .get(&(scenario.clone(), baseline.to_string()))
            .map(|v| v.iter().map(|r| (tag(r, "round"), *r)).collect())
            .unwrap_or_default();
        for ((s, backend), all) in groups.iter().filter(|((s, _), _)| s == scenario) {
            let failure = failures.get(&(s.clone(), backend.clone())).cloned();
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
            let syscalls = syscall_runs
                .get(&(s.clone(), backend.clone()))
                .cloned()
                .unwrap_or_default();
            rows.push(Row {
                scenario: s.clone(),
                backend: backend.clone(),
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
                server_syscalls_per_msg: (!syscalls.is_empty()).then(|| median(syscalls)),
                server_rss_mib: runs
                    .iter()
                    .filter_map(|r| r.server.map(|s| s.rss_kb as f64 / 1024.0))
                    .fold(0.0, f64::max),
                loadgen_us_per_msg: col(&|r| r.loadgen_cpu.us_per_msg),
                loadgen_utilisation: col(&|r| r.loadgen_cpu.utilisation),
                fin: runs.iter().map(|r| r.closes.fin).sum(),
                rst: runs.iter().map(|r| r.closes.rst).sum(),
                server_agrees: runs.iter().all(|r| r.server_agrees != Some(false)),
                mismatches: runs.iter().map(|r| r.mismatches).sum(),
                errors: runs.iter().map(|r| r.errors.values().sum::<u64>()).sum(),
                msgs_ratio: (!msg_ratios.is_empty()).then(|| median(msg_ratios)),
                cpu_ratio: (!cpu_ratios.is_empty()).then(|| median(cpu_ratios.clone())),
                cpu_ratio_spread: (!cpu_ratios.is_empty()).then(|| {
                    let lo = cpu_ratios.iter().copied().fold(f64::INFINITY, f64::min);
                    let hi = cpu_ratios.iter().copied().fold(0.0, f64::max);
                    (lo, hi)
                }),
                loadgen_limited_rounds: runs.iter().filter(|r| r.loadgen_limited).count(),
                witnessed: runs.iter().all(|r| r.server_closes.is_some()),
                failure,
            });
        }
    }
    rows
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

/// The table printed by compare.sh.
pub fn table(rows: &[Row], baseline: &str) -> String {
    let mut s = String::new();
    let x = format!("×{baseline}");
    let columns: [(&str, usize, bool); 19] = [
        ("scenario", 12, true),
        ("backend", 9, true),
        ("msgs/s", 9, false),
        (&x, 6, false),
        ("p50µs", 6, false),
        ("p99µs", 6, false),
        ("p99.9µs", 7, false),
        ("maxµs", 7, false),
        (" srv µs", 7, false),
        ("user", 5, false),
        ("sys", 5, false),
        (&x, 6, false),
        ("spread", 15, false),
        ("sysc", 6, false),
        ("rss MiB", 7, false),
        ("lg µs", 6, false),
        ("lg%", 4, false),
        ("lim", 3, false),
        ("  fin/rst", 0, true),
    ];
    let header: Vec<String> = columns
        .iter()
        .map(|&(name, w, left)| {
            if left {
                format!("{name:<w$}")
            } else {
                format!("{name:>w$}")
            }
        })
        .collect();
    let _ = writeln!(s, "{}", header.join(" "));
    for r in rows {
        let ratio = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.2}"));
        let spread = r
            .cpu_ratio_spread
            .map_or("-".to_string(), |(a, b)| format!("{a:.2}–{b:.2}"));
        if let Some(why) = &r.failure {
            let _ = writeln!(s, "{:<12} {:<9} FAILED: {why}", r.scenario, r.backend);
            continue;
        }
        let verdict = verdict(r).text;
        let _ = writeln!(
            s,
            "{:<12} {:<9} {:>9.0} {:>6} {:>6.0} {:>6.0} {:>7.0} {:>7.0}  {:>6.2} {:>5.2} {:>5.2} {:>6} {:>15} {:>6} {:>7.1} {:>6.2} {:>3.0}% {:>3}  {}/{} {}",
            r.scenario,
            r.backend,
            r.msgs_per_s,
            ratio(r.msgs_ratio),
            r.p50_us,
            r.p99_us,
            r.p999_us,
            r.max_us,
            r.server_cpu_us_per_msg,
            r.server_user_us_per_msg,
            r.server_sys_us_per_msg,
            ratio(r.cpu_ratio),
            spread,
            r.server_syscalls_per_msg.map_or("-".to_string(), |x| format!("{x:.2}")),
            r.server_rss_mib,
            r.loadgen_us_per_msg,
            r.loadgen_utilisation * 100.0,
            format!("{}/{}", r.loadgen_limited_rounds, r.rounds),
            r.fin,
            r.rst,
            verdict,
        );
    }
    let limited = rows.iter().filter(|r| r.loadgen_limited_rounds > 0).count();
    if limited > 0 {
        let _ = writeln!(
            s,
            "note: {limited} of {} rows were loadgen-limited in some round (lim): there msgs/s \
             and latency measure the loadgen as much as the server; server CPU per message \
             (srv µs) is the comparable figure",
            rows.len()
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringecho_loadgen::witness::ServerCost;

    fn run(scenario: &str, backend: &str, round: &str, msgs: f64, cpu: f64) -> Report {
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
        assert!(table(&rows, "epoll").contains("multishot"));
        assert!(!table(&rows, "epoll").contains("saturated"));
    }
}
