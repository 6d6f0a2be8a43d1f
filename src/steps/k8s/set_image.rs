//! `k8s.set_image`: a container's image, as `kubectl set image` sets it (a strategic merge
//! patch of the pod template with a change cause), then the rollout followed.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

use super::health::WorkloadState;
use super::rollout::{CHANGE_CAUSE, after_change, change_cause, container_or_only, default_wait, patch_template, template};
use super::{Target, client};
use crate::duration::Duration;
use crate::kind::{StepContext, StepKind};
use crate::vocab::{Effect, Outcome, Output, StepError};

/// Sets a container's image (`kubectl set image`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetImage {
    /// `deployment/NAME` (or `NAME`), `statefulset/NAME`.
    pub target: String,
    /// The container whose image changes. Default: the pod template's only container.
    #[serde(default)]
    pub container: Option<String>,
    pub image: String,
    /// Wait until the rollout completes (else follow it with `k8s.rollout_status`).
    /// Default false.
    #[serde(default)]
    pub wait: bool,
    /// How long to wait. Default 5m.
    #[serde(default = "default_wait")]
    pub wait_timeout: Duration,
}

impl StepKind for SetImage {
    const NAME: &'static str = "k8s.set_image";
    const PERMISSIONS: &'static [crate::vocab::Permission] = {
        use crate::vocab::*;
        &[kube("apps", "deployments", &["get", "patch"]), kube("apps", "statefulsets", &["get", "patch"])]
    };
    const SUMMARY: &'static str = "set a container's image in a deployment or statefulset (plan shows old → new image)";
    const EFFECT: Effect = Effect::Mutate;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "previous_image", ty: "string", help: "the image before" },
        Output { name: "revision", ty: "string", help: "the rollout revision afterwards" },
    ];

    fn check(&self) -> Result<(), String> {
        Target::parse(&self.target)?;
        if self.image.trim().is_empty() || self.image.contains(char::is_whitespace) {
            return Err(format!("`image` `{}` is not an image reference", self.image));
        }
        Ok(())
    }

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let kube = client(ctx).await?;
        let t = Target::parse(&self.target).map_err(StepError::invalid)?;
        let tpl = template(&kube, &t).await?;
        let c = container_or_only(&tpl, &t, self.container.as_deref())?;
        let (name, previous) = (c.name.clone(), c.image.clone().unwrap_or_default());
        if previous == self.image {
            let w = WorkloadState::fetch(&kube, &t).await?;
            return Ok(Outcome::passed(format!("{t} container {name} already runs {}", self.image))
                .output("previous_image", previous)
                .output("revision", w.revision.unwrap_or_default()));
        }
        let cause = change_cause(ctx, &format!("set image {name}={}", self.image));
        let patch = json!({"metadata": {"annotations": {CHANGE_CAUSE: cause}},
                           "spec": {"template": {"spec": {"containers": [{"name": name, "image": self.image}]}}}});
        patch_template(&kube, &t, &patch, false).await?;
        let w = after_change(&kube, &t, self.wait, self.wait_timeout).await?;
        Ok(Outcome::passed(format!("{t} container {name}: {previous} → {}; {}", self.image, w.describe()))
            .value(self.image.clone())
            .output("previous_image", previous)
            .output("revision", w.revision.unwrap_or_default()))
    }

    async fn plan(&self, ctx: &StepContext) -> Result<String, StepError> {
        let kube = client(ctx).await?;
        let t = Target::parse(&self.target).map_err(StepError::invalid)?;
        let tpl = template(&kube, &t).await?;
        let c = container_or_only(&tpl, &t, self.container.as_deref())?;
        let (name, previous) = (c.name.clone(), c.image.clone().unwrap_or_default());
        if previous == self.image {
            return Ok(format!("{t} container {name} already runs {}: nothing to do", self.image));
        }
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": name, "image": self.image}]}}}});
        patch_template(&kube, &t, &patch, true).await?;
        Ok(format!("would set {t} container {name}: {previous} → {} (accepted by the API server's dry run)", self.image))
    }
}
