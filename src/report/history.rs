//! The audit history: one JSON line per run, appended to `<state>/history.jsonl`.
//!
//! Every run is recorded — passed, failed, interrupted, refused or dry — with who, where,
//! which runbook on which instance, the parameters (secrets as `***`) and each step's
//! result. Step outputs are not kept (they can be large); the run's JSON report has them.
//! Appends take an exclusive `flock`, so concurrent runs never interleave lines.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use super::RunReport;
use crate::error::Error;

/// The history file in a state directory.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("history.jsonl")
}

/// Appends a run.
pub fn append(state_dir: &Path, report: &RunReport) -> Result<(), Error> {
    std::fs::create_dir_all(state_dir).map_err(|e| Error::io(format!("cannot create {}", state_dir.display()), &e))?;
    let mut record = report.clone();
    for step in &mut record.steps {
        step.outputs.clear();
    }
    let mut line = serde_json::to_string(&record).map_err(|e| Error::Io { context: "cannot encode the history record".into(), reason: e.to_string() })?;
    line = crate::secret::scrub(&line).into_owned();
    line.push('\n');
    let p = path(state_dir);
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&p)
        .map_err(|e| Error::io(format!("cannot open history {}", p.display()), &e))?;
    file.lock().map_err(|e| Error::io(format!("cannot lock history {}", p.display()), &e))?;
    let written = file.write_all(line.as_bytes()).and_then(|_| file.sync_data());
    let _ = file.unlock();
    written.map_err(|e| Error::io(format!("cannot write history {}", p.display()), &e))
}

/// Reads runs, oldest first. Lines that do not parse are counted, not fatal.
pub fn read(state_dir: &Path) -> Result<(Vec<RunReport>, usize), Error> {
    let p = path(state_dir);
    let file = match std::fs::File::open(&p) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(Error::io(format!("cannot read history {}", p.display()), &e)),
    };
    let mut runs = Vec::new();
    let mut bad = 0;
    for line in BufReader::new(file).lines() {
        let line = line.map_err(|e| Error::io(format!("cannot read history {}", p.display()), &e))?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<RunReport>(&line) {
            Ok(r) => runs.push(r),
            Err(_) => bad += 1,
        }
    }
    Ok((runs, bad))
}
