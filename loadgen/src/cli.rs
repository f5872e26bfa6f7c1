//! The command line: the load run with its outputs, and the subcommands.

use std::path::Path;

use crate::config::{self, Cli, Command, RunConfig};
use crate::load::run_load;
use crate::output::{write_file, write_json};
use crate::report;
use crate::{sweep, witness, LoadError};

/// Runs the command line: Ok(false) when a run finished but cannot be trusted (exit 1); the
/// binary maps the outcome to its exit code.
pub fn run_cli(cli: Cli) -> Result<bool, LoadError> {
    match cli.command {
        Some(Command::Merge(m)) => merge(&m),
        Some(Command::Sweep(s)) => sweep_cmd(&s),
        Some(Command::StartIn(a)) => {
            let at = std::time::SystemTime::now() + a.after;
            let unix = at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            println!("{:.3}", unix.as_secs_f64());
            Ok(true)
        }
        None => load(&cli.run),
    }
}

/// A load run with its outputs; Ok(false) when the run finished but cannot be trusted.
fn load(cfg: &RunConfig) -> Result<bool, LoadError> {
    let out = run_load(cfg)?;
    let r = &out.report;
    // With `--hist-log -` stdout carries the log (over SSH, say): the summary goes to stderr.
    let log_to_stdout = cfg.hist_log.as_deref() == Some(Path::new("-"));
    if log_to_stdout {
        eprint!("{r}");
    } else {
        print!("{r}");
    }
    if let Some(p) = &cfg.json {
        write_json(p, r)?;
    }
    if let Some(p) = &cfg.hgrm {
        write_file(p, "the histogram", |w| report::write_hgrm(&out.latency, w))?;
        for (name, h) in [("service", &out.service), ("send-lag", &out.send_lag)] {
            let path = p.with_extension(format!("{name}.hgrm"));
            write_file(&path, "the histogram", |w| report::write_hgrm(h, w))?;
        }
    }
    if log_to_stdout {
        let mut w = std::io::BufWriter::new(std::io::stdout().lock());
        report::write_hist_log(r, &out.latency, &out.connect, &mut w)
            .and_then(|_| std::io::Write::flush(&mut w))
            .map_err(|e| LoadError(format!("cannot write the interval log to stdout: {e}")))?;
    } else if let Some(p) = &cfg.hist_log {
        write_file(p, "the interval log", |w| {
            report::write_hist_log(r, &out.latency, &out.connect, w)
        })?;
    }
    if r.counts.messages == 0 {
        let closed_early =
            r.counts.closes.server > 0 && r.counts.closes.server as u32 >= r.connections;
        return Err(LoadError(if closed_early && r.phases.measure_s == 0.0 {
            format!(
                "no message was measured: the server closed all {} connections during the \
                 warm-up ({:.2} s), before the window opened; --warmup 0s measures from the \
                 start",
                r.counts.closes.server, r.phases.warmup_s
            )
        } else {
            format!(
                "no message was measured: the connect phase took {:.2} s and the window {:.2} \
                 s; check the server, or give a longer --duration",
                r.phases.connect_s, r.phases.measure_s
            )
        }));
    }
    if r.loadgen_limited {
        eprintln!(
            "ringecho-loadgen: warning: loadgen-limited run: {}",
            r.limited_reasons.join("; ")
        );
    }
    if !r.is_clean() {
        let mut why = Vec::new();
        if r.counts.mismatches > 0 {
            why.push(format!(
                "{} echoed bytes differed from what was sent",
                r.counts.mismatches
            ));
        }
        if !r.counts.errors.is_empty() {
            why.push(format!(
                "{} connections failed",
                r.counts.errors.values().sum::<u64>()
            ));
        }
        if r.server_agrees == Some(false) {
            why.push("the server's FIN/RST counts disagree with ours".into());
        }
        eprintln!("ringecho-loadgen: error: {}", why.join("; "));
    }
    Ok(r.is_clean() && !(cfg.strict && r.loadgen_limited))
}

fn sweep_cmd(s: &config::SweepArgs) -> Result<bool, LoadError> {
    let rates = match &s.rates {
        Some(list) => list.clone(),
        None => sweep::rates(s.from, s.to, s.steps).map_err(LoadError)?,
    };
    let result = sweep::run(&s.run, &rates, s.p99_bound, |st| {
        eprintln!(
            "ringecho-loadgen: sweep step {:.0} msg/s: achieved {:.0}, p99 {} µs{}",
            st.rate,
            st.achieved,
            st.p99_us,
            if st.loadgen_limited {
                " (loadgen-limited)"
            } else {
                ""
            }
        );
    })?;
    print!("{}", result.table());
    if let Some(p) = &s.run.json {
        write_file(p, "JSON", |w| {
            serde_json::to_writer_pretty(&mut *w, &result).map_err(std::io::Error::other)
        })?;
    }
    if let Some(p) = &s.svg {
        sweep::plot(
            p,
            &format!("latency–load: {}", result.label),
            std::slice::from_ref(&result),
        )
        .map_err(|e| LoadError(format!("cannot plot: {e}")))?;
    }
    Ok(result.steps.iter().all(|st| st.clean))
}

fn merge(m: &config::MergeArgs) -> Result<bool, LoadError> {
    let merged =
        report::merge_logs(&m.files).map_err(|e| LoadError(format!("cannot merge: {e}")))?;
    print!("{merged}");
    let mut ok = merged.is_clean();
    let hosts = merged.tags.get("hosts").cloned().unwrap_or_default();
    println!("  hosts        {} logs: {hosts}", m.files.len());
    if let Some(n) = m.expect {
        if m.files.len() as u64 != n {
            println!(
                "  INCOMPLETE   {} of the {n} expected logs: a loadgen did not finish; these totals are not the run's",
                m.files.len()
            );
            ok = false;
        }
    }
    if let (Some(before), Some(after)) = (&m.server_before, &m.server_after) {
        let read = |p: &Path| {
            std::fs::read_to_string(p)
                .map_err(|e| LoadError(format!("cannot read {}: {e}", p.display())))
        };
        let (b, a) = (read(before)?, read(after)?);
        let bad = |e: std::io::Error| LoadError(format!("a server scrape is not usable: {e}"));
        let closes = witness::parse_closes(&a)
            .map_err(bad)?
            .since(&witness::parse_closes(&b).map_err(bad)?);
        let (ta, tb) = (
            witness::parse_totals(&a).map_err(bad)?,
            witness::parse_totals(&b).map_err(bad)?,
        );
        let (receives, bytes) = (
            ta.receives.saturating_sub(tb.receives),
            ta.bytes.saturating_sub(tb.bytes),
        );
        // An echo server has no framing: between it and the loadgens only bytes and closes
        // can be compared (pipelined messages share a receive, a large one spans several).
        let agrees = closes.fin == merged.counts.closes.fin
            && closes.rst == merged.counts.closes.rst
            && bytes == merged.counts.bytes_total;
        println!(
            "  server saw   fin {}  rst {}  bytes {}  (loadgens: fin {} rst {} bytes {}: {}); in {receives} receives for {} messages",
            closes.fin,
            closes.rst,
            bytes,
            merged.counts.closes.fin,
            merged.counts.closes.rst,
            merged.counts.bytes_total,
            if agrees { "agrees" } else { "DISAGREES" },
            merged.counts.messages_total,
        );
        if let (Ok(pb), Ok(pa)) = (witness::parse_process(&b), witness::parse_process(&a)) {
            let cost =
                witness::ServerCost::between(0, &pb, &pa, merged.counts.messages_total, None);
            println!(
                "  server cpu   {:.2} µs/msg (user {:.2}, sys {:.2}) over every echo of the run, from its /metrics",
                cost.cpu_us_per_msg, cost.user_us_per_msg, cost.sys_us_per_msg
            );
        }
        ok &= agrees;
    }
    if let Some(p) = &m.json {
        write_json(p, &merged)?;
    }
    Ok(ok)
}
