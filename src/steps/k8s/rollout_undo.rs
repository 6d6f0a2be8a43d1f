//! `k8s.rollout_undo`: back to the previous (or a given) revision, as `kubectl rollout undo`
//! does it: the chosen ReplicaSet's template written back with the resourceVersion read.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::PostParams;
use schemars::JsonSchema;
use serde::Deserialize;

use super::rollout::{CHANGE_CAUSE, Revision, after_change, default_wait, revisions};
use super::{Kube, Target, WorkloadKind, client};
use crate::duration::Duration;
use crate::kind::{StepContext, StepKind};
use crate::vocab::{Effect, Outcome, Output, StepError};

/// Rolls a Deployment back to the previous revision, or to `to_revision` (`kubectl rollout
/// undo`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RolloutUndo {
    /// `deployment/NAME` (or `NAME`).
    pub target: String,
    /// The revision to go back to. Default: the one before the current.
    #[serde(default)]
    pub to_revision: Option<u32>,
    /// Wait until the rollback completes. Default false.
    #[serde(default)]
    pub wait: bool,
    /// How long to wait. Default 5m.
    #[serde(default = "default_wait")]
    pub wait_timeout: Duration,
}

impl RolloutUndo {
    /// The deployment, the current revision and the one to go back to.
    async fn choose(&self, kube: &Kube) -> Result<(Deployment, Revision, Revision), StepError> {
        let name = Target::deployment(&self.target).map_err(StepError::invalid)?;
        let (d, revs) = revisions(kube, &name).await?;
        let current = revs.last().cloned().ok_or_else(|| StepError::new(crate::vocab::ErrorClass::Failed, format!("deployment/{name} has no revisions to roll back")))?;
        let target = match self.to_revision {
            Some(n) => revs.iter().find(|r| r.number == n as i64).cloned().ok_or_else(|| {
                let have: Vec<String> = revs.iter().map(|r| r.number.to_string()).collect();
                StepError::invalid(format!("deployment/{name} has no revision {n} (revisions: {})", have.join(", ")))
            })?,
            None => revs.iter().rev().nth(1).cloned().ok_or_else(|| {
                StepError::new(crate::vocab::ErrorClass::Failed, format!("deployment/{name} has only revision {}: nothing to roll back to", current.number))
            })?,
        };
        Ok((d, current, target))
    }

    /// The Deployment with the chosen revision's pod template (without the
    /// pod-template-hash label the ReplicaSet controller added).
    fn rolled_back(d: &Deployment, to: &Revision) -> Result<Deployment, StepError> {
        let mut tpl = to.replica_set.spec.template.clone().ok_or_else(|| StepError::error("the revision's ReplicaSet has no pod template"))?;
        if let Some(labels) = tpl.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
            labels.remove("pod-template-hash");
        }
        let mut next = d.clone();
        next.spec.template = tpl;
        let annotations = next.metadata.annotations.get_or_insert_with(BTreeMap::new);
        match to.cause() {
            Some(c) => annotations.insert(CHANGE_CAUSE.into(), c),
            None => annotations.remove(CHANGE_CAUSE),
        };
        next.status = None;
        Ok(next)
    }
}

impl StepKind for RolloutUndo {
    const NAME: &'static str = "k8s.rollout_undo";
    const PERMISSIONS: &'static [crate::vocab::Permission] = {
        use crate::vocab::*;
        &[kube("apps", "deployments", &["get", "update"]), kube("apps", "replicasets", &["list"])]
    };
    const SUMMARY: &'static str = "roll a deployment back to the previous (or a given) revision through its ReplicaSets, as kubectl does";
    const EFFECT: Effect = Effect::Mutate;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "from_revision", ty: "int", help: "the revision rolled back from" },
        Output { name: "to_revision", ty: "int", help: "the revision whose template is now current" },
        Output { name: "revision", ty: "string", help: "the deployment's revision afterwards (a new number, as in kubectl)" },
    ];

    fn check(&self) -> Result<(), String> {
        Target::deployment(&self.target).map(|_| ())
    }

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let kube = client(ctx).await?;
        let name = Target::deployment(&self.target).map_err(StepError::invalid)?;
        let (d, current, to) = self.choose(&kube).await?;
        if to.number == current.number {
            return Ok(Outcome::passed(format!("deployment/{name} is already at revision {}", current.number))
                .output("from_revision", current.number)
                .output("to_revision", to.number)
                .output("revision", current.number.to_string()));
        }
        let next = Self::rolled_back(&d, &to)?;
        kube.api::<Deployment>()
            .replace(&name, &PostParams { field_manager: Some("opsctl".into()), ..PostParams::default() }, &next)
            .await
            .map_err(|e| kube.error(e, &format!("deployment {name}")))?;
        let t = Target { kind: WorkloadKind::Deployment, name: name.clone() };
        let w = after_change(&kube, &t, self.wait, self.wait_timeout).await?;
        Ok(Outcome::passed(format!(
            "deployment/{name} rolled back from revision {} ({}) to the template of revision {} ({}); {}",
            current.number,
            current.images().join(","),
            to.number,
            to.images().join(","),
            w.describe()
        ))
        .value(format!("{} → {}", current.number, to.number))
        .output("from_revision", current.number)
        .output("to_revision", to.number)
        .output("revision", w.revision.unwrap_or_default()))
    }

    async fn plan(&self, ctx: &StepContext) -> Result<String, StepError> {
        let kube = client(ctx).await?;
        let name = Target::deployment(&self.target).map_err(StepError::invalid)?;
        let (d, current, to) = self.choose(&kube).await?;
        if to.number == current.number {
            return Ok(format!("deployment/{name} is already at revision {}: nothing to do", current.number));
        }
        let next = Self::rolled_back(&d, &to)?;
        kube.api::<Deployment>()
            .replace(&name, &PostParams { dry_run: true, field_manager: Some("opsctl".into()) }, &next)
            .await
            .map_err(|e| kube.error(e, &format!("deployment {name}")))?;
        Ok(format!(
            "would roll deployment/{name} back from revision {} ({}) to revision {} ({}) (accepted by the API server's dry run)",
            current.number,
            current.images().join(","),
            to.number,
            to.images().join(",")
        ))
    }
}
