//! `k8s.rollout_status`: wait until a workload's rollout is complete, as `kubectl rollout
//! status` judges it.

use schemars::JsonSchema;
use serde::Deserialize;

use super::rollout::default_wait;
use super::scale::wait_rolled_out;
use super::{Target, client};
use crate::duration::Duration;
use crate::kind::{StepContext, StepKind};
use crate::vocab::{Effect, Outcome, Output, StepError};

/// Waits until a rollout completes (`kubectl rollout status`), or fails at the timeout
/// saying how far it got; fails at once when the controller reports the progress deadline
/// exceeded.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RolloutStatus {
    /// `deployment/NAME` (or `NAME`), `statefulset/NAME`.
    pub target: String,
    /// How long to wait. Default 5m.
    #[serde(default = "default_wait")]
    pub timeout: Duration,
}

impl StepKind for RolloutStatus {
    const NAME: &'static str = "k8s.rollout_status";
    const PERMISSIONS: &'static [crate::vocab::Permission] = {
        use crate::vocab::*;
        &[kube("apps", "deployments", &["get"]), kube("apps", "statefulsets", &["get"]), kube("apps", "replicasets", &["list"]), kube("", "pods", &["list"])]
    };
    const SUMMARY: &'static str = "wait until a rollout completes or times out, saying how far it got";
    const EFFECT: Effect = Effect::Read;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "revision", ty: "string", help: "the rollout revision" },
        Output { name: "ready", ty: "int", help: "replicas ready" },
    ];

    fn check(&self) -> Result<(), String> {
        Target::parse(&self.target).map(|_| ())
    }

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let kube = client(ctx).await?;
        let t = Target::parse(&self.target).map_err(StepError::invalid)?;
        let w = wait_rolled_out(&kube, std::slice::from_ref(&t), self.timeout.std()).await?.remove(0);
        Ok(Outcome::passed(format!("rolled out: {}", w.describe()))
            .value(format!("{}/{}", w.ready, w.desired))
            .output("revision", w.revision.unwrap_or_default())
            .output("ready", w.ready))
    }
}
