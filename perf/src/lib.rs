//! ringecho-perf: the comparison's side of the numbers. The loadgen measures one run and
//! writes its JSON; this crate runs the comparison (servers started, pinned, capped and
//! stopped; the loadgen run against each, round by round), reads the runs, summarises them
//! per scenario and server (medians over rounds, ratios to the baseline measured in the same
//! rounds, and their spread), gives each row its verdict once, and writes the table and
//! report.html; it also splits a perf profile of each server by category.
//!
//! Three layers, dependencies pointing one way (perf/tests/layers.rs keeps it so):
//! [`run`] (processes: servers, loadgens, caps, cores, signals) calls [`render`] (text and
//! HTML) and [`analysis`] (functions of data); [`render`] calls [`analysis`]. Below all
//! three: the scenarios ([`scenario`]), the machine's
//! cores ([`cores`]), the errors and the file helpers here; [`results`], the directory on disk,
//! stores the analysis's data and is read by the two layers above.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod analysis;
pub mod cores;
mod error;
pub mod render;
pub mod results;
pub mod run;
pub mod scenario;

use std::path::{Path, PathBuf};

use ringecho_loadgen::report::Report;

pub use error::{Error, Result};

/// Reads loadgen JSON reports, naming the file that cannot be read or is not one.
pub fn read_reports(files: &[std::path::PathBuf]) -> crate::Result<Vec<Report>> {
    files.iter().map(|f| read_report(f)).collect()
}

/// Reads one loadgen JSON report, naming the file that cannot be read or is not one.
pub fn read_report(path: &Path) -> crate::Result<Report> {
    parse(path, "a loadgen report", &read(path)?)
}

/// `text`, read from `path`, as JSON of type `T`; an error naming the file and `what` it
/// should have been.
pub fn parse<T: serde::de::DeserializeOwned>(
    path: &Path,
    what: &'static str,
    text: &str,
) -> crate::Result<T> {
    serde_json::from_str(text).map_err(|source| Error::Parse {
        path: path.to_owned(),
        what,
        source,
    })
}

/// A file's text, or an error naming it.
pub fn read(path: &Path) -> crate::Result<String> {
    std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })
}

/// Writes `value` as pretty JSON, or an error naming the file.
pub fn write_json(path: &Path, value: &impl serde::Serialize) -> crate::Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::Failed(e.to_string()))?;
    write(path, &(text + "\n"))
}

/// Writes text to a file, or an error naming it.
pub fn write(path: &Path, text: &str) -> crate::Result<()> {
    std::fs::write(path, text).map_err(|source| Error::Write {
        path: path.to_owned(),
        source,
    })
}

/// The file exists and is not empty (a run's report, a plot's input).
pub fn nonempty(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.len() > 0)
}

/// Now in UTC as a results directory's name: `20261126T003315Z`.
pub fn stamp() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace(['-', ':'], "")
}

/// The file names in `dir`, or an error naming it.
pub fn list(dir: &Path) -> crate::Result<Vec<String>> {
    Ok(std::fs::read_dir(dir)
        .map_err(|source| Error::Read {
            path: dir.to_owned(),
            source,
        })?
        .filter_map(|d| d.ok().map(|d| d.file_name().to_string_lossy().into_owned()))
        .collect())
}

/// `LOG` + `suffix` (`out/c100x64-epoll-1` + `.json`).
pub fn with_suffix(log: &Path, suffix: &str) -> PathBuf {
    let mut s = log.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}
