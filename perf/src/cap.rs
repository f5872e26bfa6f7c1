//! The CPU cap of the capped scenarios: a cgroup (v2 `cpu.max`, or v1 `cpu.cfs_quota_us`)
//! holding the whole server process, so that the server, not the loadgen, is the bottleneck.
//! A 5 ms period keeps throttling in small slices. The cgroup is removed when the cap is
//! dropped.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The quota's period, µs.
pub const PERIOD_US: u64 = 5_000;
/// The smallest quota the kernel takes, µs.
const MIN_QUOTA_US: u64 = 1_000;

/// A cgroup with a CPU quota; servers join it with [`Cap::hold`].
#[derive(Debug)]
pub struct Cap {
    dir: PathBuf,
    /// CPU µs allowed per period, over all the server's threads.
    pub quota_us: u64,
}

impl Cap {
    /// A cgroup allowing `fraction` of a core to each of `threads` server threads, named for
    /// this process. The error says why none could be made (no root, no CPU controller).
    pub fn create(fraction: f64, threads: usize) -> Result<Cap, String> {
        let quota_us = ((fraction * (PERIOD_US * threads as u64) as f64) as u64).max(MIN_QUOTA_US);
        let name = format!("ringecho-cap-{}", std::process::id());
        let root = Path::new("/sys/fs/cgroup");
        let v2 = std::fs::read_to_string(root.join("cgroup.controllers"))
            .is_ok_and(|c| c.split_whitespace().any(|w| w == "cpu"));
        let made = if v2 {
            make(
                &root.join(&name),
                &[("cpu.max", format!("{quota_us} {PERIOD_US}"))],
            )
        } else {
            make(
                &root.join("cpu").join(&name),
                &[
                    ("cpu.cfs_period_us", PERIOD_US.to_string()),
                    ("cpu.cfs_quota_us", quota_us.to_string()),
                ],
            )
        };
        made.map(|dir| Cap { dir, quota_us }).ok_or_else(|| {
            "no writable cgroup CPU controller (run as root on cgroup v1 or v2 with cpu)".into()
        })
    }

    /// Its directory (named in machine.txt).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Moves process `pid` (every thread, and any it starts later) into the cgroup.
    pub fn hold(&self, pid: u32) -> Result<(), String> {
        std::fs::write(self.dir.join("cgroup.procs"), pid.to_string()).map_err(|e| {
            format!(
                "could not cap the server's CPU in {}: {e}",
                self.dir.display()
            )
        })
    }
}

impl Drop for Cap {
    /// Removes the cgroup; a just-killed server may take a moment to leave it.
    fn drop(&mut self) {
        for _ in 0..40 {
            if std::fs::remove_dir(&self.dir).is_ok() || !self.dir.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
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
