//! `compose.start`: start stopped services (`docker compose start`), then wait until they
//! are running and healthy.

use schemars::JsonSchema;
use serde::Deserialize;

use super::lifecycle::{OUTPUTS, change_then_wait, current, default_timeout, yes};
use crate::duration::Duration;
use crate::kind::{StepContext, StepKind};
use crate::vocab::{Effect, Outcome, Output, StepError};

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
        change_then_wait(ctx, &self.services, vec!["start".into()], self.wait, self.wait_timeout, "started").await
    }

    async fn plan(&self, ctx: &StepContext) -> Result<String, StepError> {
        let (_, services, state) = current(ctx, &self.services).await?;
        Ok(format!("would start {} (now: {state})", services.join(", ")))
    }
}
