//! `prometheus.targets`: are Prometheus's scrape targets up — the `up` an operator checks
//! first when a dashboard goes blank. Down ones are named with the scrape's last error.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::api;
use crate::helpers::http::Call;
use crate::helpers::threshold::Limits;
use crate::kind::{StepContext, StepKind};
use crate::vocab::{Effect, Judgement, Outcome, Output, StepError};

/// Check that the active scrape targets (all, or one job's) are up.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Targets {
    /// Only this job's targets (`scrape_configs[].job_name`).
    #[serde(default)]
    pub job: Option<String>,
    /// Warn when more targets than this are down.
    #[serde(default)]
    pub warn_down: Option<u64>,
    /// Fail when more targets than this are down. Default 0: any down target fails.
    #[serde(default)]
    pub fail_down: Option<u64>,
    /// What no active target (for the job) means: `fail` (default), `warn` or `pass`.
    #[serde(default)]
    pub on_empty: Judgement,
}

impl StepKind for Targets {
    const NAME: &'static str = "prometheus.targets";
    const SUMMARY: &'static str = "active scrape targets (all or a job's) are up; down ones named with their last error";
    const EFFECT: Effect = Effect::Read;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "up", ty: "int", help: "targets up" },
        Output { name: "down", ty: "int", help: "targets down (or not scraped yet)" },
        Output { name: "down_targets", ty: "list", help: "each target not up: job, instance, health, last error" },
    ];

    fn check(&self) -> Result<(), String> {
        self.limits().check_order("warn_down", "fail_down")
    }

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let data = api(ctx, Call::get("/api/v1/targets").query("state", "active")).await?;
        let targets: Vec<&Value> = data["activeTargets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| self.job.as_deref().is_none_or(|j| t["labels"]["job"] == j || t["scrapePool"] == j))
            .collect();
        let scope = self.job.as_ref().map(|j| format!(" of job {j}")).unwrap_or_default();
        if targets.is_empty() {
            return Ok(Outcome::new(self.on_empty.verdict(), format!("no active targets{scope}"))
                .value("0 targets")
                .output("up", 0)
                .output("down", 0)
                .output("down_targets", Vec::<Value>::new()));
        }
        let down: Vec<&&Value> = targets.iter().filter(|t| t["health"] != "up").collect();
        let described: Vec<String> = down
            .iter()
            .map(|t| {
                let error = t["lastError"].as_str().filter(|e| !e.is_empty());
                let why = match (t["health"].as_str(), error) {
                    (_, Some(e)) => e.to_string(),
                    (Some("unknown"), None) => "not scraped yet".to_string(),
                    (h, None) => h.unwrap_or("down").to_string(),
                };
                format!("{}/{} ({why})", t["labels"]["job"].as_str().unwrap_or("?"), t["labels"]["instance"].as_str().unwrap_or("?"))
            })
            .collect();
        let limits = self.limits();
        let verdict = limits.verdict(down.len() as f64);
        let up = targets.len() - down.len();
        let mut message = format!("{up}/{} targets{scope} up", targets.len());
        if !described.is_empty() {
            message.push_str(&format!("; down: {}", described.join(", ")));
        }
        let list: Vec<Value> = down
            .iter()
            .map(|t| json!({ "job": t["labels"]["job"], "instance": t["labels"]["instance"], "health": t["health"], "last_error": t["lastError"] }))
            .collect();
        Ok(Outcome::new(verdict, message)
            .value(format!("{} down", down.len()))
            .threshold(limits.describe(|v| format!("{v:.0} down")))
            .output("up", up)
            .output("down", down.len())
            .output("down_targets", list))
    }
}

impl Targets {
    fn limits(&self) -> Limits {
        let fail = if self.warn_down.is_none() && self.fail_down.is_none() { Some(0) } else { self.fail_down };
        Limits::above_counts(self.warn_down, fail)
    }
}
