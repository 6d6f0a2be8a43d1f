//! `compose.logs`: count the lines of a service's logs that match a pattern, like
//! `docker-compose logs --since 1h api | grep -ci error`, with thresholds and samples.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{by_service, project};
use super::docker::log_lines;
use crate::duration::Duration;
use crate::helpers::logscan::Tally;
use crate::helpers::threshold::Limits;
use crate::kind::{StepContext, StepKind};
use crate::pattern::Pattern;
use crate::vocab::{Effect, Outcome, Output, StepError};

/// Count matching log lines of a service's containers (or of every service's).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Logs {
    /// The service. Default: every service of the project (counted per service too).
    #[serde(default)]
    pub service: Option<String>,
    /// A regex, e.g. `(?i)error`.
    pub pattern: Pattern,
    /// How far back. Default 1h.
    #[serde(default = "crate::helpers::logscan::hour")]
    pub since: Duration,
    /// At most this many of the latest lines per container.
    #[serde(default)]
    pub tail: Option<u32>,
    /// Warn when more lines match.
    #[serde(default)]
    pub warn_above: Option<u64>,
    /// Fail when more lines match.
    #[serde(default)]
    pub fail_above: Option<u64>,
    /// Matching lines kept as samples. Default 5.
    #[serde(default = "crate::helpers::logscan::five")]
    pub samples: usize,
    /// Group the matching lines by message (numbers, ids, addresses and times normalised)
    /// and say the most frequent ones in the message. The `groups` output is there anyway.
    #[serde(default)]
    pub group: bool,
}

impl StepKind for Logs {
    const NAME: &'static str = "compose.logs";
    const SUMMARY: &'static str = "count log lines of a service matching a regex (since/tail), warn/fail thresholds, samples";
    const EFFECT: Effect = Effect::Read;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "matches", ty: "int", help: "matching lines" },
        Output { name: "lines", ty: "int", help: "lines read" },
        Output { name: "samples", ty: "list", help: "the first matching lines (cut to 300 characters)" },
        Output { name: "by_service", ty: "map", help: "matching lines per service" },
        Output { name: "groups", ty: "list", help: "the ten most frequent matching messages, numbers and ids normalised: {count, message, example}" },
        Output { name: "status_counts", ty: "map", help: "lines mentioning HTTP 401, 403 and 429" },
    ];

    fn check(&self) -> Result<(), String> {
        Limits::above_counts(self.warn_above, self.fail_above).check_order("warn_above", "fail_above")
    }

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let (project, docker) = project(ctx)?;
        let containers = docker.project_containers(&project.name).await?;
        let (what, mine) = match &self.service {
            Some(service) => {
                project.check_services(std::slice::from_ref(service))?;
                (service.clone(), by_service(&containers, service))
            }
            None => (format!("every service of {}", project.name), containers.iter().collect()),
        };
        if mine.is_empty() {
            return Err(StepError::new(crate::vocab::ErrorClass::Failed, format!("{what}: no containers to read logs from")));
        }
        let since = jiff::Timestamp::now().as_second() - self.since.std().as_secs() as i64;
        let tail = self.tail.map_or("all".to_string(), |t| t.to_string());
        let fetched = futures_util::future::join_all(mine.iter().map(|c| {
            let path = format!("/containers/{}/logs?stdout=1&stderr=1&since={since}&tail={tail}", c.id);
            let docker = &docker;
            async move { docker.get_raw(&path, "reading logs").await }
        }))
        .await;
        let mut tally = Tally::default();
        let mut by_service: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
        for (raw, c) in fetched.into_iter().zip(&mine) {
            let before = tally.matches;
            for line in log_lines(&raw?) {
                tally.line(&line, &self.pattern, self.samples, self.service.is_none().then_some(c.service.as_str()));
            }
            *by_service.entry(c.service.clone()).or_default() += tally.matches - before;
        }
        let mut message = format!("{} of {} lines of {what} in the last {} match {}", tally.matches, tally.lines, self.since, self.pattern);
        if self.service.is_none() {
            let busiest: Vec<String> = by_service.iter().filter(|(_, n)| **n > 0).map(|(s, n)| format!("{s} {n}")).collect();
            if !busiest.is_empty() {
                message.push_str(&format!(" ({})", busiest.join(", ")));
            }
        }
        Ok(tally.outcome_grouped(&Limits::above_counts(self.warn_above, self.fail_above), message, self.group).output("by_service", serde_json::to_value(&by_service).unwrap_or_default()))
    }
}
