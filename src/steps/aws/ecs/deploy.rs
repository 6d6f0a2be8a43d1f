//! `ecs.deploy`: point a service at another task definition revision — or register one
//! with a new image for one container, copying everything else — and wait until it is
//! stable on it; the revision it ran before is an output, for `ecs.rollback`.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{client, cluster, describe_one, revision, running_revision, switched, task_definition};
use crate::duration::Duration;
use crate::kind::{StepContext, StepKind};
use crate::steps::aws::sdk_error;
use crate::vocab::{Effect, Outcome, Output, StepError};

/// Deploy a task definition revision, or a new image, to an ECS service.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Deploy {
    pub service: String,
    /// The cluster. Default: the instance's `ecs.cluster`.
    #[serde(default)]
    pub cluster: Option<String>,
    /// A revision to run (`api:7` or its ARN).
    #[serde(default)]
    pub task_definition: Option<String>,
    /// Or a new image: registers a revision like the running one with this image.
    #[serde(default)]
    pub image: Option<String>,
    /// The container whose image changes. Default: the only one.
    #[serde(default)]
    pub container: Option<String>,
    /// How long to wait until stable. Default 15m.
    #[serde(default = "fifteen_minutes")]
    pub wait_timeout: Duration,
    /// How often to look. Default 5s.
    #[serde(default = "five_seconds")]
    pub poll: Duration,
}

const NOTHING: &str = "give `task_definition: FAMILY:REVISION` or `image: REPOSITORY:TAG`";

fn fifteen_minutes() -> Duration {
    Duration::from_secs(900)
}
fn five_seconds() -> Duration {
    Duration::from_secs(5)
}

/// The container of `td` named `wanted`, else its only one.
fn container_of<'a>(td: &'a aws_sdk_ecs::types::TaskDefinition, wanted: Option<&str>) -> Result<&'a aws_sdk_ecs::types::ContainerDefinition, StepError> {
    let all = td.container_definitions();
    let names: Vec<&str> = all.iter().filter_map(|c| c.name()).collect();
    let family = td.family().unwrap_or_default();
    match wanted {
        Some(w) => all.iter().find(|c| c.name() == Some(w)).ok_or_else(|| {
            StepError::invalid(format!("task definition {family}:{} has no container {w}; its containers: {}", td.revision(), names.join(", ")))
        }),
        None if all.len() == 1 => Ok(&all[0]),
        None => Err(StepError::invalid(format!(
            "task definition {family}:{} has {} containers ({}); say which gets the image with `container:`",
            td.revision(),
            all.len(),
            names.join(", ")
        ))),
    }
}

impl StepKind for Deploy {
    const NAME: &'static str = "ecs.deploy";
    const PERMISSIONS: &'static [crate::vocab::Permission] = {
        use crate::vocab::*;
        &[aws(&["ecs:DescribeServices", "ecs:UpdateService"], AwsOn::EcsServices), aws(&["ecs:DescribeTaskDefinition", "ecs:RegisterTaskDefinition", "iam:PassRole"], AwsOn::Any)]
    };
    const SUMMARY: &'static str = "point an ECS service at a task definition revision, or register one with a new image; wait until stable";
    const EFFECT: Effect = Effect::Mutate;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "previous", ty: "string", help: "the revision it ran before (family:revision)" },
        Output { name: "current", ty: "string", help: "the revision it runs now" },
        Output { name: "registered", ty: "bool", help: "whether a new revision was registered" },
        Output { name: "seconds_to_stable", ty: "float", help: "how long the rollout took" },
    ];

    fn check(&self) -> Result<(), String> {
        match (&self.task_definition, &self.image) {
            (Some(_), Some(_)) => Err("give `task_definition` or `image`, not both".into()),
            (None, None) => Err(NOTHING.into()),
            (Some(_), None) if self.container.is_some() => Err("`container` goes with `image`".into()),
            _ => Ok(()),
        }
    }

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let (client, config, retries) = client(ctx).await?;
        let cluster = cluster(ctx, self.cluster.as_deref())?;
        let service = describe_one(&client, &config, &cluster, &self.service).await?;
        let previous = running_revision(&service).unwrap_or_default();
        let (target, registered) = match (&self.task_definition, &self.image) {
            (Some(td), _) => {
                // Read it first: a revision that does not exist is said as such.
                let (found, _) = task_definition(&client, &config, td).await?;
                (found.task_definition_arn().unwrap_or(td).to_string(), false)
            }
            (None, Some(image)) => {
                let (now, tags) = task_definition(&client, &config, &previous).await?;
                let container = container_of(&now, self.container.as_deref())?;
                if container.image() == Some(image.as_str()) {
                    (now.task_definition_arn().unwrap_or(&previous).to_string(), false)
                } else {
                    let name = container.name().map(str::to_string);
                    let containers: Vec<_> = now
                        .container_definitions()
                        .iter()
                        .map(|c| {
                            let mut c = c.clone();
                            if c.name == name {
                                c.image = Some(image.clone());
                            }
                            c
                        })
                        .collect();
                    let out = client
                        .register_task_definition()
                        .set_family(now.family.clone())
                        .set_task_role_arn(now.task_role_arn.clone())
                        .set_execution_role_arn(now.execution_role_arn.clone())
                        .set_network_mode(now.network_mode.clone())
                        .set_container_definitions(Some(containers))
                        .set_volumes(now.volumes.clone())
                        .set_placement_constraints(now.placement_constraints.clone())
                        .set_requires_compatibilities(now.requires_compatibilities.clone())
                        .set_cpu(now.cpu.clone())
                        .set_memory(now.memory.clone())
                        .set_pid_mode(now.pid_mode.clone())
                        .set_ipc_mode(now.ipc_mode.clone())
                        .set_proxy_configuration(now.proxy_configuration.clone())
                        .set_ephemeral_storage(now.ephemeral_storage.clone())
                        .set_runtime_platform(now.runtime_platform.clone())
                        .set_enable_fault_injection(now.enable_fault_injection)
                        .set_tags(Some(tags).filter(|t| !t.is_empty()))
                        .send()
                        .await
                        .map_err(|e| sdk_error(e, &format!("registering a revision of {} with image {image}", now.family().unwrap_or_default()), &config))?;
                    let arn = out.task_definition().and_then(|t| t.task_definition_arn()).unwrap_or_default().to_string();
                    (arn, true)
                }
            }
            (None, None) => return Err(StepError::invalid(NOTHING)),
        };
        if revision(&target) == previous {
            return Ok(Outcome::passed(format!("{} in {cluster} already runs {previous}", self.service))
                .value(previous.clone())
                .output("previous", previous.clone())
                .output("current", previous)
                .output("registered", false));
        }
        let (now, took) = match switched(&client, &config, &cluster, &self.service, &target, self.wait_timeout, self.poll.std()).await? {
            Ok(done) => done,
            // Changed but not stable on the new revision: failed, with what a rollback needs.
            Err(e) => {
                return Ok(Outcome::failed(format!("{} (the service was updated from {previous} to {})", e.message, revision(&target)))
                    .output("previous", previous)
                    .output("current", revision(&target).to_string())
                    .output("registered", registered));
            }
        };
        let current = running_revision(&now).unwrap_or_default();
        Ok(Outcome::passed(format!(
            "{} in {cluster}: {previous} → {current}{}; stable after {}{}",
            self.service,
            if registered { format!(" (registered, image {})", self.image.as_deref().unwrap_or_default()) } else { String::new() },
            crate::duration::short(took),
            retries.note()
        ))
        .value(current.clone())
        .output("previous", previous)
        .output("current", current)
        .output("registered", registered)
        .output("seconds_to_stable", (took.as_secs_f64() * 10.0).round() / 10.0))
    }

    async fn plan(&self, ctx: &StepContext) -> Result<String, StepError> {
        let (client, config, _) = client(ctx).await?;
        let cluster = cluster(ctx, self.cluster.as_deref())?;
        let service = describe_one(&client, &config, &cluster, &self.service).await?;
        let previous = running_revision(&service).unwrap_or_default();
        Ok(match (&self.task_definition, &self.image) {
            (Some(td), _) => {
                let (found, _) = task_definition(&client, &config, td).await?;
                let to = revision(found.task_definition_arn().unwrap_or(td)).to_string();
                if to == previous {
                    format!("would change nothing: {} in {cluster} already runs {previous}", self.service)
                } else {
                    format!("would deploy {to} to {} in {cluster} (now {previous}), then wait until stable", self.service)
                }
            }
            (None, Some(image)) => {
                let (now, _) = task_definition(&client, &config, &previous).await?;
                let container = container_of(&now, self.container.as_deref())?;
                let name = container.name().unwrap_or_default();
                if container.image() == Some(image.as_str()) {
                    format!("would change nothing: container {name} of {} in {cluster} already runs {image}", self.service)
                } else {
                    format!(
                        "would register a revision of {} with container {name} on {image} (now {}), deploy it to {} in {cluster}, then wait until stable",
                        now.family().unwrap_or_default(),
                        container.image().unwrap_or("no image"),
                        self.service
                    )
                }
            }
            (None, None) => return Err(StepError::invalid(NOTHING)),
        })
    }
}
