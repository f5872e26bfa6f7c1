//! How a comparison splits the machine between the server and the loadgen, so that neither
//! steals the other's time: one rule, used by `compare`, the map and `loadgen-check` alike,
//! and printed by `ringecho-perf split`.
//!
//! The rule reads the CPU topology from sysfs (each CPU's core, package and hyperthread
//! siblings, the NUMA nodes) and the CPUs this process may use (its affinity mask, or a
//! cgroup's `cpuset.cpus.effective` in a recorded tree), and works in physical cores:
//!
//! - the server and the loadgen never share a physical core (two hyperthreads of one core
//!   share its execution units and caches, so each side's CPU per message would carry the
//!   other's contention);
//! - the server takes `--threads` cores (default: half the cores of the largest node), one
//!   thread per core, all on one node while that node has room; its cores' sibling threads
//!   are its own too, left idle;
//! - the loadgen takes as many cores again on the same node when both fit there, else the
//!   other nodes' cores (the reason line says which);
//! - where the machine cannot give them separate cores (one core, or one core's
//!   hyperthreads), they share, and the reason says so.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The server's and the loadgen's CPUs and thread counts, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// The server's CPU list, as taskset takes it (`0`, `0-3,8-11`).
    pub server_cpus: String,
    /// The loadgen's CPU list.
    pub loadgen_cpus: String,
    /// One server thread per server core.
    pub server_threads: usize,
    /// One loadgen thread per loadgen CPU.
    pub loadgen_threads: usize,
    /// Why these: one line.
    pub reason: String,
    /// Whether the two share a physical core (then their figures include each other).
    pub shared: bool,
}

/// One logical CPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cpu {
    /// Its number.
    pub id: usize,
    /// Its physical core: (package, core id).
    pub core: (usize, usize),
    /// Its NUMA node (0 where the machine has none).
    pub node: usize,
}

/// The CPUs this process may use, as the kernel describes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// The allowed CPUs, by number.
    pub cpus: Vec<Cpu>,
}

impl Topology {
    /// This machine's, from /sys, limited to this process's affinity mask.
    pub fn here() -> Result<Topology, String> {
        let allowed = affinity()?;
        Topology::read(Path::new("/sys"), Some(&allowed))
    }

    /// The topology recorded under `sys` (laid out like /sys), limited to `allowed` when
    /// given, else to `sys/fs/cgroup/cpuset.cpus.effective` when that file is there, else
    /// every CPU it lists.
    pub fn read(sys: &Path, allowed: Option<&[usize]>) -> Result<Topology, String> {
        let cpu_dir = sys.join("devices/system/cpu");
        let entries = std::fs::read_dir(&cpu_dir)
            .map_err(|e| format!("cannot read {}: {e}", cpu_dir.display()))?;
        let mut ids: Vec<usize> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.strip_prefix("cpu")?.parse().ok()
            })
            .collect();
        ids.sort_unstable();
        if ids.is_empty() {
            return Err(format!("no cpuN directories under {}", cpu_dir.display()));
        }
        let nodes = nodes(sys)?;
        let cgroup = sys.join("fs/cgroup/cpuset.cpus.effective");
        let from_cgroup;
        let allowed = match allowed {
            Some(a) => Some(a),
            None if cgroup.is_file() => {
                from_cgroup = parse_list(read(&cgroup)?.trim())
                    .map_err(|e| format!("{}: {e}", cgroup.display()))?;
                Some(from_cgroup.as_slice())
            }
            None => None,
        };
        let mut cpus = Vec::new();
        for id in ids {
            if allowed.is_some_and(|a| !a.contains(&id)) {
                continue;
            }
            let topo = cpu_dir.join(format!("cpu{id}/topology"));
            let num = |f: &str| -> Result<usize, String> {
                let p = topo.join(f);
                read(&p)?
                    .trim()
                    .parse()
                    .map_err(|_| format!("{}: not a number", p.display()))
            };
            // A CPU without topology (offline, or a kernel without it) is its own core.
            let (package, core) = if topo.is_dir() {
                (num("physical_package_id")?, num("core_id")?)
            } else {
                (0, 10_000 + id)
            };
            let node = nodes
                .iter()
                .find(|(_, list)| list.contains(&id))
                .map_or(0, |(n, _)| *n);
            cpus.push(Cpu {
                id,
                core: (package, core),
                node,
            });
        }
        if let Some(a) = allowed {
            if let Some(missing) = a.iter().find(|c| !cpus.iter().any(|x| x.id == **c)) {
                return Err(format!(
                    "CPU {missing} is allowed but not in {}",
                    cpu_dir.display()
                ));
            }
        }
        if cpus.is_empty() {
            return Err("no CPU is allowed".into());
        }
        Ok(Topology { cpus })
    }

    /// The physical cores, each its allowed CPUs, grouped by node (nodes and cores in
    /// number order).
    fn cores_by_node(&self) -> BTreeMap<usize, Vec<Vec<usize>>> {
        let mut cores: BTreeMap<(usize, (usize, usize)), Vec<usize>> = BTreeMap::new();
        for c in &self.cpus {
            cores.entry((c.node, c.core)).or_default().push(c.id);
        }
        let mut by_node: BTreeMap<usize, Vec<Vec<usize>>> = BTreeMap::new();
        for ((node, _), mut ids) in cores {
            ids.sort_unstable();
            by_node.entry(node).or_default().push(ids);
        }
        for cores in by_node.values_mut() {
            cores.sort_by_key(|c| c[0]);
        }
        by_node
    }

    /// One line for machine.txt: CPUs, cores, nodes, and the hyperthread pairs.
    pub fn describe(&self) -> String {
        let by_node = self.cores_by_node();
        let cores: usize = by_node.values().map(Vec::len).sum();
        let mut s = format!(
            "{} CPUs allowed ({}), {cores} physical cores, {} node(s)",
            self.cpus.len(),
            format_list(&self.cpus.iter().map(|c| c.id).collect::<Vec<_>>()),
            by_node.len()
        );
        for (node, cores) in &by_node {
            let all: Vec<usize> = cores.iter().flatten().copied().collect();
            let _ = write!(s, "; node {node}: {}", format_list(&all));
            let smt: Vec<String> = cores
                .iter()
                .filter(|c| c.len() > 1)
                .map(|c| format_list(c))
                .collect();
            if !smt.is_empty() {
                let shown: Vec<&str> = smt.iter().take(4).map(String::as_str).collect();
                let more = if smt.len() > 4 { ", …" } else { "" };
                let _ = write!(s, " (siblings {}{more})", shown.join(" "));
            }
        }
        s
    }

    /// The split for `threads` server threads (None: half the cores of the largest node).
    pub fn split(&self, threads: Option<usize>) -> Split {
        let by_node = self.cores_by_node();
        let total: usize = by_node.values().map(Vec::len).sum();
        // The node with the most cores first (the lowest number among equals).
        let mut nodes: Vec<(usize, Vec<Vec<usize>>)> = by_node.into_iter().collect();
        nodes.sort_by_key(|(n, cores)| (std::cmp::Reverse(cores.len()), *n));
        if total < 2 {
            let all: Vec<usize> = self.cpus.iter().map(|c| c.id).collect();
            let (server, loadgen) = if all.len() >= 2 {
                (vec![all[0]], all[1..].to_vec())
            } else {
                (all.clone(), all.clone())
            };
            let reason = if all.len() >= 2 {
                format!(
                    "one physical core ({} hyperthreads): the server and the loadgen share it, \
                     so each one's CPU per message includes the other's contention",
                    all.len()
                )
            } else {
                "one CPU: the server and the loadgen share it, so each one's CPU per message \
                 includes the other's contention"
                    .to_string()
            };
            return Split {
                server_cpus: format_list(&server),
                loadgen_cpus: format_list(&loadgen),
                server_threads: threads.unwrap_or(1).max(1),
                loadgen_threads: loadgen.len().max(1),
                reason,
                shared: true,
            };
        }
        let first = nodes[0].1.len();
        let want = threads.unwrap_or((first / 2).max(1)).max(1);
        let n_server = want.min(total - 1);
        let mut notes = Vec::new();
        if n_server < want {
            notes.push(format!(
                "{want} server threads asked, {total} cores: the server gets {n_server} so the \
                 loadgen keeps one"
            ));
        }
        // The server: cores of the first node, then the next ones while it needs more.
        let mut server: Vec<Vec<usize>> = Vec::new();
        let mut server_nodes = Vec::new();
        let mut left: Vec<(usize, Vec<Vec<usize>>)> = Vec::new();
        for (node, cores) in nodes {
            let need = n_server - server.len();
            if need == 0 {
                left.push((node, cores));
                continue;
            }
            let take = need.min(cores.len());
            server.extend(cores[..take].iter().cloned());
            server_nodes.push(node);
            left.push((node, cores[take..].to_vec()));
        }
        let home = server_nodes[0];
        let same_node_room = left
            .iter()
            .find(|(n, _)| *n == home)
            .map_or(0, |(_, c)| c.len());
        let others: usize = left
            .iter()
            .filter(|(n, _)| *n != home)
            .map(|(_, c)| c.len())
            .sum();
        let loadgen: Vec<Vec<usize>> = if server_nodes.len() == 1 && same_node_room >= n_server {
            // Both fit on one node: the loadgen as many cores again, beside the server.
            let cores = &left.iter().find(|(n, _)| *n == home).expect("home").1;
            cores[..n_server.min(cores.len())].to_vec()
        } else if others > 0 {
            left.iter()
                .filter(|(n, _)| *n != home || server_nodes.len() > 1)
                .flat_map(|(_, c)| c.iter().cloned())
                .collect()
        } else {
            left.iter().flat_map(|(_, c)| c.iter().cloned()).collect()
        };
        let loadgen_nodes: Vec<usize> = {
            let mut v: Vec<usize> = loadgen
                .iter()
                .filter_map(|core| self.cpus.iter().find(|c| c.id == core[0]))
                .map(|c| c.node)
                .collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        let server_ids: Vec<usize> = server.iter().flatten().copied().collect();
        let loadgen_ids: Vec<usize> = loadgen.iter().flatten().copied().collect();
        let many_nodes = left.len() > 1;
        let mut reason = format!(
            "{n_server} server core(s), {} loadgen core(s), never sharing a physical core",
            loadgen.len()
        );
        if server.iter().any(|c| c.len() > 1) {
            reason.push_str(" (each server core's hyperthread siblings idle, its own)");
        }
        if many_nodes {
            let nodes = |v: &[usize]| v.iter().map(usize::to_string).collect::<Vec<_>>().join("+");
            let where_ = if server_nodes.len() > 1 {
                format!(
                    "; the server spans nodes {} (no node has {n_server} cores)",
                    nodes(&server_nodes)
                )
            } else if loadgen_nodes == [home] {
                format!("; both on node {home}, where both fit")
            } else {
                format!(
                    "; the server on node {home}, the loadgen on node {} (node {home} has no \
                     room for both)",
                    nodes(&loadgen_nodes)
                )
            };
            reason.push_str(&where_);
        }
        for n in notes {
            let _ = write!(reason, "; {n}");
        }
        Split {
            server_cpus: format_list(&server_ids),
            loadgen_cpus: format_list(&loadgen_ids),
            server_threads: n_server,
            loadgen_threads: loadgen_ids.len().max(1),
            reason,
            shared: false,
        }
    }

    /// The split `--server-cpus` and `--loadgen-cpus` give (each a CPU list; `threads`
    /// server threads, else one per server core), said shared where they share a core.
    pub fn given(
        &self,
        server: &[usize],
        loadgen: &[usize],
        threads: Option<usize>,
    ) -> Result<Split, String> {
        for (flag, list) in [("--server-cpus", server), ("--loadgen-cpus", loadgen)] {
            if let Some(c) = list.iter().find(|c| !self.cpus.iter().any(|x| x.id == **c)) {
                return Err(format!("{flag}: CPU {c} is not one this process may use"));
            }
        }
        let core = |id: usize| self.cpus.iter().find(|c| c.id == id).map(|c| c.core);
        let mut server_cores: Vec<(usize, usize)> =
            server.iter().filter_map(|c| core(*c)).collect();
        server_cores.sort_unstable();
        server_cores.dedup();
        let shared = loadgen
            .iter()
            .any(|c| core(*c).is_some_and(|k| server_cores.contains(&k)));
        let reason = if shared {
            "as given (--server-cpus, --loadgen-cpus): the server and the loadgen share a \
             physical core, so each one's CPU per message includes the other's contention"
                .to_string()
        } else {
            "as given (--server-cpus, --loadgen-cpus), never sharing a physical core".to_string()
        };
        Ok(Split {
            server_cpus: format_list(server),
            loadgen_cpus: format_list(loadgen),
            server_threads: threads.unwrap_or(server_cores.len()).max(1),
            loadgen_threads: loadgen.len().max(1),
            reason,
            shared,
        })
    }
}

impl Split {
    /// The split of this machine: the topology's, or an even halving by CPU number where
    /// sysfs cannot be read (said in the reason).
    pub fn here() -> Split {
        match Topology::here() {
            Ok(t) => t.split(None),
            Err(why) => {
                let mut s =
                    Split::by_number(std::thread::available_parallelism().map_or(1, |n| n.get()));
                s.reason = format!("{} (the topology is unknown: {why})", s.reason);
                s
            }
        }
    }

    /// The machine split by CPU number, first half to the server: for a machine whose
    /// topology cannot be read.
    pub fn by_number(n: usize) -> Split {
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
            reason: "the first half of the CPUs by number for the server".into(),
            shared: n < 2,
        }
    }
}

/// `ringecho-perf split`'s text: the server's CPUs, the loadgen's, the reason, and the
/// topology it was chosen from; the error names a bad tree or list.
pub fn show(
    sysfs: Option<&Path>,
    threads: Option<u16>,
    allowed: Option<&str>,
) -> Result<String, String> {
    let allowed = allowed
        .map(|a| parse_list(a).map_err(|e| format!("--allowed: {e}")))
        .transpose()?;
    let t = match (sysfs, &allowed) {
        (Some(dir), a) => Topology::read(dir, a.as_deref())?,
        (None, Some(a)) => Topology::read(Path::new("/sys"), Some(a))?,
        (None, None) => Topology::here()?,
    };
    let s = t.split(threads.map(usize::from));
    Ok(format!(
        "server: {}\nloadgen: {}\nreason: {}\nthreads: server {}, loadgen {}\ntopology: {}\n",
        s.server_cpus,
        s.loadgen_cpus,
        s.reason,
        s.server_threads,
        s.loadgen_threads,
        t.describe()
    ))
}

/// The CPUs this process may run on (its affinity mask, from /proc/self/status).
pub fn affinity() -> Result<Vec<usize>, String> {
    let status = read(Path::new("/proc/self/status"))?;
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .ok_or("/proc/self/status has no Cpus_allowed_list")?;
    parse_list(list.trim())
}

/// The nodes under `sys` and their CPUs; none where the machine has no NUMA directory.
fn nodes(sys: &Path) -> Result<Vec<(usize, Vec<usize>)>, String> {
    let dir = sys.join("devices/system/node");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for e in entries.filter_map(|e| e.ok()) {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(n) = name.strip_prefix("node").and_then(|n| n.parse().ok()) else {
            continue;
        };
        let p: PathBuf = e.path().join("cpulist");
        let list = parse_list(read(&p)?.trim()).map_err(|e| format!("{}: {e}", p.display()))?;
        out.push((n, list));
    }
    out.sort();
    Ok(out)
}

fn read(p: &Path) -> Result<String, String> {
    std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
}

/// A CPU list as the kernel and taskset write it: `0-3,8,10-11`; empty is none.
pub fn parse_list(s: &str) -> Result<Vec<usize>, String> {
    let mut out = Vec::new();
    if s.is_empty() {
        return Ok(out);
    }
    let bad = |part: &str| format!("'{s}' is not a CPU list like 0-3,8 ('{part}')");
    for part in s.split(',') {
        let part = part.trim();
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a, b),
            None => (part, part),
        };
        let a: usize = a.parse().map_err(|_| bad(part))?;
        let b: usize = b.parse().map_err(|_| bad(part))?;
        if b < a || b > 4095 {
            return Err(bad(part));
        }
        for c in a..=b {
            if out.contains(&c) {
                return Err(format!("'{s}' names CPU {c} twice"));
            }
            out.push(c);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// A CPU list in the kernel's short form: `0-3,8-11`.
pub fn format_list(ids: &[usize]) -> String {
    let mut v = ids.to_vec();
    v.sort_unstable();
    v.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let start = v[i];
        while i + 1 < v.len() && v[i + 1] == v[i] + 1 {
            i += 1;
        }
        parts.push(if v[i] == start {
            start.to_string()
        } else {
            format!("{start}-{}", v[i])
        });
        i += 1;
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/sysfs")
            .join(name)
    }

    fn ids(list: &str) -> Vec<usize> {
        parse_list(list).unwrap()
    }

    /// No server CPU and loadgen CPU on one physical core.
    fn apart(t: &Topology, s: &Split) -> bool {
        let core = |id: usize| t.cpus.iter().find(|c| c.id == id).unwrap().core;
        let server: Vec<_> = ids(&s.server_cpus).into_iter().map(core).collect();
        ids(&s.loadgen_cpus)
            .into_iter()
            .all(|c| !server.contains(&core(c)))
    }

    fn node_of(t: &Topology, list: &str) -> Vec<usize> {
        let mut v: Vec<usize> = ids(list)
            .into_iter()
            .map(|id| t.cpus.iter().find(|c| c.id == id).unwrap().node)
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    #[test]
    fn lists_read_and_write_as_the_kernel_does() {
        assert_eq!(ids("0-3,8,10-11"), vec![0, 1, 2, 3, 8, 10, 11]);
        assert_eq!(format_list(&[0, 1, 2, 3, 8, 10, 11]), "0-3,8,10-11");
        for bad in ["0-", "a", "3-1", "1,1", "0-99999"] {
            assert!(parse_list(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn this_vm_gives_the_server_one_core_and_the_loadgen_the_other() {
        let t = Topology::read(&tree("vm-2cpu"), None).unwrap();
        let s = t.split(None);
        assert_eq!(
            (s.server_cpus.as_str(), s.loadgen_cpus.as_str()),
            ("0", "1")
        );
        assert_eq!((s.server_threads, s.loadgen_threads), (1, 1));
        assert!(!s.shared, "{}", s.reason);
    }

    #[test]
    fn on_a_16_thread_smt_host_no_server_core_shares_a_sibling_with_the_loadgen() {
        let t = Topology::read(&tree("smt-16"), None).unwrap();
        let s = t.split(None);
        assert!(apart(&t, &s), "{s:?}");
        // By number the server would have had 0-7: cpu0 and cpu8 are siblings.
        assert_eq!(s.server_cpus, "0-3,8-11", "{s:?}");
        assert_eq!(s.loadgen_cpus, "4-7,12-15", "{s:?}");
        assert_eq!(s.server_threads, 4);
        let two = t.split(Some(2));
        assert!(apart(&t, &two) && two.server_cpus == "0-1,8-9", "{two:?}");
    }

    #[test]
    fn on_two_sockets_the_server_sits_on_one_node() {
        let t = Topology::read(&tree("two-socket-smt"), None).unwrap();
        let s = t.split(None);
        assert!(apart(&t, &s), "{s:?}");
        assert_eq!(node_of(&t, &s.server_cpus), vec![0], "{s:?}");
        assert_eq!(node_of(&t, &s.loadgen_cpus), vec![0], "both fit: {s:?}");
        assert!(s.reason.contains("both on node 0"), "{}", s.reason);
        // Four server cores leave node 0 no room for the loadgen: it goes to node 1.
        let four = t.split(Some(4));
        assert!(apart(&t, &four), "{four:?}");
        assert_eq!(node_of(&t, &four.server_cpus), vec![0]);
        assert_eq!(node_of(&t, &four.loadgen_cpus), vec![1], "{four:?}");
        assert!(four.reason.contains("no room for both"), "{}", four.reason);
        // Six cannot sit on one node of four: the reason says it spans two.
        let six = t.split(Some(6));
        assert!(
            apart(&t, &six) && six.reason.contains("spans nodes"),
            "{six:?}"
        );
    }

    #[test]
    fn in_a_container_the_split_keeps_to_the_allowed_cpus() {
        let t = Topology::read(&tree("container-4-7"), None).unwrap();
        let s = t.split(None);
        assert_eq!(
            (s.server_cpus.as_str(), s.loadgen_cpus.as_str()),
            ("4-5", "6-7")
        );
        let over = Topology::read(&tree("container-4-7"), Some(&[6, 7])).unwrap();
        let s = over.split(None);
        assert_eq!(
            (s.server_cpus.as_str(), s.loadgen_cpus.as_str()),
            ("6", "7")
        );
        assert!(Topology::read(&tree("container-4-7"), Some(&[99])).is_err());
    }

    #[test]
    fn one_core_is_shared_and_said_so() {
        let t = Topology::read(&tree("smt-16"), Some(&[0, 8])).unwrap();
        let s = t.split(None);
        assert!(s.shared && s.reason.contains("share"), "{s:?}");
        assert_eq!(
            (s.server_cpus.as_str(), s.loadgen_cpus.as_str()),
            ("0", "8")
        );
        let one = Topology::read(&tree("vm-2cpu"), Some(&[1]))
            .unwrap()
            .split(None);
        assert!(one.shared && one.server_cpus == "1" && one.loadgen_cpus == "1");
    }

    #[test]
    fn without_a_topology_the_cpus_are_halved_by_number() {
        let two = Split::by_number(2);
        assert_eq!(
            (two.server_cpus.as_str(), two.loadgen_cpus.as_str()),
            ("0-0", "1-1")
        );
        let five = Split::by_number(5);
        assert_eq!((five.server_threads, five.loadgen_threads), (2, 3));
        let one = Split::by_number(1);
        assert!(one.shared && one.loadgen_cpus == "0");
    }

    #[test]
    fn overrides_are_honoured_and_sharing_is_said() {
        let t = Topology::read(&tree("smt-16"), None).unwrap();
        let s = t.given(&ids("0-1"), &ids("2-3"), None).unwrap();
        assert!(!s.shared && s.server_threads == 2, "{s:?}");
        let s = t.given(&ids("0"), &ids("8"), None).unwrap();
        assert!(s.shared && s.reason.contains("share"), "{s:?}");
        assert!(t.given(&ids("0"), &ids("99"), None).is_err());
    }
}
