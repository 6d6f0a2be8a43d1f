//! `compose.stop`: stop services (`docker compose stop`), then wait until they are.

use schemars::JsonSchema;
use serde::Deserialize;

use super::compose;
use super::lifecycle::{OUTPUTS, current};
use crate::duration::Duration;
use crate::kind::{StepContext, StepKind};
use crate::vocab::{Effect, Outcome, Output, StepError};

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
