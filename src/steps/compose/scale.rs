//! `compose.scale`: a service's number of containers (`docker compose up -d --scale`), then
//! wait until they are running and healthy.

use std::time::Duration as StdDuration;

use schemars::JsonSchema;
use serde::Deserialize;

use super::docker::Container;
use super::lifecycle::{default_timeout, yes};
use super::{by_service, compose, project, summarize, wait_until};
use crate::duration::Duration;
use crate::kind::{StepContext, StepKind};
use crate::vocab::{Effect, Outcome, Output, StepError};

/// Scale one service to N containers (`compose up -d --no-deps --scale svc=N svc`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Scale {
    pub service: String,
    pub replicas: u32,
    /// Wait until N containers are ready. Default true.
    #[serde(default = "yes")]
    pub wait: bool,
    /// How long to wait. Default 120s.
    #[serde(default = "default_timeout")]
    pub wait_timeout: Duration,
}

impl StepKind for Scale {
    const NAME: &'static str = "compose.scale";
    const SUMMARY: &'static str = "scale a service to N containers (plan: before → after), then wait until they run";
    const EFFECT: Effect = Effect::Mutate;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "previous", ty: "int", help: "running containers before" },
        Output { name: "replicas", ty: "int", help: "running containers after" },
    ];

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let (project, docker) = project(ctx)?;
        project.check_services(std::slice::from_ref(&self.service))?;
        let previous = by_service(&docker.project_containers(&project.name).await?, &self.service).iter().filter(|c| c.running()).count();
        let args = vec!["up".into(), "-d".into(), "--no-deps".into(), "--scale".into(), format!("{}={}", self.service, self.replicas), self.service.clone()];
        compose(&project, &args).await?;
        let n = self.replicas as usize;
        let service = self.service.clone();
        let wait = self.wait;
        let done = move |cs: &[Container]| {
            let mine = by_service(cs, &service);
            let running: Vec<_> = mine.iter().filter(|c| c.running()).collect();
            running.len() == n && (!wait || running.iter().all(|c| c.ready()))
        };
        let within = if self.wait { self.wait_timeout.std() } else { StdDuration::from_secs(30) };
        let cs = wait_until(&docker, &project, within, &format!("{} at {n} containers", self.service), done).await?;
        let state = summarize(&self.service, &by_service(&cs, &self.service));
        Ok(Outcome::passed(format!("scaled {} from {previous} to {n}: {state}", self.service))
            .value(format!("{previous} → {n}"))
            .output("previous", previous)
            .output("replicas", n))
    }

    async fn plan(&self, ctx: &StepContext) -> Result<String, StepError> {
        let (project, docker) = project(ctx)?;
        project.check_services(std::slice::from_ref(&self.service))?;
        let now = by_service(&docker.project_containers(&project.name).await?, &self.service).iter().filter(|c| c.running()).count();
        Ok(format!("would scale {} from {now} to {} running containers", self.service, self.replicas))
    }
}
