//! `alertmanager.alerts`: the alerts firing now — what `curl …/api/v2/alerts | jq` tells an
//! operator in an incident — silenced and inhibited ones left out unless asked for.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Matcher, active_alerts, alert_line, describe};
use crate::helpers::threshold::Limits;
use crate::kind::{StepContext, StepKind};
use crate::vocab::{Effect, Outcome, Output, StepError};

/// Check the active alerts (optionally those matching `matchers`) against a count.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Alerts {
    /// Only alerts matching all of these: `severity=~"critical|page"`, `namespace="team-a"`.
    #[serde(default)]
    pub matchers: Vec<Matcher>,
    /// Count silenced alerts too. Default false.
    #[serde(default)]
    pub include_silenced: bool,
    /// Count inhibited alerts too. Default false.
    #[serde(default)]
    pub include_inhibited: bool,
    /// Warn when more alerts than this fire.
    #[serde(default)]
    pub warn_above: Option<u64>,
    /// Fail when more alerts than this fire. Default 0: any firing alert fails.
    #[serde(default)]
    pub fail_above: Option<u64>,
}

impl Alerts {
    fn limits(&self) -> Limits {
        let fail = if self.warn_above.is_none() && self.fail_above.is_none() { Some(0) } else { self.fail_above };
        Limits::above_counts(self.warn_above, fail)
    }
}

impl StepKind for Alerts {
    const NAME: &'static str = "alertmanager.alerts";
    const SUMMARY: &'static str = "active alerts (matchers optional; silenced and inhibited left out) against warn/fail_above, each named with its labels, since when and summary";
    const EFFECT: Effect = Effect::Read;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "count", ty: "int", help: "alerts firing" },
        Output { name: "alerts", ty: "list", help: "each: alertname, labels, starts_at, summary" },
        Output { name: "timeline", ty: "list", help: "{time, what, component, message} entries for a `timeline` step" },
    ];

    fn check(&self) -> Result<(), String> {
        self.limits().check_order("warn_above", "fail_above")
    }

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        // The instance's own alerts only: its `alertmanager.matchers` as well as the step's.
        let mut matchers = self.matchers.clone();
        for m in ctx.instance.alertmanager.as_ref().map(|a| a.matchers.as_slice()).unwrap_or_default() {
            matchers.push(super::Matcher::parse(m).map_err(|e| StepError::invalid(format!("alertmanager.matchers: {e}")))?);
        }
        let alerts = active_alerts(ctx, &matchers, self.include_silenced, self.include_inhibited).await?;
        let limits = self.limits();
        let scope = if matchers.is_empty() { String::new() } else { format!(" matching {}", describe(&matchers)) };
        let message = if alerts.is_empty() {
            format!("no active alerts{scope}")
        } else {
            let lines: Vec<String> = alerts.iter().take(5).map(alert_line).collect();
            let more = if alerts.len() > 5 { format!("; and {} more", alerts.len() - 5) } else { String::new() };
            format!("{} alert(s) firing{scope}: {}{more}", alerts.len(), lines.join("; "))
        };
        let list: Vec<Value> = alerts
            .iter()
            .map(|a| json!({ "alertname": a["labels"]["alertname"], "labels": a["labels"], "starts_at": a["startsAt"], "summary": a["annotations"]["summary"] }))
            .collect();
        let timeline: Vec<Value> = alerts
            .iter()
            .map(|a| {
                let name = a["labels"]["alertname"].as_str().unwrap_or_default();
                let summary = a["annotations"]["summary"].as_str().unwrap_or_default();
                json!({ "time": a["startsAt"], "what": "alert", "component": name, "message": format!("firing{}", if summary.is_empty() { String::new() } else { format!(": {summary}") }) })
            })
            .collect();
        Ok(Outcome::new(limits.verdict(alerts.len() as f64), message)
            .value(format!("{} firing", alerts.len()))
            .threshold(limits.describe(|v| format!("{v:.0}")))
            .output("count", alerts.len())
            .output("alerts", list)
            .output("timeline", timeline))
    }
}
