//! `compose.up`: create or update services (`docker compose up -d`), then wait until they
//! are running and healthy.

use schemars::JsonSchema;
use serde::Deserialize;

use super::compose;
use super::lifecycle::{yes, OUTPUTS, current, default_timeout, wait_ready};
use crate::duration::Duration;
use crate::kind::{StepContext, StepKind};
use crate::vocab::{Effect, Outcome, Output, StepError};

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
