//! `--output junit[=FILE]`: JUnit XML, one testcase per step, for CI systems.
//!
//! Failed steps carry `<failure message=…>`; skipped and planned steps `<skipped>`;
//! warnings pass and say so in `<system-out>`.

use std::fmt::Write as _;

use super::{RunReport, Status};

/// One `<testsuites>` document with a `<testsuite>` per run (`check --all` has several).
pub fn render_many(reports: &[RunReport]) -> String {
    let (mut total, mut failed, mut errors, mut skipped) = (0, 0, 0, 0);
    for r in reports {
        let c = counts(r);
        (total, failed, errors, skipped) = (total + c.0, failed + c.1, errors + c.2, skipped + c.3);
    }
    let time: f64 = reports.iter().map(|r| r.duration_ms).sum::<f64>() / 1000.0;
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"opsctl\" tests=\"{total}\" failures=\"{failed}\" errors=\"{errors}\" skipped=\"{skipped}\" time=\"{time:.3}\">"
    );
    for report in reports {
        suite(&mut out, report);
    }
    out.push_str("</testsuites>\n");
    out
}

pub fn render(report: &RunReport) -> String {
    render_many(std::slice::from_ref(report))
}

/// Tests, failures, errors and skipped of a run. A run that did not start is one test case
/// of its own: an error (not started, locked) or skipped (not applicable), so a CI report
/// shows it.
fn counts(report: &RunReport) -> (usize, usize, usize, usize) {
    let s = &report.summary;
    match (&report.reason, report.status) {
        (Some(_), super::RunStatus::NotApplicable) => (1, 0, 0, 1),
        (Some(_), _) => (1, 0, 1, 0),
        (None, _) => (s.total, s.failed, 0, s.skipped + s.planned),
    }
}

fn suite(out: &mut String, report: &RunReport) {
    let time = report.duration_ms / 1000.0;
    let suite = format!("{}@{}", report.runbook, report.instance);
    let class = format!("opsctl.{}.{}", report.runbook, report.instance);
    let (tests, failures, errors, skipped) = counts(report);
    let _ = writeln!(
        out,
        "  <testsuite name=\"{}\" tests=\"{tests}\" failures=\"{}\" errors=\"{errors}\" skipped=\"{skipped}\" time=\"{time:.3}\" timestamp=\"{}\" hostname=\"{}\">",
        esc(&suite),
        failures,
        report.started_at.strftime("%Y-%m-%dT%H:%M:%S"),
        esc(&report.host)
    );
    out.push_str("    <properties>\n");
    for (k, v) in [
        ("run_id", report.run_id.clone()),
        ("status", report.status.as_str().to_string()),
        ("dry_run", report.dry_run.to_string()),
        ("user", report.user.clone()),
        ("runbook_source", report.runbook_source.clone()),
    ] {
        let _ = writeln!(out, "      <property name=\"{k}\" value=\"{}\"/>", esc(&v));
    }
    out.push_str("    </properties>\n");
    if let Some(reason) = &report.reason {
        let tag = if report.status == super::RunStatus::NotApplicable { "skipped" } else { "error" };
        let _ = writeln!(
            out,
            "    <testcase name=\"{}\" classname=\"{}\" time=\"0.000\">\n      <{tag} message=\"{}\" type=\"{}\"/>\n    </testcase>",
            esc(&format!("{} ({})", report.runbook, report.status.as_str())),
            esc(&class),
            esc(reason),
            report.status.as_str().replace(' ', "_"),
        );
    }
    for step in &report.steps {
        let name = if step.name == step.id { format!("{} ({})", step.id, step.kind) } else { format!("{} [{}] ({})", step.name, step.id, step.kind) };
        let _ = write!(
            out,
            "    <testcase name=\"{}\" classname=\"{}\" time=\"{:.3}\"",
            esc(&name),
            esc(&class),
            step.duration_ms / 1000.0
        );
        let mut detail = String::new();
        if let Some(v) = &step.value {
            let _ = writeln!(detail, "value: {v}");
        }
        if let Some(t) = &step.threshold {
            let _ = writeln!(detail, "threshold: {t}");
        }
        match step.status {
            Status::Passed if detail.is_empty() => out.push_str("/>\n"),
            Status::Passed => {
                let _ = write!(out, ">\n      <system-out>{}</system-out>\n    </testcase>\n", esc(&detail));
            }
            Status::Warned => {
                let _ = write!(out, ">\n      <system-out>WARNING: {}\n{}</system-out>\n    </testcase>\n", esc(&step.message), esc(&detail));
            }
            Status::Failed => {
                let kind = step.error_class.map(|c| c.to_string()).unwrap_or_else(|| "failed".into());
                let _ = write!(
                    out,
                    ">\n      <failure message=\"{}\" type=\"{}\">{}{}</failure>\n    </testcase>\n",
                    esc(&step.message),
                    esc(&kind),
                    esc(&step.message),
                    if detail.is_empty() { String::new() } else { format!("\n{}", esc(&detail)) }
                );
            }
            Status::Skipped | Status::Planned => {
                let msg = if step.status == Status::Planned { format!("planned: {}", step.message) } else { step.message.clone() };
                let _ = write!(out, ">\n      <skipped message=\"{}\"/>\n    </testcase>\n", esc(&msg));
            }
        }
    }
    out.push_str("  </testsuite>\n");
}

/// XML-escapes text and drops characters XML 1.0 cannot carry.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::esc;

    #[test]
    fn escapes_markup_and_drops_control_characters() {
        assert_eq!(esc("a<b>&\"c\"\u{1}"), "a&lt;b&gt;&amp;&quot;c&quot;");
    }
}
