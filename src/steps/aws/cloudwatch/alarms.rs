//! `cloudwatch.alarms`: alarms in ALARM (metric and composite), by name prefix.

use aws_sdk_cloudwatch::types::StateValue;
use schemars::JsonSchema;
use serde::Deserialize;

use super::{client};
use crate::kind::{StepContext, StepKind};
use crate::steps::aws::sdk_error;
use crate::vocab::{Effect, Outcome, Output, StepError, Verdict};

/// Fail when alarms are in ALARM.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Alarms {
    /// Only alarms whose names start with this (e.g. `team-a-`). Default: the instance's
    /// `aws.alarm_prefix`, else every alarm of the account and region.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Warn on alarms in INSUFFICIENT_DATA.
    #[serde(default)]
    pub warn_insufficient_data: bool,
}

impl StepKind for Alarms {
    const NAME: &'static str = "cloudwatch.alarms";
    const PERMISSIONS: &'static [crate::vocab::Permission] = {
        use crate::vocab::*;
        &[aws(&["cloudwatch:DescribeAlarms"], AwsOn::Any)]
    };
    const SUMMARY: &'static str = "CloudWatch alarms in ALARM (matching a prefix) fail the step";
    const EFFECT: Effect = Effect::Read;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "firing", ty: "list", help: "names of the alarms in ALARM" },
        Output { name: "insufficient_data", ty: "list", help: "names of the alarms in INSUFFICIENT_DATA" },
        Output { name: "total", ty: "int", help: "alarms matched" },
    ];

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let (client, config, retries) = client(ctx).await?;
        let prefix = self.prefix.clone().or_else(|| ctx.instance.aws.as_ref().and_then(|a| a.alarm_prefix.clone()));
        let mut pages = client.describe_alarms().set_alarm_name_prefix(prefix.clone()).into_paginator().send();
        let (mut firing, mut insufficient, mut total) = (Vec::new(), Vec::new(), 0usize);
        let mut reasons = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| sdk_error(e, "listing CloudWatch alarms", &config))?;
            // Metric and composite alarms alike: name, state, reason.
            let alarms = page
                .metric_alarms()
                .iter()
                .map(|a| (a.alarm_name(), a.state_value(), a.state_reason()))
                .chain(page.composite_alarms().iter().map(|a| (a.alarm_name(), a.state_value(), a.state_reason())));
            for (name, state, reason) in alarms {
                total += 1;
                let name = name.unwrap_or("?").to_string();
                match state {
                    Some(StateValue::Alarm) => {
                        reasons.push(format!("{name} ({})", reason.unwrap_or("no reason given")));
                        firing.push(name);
                    }
                    Some(StateValue::InsufficientData) => insufficient.push(name),
                    _ => {}
                }
            }
        }
        let scope = prefix.as_ref().map_or("alarms".to_string(), |p| format!("alarms {p}*"));
        let (verdict, message) = if !firing.is_empty() {
            (Verdict::Failed, format!("{} of {total} {scope} in ALARM: {}", firing.len(), reasons.join("; ")))
        } else if self.warn_insufficient_data && !insufficient.is_empty() {
            (Verdict::Warned, format!("{} of {total} {scope} have insufficient data: {}", insufficient.len(), insufficient.join(", ")))
        } else if total == 0 {
            (Verdict::Passed, format!("no {scope} exist"))
        } else {
            (Verdict::Passed, format!("none of {total} {scope} in ALARM"))
        };
        Ok(Outcome::new(verdict, message + &retries.note())
            .value(format!("{} in ALARM", firing.len()))
            .output("firing", firing)
            .output("insufficient_data", insufficient)
            .output("total", total))
    }
}
