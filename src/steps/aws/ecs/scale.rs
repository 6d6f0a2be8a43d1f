//! `ecs.scale`: a service's desired count, planned as before → after, then waited for until
//! the service is stable (running = desired, one deployment).

use schemars::JsonSchema;
use serde::Deserialize;

use super::{client, cluster, describe_one, state, wait_stable};
use crate::duration::Duration;
use crate::kind::{StepContext, StepKind};
use crate::steps::aws::sdk_error;
use crate::vocab::{Effect, Outcome, Output, StepError};

/// Set an ECS service's desired count and wait until it is stable.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Scale {
    pub service: String,
    /// The cluster. Default: the instance's `ecs.cluster`.
    #[serde(default)]
    pub cluster: Option<String>,
    /// The desired count.
    pub desired: i32,
    /// How long to wait until stable. Default 10m.
    #[serde(default = "ten_minutes")]
    pub wait_timeout: Duration,
    /// How often to look. Default 5s.
    #[serde(default = "five_seconds")]
    pub poll: Duration,
}

fn ten_minutes() -> Duration {
    Duration::from_secs(600)
}
fn five_seconds() -> Duration {
    Duration::from_secs(5)
}

impl StepKind for Scale {
    const NAME: &'static str = "ecs.scale";
    const PERMISSIONS: &'static [crate::vocab::Permission] = {
        use crate::vocab::*;
        &[aws(&["ecs:DescribeServices", "ecs:UpdateService"], AwsOn::EcsServices)]
    };
    const SUMMARY: &'static str = "set an ECS service's desired count (plan: before → after), wait until stable";
    const EFFECT: Effect = Effect::Mutate;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "previous", ty: "int", help: "desired count before" },
        Output { name: "desired", ty: "int", help: "desired count after" },
        Output { name: "running", ty: "int", help: "running when stable" },
        Output { name: "seconds_to_stable", ty: "float", help: "how long it took" },
    ];

    fn check(&self) -> Result<(), String> {
        if self.desired < 0 {
            return Err(format!("`desired` cannot be negative ({})", self.desired));
        }
        Ok(())
    }

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let (client, config, retries) = client(ctx).await?;
        let cluster = cluster(ctx, self.cluster.as_deref())?;
        let before = describe_one(&client, &config, &cluster, &self.service).await?;
        let previous = before.desired_count();
        if previous != self.desired {
            client
                .update_service()
                .cluster(&cluster)
                .service(&self.service)
                .desired_count(self.desired)
                .send()
                .await
                .map_err(|e| sdk_error(e, &format!("scaling {} in cluster {cluster}", self.service), &config))?;
        }
        let (now, took) = wait_stable(&client, &config, &cluster, &self.service, self.wait_timeout, self.poll.std()).await?;
        let message = if previous == self.desired {
            format!("{} in {cluster} already wants {}; stable: {}", self.service, self.desired, state(&now))
        } else {
            format!("{} in {cluster}: desired {previous} → {}; stable after {}: {}", self.service, self.desired, crate::duration::short(took), state(&now))
        };
        Ok(Outcome::passed(format!("{message}{}", retries.note()))
            .value(format!("{}/{}", now.running_count(), now.desired_count()))
            .output("previous", previous)
            .output("desired", self.desired)
            .output("running", now.running_count())
            .output("seconds_to_stable", (took.as_secs_f64() * 10.0).round() / 10.0))
    }

    async fn plan(&self, ctx: &StepContext) -> Result<String, StepError> {
        let (client, config, _) = client(ctx).await?;
        let cluster = cluster(ctx, self.cluster.as_deref())?;
        let now = describe_one(&client, &config, &cluster, &self.service).await?;
        Ok(if now.desired_count() == self.desired {
            format!("would change nothing: {} in {cluster} already wants {} ({})", self.service, self.desired, state(&now))
        } else {
            format!("would scale {} in {cluster}: desired {} → {} (now {}), then wait until stable", self.service, now.desired_count(), self.desired, state(&now))
        })
    }
}
