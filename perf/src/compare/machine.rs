//! machine.txt and machine.json: when, which kernel, CPU and caches, what io_uring and perf
//! may do here, the cores' split, the windows and the cap. The figures hold for this alone.

use std::path::Path;
use std::process::Command;

use super::Bench;
use crate::cap::{Cap, PERIOD_US};

impl Bench {
    /// machine.txt: when, which kernel and CPU, the split, the windows, and the cap.
    pub(super) fn describe_machine(&mut self) -> crate::Result<()> {
        let p = &self.plan;
        let model = model();
        let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get());
        let s = &p.split;
        let io_uring = Command::new(&self.server_exe)
            .arg("--probe")
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .trim()
                    .replace('\n', "; ")
            })
            .unwrap_or_else(|e| format!("io_uring: unknown ({e})"));
        let mut text = format!(
            "date: {}\nkernel: {}\ncpus: {ncpu} ({model})\ncaches: {}\n{io_uring}\n{}\n\
             server: taskset -c {}, {} threads; loadgen: taskset -c {}, {} threads\n\
             split: {}\ntopology: {}\n\
             warmup {}, duration {}, rounds {}\n\
             per run (table.txt, summary.json): the server's cores' busy µs per message from \
             /proc/stat beside its process CPU, and the time stolen from them\n",
            humantime::format_rfc3339_seconds(std::time::SystemTime::now()),
            kernel(),
            caches(),
            ringecho_common::perf::describe(),
            s.server_cpus,
            s.server_threads,
            s.loadgen_cpus,
            s.loadgen_threads,
            s.reason,
            crate::cores::Topology::here()
                .map_or_else(|e| format!("unknown ({e})"), |t| t.describe()),
            p.warmup,
            p.duration,
            p.rounds,
        );
        if p.scenarios.iter().any(|s| s.capped()) {
            let cap = Cap::create(p.cap, s.server_threads);
            if let Ok(c) = &cap {
                let line = format!(
                    "cap: the server at {} of a core per thread ({} µs per {PERIOD_US} µs, a \
                     cgroup per server run under {})\n",
                    p.cap,
                    c.quota_us,
                    c.dir().display()
                );
                text.push_str(&line);
            }
            self.cap = Some(cap);
        }
        eprint!("{text}");
        self.results.write_machine(&text, &machine_json(&text))?;
        self.contents.machine = Some(text);
        Ok(())
    }
}

/// machine.txt as a JSON object: each `key: value` line a member (io_uring's features and
/// perf's abilities, `;`-separated on their lines, each a member of their own).
fn machine_json(text: &str) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    for line in text.lines() {
        let Some((k, v)) = line.split_once(": ") else {
            continue;
        };
        if k.contains(' ') {
            continue;
        }
        if k == "io_uring" || k == "perf" {
            let mut parts = serde_json::Map::new();
            for part in v.split("; ") {
                match part.split_once(": ") {
                    Some((pk, pv)) => parts.insert(pk.to_string(), pv.into()),
                    None => parts.insert(k.to_string(), part.into()),
                };
            }
            m.insert(k.to_string(), parts.into());
        } else {
            m.insert(k.to_string(), v.into());
        }
    }
    m
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
    fn machine_json_has_every_fact_and_the_features_apart() {
        let text = "date: 2026-12-02T19:00:00Z\nkernel: 6.18\ncpus: 2 (Xeon)\n\
                    io_uring: yes; multishot receive limit: yes; DEFER_TASKRUN: no\n\
                    perf: count syscalls: no (root); sample the kernel: yes\n\
                    warmup 700ms, duration 2s, rounds 3\n";
        let m = serde_json::Value::Object(machine_json(text));
        assert_eq!(m["kernel"], "6.18");
        assert_eq!(m["io_uring"]["io_uring"], "yes");
        assert_eq!(m["io_uring"]["DEFER_TASKRUN"], "no");
        assert_eq!(m["perf"]["count syscalls"], "no (root)");
        assert_eq!(m["perf"]["sample the kernel"], "yes");
    }
}
