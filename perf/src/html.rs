//! report.html: one self-contained page that opens with the answer a person came for — a
//! chart of every server's CPU per message against the baseline in every scenario, with its
//! spread, and a sentence per scenario — then the machine, the full table, which figures to
//! trust, where the time goes, and the latency plots.

use std::fmt::Write as _;

use crate::profile::{Category, Profile};
use crate::results::{Contents, Part};
use ringecho_loadgen::sweep::Sweep;

use crate::summary::{scenario_order, verdict, Row};

/// Escapes text for HTML.
fn e(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn opt(v: Option<f64>) -> String {
    v.map_or("—".into(), |x| format!("{x:.2}"))
}

/// The page for a comparison's results.
pub fn page(c: &Contents, baseline: &str, plot_scenario: &str) -> String {
    let rows = c.rows.as_deref().unwrap_or_default();
    let machine = c.machine.as_deref().unwrap_or("");
    let mut b = String::from("<h1>ringecho compare report</h1>");
    // What the machine was, first: these figures hold for it alone.
    let conditions: Vec<String> = machine
        .lines()
        .filter(|l| {
            [
                "date:",
                "kernel:",
                "cpus:",
                "caches:",
                "io_uring:",
                "perf:",
                "split:",
            ]
            .iter()
            .any(|k| l.starts_with(k))
        })
        .map(e)
        .collect();
    if !conditions.is_empty() {
        let _ = write!(
            b,
            "<p class='conditions'>Measured on this machine alone (a ratio moves by up to 20 \
             points between machines): {}</p>",
            conditions.join(" · ")
        );
    }
    answer(&mut b, rows, baseline);
    grid(&mut b, rows);
    if let Some(scaling) = crate::scaling::table(rows, baseline) {
        let _ = write!(
            b,
            "<h2>Scaling with server threads</h2><pre>{}</pre>",
            e(scaling.trim_start())
        );
    }
    if let Some(m) = &c.map {
        map(&mut b, m);
    }
    let _ = write!(b, "<h2>Machine and flags</h2><pre>{}</pre>", e(machine));
    table(&mut b, rows, baseline);
    socket_options(&mut b, rows, baseline);
    b.push_str(TRUST);
    match &c.profile {
        Part::Ran(profiles) if !profiles.is_empty() => profile(&mut b, profiles, plot_scenario),
        Part::Skipped(why) => {
            let _ = write!(
                b,
                "<h2>Where the time goes</h2><p>--profile skipped: {}</p>",
                e(why)
            );
        }
        _ => {}
    }
    if let Some(paired) = &c.paired {
        let _ = write!(
            b,
            "<h2>Side by side (--paired)</h2><p>Each server run at the same time as the \
             baseline, sharing the cores, so a drift in the machine's speed falls on both: the \
             ratio of their CPU per message, free of the drift between runs that the \
             interleaved rounds above still carry. Each side sees half the load of a run \
             alone.</p><pre>{}</pre>",
            e(paired)
        );
    }
    let _ = write!(
        b,
        "<h2>Latency percentiles ({}, round 1)</h2><p>Latency in ms at each percentile (the \
         x axis), one line per server.</p>{}",
        e(plot_scenario),
        svg(c.latency_svg.as_deref())
    );
    if !c.sweeps.is_empty() {
        sweep_tables(&mut b, &c.sweeps, c.load_svg.as_deref());
    }
    format!("{HEAD}{b}\n</body></html>\n")
}

/// The map: its heat maps (the same SVG as map.svg), how it was made, and every FAILED cell
/// with its reason.
fn map(b: &mut String, m: &crate::map::MapFile) {
    let _ = write!(
        b,
        "<h2>The map: where io_uring wins, where it is level, where it loses</h2>\
         <p>Each cell is one workload, every server interleaved round by round ({} rounds of \
         {} after {} warm-up), the baseline run twice per round for its A/A noise. A cell is \
         coloured only when the contrast's rounds lie wholly outside that noise; otherwise it \
         is drawn level. Command: <code>{}</code>{}</p>",
        m.rounds,
        e(&m.duration),
        e(&m.warmup),
        e(&m.command),
        if m.complete {
            ""
        } else {
            " — <strong>interrupted</strong>: the cells that finished"
        }
    );
    b.push_str(&crate::map::svg(m));
    let failed: Vec<String> = m
        .records
        .iter()
        .filter_map(|r| {
            r.failure
                .as_ref()
                .map(|why| format!("<li>{} in {}: {}</li>", e(&r.server), e(&r.cell), e(why)))
        })
        .collect();
    if !failed.is_empty() {
        let _ = write!(b, "<p>FAILED cells:</p><ul>{}</ul>", failed.join(""));
    }
}

/// The inline part of an SVG file written beside the page.
fn svg(text: Option<&str>) -> String {
    let text = text.unwrap_or("");
    match text.find("<svg") {
        Some(i) => text[i..].to_string(),
        None => "<p>(no plot)</p>".into(),
    }
}

/// The chart of CPU per message ×baseline, and one sentence per scenario.
fn answer(b: &mut String, rows: &[Row], baseline: &str) {
    let scenarios = scenario_order(rows);
    let _ = write!(
        b,
        "<h2>Server CPU per echoed message, ×{0}</h2><p>Each server's CPU per echoed message \
         divided by {0}'s in the same round (median over rounds; the whisker spans the \
         rounds). Below 1: cheaper than {0}. This figure does not depend on how fast the \
         loadgen was.</p>",
        e(baseline)
    );
    b.push_str(&ratio_chart(rows, &scenarios, baseline));
    b.push_str("<ul class='answer'>");
    for s in &scenarios {
        let _ = write!(b, "<li>{}</li>", e(&sentence(rows, s, baseline)));
    }
    b.push_str("</ul>");
}

/// The three questions apart: per scenario, the 2×2 of interface × driver (CPU µs per
/// message in each cell, the ratios between them), then a sentence per contrast.
fn grid(b: &mut String, rows: &[Row]) {
    if rows.iter().all(|r| r.contrasts.is_empty()) {
        return;
    }
    b.push_str(
        "<h2>io_uring against epoll, between equals</h2><p>A ratio against tokio's epoll \
         mixes io_uring's gain with tokio's own cost. Here each interface is set against the \
         other with the driver held equal: <b>multishot</b> against <b>epoll-loop</b> (both \
         hand-written loops, no runtime) and <b>uring</b> against <b>epoll</b> (both on a \
         runtime); and each runtime against the hand-written loop of its interface, which is \
         what the runtime costs. Ratios are medians of per-round ratios of server CPU per \
         message, with the rounds' spread; a spread that covers 1.0 is called level.</p>",
    );
    for (s, mine) in crate::summary::scenario_contrasts(rows) {
        if mine.is_empty() {
            continue;
        }
        let cpu = |name: &str| {
            rows.iter()
                .find(|r| r.scenario == s && r.backend == name && r.failure.is_none())
                .map_or("—".to_string(), |r| {
                    format!(
                        "{} {:.2} µs <small>(user {:.2})</small>",
                        e(name),
                        r.server_cpu_us_per_msg,
                        r.server_user_us_per_msg
                    )
                })
        };
        let ratio = |a: &str, o: &str| {
            mine.iter()
                .find(|c| c.server == a && c.over == o)
                .map_or("—".to_string(), |c| {
                    let (lo, hi) = c.cpu_ratio_spread;
                    format!("{:.2}× <small>({lo:.2}–{hi:.2})</small>", c.cpu_ratio)
                })
        };
        let _ = write!(
            b,
            "<h3>{}</h3><table><tr><th></th><th>epoll</th><th>io_uring</th>\
             <th>io_uring ×epoll</th></tr>\
             <tr><th>hand-written loop</th><td>{}</td><td>{}</td><td>{}</td></tr>\
             <tr><th>runtime</th><td>{}</td><td>{}</td><td>{}</td></tr>\
             <tr><th>runtime ×loop</th><td>{}</td><td>{}</td><td></td></tr></table><ul class='answer'>",
            e(&s),
            cpu("epoll-loop"),
            cpu("multishot"),
            ratio("multishot", "epoll-loop"),
            cpu("epoll"),
            cpu("uring"),
            ratio("uring", "epoll"),
            ratio("epoll", "epoll-loop"),
            ratio("uring", "multishot"),
        );
        for c in mine {
            let _ = write!(b, "<li>{}</li>", e(&c.verdict));
        }
        b.push_str("</ul>");
    }
}

/// Each server's accepted-socket options, a server whose TCP_NODELAY differs from the
/// baseline's flagged.
fn socket_options(b: &mut String, rows: &[Row], baseline: &str) {
    let mut options: Vec<(String, crate::sockopts::SocketOptions)> = Vec::new();
    for r in rows {
        if let Some(o) = &r.socket_options {
            if !options.iter().any(|(n, _)| *n == r.backend) {
                options.push((r.backend.clone(), o.clone()));
            }
        }
    }
    if options.is_empty() {
        return;
    }
    let differ = crate::sockopts::differing(&options, baseline);
    b.push_str(
        "<h2>Socket options</h2><p>Read from one socket each server accepted. A server \
         without TCP_NODELAY lets Nagle coalesce a stream's small sends into fewer, larger \
         segments: a saving that belongs to the socket option, not to the I/O interface.</p><ul>",
    );
    for (name, o) in &options {
        let flag = if differ.contains(&name.as_str()) {
            format!(" <b>TCP_NODELAY differs from {}'s</b>", e(baseline))
        } else {
            String::new()
        };
        let _ = write!(b, "<li>{}: {}{flag}</li>", e(name), e(&o.describe()));
    }
    b.push_str("</ul>");
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

fn spread_text(r: &Row) -> String {
    match r.cpu_ratio_spread {
        Some((lo, hi)) if r.rounds > 1 => format!(" ({lo:.2}–{hi:.2} over {} rounds)", r.rounds),
        _ => String::new(),
    }
}

/// Horizontal bars of CPU ratio per scenario and server, a line at 1, whiskers for spread.
/// One SVG built in one pass (axis, then a group per scenario), kept whole so that every
/// coordinate is computed from the same few constants in sight.
fn ratio_chart(rows: &[Row], scenarios: &[String], baseline: &str) -> String {
    const BAR: f64 = 16.0;
    const GAP: f64 = 14.0;
    const LEFT: f64 = 230.0;
    const WIDTH: f64 = 900.0;
    let plotted: Vec<&Row> = rows
        .iter()
        .filter(|r| r.failure.is_none() && r.cpu_ratio.is_some())
        .collect();
    let top = plotted
        .iter()
        .map(|r| {
            r.cpu_ratio_spread
                .map_or(0.0, |s| s.1)
                .max(r.cpu_ratio.unwrap_or(0.0))
        })
        .fold(1.2f64, f64::max);
    let scale = (WIDTH - LEFT - 70.0) / top;
    let mut g = String::new();
    let mut y = 10.0;
    for s in scenarios {
        let group: Vec<&&Row> = plotted.iter().filter(|r| &r.scenario == s).collect();
        if group.is_empty() {
            continue;
        }
        let _ = write!(
            g,
            "<text x='4' y='{:.0}' font-weight='bold'>{}</text>",
            y + BAR - 4.0,
            e(s)
        );
        for r in group {
            let ratio = r.cpu_ratio.unwrap_or(0.0);
            let colour = if r.backend == baseline {
                "#bab0ac"
            } else if ratio <= 1.0 {
                "#59a14f"
            } else {
                "#e15759"
            };
            let w = ratio * scale;
            let _ = write!(
                g,
                "<text x='{:.0}' y='{:.0}' text-anchor='end'>{}</text>\
                 <rect x='{LEFT}' y='{y:.0}' width='{w:.1}' height='{:.0}' fill='{colour}'>\
                 <title>{} in {}: {ratio:.2}× {}{}</title></rect>",
                LEFT - 6.0,
                y + BAR - 4.0,
                e(&r.backend),
                BAR - 2.0,
                e(&r.backend),
                e(s),
                e(baseline),
                e(&spread_text(r))
            );
            if let Some((lo, hi)) = r.cpu_ratio_spread {
                let (x0, x1, ym) = (LEFT + lo * scale, LEFT + hi * scale, y + BAR / 2.0 - 1.0);
                let _ = write!(
                    g,
                    "<line x1='{x0:.1}' x2='{x1:.1}' y1='{ym:.1}' y2='{ym:.1}' stroke='#222'/>\
                     <line x1='{x0:.1}' x2='{x0:.1}' y1='{:.1}' y2='{:.1}' stroke='#222'/>\
                     <line x1='{x1:.1}' x2='{x1:.1}' y1='{:.1}' y2='{:.1}' stroke='#222'/>",
                    ym - 4.0,
                    ym + 4.0,
                    ym - 4.0,
                    ym + 4.0
                );
            }
            let end = LEFT + r.cpu_ratio_spread.map_or(w, |s| (s.1 * scale).max(w));
            let _ = write!(
                g,
                "<text x='{:.1}' y='{:.0}'>{ratio:.2}×</text>",
                end + 4.0,
                y + BAR - 4.0
            );
            y += BAR;
        }
        y += GAP;
    }
    let one = LEFT + scale;
    let height = y + 30.0;
    format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' height='{height:.0}' \
         font-family='sans-serif' font-size='12'>{g}\
         <line x1='{one:.1}' x2='{one:.1}' y1='4' y2='{:.0}' stroke='#222' stroke-dasharray='4 3'/>\
         <text x='{one:.1}' y='{:.0}' text-anchor='middle'>1.0 = {}</text>\
         <text x='{LEFT}' y='{:.0}' fill='#555'>server CPU µs per echoed message, × {}</text></svg>",
        y,
        y + 14.0,
        e(baseline),
        height - 2.0,
        e(baseline)
    )
}

/// The full table, one row per scenario and server.
fn table(b: &mut String, rows: &[Row], baseline: &str) {
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
    let _ = write!(
        b,
        "<h2>Results (ratios to {}, median of per-round ratios)</h2><table><tr>",
        e(baseline)
    );
    for h in head {
        let _ = write!(b, "<th>{}</th>", e(h));
    }
    b.push_str("</tr>");
    for r in rows {
        let v = verdict(r);
        if r.failure.is_some() {
            let _ = write!(
                b,
                "<tr class='{}'><td>{}</td><td>{}</td><td colspan='{}'></td><td>{}</td></tr>",
                v.class,
                e(&r.scenario),
                e(&r.backend),
                head.len() - 3,
                e(&v.text)
            );
            continue;
        }
        let cells = [
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
            v.text.clone(),
        ];
        let _ = write!(b, "<tr class='{}'>", v.class);
        for c in cells {
            let _ = write!(b, "<td>{}</td>", e(&c));
        }
        b.push_str("</tr>");
    }
    b.push_str("</table>");
}

const TRUST: &str = "<h2>Which figures to trust</h2><ul>\
<li><b>Server µs/msg</b> (the server process's CPU over the measured window, from the \
scheduler's nanosecond run time, per echoed message) is the comparable figure: it does not \
depend on how fast the loadgen is.</li>\
<li>Rows marked <b>loadgen-limited</b> in some round: there the loadgen's own CPU, send lag or \
achieved rate limited the run, so msgs/s and latency describe the loadgen as much as the \
server. On loopback a closed-loop loadgen core is usually saturated.</li>\
<li>Scenarios named <b>cap…</b> hold the server to a fraction of a core (a cgroup CPU quota, \
see machine.txt), so the server, not the loadgen, is the bottleneck: there msgs/s ×baseline is \
what each server does with the same CPU. Their latency is queueing in a saturated, throttled \
server and is not comparable with the other rows.</li>\
<li>A verdict of <b>—</b>: the server has no metrics endpoint, so its own FIN/RST counts are \
not known; the kernel's counters are in each run's JSON.</li>\
<li>Ratios are medians of per-round ratios measured minutes apart on the same machine; the \
spread column shows how much they moved between rounds.</li></ul>";

fn colour(c: Category) -> &'static str {
    match c {
        Category::TcpIp => "#4e79a7",
        Category::Scheduling => "#f28e2b",
        Category::Interface => "#e15759",
        Category::User => "#59a14f",
        Category::Other => "#bab0ac",
    }
}

/// The profile table and its stacked bar.
fn profile(b: &mut String, profiles: &[Profile], plot_scenario: &str) {
    let _ = write!(
        b,
        "<h2>Where the time goes ({}, perf record -e cpu-clock)</h2><p>Server CPU µs per \
         echoed message, split by where perf found it; one short run per server after the \
         rounds (profile.txt has the top symbols).</p><table><tr><th>server</th>",
        e(plot_scenario)
    );
    for c in Category::ALL {
        let _ = write!(b, "<th>{} µs</th>", e(c.label()));
    }
    b.push_str("<th>total µs/msg</th></tr>");
    for p in profiles {
        let _ = write!(b, "<tr><td>{}</td>", e(&p.server));
        for (_, share, us) in &p.categories {
            let _ = write!(b, "<td>{us:.2} ({:.0} %)</td>", 100.0 * share);
        }
        let _ = write!(b, "<td>{:.2}</td></tr>", p.cpu_us_per_msg);
    }
    b.push_str("</table>");
    let top = profiles
        .iter()
        .map(|p| p.cpu_us_per_msg)
        .fold(0.0, f64::max)
        .max(1e-9);
    let (width, bar, left) = (900.0, 22.0, 130.0);
    let height = 30.0 + profiles.len() as f64 * (bar + 8.0) + 40.0;
    let scale = (width - left - 80.0) / top;
    let _ = write!(
        b,
        "<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' \
         font-family='sans-serif' font-size='12'>"
    );
    for (i, p) in profiles.iter().enumerate() {
        let y = 20.0 + i as f64 * (bar + 8.0);
        let _ = write!(
            b,
            "<text x='{}' y='{}' text-anchor='end'>{}</text>",
            left - 6.0,
            y + 15.0,
            e(&p.server)
        );
        let mut x = left;
        for (c, _, us) in &p.categories {
            let w = us * scale;
            let _ = write!(
                b,
                "<rect x='{x:.1}' y='{y}' width='{w:.1}' height='{bar}' fill='{}'><title>{}: \
                 {us:.2} µs</title></rect>",
                colour(*c),
                e(c.label())
            );
            x += w;
        }
        let _ = write!(
            b,
            "<text x='{:.1}' y='{}'>{:.2} µs</text>",
            x + 4.0,
            y + 15.0,
            p.cpu_us_per_msg
        );
    }
    let y = 20.0 + profiles.len() as f64 * (bar + 8.0) + 10.0;
    for (i, c) in Category::ALL.iter().enumerate() {
        let x = left + 165.0 * i as f64;
        let _ = write!(
            b,
            "<rect x='{x}' y='{y}' width='12' height='12' fill='{}'/><text x='{}' y='{}'>{}</text>",
            colour(*c),
            x + 16.0,
            y + 11.0,
            e(c.label())
        );
    }
    let _ = write!(
        b,
        "<text x='{left}' y='{}' fill='#555'>server CPU µs per echoed message</text></svg>",
        height - 2.0
    );
}

/// The latency–load plot and each sweep's steps.
fn sweep_tables(b: &mut String, sweeps: &[Sweep], plot: Option<&str>) {
    let _ = write!(
        b,
        "<h2>Latency against offered load</h2><p>p50 and p99 latency in µs against the \
         offered rate in msg/s, one pair of lines per server.</p>{}",
        svg(plot)
    );
    for s in sweeps {
        let knee = s.knee_rate.map_or("none".into(), |k| format!("{k:.0}"));
        let _ = write!(
            b,
            "<h3>{}: knee {knee} msg/s (p99 ≤ {} µs); {}</h3><table><tr><th>offered msg/s</th>\
             <th>achieved msg/s</th><th>p50 µs</th><th>p99 µs</th><th>p99.9 µs</th>\
             <th>send lag p99 µs</th><th>server µs/msg</th><th>note</th></tr>",
            e(&s.label),
            s.p99_bound_us,
            e(&s.stopped)
        );
        for x in &s.steps {
            let mut note = if x.clean { "" } else { "NOT CLEAN" }.to_string();
            if x.loadgen_limited {
                note += &format!(" loadgen-limited: {}", x.limited_reasons.join("; "));
            }
            let cells = [
                format!("{:.0}", x.rate),
                format!("{:.0}", x.achieved),
                x.p50_us.to_string(),
                x.p99_us.to_string(),
                x.p999_us.to_string(),
                x.send_lag_p99_us.to_string(),
                opt(x.server_cpu_us_per_msg),
                note,
            ];
            b.push_str("<tr>");
            for c in cells {
                let _ = write!(b, "<td>{}</td>", e(&c));
            }
            b.push_str("</tr>");
        }
        b.push_str("</table>");
    }
}

const HEAD: &str = "<!doctype html>
<html lang=\"en\"><head><meta charset=\"utf-8\"><title>ringecho compare report</title>
<style>
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
</style></head><body>
";

#[cfg(test)]
mod tests {
    use super::*;

    fn row(scenario: &str, backend: &str, ratio: f64, spread: (f64, f64)) -> Row {
        Row {
            scenario: scenario.into(),
            backend: backend.into(),
            rounds: 3,
            cpu_ratio: Some(ratio),
            cpu_ratio_spread: Some(spread),
            witnessed: true,
            server_agrees: true,
            loadgen_limited_rounds: 3,
            ..Row::default()
        }
    }

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
    fn the_chart_has_a_bar_and_a_whisker_per_server_and_escapes_names() {
        let rows = vec![
            row("c100x64", "epoll", 1.0, (1.0, 1.0)),
            row("c100x64", "<odd>", 0.9, (0.8, 0.95)),
        ];
        let svg = ratio_chart(&rows, &scenario_order(&rows), "epoll");
        assert_eq!(svg.matches("<rect").count(), 2);
        assert_eq!(svg.matches("<line").count(), 2 * 3 + 1);
        assert!(svg.contains("&lt;odd&gt;") && !svg.contains("<odd>"));
        assert!(svg.contains("0.90×"));
    }
}
