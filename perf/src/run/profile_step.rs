//! `--profile`: one more run per server under `perf record`, its CPU per message split by
//! category; skipped, with the reason, where perf may not sample the kernel.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;

use super::bench::{path, run_args};
use super::Bench;
use crate::nonempty;
use crate::results::Part;
use crate::run::server::{create, tail, with_suffix, Spec};
use crate::scenario::{self, Scenario};

impl Bench {
    /// `--profile`: one more run of the plot scenario per server under perf record, its CPU
    /// per message split by category; skipped with the reason where perf is missing.
    pub(super) fn profile(&mut self) -> crate::Result<()> {
        if let Err(why) = ringecho_common::perf::kernel_profiling() {
            eprintln!("compare: --profile skipped: {why}");
            self.contents.profile = Part::Skipped(why.to_string());
            return self.write_profile();
        }
        let scenario = scenario::find(&self.plan.plot_scenario).expect("a planned scenario");
        eprintln!(
            "compare: profiling each server ({}, perf record -e cpu-clock -g)",
            scenario.name
        );
        let mut profiles = Vec::new();
        for server in self.plan.servers.clone() {
            let log = self.results.profile_run(server.name());
            match self.profile_one(scenario, &server, &log) {
                Ok(p) => profiles.push(p),
                Err(why) => eprintln!("compare: no profile of {}: {why}", server.name()),
            }
            self.interrupt.check()?;
        }
        if !profiles.is_empty() {
            print!("{}", crate::render::text::profiles(&profiles));
        }
        self.contents.profile = Part::Ran(profiles);
        self.write_profile()
    }

    /// One server's profile: perf record over a run, then perf script, categorised.
    fn profile_one(
        &self,
        scenario: &Scenario,
        server: &Spec,
        log: &Path,
    ) -> crate::Result<crate::analysis::profile::Profile> {
        let data = with_suffix(log, ".data");
        let perf_err = with_suffix(log, ".perf.err");
        let running = self
            .launcher
            .start(server, log)
            .map_err(|why| format!("the server {why}"))?;
        let mut perf = Command::new("perf")
            .args(["record", "-q", "-e", "cpu-clock", "-g", "-p"])
            .arg(running.pid().to_string())
            .arg("-o")
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(create(&perf_err)?)
            .spawn()
            .map_err(|e| format!("cannot start perf: {e}"))?;
        std::thread::sleep(Duration::from_millis(300));
        let mut args = run_args(
            &running,
            &scenario.into(),
            &self.plan.warmup,
            &self.plan.duration,
        );
        let json = with_suffix(log, ".json");
        args.extend(["--json".into(), path(&json)]);
        let ran = self.loadgen(None, &args, log);
        let _ =
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(perf.id() as i32), Signal::SIGINT);
        let _ = perf.wait();
        let _ = running.stop();
        ran?;
        let script = Command::new("perf")
            .args(["script", "-F", "ip,sym,dso", "-i"])
            .arg(&data)
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| format!("cannot run perf script: {e}"));
        let _ = std::fs::remove_file(&data);
        let script = script?;
        if !script.status.success() {
            return Err(String::from_utf8_lossy(&script.stderr)
                .trim()
                .to_string()
                .into());
        }
        if !nonempty(&json) {
            return Err(format!(
                "the loadgen could not run: {}",
                tail(&with_suffix(log, ".err"), 1)
            )
            .into());
        }
        let cpu = crate::read_report(&json)?
            .server
            .map(|s| s.cpu_us_per_msg)
            .ok_or("the run has no server CPU")?;
        let text = String::from_utf8_lossy(&script.stdout);
        Ok(crate::analysis::profile::profile(server.name(), &text, cpu))
    }
}

impl Bench {
    /// profile.txt and profile.json from what the profile pass found.
    fn write_profile(&self) -> crate::Result<()> {
        let table = match &self.contents.profile {
            Part::Ran(p) => crate::render::text::profiles(p),
            _ => String::new(),
        };
        self.results.write_profile(&self.contents.profile, &table)
    }
}
