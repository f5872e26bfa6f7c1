//! Whether this user may count system calls and profile the kernel with perf here, asked once
//! and answered with what is missing and how to allow it. Debian and Ubuntu ship
//! `kernel.perf_event_paranoid` at 2 or more and tracefs readable by root alone, so an
//! ordinary user's perf can do neither; everything that uses perf asks here first and skips
//! its part with this answer, never failing the rest.

use std::process::{Command, Stdio};

/// The tracepoint that counts system calls.
pub const SYSCALL_EVENT: &str = "raw_syscalls:sys_enter";

/// `Ok` if `perf stat -e raw_syscalls:sys_enter` counts here; otherwise why not, and how to
/// allow it.
pub fn syscall_counting() -> Result<(), String> {
    installed()?;
    let out = Command::new("perf")
        .args(["stat", "-x", ",", "-e", SYSCALL_EVENT, "--", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run perf: {e}"))?;
    let text = String::from_utf8_lossy(&out.stderr);
    let counted = text.lines().filter(|l| l.contains(SYSCALL_EVENT)).any(|l| {
        l.split(',')
            .next()
            .is_some_and(|n| n.trim().parse::<u64>().is_ok())
    });
    if out.status.success() && counted {
        return Ok(());
    }
    let said = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("no count");
    Err(format!(
        "perf cannot count system calls as this user ({said}; {}): run as root, or allow it \
         with `sudo sysctl kernel.perf_event_paranoid=-1` and `sudo chmod -R a+rx \
         /sys/kernel/tracing`",
        paranoid_said()
    ))
}

/// `Ok` if `perf record` can sample the kernel here (root, or `kernel.perf_event_paranoid`
/// at 1 or less); otherwise why not, and how to allow it. A profile of user space alone would
/// miss where an echo server spends most of its time.
#[allow(unsafe_code)]
pub fn kernel_profiling() -> Result<(), String> {
    installed()?;
    // SAFETY: geteuid has no preconditions and touches no memory.
    if unsafe { libc::geteuid() } == 0 {
        return Ok(());
    }
    match paranoid() {
        Some(p) if p <= 1 => Ok(()),
        _ => Err(format!(
            "perf cannot sample the kernel as this user ({}): run as root, or allow it with \
             `sudo sysctl kernel.perf_event_paranoid=1`",
            paranoid_said()
        )),
    }
}

/// One line for a results directory: what perf can do here.
pub fn describe() -> String {
    let yes_no = |r: Result<(), String>| match r {
        Ok(()) => "yes".to_string(),
        Err(why) => format!("no ({why})"),
    };
    format!(
        "perf: count syscalls: {}; sample the kernel: {}",
        yes_no(syscall_counting()),
        yes_no(kernel_profiling())
    )
}

fn installed() -> Result<(), String> {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("perf").is_file()));
    if found {
        Ok(())
    } else {
        Err("perf is not installed (apt-get install linux-perf)".into())
    }
}

fn paranoid() -> Option<i32> {
    std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn paranoid_said() -> String {
    match paranoid() {
        Some(p) => format!("kernel.perf_event_paranoid is {p}"),
        None => "kernel.perf_event_paranoid unreadable".into(),
    }
}
