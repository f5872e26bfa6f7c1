//! Writing a run's files: whole or with an error naming the file.

use std::path::Path;

use crate::report::Report;
use crate::LoadError;

/// Writes `path` through a buffered writer; `what` names it in the error.
pub(crate) fn write_file(
    path: &Path,
    what: &str,
    f: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> std::io::Result<()>,
) -> Result<(), LoadError> {
    let file = std::fs::File::create(path)
        .map_err(|e| LoadError(format!("cannot write {what} to {}: {e}", path.display())))?;
    let mut w = std::io::BufWriter::new(file);
    f(&mut w)
        .and_then(|_| std::io::Write::flush(&mut w))
        .map_err(|e| LoadError(format!("cannot write {what} to {}: {e}", path.display())))
}

/// Writes a report as pretty JSON.
pub(crate) fn write_json(path: &Path, report: &Report) -> Result<(), LoadError> {
    write_file(path, "JSON", |w| {
        serde_json::to_writer_pretty(&mut *w, report).map_err(std::io::Error::other)?;
        std::io::Write::write_all(w, b"\n")
    })
}
