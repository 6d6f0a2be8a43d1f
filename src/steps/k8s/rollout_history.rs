//! `k8s.rollout_history`: a Deployment's revisions, as `kubectl rollout history` lists them.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

use super::rollout::revisions;
use super::{Target, client};
use crate::kind::{StepContext, StepKind};
use crate::vocab::{Effect, Outcome, Output, StepError, Verdict};

/// Lists a Deployment's revisions (`kubectl rollout history`): number, images, change cause.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RolloutHistory {
    /// `deployment/NAME` (or `NAME`).
    pub target: String,
}

impl StepKind for RolloutHistory {
    const NAME: &'static str = "k8s.rollout_history";
    const PERMISSIONS: &'static [crate::vocab::Permission] = {
        use crate::vocab::*;
        &[kube("apps", "deployments", &["get"]), kube("apps", "replicasets", &["list"])]
    };
    const SUMMARY: &'static str = "a deployment's revisions with images and change cause, as kubectl rollout history";
    const EFFECT: Effect = Effect::Read;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "revisions", ty: "list", help: "`{revision, images, change_cause}` oldest first" },
        Output { name: "current", ty: "int", help: "the current revision" },
    ];

    fn check(&self) -> Result<(), String> {
        Target::deployment(&self.target).map(|_| ())
    }

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let kube = client(ctx).await?;
        let name = Target::deployment(&self.target).map_err(StepError::invalid)?;
        let (_, revs) = revisions(&kube, &name).await?;
        let current = revs.last().map_or(0, |r| r.number);
        let list: Vec<serde_json::Value> =
            revs.iter().map(|r| json!({"revision": r.number, "images": r.images(), "change_cause": r.cause()})).collect();
        let lines: Vec<String> = revs.iter().map(|r| format!("{}: {}{}", r.number, r.images().join(","), r.cause().map(|c| format!(" ({c})")).unwrap_or_default())).collect();
        let v = if revs.is_empty() { Verdict::Warned } else { Verdict::Passed };
        let message = if revs.is_empty() { format!("deployment/{name} has no revisions yet") } else { format!("deployment/{name} revisions: {}", lines.join("; ")) };
        Ok(Outcome::new(v, message).value(format!("revision {current}")).output("revisions", list).output("current", current))
    }
}
