//! What a run did: the report every output is rendered from.
//!
//! The engine emits [`Event`]s to a [`Sink`] while it runs — the live progress line
//! ([`progress`]) and the log ([`LogSink`]) are sinks — and returns a [`RunReport`] at the
//! end. The renderers ([`table`], [`json`], [`junit`]) are functions of finished reports,
//! called after the runs; [`history`] appends each report to the audit log. None of them
//! know how steps run. The JSON form of [`RunReport`] is the stable document printed by
//! `--output json` (schema `opsctl.run/v1`, documented in the README).

pub mod history;
pub mod json;
pub mod junit;
pub mod progress;
pub mod prometheus;
pub mod table;

use std::io::Write;

use serde::{Deserialize, Serialize};

use crate::error::Exit;
use crate::vocab::{Effect, ErrorClass};

/// The status of one step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Passed,
    Warned,
    Failed,
    /// Did not run: `when` was false, an earlier step failed, or the run was interrupted.
    Skipped,
    /// A dry run: would have run; the message says what it would change.
    Planned,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Passed => "passed",
            Status::Warned => "warned",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
            Status::Planned => "planned",
        }
    }
}

/// How the whole run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Every step passed or warned (or was skipped or planned).
    Passed,
    /// At least one step failed.
    Failed,
    /// Stopped by Ctrl-C or SIGTERM.
    Interrupted,
    /// An operator declined a confirmation.
    Refused,
    /// Never launched: `--max-errors` was exceeded by the instances before it.
    NotStarted,
    /// Not run: another run holds the instance's lock or lease (`reason` names it).
    Locked,
    /// Not run: the runbook does not apply to the instance (`requires:`; `reason` says
    /// what it lacks). Only in a command on several instances; on one it is refused.
    NotApplicable,
}

impl RunStatus {
    /// How the command ends for a run that ended so.
    pub fn exit(self) -> Exit {
        match self {
            RunStatus::Passed => Exit::Passed,
            RunStatus::Failed => Exit::Failed,
            RunStatus::Interrupted => Exit::Interrupted,
            RunStatus::Refused => Exit::Invalid,
            RunStatus::NotStarted => Exit::Failed,
            RunStatus::Locked => Exit::Locked,
            RunStatus::NotApplicable => Exit::Passed,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Passed => "passed",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Refused => "refused",
            RunStatus::NotStarted => "not started",
            RunStatus::Locked => "locked",
            RunStatus::NotApplicable => "not applicable",
        }
    }
}

/// One step's result.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StepReport {
    /// The step's id (`3` or `2.1` when it has none; `http[0]` for an item of `for_each`).
    pub id: String,
    /// The display name (rendered `name`, else the id).
    pub name: String,
    pub kind: String,
    pub effect: Effect,
    pub status: Status,
    pub message: String,
    /// The measured value, e.g. `72.4%`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The thresholds it was held to, e.g. `warn > 80.0%, fail > 90.0%`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<String>,
    /// Why it failed, for failed steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_class: Option<ErrorClass>,
    /// Tries made (retries included); 0 when it did not run.
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<jiff::Timestamp>,
    pub duration_ms: f64,
    /// The kind's outputs (long text cut to 4 KiB). Not kept in the history.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub outputs: serde_json::Map<String, serde_json::Value>,
}

/// Counts per status.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Summary {
    pub total: usize,
    pub passed: usize,
    pub warned: usize,
    pub failed: usize,
    pub skipped: usize,
    pub planned: usize,
}

/// One run, start to end.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunReport {
    /// Always `opsctl.run/v1` for this shape.
    pub schema: String,
    pub run_id: String,
    pub runbook: String,
    /// Where the runbook came from: a path, or `<embedded>/NAME.yaml`.
    pub runbook_source: String,
    pub instance: String,
    pub dry_run: bool,
    pub status: RunStatus,
    pub exit_code: u8,
    pub started_at: jiff::Timestamp,
    pub finished_at: jiff::Timestamp,
    pub duration_ms: f64,
    pub user: String,
    pub host: String,
    pub opsctl_version: String,
    /// Parameter values, secrets as `***`.
    pub params: serde_json::Map<String, serde_json::Value>,
    pub summary: Summary,
    pub steps: Vec<StepReport>,
    /// Backends the runbook's steps `need` that the instance does not have; those steps
    /// did not run and are not in `steps`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_configured: Vec<String>,
    /// Why a run that did not start did not (`not_started`, `locked`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

pub const SCHEMA: &str = "opsctl.run/v1";

/// Several runbooks run one after another on one instance — a routine, or a deploy's gate
/// then the deploy — as one document (schema `opsctl.sequence/v1`). One exit code: the
/// worst of the runs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SequenceReport {
    pub schema: String,
    /// `routine daily`, `deploy`.
    pub name: String,
    pub instance: String,
    pub status: RunStatus,
    pub exit_code: u8,
    pub runs: Vec<RunReport>,
    /// Runbooks of the sequence that did not run, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_run: Vec<NotRun>,
}

/// A runbook of a sequence that did not run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct NotRun {
    pub runbook: String,
    pub reason: String,
}

pub const SEQUENCE_SCHEMA: &str = "opsctl.sequence/v1";

/// The JSON document of a command run on several instances.
pub const FLEET_SCHEMA: &str = "opsctl.fleet/v1";

impl SequenceReport {
    pub fn new(name: String, instance: String, runs: Vec<RunReport>, not_run: Vec<NotRun>) -> SequenceReport {
        let status = runs
            .iter()
            .map(|r| r.status)
            .max_by_key(|s| match s {
                RunStatus::Passed | RunStatus::NotApplicable => 0,
                RunStatus::Failed | RunStatus::NotStarted => 1,
                RunStatus::Locked => 2,
                RunStatus::Refused => 3,
                RunStatus::Interrupted => 4,
            })
            .unwrap_or(RunStatus::Passed);
        let exit = crate::error::Exit::worst(runs.iter().map(|r| r.status.exit()));
        SequenceReport { schema: SEQUENCE_SCHEMA.into(), name, instance, status, exit_code: exit.code(), runs, not_run }
    }
}

/// One instance's line in the summary of a command run on several instances.
#[derive(Clone, Debug, PartialEq)]
pub struct FleetRow {
    pub instance: String,
    pub status: RunStatus,
    pub failed: usize,
    pub warned: usize,
    pub duration_ms: f64,
    /// The first failed step (`id: message`), or why the run did not start.
    pub first_failure: String,
}

impl SequenceReport {
    /// Its line in a fleet's summary: counts over its runs, the first failure among them.
    pub fn fleet_row(&self) -> FleetRow {
        let first_failure = self
            .runs
            .iter()
            .find_map(|r| {
                let row = r.fleet_row();
                (!row.first_failure.is_empty()).then(|| format!("{}: {}", r.runbook, row.first_failure))
            })
            .or_else(|| self.runs.is_empty().then(|| self.not_run.first().map(|n| n.reason.clone())).flatten())
            .unwrap_or_default();
        FleetRow {
            instance: self.instance.clone(),
            status: self.status,
            failed: self.runs.iter().map(|r| r.summary.failed).sum(),
            warned: self.runs.iter().map(|r| r.summary.warned).sum(),
            duration_ms: self.runs.iter().map(|r| r.duration_ms).sum(),
            first_failure,
        }
    }
}

impl RunReport {
    /// Its line in a fleet's summary.
    pub fn fleet_row(&self) -> FleetRow {
        let first_failure = match &self.reason {
            Some(why) => why.clone(),
            None => self.steps.iter().find(|s| s.status == Status::Failed).map(|s| format!("{}: {}", s.id, s.message)).unwrap_or_default(),
        };
        FleetRow {
            instance: self.instance.clone(),
            status: self.status,
            failed: self.summary.failed,
            warned: self.summary.warned,
            duration_ms: self.duration_ms,
            first_failure,
        }
    }

    pub fn summarize(steps: &[StepReport]) -> Summary {
        let mut s = Summary { total: steps.len(), ..Summary::default() };
        for step in steps {
            match step.status {
                Status::Passed => s.passed += 1,
                Status::Warned => s.warned += 1,
                Status::Failed => s.failed += 1,
                Status::Skipped => s.skipped += 1,
                Status::Planned => s.planned += 1,
            }
        }
        s
    }
}

/// Something that happened during a run.
#[derive(Debug)]
pub enum Event<'a> {
    RunStarted { runbook: &'a str, instance: &'a str, steps: usize, dry_run: bool },
    StepStarted { id: &'a str, name: &'a str, kind: &'a str },
    StepRetrying { id: &'a str, attempt: u32, of: u32, wait: std::time::Duration, reason: &'a str },
    StepFinished(&'a StepReport),
    RunFinished(&'a RunReport),
}

/// Consumes events. Renderers write at `RunFinished`; the progress line and logs react to
/// the others.
pub trait Sink: Send + Sync {
    fn event(&self, event: &Event<'_>);
}

/// Fans events out to several sinks.
pub struct Sinks(pub Vec<Box<dyn Sink>>);

impl Sink for Sinks {
    fn event(&self, event: &Event<'_>) {
        for s in &self.0 {
            s.event(event);
        }
    }
}

/// Logs events through `tracing` (`-v` shows them).
pub struct LogSink;

impl Sink for LogSink {
    fn event(&self, event: &Event<'_>) {
        match event {
            Event::RunStarted { runbook, instance, steps, dry_run } => {
                tracing::info!(runbook, instance, steps, dry_run, "run started")
            }
            Event::StepStarted { id, kind, .. } => tracing::info!(step = id, kind, "step started"),
            Event::StepRetrying { id, attempt, of, wait, reason } => {
                tracing::warn!(step = id, "try {attempt}/{of} failed ({reason}); retrying in {}", crate::duration::short(*wait))
            }
            Event::StepFinished(r) => {
                tracing::info!(step = r.id, status = r.status.as_str(), duration_ms = r.duration_ms, "{}", r.message)
            }
            Event::RunFinished(r) => tracing::info!(status = r.status.as_str(), duration_ms = r.duration_ms, "run finished"),
        }
    }
}

/// Where a renderer writes: standard output or a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    Stdout,
    File(std::path::PathBuf),
}

impl Destination {
    /// Writes `text`, scrubbed of secrets. Files are written whole (temp file + rename), so a
    /// CI system never reads half a report.
    pub fn write(&self, text: &str) -> Result<(), crate::error::Error> {
        let text = crate::secret::scrub(text);
        match self {
            Destination::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(text.as_bytes()).and_then(|_| out.flush()).or_else(|e| {
                    // A closed pipe (`opsctl … | head`) is not an error worth reporting.
                    if e.kind() == std::io::ErrorKind::BrokenPipe { Ok(()) } else { Err(e) }
                })
                .map_err(|e| crate::error::Error::io("cannot write to standard output", &e))
            }
            Destination::File(path) => {
                let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
                std::fs::write(&tmp, text.as_bytes())
                    .and_then(|_| std::fs::rename(&tmp, path))
                    .map_err(|e| {
                        let _ = std::fs::remove_file(&tmp);
                        crate::error::Error::io(format!("cannot write report {}", path.display()), &e)
                    })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_statuses_map_to_the_documented_exit_codes() {
        assert_eq!(RunStatus::Passed.exit().code(), 0);
        assert_eq!(RunStatus::Failed.exit().code(), 1);
        assert_eq!(RunStatus::Refused.exit().code(), 2);
        assert_eq!(RunStatus::Interrupted.exit().code(), 130);
    }
}
