//! `--paired`: each server beside the baseline at the same time, sharing the cores, so a
//! drift in the machine's speed falls on both.

use std::path::Path;

use super::bench::{path, run_args};
use super::Bench;
use crate::nonempty;
use crate::run::server::{tail, with_suffix, Spec};
use crate::scenario::Scenario;

impl Bench {
    /// `--paired`: each server beside the baseline, round by round, in every scenario with
    /// messages and no cap ([`crate::paired`] says why); paired.txt and paired.json.
    pub(super) fn paired(&mut self) -> crate::Result<()> {
        let dir = self.results.paired_dir();
        let servers = self.plan.servers.clone();
        let Some(base) = servers.iter().find(|s| s.name() == self.plan.baseline) else {
            return Ok(());
        };
        let scenarios: Vec<&Scenario> = self
            .plan
            .scenarios
            .iter()
            .copied()
            .filter(|s| !s.capped() && !matches!(s.name, "sweep" | "idle10k"))
            .collect();
        let mut pairs = Vec::new();
        for scenario in scenarios {
            eprintln!(
                "paired {}: each server beside {}",
                scenario.name,
                base.name()
            );
            for round in 1..=self.plan.rounds {
                for other in servers.iter().filter(|s| s.name() != base.name()) {
                    match self.pair(scenario, base, other, round, &dir) {
                        Ok(p) => {
                            eprintln!(
                                "  {:<28} {:.3} µs/msg beside {:.3}: ×{:.3}",
                                format!("{}-{}-{round}", scenario.name, other.name()),
                                p.server_cpu,
                                p.baseline_cpu,
                                p.server_cpu / p.baseline_cpu
                            );
                            pairs.push(p);
                        }
                        Err(why) => {
                            self.failed |= other.failure_counts();
                            eprintln!(
                                "compare: {} beside {} in {} round {round} FAILED: {why}",
                                other.name(),
                                base.name(),
                                scenario.name
                            );
                        }
                    }
                    self.interrupt.check()?;
                }
            }
        }
        let rows = crate::analysis::paired::rows(&pairs, base.name());
        let table = crate::render::text::paired(&rows, base.name());
        eprint!("{table}");
        self.results.write_paired(&table, &rows)?;
        self.contents.paired = Some(table);
        Ok(())
    }

    /// One paired run: `base` and `other` started, a loadgen against each at once, both
    /// stopped; their CPU per message.
    fn pair(
        &self,
        scenario: &Scenario,
        base: &Spec,
        other: &Spec,
        round: u32,
        dir: &Path,
    ) -> crate::Result<crate::analysis::paired::Pair> {
        let name = |s: &Spec| format!("{}-{}-{round}", scenario.name, s.name());
        let logs = [
            dir.join(format!("{}-beside-{}", name(base), other.name())),
            dir.join(name(other)),
        ];
        let mut running = Vec::new();
        for (spec, log) in [base, other].into_iter().zip(&logs) {
            let server = self
                .launcher
                .start(spec, log)
                .map_err(|why| format!("{} {why}", spec.name()))?;
            running.push(server);
        }
        let mut runs = Vec::new();
        for (server, log) in running.iter().zip(&logs) {
            let (warmup, duration) = (&self.plan.warmup, &self.plan.duration);
            let mut args = run_args(server, &scenario.into(), warmup, duration);
            args.extend(["--json".into(), path(&with_suffix(log, ".json"))]);
            runs.push(self.loadgen_run(None, &args, log)?);
        }
        let statuses = self.loadgen.run_all(runs, &self.interrupt)?;
        let mut cpu = Vec::new();
        let sides = [base, other]
            .into_iter()
            .zip(running)
            .zip(&logs)
            .zip(statuses);
        for (((spec, mut server), log), status) in sides {
            if !server.is_alive() {
                return Err(format!("{} died during the run", spec.name()).into());
            }
            let _ = server.stop();
            let json = with_suffix(log, ".json");
            if !status.success() || !nonempty(&json) {
                let why = tail(&with_suffix(log, ".err"), 1);
                return Err(format!("the loadgen against {} failed: {why}", spec.name()).into());
            }
            let report = crate::read_report(&json)?;
            let c = report
                .server
                .map(|s| s.cpu_us_per_msg)
                .filter(|c| *c > 0.0)
                .ok_or_else(|| format!("no server CPU for {}", spec.name()))?;
            cpu.push(c);
        }
        Ok(crate::analysis::paired::Pair {
            scenario: scenario.name.to_string(),
            server: other.name().to_string(),
            server_cpu: cpu[1],
            baseline_cpu: cpu[0],
        })
    }
}
