//! The map's runs (`ringecho-perf map`, `compare --map`): each cell of its grid measured as a
//! scenario is — every server interleaved round by round, the baseline's A/A pair last —
//! its runs under `runs/map/`, then map.json, map.txt and map.svg from their summary. An
//! interrupted map keeps the cells it finished, and the report draws them.

use super::machine::one_line;
use super::map_plan::MapPlan;
use super::Bench;
use crate::analysis::map::{build, MapFile};

impl Bench {
    /// Runs the map's cells, then writes what they measured.
    pub(super) fn map(&mut self, map: &MapPlan) -> crate::Result<()> {
        let cells = map.grid.cells();
        let date = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        let mut done = Vec::new();
        for (i, cell) in cells.iter().enumerate() {
            eprintln!(
                "map cell {}/{}: {} ({})",
                i + 1,
                cells.len(),
                cell.name(),
                cell.describe()
            );
            let ran = self.rounds(
                &cell.workload(),
                map.rounds,
                &map.warmup,
                &map.duration,
                false,
            );
            match ran {
                Ok(()) => done.push(cell.name()),
                Err(crate::Error::Interrupted) => {
                    eprintln!(
                        "map: interrupted; writing the {} cells that finished",
                        done.len()
                    );
                    self.write_map(map, &done, &date, false)?;
                    self.report()?;
                    return Err(crate::Error::Interrupted);
                }
                Err(e) => return Err(e),
            }
        }
        self.write_map(map, &done, &date, true)
    }

    /// map.json, map.txt and map.svg from the finished cells' runs; a run that was not
    /// clean fails the comparison (a reference peer's excepted).
    fn write_map(
        &mut self,
        map: &MapPlan,
        done: &[String],
        date: &str,
        complete: bool,
    ) -> crate::Result<()> {
        let mut files = Vec::new();
        for cell in done {
            files.extend(self.results.map_reports(cell)?);
        }
        let reports = crate::read_reports(&files)?;
        if !self.all_clean(&reports) {
            self.failed = true;
        }
        let rows = crate::analysis::summary::summarise(&reports, &self.plan.baseline);
        let file = MapFile {
            command: std::env::args().collect::<Vec<_>>().join(" "),
            date: date.to_string(),
            machine: one_line(),
            baseline: self.plan.baseline.clone(),
            rounds: map.rounds,
            duration: map.duration.clone(),
            warmup: map.warmup.clone(),
            complete,
            slices: map.grid.slices.clone(),
            records: build(&rows),
        };
        self.results.write_map(
            &file,
            &crate::render::heat::text(&file),
            &crate::render::heat::svg(&file),
        )?;
        eprint!("{}", crate::render::heat::text(&file));
        self.contents.map = Some(file);
        Ok(())
    }
}
