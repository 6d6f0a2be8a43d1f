//! `cloudwatch.logs`: count log events in CloudWatch Logs groups over a window —
//! `FilterLogEvents` with a stream prefix and a filter pattern (server side) and/or a regex
//! on the message (here) — against thresholds, with samples. Pages are read one at a time
//! and only counted, so memory stays flat; `max_events` bounds what is read.

use std::time::{SystemTime, UNIX_EPOCH};

use schemars::JsonSchema;
use serde::Deserialize;

use super::{group_error, log_groups, logs_client};
use crate::duration::Duration;
use crate::helpers::logscan::{Tally, five, hour};
use crate::helpers::threshold::Limits;
use crate::kind::{StepContext, StepKind};
use crate::pattern::Pattern;
use crate::steps::aws::sdk_error;
use crate::vocab::{Effect, Outcome, Output, StepError, Verdict};

/// Count matching log events in CloudWatch Logs.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Logs {
    /// Log groups. Default: the instance's `cloudwatch_logs.groups`.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Only streams whose name starts with this (`team-a/api`).
    #[serde(default)]
    pub stream_prefix: Option<String>,
    /// A CloudWatch Logs filter pattern, applied by the service (`ERROR`, `?ERROR ?FATAL`,
    /// `{ $.level = "error" }`).
    #[serde(default)]
    pub filter_pattern: Option<String>,
    /// A regex the message must match, applied here (`(?i)timeout`). Without it every event
    /// the filter returns counts.
    #[serde(default)]
    pub pattern: Option<Pattern>,
    /// How far back. Default 1h.
    #[serde(default = "hour")]
    pub since: Duration,
    /// Warn when more events match.
    #[serde(default)]
    pub warn_above: Option<u64>,
    /// Fail when more events match.
    #[serde(default)]
    pub fail_above: Option<u64>,
    /// Stop reading after this many events (a count then is "at least"). Default 100000.
    #[serde(default = "hundred_thousand")]
    pub max_events: u64,
    /// Matching events kept as samples. Default 5.
    #[serde(default = "five")]
    pub samples: usize,
    /// Group the matching events by message (numbers, ids, addresses and times normalised)
    /// and say the most frequent ones in the message. The `groups` output is there anyway.
    #[serde(default)]
    pub group: bool,
}

fn hundred_thousand() -> u64 {
    100_000
}

fn millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl StepKind for Logs {
    const NAME: &'static str = "cloudwatch.logs";
    const PERMISSIONS: &'static [crate::vocab::Permission] = {
        use crate::vocab::*;
        &[aws(&["logs:FilterLogEvents"], AwsOn::LogGroups)]
    };
    const SUMMARY: &'static str = "count CloudWatch Logs events (stream prefix, filter pattern, regex) in a window against thresholds, with samples";
    const EFFECT: Effect = Effect::Read;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "matches", ty: "int", help: "events that matched" },
        Output { name: "lines", ty: "int", help: "events read" },
        Output { name: "samples", ty: "list", help: "the first matching events (`stream: message`)" },
        Output { name: "groups", ty: "list", help: "the ten most frequent matching messages, numbers and ids normalised: {count, message, example}" },
        Output { name: "status_counts", ty: "map", help: "events mentioning HTTP 401, 403 and 429" },
        Output { name: "by_group", ty: "map", help: "matching events per log group" },
        Output { name: "truncated", ty: "bool", help: "whether max_events stopped the reading" },
    ];

    fn check(&self) -> Result<(), String> {
        if self.warn_above.is_none() && self.fail_above.is_none() {
            return Err("give `warn_above` or `fail_above`: a count with no threshold checks nothing".into());
        }
        if self.max_events == 0 {
            return Err("`max_events` must be at least 1".into());
        }
        Ok(())
    }

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let (client, config, retries) = logs_client(ctx).await?;
        let groups = log_groups(ctx, &self.groups)?;
        let now = SystemTime::now();
        let start = millis(now - self.since.std());
        let mut tally = Tally::default();
        let mut truncated = false;
        let mut by_group: std::collections::BTreeMap<String, u64> = groups.iter().map(|g| (g.clone(), 0)).collect();
        // Without `pattern` every event the service returns counts.
        let every = crate::pattern::Pattern::new("").map_err(StepError::error)?;
        'groups: for group in &groups {
            let mut pages = client
                .filter_log_events()
                .log_group_name(group)
                .set_log_stream_name_prefix(self.stream_prefix.clone())
                .set_filter_pattern(self.filter_pattern.clone())
                .start_time(start)
                .end_time(millis(now))
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| group_error(sdk_error(e, &format!("reading log group {group}"), &config), group, &config))?;
                for event in page.events() {
                    // The service applies the prefix; checked again here, so an endpoint
                    // that ignores it (moto does) cannot widen the count.
                    if let Some(prefix) = &self.stream_prefix
                        && !event.log_stream_name().is_some_and(|n| n.starts_with(prefix.as_str()))
                    {
                        continue;
                    }
                    if tally.lines >= self.max_events {
                        truncated = true;
                        break 'groups;
                    }
                    let message = event.message().unwrap_or_default().trim_end();
                    let label = event.log_stream_name().unwrap_or(group);
                    let before = tally.matches;
                    tally.line(message, self.pattern.as_ref().unwrap_or(&every), self.samples, Some(label));
                    *by_group.entry(group.clone()).or_default() += tally.matches - before;
                }
            }
        }
        let what = match (&self.filter_pattern, &self.pattern) {
            (Some(f), Some(p)) => format!("filter {f:?} and {p}"),
            (Some(f), None) => format!("filter {f:?}"),
            (None, Some(p)) => p.to_string(),
            (None, None) => "any event".to_string(),
        };
        let at_least = if truncated { "at least " } else { "" };
        let mut message = format!(
            "{at_least}{} of {} events in {} in the last {} match {what}{}",
            tally.matches,
            tally.lines,
            groups.join(", "),
            self.since,
            retries.note()
        );
        if truncated {
            message.push_str(&format!(" (stopped reading at max_events: {})", self.max_events));
        }
        let limits = Limits::above_counts(self.warn_above, self.fail_above);
        let mut outcome = tally.outcome_grouped(&limits, message, self.group);
        // A count that stopped short and passes proves nothing: say so.
        if truncated && outcome.verdict == Verdict::Passed {
            outcome.verdict = Verdict::Warned;
        }
        Ok(outcome.output("truncated", truncated).output("by_group", serde_json::to_value(&by_group).unwrap_or_default()))
    }
}
