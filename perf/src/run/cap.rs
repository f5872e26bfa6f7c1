//! The CPU cap of the capped scenarios: one cgroup per server run (v2 `cpu.max`, or v1
//! `cpu.cfs_quota_us`) holding the whole server process, so that the server, not the loadgen,
//! is the bottleneck, and a server that leaves a process behind cannot spend the next one's
//! quota. They sit under one cgroup per comparison, named for its process; each is removed
//! when its run ends, the comparison's when the comparison does. A 5 ms period keeps
//! throttling in small slices.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The quota's period, µs.
pub const PERIOD_US: u64 = 5_000;
/// The smallest quota the kernel takes, µs.
const MIN_QUOTA_US: u64 = 1_000;

/// The comparison's cgroup, under which each capped server run gets its own.
#[derive(Debug)]
pub struct Cap {
    dir: PathBuf,
    v2: bool,
    /// CPU µs allowed per period to each server, over all its threads.
    pub quota_us: u64,
}

/// One server run's cgroup; removed when dropped (after the server stopped).
#[derive(Debug)]
pub struct Held {
    dir: PathBuf,
}

impl Cap {
    /// The cgroup under which each server gets `fraction` of a core for each of its
    /// `threads`, named for this process; a first server cgroup is made and removed to prove
    /// it can be. The error says why none could be made (no root, no CPU controller).
    pub fn create(fraction: f64, threads: usize) -> crate::Result<Cap> {
        let quota_us = ((fraction * (PERIOD_US * threads as u64) as f64) as u64).max(MIN_QUOTA_US);
        let name = format!("ringecho-cap-{}", std::process::id());
        let root = Path::new("/sys/fs/cgroup");
        let v2 = std::fs::read_to_string(root.join("cgroup.controllers"))
            .is_ok_and(|c| c.split_whitespace().any(|w| w == "cpu"));
        let parent = if v2 {
            // Children of the comparison's cgroup may then set their own cpu.max.
            make(
                &root.join(&name),
                &[("cgroup.subtree_control", "+cpu".into())],
            )
        } else {
            make(&root.join("cpu").join(&name), &[])
        };
        let none = || "no writable cgroup CPU controller (run as root on cgroup v1 or v2 with cpu)";
        let cap = Cap {
            dir: parent.ok_or_else(none)?,
            v2,
            quota_us,
        };
        cap.server("probe").map_err(|_| none())?;
        Ok(cap)
    }

    /// The comparison's cgroup (named in machine.txt).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A cgroup of its own for the server run called `name`, with the quota.
    pub fn server(&self, name: &str) -> crate::Result<Held> {
        let dir = self.dir.join(name);
        let settings = if self.v2 {
            vec![("cpu.max", format!("{} {PERIOD_US}", self.quota_us))]
        } else {
            vec![
                ("cpu.cfs_period_us", PERIOD_US.to_string()),
                ("cpu.cfs_quota_us", self.quota_us.to_string()),
            ]
        };
        make(&dir, &settings)
            .map(|dir| Held { dir })
            .ok_or_else(|| format!("could not make the cgroup {}", dir.display()))
            .map_err(crate::Error::from)
    }
}

impl Held {
    /// Moves process `pid` (every thread, and any it starts later) into the cgroup.
    pub fn hold(&self, pid: u32) -> crate::Result<()> {
        std::fs::write(self.dir.join("cgroup.procs"), pid.to_string()).map_err(|e| {
            crate::Error::Failed(format!(
                "could not cap the server's CPU in {}: {e}",
                self.dir.display()
            ))
        })
    }
}

impl Drop for Held {
    /// Removes the run's cgroup; one whose server still runs (an early return drops this
    /// first) is left to the comparison's.
    fn drop(&mut self) {
        remove(&self.dir, 10);
    }
}

impl Drop for Cap {
    /// Removes what server cgroups are left, then the comparison's.
    fn drop(&mut self) {
        for child in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            if child.path().is_dir() {
                remove(&child.path(), 40);
            }
        }
        remove(&self.dir, 40);
    }
}

/// Removes a cgroup, trying `tries` times 50 ms apart: a just-killed server may take a moment
/// to leave it.
fn remove(dir: &Path, tries: u32) {
    for _ in 0..tries {
        if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Creates cgroup `dir` and writes its `settings`; on any failure removes it again.
fn make(dir: &Path, settings: &[(&str, String)]) -> Option<PathBuf> {
    std::fs::create_dir_all(dir).ok()?;
    for (file, value) in settings {
        if std::fs::write(dir.join(file), value).is_err() {
            let _ = std::fs::remove_dir(dir);
            return None;
        }
    }
    Some(dir.to_path_buf())
}
