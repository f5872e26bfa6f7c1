//! The loadgen check (scripts/loadgen-check.sh): whether the loadgen keeps itself out of the
//! numbers on this machine, from runs made minutes apart at most against one epoll server;
//! the runs, and the targets judged from them (one JSON each, by name).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ringecho_loadgen::report::Report;

use crate::cores::Split;
use crate::run::loadgen::{Loadgen, SOURCE_ADDRS};
use crate::run::server::{Launcher, Spec};
use crate::run::signals::Interrupt;

/// The runs the check makes: each one's name (its JSON file's) and loadgen flags, `{win}` and
/// `{warm}` standing for the windows and `{metrics}` for the server's metrics URL.
pub const RUNS: [(&str, &str); 8] = [
    (
        "base1",
        "--connections 1 --rate 1000 --duration {win} --warmup {warm}",
    ),
    ("c19k", "--connections 19000 --rate 2000 --duration {win}"),
    (
        "c1k_1k",
        "--connections 1000 --rate 1000 --duration {win} --warmup {warm}",
    ),
    (
        "c1k_50k",
        "--connections 1000 --rate 50000 --duration {win} --warmup {warm}",
    ),
    (
        "c1k_50k_uniform",
        "--connections 1000 --rate 50000 --arrivals uniform --duration {win} --warmup {warm}",
    ),
    (
        "pipe1",
        "--connections 100 --pipeline 1 --duration {win} --server-metrics {metrics}",
    ),
    (
        "pipe16",
        "--connections 100 --pipeline 16 --duration {win} --server-metrics {metrics}",
    ),
    ("beyond", "--connections 10 --rate 5000000 --duration {win}"),
];

/// The server the loadgen is checked against: tokio's epoll, the runtime's epoll cell.
const CHECKED: &str = crate::analysis::grid::CELLS[2].0;

/// Makes the check's runs (`ringecho-perf loadgen-check`, which scripts/loadgen-check.sh
/// runs): an epoll server on the server's cores, one loadgen thread on the loadgen's, every
/// run's JSON under `results/loadgen-check-<time>/`; then judges them. `quick` shortens
/// every window (a smoke test; the figures are noisier). The error names a run that failed.
pub fn run(bin: &Path, quick: bool) -> crate::Result<()> {
    let (win, warm) = if quick { ("1s", "300ms") } else { ("3s", "1s") };
    let split = Split::here();
    let out = PathBuf::from("results").join(format!("loadgen-check-{}", crate::stamp()));
    std::fs::create_dir_all(&out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let interrupt = Interrupt::catch()?;
    let launcher = Launcher::new(bin, &split);
    let server = launcher
        .start(&Spec::Backend(CHECKED.into()), &out.join("server"))
        .map_err(|why| format!("the server {why}"))?;
    let metrics = server.metrics_url.clone().unwrap_or_default();
    let loadgen = Loadgen::new(bin, &split);
    println!(
        "loadgen-check: server CPUs {}, loadgen CPUs {}, results in {}",
        split.server_cpus,
        split.loadgen_cpus,
        out.display()
    );
    for (name, flags) in RUNS {
        let mut args = vec!["--addr".to_string(), server.addr.to_string()];
        args.extend(["--source-addrs", SOURCE_ADDRS, "--threads", "1"].map(String::from));
        let flags = flags
            .replace("{win}", win)
            .replace("{warm}", warm)
            .replace("{metrics}", &metrics);
        args.extend(flags.split_whitespace().map(String::from));
        let json = out.join(format!("{name}.json"));
        args.extend(["--json".into(), json.to_string_lossy().into_owned()]);
        let txt = out.join(format!("{name}.txt"));
        let file = crate::run::server::create(&txt)?;
        let err = file.try_clone().map_err(|e| e.to_string())?;
        loadgen.run(&args, file, err, &interrupt)?;
        if !crate::nonempty(&json) {
            let said = std::fs::read_to_string(&txt).unwrap_or_default();
            return Err(format!("run {name} failed:\n{said}").into());
        }
    }
    let _ = server.stop();
    judge(&out)
}

/// Judges the runs in `dir`: prints the targets and writes `dir/summary.json`.
pub fn judge(dir: &Path) -> crate::Result<()> {
    let mut runs = BTreeMap::new();
    for (name, _) in RUNS {
        runs.insert(
            name.to_string(),
            crate::read_report(&dir.join(format!("{name}.json")))?,
        );
    }
    let targets = targets(&runs);
    print!("{}", table(&targets, &runs));
    crate::write_json(&dir.join("summary.json"), &targets)
}

/// One target: what it asks, the figure, and whether it was met.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Target {
    /// What the target asks.
    pub target: String,
    /// The measured figure, in words.
    pub figure: String,
    /// `met` or `MISSED`.
    pub result: &'static str,
}

fn target(target: impl Into<String>, figure: String, ok: bool) -> Target {
    Target {
        target: target.into(),
        figure,
        result: if ok { "met" } else { "MISSED" },
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    a as f64 / b.max(1) as f64
}

/// Every target, from the runs by name (each of [`RUNS`] must be there).
pub fn targets(r: &BTreeMap<String, Report>) -> Vec<Target> {
    let mut out = Vec::new();
    let (b, c) = (&r["base1"].latency_us, &r["c19k"].latency_us);
    out.push(target(
        "19,000 conns @2000/s, no warm-up flag: p50 <= 2x 1 conn @1000/s",
        format!("{} vs {} us = {:.2}x", c.p50, b.p50, ratio(c.p50, b.p50)),
        c.p50 <= 2 * b.p50,
    ));
    out.push(target(
        "19,000 conns @2000/s, no warm-up flag: p99 <= 5x 1 conn @1000/s",
        format!("{} vs {} us = {:.2}x", c.p99, b.p99, ratio(c.p99, b.p99)),
        c.p99 <= 5 * b.p99,
    ));
    let lo = r["c1k_1k"].latency_us.p50;
    for (name, label) in [("c1k_50k", "poisson"), ("c1k_50k_uniform", "uniform")] {
        let hi = &r[name];
        let p = hi.latency_us.p50;
        out.push(target(
            format!("1,000 conns @50,000/s ({label}): p50 <= 1.5x @1,000/s"),
            format!("{p} vs {lo} us = {:.2}x", ratio(p, lo)),
            p as f64 <= 1.5 * lo as f64,
        ));
        let (lag, late) = (hi.send_lag_us.p99, hi.loadgen_late_us.p99);
        out.push(target(
            format!("1,000 conns @50,000/s ({label}): send lag p99 <= 20 us"),
            format!(
                "{lag} us (loadgen's own lateness p99 {late} us; achieved {:.0}/s)",
                hi.msgs_per_s
            ),
            lag <= 20,
        ));
    }
    let (p1, p16) = (&r["pipe1"], &r["pipe16"]);
    let gain = p16.msgs_per_s / p1.msgs_per_s.max(1.0);
    let clean = [p1, p16].iter().all(|x| {
        x.counts.mismatches == 0 && x.counts.errors.is_empty() && x.server_agrees == Some(true)
    });
    out.push(target(
        "--pipeline 16 vs 1, 100 conns closed loop: >= 3x msgs/s, verified, server agrees",
        format!(
            "{:.0} vs {:.0} = {gain:.1}x, clean={clean}",
            p16.msgs_per_s, p1.msgs_per_s
        ),
        gain >= 3.0 && clean,
    ));
    let beyond = &r["beyond"];
    out.push(target(
        "a rate beyond the loadgen's capacity is flagged loadgen-limited",
        match beyond.limited_reasons.join("; ") {
            s if s.is_empty() => "not flagged".into(),
            s => s,
        },
        beyond.loadgen_limited,
    ));
    out
}

/// The targets as the script prints them, aligned, then the loadgen-limited runs.
pub fn table(targets: &[Target], r: &BTreeMap<String, Report>) -> String {
    let w = targets
        .iter()
        .map(|t| t.target.chars().count())
        .max()
        .unwrap_or(0);
    let mut s = String::new();
    for t in targets {
        let pad = w - t.target.chars().count();
        s += &format!(
            "{}{}  {:<6}  {}\n",
            t.target,
            " ".repeat(pad),
            t.result,
            t.figure
        );
    }
    let limited: Vec<&str> = r
        .iter()
        .filter(|(_, x)| x.loadgen_limited)
        .map(|(n, _)| n.as_str())
        .collect();
    s += &format!(
        "loadgen-limited runs: {}\n",
        if limited.is_empty() {
            "none".to_string()
        } else {
            limited.join(", ")
        }
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(p50: u64, p99: u64, msgs: f64) -> Report {
        let mut r = Report {
            msgs_per_s: msgs,
            server_agrees: Some(true),
            ..Report::default()
        };
        r.latency_us.p50 = p50;
        r.latency_us.p99 = p99;
        r
    }

    #[test]
    fn targets_are_judged_from_the_runs() {
        let mut r: BTreeMap<String, Report> = BTreeMap::new();
        r.insert("base1".into(), run(50, 200, 1000.0));
        r.insert("c19k".into(), run(60, 1100, 2000.0));
        r.insert("c1k_1k".into(), run(40, 100, 1000.0));
        r.insert("c1k_50k".into(), run(30, 100, 50000.0));
        r.insert("c1k_50k_uniform".into(), run(30, 100, 50000.0));
        r.insert("pipe1".into(), run(30, 100, 100_000.0));
        r.insert("pipe16".into(), run(30, 100, 1_000_000.0));
        let mut beyond = run(30, 100, 10.0);
        beyond.loadgen_limited = true;
        beyond.limited_reasons = vec!["achieved 4%".into()];
        r.insert("beyond".into(), beyond);
        let t = targets(&r);
        assert_eq!(t.len(), 8);
        assert_eq!(t[0].result, "met", "{:?}", t[0]);
        assert_eq!(t[1].result, "MISSED", "1100 > 5 × 200: {:?}", t[1]);
        assert!(t[1].figure.contains("5.50x"));
        assert_eq!(t[6].result, "met", "10× and clean: {:?}", t[6]);
        assert_eq!(t[7].result, "met");
        let text = table(&t, &r);
        assert!(text.ends_with("loadgen-limited runs: beyond\n"), "{text}");
    }
}
