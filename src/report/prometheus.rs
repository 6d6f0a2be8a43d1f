//! `--output prometheus[=FILE]`: the Prometheus text format, for node_exporter's textfile
//! collector (write to `<dir>/opsctl.prom`; the file is replaced whole, atomically) and
//! `opsctl serve`'s `/metrics`.
//!
//! Gauges, one series per run and per step. The instance is the label `opsctl_instance`
//! (a scrape sets `instance` to the exporter's address):
//!
//! | metric | labels | value |
//! |---|---|---|
//! | `opsctl_run_success` | runbook, opsctl_instance | 1 passed, 0 otherwise |
//! | `opsctl_run_status` | runbook, opsctl_instance, status | 1 for the run's status (every status listed, 0 for the others) |
//! | `opsctl_run_exit_code` | runbook, opsctl_instance | the run's exit code |
//! | `opsctl_run_duration_seconds` | runbook, opsctl_instance | |
//! | `opsctl_run_timestamp_seconds` | runbook, opsctl_instance | when the run finished (Unix time) |
//! | `opsctl_run_steps` | runbook, opsctl_instance, status | steps per status |
//! | `opsctl_step_status` | runbook, opsctl_instance, step, kind | 0 passed, 1 warned, 2 failed, 3 skipped, 4 planned |
//! | `opsctl_step_duration_seconds` | runbook, opsctl_instance, step, kind | |
//! | `opsctl_step_value` | runbook, opsctl_instance, step, kind, unit | the measured value, when it is a number (`72.4%` → 72.4, unit `%`) |

use std::fmt::Write as _;

use super::{RunReport, RunStatus, Status};

const RUN_STATUSES: &[RunStatus] =
    &[RunStatus::Passed, RunStatus::Failed, RunStatus::Interrupted, RunStatus::Refused, RunStatus::NotStarted, RunStatus::Locked, RunStatus::NotApplicable];
const STEP_STATUSES: &[Status] = &[Status::Passed, Status::Warned, Status::Failed, Status::Skipped, Status::Planned];

/// The reports as one exposition. A run (runbook, instance) seen twice keeps its latest.
pub fn render(reports: &[RunReport]) -> String {
    let mut latest: Vec<&RunReport> = Vec::new();
    for r in reports {
        match latest.iter_mut().find(|x| x.runbook == r.runbook && x.instance == r.instance) {
            Some(slot) if slot.finished_at <= r.finished_at => *slot = r,
            Some(_) => {}
            None => latest.push(r),
        }
    }
    let mut out = String::new();
    let run_labels = |r: &RunReport| format!("runbook=\"{}\",opsctl_instance=\"{}\"", esc(&r.runbook), esc(&r.instance));
    family(&mut out, "opsctl_run_success", "1 when the run passed (warnings allowed), else 0", &latest, |out, r| {
        sample(out, "opsctl_run_success", &run_labels(r), f64::from(u8::from(r.status == RunStatus::Passed)));
    });
    family(&mut out, "opsctl_run_status", "1 for the run's status, 0 for the others", &latest, |out, r| {
        for s in RUN_STATUSES {
            let name = s.as_str().replace(' ', "_");
            sample(out, "opsctl_run_status", &format!("{},status=\"{name}\"", run_labels(r)), f64::from(u8::from(r.status == *s)));
        }
    });
    family(&mut out, "opsctl_run_exit_code", "the run's exit code", &latest, |out, r| {
        sample(out, "opsctl_run_exit_code", &run_labels(r), f64::from(r.exit_code));
    });
    family(&mut out, "opsctl_run_duration_seconds", "how long the run took", &latest, |out, r| {
        sample(out, "opsctl_run_duration_seconds", &run_labels(r), r.duration_ms / 1000.0);
    });
    family(&mut out, "opsctl_run_timestamp_seconds", "when the run finished, Unix time", &latest, |out, r| {
        sample(out, "opsctl_run_timestamp_seconds", &run_labels(r), r.finished_at.as_millisecond() as f64 / 1000.0);
    });
    family(&mut out, "opsctl_run_steps", "the run's steps per status", &latest, |out, r| {
        let s = &r.summary;
        for (name, n) in [("passed", s.passed), ("warned", s.warned), ("failed", s.failed), ("skipped", s.skipped), ("planned", s.planned)] {
            sample(out, "opsctl_run_steps", &format!("{},status=\"{name}\"", run_labels(r)), n as f64);
        }
    });
    let step_labels = |r: &RunReport, id: &str, kind: &str| format!("{},step=\"{}\",kind=\"{}\"", run_labels(r), esc(id), esc(kind));
    family(&mut out, "opsctl_step_status", "the step's status: 0 passed, 1 warned, 2 failed, 3 skipped, 4 planned", &latest, |out, r| {
        for st in &r.steps {
            let code = STEP_STATUSES.iter().position(|s| *s == st.status).unwrap_or(0);
            sample(out, "opsctl_step_status", &step_labels(r, &st.id, &st.kind), code as f64);
        }
    });
    family(&mut out, "opsctl_step_duration_seconds", "how long the step took", &latest, |out, r| {
        for st in &r.steps {
            sample(out, "opsctl_step_duration_seconds", &step_labels(r, &st.id, &st.kind), st.duration_ms / 1000.0);
        }
    });
    family(&mut out, "opsctl_step_value", "the step's measured value, when it is a number", &latest, |out, r| {
        for st in &r.steps {
            if let Some((v, unit)) = st.value.as_deref().and_then(number) {
                sample(out, "opsctl_step_value", &format!("{},unit=\"{}\"", step_labels(r, &st.id, &st.kind), esc(unit)), v);
            }
        }
    });
    out
}

fn family(out: &mut String, name: &str, help: &str, reports: &[&RunReport], each: impl Fn(&mut String, &RunReport)) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} gauge");
    for r in reports {
        each(out, r);
    }
}

fn sample(out: &mut String, name: &str, labels: &str, value: f64) {
    let v = if value.is_finite() { format!("{value}") } else if value.is_nan() { "NaN".into() } else if value > 0.0 { "+Inf".into() } else { "-Inf".into() };
    let _ = writeln!(out, "{name}{{{labels}}} {v}");
}

/// A label value, escaped as the text format wants.
fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// `72.4%` → (72.4, "%"), `183ms` → (183, "ms"), `0.50/cpu` → (0.5, "/cpu"), `3` → (3, "").
fn number(value: &str) -> Option<(f64, &str)> {
    let t = value.trim();
    let end = t.char_indices().find(|&(i, c)| !(c.is_ascii_digit() || c == '.' || ((c == '-' || c == '+') && i == 0))).map_or(t.len(), |(i, _)| i);
    let v: f64 = t[..end].parse().ok()?;
    let unit = t[end..].trim();
    // A unit, not a sentence: `3 of 4 ready` is not a number.
    (unit.len() <= 8 && !unit.contains(char::is_whitespace)).then_some((v, unit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_split_into_number_and_unit() {
        assert_eq!(number("72.4%"), Some((72.4, "%")));
        assert_eq!(number("183ms"), Some((183.0, "ms")));
        assert_eq!(number("0.50/cpu"), Some((0.5, "/cpu")));
        assert_eq!(number("-3"), Some((-3.0, "")));
        assert_eq!(number("3 of 4 ready"), None);
        assert_eq!(number("ready"), None);
        assert_eq!(esc("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
