//! What the rollout kinds share (`k8s.set_image`, `k8s.set_resources`,
//! `k8s.rollout_restart`, `k8s.rollout_status`, `k8s.rollout_history`, `k8s.rollout_undo`):
//! reading and patching a workload's pod template, change causes, following a rollout, and
//! a Deployment's revisions.
//!
//! Changes are strategic merge patches of the pod template, as kubectl makes them, with
//! `kubernetes.io/change-cause` set so the rollout history says who changed what. History
//! and undo work as kubectl's do: through the Deployment's ReplicaSets and their
//! `deployment.kubernetes.io/revision` annotations; undo writes the chosen ReplicaSet's pod
//! template back into the Deployment (a replace with the resourceVersion read, so a
//! concurrent change is a 409, not lost).

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use kube::api::{ListParams, Patch};
use serde_json::json;

use super::health::WorkloadState;
use super::scale::wait_rolled_out;
use super::{Kube, Target, WorkloadKind, patch_workload};
use crate::duration::Duration;
use crate::kind::StepContext;
use crate::vocab::StepError;

pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";

pub fn default_wait() -> Duration {
    Duration::from_secs(300)
}

/// A workload's pod template, read for a change.
pub async fn template(kube: &Kube, t: &Target) -> Result<PodTemplateSpec, StepError> {
    let what = format!("{} {}", t.kind.as_str(), t.name);
    match t.kind {
        WorkloadKind::Deployment => kube.api::<Deployment>().get(&t.name).await.map(|d| Some(d.spec.template)),
        WorkloadKind::StatefulSet => kube.api::<StatefulSet>().get(&t.name).await.map(|s| Some(s.spec.template)),
    }
    .map_err(|e| kube.error(e, &what))?
    .ok_or_else(|| StepError::error(format!("{t} has no spec")))
}

/// The named container of a template, or an error listing the ones there are.
pub fn container<'a>(tpl: &'a PodTemplateSpec, t: &Target, name: &str) -> Result<&'a k8s_openapi::api::core::v1::Container, StepError> {
    let containers = tpl.spec.as_ref().map(|s| s.containers.as_slice()).unwrap_or_default();
    containers.iter().find(|c| c.name == name).ok_or_else(|| {
        let names: Vec<&str> = containers.iter().map(|c| c.name.as_str()).collect();
        let mut msg = format!("{t} has no container `{name}`");
        if let Some(s) = crate::diagnostic::did_you_mean(name, names.iter().copied()) {
            msg.push_str(&format!("; did you mean `{s}`?"));
        }
        msg.push_str(&format!(" (containers: {})", names.join(", ")));
        StepError::invalid(msg)
    })
}

/// The container named, or the pod template's only container when no name is given.
pub fn container_or_only<'a>(tpl: &'a PodTemplateSpec, t: &Target, name: Option<&str>) -> Result<&'a k8s_openapi::api::core::v1::Container, StepError> {
    if let Some(name) = name {
        return container(tpl, t, name);
    }
    let containers = tpl.spec.as_ref().map(|s| s.containers.as_slice()).unwrap_or_default();
    match containers {
        [only] => Ok(only),
        _ => Err(StepError::invalid(format!(
            "{t} has {} containers ({}); name the one to change with `container:`",
            containers.len(),
            containers.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
        ))),
    }
}

pub async fn patch_template(kube: &Kube, t: &Target, patch: &serde_json::Value, dry_run: bool) -> Result<(), StepError> {
    patch_workload(kube, t, &Patch::Strategic(patch), dry_run).await
}

/// What `kubernetes.io/change-cause` records: the runbook, the run and the change.
pub fn change_cause(ctx: &StepContext, what: &str) -> String {
    format!("opsctl {} (run {}): {what}", ctx.run.runbook, ctx.run.run_id)
}

/// Restarts a workload's pods through a rollout, as `kubectl rollout restart` does (the
/// `kubectl.kubernetes.io/restartedAt` template annotation), recording `cause` if given.
pub async fn restart(kube: &Kube, t: &Target, cause: Option<String>, dry_run: bool) -> Result<(), StepError> {
    let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let mut patch = json!({"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": now}}}}});
    if let Some(c) = cause {
        patch["metadata"] = json!({"annotations": {CHANGE_CAUSE: c}});
    }
    patch_template(kube, t, &patch, dry_run).await
}

/// After a change: wait if asked, and say where the rollout stands.
pub async fn after_change(kube: &Kube, t: &Target, wait: bool, timeout: Duration) -> Result<WorkloadState, StepError> {
    if wait {
        Ok(wait_rolled_out(kube, std::slice::from_ref(t), timeout.std()).await?.remove(0))
    } else {
        WorkloadState::fetch(kube, t).await
    }
}

/// One revision of a Deployment.
#[derive(Clone, Debug)]
pub struct Revision {
    pub number: i64,
    pub replica_set: ReplicaSet,
}

impl Revision {
    pub fn images(&self) -> Vec<String> {
        self.replica_set.spec.template.as_ref().and_then(|t| t.spec.as_ref()).map(|p| p.containers.iter().filter_map(|c| c.image.clone()).collect()).unwrap_or_default()
    }
    pub fn cause(&self) -> Option<String> {
        self.replica_set.metadata.annotations.as_ref().and_then(|a| a.get(CHANGE_CAUSE).cloned())
    }
}

/// A Deployment and its revisions, oldest first (its ReplicaSets, as kubectl finds them:
/// matching the selector and owned by it).
pub async fn revisions(kube: &Kube, name: &str) -> Result<(Deployment, Vec<Revision>), StepError> {
    let what = format!("deployment {name}");
    let d = kube.api::<Deployment>().get(name).await.map_err(|e| kube.error(e, &what))?;
    let uid = d.metadata.uid.clone().unwrap_or_default();
    let selector = super::match_labels(d.spec.selector.match_labels.as_ref());
    let mut out = Vec::new();
    super::health::for_each_page(&kube.api::<ReplicaSet>(), ListParams::default().labels(&selector), kube, "replicasets", |rss| {
        for rs in rss {
            let owned = rs.metadata.owner_references.iter().flatten().any(|o| o.uid == uid);
            let number = rs.metadata.annotations.as_ref().and_then(|a| a.get(REVISION)).and_then(|r| r.parse().ok());
            if let (true, Some(number)) = (owned, number) {
                out.push(Revision { number, replica_set: rs });
            }
        }
    })
    .await?;
    out.sort_by_key(|r| r.number);
    Ok((d, out))
}
