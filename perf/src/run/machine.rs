//! machine.txt and machine.json: when, which kernel, CPU and caches, what io_uring and perf
//! may do here, the cores' split, the windows and the cap. The figures hold for this alone.

use std::path::Path;
use std::process::Command;

use serde::Serialize;

use super::cap::{Cap, PERIOD_US};
use super::Bench;

/// What the machine was: the facts machine.txt shows and machine.json holds, gathered once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Machine {
    /// When the comparison started (RFC 3339, UTC).
    pub date: String,
    /// The kernel's release.
    pub kernel: String,
    /// The CPUs the process may see, and their model.
    pub cpus: String,
    /// CPU 0's caches.
    pub caches: String,
    /// What the server's `--probe` found, feature by feature, in its order.
    pub io_uring: Facts,
    /// What perf may do here.
    pub perf: Facts,
    /// Where the server and the loadgen run, and with how many threads.
    pub server: String,
    /// Why the cores were split so.
    pub split: String,
    /// The topology the split was read from.
    pub topology: String,
    /// Each run's warm-up, window and the rounds.
    pub windows: String,
    /// The cap of the capped scenarios, when any runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cap: Option<String>,
}

/// `name: value` facts in the order they were found; a JSON object of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts(pub Vec<(String, String)>);

impl Facts {
    /// The facts of `text`'s lines (or `; `-separated parts), each `name: value`; a part
    /// without a name is filed under `whole`.
    fn parse(text: &str, whole: &str) -> Facts {
        Facts(
            text.split(['\n', ';'])
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|p| match p.split_once(": ") {
                    Some((k, v)) if k != whole => (k.to_string(), v.to_string()),
                    Some((_, v)) => (whole.to_string(), v.to_string()),
                    None => (whole.to_string(), p.to_string()),
                })
                .collect(),
        )
    }

    /// One line: `NAME: k: v; k: v`.
    fn line(&self, name: &str) -> String {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|(k, v)| {
                if k == name {
                    v.clone()
                } else {
                    format!("{k}: {v}")
                }
            })
            .collect();
        format!("{name}: {}", parts.join("; "))
    }
}

impl Serialize for Facts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

impl Machine {
    /// machine.txt: a `name: value` line per fact.
    pub fn text(&self) -> String {
        let mut t = format!(
            "date: {}\nkernel: {}\ncpus: {}\ncaches: {}\n{}\n{}\nserver: {}\nsplit: {}\n\
             topology: {}\n{}\n\
             per run (table.txt, summary.json): the server's cores' busy µs per message from \
             /proc/stat beside its process CPU, and the time stolen from them\n",
            self.date,
            self.kernel,
            self.cpus,
            self.caches,
            self.io_uring.line("io_uring"),
            self.perf.line("perf"),
            self.server,
            self.split,
            self.topology,
            self.windows,
        );
        if let Some(cap) = &self.cap {
            t.push_str(&format!("cap: {cap}\n"));
        }
        t
    }
}

impl Bench {
    /// machine.txt and machine.json: when, which kernel and CPU, the split, the windows, and
    /// the cap.
    pub(super) fn describe_machine(&mut self) -> crate::Result<()> {
        let p = &self.plan;
        let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get());
        let s = &p.split;
        let probe = Command::new(&self.server_exe)
            .arg("--probe")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_else(|e| format!("io_uring: unknown ({e})"));
        let perf = ringecho_common::perf::describe();
        let mut machine = Machine {
            date: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            kernel: kernel(),
            cpus: format!("{ncpu} ({})", model()),
            caches: caches(),
            io_uring: Facts::parse(&probe, "io_uring"),
            perf: Facts::parse(perf.strip_prefix("perf: ").unwrap_or(&perf), "perf"),
            server: format!(
                "taskset -c {}, {} threads; loadgen: taskset -c {}, {} threads",
                s.server_cpus, s.server_threads, s.loadgen_cpus, s.loadgen_threads
            ),
            split: s.reason.clone(),
            topology: crate::cores::Topology::here()
                .map_or_else(|e| format!("unknown ({e})"), |t| t.describe()),
            windows: format!(
                "warmup {}, duration {}, rounds {}",
                p.warmup, p.duration, p.rounds
            ),
            cap: None,
        };
        if p.scenarios.iter().any(|s| s.capped()) {
            let cap = Cap::create(p.cap, s.server_threads);
            if let Ok(c) = &cap {
                machine.cap = Some(format!(
                    "the server at {} of a core per thread ({} µs per {PERIOD_US} µs, a cgroup \
                     per server run under {})",
                    p.cap,
                    c.quota_us,
                    c.dir().display()
                ));
            }
            self.cap = Some(cap);
        }
        let text = machine.text();
        eprint!("{text}");
        self.results.write_machine(&text, &machine)?;
        self.contents.machine = Some(text);
        Ok(())
    }
}

/// CPU 0's caches from sysfs: `L1d 48K, L1i 32K, L2 2048K, L3 ...`.
fn caches() -> String {
    let dir = Path::new("/sys/devices/system/cpu/cpu0/cache");
    let mut out = Vec::new();
    for i in 0..8 {
        let d = dir.join(format!("index{i}"));
        let read = |f: &str| std::fs::read_to_string(d.join(f)).map(|s| s.trim().to_string());
        let (Ok(level), Ok(kind), Ok(size)) = (read("level"), read("type"), read("size")) else {
            continue;
        };
        let kind = match kind.as_str() {
            "Data" => "d",
            "Instruction" => "i",
            _ => "",
        };
        out.push(format!("L{level}{kind} {size}"));
    }
    if out.is_empty() {
        "unknown (no /sys/devices/system/cpu/cpu0/cache)".into()
    } else {
        out.join(", ")
    }
}

/// The CPU's model name (/proc/cpuinfo).
fn model() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or(String::new(), |(_, m)| m.trim().to_string())
}

/// The machine in one line, for a map: kernel, CPUs and model.
pub(super) fn one_line() -> String {
    let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!("kernel {}, {ncpu} CPUs ({})", kernel(), model())
}

/// The running kernel's release (`uname -r`).
pub(super) fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown kernel".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_txt_and_json_hold_the_same_facts() {
        let machine = Machine {
            date: "2026-12-02T19:00:00Z".into(),
            kernel: "6.18".into(),
            cpus: "2 (Xeon)".into(),
            io_uring: Facts::parse(
                "io_uring: yes\nmultishot receive limit: yes\nDEFER_TASKRUN: no\n",
                "io_uring",
            ),
            perf: Facts::parse("count syscalls: no (root); sample the kernel: yes", "perf"),
            windows: "warmup 700ms, duration 2s, rounds 3".into(),
            ..Machine::default()
        };
        let text = machine.text();
        assert!(text.contains("kernel: 6.18\n"), "{text}");
        assert!(
            text.contains("io_uring: yes; multishot receive limit: yes; DEFER_TASKRUN: no\n"),
            "{text}"
        );
        assert!(text.contains("perf: count syscalls: no (root); sample the kernel: yes\n"));
        assert!(!text.contains("cap:"), "{text}");
        let m = serde_json::to_value(&machine).unwrap();
        assert_eq!(m["kernel"], "6.18");
        assert_eq!(m["io_uring"]["io_uring"], "yes");
        assert_eq!(m["io_uring"]["DEFER_TASKRUN"], "no");
        assert_eq!(m["perf"]["count syscalls"], "no (root)");
        assert_eq!(m["perf"]["sample the kernel"], "yes");
        assert!(m.get("cap").is_none());
    }
}
