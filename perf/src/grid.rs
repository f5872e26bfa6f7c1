//! The comparison's three questions, each answered apart, from the same interleaved rounds:
//!
//! 1. **io_uring against epoll, between equals**: `multishot` against `epoll-loop` (both
//!    hand-written loops, no runtime) and `uring` against `epoll` (both on a runtime).
//! 2. **What a runtime costs**: `epoll` against `epoll-loop`, `uring` against `multishot`.
//! 3. **Where the other servers stand** (`--server`, `--peers`): against both hand-written
//!    loops.
//!
//! A ratio against tokio's epoll mixes io_uring's gain with tokio's own cost; the 2×2 of
//! interface × driver separates them. Each ratio is the median of per-round ratios, shown
//! with its rounds' spread, and is called a win only where that spread does not cover 1.0.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::summary::{median, spread};

/// The four built-in backends' places in the 2×2: (interface, driver).
pub const CELLS: [(&str, &str, &str); 4] = [
    ("epoll-loop", "epoll", "hand-written loop"),
    ("multishot", "io_uring", "hand-written loop"),
    ("epoll", "epoll", "runtime"),
    ("uring", "io_uring", "runtime"),
];

/// The pairs compared: (question, server, over, what it isolates).
const PAIRS: [(Question, &str, &str, &str); 4] = [
    (
        Question::Interface,
        "multishot",
        "epoll-loop",
        "hand-written loops",
    ),
    (Question::Interface, "uring", "epoll", "on a runtime"),
    (Question::Runtime, "epoll", "epoll-loop", "tokio over epoll"),
    (
        Question::Runtime,
        "uring",
        "multishot",
        "tokio-uring over io_uring",
    ),
];

/// What a contrast answers, in the order the sections show them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Question {
    /// io_uring against epoll, the driver held equal.
    Interface,
    /// A runtime against a hand-written loop, the interface held equal.
    Runtime,
    /// Another server against a hand-written loop.
    Peer,
}

/// One server against another in one scenario, from the same rounds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Contrast {
    /// What it answers.
    pub question: Option<Question>,
    /// The server whose CPU is divided.
    pub server: String,
    /// The server it is divided by.
    pub over: String,
    /// What the pair holds equal, in words.
    pub between: String,
    /// Median of the per-round ratios of server CPU per message.
    pub cpu_ratio: f64,
    /// Lowest and highest per-round ratio.
    pub cpu_ratio_spread: (f64, f64),
    /// Median of the per-round ratios of messages per second.
    pub msgs_ratio: f64,
    /// Rounds paired.
    pub rounds: usize,
    /// One sentence: who wins and by how much, or "level".
    pub verdict: String,
}

/// One round's figures of one server, for pairing.
#[derive(Debug, Clone, Copy)]
pub struct Point<'a> {
    /// The round's tag.
    pub round: &'a str,
    /// Server CPU µs per message.
    pub cpu: f64,
    /// Messages per second.
    pub msgs: f64,
}

/// The contrast of `server` over `over` from their rounds; `None` without a common round.
pub fn contrast(
    question: Question,
    server: &str,
    over: &str,
    between: &str,
    a: &[Point],
    b: &[Point],
) -> Option<Contrast> {
    let mut cpu = Vec::new();
    let mut msgs = Vec::new();
    for p in a {
        let Some(q) = b.iter().find(|q| q.round == p.round) else {
            continue;
        };
        if p.cpu > 0.0 && q.cpu > 0.0 {
            cpu.push(p.cpu / q.cpu);
        }
        if q.msgs > 0.0 {
            msgs.push(p.msgs / q.msgs);
        }
    }
    if cpu.is_empty() {
        return None;
    }
    let mut c = Contrast {
        question: Some(question),
        server: server.into(),
        over: over.into(),
        between: between.into(),
        cpu_ratio: median(cpu.clone()),
        cpu_ratio_spread: spread(&cpu),
        msgs_ratio: median(msgs),
        rounds: cpu.len(),
        verdict: String::new(),
    };
    c.verdict = verdict(&c);
    Some(c)
}

/// Whether a spread covers 1.0: then the rounds do not say which is cheaper.
fn level(spread: (f64, f64)) -> bool {
    spread.0 <= 1.0 && spread.1 >= 1.0
}

/// The contrast's sentence.
fn verdict(c: &Contrast) -> String {
    let (lo, hi) = c.cpu_ratio_spread;
    let figure = format!("{:.2}× ({lo:.2}–{hi:.2}, {} rounds)", c.cpu_ratio, c.rounds);
    let pct = ((1.0 - c.cpu_ratio).abs() * 100.0).round();
    match c.question {
        Some(Question::Interface) => {
            let (cheaper, dearer) = if c.cpu_ratio < 1.0 {
                ("io_uring", "epoll")
            } else {
                ("epoll", "io_uring")
            };
            if level(c.cpu_ratio_spread) {
                format!(
                    "{}: {} against {} {figure}: level, the rounds' spread covers 1.0",
                    c.between, c.server, c.over
                )
            } else {
                format!(
                    "{}: {} against {} {figure}: {cheaper} wins, {pct:.0} % less CPU per \
                     message than {dearer}",
                    c.between, c.server, c.over
                )
            }
        }
        Some(Question::Runtime) => {
            if level(c.cpu_ratio_spread) {
                format!(
                    "{}: {} against {} {figure}: the runtime costs nothing measurable",
                    c.between, c.server, c.over
                )
            } else if c.cpu_ratio > 1.0 {
                format!(
                    "{}: {} against {} {figure}: the runtime costs {pct:.0} % more CPU per \
                     message",
                    c.between, c.server, c.over
                )
            } else {
                format!(
                    "{}: {} against {} {figure}: the runtime is {pct:.0} % cheaper",
                    c.between, c.server, c.over
                )
            }
        }
        _ => {
            let word = if level(c.cpu_ratio_spread) {
                "level".to_string()
            } else if c.cpu_ratio < 1.0 {
                format!("{pct:.0} % cheaper")
            } else {
                format!("{pct:.0} % dearer")
            };
            format!("{} against {} {figure}: {word}", c.server, c.over)
        }
    }
}

/// Every contrast a scenario's servers allow: the 2×2's four pairs, and each other server
/// against the hand-written loop of its interface where known, else against both.
/// `points(name)` gives a server's rounds.
pub fn contrasts<'a>(servers: &[&str], points: impl Fn(&str) -> Vec<Point<'a>>) -> Vec<Contrast> {
    let mut out = Vec::new();
    for (q, a, b, between) in PAIRS {
        if servers.contains(&a) && servers.contains(&b) {
            out.extend(contrast(q, a, b, between, &points(a), &points(b)));
        }
    }
    for s in servers {
        if CELLS.iter().any(|(name, _, _)| name == s) {
            continue;
        }
        for over in ["epoll-loop", "multishot"] {
            if servers.contains(&over) {
                out.extend(contrast(
                    Question::Peer,
                    s,
                    over,
                    "",
                    &points(s),
                    &points(over),
                ));
            }
        }
    }
    out
}

/// The text section: per scenario, the 2×2 of CPU per message and the sentences.
/// `cpu(scenario, server)` is the server's median CPU µs per message there.
pub fn table(
    scenarios: &[(String, Vec<Contrast>)],
    cpu: impl Fn(&str, &str) -> Option<f64>,
) -> String {
    let mut s = String::new();
    for (scenario, cs) in scenarios {
        if cs.is_empty() {
            continue;
        }
        let _ = writeln!(
            s,
            "\n{scenario}: server CPU µs per message, interface × driver (ratios: medians of \
             per-round ratios, spread)"
        );
        let cell =
            |name: &str| cpu(scenario, name).map_or("-".to_string(), |v| format!("{name} {v:.2}"));
        let find = |a: &str, b: &str| cs.iter().find(|c| c.server == a && c.over == b);
        let ratio = |c: Option<&Contrast>| {
            c.map_or("-".to_string(), |c| {
                let (lo, hi) = c.cpu_ratio_spread;
                format!("{:.2} ({lo:.2}–{hi:.2})", c.cpu_ratio)
            })
        };
        let _ = writeln!(
            s,
            "  {:<20} {:<20} {:<20} io_uring ×epoll",
            "", "epoll", "io_uring"
        );
        let _ = writeln!(
            s,
            "  {:<20} {:<20} {:<20} {}",
            "hand-written loop",
            cell("epoll-loop"),
            cell("multishot"),
            ratio(find("multishot", "epoll-loop"))
        );
        let _ = writeln!(
            s,
            "  {:<20} {:<20} {:<20} {}",
            "runtime",
            cell("epoll"),
            cell("uring"),
            ratio(find("uring", "epoll"))
        );
        let _ = writeln!(
            s,
            "  {:<20} {:<20} {:<20}",
            "runtime ×loop",
            ratio(find("epoll", "epoll-loop")),
            ratio(find("uring", "multishot"))
        );
        for c in cs {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn pts(v: &[(&'static str, f64)]) -> Vec<Point<'static>> {
        v.iter()
            .map(|&(round, cpu)| Point {
                round,
                cpu,
                msgs: 100.0,
            })
            .collect()
    }

    #[test]
    fn a_spread_over_one_is_level_and_a_clear_one_names_the_winner() {
        let loop_ = pts(&[("1", 5.0), ("2", 5.0), ("3", 5.0)]);
        let close = pts(&[("1", 4.9), ("2", 5.1), ("3", 4.95)]);
        let c = contrast(
            Question::Interface,
            "multishot",
            "epoll-loop",
            "x",
            &close,
            &loop_,
        )
        .unwrap();
        assert!(c.verdict.contains("level"), "{}", c.verdict);
        let clear = pts(&[("1", 4.5), ("2", 4.6), ("3", 4.4)]);
        let c = contrast(
            Question::Interface,
            "multishot",
            "epoll-loop",
            "x",
            &clear,
            &loop_,
        )
        .unwrap();
        assert!(c.verdict.contains("io_uring wins, 10 %"), "{}", c.verdict);
        assert_eq!(c.rounds, 3);
        let dear = pts(&[("1", 5.5), ("2", 5.6), ("3", 5.4)]);
        let c = contrast(Question::Runtime, "epoll", "epoll-loop", "x", &dear, &loop_).unwrap();
        assert!(c.verdict.contains("costs 10 % more"), "{}", c.verdict);
    }

    #[test]
    fn rounds_are_paired_by_name_and_missing_ones_left_out() {
        let a = pts(&[("1", 4.0), ("2", 8.0)]);
        let b = pts(&[("2", 4.0), ("3", 1.0)]);
        let c = contrast(Question::Runtime, "uring", "multishot", "x", &a, &b).unwrap();
        assert_eq!(c.rounds, 1);
        assert_eq!(c.cpu_ratio, 2.0);
        assert!(contrast(Question::Runtime, "a", "b", "x", &a, &pts(&[("9", 1.0)])).is_none());
    }

    #[test]
    fn the_grid_has_the_four_pairs_and_peers_against_the_loops() {
        let servers = ["epoll-loop", "multishot", "epoll", "uring", "c-epoll"];
        let cs = contrasts(&servers, |_| pts(&[("1", 5.0)]));
        let pairs: Vec<(&str, &str)> = cs
            .iter()
            .map(|c| (c.server.as_str(), c.over.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("multishot", "epoll-loop"),
                ("uring", "epoll"),
                ("epoll", "epoll-loop"),
                ("uring", "multishot"),
                ("c-epoll", "epoll-loop"),
                ("c-epoll", "multishot"),
            ]
        );
        let text = table(&[("c1000x64".into(), cs)], |_, n| {
            (n != "uring").then_some(5.0)
        });
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
        // A server without figures shows as "-", not as a number.
        assert!(!line("runtime ").contains("uring 5.00"), "{text}");
        assert!(text.contains("uring against epoll"), "{text}");
    }
}
