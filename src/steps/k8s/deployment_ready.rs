//! `k8s.deployment_ready`: a Deployment or StatefulSet rolled out and available, as `kubectl
//! rollout status` judges it.

use schemars::JsonSchema;
use serde::Deserialize;

use super::health::WorkloadState;
use super::{Target, client};
use crate::kind::{StepContext, StepKind};
use crate::vocab::{Effect, Outcome, Output, StepError, Verdict};

/// A Deployment (or StatefulSet) is fully rolled out: the controller observed the latest
/// generation, and desired = updated = ready = available.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeploymentReady {
    /// `deployment/NAME` (or just `NAME`), `statefulset/NAME`.
    pub target: String,
}

impl StepKind for DeploymentReady {
    const NAME: &'static str = "k8s.deployment_ready";
    const PERMISSIONS: &'static [crate::vocab::Permission] = {
        use crate::vocab::*;
        &[kube("apps", "deployments", &["get"]), kube("apps", "statefulsets", &["get"]), kube("apps", "replicasets", &["list"]), kube("", "pods", &["list"])]
    };
    const SUMMARY: &'static str = "a deployment fully rolled out: observedGeneration current, available = updated = desired";
    const EFFECT: Effect = Effect::Read;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "desired", ty: "int", help: "replicas wanted" },
        Output { name: "ready", ty: "int", help: "replicas ready" },
        Output { name: "available", ty: "int", help: "replicas available" },
        Output { name: "revision", ty: "string", help: "the rollout revision" },
        Output { name: "images", ty: "list", help: "container images of the pod template" },
    ];

    fn check(&self) -> Result<(), String> {
        Target::parse(&self.target).map(|_| ())
    }

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let kube = client(ctx).await?;
        let target = Target::parse(&self.target).map_err(StepError::invalid)?;
        let w = WorkloadState::fetch(&kube, &target).await?;
        let verdict = if w.complete() { Verdict::Passed } else { Verdict::Failed };
        Ok(Outcome::new(verdict, w.describe())
            .value(format!("{}/{}", w.available, w.desired))
            .output("desired", w.desired)
            .output("ready", w.ready)
            .output("available", w.available)
            .output("revision", w.revision.clone().unwrap_or_default())
            .output("images", w.images.clone()))
    }
}
