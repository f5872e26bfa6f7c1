//! report.html: one self-contained page that opens with the answer a person came for — a
//! chart of every server's CPU per message against the baseline in every scenario, with its
//! spread, and a sentence per scenario — then the 2×2 between equals, the machine, the full
//! table, which figures to trust, where the time goes, and the latency plots.
//!
//! Written through maud: every value is escaped unless marked otherwise, and the only
//! markup let through as it is are SVG files this crate or the loadgen drew.

use std::fmt::Write as _;

use maud::{html, Markup, PreEscaped, DOCTYPE};
use ringecho_loadgen::sweep::Sweep;

use super::chart::{self, spread_text};
use crate::analysis::grid::{self, Question};
use crate::analysis::map::MapFile;
use crate::analysis::profile::{Category, Profile};
use crate::analysis::summary::{verdict, Row};
use crate::analysis::view::{self, GridView, Ratio};
use crate::results::{Contents, Part};

/// The machine.txt lines the page opens with.
const CONDITIONS: [&str; 7] = [
    "date:",
    "kernel:",
    "cpus:",
    "caches:",
    "io_uring:",
    "perf:",
    "split:",
];

const STYLE: &str = "
body { font-family: sans-serif; margin: 2em; color: #111; }
table { border-collapse: collapse; font-size: 13px; margin-bottom: 1em; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: right; }
th { background: #f2f2f2; }
td:first-child, td:nth-child(2) { text-align: left; }
tr.bad td { background: #fde2e2; }
tr.note td:last-child { color: #555; }
ul.answer li { margin-bottom: 0.3em; }
pre { background: #f7f7f7; padding: 8px; }
svg { max-width: 100%; height: auto; }
";

fn opt(v: Option<f64>) -> String {
    v.map_or("—".into(), |x| format!("{x:.2}"))
}

/// The page for a comparison's results.
pub fn page(c: &Contents, baseline: &str, plot_scenario: &str) -> String {
    let rows = c.rows.as_deref().unwrap_or_default();
    let machine = c.machine.as_deref().unwrap_or("");
    let conditions: Vec<&str> = machine
        .lines()
        .filter(|l| CONDITIONS.iter().any(|k| l.starts_with(k)))
        .collect();
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "ringecho compare report" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                h1 { "ringecho compare report" }
                // What the machine was, first: these figures hold for it alone.
                @if !conditions.is_empty() {
                    p.conditions {
                        "Measured on this machine alone (a ratio moves by up to 20 points \
                         between machines): " (conditions.join(" · "))
                    }
                }
                (answer(rows, baseline))
                (grids(&view::grids(rows)))
                @if let Some(scaling) = super::text::scaling(rows, baseline) {
                    h2 { "Scaling with server threads" }
                    pre { (scaling.trim_start()) }
                }
                @if let Some(m) = &c.map { (map(m)) }
                h2 { "Machine and flags" }
                pre { (machine) }
                (table(rows, baseline))
                (socket_options(rows, baseline))
                (trust())
                @match &c.profile {
                    Part::Ran(profiles) if !profiles.is_empty() => (profile(profiles, plot_scenario)),
                    Part::Skipped(why) => {
                        h2 { "Where the time goes" }
                        p { "--profile skipped: " (why) }
                    }
                    _ => {}
                }
                @if let Some(paired) = &c.paired {
                    h2 { "Side by side (--paired)" }
                    p {
                        "Each server run at the same time as the baseline, sharing the cores, \
                         so a drift in the machine's speed falls on both: the ratio of their CPU \
                         per message, free of the drift between runs that the interleaved rounds \
                         above still carry. Each side sees half the load of a run alone."
                    }
                    pre { (paired) }
                }
                h2 { "Latency percentiles (" (plot_scenario) ", round 1)" }
                p { "Latency in ms at each percentile (the x axis), one line per server." }
                (svg_file(c.latency_svg.as_deref()))
                @if !c.sweeps.is_empty() { (sweep_tables(&c.sweeps, c.load_svg.as_deref())) }
            }
        }
    };
    page.into_string() + "\n"
}

/// The inline part of an SVG file drawn beside the page (by plotters or by this crate),
/// let through as it is.
fn svg_file(text: Option<&str>) -> Markup {
    let text = text.unwrap_or("");
    match text.find("<svg") {
        Some(i) => PreEscaped(text[i..].to_string()),
        None => html! { p { "(no plot)" } },
    }
}

/// The map: its heat maps (the same SVG as map.svg), how it was made, and every FAILED cell
/// with its reason.
fn map(m: &MapFile) -> Markup {
    let failed: Vec<_> = m
        .records
        .iter()
        .filter_map(|r| r.failure.as_ref().map(|why| (r, why)))
        .collect();
    html! {
        h2 { "The map: where io_uring wins, where it is level, where it loses" }
        p {
            "Each cell is one workload, every server interleaved round by round ("
            (m.rounds) " rounds of " (m.duration) " after " (m.warmup) " warm-up), the \
             baseline run twice per round for its A/A noise. A cell is coloured only when the \
             contrast's rounds lie wholly outside that noise; otherwise it is drawn level. \
             Command: " code { (m.command) }
            @if !m.complete { " — " strong { "interrupted" } ": the cells that finished" }
        }
        (PreEscaped(super::heat::svg(m)))
        @if !failed.is_empty() {
            p { "FAILED cells:" }
            ul { @for (r, why) in &failed { li { (r.server) " in " (r.cell) ": " (why) } } }
        }
    }
}

/// The chart of CPU per message ×baseline, and one sentence per scenario.
fn answer(rows: &[Row], baseline: &str) -> Markup {
    let scenarios = view::scenario_order(rows);
    html! {
        h2 { "Server CPU per echoed message, ×" (baseline) }
        p {
            "Each server's CPU per echoed message divided by " (baseline) "'s in the same \
             round (median over rounds; the whisker spans the rounds). Below 1: cheaper than "
            (baseline) ". This figure does not depend on how fast the loadgen was."
        }
        (chart::ratios(rows, &scenarios, baseline))
        ul.answer { @for s in &scenarios { li { (sentence(rows, s, baseline)) } } }
    }
}

/// `ratio` as `0.93× (0.91–0.95)`, or a dash.
fn ratio_cell(r: Option<Ratio>) -> Markup {
    match r {
        Some(r) => {
            html! { (format!("{:.2}× ", r.median)) small { (format!("({:.2}–{:.2})", r.spread.0, r.spread.1)) } }
        }
        None => html! { "—" },
    }
}

/// The three questions apart: per scenario, the 2×2 of interface × driver (CPU µs per
/// message in each cell, the ratios between them), then a sentence per contrast.
fn grids(views: &[GridView]) -> Markup {
    // The pairs in words, from the 2×2's data: "a against b (what it holds equal)".
    let said = |q: Question| {
        grid::pairs()
            .iter()
            .filter(|(pq, ..)| *pq == q)
            .map(|(_, a, b, between)| format!("{a} against {b} ({between})"))
            .collect::<Vec<_>>()
            .join(" and ")
    };
    html! {
        @if !views.is_empty() {
            h2 { "io_uring against epoll, between equals" }
            p {
                "A ratio against a runtime's epoll mixes io_uring's gain with the runtime's own \
                 cost. Here each interface is set against the other with the driver held \
                 equal: " b { (said(Question::Interface)) } "; and each runtime against the \
                 hand-written loop of its interface, which is what the runtime costs: "
                b { (said(Question::Runtime)) } ". Ratios are medians of per-round ratios of \
                 server CPU per message, with the rounds' spread; a spread inside the \
                 baseline's own noise is called level."
            }
            @for v in views {
                @let [epoll, io_uring] = v.interfaces;
                h3 { (v.scenario) }
                table {
                    tr { th {} th { (epoll) } th { (io_uring) } th { (io_uring) " ×" (epoll) } }
                    @for row in &v.rows {
                        tr {
                            th { (row.driver) }
                            @for place in &row.places {
                                td {
                                    @match place.cpu {
                                        Some((cpu, user)) => {
                                            (place.server) " " (format!("{cpu:.2}")) " µs "
                                            small { "(user " (format!("{user:.2}")) ")" }
                                        }
                                        None => "—",
                                    }
                                }
                            }
                            td { (ratio_cell(row.interface)) }
                        }
                    }
                    tr {
                        th { (v.rows[1].driver) " ×loop" }
                        td { (ratio_cell(v.runtime[0])) }
                        td { (ratio_cell(v.runtime[1])) }
                        td {}
                    }
                }
                ul.answer { @for c in &v.contrasts { li { (c.verdict) } } }
            }
        }
    }
}

/// Each server's accepted-socket options, a server whose TCP_NODELAY differs from the
/// baseline's flagged.
fn socket_options(rows: &[Row], baseline: &str) -> Markup {
    let (options, differ) = view::socket_options(rows, baseline);
    html! {
        @if !options.is_empty() {
            h2 { "Socket options" }
            p {
                "Read from one socket each server accepted. A server without TCP_NODELAY lets \
                 Nagle coalesce a stream's small sends into fewer, larger segments: a saving \
                 that belongs to the socket option, not to the I/O interface."
            }
            ul {
                @for (name, o) in &options {
                    li {
                        (name) ": " (o.describe())
                        @if differ.contains(name) { " " b { "TCP_NODELAY differs from " (baseline) "'s" } }
                    }
                }
            }
        }
    }
}

/// One plain sentence on a scenario: the cheapest server, each one's ratio, and what to
/// make of throughput there.
fn sentence(rows: &[Row], scenario: &str, baseline: &str) -> String {
    let mut ok: Vec<&Row> = rows
        .iter()
        .filter(|r| r.scenario == scenario && r.failure.is_none() && r.cpu_ratio.is_some())
        .collect();
    let failed: Vec<&str> = rows
        .iter()
        .filter(|r| r.scenario == scenario && verdict(r).class == "bad")
        .map(|r| r.backend.as_str())
        .collect();
    ok.sort_by(|a, b| a.cpu_ratio.partial_cmp(&b.cpu_ratio).expect("finite"));
    let named = match crate::scenario::find(scenario) {
        Some(sc) => format!("{scenario} ({})", sc.what),
        None => scenario.to_string(),
    };
    let mut s = match ok.first() {
        None => format!("{named}: no server finished cleanly."),
        Some(best) => {
            let others: Vec<String> = ok[1..]
                .iter()
                .map(|r| format!("{} {:.2}×", r.backend, r.cpu_ratio.unwrap_or(0.0)))
                .collect();
            let unit = match best.server_cpu_us_per_conn {
                Some(us) => format!("per connection ({us:.1} µs: accept, one echo, close)"),
                None => "per message".to_string(),
            };
            format!(
                "{named}: {} used the least CPU {unit}, {:.2}× {baseline}'s{}{}.",
                best.backend,
                best.cpu_ratio.unwrap_or(0.0),
                spread_text(best),
                if others.is_empty() {
                    String::new()
                } else {
                    format!("; then {}", others.join(", "))
                }
            )
        }
    };
    let limited = ok.iter().filter(|r| r.loadgen_limited_rounds > 0).count();
    if limited > 0 {
        let _ = write!(
            s,
            " {limited} of {} rows were loadgen-limited: compare CPU per message there, not \
             msgs/s.",
            ok.len()
        );
    }
    if !failed.is_empty() {
        let _ = write!(s, " Failed or not verified: {}.", failed.join(", "));
    }
    s
}

/// The full table, one row per scenario and server.
fn table(rows: &[Row], baseline: &str) -> Markup {
    let x = format!("×{baseline}");
    let cpu_x = format!("CPU ×{baseline}");
    let head = [
        "scenario",
        "server",
        "msgs/s",
        &x,
        "p50 µs",
        "p99 µs",
        "p99.9 µs",
        "server µs/msg",
        "user",
        "sys",
        &cpu_x,
        "spread",
        "syscalls/msg",
        "RSS MiB",
        "loadgen busy",
        "loadgen-limited",
        "FIN/RST",
        "verdict",
    ];
    let cells = |r: &Row| {
        [
            r.scenario.clone(),
            r.backend.clone(),
            format!("{:.0}", r.msgs_per_s),
            opt(r.msgs_ratio),
            format!("{:.0}", r.p50_us),
            format!("{:.0}", r.p99_us),
            format!("{:.0}", r.p999_us),
            format!("{:.2}", r.server_cpu_us_per_msg),
            format!("{:.2}", r.server_user_us_per_msg),
            format!("{:.2}", r.server_sys_us_per_msg),
            opt(r.cpu_ratio),
            r.cpu_ratio_spread
                .map_or("—".into(), |(a, c)| format!("{a:.2}–{c:.2}")),
            opt(r.server_syscalls_per_msg),
            format!("{:.1}", r.server_rss_mib),
            format!("{:.0}%", 100.0 * r.loadgen_utilisation),
            format!("{}/{}", r.loadgen_limited_rounds, r.rounds),
            format!("{}/{}", r.fin, r.rst),
            verdict(r).text,
        ]
    };
    html! {
        h2 { "Results (ratios to " (baseline) ", median of per-round ratios)" }
        table {
            tr { @for h in head { th { (h) } } }
            @for r in rows {
                @let v = verdict(r);
                tr class=(v.class) {
                    @if r.failure.is_some() {
                        td { (r.scenario) } td { (r.backend) }
                        td colspan=(head.len() - 3) {}
                        td { (v.text) }
                    } @else {
                        @for c in cells(r) { td { (c) } }
                    }
                }
            }
        }
    }
}

/// Which figures to trust, and why.
fn trust() -> Markup {
    html! {
        h2 { "Which figures to trust" }
        ul {
            li {
                b { "Server µs/msg" } " (the server process's CPU over the measured window, \
                 from the scheduler's nanosecond run time, per echoed message) is the \
                 comparable figure: it does not depend on how fast the loadgen is."
            }
            li {
                "Rows marked " b { "loadgen-limited" } " in some round: there the loadgen's \
                 own CPU, send lag or achieved rate limited the run, so msgs/s and latency \
                 describe the loadgen as much as the server. On loopback a closed-loop loadgen \
                 core is usually saturated."
            }
            li {
                "Scenarios named " b { "cap…" } " hold the server to a fraction of a core (a \
                 cgroup CPU quota, see machine.txt), so the server, not the loadgen, is the \
                 bottleneck: there msgs/s ×baseline is what each server does with the same \
                 CPU. Their latency is queueing in a saturated, throttled server and is not \
                 comparable with the other rows."
            }
            li {
                "A verdict of " b { "—" } ": the server has no metrics endpoint, so its own \
                 FIN/RST counts are not known; the kernel's counters are in each run's JSON."
            }
            li {
                "Ratios are medians of per-round ratios measured minutes apart on the same \
                 machine; the spread column shows how much they moved between rounds."
            }
        }
    }
}

/// The profile table and its stacked bar.
fn profile(profiles: &[Profile], plot_scenario: &str) -> Markup {
    html! {
        h2 { "Where the time goes (" (plot_scenario) ", perf record -e cpu-clock)" }
        p {
            "Server CPU µs per echoed message, split by where perf found it; one short run \
             per server after the rounds (profile.txt has the top symbols)."
        }
        table {
            tr {
                th { "server" }
                @for c in Category::ALL { th { (c.label()) " µs" } }
                th { "total µs/msg" }
            }
            @for p in profiles {
                tr {
                    td { (p.server) }
                    @for (_, share, us) in &p.categories {
                        td { (format!("{us:.2} ({:.0} %)", 100.0 * share)) }
                    }
                    td { (format!("{:.2}", p.cpu_us_per_msg)) }
                }
            }
        }
        (chart::profile(profiles))
    }
}

/// The latency–load plot and each sweep's steps.
fn sweep_tables(sweeps: &[Sweep], plot: Option<&str>) -> Markup {
    html! {
        h2 { "Latency against offered load" }
        p {
            "p50 and p99 latency in µs against the offered rate in msg/s, one pair of lines \
             per server."
        }
        (svg_file(plot))
        @for s in sweeps {
            h3 {
                (s.label) ": knee " (s.knee_rate.map_or("none".into(), |k| format!("{k:.0}")))
                " msg/s (p99 ≤ " (s.p99_bound_us) " µs); " (s.stopped)
            }
            table {
                tr {
                    th { "offered msg/s" } th { "achieved msg/s" } th { "p50 µs" }
                    th { "p99 µs" } th { "p99.9 µs" } th { "send lag p99 µs" }
                    th { "server µs/msg" } th { "note" }
                }
                @for x in &s.steps {
                    @let mut note = if x.clean { "" } else { "NOT CLEAN" }.to_string();
                    @if x.loadgen_limited {
                        @let _ = write!(note, " loadgen-limited: {}", x.limited_reasons.join("; "));
                    }
                    tr {
                        td { (format!("{:.0}", x.rate)) }
                        td { (format!("{:.0}", x.achieved)) }
                        td { (x.p50_us) }
                        td { (x.p99_us) }
                        td { (x.p999_us) }
                        td { (x.send_lag_p99_us) }
                        td { (opt(x.server_cpu_us_per_msg)) }
                        td { (note) }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::chart::tests::row;

    #[test]
    fn each_scenario_gets_a_sentence_naming_the_cheapest_server() {
        let rows = vec![
            row("c100x64", "epoll", 1.0, (1.0, 1.0)),
            row("c100x64", "multishot", 0.93, (0.91, 0.95)),
            row("c100x64", "uring", 1.04, (1.0, 1.1)),
        ];
        let s = sentence(&rows, "c100x64", "epoll");
        assert!(
            s.starts_with(
                "c100x64 (100 connections × 64 B, closed loop): multishot used the least CPU \
                 per message, 0.93× epoll's"
            ),
            "{s}"
        );
        assert!(s.contains("(0.91–0.95 over 3 rounds)"), "{s}");
        assert!(s.contains("then epoll 1.00×, uring 1.04×"), "{s}");
        assert!(s.contains("3 of 3 rows were loadgen-limited"), "{s}");
    }

    #[test]
    fn the_page_escapes_what_it_is_given() {
        let mut odd = row("c100x64", "<script>x</script>", 0.9, (0.8, 0.95));
        odd.failure = Some("said <b>no</b>".into());
        let rows = vec![row("c100x64", "epoll-loop", 1.0, (1.0, 1.0)), odd];
        let contents = Contents {
            rows: Some(rows),
            machine: Some("kernel: 6.18 & more\n".into()),
            ..Contents::default()
        };
        let page = page(&contents, "epoll-loop", "c100x64");
        assert!(page.starts_with("<!DOCTYPE html>"), "{}", &page[..40]);
        assert!(!page.contains("<script>"), "a name is escaped");
        assert!(page.contains("&lt;script&gt;"));
        assert!(page.contains("said &lt;b&gt;no&lt;/b&gt;"));
        assert!(page.contains("kernel: 6.18 &amp; more"));
    }
}
