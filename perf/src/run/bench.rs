//! A comparison in progress, step by step: each scenario's rounds with the servers
//! interleaved, a FAILED row where a run goes wrong, then the summary, the plots and the
//! report.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;

use ringecho_loadgen::report::Report;

use super::machine::kernel;
use super::plan::Plan;
use crate::cores::Split;
use crate::nonempty;
use crate::results::{read_optional, Contents, Results};
use crate::run::cap::Cap;
use crate::run::loadgen::{Loadgen, SOURCE_ADDRS};
use crate::run::server::{create, describe, tail, with_suffix, Launcher, Running, Spec};
use crate::run::signals::Interrupt;
use crate::scenario::{Scenario, Workload};

/// A comparison in progress: the plan (the machine's split in it), how servers and the
/// loadgen are started, the cap, where its results go and what they hold so far, and
/// whether anything failed.
pub struct Bench {
    pub(super) plan: Plan,
    pub(super) launcher: Launcher,
    pub(super) loadgen: Loadgen,
    /// The capped scenarios' cgroup, or why there is none (made only if one is planned).
    pub(super) cap: Option<crate::Result<Cap>>,
    pub(super) failed: bool,
    pub(super) interrupt: Interrupt,
    /// The ringecho-server binary, asked for the kernel's io_uring features.
    pub(super) server_exe: PathBuf,
    /// Where each file goes.
    pub(super) results: Results,
    /// What the report is made from, filled as each part is written.
    pub(super) contents: Contents,
    /// Each server's accepted-socket options, read at its first run.
    pub(super) sockopts: Vec<(String, crate::analysis::sockopts::SocketOptions)>,
}

/// One run's identity: its scenario, server and round (`1`, `2`, … or `sc`).
struct RunId<'a> {
    scenario: &'a Workload,
    server: &'a Spec,
    round: String,
}

impl Bench {
    /// A comparison of `plan`, with ringecho-server and ringecho-loadgen from `bin`; SIGINT
    /// and SIGTERM end it between runs, servers stopped and the cgroup removed.
    pub fn new(plan: Plan, bin: &Path) -> crate::Result<Bench> {
        Ok(Bench {
            launcher: Launcher::new(bin, &plan.split),
            loadgen: Loadgen::new(bin, &plan.split),
            results: Results::new(plan.out.clone()),
            contents: Contents::default(),
            sockopts: Vec::new(),
            plan,
            cap: None,
            failed: false,
            interrupt: Interrupt::catch()?,
            server_exe: bin.join("ringecho-server"),
        })
    }

    /// Runs the comparison; true if every server and run succeeded.
    pub fn run(mut self) -> crate::Result<bool> {
        self.results
            .create(self.plan.paired, self.plan.map.is_some())?;
        self.describe_machine()?;
        if self.plan.syscalls {
            if let Err(why) = ringecho_common::perf::syscall_counting() {
                eprintln!("compare: the syscall pass skipped: {why}");
                self.plan.syscalls = false;
            }
        }
        for scenario in self.plan.scenarios.clone() {
            eprintln!("scenario {}: {}", scenario.name, scenario.flags);
            self.scenario(scenario)?;
        }
        if let Some(map) = self.plan.map.take() {
            self.map(&map)?;
            self.plan.map = Some(map);
        }
        eprintln!();
        self.summarise()?;
        if self.plan.paired {
            self.paired()?;
        }
        if self.plan.profile {
            self.profile()?;
        }
        self.plot()?;
        self.report()?;
        let map = if self.plan.map.is_some() {
            "map.json, map.txt, map.svg, "
        } else {
            ""
        };
        let scenarios = if self.plan.scenarios.is_empty() {
            ""
        } else {
            "table.txt, summary.json, plots, "
        };
        eprintln!(
            "compare: results in {} (report.html, {map}{scenarios}every run's files under runs/)",
            self.plan.out.display()
        );
        if self.failed {
            eprintln!("compare: FAILED: at least one server or run failed (see the table)");
        }
        Ok(!self.failed)
    }

    /// One scenario: its rounds, servers interleaved, then the syscall pass; or the sweep.
    fn scenario(&mut self, scenario: &'static Scenario) -> crate::Result<()> {
        let servers = self.plan.servers.clone();
        if scenario.name == "sweep" {
            for server in &servers {
                self.sweep(scenario, server)?;
            }
            return Ok(());
        }
        if scenario.capped() {
            if let Some(Err(why)) = &self.cap {
                eprintln!("compare: {} skipped: {why}", scenario.name);
                return Ok(());
            }
        }
        let (warmup, duration) = (self.plan.warmup.clone(), self.plan.duration.clone());
        let syscalls = self.plan.syscalls && scenario.name != "idle10k";
        let rounds = self.plan.rounds;
        if self.plan.counts.is_empty() {
            return self.rounds(
                &Workload::from(scenario),
                rounds,
                &warmup,
                &duration,
                syscalls,
            );
        }
        // `--threads`: the scenario once per count, each on its own split of the cores.
        for (n, split) in self.plan.counts.clone() {
            match split {
                Ok(split) => {
                    eprintln!(
                        "  at {n} server thread(s): server taskset -c {}, loadgen taskset -c {} ({})",
                        split.server_cpus, split.loadgen_cpus, split.reason
                    );
                    let w = Workload::from(scenario).at(split);
                    self.rounds(&w, rounds, &warmup, &duration, false)?;
                }
                Err(why) => eprintln!(
                    "compare: {} at {n} server threads skipped: {why}",
                    scenario.name
                ),
            }
        }
        Ok(())
    }

    /// One workload's rounds, servers interleaved and the baseline's A/A pair last in each,
    /// then (with `syscalls`) the syscall pass.
    pub(super) fn rounds(
        &mut self,
        scenario: &Workload,
        rounds: u32,
        warmup: &str,
        duration: &str,
        syscalls: bool,
    ) -> crate::Result<()> {
        let servers = self.plan.servers.clone();
        for round in 1..=rounds {
            for server in &servers {
                let id = RunId {
                    scenario,
                    server,
                    round: round.to_string(),
                };
                self.measure(&id, warmup, duration, &[])?;
            }
            // The baseline once more, last in the round: its A/A pair, the noise floor a
            // winner must clear (`grid::call`).
            if let Some(base) = self.aa_server(&servers) {
                let id = RunId {
                    scenario,
                    server: base,
                    round: format!("{round}aa"),
                };
                self.measure(&id, warmup, duration, &["--tag", "pass=aa"])?;
            }
        }
        if syscalls {
            // Counting syscalls costs the server a little per call: a short pass of its own,
            // whose other figures are not used.
            for server in &servers {
                let id = RunId {
                    scenario,
                    server,
                    round: "sc".into(),
                };
                let extra = ["--count-syscalls", "--tag", "pass=syscalls"];
                self.measure(&id, "300ms", "1s", &extra)?;
            }
        }
        Ok(())
    }

    /// The server whose A/A pair each round measures: the baseline, where there is
    /// something to compare it with and the run is not `--quick`.
    fn aa_server<'s>(&self, servers: &'s [Spec]) -> Option<&'s Spec> {
        if self.plan.quick || servers.len() < 2 {
            return None;
        }
        servers.iter().find(|s| s.name() == self.plan.baseline)
    }

    /// One measured run: the server started (and capped), the loadgen run against it, the
    /// server stopped; a FAILED row where any of it went wrong.
    fn measure(
        &mut self,
        id: &RunId,
        warmup: &str,
        duration: &str,
        extra: &[&str],
    ) -> crate::Result<()> {
        let log = if id.scenario.in_map {
            self.results
                .map_run(&id.scenario.name, id.server.name(), &id.round)
        } else {
            self.results
                .run(&id.scenario.name, id.server.name(), &id.round)
        };
        let split = id
            .scenario
            .split
            .as_ref()
            .unwrap_or(&self.plan.split)
            .clone();
        let server =
            match self
                .launcher
                .on(&split)
                .start_with(id.server, &id.scenario.server_args, &log)
            {
                Ok(s) => s,
                Err(why) => return self.failed_row(id, &log, &format!("the server {why}")),
            };
        let _held = match (&self.cap, id.scenario.capped) {
            (Some(Ok(cap)), true) => {
                let name = format!("{}-{}", id.server.name(), id.round);
                match cap
                    .server(&name)
                    .and_then(|h| h.hold(server.pid()).map(|()| h))
                {
                    Ok(held) => Some(held),
                    Err(why) => return self.failed_row(id, &log, &why.to_string()),
                }
            }
            _ => None,
        };
        if !self.sockopts.iter().any(|(n, _)| n == id.server.name()) {
            let o = crate::run::sockets::read(server.pid(), server.addr);
            eprintln!("  {} socket options: {}", id.server.name(), o.describe());
            self.sockopts.push((id.server.name().to_string(), o));
        }
        let mut args = run_args(&server, id.scenario, warmup, duration);
        if let Some(url) = &server.metrics_url {
            args.extend(["--server-metrics".to_string(), url.clone()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        for tag in [
            format!("scenario={}", id.scenario.name),
            format!("backend={}", id.server.name()),
            format!("round={}", id.round),
        ] {
            args.extend(["--tag".to_string(), tag]);
        }
        let json = path(&with_suffix(&log, ".json"));
        let hgrm = path(&with_suffix(&log, ".hgrm"));
        args.extend(["--json".into(), json, "--hgrm".into(), hgrm]);
        let loadgen = self.loadgen_on(&split, None, &args, &log)?;
        self.judge(id, &log, loadgen, server)
    }

    /// After a run: the server stopped, and a FAILED row if it died, exited badly or the
    /// loadgen left no report; otherwise the run's throughput and server CPU on stderr.
    fn judge(
        &mut self,
        id: &RunId,
        log: &Path,
        loadgen: ExitStatus,
        mut server: Running,
    ) -> crate::Result<()> {
        if !server.is_alive() {
            let _ = server.stop();
            return self.failed_row(id, log, "the server died during the run");
        }
        let stopped = server.stop();
        let err = with_suffix(log, ".err");
        if !nonempty(&with_suffix(log, ".json")) {
            let why = format!("the loadgen could not run: {}", tail(&err, 1));
            return self.failed_row(id, log, &why);
        }
        if !loadgen.success() {
            self.failed |= id.server.failure_counts();
            let err = std::fs::read_to_string(err).unwrap_or_default();
            let last = err.lines().rfind(|l| l.contains("error"));
            let said = last.unwrap_or("the loadgen failed");
            eprintln!(
                "compare: {} in {} round {}: {said}",
                id.server.name(),
                id.scenario.name,
                id.round
            );
        }
        // Built-in servers drain and exit 0 on SIGTERM; external ones may die by the signal.
        match stopped {
            Err(why) => return self.failed_row(id, log, &format!("the server {why}")),
            Ok(status) if !status.success() && !id.server.is_external() => {
                let why = format!(
                    "the server exited with {}: {}",
                    describe(status),
                    tail(&with_suffix(log, ".server.err"), 1)
                );
                return self.failed_row(id, log, &why);
            }
            Ok(_) => {}
        }
        // The run's figures from its JSON, never scraped from its text.
        let throughput = match crate::read_report(&with_suffix(log, ".json")) {
            Ok(r) => format!(
                "{:.0} msgs/s  {:.2} MiB/s  {}",
                r.msgs_per_s,
                r.mib_per_s,
                r.server
                    .map_or(String::new(), |s| format!("{:.2} µs/msg", s.cpu_us_per_msg))
            ),
            Err(e) => format!("(its report cannot be read: {e})"),
        };
        let name = log
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        eprintln!("  {name:<28} {throughput}");
        Ok(())
    }

    /// The latency–load curve of one server.
    fn sweep(&mut self, scenario: &Scenario, server: &Spec) -> crate::Result<()> {
        let log = self.results.sweep(server.name());
        let mut running = match self.launcher.start(server, &log) {
            Ok(s) => s,
            Err(why) => {
                self.failed |= server.failure_counts();
                eprintln!(
                    "compare: sweep of {} skipped: the server {why}",
                    server.name()
                );
                return Ok(());
            }
        };
        let (duration, warmup) = if self.plan.quick {
            ("500ms", "200ms")
        } else {
            ("1s", "300ms")
        };
        let mut args = run_args(&running, &Workload::from(scenario), warmup, duration);
        args.extend(self.plan.sweep_range.iter().cloned());
        args.extend(["--tag".into(), format!("backend={}", server.name())]);
        args.extend(["--json".into(), path(&with_suffix(&log, ".json"))]);
        if !self.loadgen(Some("sweep"), &args, &log)?.success() {
            self.failed |= server.failure_counts();
            let why = tail(&with_suffix(&log, ".err"), 1);
            eprintln!("compare: sweep of {}: {why}", server.name());
        }
        if !running.is_alive() {
            self.failed |= server.failure_counts();
            eprintln!("compare: {} died during its sweep", server.name());
        }
        let _ = running.stop();
        eprint!(
            "{}",
            std::fs::read_to_string(with_suffix(&log, ".txt")).unwrap_or_default()
        );
        Ok(())
    }

    /// Runs the loadgen (`sub`command, if any) pinned to the loadgen cores with the split's
    /// threads and the source addresses, then `args`; its output in `LOG.txt` and `LOG.err`.
    pub(super) fn loadgen(
        &self,
        sub: Option<&str>,
        args: &[String],
        log: &Path,
    ) -> crate::Result<ExitStatus> {
        self.loadgen_on(&self.plan.split, sub, args, log)
    }

    /// As [`Bench::loadgen`], on `split`'s loadgen cores and threads (a scaling point's).
    fn loadgen_on(
        &self,
        split: &Split,
        sub: Option<&str>,
        args: &[String],
        log: &Path,
    ) -> crate::Result<ExitStatus> {
        let (all, out, err) = self.loadgen_run_on(split, sub, args, log)?;
        self.loadgen.on(split).run(&all, out, err, &self.interrupt)
    }

    /// A loadgen run's full arguments and output files, as [`Bench::loadgen`] describes.
    pub(super) fn loadgen_run(
        &self,
        sub: Option<&str>,
        args: &[String],
        log: &Path,
    ) -> crate::Result<(Vec<String>, File, File)> {
        self.loadgen_run_on(&self.plan.split, sub, args, log)
    }

    /// As [`Bench::loadgen_run`], with the loadgen threads of `split`.
    fn loadgen_run_on(
        &self,
        split: &Split,
        sub: Option<&str>,
        args: &[String],
        log: &Path,
    ) -> crate::Result<(Vec<String>, File, File)> {
        let all = loadgen_args(sub, split.loadgen_threads, args);
        let out = create(&with_suffix(log, ".txt"))?;
        let err = create(&with_suffix(log, ".err"))?;
        Ok((all, out, err))
    }

    /// Writes the run's JSON as a FAILED row saying why, and marks the comparison failed.
    /// A reference peer's failure is its row's alone ([`Spec::failure_counts`]).
    fn failed_row(&mut self, id: &RunId, log: &Path, why: &str) -> crate::Result<()> {
        self.failed |= id.server.failure_counts();
        let report = Report {
            failure: Some(why.to_string()),
            tags: [
                ("scenario", id.scenario.name.clone()),
                ("backend", id.server.name().to_string()),
                ("round", id.round.clone()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
            ..Default::default()
        };
        self.results.write_failed_run(log, &report)?;
        eprintln!(
            "compare: {} in {} round {} FAILED: {why}",
            id.server.name(),
            id.scenario.name,
            id.round
        );
        self.interrupt.check()
    }

    /// table.txt and summary.json from every run's JSON; a run that was not clean fails the
    /// comparison.
    fn summarise(&mut self) -> crate::Result<()> {
        let mut files = Vec::new();
        for s in self.plan.scenarios.iter().filter(|s| s.name != "sweep") {
            files.extend(self.results.run_reports(s.name)?);
            for (_, split) in &self.plan.counts {
                if let Ok(split) = split {
                    let w = Workload::from(*s).at(split.clone());
                    files.extend(self.results.run_reports(&w.name)?);
                }
            }
        }
        if files.is_empty() {
            return Ok(());
        }
        let reports = crate::read_reports(&files)?;
        let mut rows = crate::analysis::summary::summarise(&reports, &self.plan.baseline);
        for r in &mut rows {
            r.runs = files
                .iter()
                .zip(&reports)
                .filter(|(_, rep)| {
                    rep.tags.get("scenario") == Some(&r.scenario)
                        && rep.tags.get("backend") == Some(&r.backend)
                })
                .map(|(f, _)| self.results.relative(f))
                .collect();
            r.socket_options = self
                .sockopts
                .iter()
                .find(|(n, _)| *n == r.backend)
                .map(|(_, o)| o.clone());
        }
        let mut table = crate::render::text::table(&rows, &self.plan.baseline);
        if let Some(scaling) = crate::render::text::scaling(&rows, &self.plan.baseline) {
            table.push_str(&scaling);
        }
        if self.plan.split.shared {
            table.push_str(&format!(
                "\nnote: the server and the loadgen share cores: {}\n",
                self.plan.split.reason
            ));
        }
        print!("{table}");
        self.results.write_summary(&table, &rows)?;
        if !self.all_clean(&reports) {
            self.failed = true;
        }
        self.contents.rows = Some(rows);
        Ok(())
    }

    /// Whether every run of a server whose failure counts was clean (a reference peer's
    /// unclean run is its row's verdict alone).
    pub(super) fn all_clean(&self, reports: &[Report]) -> bool {
        reports.iter().all(|r| {
            r.is_clean()
                || r.tags.get("backend").is_some_and(|b| {
                    self.plan
                        .servers
                        .iter()
                        .any(|s| s.name() == b && !s.failure_counts())
                })
        })
    }

    /// The latency percentiles of the plot scenario's first round, and the sweeps' curves.
    fn plot(&mut self) -> crate::Result<()> {
        let k = kernel();
        let curves: Vec<(String, PathBuf)> = self
            .plan
            .servers
            .iter()
            .map(|s| {
                let run = self.results.run(&self.plan.plot_scenario, s.name(), "1");
                let f = with_suffix(&run, ".hgrm");
                (s.name().to_string(), f)
            })
            .filter(|(_, f)| nonempty(f))
            .collect();
        if !curves.is_empty() {
            let title = format!("echo latency, {} ({k})", self.plan.plot_scenario);
            let svg = self.results.latency_svg(&self.plan.plot_scenario);
            ringecho_loadgen::plot::plot_hgrm(&svg, &title, &curves)
                .map_err(|e| format!("cannot plot: {e}"))?;
            self.contents.latency_svg = read_optional(&svg)?;
        }
        let mut sweeps = Vec::new();
        for s in &self.plan.servers {
            let f = with_suffix(&self.results.sweep(s.name()), ".json");
            if nonempty(&f) {
                sweeps.push(crate::parse(&f, "a sweep", &crate::read(&f)?)?);
            }
        }
        if !sweeps.is_empty() {
            let title = format!("latency against offered load ({k})");
            let svg = self.results.load_svg();
            ringecho_loadgen::sweep::plot(&svg, &title, &sweeps)
                .map_err(|e| format!("cannot plot: {e}"))?;
            self.contents.load_svg = read_optional(&svg)?;
        }
        self.contents.sweeps = sweeps;
        Ok(())
    }

    /// report.html.
    pub(super) fn report(&self) -> crate::Result<()> {
        let p = &self.plan;
        let page = crate::render::html::page(&self.contents, &p.baseline, &p.plot_scenario);
        self.results.write_report(&page)
    }
}

/// The loadgen flags every run against a server shares: where it listens, the scenario's
/// flags, the windows, and its process id for the server's CPU figures.
pub(super) fn run_args(
    server: &Running,
    scenario: &Workload,
    warmup: &str,
    duration: &str,
) -> Vec<String> {
    let mut args = vec!["--addr".to_string(), server.addr.to_string()];
    args.extend(scenario.flags.split_whitespace().map(String::from));
    args.extend(["--warmup", warmup, "--duration", duration].map(String::from));
    args.extend(["--server-pid".into(), server.pid().to_string()]);
    args
}

/// A path as a loadgen argument.
pub(super) fn path(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// A loadgen run's arguments: the subcommand, its threads, the source addresses to spread
/// over unless the scenario names its own (cpr does), then the scenario's and run's flags.
fn loadgen_args(sub: Option<&str>, threads: usize, args: &[String]) -> Vec<String> {
    let mut all: Vec<String> = sub.into_iter().map(String::from).collect();
    all.extend(["--threads".into(), threads.to_string()]);
    if !args.iter().any(|a| a == "--source-addrs") {
        all.extend(["--source-addrs", SOURCE_ADDRS].map(String::from));
    }
    all.extend(args.iter().cloned());
    all
}

#[cfg(test)]
mod tests {
    /// No scenario's flags repeat one compare adds: the loadgen refuses a flag given twice.
    #[test]
    fn no_scenario_repeats_a_loadgen_flag() {
        for sc in crate::scenario::ALL {
            let flags: Vec<String> = sc.flags.split_whitespace().map(String::from).collect();
            let all = super::loadgen_args(None, 1, &flags);
            let names: Vec<&String> = all.iter().filter(|a| a.starts_with("--")).collect();
            let mut unique = names.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(names.len(), unique.len(), "{}: {all:?}", sc.name);
        }
    }
}
