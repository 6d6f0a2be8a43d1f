//! `k8s.rollout_restart`: new pods through a rollout, as `kubectl rollout restart` does
//! (the `kubectl.kubernetes.io/restartedAt` template annotation).

use schemars::JsonSchema;
use serde::Deserialize;

use super::health::WorkloadState;
use super::rollout::{after_change, change_cause, default_wait, restart};
use super::{Target, client};
use crate::duration::Duration;
use crate::kind::{StepContext, StepKind};
use crate::vocab::{Effect, Outcome, Output, StepError};

/// Restarts a workload's pods through a rollout (`kubectl rollout restart`: the
/// `kubectl.kubernetes.io/restartedAt` template annotation).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RolloutRestart {
    /// `deployment/NAME` (or `NAME`), `statefulset/NAME`.
    pub target: String,
    /// Wait until the rollout completes. Default false.
    #[serde(default)]
    pub wait: bool,
    /// How long to wait. Default 5m.
    #[serde(default = "default_wait")]
    pub wait_timeout: Duration,
}

impl StepKind for RolloutRestart {
    const NAME: &'static str = "k8s.rollout_restart";
    const PERMISSIONS: &'static [crate::vocab::Permission] = {
        use crate::vocab::*;
        &[kube("apps", "deployments", &["get", "patch"]), kube("apps", "statefulsets", &["get", "patch"]), kube("apps", "replicasets", &["list"]), kube("", "pods", &["list"])]
    };
    const SUMMARY: &'static str = "restart a deployment's or statefulset's pods through a rollout, as kubectl does";
    const EFFECT: Effect = Effect::Mutate;
    const OUTPUTS: &'static [Output] = &[Output { name: "revision", ty: "string", help: "the rollout revision afterwards" }];

    fn check(&self) -> Result<(), String> {
        Target::parse(&self.target).map(|_| ())
    }

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let kube = client(ctx).await?;
        let t = Target::parse(&self.target).map_err(StepError::invalid)?;
        restart(&kube, &t, Some(change_cause(ctx, "rollout restart")), false).await?;
        let w = after_change(&kube, &t, self.wait, self.wait_timeout).await?;
        Ok(Outcome::passed(format!("{t} restarted; {}", w.describe())).output("revision", w.revision.unwrap_or_default()))
    }

    async fn plan(&self, ctx: &StepContext) -> Result<String, StepError> {
        let kube = client(ctx).await?;
        let t = Target::parse(&self.target).map_err(StepError::invalid)?;
        let w = WorkloadState::fetch(&kube, &t).await?;
        restart(&kube, &t, None, true).await?;
        Ok(format!("would restart {t}'s {} pods through a rollout (now {}/{} ready)", w.desired, w.ready, w.desired))
    }
}
