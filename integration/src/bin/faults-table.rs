//! `faults-table FILE`: prints the fault suite's figures (`RINGECHO_FAULTS_REPORT`) as the
//! Markdown table of docs/reliability.md; scripts/faults.sh runs it.

use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(path) = std::env::args_os().nth(1) else {
        eprintln!("faults-table: usage: faults-table FILE");
        return ExitCode::from(2);
    };
    let table = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.to_string_lossy()))
        .and_then(|text| ringecho_integration::faults_table(&text));
    match table {
        Ok(t) => {
            print!("{t}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("faults-table: error: {e}");
            ExitCode::from(1)
        }
    }
}
