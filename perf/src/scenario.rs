//! The comparison's scenarios as data: each name, the loadgen flags it stands for, what it
//! shows, and whether a default or quick run includes it. compare.sh asks for them
//! (`ringecho-perf scenario NAME`, `ringecho-perf scenarios [--quick]`), and the report
//! describes each scenario in its words.

/// One scenario of the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scenario {
    /// Its name in flags, file names and the table.
    pub name: &'static str,
    /// The loadgen flags it adds to every run.
    pub flags: &'static str,
    /// What it is, in the report's words.
    pub what: &'static str,
    /// In a run without `--scenarios`.
    pub default: bool,
    /// In a `--quick` run.
    pub quick: bool,
}

const fn s(
    name: &'static str,
    flags: &'static str,
    what: &'static str,
    default: bool,
    quick: bool,
) -> Scenario {
    Scenario {
        name,
        flags,
        what,
        default,
        quick,
    }
}

/// Every scenario, in run order. `cap…` ones run their uncapped namesake's flags with the
/// server held to a fraction of a core (compare.sh's `--cap`).
pub const ALL: [Scenario; 18] = [
    s(
        "c100x64",
        "--connections 100 --payload 64",
        "100 connections × 64 B, closed loop",
        true,
        true,
    ),
    s(
        "c1000x64",
        "--connections 1000 --payload 64",
        "1,000 connections × 64 B, closed loop",
        true,
        false,
    ),
    s(
        "c1000x4k",
        "--connections 1000 --payload 4096",
        "1,000 connections × 4 KiB, closed loop",
        true,
        false,
    ),
    s(
        "c10kx64",
        "--connections 10000 --payload 64",
        "10,000 connections × 64 B, closed loop",
        true,
        false,
    ),
    s(
        "c1000p16",
        "--connections 1000 --payload 64 --pipeline 16",
        "1,000 connections × 64 B, 16 in flight each",
        true,
        false,
    ),
    s(
        "churn",
        "--connections 1000 --payload 64 --churn 100 --rst-share 0.25",
        "1,000 connections replaced every 100 messages, a quarter closed with RST",
        true,
        true,
    ),
    s(
        "rate",
        "--connections 1000 --payload 64 --rate 50000",
        "1,000 connections, open loop at 50,000 msg/s",
        true,
        false,
    ),
    s(
        "idle10k",
        "--connections 10000 --payload 64 --rate 1000",
        "10,000 mostly idle connections at 1,000 msg/s",
        true,
        false,
    ),
    s(
        "cpr",
        "--connections 50 --payload 64 --churn 1 --rst-share 0 --source-addrs 127.0.0.2-127.0.0.9",
        "a connection per message: 50 at a time, each connects, echoes 64 B once and closes with FIN (the figure is per connection)",
        true,
        false,
    ),
    s(
        "cprrst",
        "--connections 50 --payload 64 --churn 1 --rst-share 1 --source-addrs 127.0.0.2-127.0.0.9",
        "a connection per message, every close an RST (the figure is per connection)",
        true,
        false,
    ),
    s(
        "stream1k",
        "--connections 1 --payload 1024 --pipeline 64",
        "one stream: one connection, 1 KiB messages, 64 in flight",
        true,
        false,
    ),
    s(
        "stream4x2k",
        "--connections 4 --payload 2048 --pipeline 32",
        "four streams: four connections, 2 KiB messages, 32 in flight each",
        true,
        false,
    ),
    s(
        "c100x16k",
        "--connections 100 --payload 16384",
        "100 connections × 16 KiB, closed loop",
        true,
        false,
    ),
    s(
        "c10x64k",
        "--connections 10 --payload 65536 --pipeline 4",
        "10 connections × 64 KiB, 4 in flight each",
        true,
        false,
    ),
    s(
        "cap1000x64",
        "--connections 1000 --payload 64",
        "1,000 connections × 64 B, the server's CPU capped",
        true,
        false,
    ),
    s(
        "cap10kx64",
        "--connections 10000 --payload 64",
        "10,000 connections × 64 B, the server's CPU capped",
        true,
        false,
    ),
    s(
        "cap1000p16",
        "--connections 1000 --payload 64 --pipeline 16",
        "1,000 connections, 16 in flight each, the server's CPU capped",
        true,
        false,
    ),
    s(
        "sweep",
        "--connections 1000 --payload 64",
        "the latency–load curve over 1,000 connections",
        true,
        true,
    ),
];

impl Scenario {
    /// Run with the server's CPU capped (a `cap…` scenario).
    pub fn capped(&self) -> bool {
        self.name.starts_with("cap")
    }

    /// Each connection carries one message (`--churn 1`): its figure is per connection.
    pub fn per_connection(&self) -> bool {
        self.flags.contains("--churn 1 ") || self.flags.ends_with("--churn 1")
    }
}

/// What one set of measured rounds runs: a scenario of the catalogue above, or a cell of the
/// map (`crate::map`), made at run time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    /// Its name in tags, file names and tables.
    pub name: String,
    /// The loadgen flags it adds to every run.
    pub flags: String,
    /// Run with the server's CPU capped.
    pub capped: bool,
    /// Flags given to the built-in backends (a map's `--buffer-size` axis); other servers
    /// run as they are.
    pub server_args: Vec<String>,
    /// A cell of the map: its runs go under the results' `map/` folder.
    pub in_map: bool,
    /// The cores and server threads of a scaling point (`compare --threads`), where they
    /// differ from the comparison's.
    pub split: Option<crate::cores::Split>,
}

impl Workload {
    /// The scenario at one point of a scaling curve: named `NAME@Nt`, on `split`'s cores.
    pub fn at(mut self, split: crate::cores::Split) -> Workload {
        self.name = format!("{}@{}t", self.name, split.server_threads);
        self.split = Some(split);
        self
    }
}

/// A workload's name apart from its scaling point: `("c1000x64", Some(2))` for
/// `c1000x64@2t`, `("c1000x64", None)` for `c1000x64`.
pub fn at_threads(name: &str) -> (&str, Option<usize>) {
    match name.rsplit_once('@') {
        Some((base, t)) => match t.strip_suffix('t').and_then(|n| n.parse().ok()) {
            Some(n) => (base, Some(n)),
            None => (name, None),
        },
        None => (name, None),
    }
}

impl From<&Scenario> for Workload {
    fn from(s: &Scenario) -> Workload {
        Workload {
            name: s.name.to_string(),
            flags: s.flags.to_string(),
            capped: s.capped(),
            server_args: Vec::new(),
            in_map: false,
            split: None,
        }
    }
}

/// The scenario called `name`.
pub fn find(name: &str) -> Option<&'static Scenario> {
    ALL.iter().find(|s| s.name == name)
}

/// The names a default (or quick) run includes, comma-separated.
pub fn defaults(quick: bool) -> String {
    ALL.iter()
        .filter(|s| if quick { s.quick } else { s.default })
        .map(|s| s.name)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capped_scenarios_run_their_namesakes_flags_and_the_lists_hold() {
        for s in ALL.iter().filter(|s| s.name.starts_with("cap")) {
            let plain = find(&format!("c{}", &s.name[3..])).expect("a namesake");
            assert_eq!(s.flags, plain.flags);
        }
        assert_eq!(defaults(true), "c100x64,churn,sweep");
        assert_eq!(defaults(false).split(',').count(), ALL.len());
        assert!(find("nope").is_none());
        assert!(find("cpr").unwrap().per_connection() && find("cprrst").unwrap().per_connection());
        assert!(!find("churn").unwrap().per_connection());
        assert_eq!(at_threads("c1000x64@2t"), ("c1000x64", Some(2)));
        assert_eq!(at_threads("c1000x64"), ("c1000x64", None));
        assert_eq!(at_threads("a@b"), ("a@b", None));
    }
}
