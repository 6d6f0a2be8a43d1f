//! `ecs.rollback`: back to the revision before the one a service runs (the newest ACTIVE
//! revision of its family older than the current one), or to a given revision; wait until
//! stable.

use aws_sdk_ecs::types::{SortOrder, TaskDefinitionStatus};
use schemars::JsonSchema;
use serde::Deserialize;

use super::{client, cluster, describe_one, revision, running_revision, switch, task_definition};
use crate::duration::Duration;
use crate::kind::{StepContext, StepKind};
use crate::steps::aws::sdk_error;
use crate::vocab::{Effect, ErrorClass, Outcome, Output, StepError};

/// Roll an ECS service back to an earlier task definition revision.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rollback {
    pub service: String,
    /// The cluster. Default: the instance's `ecs.cluster`.
    #[serde(default)]
    pub cluster: Option<String>,
    /// The revision to go back to (`api:6`, or `6` in the family it runs now). Default: the newest ACTIVE revision of the
    /// family older than the running one (`ecs.deploy`'s `previous` output fits here).
    #[serde(default)]
    pub to: Option<String>,
    /// How long to wait until stable. Default 15m.
    #[serde(default = "fifteen_minutes")]
    pub wait_timeout: Duration,
    /// How often to look. Default 5s.
    #[serde(default = "five_seconds")]
    pub poll: Duration,
}

fn fifteen_minutes() -> Duration {
    Duration::from_secs(900)
}
fn five_seconds() -> Duration {
    Duration::from_secs(5)
}

impl Rollback {
    /// The running revision and the one to go back to.
    async fn target(&self, client: &aws_sdk_ecs::Client, config: &aws_config::SdkConfig, cluster: &str) -> Result<(String, String), StepError> {
        let service = describe_one(client, config, cluster, &self.service).await?;
        let current = running_revision(&service).unwrap_or_default();
        if let Some(to) = &self.to {
            // A bare number is a revision of the family the service runs now.
            let to = match (to.parse::<u64>(), current.rsplit_once(':')) {
                (Ok(n), Some((family, _))) => format!("{family}:{n}"),
                _ => to.clone(),
            };
            let (found, _) = task_definition(client, config, &to).await?;
            return Ok((current, revision(found.task_definition_arn().unwrap_or(&to)).to_string()));
        }
        let (family, number) = current
            .rsplit_once(':')
            .and_then(|(f, n)| Some((f.to_string(), n.parse::<i64>().ok()?)))
            .ok_or_else(|| StepError::error(format!("cannot read the revision of {}'s task definition `{current}`", self.service)))?;
        let mut pages = client
            .list_task_definitions()
            .family_prefix(&family)
            .status(TaskDefinitionStatus::Active)
            .sort(SortOrder::Desc)
            .into_paginator()
            .send();
        // The newest older revision, whatever order the pages come in.
        let mut best: Option<i64> = None;
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| sdk_error(e, &format!("listing the revisions of {family}"), config))?;
            for arn in page.task_definition_arns() {
                if let Some((f, n)) = revision(arn).rsplit_once(':')
                    && f == family
                    && let Ok(n) = n.parse::<i64>()
                    && n < number
                    && best.is_none_or(|b| n > b)
                {
                    best = Some(n);
                }
            }
        }
        if let Some(n) = best {
            return Ok((current, format!("{family}:{n}")));
        }
        Err(StepError::new(
            ErrorClass::Failed,
            format!("{} runs {current}, and {family} has no ACTIVE revision before it to roll back to; give `to:`", self.service),
        ))
    }
}

impl StepKind for Rollback {
    const NAME: &'static str = "ecs.rollback";
    const PERMISSIONS: &'static [crate::vocab::Permission] = {
        use crate::vocab::*;
        &[aws(&["ecs:DescribeServices", "ecs:UpdateService"], AwsOn::EcsServices), aws(&["ecs:DescribeTaskDefinition", "ecs:ListTaskDefinitions"], AwsOn::Any)]
    };
    const SUMMARY: &'static str = "an ECS service back to the previous (or a given) task definition revision; wait until stable";
    const EFFECT: Effect = Effect::Mutate;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "previous", ty: "string", help: "the revision it ran before the rollback" },
        Output { name: "current", ty: "string", help: "the revision it runs now" },
        Output { name: "seconds_to_stable", ty: "float", help: "how long the rollout took" },
    ];

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let (client, config, retries) = client(ctx).await?;
        let cluster = cluster(ctx, self.cluster.as_deref())?;
        let (previous, to) = self.target(&client, &config, &cluster).await?;
        if previous == to {
            return Ok(Outcome::passed(format!("{} in {cluster} already runs {to}", self.service)).value(to.clone()).output("previous", previous).output("current", to));
        }
        let (now, took) = switch(&client, &config, &cluster, &self.service, &to, self.wait_timeout, self.poll.std()).await?;
        let current = running_revision(&now).unwrap_or_default();
        Ok(Outcome::passed(format!("{} in {cluster} rolled back: {previous} → {current}; stable after {}{}", self.service, crate::duration::short(took), retries.note()))
            .value(current.clone())
            .output("previous", previous)
            .output("current", current)
            .output("seconds_to_stable", (took.as_secs_f64() * 10.0).round() / 10.0))
    }

    async fn plan(&self, ctx: &StepContext) -> Result<String, StepError> {
        let (client, config, _) = client(ctx).await?;
        let cluster = cluster(ctx, self.cluster.as_deref())?;
        let (previous, to) = self.target(&client, &config, &cluster).await?;
        Ok(if previous == to {
            format!("would change nothing: {} in {cluster} already runs {to}", self.service)
        } else {
            format!("would roll {} in {cluster} back: {previous} → {to}, then wait until stable", self.service)
        })
    }
}
