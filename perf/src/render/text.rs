//! The text renderings: table.txt (the summary table, the 2×2 sections, the scaling
//! section), paired.txt and profile.txt. Each lays out what `crate::analysis` derived; none
//! computes a figure or an order of its own.

use std::fmt::Write as _;

use crate::analysis::grid::MIN_ROUNDS;
use crate::analysis::paired::PairedRow;
use crate::analysis::profile::{Category, Profile};
use crate::analysis::scaling::loadgen_bound;
use crate::analysis::stats::first_seen;
use crate::analysis::summary::{per_connection, verdict, Row};
use crate::analysis::view::{self, GridView, Ratio};
use crate::scenario::at_threads;

/// One column of the table: its header, width, side, and what a row shows in it. Header
/// and cells are padded by the same width, so they cannot drift apart.
struct Column {
    name: String,
    width: usize,
    left: bool,
    cell: fn(&Row) -> String,
}

fn col(name: &str, width: usize, left: bool, cell: fn(&Row) -> String) -> Column {
    Column {
        name: name.into(),
        width,
        left,
        cell,
    }
}

fn two(v: Option<f64>) -> String {
    v.map_or("-".to_string(), |x| format!("{x:.2}"))
}

/// The table's columns, with `×baseline` for the ratio columns.
fn columns(baseline: &str) -> Vec<Column> {
    let x = format!("×{baseline}");
    vec![
        col("scenario", 12, true, |r| r.scenario.clone()),
        col("backend", 9, true, |r| r.backend.clone()),
        col("msgs/s", 9, false, |r| format!("{:.0}", r.msgs_per_s)),
        col(&x, 6, false, |r| two(r.msgs_ratio)),
        col("p50µs", 6, false, |r| format!("{:.0}", r.p50_us)),
        col("p99µs", 6, false, |r| format!("{:.0}", r.p99_us)),
        col("p99.9µs", 7, false, |r| format!("{:.0}", r.p999_us)),
        col("maxµs", 7, false, |r| format!("{:.0}", r.max_us)),
        col("srv µs", 7, false, |r| {
            format!("{:.2}", r.server_cpu_us_per_msg)
        }),
        col("user", 5, false, |r| {
            format!("{:.2}", r.server_user_us_per_msg)
        }),
        col("sys", 5, false, |r| {
            format!("{:.2}", r.server_sys_us_per_msg)
        }),
        col("µs/conn", 7, false, |r| two(r.server_cpu_us_per_conn)),
        col("cores", 6, false, |r| {
            let flag = if r.cores_differ_rounds > 0 { "!" } else { "" };
            two(r.server_cores_busy_us_per_msg) + flag
        }),
        col("steal", 5, false, |r| two(r.server_cores_steal_us_per_msg)),
        col(&x, 6, false, |r| two(r.cpu_ratio)),
        col("spread", 15, false, |r| {
            r.cpu_ratio_spread
                .map_or("-".to_string(), |(a, b)| format!("{a:.2}–{b:.2}"))
        }),
        col("sysc", 6, false, |r| two(r.server_syscalls_per_msg)),
        col("rss MiB", 7, false, |r| format!("{:.1}", r.server_rss_mib)),
        col("lg µs", 6, false, |r| {
            format!("{:.2}", r.loadgen_us_per_msg)
        }),
        col("lg%", 4, false, |r| {
            format!("{:.0}%", r.loadgen_utilisation * 100.0)
        }),
        col("lim", 3, false, |r| {
            format!("{}/{}", r.loadgen_limited_rounds, r.rounds)
        }),
        col(" fin/rst", 0, true, |r| {
            format!(" {}/{} {}", r.fin, r.rst, verdict(r).text)
        }),
    ]
}

fn pad(text: &str, width: usize, left: bool) -> String {
    if left {
        format!("{text:<width$}")
    } else {
        format!("{text:>width$}")
    }
}

/// The table printed by compare.sh: a row per scenario and server, a failed run's reason in
/// place of its figures, and a note when rows were loadgen-limited.
pub fn table(rows: &[Row], baseline: &str) -> String {
    let cols = columns(baseline);
    let measured: Vec<&Row> = rows.iter().filter(|r| r.failure.is_none()).collect();
    let cells: Vec<Vec<String>> = measured
        .iter()
        .map(|r| cols.iter().map(|c| (c.cell)(r)).collect())
        .collect();
    // Each column as wide as its header and its widest cell (a long server name widens its
    // column instead of pushing the rest of its row out of line).
    let widths: Vec<usize> = cols
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .map(|row| row[i].chars().count())
                .fold(c.width.max(c.name.chars().count()), usize::max)
        })
        .collect();
    let line = |texts: &[String]| {
        let padded: Vec<String> = texts
            .iter()
            .zip(cols.iter().zip(&widths))
            .map(|(t, (c, &w))| pad(t, w, c.left))
            .collect();
        padded.join(" ").trim_end().to_string() + "\n"
    };
    let names: Vec<String> = cols.iter().map(|c| c.name.clone()).collect();
    let mut s = line(&names);
    let mut measured_cells = cells.into_iter();
    for r in rows {
        match &r.failure {
            Some(_) => {
                let lead = [r.scenario.clone(), r.backend.clone()];
                s += &format!("{} {}\n", line(&lead).trim_end(), verdict(r).text);
            }
            None => s += &line(&measured_cells.next().expect("one per measured row")),
        }
    }
    let _ = writeln!(
        s,
        "baseline: {baseline} (the × columns divide by its figures in the same round)"
    );
    let noise: Vec<String> = rows
        .iter()
        .filter_map(|r| {
            let (lo, hi) = r.aa_spread?;
            Some(format!(
                "{} {:.2} ({lo:.2}–{hi:.2})",
                r.scenario,
                r.aa_ratio.unwrap_or(1.0)
            ))
        })
        .collect();
    if !noise.is_empty() {
        let _ = writeln!(
            s,
            "noise: {baseline} against itself in the same rounds (A/A): {}; a winner's spread \
             must lie wholly outside it, with {} rounds or more",
            noise.join(", "),
            MIN_ROUNDS
        );
    }
    let (options, differ) = view::socket_options(rows, baseline);
    if !options.is_empty() {
        let _ = writeln!(
            s,
            "socket options (read from one accepted socket of each server):"
        );
        for (name, o) in &options {
            let flag = if differ.contains(name) {
                format!("  <- TCP_NODELAY differs from {baseline}'s: Nagle coalesces its small sends, so its stream figures are not between equals")
            } else {
                String::new()
            };
            let _ = writeln!(s, "  {name:<16} {}{flag}", o.describe());
        }
    }
    let per_conn: Vec<String> = view::scenario_order(rows)
        .into_iter()
        .filter(|sc| per_connection(sc))
        .collect();
    if !per_conn.is_empty() {
        let _ = writeln!(
            s,
            "per connection: in {} each connection carries one message, so the server's CPU is \
             a cost per connection (µs/conn: accept, one echo, close), and × compares it",
            per_conn.join(", ")
        );
    }
    if rows.iter().any(|r| r.cores_differ_rounds > 0) {
        let _ = writeln!(
            s,
            "note: cores marked ! were busier (or idler) than the server's own CPU by more than \
             5 % in some round: interrupts handled there, or other work on the server's cores \
             (cores: their busy µs per message from /proc/stat; steal: the hypervisor's)"
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
    s + &grids(&view::grids(rows))
}

/// A ratio with its spread, `-` where there is none.
fn ratio_text(r: Option<Ratio>) -> String {
    r.map_or("-".to_string(), |r| {
        let (lo, hi) = r.spread;
        format!("{:.2} ({lo:.2}–{hi:.2})", r.median)
    })
}

/// The 2×2 sections of table.txt: per scenario, the CPU per message in each cell, the
/// ratios between them, and a sentence per contrast.
pub fn grids(views: &[GridView]) -> String {
    let mut s = String::new();
    for v in views {
        let _ = writeln!(
            s,
            "\n{}: server CPU µs per message, interface × driver (ratios: medians of \
             per-round ratios, spread)",
            v.scenario
        );
        let [epoll, io_uring] = v.interfaces;
        let _ = writeln!(
            s,
            "  {:<20} {:<20} {:<20} {io_uring} ×{epoll}",
            "", epoll, io_uring
        );
        for row in &v.rows {
            let [a, b] = row.places.clone().map(|p| {
                p.cpu
                    .map_or("-".to_string(), |(cpu, _)| format!("{} {cpu:.2}", p.server))
            });
            let _ = writeln!(
                s,
                "  {:<20} {a:<20} {b:<20} {}",
                row.driver,
                ratio_text(row.interface)
            );
        }
        let _ = writeln!(
            s,
            "  {:<20} {:<20} {:<20}",
            format!("{} ×loop", v.rows[1].driver),
            ratio_text(v.runtime[0]),
            ratio_text(v.runtime[1])
        );
        for c in &v.contrasts {
            let _ = writeln!(s, "  - {}", c.verdict);
        }
    }
    if !s.is_empty() {
        s.insert_str(
            0,
            "\nio_uring against epoll between equals, and what a runtime costs\n",
        );
    }
    s
}

/// paired.txt: a line per server and scenario.
pub fn paired(rows: &[PairedRow], baseline: &str) -> String {
    let mut t = format!(
        "side by side with {baseline}: both servers at once, server CPU µs per echoed message; \
         ×base is the median of the per-run ratios\n{:<12} {:<14} {:>8} {:>8} {:>7} {:>13} {:>5}\n",
        "scenario", "server", "srv µs", "base µs", "×base", "spread", "runs",
    );
    for r in rows {
        t.push_str(&format!(
            "{:<12} {:<14} {:>8.3} {:>8.3} {:>7.3} {:>6.3}–{:<6.3} {:>5}\n",
            r.scenario,
            r.server,
            r.server_cpu_us_per_msg,
            r.baseline_cpu_us_per_msg,
            r.cpu_ratio,
            r.cpu_ratio_spread.0,
            r.cpu_ratio_spread.1,
            r.rounds,
        ));
    }
    t
}

/// The profiles as a text table: one row per server, µs per message by category.
pub fn profiles(profiles: &[Profile]) -> String {
    let mut out = format!("{:<18}", "server");
    for c in Category::ALL {
        out.push_str(&format!(" {:>24}", c.label()));
    }
    out.push_str(&format!(" {:>8}\n", "total"));
    for p in profiles {
        out.push_str(&format!("{:<18}", p.server));
        for (_, share, us) in &p.categories {
            out.push_str(&format!(
                " {:>24}",
                format!("{us:.2} µs ({:.0} %)", share * 100.0)
            ));
        }
        out.push_str(&format!(" {:>8.2}\n", p.cpu_us_per_msg));
    }
    out
}

/// The scaling section of table.txt, or None when no row is a scaling point.
pub fn scaling(rows: &[Row], baseline: &str) -> Option<String> {
    let points: Vec<&Row> = rows
        .iter()
        .filter(|r| at_threads(&r.scenario).1.is_some())
        .collect();
    if points.is_empty() {
        return None;
    }
    let mut s = String::from(
        "\nScaling (--threads): per server thread count, messages per second at capacity, \
         server CPU µs per message and its ratio to the baseline at that count, the \
         loadgen's share of its cores, and SO_REUSEPORT's spread of the connections over \
         the server's threads (min–max, coefficient of variation); `!` marks a point the \
         loadgen may have paced (loadgen-limited, or its cores ≥ 90 % busy): not the \
         server's figure.\n",
    );
    for sc in first_seen(points.iter().map(|r| at_threads(&r.scenario).0)) {
        let _ = writeln!(s, "\n{sc}:");
        let _ = writeln!(
            s,
            "  {:<12} {:>7} {:>12} {:>9} {:>8} {:>8} {:>16}",
            "server", "threads", "msgs/s", "µs/msg", "×base", "loadgen", "spread (cv)"
        );
        let servers = points
            .iter()
            .filter(|r| at_threads(&r.scenario).0 == sc)
            .map(|r| r.backend.as_str());
        for server in first_seen(servers) {
            let mut mine: Vec<&&Row> = points
                .iter()
                .filter(|r| at_threads(&r.scenario).0 == sc && r.backend == server)
                .collect();
            mine.sort_by_key(|r| at_threads(&r.scenario).1);
            for r in mine {
                let n = at_threads(&r.scenario).1.unwrap_or(0);
                if let Some(why) = &r.failure {
                    let _ = writeln!(s, "  {server:<12} {n:>7}  FAILED: {why}");
                    continue;
                }
                let ratio = if r.backend == baseline {
                    "1.00".to_string()
                } else {
                    r.cpu_ratio.map_or("—".into(), |x| format!("{x:.2}"))
                };
                let spread = r.accepted_balance.map_or("—".into(), |b| {
                    format!("{}–{} ({:.2})", b.min, b.max, b.cv)
                });
                let _ = writeln!(
                    s,
                    "  {server:<12} {n:>7} {:>12.0} {:>9.2} {ratio:>8} {:>7.0}%{} {spread:>16}",
                    r.msgs_per_s,
                    r.server_cpu_us_per_msg,
                    r.loadgen_utilisation * 100.0,
                    if loadgen_bound(r) { "!" } else { " " },
                );
            }
        }
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::scaling::Balance;
    use crate::analysis::summary::{summarise, tests::run};
    use ringecho_loadgen::report::Report;

    #[test]
    fn header_and_cells_line_up_and_a_failed_run_says_why() {
        let mut reports = vec![
            run("a", "epoll", "1", 100.0, 5.0),
            run("a", "a-long-server-name", "1", 123_456.0, 4.0),
        ];
        reports.push(Report {
            failure: Some("never listened".into()),
            ..run("a", "gone", "1", 0.0, 0.0)
        });
        let rows = summarise(&reports, "epoll");
        let text = table(&rows, "epoll");
        let lines: Vec<&str> = text.lines().collect();
        let end = |l: &str, col: &str| l.find(col).map(|i| l[..i + col.len()].chars().count());
        let lim = end(lines[0], "lim").expect("a lim column");
        let measured: Vec<&&str> = lines[1..]
            .iter()
            .filter(|l| l.starts_with("a ") && (l.contains("epoll ") || l.contains("a-long")))
            .collect();
        assert_eq!(measured.len(), 2, "{text}");
        for l in measured {
            let upto: String = l.chars().take(lim).collect();
            assert!(
                upto.ends_with("/1"),
                "{l:?} does not end its lim column at {lim}"
            );
        }
        let failed = lines.iter().find(|l| l.contains("gone")).unwrap();
        assert!(failed.contains("FAILED: never listened"), "{failed}");
        assert!(text.contains("baseline: epoll "), "{text}");
    }

    #[test]
    fn the_2x2_section_places_each_server_and_shows_a_missing_one_as_a_dash() {
        let mut reports = Vec::new();
        for round in ["1", "2", "3"] {
            reports.push(run("c1000x64", "epoll-loop", round, 100.0, 5.0));
            reports.push(run("c1000x64", "multishot", round, 100.0, 5.0));
            reports.push(run("c1000x64", "epoll", round, 100.0, 5.0));
        }
        let rows = summarise(&reports, "epoll-loop");
        let text = table(&rows, "epoll-loop");
        let line = |head: &str| {
            text.lines()
                .find(|l| l.trim_start().starts_with(head))
                .unwrap()
        };
        assert!(
            line("hand-written loop").contains("epoll-loop 5.00"),
            "{text}"
        );
        assert!(
            line("hand-written loop").contains("multishot 5.00"),
            "{text}"
        );
        assert!(
            line("hand-written loop").contains("1.00 (1.00–1.00)"),
            "{text}"
        );
        // A server without figures shows as "-", not as a number.
        assert!(!line("runtime ").contains("uring"), "{text}");
        assert!(text.contains("multishot against epoll-loop"), "{text}");
        assert!(text.contains("baseline: epoll-loop"), "{text}");
    }

    #[test]
    fn paired_and_profile_tables_name_their_rows() {
        let rows = crate::analysis::paired::rows(
            &[crate::analysis::paired::Pair {
                scenario: "c1000x64".into(),
                server: "multishot".into(),
                server_cpu: 4.9,
                baseline_cpu: 5.0,
            }],
            "c-epoll",
        );
        let t = paired(&rows, "c-epoll");
        assert!(t.contains("side by side with c-epoll"), "{t}");
        assert!(t.contains("0.980"), "{t}");
        let p = crate::analysis::profile::profile("multishot", "", 5.0);
        assert!(profiles(&[p]).contains("multishot"));
    }

    #[test]
    fn the_table_shows_each_point_and_marks_a_loadgen_bound_one() {
        let row = |s: &str, b: &str, busy: f64| Row {
            scenario: s.into(),
            backend: b.into(),
            rounds: 3,
            msgs_per_s: 1000.0,
            server_cpu_us_per_msg: 5.0,
            cpu_ratio: Some(0.9),
            loadgen_utilisation: busy,
            accepted_balance: Balance::of(&[40, 60]),
            ..Row::default()
        };
        let rows = [
            row("c100x64@1t", "epoll-loop", 0.5),
            row("c100x64@2t", "epoll-loop", 0.95),
            row("c100x64@1t", "multishot", 0.5),
            row("c100x64", "multishot", 0.5),
        ];
        let t = scaling(&rows, "epoll-loop").unwrap();
        assert!(t.contains("c100x64:"), "{t}");
        assert_eq!(t.matches("epoll-loop").count(), 2, "{t}");
        assert!(t.contains("95%!"), "{t}");
        assert!(t.contains("40–60 (0.20)"), "{t}");
        assert!(scaling(&rows[3..], "epoll-loop").is_none());
    }
}
