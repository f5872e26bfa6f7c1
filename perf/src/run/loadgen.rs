//! The loadgen as the comparison runs it: pinned to the loadgen's cores, its output in files,
//! and killed if the comparison is interrupted (SIGINT or SIGTERM), which then ends between
//! runs with every server stopped and the cgroup removed.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use super::signals::Interrupt;
use crate::cores::Split;

/// Connections come from these source addresses: TIME_WAIT sockets left by earlier runs would
/// otherwise slow every connect's search for a free port (tens of thousands pile up).
pub const SOURCE_ADDRS: &str = "127.0.0.2-127.0.0.9";

/// How the loadgen is started.
#[derive(Debug, Clone)]
pub struct Loadgen {
    /// ringecho-loadgen.
    pub exe: PathBuf,
    /// The loadgen's CPU list (taskset -c).
    pub cpus: String,
}

impl Loadgen {
    /// ringecho-loadgen from `bin`, on the loadgen's cores of `split`.
    pub fn new(bin: &Path, split: &Split) -> Loadgen {
        Loadgen {
            exe: bin.join("ringecho-loadgen"),
            cpus: split.loadgen_cpus.clone(),
        }
    }

    /// The same loadgen on `split`'s loadgen cores.
    pub fn on(&self, split: &Split) -> Loadgen {
        Loadgen {
            exe: self.exe.clone(),
            cpus: split.loadgen_cpus.clone(),
        }
    }

    /// Runs `ringecho-loadgen ARGS…` pinned, its output to `stdout` and `stderr`, and returns
    /// its exit status; an interruption kills it and is the error.
    pub fn run(
        &self,
        args: &[String],
        stdout: File,
        stderr: File,
        interrupt: &Interrupt,
    ) -> crate::Result<ExitStatus> {
        let mut all = self.run_all(vec![(args.to_vec(), stdout, stderr)], interrupt)?;
        Ok(all.remove(0))
    }

    /// Runs one loadgen per `(args, stdout, stderr)`, all at once, and returns their exit
    /// statuses in order; an interruption kills them all and is the error.
    pub fn run_all(
        &self,
        runs: Vec<(Vec<String>, File, File)>,
        interrupt: &Interrupt,
    ) -> crate::Result<Vec<ExitStatus>> {
        let mut children = Vec::new();
        for (args, stdout, stderr) in runs {
            let child = Command::new("taskset")
                .arg("-c")
                .arg(&self.cpus)
                .arg(&self.exe)
                .args(args)
                .stdin(Stdio::null())
                .stdout(stdout)
                .stderr(stderr)
                .spawn();
            match child {
                Ok(c) => children.push(c),
                Err(e) => {
                    kill_all(&mut children);
                    return Err(format!("cannot start the loadgen (taskset): {e}").into());
                }
            }
        }
        let mut statuses = vec![None; children.len()];
        loop {
            for (child, status) in children.iter_mut().zip(statuses.iter_mut()) {
                if status.is_none() {
                    *status = child.try_wait().map_err(|e| e.to_string())?;
                }
            }
            if let Err(e) = interrupt.check() {
                kill_all(&mut children);
                return Err(e);
            }
            if statuses.iter().all(Option::is_some) {
                return Ok(statuses.into_iter().flatten().collect());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Kills and reaps loadgens still running.
fn kill_all(children: &mut [std::process::Child]) {
    for c in children {
        let _ = c.kill();
        let _ = c.wait();
    }
}
