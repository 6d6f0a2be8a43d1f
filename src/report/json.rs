//! `--output json`: the run as one JSON document (schema `opsctl.run/v1`).

use super::RunReport;

/// Longest string kept per output value.
const OUTPUT_TEXT_LIMIT: usize = 4096;

pub fn render(report: &RunReport) -> String {
    let mut report = report.clone();
    for step in &mut report.steps {
        for v in step.outputs.values_mut() {
            cap(v);
        }
    }
    let mut s = serde_json::to_string_pretty(&report).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    s.push('\n');
    s
}

fn cap(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::String(s) if s.len() > OUTPUT_TEXT_LIMIT => {
            let mut end = OUTPUT_TEXT_LIMIT;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s.truncate(end);
            s.push('…');
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(cap),
        serde_json::Value::Object(o) => o.values_mut().for_each(cap),
        _ => {}
    }
}
