//! `prometheus.rules`: are the recording and alerting rules evaluated without errors — a rule
//! that fails to evaluate is an alert that can never fire — and which alerts fire now, by
//! severity.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::api;
use crate::helpers::http::Call;
use crate::helpers::threshold::Limits;
use crate::kind::{StepContext, StepKind};
use crate::vocab::{Effect, Judgement, Outcome, Output, StepError, Verdict};

/// Check that rules evaluate without errors; report (and optionally judge) firing alerts.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    /// Only this rule group.
    #[serde(default)]
    pub group: Option<String>,
    /// Warn when more alerts than this fire.
    #[serde(default)]
    pub warn_firing: Option<u64>,
    /// Fail when more alerts than this fire.
    #[serde(default)]
    pub fail_firing: Option<u64>,
    /// What no rule (in the group) means: `fail` (default), `warn` or `pass`.
    #[serde(default)]
    pub on_empty: Judgement,
}

impl StepKind for Rules {
    const NAME: &'static str = "prometheus.rules";
    const SUMMARY: &'static str = "rule groups evaluated without errors; firing alerts counted by severity (judged with warn/fail_firing)";
    const EFFECT: Effect = Effect::Read;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "rules", ty: "int", help: "rules evaluated" },
        Output { name: "unhealthy", ty: "list", help: "each rule that failed to evaluate: group, name, error" },
        Output { name: "firing", ty: "map", help: "firing alerts by severity label" },
    ];

    fn check(&self) -> Result<(), String> {
        self.limits().check_order("warn_firing", "fail_firing")
    }

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let data = api(ctx, Call::get("/api/v1/rules")).await?;
        let groups: Vec<&Value> = data["groups"].as_array().into_iter().flatten().filter(|g| self.group.as_deref().is_none_or(|n| g["name"] == n)).collect();
        let rules: Vec<(&Value, &Value)> = groups.iter().flat_map(|g| g["rules"].as_array().into_iter().flatten().map(move |r| (*g, r))).collect();
        let scope = self.group.as_ref().map(|g| format!(" in group {g}")).unwrap_or_default();
        if rules.is_empty() {
            return Ok(Outcome::new(self.on_empty.verdict(), format!("no rules loaded{scope}"))
                .value("0 rules")
                .output("rules", 0)
                .output("unhealthy", Vec::<Value>::new())
                .output("firing", json!({})));
        }
        let unhealthy: Vec<Value> = rules
            .iter()
            .filter(|(_, r)| r["health"] == "err")
            .map(|(g, r)| json!({ "group": g["name"], "name": r["name"], "error": r["lastError"] }))
            .collect();
        let mut firing: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (_, r) in rules.iter().filter(|(_, r)| r["type"] == "alerting") {
            for a in r["alerts"].as_array().into_iter().flatten().filter(|a| a["state"] == "firing") {
                let severity = a["labels"]["severity"].as_str().unwrap_or("none").to_string();
                firing.entry(severity).or_default().push(r["name"].as_str().unwrap_or("?").to_string());
            }
        }
        let count: usize = firing.values().map(Vec::len).sum();
        let limits = self.limits();
        let mut verdict = limits.verdict(count as f64);
        let mut message = format!("{} rule(s){scope} in {} group(s)", rules.len(), groups.len());
        if unhealthy.is_empty() {
            message.push_str(", all evaluated without errors");
        } else {
            verdict = Verdict::Failed;
            let named: Vec<String> = unhealthy.iter().map(|u| format!("{}/{}: {}", u["group"].as_str().unwrap_or("?"), u["name"].as_str().unwrap_or("?"), u["error"].as_str().unwrap_or("?"))).collect();
            message.push_str(&format!(", {} failing to evaluate: {}", unhealthy.len(), named.join("; ")));
        }
        if count > 0 {
            let by: Vec<String> = firing.iter().map(|(s, names)| format!("{} {s} ({})", names.len(), names.join(", "))).collect();
            message.push_str(&format!("; firing: {}", by.join(", ")));
        }
        Ok(Outcome::new(verdict, message)
            .value(format!("{} failing, {count} firing", unhealthy.len()))
            .threshold(limits.describe(|v| format!("{v:.0} firing")))
            .output("rules", rules.len())
            .output("unhealthy", unhealthy)
            .output("firing", json!(firing.iter().map(|(s, n)| (s.clone(), n.len())).collect::<BTreeMap<_, _>>())))
    }
}

impl Rules {
    fn limits(&self) -> Limits {
        Limits::above_counts(self.warn_firing, self.fail_firing)
    }
}
