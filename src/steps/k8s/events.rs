//! `k8s.events`: Warning events in a window, newest first and repeats counted, as `kubectl
//! get events --sort-by` shows them, with thresholds.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Event;
use kube::api::ListParams;
use schemars::JsonSchema;
use serde::Deserialize;

use super::client;
use super::health::for_each_page;
use crate::duration::Duration;
use crate::helpers::threshold::Limits;
use crate::kind::{StepContext, StepKind};
use crate::vocab::{Effect, Outcome, Output, StepError};

fn zero() -> Option<u64> {
    Some(0)
}

/// Warning events of the namespace within a window, newest first.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Events {
    /// How far back. Default 1h.
    #[serde(default = "crate::helpers::logscan::hour")]
    pub window: Duration,
    /// Only these reasons (`BackOff`, `FailedScheduling`, `OOMKilling`, …).
    #[serde(default)]
    pub reasons: Vec<String>,
    /// Only events about this object name (a pod, a deployment).
    #[serde(default)]
    pub object: Option<String>,
    /// Warn when more events (counting repeats). Default 0: any warns.
    #[serde(default = "zero")]
    pub warn_above: Option<u64>,
    /// Fail when more events.
    #[serde(default)]
    pub fail_above: Option<u64>,
}

fn event_time(e: &Event) -> Option<jiff::Timestamp> {
    e.last_timestamp
        .as_ref()
        .map(|t| t.0)
        .or_else(|| e.event_time.as_ref().map(|t| t.0))
        .or_else(|| e.first_timestamp.as_ref().map(|t| t.0))
        .or_else(|| e.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

impl StepKind for Events {
    const NAME: &'static str = "k8s.events";
    const PERMISSIONS: &'static [crate::vocab::Permission] = {
        use crate::vocab::*;
        &[kube("", "events", &["list"])]
    };
    const SUMMARY: &'static str = "Warning events of the namespace in a window (reason and object filters), newest first; warn/fail above a count";
    const EFFECT: Effect = Effect::Read;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "count", ty: "int", help: "warning events in the window, repeats counted" },
        Output { name: "events", ty: "list", help: "`{time, reason, object, message, count}`, newest first (at most 20)" },
        Output { name: "by_reason", ty: "map", help: "reason → count" },
        Output { name: "timeline", ty: "list", help: "{time, what, component, message} entries for a `timeline` step" },
    ];

    fn check(&self) -> Result<(), String> {
        Limits::above_counts(self.warn_above, self.fail_above).check_order("warn_above", "fail_above")
    }

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let kube = client(ctx).await?;
        let mut fields = vec!["type=Warning".to_string()];
        if let Some(o) = &self.object {
            fields.push(format!("involvedObject.name={o}"));
        }
        let since = jiff::Timestamp::now() - jiff::SignedDuration::try_from(self.window.std()).unwrap_or_default();
        let mut kept: Vec<(jiff::Timestamp, Event)> = Vec::new();
        for_each_page(&kube.api::<Event>(), ListParams::default().fields(&fields.join(",")), &kube, "events", |events| {
            for e in events {
                let Some(t) = event_time(&e) else { continue };
                if t < since || (!self.reasons.is_empty() && !self.reasons.iter().any(|r| Some(r) == e.reason.as_ref())) {
                    continue;
                }
                kept.push((t, e));
            }
        })
        .await?;
        kept.sort_by_key(|k| std::cmp::Reverse(k.0));
        let count: u64 = kept.iter().map(|(_, e)| e.count.unwrap_or(1).max(1) as u64).sum();
        let mut by_reason: BTreeMap<String, u64> = BTreeMap::new();
        for (_, e) in &kept {
            *by_reason.entry(e.reason.clone().unwrap_or_default()).or_default() += e.count.unwrap_or(1).max(1) as u64;
        }
        let list: Vec<serde_json::Value> = kept
            .iter()
            .take(20)
            .map(|(t, e)| {
                serde_json::json!({
                    "time": t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
                    "reason": e.reason,
                    "object": format!("{}/{}", e.involved_object.kind.clone().unwrap_or_default().to_lowercase(), e.involved_object.name.clone().unwrap_or_default()),
                    "message": e.message.as_deref().map(|m| crate::helpers::text::truncate(m, 300)),
                    "count": e.count.unwrap_or(1),
                })
            })
            .collect();
        let timeline: Vec<serde_json::Value> = list
            .iter()
            .map(|e| {
                serde_json::json!({
                    "time": e["time"], "what": "event", "component": e["object"],
                    "message": format!("{}: {}", e["reason"].as_str().unwrap_or_default(), e["message"].as_str().unwrap_or_default()),
                })
            })
            .collect();
        let limits = Limits::above_counts(self.warn_above, self.fail_above);
        let mut message = format!("{count} warning events in the last {}", self.window);
        if !by_reason.is_empty() {
            message.push_str(&format!(" ({})", by_reason.iter().map(|(r, n)| format!("{r}: {n}")).collect::<Vec<_>>().join(", ")));
        }
        if let Some(first) = list.first() {
            message.push_str(&format!("; latest: {} {} {}", first["object"].as_str().unwrap_or_default(), first["reason"].as_str().unwrap_or_default(), first["message"].as_str().unwrap_or_default()));
        }
        Ok(Outcome::new(limits.verdict(count as f64), message)
            .value(count.to_string())
            .threshold(limits.describe(|v| format!("{v:.0}")))
            .output("count", count)
            .output("events", list)
            .output("by_reason", serde_json::to_value(by_reason).unwrap_or_default())
            .output("timeline", timeline))
    }
}
