//! A results directory as one type. [`Results`] names every file a comparison writes, in
//! this one place; [`Contents`] is what the report is made from, held in memory: compare
//! fills it as it writes each part and hands it to the report, and `ringecho-perf report`
//! reads it back once. A part that is missing is a value saying so ([`Part`]), never an
//! empty default.

use std::path::{Path, PathBuf};

use ringecho_loadgen::report::Report;
use ringecho_loadgen::sweep::Sweep;

use crate::analysis::map::MapFile;
use crate::analysis::profile::Profile;
use crate::analysis::summary::Row;
use crate::with_suffix;

const MACHINE_TXT: &str = "machine.txt";
const MACHINE_JSON: &str = "machine.json";
const TABLE_TXT: &str = "table.txt";
const SUMMARY_JSON: &str = "summary.json";
const PAIRED_TXT: &str = "paired.txt";
const PAIRED_JSON: &str = "paired.json";
/// Every run's own files, apart from what a person opens first.
const RUNS_DIR: &str = "runs";
const PAIRED_DIR: &str = "runs/paired";
const MAP_DIR: &str = "runs/map";
const MAP_JSON: &str = "map.json";
const MAP_TXT: &str = "map.txt";
const MAP_SVG: &str = "map.svg";
const PROFILE_TXT: &str = "profile.txt";
const PROFILE_JSON: &str = "profile.json";
const REPORT_HTML: &str = "report.html";
const LOAD_SVG: &str = "latency-load.svg";
/// How profile.txt begins when the profile was skipped; the reason follows.
const PROFILE_SKIPPED: &str = "--profile skipped: ";

/// A part of the results that may not be there, and why.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Part<T> {
    /// It ran: here it is.
    Ran(T),
    /// It was asked for and could not run, for this reason.
    Skipped(String),
    /// It was not asked for.
    #[default]
    NotAsked,
}

/// What the report is made from.
#[derive(Debug, Clone, Default)]
pub struct Contents {
    /// machine.txt: the machine, the split and the windows.
    pub machine: Option<String>,
    /// The summary's rows; None when there is no summary.json (no scenario ran).
    pub rows: Option<Vec<Row>>,
    /// `--paired`'s table.
    pub paired: Option<String>,
    /// `--profile`'s figures.
    pub profile: Part<Vec<Profile>>,
    /// The sweeps' curves, by server.
    pub sweeps: Vec<Sweep>,
    /// The plot scenario's latency percentiles (SVG), if drawn.
    pub latency_svg: Option<String>,
    /// The sweeps' latency against load (SVG), if drawn.
    pub load_svg: Option<String>,
    /// The map's cells (map.json), if a map ran.
    pub map: Option<MapFile>,
}

impl Contents {
    /// The baseline the summary's rows name (tokio's epoll for rows written before they
    /// named one, when it was every comparison's baseline); None without a summary.
    pub fn baseline(&self) -> Option<String> {
        let Some(rows) = self.rows.as_ref() else {
            return self.map.as_ref().map(|m| m.baseline.clone());
        };
        Some(
            rows.iter()
                .map(|r| r.baseline.clone())
                .find(|b| !b.is_empty())
                .unwrap_or_else(|| {
                    let [epoll, _] = crate::analysis::grid::INTERFACES;
                    crate::analysis::grid::cell(epoll, crate::analysis::grid::DRIVERS[1]).into()
                }),
        )
    }
}

/// A results directory: where each file of a comparison goes.
#[derive(Debug, Clone)]
pub struct Results {
    dir: PathBuf,
}

impl Results {
    /// The results in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Results {
        Results { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates the directory (and the paired runs' one, with `paired`; the map's, with
    /// `map`).
    pub fn create(&self, paired: bool, map: bool) -> crate::Result<()> {
        let mut dirs = vec![self.dir.clone(), self.dir.join(RUNS_DIR)];
        if paired {
            dirs.push(self.paired_dir());
        }
        if map {
            dirs.push(self.dir.join(MAP_DIR));
        }
        for d in dirs {
            std::fs::create_dir_all(&d)
                .map_err(|source| crate::Error::Write { path: d, source })?;
        }
        Ok(())
    }

    /// The prefix of one run's files: `runs/SCENARIO-SERVER-ROUND` (`.json`, `.txt`, `.err`,
    /// `.hgrm`, `.server.err`).
    pub fn run(&self, scenario: &str, server: &str, round: &str) -> PathBuf {
        self.dir
            .join(RUNS_DIR)
            .join(format!("{scenario}-{server}-{round}"))
    }

    /// The prefix of a server's sweep: `runs/sweep-SERVER`.
    pub fn sweep(&self, server: &str) -> PathBuf {
        self.dir.join(RUNS_DIR).join(format!("sweep-{server}"))
    }

    /// The prefix of a server's profiled run: `profile-SERVER`.
    pub fn profile_run(&self, server: &str) -> PathBuf {
        self.dir.join(RUNS_DIR).join(format!("profile-{server}"))
    }

    /// Where the paired runs' files go.
    pub fn paired_dir(&self) -> PathBuf {
        self.dir.join(PAIRED_DIR)
    }

    /// The plot of `scenario`'s latency percentiles.
    pub fn latency_svg(&self, scenario: &str) -> PathBuf {
        self.dir.join(format!("latency-{scenario}.svg"))
    }

    /// The plot of the sweeps.
    pub fn load_svg(&self) -> PathBuf {
        self.dir.join(LOAD_SVG)
    }

    /// report.html.
    pub fn report_html(&self) -> PathBuf {
        self.dir.join(REPORT_HTML)
    }

    /// Every run's report of `scenario`, in name order.
    pub fn run_reports(&self, scenario: &str) -> crate::Result<Vec<PathBuf>> {
        reports_in(&self.dir.join(RUNS_DIR), scenario)
    }

    /// A run file's path as summary.json names it: relative to the directory.
    pub fn relative(&self, path: &Path) -> String {
        path.strip_prefix(&self.dir)
            .unwrap_or(path)
            .to_string_lossy()
            .into_owned()
    }

    /// machine.txt and machine.json: the same facts as text and as JSON.
    pub fn write_machine(&self, text: &str, json: &impl serde::Serialize) -> crate::Result<()> {
        crate::write_json(&self.dir.join(MACHINE_JSON), json)?;
        crate::write(&self.dir.join(MACHINE_TXT), text)
    }

    /// table.txt and summary.json.
    pub fn write_summary(&self, table: &str, rows: &[Row]) -> crate::Result<()> {
        crate::write(&self.dir.join(TABLE_TXT), table)?;
        crate::write_json(&self.dir.join(SUMMARY_JSON), &rows)
    }

    /// paired.txt and paired.json.
    pub fn write_paired(&self, table: &str, rows: &impl serde::Serialize) -> crate::Result<()> {
        crate::write(&self.dir.join(PAIRED_TXT), table)?;
        crate::write_json(&self.dir.join(PAIRED_JSON), rows)
    }

    /// profile.txt (`table`, the profiles as text) and profile.json; profile.txt alone
    /// saying why when it was skipped.
    pub fn write_profile(&self, profile: &Part<Vec<Profile>>, table: &str) -> crate::Result<()> {
        match profile {
            Part::Ran(p) if !p.is_empty() => {
                crate::write(&self.dir.join(PROFILE_TXT), table)?;
                crate::write_json(&self.dir.join(PROFILE_JSON), p)
            }
            Part::Skipped(why) => crate::write(
                &self.dir.join(PROFILE_TXT),
                &format!("{PROFILE_SKIPPED}{why}\n"),
            ),
            _ => Ok(()),
        }
    }

    /// report.html.
    pub fn write_report(&self, page: &str) -> crate::Result<()> {
        crate::write(&self.report_html(), page)
    }

    /// The prefix of one map run's files, in the map's folder: `runs/map/CELL-SERVER-ROUND`.
    pub fn map_run(&self, cell: &str, server: &str, round: &str) -> PathBuf {
        self.dir
            .join(MAP_DIR)
            .join(format!("{cell}-{server}-{round}"))
    }

    /// The JSON reports of one map cell's runs, in name order.
    pub fn map_reports(&self, cell: &str) -> crate::Result<Vec<PathBuf>> {
        reports_in(&self.dir.join(MAP_DIR), cell)
    }

    /// map.json, map.txt (`text`) and map.svg (`svg`, the heat maps).
    pub fn write_map(&self, map: &MapFile, text: &str, svg: &str) -> crate::Result<()> {
        crate::write_json(&self.dir.join(MAP_JSON), map)?;
        crate::write(&self.dir.join(MAP_TXT), text)?;
        crate::write(&self.dir.join(MAP_SVG), svg)
    }

    /// map.json, if it is there.
    pub fn map(&self) -> crate::Result<Option<MapFile>> {
        match self.optional(MAP_JSON)? {
            Some(text) => Ok(Some(crate::parse(
                &self.dir.join(MAP_JSON),
                "a map",
                &text,
            )?)),
            None => Ok(None),
        }
    }

    /// A run's report whose run could not be made: its JSON says why.
    pub fn write_failed_run(&self, prefix: &Path, report: &Report) -> crate::Result<()> {
        crate::write_json(&with_suffix(prefix, ".json"), report)
    }

    /// What the report needs, read back from the directory (`plot_scenario`: whose latency
    /// plot). A missing part is left out; a part that is there but unreadable is an error.
    pub fn load(&self, plot_scenario: &str) -> crate::Result<Contents> {
        let profile = match (self.optional(PROFILE_JSON)?, self.optional(PROFILE_TXT)?) {
            (Some(json), _) => Part::Ran(crate::parse(
                &self.dir.join(PROFILE_JSON),
                "a profile",
                &json,
            )?),
            (None, Some(txt)) => match txt.strip_prefix(PROFILE_SKIPPED) {
                Some(why) => Part::Skipped(why.trim().to_string()),
                None => Part::NotAsked,
            },
            (None, None) => Part::NotAsked,
        };
        let mut sweeps = Vec::new();
        // Under runs/; at the top in a directory written before runs/ existed.
        let runs = self.dir.join(RUNS_DIR);
        let dir = if runs.is_dir() {
            runs
        } else {
            self.dir.clone()
        };
        let mut names: Vec<String> = crate::list(&dir)?
            .into_iter()
            .filter(|n| n.starts_with("sweep-") && n.ends_with(".json"))
            .collect();
        names.sort();
        for n in names {
            let path = dir.join(&n);
            sweeps.push(crate::parse(&path, "a sweep", &crate::read(&path)?)?);
        }
        Ok(Contents {
            machine: self.machine()?,
            rows: self.summary()?,
            map: self.map()?,
            paired: self.optional(PAIRED_TXT)?,
            profile,
            sweeps,
            latency_svg: read_optional(&self.latency_svg(plot_scenario))?,
            load_svg: read_optional(&self.load_svg())?,
        })
    }

    /// summary.json's rows; None when there is none (an empty file reads as no rows).
    pub fn summary(&self) -> crate::Result<Option<Vec<Row>>> {
        Ok(match self.optional(SUMMARY_JSON)? {
            Some(text) if !text.trim().is_empty() => Some(crate::parse(
                &self.dir.join(SUMMARY_JSON),
                "a summary",
                &text,
            )?),
            Some(_) => Some(Vec::new()),
            None => None,
        })
    }

    /// The error for a directory that has no summary.json where one is needed.
    pub fn no_summary(&self) -> crate::Error {
        crate::Error::Read {
            path: self.dir.join(SUMMARY_JSON),
            source: std::io::ErrorKind::NotFound.into(),
        }
    }

    /// machine.txt, if it is there.
    pub fn machine(&self) -> crate::Result<Option<String>> {
        self.optional(MACHINE_TXT)
    }

    fn optional(&self, name: &str) -> crate::Result<Option<String>> {
        read_optional(&self.dir.join(name))
    }
}

/// The JSON reports in `dir` whose names begin `NAME-`, in name order.
fn reports_in(dir: &Path, name: &str) -> crate::Result<Vec<PathBuf>> {
    let prefix = format!("{name}-");
    let mut files: Vec<PathBuf> = crate::list(dir)?
        .into_iter()
        .filter(|n| n.starts_with(&prefix) && n.ends_with(".json"))
        .map(|n| dir.join(n))
        .collect();
    files.sort();
    Ok(files)
}

/// A file's text; None when it does not exist.
pub fn read_optional(path: &Path) -> crate::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(crate::Error::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What compare writes, `load` reads back: a skipped profile stays skipped with its
    /// reason, absent parts stay absent, and a corrupt summary is an error naming the file.
    #[test]
    fn what_is_written_is_read_back() {
        let dir = std::env::temp_dir().join(format!("ringecho-results-{}", std::process::id()));
        let r = Results::new(&dir);
        r.create(false, false).unwrap();
        let empty = r.load("c100x64").unwrap();
        assert!(empty.rows.is_none() && empty.machine.is_none() && empty.paired.is_none());
        assert_eq!(empty.profile, Part::NotAsked);
        assert_eq!(empty.baseline(), None);
        assert!(r.no_summary().to_string().contains("summary.json"));
        r.write_summary("", &[]).unwrap();
        assert_eq!(
            r.load("c100x64").unwrap().baseline().as_deref(),
            Some("epoll")
        );
        r.write_machine("kernel: x\n", &serde_json::json!({"kernel": "x"}))
            .unwrap();
        r.write_profile(&Part::Skipped("perf is not installed".into()), "")
            .unwrap();
        r.write_paired("table\n", &Vec::<u8>::new()).unwrap();
        let back = r.load("c100x64").unwrap();
        assert_eq!(back.machine.as_deref(), Some("kernel: x\n"));
        assert_eq!(back.profile, Part::Skipped("perf is not installed".into()));
        assert_eq!(back.paired.as_deref(), Some("table\n"));
        std::fs::write(dir.join(SUMMARY_JSON), "not json").unwrap();
        let err = r.load("c100x64").unwrap_err().to_string();
        assert!(err.contains("summary.json is not a summary"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
