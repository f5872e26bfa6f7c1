//! A process's CPU time, context switches and memory from /proc: what the loadgen reads of
//! the server (`--server-pid`) and what the server reports of itself (`/metrics`).

use std::io;

/// A process's CPU time, context switches and memory at one moment, from /proc/PID.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcSample {
    /// User CPU seconds, all threads.
    pub user_s: f64,
    /// System CPU seconds, all threads.
    pub sys_s: f64,
    /// Voluntary plus involuntary context switches (main thread).
    pub ctx_switches: u64,
    /// Resident memory, KiB.
    pub rss_kb: u64,
    /// Peak resident memory, KiB.
    pub peak_rss_kb: u64,
    /// Nanoseconds on CPU, summed over the threads alive now (the scheduler's own account in
    /// /proc/PID/task/*/schedstat), where readable: far finer than the 10 ms ticks of
    /// `user_s` and `sys_s`, which decide a short or light window's CPU by a tick or two.
    pub run_ns: Option<u64>,
}

impl ProcSample {
    /// Reads /proc/PID/stat (utime, stime: all threads) and /proc/PID/status.
    pub fn read(pid: u32) -> io::Result<ProcSample> {
        Self::read_at(&format!("/proc/{pid}"))
    }

    /// Reads process `pid` and every live process it started, directly or not, summed: a
    /// server started through a launcher (`go run`, a shell) is the whole tree, not the
    /// launcher. A descendant that exits between two samples takes its CPU time with it.
    pub fn read_tree(pid: u32) -> io::Result<ProcSample> {
        let mut total = Self::read(pid)?;
        for child in descendants(pid) {
            // A process that exits between the listing and the read has nothing left to add.
            let Ok(c) = Self::read(child) else { continue };
            total.user_s += c.user_s;
            total.sys_s += c.sys_s;
            total.ctx_switches += c.ctx_switches;
            total.rss_kb += c.rss_kb;
            total.peak_rss_kb += c.peak_rss_kb;
            total.run_ns = total.run_ns.zip(c.run_ns).map(|(a, b)| a + b);
        }
        Ok(total)
    }

    /// Reads this process's own figures (/proc/self).
    pub fn read_self() -> io::Result<ProcSample> {
        Self::read_at("/proc/self")
    }

    fn read_at(dir: &str) -> io::Result<ProcSample> {
        let stat = std::fs::read_to_string(format!("{dir}/stat"))?;
        // utime and stime, all threads, in clock ticks.
        let tick = clock_ticks_per_s();
        let (user_s, sys_s) = (stat_field(&stat, 14)? / tick, stat_field(&stat, 15)? / tick);
        let status = std::fs::read_to_string(format!("{dir}/status"))?;
        let value = |key: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .unwrap_or(0)
        };
        Ok(ProcSample {
            user_s,
            sys_s,
            ctx_switches: value("voluntary_ctxt_switches:") + value("nonvoluntary_ctxt_switches:"),
            rss_kb: value("VmRSS:"),
            peak_rss_kb: value("VmHWM:"),
            run_ns: run_ns(dir),
        })
    }
}

/// Every live process below `pid` in the process tree, from each process's parent in
/// /proc/N/stat.
fn descendants(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let parents: Vec<(u32, u32)> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
            Some((p, stat_field(&stat, 4).ok()? as u32))
        })
        .collect();
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    found.remove(0);
    found
}

/// The on-CPU nanoseconds of every thread of the process at `dir` (first field of each
/// thread's schedstat), or `None` where schedstat is missing or unreadable.
fn run_ns(dir: &str) -> Option<u64> {
    let mut total = 0u64;
    for task in std::fs::read_dir(format!("{dir}/task")).ok()? {
        let path = task.ok()?.path().join("schedstat");
        // A thread that exits between the listing and the read has nothing left to count.
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        total += text.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

/// Clock ticks per second, the unit of /proc's CPU times.
#[allow(unsafe_code)]
pub fn clock_ticks_per_s() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// This process's start time, seconds since the Unix epoch (/proc/self/stat's starttime,
/// after boot, plus the boot time from /proc/stat).
pub fn start_time_unix_s() -> io::Result<f64> {
    let ticks = stat_field(&std::fs::read_to_string("/proc/self/stat")?, 22)?;
    let boot: f64 = std::fs::read_to_string("/proc/stat")?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no btime in /proc/stat"))?;
    Ok(boot + ticks / clock_ticks_per_s())
}

/// Descriptors this process holds open now.
pub fn open_fds() -> io::Result<u64> {
    Ok(std::fs::read_dir("/proc/self/fd")?.count() as u64)
}

/// The open-file soft limit.
pub fn max_fds() -> io::Result<u64> {
    Ok(crate::nofile_limit()?.rlim_cur)
}

/// Field `n` of a /proc/PID/stat line, numbered as in proc(5) (1 is the pid). The fields are
/// counted after the parenthesised command name, which may itself hold spaces.
fn stat_field(stat: &str, n: usize) -> io::Result<f64> {
    let after = stat
        .rsplit_once(')')
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "malformed /proc/PID/stat"))?
        .1;
    // `after` starts at field 3 (state).
    after
        .split_whitespace()
        .nth(n - 3)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "short /proc/PID/stat"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let s = ProcSample::read_self().unwrap();
        assert!(s.rss_kb > 0);
        assert!(ProcSample::read(std::process::id()).unwrap().rss_kb > 0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let started = start_time_unix_s().unwrap();
        assert!(
            started <= now + 1.0 && started > now - 3600.0,
            "{started} vs {now}"
        );
        assert!(open_fds().unwrap() >= 3);
        assert!(max_fds().unwrap() >= open_fds().unwrap());
    }

    /// A launcher that does nothing itself while its child works: the tree counts the child.
    #[test]
    fn a_process_tree_counts_what_its_children_run() {
        let mut launcher = std::process::Command::new("sh")
            .args(["-c", "while :; do :; done & sleep 30"])
            .spawn()
            .unwrap();
        let pid = launcher.id();
        let mut tree = ProcSample::default();
        // Until the busy child has been scheduled at all.
        for _ in 0..100 {
            std::thread::sleep(std::time::Duration::from_millis(20));
            tree = ProcSample::read_tree(pid).unwrap();
            if descendants(pid).len() >= 2 && tree.run_ns > ProcSample::read(pid).unwrap().run_ns {
                break;
            }
        }
        let alone = ProcSample::read(pid).unwrap();
        let kids = descendants(pid);
        // The busy loop and sleep: both below the launcher.
        assert!(kids.len() >= 2, "{kids:?}");
        assert!(tree.run_ns > alone.run_ns, "{tree:?} vs {alone:?}");
        assert!(tree.rss_kb > alone.rss_kb);
        let _ = std::process::Command::new("kill")
            .arg("-9")
            .args(kids.iter().map(|k| k.to_string()))
            .status();
        launcher.kill().unwrap();
        launcher.wait().unwrap();
    }
}

/// Busy and stolen time of a set of CPUs, from /proc/stat: every mode a CPU works in (user,
/// nice, system, irq, softirq) counts as busy, whichever process it was for; steal is time the
/// hypervisor gave another guest. Beside a process's own CPU time it says what else used
/// those CPUs, interrupts a process is not charged for included.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CoreTimes {
    /// Busy seconds, summed over the CPUs.
    pub busy_s: f64,
    /// Stolen seconds, summed over the CPUs.
    pub steal_s: f64,
}

impl CoreTimes {
    /// The times of `cpus` now.
    pub fn read(cpus: &[usize]) -> io::Result<CoreTimes> {
        Ok(Self::parse(&std::fs::read_to_string("/proc/stat")?, cpus))
    }

    fn parse(stat: &str, cpus: &[usize]) -> CoreTimes {
        let tick = clock_ticks_per_s();
        let mut t = CoreTimes::default();
        for line in stat.lines() {
            let Some(rest) = line.strip_prefix("cpu") else {
                continue;
            };
            let mut f = rest.split_whitespace();
            let Some(Ok(n)) = f.next().map(str::parse::<usize>) else {
                continue;
            };
            if !cpus.contains(&n) {
                continue;
            }
            // user nice system idle iowait irq softirq steal (guest time is inside user).
            let v: Vec<f64> = f.take(8).map(|x| x.parse().unwrap_or(0.0)).collect();
            if v.len() < 8 {
                continue;
            }
            t.busy_s += (v[0] + v[1] + v[2] + v[5] + v[6]) / tick;
            t.steal_s += v[7] / tick;
        }
        t
    }

    /// The times between `self` and a later sample.
    pub fn until(&self, later: &CoreTimes) -> CoreTimes {
        CoreTimes {
            busy_s: (later.busy_s - self.busy_s).max(0.0),
            steal_s: (later.steal_s - self.steal_s).max(0.0),
        }
    }
}

/// The CPUs process `pid` may run on (`Cpus_allowed_list` in /proc/PID/status).
pub fn allowed_cpus_of(pid: u32) -> io::Result<Vec<usize>> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no Cpus_allowed_list"))?;
    parse_cpu_list(list.trim())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "a malformed CPU list"))
}

/// A CPU list as the kernel writes one: `0-3,8,10-11`.
pub fn parse_cpu_list(s: &str) -> Option<Vec<usize>> {
    let mut out = Vec::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => out.extend(a.parse::<usize>().ok()?..=b.parse::<usize>().ok()?),
            None => out.push(part.parse().ok()?),
        }
    }
    Some(out)
}

#[cfg(test)]
mod core_tests {
    use super::*;

    #[test]
    fn busy_counts_every_working_mode_of_the_named_cpus_and_steal_apart() {
        let stat = "cpu  9 9 9 9 9 9 9 9 0 0\ncpu0 100 10 50 1000 5 3 7 20 0 0\n\
                    cpu1 1 1 1 1 1 1 1 1 0 0\nintr 1 2\n";
        let t = CoreTimes::parse(stat, &[0]);
        let tick = clock_ticks_per_s();
        assert!((t.busy_s - 170.0 / tick).abs() < 1e-9, "{t:?}");
        assert!((t.steal_s - 20.0 / tick).abs() < 1e-9, "{t:?}");
        let both = CoreTimes::parse(stat, &[0, 1]);
        assert!((both.busy_s - 175.0 / tick).abs() < 1e-9, "{both:?}");
    }

    #[test]
    fn cpu_lists_parse_as_the_kernel_writes_them() {
        assert_eq!(parse_cpu_list("0-2,5,7-8"), Some(vec![0, 1, 2, 5, 7, 8]));
        assert_eq!(parse_cpu_list("1"), Some(vec![1]));
        assert_eq!(parse_cpu_list("x"), None);
        assert!(!allowed_cpus_of(std::process::id()).unwrap().is_empty());
    }
}
