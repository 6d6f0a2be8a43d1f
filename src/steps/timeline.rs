//! `timeline`: what happened, newest first — the `timeline` entries of the steps before it
//! (rollouts, warning events, alerts, first errors per component, stopped tasks) merged, the
//! page an on-call reads first.

use schemars::JsonSchema;
use serde::Deserialize;

use crate::duration::Duration;
use crate::kind::{StepContext, StepKind};
use crate::vocab::{Effect, Outcome, Output, StepError};

/// Merge the earlier steps' `timeline` outputs, newest first.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Timeline {
    /// Only entries younger than this. Default: all of them.
    #[serde(default)]
    pub since: Option<Duration>,
    /// Entries written into the message. Default 15 (the output has all).
    #[serde(default = "fifteen")]
    pub show: usize,
}

fn fifteen() -> usize {
    15
}

/// An entry's time, if it has one that parses.
fn time_of(e: &serde_json::Value) -> Option<jiff::Timestamp> {
    e["time"].as_str().and_then(|t| t.parse().ok())
}

/// `08:57:12 rollout deployment/api: revision 3 …`
fn line(e: &serde_json::Value) -> String {
    let when = time_of(e).map_or("--:--:--".to_string(), |t| t.strftime("%H:%M:%S").to_string());
    format!("{when} {} {}: {}", e["what"].as_str().unwrap_or("?"), e["component"].as_str().unwrap_or("?"), e["message"].as_str().unwrap_or_default())
}

/// Newest first (entries of one time keep the order their step gave them); entries without
/// a time last; equal ones once.
pub fn merge(mut entries: Vec<serde_json::Value>, since: Option<jiff::Timestamp>) -> Vec<serde_json::Value> {
    entries.retain(|e| since.is_none_or(|s| time_of(e).is_none_or(|t| t >= s)));
    entries.sort_by_key(|e| std::cmp::Reverse(time_of(e)));
    let mut seen = std::collections::HashSet::new();
    entries.retain(|e| seen.insert(e.to_string()));
    entries
}

impl StepKind for Timeline {
    const NAME: &'static str = "timeline";
    const SUMMARY: &'static str = "the earlier steps' timeline entries (rollouts, events, alerts, first errors, stopped tasks) merged, newest first";
    const EFFECT: Effect = Effect::Read;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "entries", ty: "list", help: "{time, what, component, message}, newest first" },
        Output { name: "count", ty: "int", help: "entries" },
    ];

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let since = self.since.map(|d| jiff::Timestamp::now() - jiff::SignedDuration::from_secs(d.std().as_secs() as i64));
        let entries = merge(ctx.run.steps.collect("timeline"), since);
        let message = if entries.is_empty() {
            "nothing happened: no rollout, warning event, alert, error or stopped task in the window".to_string()
        } else {
            let shown: Vec<String> = entries.iter().take(self.show).map(line).collect();
            let more = if entries.len() > self.show { format!("; and {} earlier", entries.len() - self.show) } else { String::new() };
            format!("{} entries, newest first (UTC): {}{more}", entries.len(), shown.join("; "))
        };
        Ok(Outcome::passed(message).value(entries.len().to_string()).output("count", entries.len()).output("entries", entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn entries_merge_newest_first_once() {
        let a = json!({"time": "2026-11-30T08:50:00Z", "what": "rollout", "component": "deployment/api", "message": "revision 3"});
        let b = json!({"time": "2026-11-30T08:55:00Z", "what": "event", "component": "pod/api-1", "message": "BackOff"});
        let c = json!({"time": "2026-11-30T07:00:00Z", "what": "alert", "component": "ApiDown", "message": "firing"});
        let merged = merge(vec![a.clone(), b.clone(), a.clone(), c.clone()], Some("2026-11-30T08:00:00Z".parse().unwrap()));
        assert_eq!(merged, [b.clone(), a.clone()]);
        assert_eq!(line(&b), "08:55:00 event pod/api-1: BackOff");
    }
}
