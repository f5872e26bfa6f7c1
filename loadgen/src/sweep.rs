//! The latency–load curve: open-loop runs at rising offered rates until the server or the
//! loadgen saturates, each step reporting achieved rate, latency percentiles, send lag and
//! server CPU per message, and the knee (the highest rate whose p99 stays under a bound).

use std::fmt::Write as _;
use std::io;
use std::path::Path;
use std::time::Duration;

use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::config::RunConfig;
use crate::report::Report;
use crate::LoadError;

/// One step of a sweep.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Step {
    /// Offered rate, msgs/s.
    pub rate: f64,
    /// Achieved rate, msgs/s.
    pub achieved: f64,
    /// Latency from the intended send time, µs.
    pub p50_us: u64,
    /// 99th percentile, µs.
    pub p99_us: u64,
    /// 99.9th percentile, µs.
    pub p999_us: u64,
    /// Send lag p99, µs.
    pub send_lag_p99_us: u64,
    /// Server CPU µs per message (with --server-pid), else none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_cpu_us_per_msg: Option<f64>,
    /// The loadgen may have limited this step.
    pub loadgen_limited: bool,
    /// Why.
    #[serde(default)]
    pub limited_reasons: Vec<String>,
    /// Every byte of the step came back intact, with no failed connection.
    pub clean: bool,
}

impl Step {
    fn of(rate: f64, r: &Report) -> Step {
        Step {
            rate,
            achieved: r.msgs_per_s,
            p50_us: r.latency_us.p50,
            p99_us: r.latency_us.p99,
            p999_us: r.latency_us.p999,
            send_lag_p99_us: r.send_lag_us.p99,
            server_cpu_us_per_msg: r.server.as_ref().map(|s| s.cpu_us_per_msg),
            loadgen_limited: r.loadgen_limited,
            limited_reasons: r.limited_reasons.clone(),
            clean: r.is_clean(),
        }
    }

    /// The server kept up: it achieved the offered rate within 5 %.
    fn kept_up(&self) -> bool {
        self.achieved >= 0.95 * self.rate
    }
}

/// A whole sweep.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Sweep {
    /// A label (the backend or server name, from `--tag backend=…`, else the address).
    pub label: String,
    /// The p99 bound that defines the knee, µs.
    pub p99_bound_us: u64,
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// The highest offered rate achieved with p99 under the bound ([`knee`]); none if no
    /// step qualifies.
    pub knee_rate: Option<f64>,
    /// Why the sweep stopped.
    pub stopped: String,
}

impl Sweep {
    /// The table printed on stdout.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "latency–load sweep: {} (knee: highest rate with p99 ≤ {} µs)",
            self.label, self.p99_bound_us
        );
        let _ = writeln!(
            s,
            "{:>10} {:>10} {:>8} {:>8} {:>9} {:>10} {:>10}  note",
            "offered", "achieved", "p50 µs", "p99 µs", "p99.9 µs", "lag p99", "srv µs/msg"
        );
        for st in &self.steps {
            let note = match (st.clean, st.loadgen_limited) {
                (false, _) => "NOT CLEAN".to_string(),
                (true, true) => format!("loadgen-limited: {}", st.limited_reasons.join("; ")),
                _ => String::new(),
            };
            let _ = writeln!(
                s,
                "{:>10.0} {:>10.0} {:>8} {:>8} {:>9} {:>10} {:>10}  {note}",
                st.rate,
                st.achieved,
                st.p50_us,
                st.p99_us,
                st.p999_us,
                st.send_lag_p99_us,
                st.server_cpu_us_per_msg
                    .map(|c| format!("{c:.2}"))
                    .unwrap_or_else(|| "—".into()),
            );
        }
        let _ = writeln!(
            s,
            "knee: {}; stopped: {}",
            self.knee_rate
                .map(|r| format!("{r:.0} msg/s"))
                .unwrap_or_else(|| "none (no step qualified)".into()),
            self.stopped
        );
        s
    }
}

/// The offered rates: `from` to `to` in `steps` geometric steps. A sweep climbs, so `to`
/// below `from` is refused rather than run as one step.
pub fn rates(from: f64, to: f64, steps: u32) -> Result<Vec<f64>, String> {
    if to < from {
        return Err(format!(
            "--to {to} is below --from {from}: a sweep climbs from --from to --to"
        ));
    }
    if steps <= 1 || to == from {
        return Ok(vec![from]);
    }
    let ratio = (to / from).powf(1.0 / (steps - 1) as f64);
    Ok((0..steps)
        .map(|i| (from * ratio.powi(i as i32)).round())
        .collect())
}

/// Runs the sweep: one open-loop run per rate, stopping after two steps in a row past
/// saturation (the server fell behind the offered rate, or p99 went over 10× the bound).
pub fn run(
    base: &RunConfig,
    rates: &[f64],
    p99_bound: Duration,
    mut on_step: impl FnMut(&Step),
) -> Result<Sweep, LoadError> {
    let bound_us = p99_bound.as_micros() as u64;
    let label = base
        .tags
        .iter()
        .find(|(k, _)| k == "backend" || k == "server")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| base.addr.to_string());
    let mut sweep = Sweep {
        label,
        p99_bound_us: bound_us,
        stopped: "every rate was run".into(),
        ..Sweep::default()
    };
    let mut past = 0;
    for &rate in rates {
        let mut cfg = base.clone();
        cfg.rate = Some(rate);
        cfg.json = None;
        cfg.hgrm = None;
        cfg.hist_log = None;
        let out = crate::run_load(&cfg)?;
        let step = Step::of(rate, &out.report);
        on_step(&step);
        let saturated = !step.kept_up() || step.p99_us > 10 * bound_us;
        sweep.steps.push(step);
        past = if saturated { past + 1 } else { 0 };
        if past >= 2 {
            sweep.stopped = format!("saturated at {rate:.0} msg/s (two steps past the knee)");
            break;
        }
    }
    sweep.knee_rate = knee(&sweep.steps, bound_us);
    Ok(sweep)
}

/// The highest offered rate of a clean step that was achieved and whose p99 stayed within
/// `bound_us`. A step the loadgen was late in still counts: latency runs from the intended
/// send time, so the loadgen's lateness can only make a step look worse, never better; a
/// rate the loadgen could not send is not achieved, and does not count.
pub fn knee(steps: &[Step], bound_us: u64) -> Option<f64> {
    steps
        .iter()
        .filter(|s| s.clean && s.kept_up() && s.p99_us <= bound_us)
        .map(|s| s.rate)
        .fold(None, |m: Option<f64>, r| Some(m.map_or(r, |m| m.max(r))))
}

/// Draws p99 (solid) and p50 (thin) latency against achieved rate for each sweep, with the
/// bound as a dashed line: several servers' curves on one plot.
pub fn plot(out: &Path, title: &str, sweeps: &[Sweep]) -> io::Result<()> {
    let x_max = sweeps
        .iter()
        .flat_map(|s| s.steps.iter().map(|st| st.achieved.max(st.rate)))
        .fold(1.0f64, f64::max)
        * 1.05;
    let y_max = sweeps
        .iter()
        .flat_map(|s| s.steps.iter().map(|st| st.p99_us as f64))
        .chain(sweeps.iter().map(|s| s.p99_bound_us as f64))
        .fold(10.0f64, f64::max)
        * 1.5;
    let root = crate::plot::canvas(out)?;
    let draw = crate::plot::draw_err;
    let mut chart = crate::plot::builder(&root, title)
        .build_cartesian_2d(0.0..x_max, (1.0..y_max).log_scale())
        .map_err(draw)?;
    chart
        .configure_mesh()
        .x_desc("achieved rate (msgs/s)")
        .y_desc("latency µs (p99 thick, p50 thin)")
        .draw()
        .map_err(draw)?;
    for (i, s) in sweeps.iter().enumerate() {
        let color = crate::plot::COLORS[i % crate::plot::COLORS.len()].to_rgba();
        let p99: Vec<(f64, f64)> = s
            .steps
            .iter()
            .map(|st| (st.achieved, st.p99_us.max(1) as f64))
            .collect();
        let p50: Vec<(f64, f64)> = s
            .steps
            .iter()
            .map(|st| (st.achieved, st.p50_us.max(1) as f64))
            .collect();
        chart
            .draw_series(LineSeries::new(p99.clone(), color.stroke_width(3)))
            .map_err(draw)?
            .label(s.label.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], color.stroke_width(3)));
        chart
            .draw_series(p99.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(draw)?;
        chart
            .draw_series(LineSeries::new(p50, color.stroke_width(1)))
            .map_err(draw)?;
    }
    if let Some(bound) = sweeps.first().map(|s| s.p99_bound_us as f64) {
        chart
            .draw_series(DashedLineSeries::new(
                [(0.0, bound), (x_max, bound)],
                6,
                4,
                BLACK.mix(0.5).stroke_width(1),
            ))
            .map_err(draw)?;
    }
    crate::plot::finish(&mut chart, &root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_rise_geometrically() {
        assert_eq!(
            rates(1000.0, 8000.0, 4).unwrap(),
            vec![1000.0, 2000.0, 4000.0, 8000.0]
        );
        assert_eq!(rates(5000.0, 5000.0, 3).unwrap(), vec![5000.0]);
        assert!(rates(100.0, 10.0, 6).unwrap_err().contains("below --from"));
    }

    #[test]
    fn the_knee_is_the_highest_qualifying_rate() {
        let step = |rate: f64, achieved: f64, p99: u64, limited: bool| Step {
            rate,
            achieved,
            p99_us: p99,
            loadgen_limited: limited,
            clean: true,
            ..Step::default()
        };
        let steps = [
            step(1000.0, 1000.0, 100, false),
            step(2000.0, 1990.0, 400, false),
            step(4000.0, 3990.0, 2000, false),
            step(8000.0, 5000.0, 90000, false),
        ];
        assert_eq!(knee(&steps, 1000), Some(2000.0));
        assert_eq!(knee(&steps, 10), None);
        assert!(!steps[3].kept_up());
        let mut corrupt = steps.clone();
        corrupt[1].clean = false;
        assert_eq!(knee(&corrupt, 1000), Some(1000.0));
    }
}
