//! `sleep`: wait.

use schemars::JsonSchema;
use serde::Deserialize;

use crate::duration::Duration;
use crate::kind::{StepContext, StepKind};
use crate::vocab::{Effect, Outcome, Output, StepError};

/// Wait for a while (e.g. for caches to expire between two steps).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Sleep {
    /// How long: `30s`, `2m`.
    pub duration: Duration,
}

impl StepKind for Sleep {
    const NAME: &'static str = "sleep";
    const SUMMARY: &'static str = "wait for a duration";
    const EFFECT: Effect = Effect::Read;
    const OUTPUTS: &'static [Output] = &[];

    async fn run(&self, _ctx: &StepContext) -> Result<Outcome, StepError> {
        if !self.duration.std().is_zero() {
            tokio::time::sleep(self.duration.std()).await;
        }
        Ok(Outcome::passed(format!("slept {}", self.duration)))
    }
}
