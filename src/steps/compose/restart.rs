//! `compose.restart`: restart services (`docker compose restart`), then wait until they are
//! running and healthy again.

use schemars::JsonSchema;
use serde::Deserialize;

use super::docker::Container;
use super::lifecycle::{OUTPUTS, all_ready, current, default_timeout, state_of};
use super::{compose, project, wait_until};
use crate::duration::Duration;
use crate::kind::{StepContext, StepKind};
use crate::vocab::{Effect, Outcome, Output, StepError};

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
