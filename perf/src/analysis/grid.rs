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
//! with its rounds' spread, and is called by one rule ([`call`]): a winner only with
//! [`MIN_ROUNDS`] rounds or more and a spread wholly outside the noise the baseline showed
//! against itself in the same rounds (its A/A pair), else "level", or "too few rounds".

use serde::{Deserialize, Serialize};

use super::stats::{median, spread};

// The 2×2's data: the one place in perf that names the built-in backends. Everything else
// (the contrasts, the text table, the report, the map) derives from it.

/// The two interfaces, in the 2×2's column order.
pub const INTERFACES: [&str; 2] = ["epoll", "io_uring"];

/// The two drivers, in the 2×2's row order.
pub const DRIVERS: [&str; 2] = ["hand-written loop", "runtime"];

/// The four built-in backends' places in the 2×2: (server, interface, driver).
pub const CELLS: [(&str, &str, &str); 4] = [
    ("epoll-loop", INTERFACES[0], DRIVERS[0]),
    ("multishot", INTERFACES[1], DRIVERS[0]),
    ("epoll", INTERFACES[0], DRIVERS[1]),
    ("uring", INTERFACES[1], DRIVERS[1]),
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

/// The built-in backends compare runs by default, comma-separated.
pub const BACKENDS: &str = "epoll-loop,multishot,epoll,uring";

// The end of the 2×2's data.

/// The baseline when none is named: the first of the epoll servers (the hand-written loop,
/// then the runtime) among `servers`, else the first server.
pub fn default_baseline<'a>(servers: &[&'a str]) -> Option<&'a str> {
    DRIVERS
        .iter()
        .map(|d| cell(INTERFACES[0], d))
        .find_map(|b| servers.iter().find(|s| **s == b).copied())
        .or(servers.first().copied())
}

/// The built-in server at `interface` × `driver`.
pub fn cell(interface: &str, driver: &str) -> &'static str {
    CELLS
        .iter()
        .find(|(_, i, d)| *i == interface && *d == driver)
        .map(|(name, _, _)| *name)
        .expect("every interface × driver has a cell")
}

/// Whether `server` is one of the 2×2's built-in backends.
pub fn is_builtin(server: &str) -> bool {
    CELLS.iter().any(|(name, _, _)| *name == server)
}

/// The hand-written loops, epoll's first: what other servers are measured over.
pub fn loops() -> [&'static str; 2] {
    INTERFACES.map(|i| cell(i, DRIVERS[0]))
}

/// The pairs with their question, as (question, server, over, what it holds equal).
pub fn pairs() -> &'static [(Question, &'static str, &'static str, &'static str)] {
    &PAIRS
}

/// The pair that answers `question` for the cells sharing `driver` (an interface contrast)
/// or `interface` (a runtime contrast): (server, over).
pub fn pair(question: Question, along: &str) -> Option<(&'static str, &'static str)> {
    let place = |name: &str| CELLS.iter().find(|(n, _, _)| *n == name).copied();
    PAIRS
        .iter()
        .find(|(q, server, _, _)| {
            *q == question
                && place(server).is_some_and(|(_, i, d)| match question {
                    Question::Interface => d == along,
                    _ => i == along,
                })
        })
        .map(|(_, server, over, _)| (*server, *over))
}

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
    /// The noise band the call was made against: the baseline's A/A spread widened to hold
    /// 1.0 and its reciprocal ([`noise_band`]); (1, 1) where no A/A pair ran.
    pub noise: (f64, f64),
    /// What the rounds allow saying.
    pub call: Option<Call>,
    /// One sentence: who wins and by how much, or "level".
    pub verdict: String,
}

/// Rounds a winner needs at least.
pub const MIN_ROUNDS: usize = 3;

/// What a contrast's rounds allow saying: the one rule the table, the sentences, the report
/// and the map all use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Call {
    /// The spread lies wholly outside the noise band: the cheaper one wins.
    Winner,
    /// The spread overlaps the noise band.
    Level,
    /// Fewer than [`MIN_ROUNDS`] rounds.
    TooFewRounds,
}

/// The band one server moved in against itself: the A/A ratios' spread `aa`, widened to hold
/// 1.0 and mirrored (a server is as likely to measure 5 % dearer as 5 % cheaper than
/// itself); (1, 1) without an A/A pair, so that then only a spread over 1.0 is level.
pub fn noise_band(aa: Option<(f64, f64)>) -> (f64, f64) {
    match aa {
        Some((lo, hi)) if lo > 0.0 && hi > 0.0 => {
            (lo.min(1.0 / hi).min(1.0), hi.max(1.0 / lo).max(1.0))
        }
        _ => (1.0, 1.0),
    }
}

/// The rule: a winner needs [`MIN_ROUNDS`] rounds and a spread wholly outside `noise`.
pub fn call(rounds: usize, spread: (f64, f64), noise: (f64, f64)) -> Call {
    if rounds < MIN_ROUNDS {
        Call::TooFewRounds
    } else if spread.1 < noise.0 || spread.0 > noise.1 {
        Call::Winner
    } else {
        Call::Level
    }
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

/// The contrast of `server` over `over` from their rounds, called against the scenario's A/A
/// spread `aa`; `None` without a common round.
pub fn contrast(
    question: Question,
    server: &str,
    over: &str,
    between: &str,
    a: &[Point],
    b: &[Point],
    aa: Option<(f64, f64)>,
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
        noise: noise_band(aa),
        call: None,
        verdict: String::new(),
    };
    c.call = Some(call(c.rounds, c.cpu_ratio_spread, c.noise));
    c.verdict = verdict(&c);
    Some(c)
}

/// The contrast's sentence.
fn verdict(c: &Contrast) -> String {
    let (lo, hi) = c.cpu_ratio_spread;
    let figure = format!("{:.2}× ({lo:.2}–{hi:.2}, {} rounds)", c.cpu_ratio, c.rounds);
    let pct = ((1.0 - c.cpu_ratio).abs() * 100.0).round();
    let level = |_: (f64, f64)| c.call != Some(Call::Winner);
    let inside = if c.noise == (1.0, 1.0) {
        "the rounds' spread covers 1.0".to_string()
    } else {
        format!(
            "inside the noise (the baseline against itself: {:.2}–{:.2})",
            c.noise.0, c.noise.1
        )
    };
    if c.call == Some(Call::TooFewRounds) {
        let who = match c.question {
            Some(Question::Peer) | None => String::new(),
            _ => format!("{}: ", c.between),
        };
        return format!(
            "{who}{} against {} {figure}: too few rounds to call (a winner needs {MIN_ROUNDS})",
            c.server, c.over
        );
    }
    match c.question {
        Some(Question::Interface) => {
            let [epoll, io_uring] = INTERFACES;
            let (cheaper, dearer) = if c.cpu_ratio < 1.0 {
                (io_uring, epoll)
            } else {
                (epoll, io_uring)
            };
            if level(c.cpu_ratio_spread) {
                format!(
                    "{}: {} against {} {figure}: level, {inside}",
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
                    "{}: {} against {} {figure}: the runtime costs nothing measurable, {inside}",
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
                format!("level, {inside}")
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
pub fn contrasts<'a>(
    servers: &[&str],
    points: impl Fn(&str) -> Vec<Point<'a>>,
    aa: Option<(f64, f64)>,
) -> Vec<Contrast> {
    let mut out = Vec::new();
    for (q, a, b, between) in PAIRS {
        if servers.contains(&a) && servers.contains(&b) {
            out.extend(contrast(q, a, b, between, &points(a), &points(b), aa));
        }
    }
    for s in servers {
        if is_builtin(s) {
            continue;
        }
        for over in loops() {
            if servers.contains(&over) {
                out.extend(contrast(
                    Question::Peer,
                    s,
                    over,
                    "",
                    &points(s),
                    &points(over),
                    aa,
                ));
            }
        }
    }
    out
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
            None,
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
            None,
        )
        .unwrap();
        assert!(c.verdict.contains("io_uring wins, 10 %"), "{}", c.verdict);
        assert_eq!(c.rounds, 3);
        let dear = pts(&[("1", 5.5), ("2", 5.6), ("3", 5.4)]);
        let c = contrast(
            Question::Runtime,
            "epoll",
            "epoll-loop",
            "x",
            &dear,
            &loop_,
            None,
        )
        .unwrap();
        assert!(c.verdict.contains("costs 10 % more"), "{}", c.verdict);
    }

    /// The rule on made-up rounds: too few rounds, level inside the A/A band, a winner only
    /// wholly outside it.
    #[test]
    fn a_winner_needs_three_rounds_and_a_spread_outside_the_a_a_band() {
        let base = pts(&[("1", 5.0), ("2", 5.0), ("3", 5.0)]);
        let ten_pct = pts(&[("1", 4.5), ("2", 4.6), ("3", 4.4)]);
        let two_rounds = pts(&[("1", 4.5), ("2", 4.6)]);
        let interface = |a: &[Point], aa| {
            contrast(
                Question::Interface,
                "multishot",
                "epoll-loop",
                "x",
                a,
                &base,
                aa,
            )
            .unwrap()
        };
        let c = interface(&two_rounds, None);
        assert_eq!(c.call, Some(Call::TooFewRounds));
        assert!(
            c.verdict.contains("too few rounds to call"),
            "{}",
            c.verdict
        );
        // The baseline moved 0.87–1.11 against itself: 0.88–0.92 is inside that noise.
        let c = interface(&ten_pct, Some((0.87, 1.11)));
        assert_eq!(c.call, Some(Call::Level));
        assert!(c.verdict.contains("inside the noise"), "{}", c.verdict);
        // A quieter machine, 0.97–1.02 (band 0.97–1.03): the same rounds name a winner.
        let c = interface(&ten_pct, Some((0.97, 1.02)));
        assert_eq!(c.call, Some(Call::Winner));
        assert!(c.verdict.contains("io_uring wins, 10 %"), "{}", c.verdict);
        // A one-sided A/A (1.02–1.06) still leaves 0.95–1.0 as noise, mirrored.
        assert_eq!(noise_band(Some((1.02, 1.06))).1, 1.06);
        assert!((noise_band(Some((1.02, 1.06))).0 - 1.0 / 1.06).abs() < 1e-9);
        assert_eq!(noise_band(None), (1.0, 1.0));
    }

    #[test]
    fn rounds_are_paired_by_name_and_missing_ones_left_out() {
        let a = pts(&[("1", 4.0), ("2", 8.0)]);
        let b = pts(&[("2", 4.0), ("3", 1.0)]);
        let c = contrast(Question::Runtime, "uring", "multishot", "x", &a, &b, None).unwrap();
        assert_eq!(c.rounds, 1);
        assert_eq!(c.cpu_ratio, 2.0);
        assert!(c.verdict.contains("too few rounds"), "{}", c.verdict);
        let none = contrast(
            Question::Runtime,
            "a",
            "b",
            "x",
            &a,
            &pts(&[("9", 1.0)]),
            None,
        );
        assert!(none.is_none());
    }

    #[test]
    fn the_grid_has_the_four_pairs_and_peers_against_the_loops() {
        let servers = ["epoll-loop", "multishot", "epoll", "uring", "c-epoll"];
        let cs = contrasts(&servers, |_| pts(&[("1", 5.0)]), None);
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
        assert_eq!(
            pair(Question::Interface, DRIVERS[1]),
            Some(("uring", "epoll"))
        );
        assert_eq!(
            pair(Question::Runtime, INTERFACES[1]),
            Some(("uring", "multishot"))
        );
        assert_eq!(loops(), ["epoll-loop", "multishot"]);
        let names: Vec<&str> = CELLS.iter().map(|c| c.0).collect();
        assert_eq!(BACKENDS, names.join(","));
        assert_eq!(default_baseline(&["uring", "epoll"]), Some("epoll"));
        assert_eq!(
            default_baseline(&["multishot", "epoll-loop"]),
            Some("epoll-loop")
        );
        assert_eq!(default_baseline(&["c-epoll"]), Some("c-epoll"));
    }
}
