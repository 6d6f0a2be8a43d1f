//! `--output table` (the default): one row per step, then a summary line.

use comfy_table::{Cell, Color, ContentArrangement, Table, presets};

use super::{RunReport, RunStatus, Status};
use crate::diagnostic::Paint;

#[derive(Clone, Copy, Debug)]
pub struct TableOptions {
    pub color: bool,
    /// Only failed and warned rows (and nothing when all passed).
    pub quiet: bool,
    /// Wrap to this width (a terminal); `None` never wraps (logs, CI).
    pub width: Option<u16>,
}

fn status_cell(status: Status, color: bool) -> Cell {
    let (text, c) = match status {
        Status::Passed => ("PASS", Color::Green),
        Status::Warned => ("WARN", Color::Yellow),
        Status::Failed => ("FAIL", Color::Red),
        Status::Skipped => ("SKIP", Color::DarkGrey),
        Status::Planned => ("PLAN", Color::Cyan),
    };
    let cell = Cell::new(text);
    if color { cell.fg(c) } else { cell }
}

/// A borderless table, styled only for a terminal, wrapped only to a terminal's width.
fn new_table(opts: TableOptions) -> Table {
    let mut table = Table::new();
    table.load_style(presets::NOTHING);
    if opts.color {
        table.enforce_styling();
    } else {
        table.force_no_tty();
    }
    match opts.width {
        Some(w) => {
            table.set_content_arrangement(ContentArrangement::Dynamic);
            table.set_width(w);
        }
        None => {
            table.set_content_arrangement(ContentArrangement::Disabled);
        }
    }
    table
}

pub fn render(report: &RunReport, opts: TableOptions) -> String {
    let rows: Vec<_> = report
        .steps
        .iter()
        .filter(|s| !opts.quiet || matches!(s.status, Status::Failed | Status::Warned))
        .collect();
    let mut out = String::new();
    if !rows.is_empty() {
        let mut table = new_table(opts);
        table.set_header(["STATUS", "STEP", "KIND", "VALUE", "THRESHOLD", "TIME", "MESSAGE"]);
        for s in rows {
            let step = if s.name == s.id || s.name.is_empty() { s.id.clone() } else { format!("{} ({})", s.name, s.id) };
            let time = if s.status == Status::Skipped { String::new() } else { crate::duration::short(std::time::Duration::from_secs_f64(s.duration_ms / 1000.0)) };
            table.add_row(vec![
                status_cell(s.status, opts.color),
                Cell::new(step),
                Cell::new(&s.kind),
                Cell::new(s.value.as_deref().unwrap_or("")),
                Cell::new(s.threshold.as_deref().unwrap_or("")),
                Cell::new(time),
                Cell::new(&s.message),
            ]);
        }
        out.push_str(&table.trim_fmt());
        out.push('\n');
    }
    if !opts.quiet && !report.not_configured.is_empty() {
        out.push_str(&format!("not configured on {}: {} (their steps did not run)\n", report.instance, report.not_configured.join(", ")));
    }
    if !(opts.quiet && report.status == RunStatus::Passed) {
        out.push_str(&summary(report, opts.color));
        out.push('\n');
    }
    out
}

/// Several instances' runs as one table — instance, status, failed and warned steps, the
/// first failure's message, duration — and a closing line (`check` on 500 instances is
/// 500 rows, not 500 tables; `-v` prints each run's table too).
pub fn fleet(what: &str, rows: &[super::FleetRow], opts: TableOptions) -> String {
    let mut table = new_table(opts);
    table.set_header(["INSTANCE", "STATUS", "FAILED", "WARNED", "TIME", "FIRST FAILURE"]);
    let mut counts: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for r in rows {
        *counts.entry(if r.status == RunStatus::Passed && r.warned > 0 { "warned" } else { r.status.as_str() }).or_default() += 1;
        if opts.quiet && r.status == RunStatus::Passed && r.warned == 0 {
            continue;
        }
        let status = match r.status {
            RunStatus::Passed if r.warned > 0 => Cell::new("WARN").fg(Color::Yellow),
            RunStatus::Passed => Cell::new("PASS").fg(Color::Green),
            RunStatus::Failed => Cell::new("FAIL").fg(Color::Red),
            RunStatus::Interrupted => Cell::new("INTERRUPTED").fg(Color::Red),
            RunStatus::Refused => Cell::new("REFUSED").fg(Color::Red),
            RunStatus::NotStarted => Cell::new("NOT STARTED").fg(Color::DarkGrey),
            RunStatus::Locked => Cell::new("LOCKED").fg(Color::Yellow),
            RunStatus::NotApplicable => Cell::new("N/A").fg(Color::DarkGrey),
        };
        let status = if opts.color { status } else { Cell::new(status.content()) };
        let time = match r.status {
            RunStatus::NotStarted | RunStatus::Locked | RunStatus::NotApplicable => String::new(),
            _ => crate::duration::short(std::time::Duration::from_secs_f64(r.duration_ms / 1000.0)),
        };
        table.add_row(vec![Cell::new(&r.instance), status, Cell::new(r.failed), Cell::new(r.warned), Cell::new(time), Cell::new(&r.first_failure)]);
    }
    let mut out = String::new();
    if table.row_count() > 0 {
        out.push_str(&table.trim_fmt());
        out.push('\n');
    }
    let parts: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
    out.push_str(&format!("{what} on {} instances: {}\n", rows.len(), parts.join(", ")));
    out
}

/// The closing line of a sequence: `routine daily on app: FAILED — check passed, backup
/// failed; not run: restore-drill (…)`.
pub fn sequence_summary(seq: &super::SequenceReport, color: bool) -> String {
    let paint = Paint { on: color };
    let warned = seq.runs.iter().any(|r| r.summary.warned > 0);
    let word = closing_word(seq.status, warned, paint);
    let runs: Vec<String> = seq.runs.iter().map(|r| format!("{} {}", r.runbook, r.status.as_str())).collect();
    let mut line = format!("{} on {}: {word} — {}", seq.name, seq.instance, if runs.is_empty() { "nothing ran".to_string() } else { runs.join(", ") });
    if !seq.not_run.is_empty() {
        let not: Vec<String> = seq.not_run.iter().map(|n| format!("{} ({})", n.runbook, n.reason)).collect();
        line.push_str(&format!("; not run: {}", not.join("; ")));
    }
    line
}

/// The word a closing line gives a run's (or a sequence's) status.
fn closing_word(status: RunStatus, warned: bool, paint: Paint) -> String {
    match status {
        RunStatus::Passed if warned => paint.yellow("PASSED WITH WARNINGS"),
        RunStatus::Passed => paint.bold("PASSED"),
        RunStatus::Failed => paint.red_bold("FAILED"),
        RunStatus::Interrupted => paint.red_bold("INTERRUPTED"),
        RunStatus::Refused => paint.red_bold("REFUSED"),
        RunStatus::NotStarted => paint.red_bold("NOT STARTED"),
        RunStatus::Locked => paint.red_bold("LOCKED"),
        RunStatus::NotApplicable => paint.bold("NOT APPLICABLE"),
    }
}

/// `check on localhost: PASSED — 3 passed, 1 warned in 120ms (run 20261123T…)`
pub fn summary(report: &RunReport, color: bool) -> String {
    let paint = Paint { on: color };
    let word = closing_word(report.status, report.summary.warned > 0, paint);
    let s = &report.summary;
    let mut parts = vec![format!("{} passed", s.passed)];
    for (n, what) in [(s.warned, "warned"), (s.failed, "failed"), (s.skipped, "skipped"), (s.planned, "planned")] {
        if n > 0 {
            parts.push(format!("{n} {what}"));
        }
    }
    format!(
        "{}{} on {}: {word} — {} in {} (run {})",
        if report.dry_run { "dry run of " } else { "" },
        report.runbook,
        report.instance,
        parts.join(", "),
        crate::duration::short(std::time::Duration::from_secs_f64(report.duration_ms / 1000.0)),
        report.run_id
    )
}
