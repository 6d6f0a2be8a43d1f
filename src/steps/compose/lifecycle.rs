//! `compose.up`, `compose.stop`, `compose.start`, `compose.restart`, `compose.scale`:
//! changes made through the compose CLI, then waited for through the engine.

use std::time::Duration as StdDuration;

use schemars::JsonSchema;
use serde::Deserialize;

use super::docker::Container;
use super::{Project, by_service, compose, project, summarize, wait_until};
use crate::duration::Duration;
use crate::kind::{StepContext, StepKind};
use crate::vocab::{Effect, Outcome, Output, StepError};

fn default_timeout() -> Duration {
    Duration::from_secs(120)
}
fn yes() -> bool {
    true
}

fn state_of(containers: &[Container], services: &[String]) -> String {
    services.iter().map(|s| summarize(s, &by_service(containers, s))).collect::<Vec<_>>().join("; ")
}

/// Every service listed has at least one container, and all of them are ready.
fn all_ready(services: &[String]) -> impl Fn(&[Container]) -> bool + '_ {
    move |cs: &[Container]| {
        services.iter().all(|s| {
            let mine = by_service(cs, s);
            !mine.is_empty() && mine.iter().all(|c| c.ready())
        })
    }
}

const OUTPUTS: &[Output] = &[
    Output { name: "services", ty: "list", help: "the services acted on" },
    Output { name: "state", ty: "string", help: "their state afterwards" },
];

async fn wait_ready(ctx: &StepContext, services: &[String], timeout: Duration, what: &str) -> Result<String, StepError> {
    let (project, docker) = project(ctx)?;
    let cs = wait_until(&docker, &project, timeout.std(), what, all_ready(services)).await?;
    Ok(state_of(&cs, services))
}

async fn current(ctx: &StepContext, services: &[String]) -> Result<(Project, Vec<String>, String), StepError> {
    let (project, docker) = project(ctx)?;
    let selected = project.selected(services)?;
    let cs = docker.project_containers(&project.name).await?;
    let state = state_of(&cs, &selected);
    Ok((project, selected, state))
}

/// `compose up -d`: create and start services, then wait until they are ready.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Up {
    /// Which services. Default: all.
    #[serde(default)]
    pub services: Vec<String>,
    /// Wait until running (and healthy, where there is a healthcheck). Default true.
    #[serde(default = "yes")]
    pub wait: bool,
    /// How long to wait. Default 120s.
    #[serde(default = "default_timeout")]
    pub wait_timeout: Duration,
}

impl StepKind for Up {
    const NAME: &'static str = "compose.up";
    const SUMMARY: &'static str = "compose up -d (all or listed services), then wait until they are ready";
    const EFFECT: Effect = Effect::Mutate;
    const OUTPUTS: &'static [Output] = OUTPUTS;

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let (project, services, _) = current(ctx, &self.services).await?;
        let mut args = vec!["up".to_string(), "-d".to_string()];
        args.extend(self.services.iter().cloned());
        compose(&project, &args).await?;
        let state = if self.wait { wait_ready(ctx, &services, self.wait_timeout, "services ready").await? } else { String::new() };
        Ok(Outcome::passed(format!("up: {state}")).value(format!("{} services", services.len())).output("services", services).output("state", state))
    }

    async fn plan(&self, ctx: &StepContext) -> Result<String, StepError> {
        let (_, services, state) = current(ctx, &self.services).await?;
        Ok(format!("would run compose up -d for {} (now: {state})", services.join(", ")))
    }
}

/// `compose stop`: stop services' containers (they stay, to be started again).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Stop {
    /// Which services. Default: all.
    #[serde(default)]
    pub services: Vec<String>,
    /// Grace period before SIGKILL (compose stop -t). Default compose's (10s).
    #[serde(default)]
    pub grace: Option<Duration>,
}

impl StepKind for Stop {
    const NAME: &'static str = "compose.stop";
    const SUMMARY: &'static str = "compose stop (all or listed services), with a grace period";
    const EFFECT: Effect = Effect::Mutate;
    const OUTPUTS: &'static [Output] = OUTPUTS;

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let (project, services, _) = current(ctx, &self.services).await?;
        let mut args = vec!["stop".to_string()];
        if let Some(g) = self.grace {
            args.push("-t".into());
            args.push(g.std().as_secs().to_string());
        }
        args.extend(self.services.iter().cloned());
        compose(&project, &args).await?;
        let (_, _, state) = current(ctx, &services).await?;
        Ok(Outcome::passed(format!("stopped: {state}")).value(format!("{} services", services.len())).output("services", services).output("state", state))
    }

    async fn plan(&self, ctx: &StepContext) -> Result<String, StepError> {
        let (_, services, state) = current(ctx, &self.services).await?;
        Ok(format!("would stop {} (now: {state})", services.join(", ")))
    }
}

/// `compose start`: start stopped services' containers, then wait until ready.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Start {
    /// Which services. Default: all.
    #[serde(default)]
    pub services: Vec<String>,
    /// Wait until ready. Default true.
    #[serde(default = "yes")]
    pub wait: bool,
    /// How long to wait. Default 120s.
    #[serde(default = "default_timeout")]
    pub wait_timeout: Duration,
}

impl StepKind for Start {
    const NAME: &'static str = "compose.start";
    const SUMMARY: &'static str = "compose start (all or listed services), then wait until they are ready";
    const EFFECT: Effect = Effect::Mutate;
    const OUTPUTS: &'static [Output] = OUTPUTS;

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let (project, services, _) = current(ctx, &self.services).await?;
        let mut args = vec!["start".to_string()];
        args.extend(self.services.iter().cloned());
        compose(&project, &args).await?;
        let state = if self.wait { wait_ready(ctx, &services, self.wait_timeout, "services ready").await? } else { String::new() };
        Ok(Outcome::passed(format!("started: {state}")).value(format!("{} services", services.len())).output("services", services).output("state", state))
    }

    async fn plan(&self, ctx: &StepContext) -> Result<String, StepError> {
        let (_, services, state) = current(ctx, &self.services).await?;
        Ok(format!("would start {} (now: {state})", services.join(", ")))
    }
}

/// `compose restart -t N`: a graceful restart, then wait until every restarted container
/// is ready again.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Restart {
    /// Which services. Default: all.
    #[serde(default)]
    pub services: Vec<String>,
    /// Grace period before SIGKILL. Default 30s.
    #[serde(default = "thirty")]
    pub grace: Duration,
    /// How long to wait for health afterwards. Default 120s.
    #[serde(default = "default_timeout")]
    pub wait_timeout: Duration,
}

fn thirty() -> Duration {
    Duration::from_secs(30)
}

impl StepKind for Restart {
    const NAME: &'static str = "compose.restart";
    const SUMMARY: &'static str = "graceful compose restart -t N, then wait until healthy again";
    const EFFECT: Effect = Effect::Mutate;
    const OUTPUTS: &'static [Output] = OUTPUTS;

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let (project, docker) = project(ctx)?;
        let services = project.selected(&self.services)?;
        let before: Vec<(String, String)> = docker
            .project_containers(&project.name)
            .await?
            .into_iter()
            .filter(|c| services.contains(&c.service) && c.running())
            .map(|c| (c.id, c.started_at))
            .collect();
        let mut args = vec!["restart".to_string(), "-t".to_string(), self.grace.std().as_secs().to_string()];
        args.extend(self.services.iter().cloned());
        compose(&project, &args).await?;
        let restarted = |cs: &[Container]| {
            before.iter().all(|(id, started)| cs.iter().any(|c| &c.id == id && &c.started_at != started)) && all_ready(&services)(cs)
        };
        let cs = wait_until(&docker, &project, self.wait_timeout.std(), "restarted services ready", restarted).await?;
        let state = state_of(&cs, &services);
        Ok(Outcome::passed(format!("restarted {} container(s): {state}", before.len()))
            .value(format!("{} restarted", before.len()))
            .output("services", services)
            .output("state", state))
    }

    async fn plan(&self, ctx: &StepContext) -> Result<String, StepError> {
        let (_, services, state) = current(ctx, &self.services).await?;
        Ok(format!("would restart {} with a {} grace period, then wait up to {} for health (now: {state})", services.join(", "), self.grace, self.wait_timeout))
    }
}

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
