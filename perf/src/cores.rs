//! How a comparison splits the machine: the first half of the cores for the server, the rest
//! for the loadgen, so that neither steals the other's time. One rule, used by `compare` and
//! `loadgen-check` alike.

/// The server's and the loadgen's cores and thread counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// The server's CPU list, as taskset takes it (`0-0`).
    pub server_cpus: String,
    /// The loadgen's CPU list (`1-1`; `0` on a one-core machine, shared with the server).
    pub loadgen_cpus: String,
    /// One server thread per server core.
    pub server_threads: usize,
    /// One loadgen thread per loadgen core.
    pub loadgen_threads: usize,
}

impl Split {
    /// The split of a machine with `n` cores.
    pub fn of(n: usize) -> Split {
        let half = (n / 2).max(1);
        Split {
            server_cpus: format!("0-{}", half - 1),
            loadgen_cpus: if n < 2 {
                "0".to_string()
            } else {
                format!("{half}-{}", n - 1)
            },
            server_threads: half,
            loadgen_threads: (n - half).max(1),
        }
    }

    /// The split of this machine.
    pub fn here() -> Split {
        Split::of(std::thread::available_parallelism().map_or(1, |n| n.get()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_the_cores_and_shares_the_only_one() {
        let two = Split::of(2);
        assert_eq!(
            (two.server_cpus.as_str(), two.loadgen_cpus.as_str()),
            ("0-0", "1-1")
        );
        assert_eq!((two.server_threads, two.loadgen_threads), (1, 1));
        let five = Split::of(5);
        assert_eq!(
            (five.server_cpus.as_str(), five.loadgen_cpus.as_str()),
            ("0-1", "2-4")
        );
        assert_eq!((five.server_threads, five.loadgen_threads), (2, 3));
        let one = Split::of(1);
        assert_eq!(
            (one.server_cpus.as_str(), one.loadgen_cpus.as_str()),
            ("0-0", "0")
        );
    }
}
