//! What the test suites of every crate share: whether a test can run on this machine (root,
//! a tool on PATH), and how a test that cannot is reported. A test that needs what is missing
//! says "skipped" with the reason and is counted by `scripts/test.sh` in its closing line,
//! instead of failing for a contributor without root or passing without a word; where
//! `RINGECHO_NO_SKIP` is set (CI, as root, after installing every tool) it fails instead.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

use std::io::Write;
use std::path::Path;

/// Something a test needs from the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Root: network and mount namespaces, iptables, packet capture, cgroups.
    Root,
    /// A program on PATH.
    Tool(&'static str),
}

/// What of `needs` this machine lacks, in words; empty when the test can run.
pub fn missing(needs: &[Need]) -> Vec<String> {
    needs
        .iter()
        .filter_map(|n| match *n {
            Need::Root if !is_root() => Some("root".to_string()),
            Need::Tool(t) if !on_path(t) => Some(format!("{t} (not installed)")),
            _ => None,
        })
        .collect()
}

/// Whether `test` can run here. When it cannot, says so on stderr and appends a line to the
/// file `RINGECHO_SKIPS` names (scripts/test.sh counts them), then returns false: the test
/// returns at once. With `RINGECHO_NO_SKIP` set it panics instead.
pub fn can_run(test: &str, needs: &[Need]) -> bool {
    let no_skip = std::env::var_os("RINGECHO_NO_SKIP").is_some();
    let skips = std::env::var_os("RINGECHO_SKIPS").map(std::path::PathBuf::from);
    match decide(test, &missing(needs), no_skip, skips.as_deref()) {
        Ok(run) => run,
        Err(e) => panic!("{e}"),
    }
}

/// [`can_run`]'s rule, with the environment passed in: run when nothing is lacking; else
/// refuse when skipping is forbidden, or report the skip (stderr, and a line in `skips`).
fn decide(
    test: &str,
    lacking: &[String],
    no_skip: bool,
    skips: Option<&Path>,
) -> Result<bool, String> {
    if lacking.is_empty() {
        return Ok(true);
    }
    let line = format!("{test}: needs {}", lacking.join(", "));
    if no_skip {
        return Err(format!("{line}, and RINGECHO_NO_SKIP forbids skipping it"));
    }
    eprintln!("skipped: {line}");
    if let Some(path) = skips {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .map_err(|e| format!("cannot record the skip in {}: {e}", path.display()))?;
        writeln!(f, "{line}")
            .map_err(|e| format!("cannot record the skip in {}: {e}", path.display()))?;
    }
    Ok(false)
}

/// Whether this process runs with effective user id 0, from /proc (no unsafe call).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// Whether `tool` is an executable file in a PATH directory (or a path to one).
pub fn on_path(tool: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let exec = |p: &Path| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if tool.contains('/') {
        return exec(Path::new(tool));
    }
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| exec(&d.join(tool))))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_are_found_on_path_and_absent_ones_named() {
        assert!(on_path("sh"));
        assert!(!on_path("no-such-tool-ringecho"));
        assert_eq!(
            missing(&[Need::Tool("sh"), Need::Tool("no-such-tool-ringecho")]),
            ["no-such-tool-ringecho (not installed)"]
        );
    }

    #[test]
    fn a_skip_is_written_where_the_runner_counts_it_or_refused() {
        let f = std::env::temp_dir().join(format!("ringecho-skips-{}", std::process::id()));
        let lacking = ["root".to_string()];
        assert_eq!(decide("demo", &[], true, Some(&f)), Ok(true));
        assert_eq!(decide("demo", &lacking, false, Some(&f)), Ok(false));
        assert_eq!(decide("other", &lacking, false, Some(&f)), Ok(false));
        let text = std::fs::read_to_string(&f).unwrap();
        assert_eq!(text, "demo: needs root\nother: needs root\n");
        let e = decide("demo", &lacking, true, Some(&f)).unwrap_err();
        assert!(e.contains("RINGECHO_NO_SKIP"), "{e}");
        std::fs::remove_file(&f).unwrap();
    }
}
