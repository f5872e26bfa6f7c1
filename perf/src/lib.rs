//! ringecho-perf: the comparison's side of the numbers. The loadgen measures one run and
//! writes its JSON; this crate reads the runs compare.sh made, summarises them per scenario
//! and server (medians over rounds, ratios to the baseline measured in the same rounds, and
//! their spread), gives each row its verdict once, and writes the table and report.html; it
//! also splits a perf profile of each server by category and draws the comparison's plots.

#![warn(missing_docs)]

pub mod check;
pub mod html;
pub mod profile;
pub mod scenario;
pub mod summary;

use std::path::Path;

use ringecho_loadgen::report::Report;

/// Reads loadgen JSON reports, naming the file that cannot be read or is not one.
pub fn read_reports(files: &[std::path::PathBuf]) -> Result<Vec<Report>, String> {
    files.iter().map(|f| read_report(f)).collect()
}

/// Reads one loadgen JSON report, naming the file that cannot be read or is not one.
pub fn read_report(path: &Path) -> Result<Report, String> {
    serde_json::from_str(&read(path)?)
        .map_err(|e| format!("{} is not a loadgen report: {e}", path.display()))
}

/// A file's text, or an error naming it.
pub fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}
