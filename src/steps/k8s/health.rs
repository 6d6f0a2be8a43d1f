//! What the health kinds share (`k8s.nodes_ready`, `k8s.pods_healthy`,
//! `k8s.deployment_ready`, `k8s.workloads`) and others use: listing page by page, a short
//! list of examples for messages, and a workload's rollout state as `kubectl rollout status`
//! judges it.

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use kube::api::ListParams;

use super::{Kube, Target, WorkloadKind};
use crate::vocab::StepError;

/// How many objects one list request asks for; lists are read page by page, so memory
/// stays flat however large the namespace.
pub const PAGE: u32 = 500;

/// Every page of a list, handed to `each` as it arrives.
pub async fn for_each_page<K, F>(api: &kube::Api<K>, params: ListParams, kube: &Kube, what: &str, mut each: F) -> Result<(), StepError>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    F: FnMut(Vec<K>),
{
    let mut params = params.limit(PAGE);
    loop {
        let page = api.list(&params).await.map_err(|e| kube.error(e, what))?;
        let next = page.metadata.continue_.clone().filter(|c| !c.is_empty());
        each(page.items);
        match next {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(()),
        }
    }
}

pub fn list_examples(names: &[String], max: usize) -> String {
    let mut s = names.iter().take(max).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > max {
        s.push_str(&format!(" and {} more", names.len() - max));
    }
    s
}

/// A workload's rollout state, as `kubectl rollout status` judges it.
#[derive(Debug, Clone)]
pub struct WorkloadState {
    pub target: Target,
    pub desired: i32,
    pub ready: i32,
    pub updated: i32,
    pub available: i32,
    /// Pods of every revision (`status.replicas`): more than `updated` means old pods
    /// are still there.
    pub total: i32,
    /// The controller has seen the latest spec.
    pub observed: bool,
    /// A StatefulSet whose pods are not all at the update revision yet.
    pub revision_pending: bool,
    /// Why it cannot finish, when the controller says so (ProgressDeadlineExceeded).
    pub stuck: Option<String>,
    pub revision: Option<String>,
    pub images: Vec<String>,
}

impl WorkloadState {
    /// As `kubectl rollout status` decides: the latest spec observed, every replica
    /// updated, no old replica left, every updated replica available.
    pub fn complete(&self) -> bool {
        self.observed
            && self.stuck.is_none()
            && !self.revision_pending
            && self.updated >= self.desired
            && self.total <= self.updated
            && self.available >= self.updated
            && self.ready >= self.desired
    }

    pub fn describe(&self) -> String {
        let mut s = format!("{}: {}/{} ready, {} updated, {} available", self.target, self.ready, self.desired, self.updated, self.available);
        if self.total > self.updated {
            s.push_str(&format!(", {} old pending termination", self.total - self.updated));
        }
        if !self.observed {
            s.push_str(", new spec not yet observed");
        }
        if let Some(why) = &self.stuck {
            s.push_str(&format!(", {why}"));
        }
        s
    }

    pub fn of_deployment(d: &Deployment) -> WorkloadState {
        let name = d.metadata.name.clone().unwrap_or_default();
        let spec = &d.spec;
        let status = d.status.clone().unwrap_or_default();
        let generation = d.metadata.generation.unwrap_or(0);
        let stuck = status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_.as_deref() == Some("Progressing") && c.reason.as_deref() == Some("ProgressDeadlineExceeded"))
            .map(|c| format!("progress deadline exceeded ({})", c.message.clone().unwrap_or_default()));
        WorkloadState {
            target: Target { kind: WorkloadKind::Deployment, name },
            desired: spec.replicas.unwrap_or(1),
            ready: status.ready_replicas.unwrap_or(0),
            updated: status.updated_replicas.unwrap_or(0),
            available: status.available_replicas.unwrap_or(0),
            total: status.replicas.unwrap_or(0),
            observed: status.observed_generation.unwrap_or(0) >= generation,
            revision_pending: false,
            stuck,
            revision: d.metadata.annotations.as_ref().and_then(|a| a.get("deployment.kubernetes.io/revision").cloned()),
            images: spec.template.spec.as_ref().map(|p| p.containers.iter().filter_map(|c| c.image.clone()).collect()).unwrap_or_default(),
        }
    }

    pub fn of_statefulset(s: &StatefulSet) -> WorkloadState {
        let name = s.metadata.name.clone().unwrap_or_default();
        let spec = &s.spec;
        let status = s.status.clone().unwrap_or_default();
        let generation = s.metadata.generation.unwrap_or(0);
        WorkloadState {
            target: Target { kind: WorkloadKind::StatefulSet, name },
            desired: spec.replicas.unwrap_or(1),
            ready: status.ready_replicas.unwrap_or(0),
            updated: status.updated_replicas.unwrap_or(0),
            available: status.available_replicas.unwrap_or(0),
            total: status.replicas,
            observed: status.observed_generation.unwrap_or(0) >= generation,
            revision_pending: status.update_revision.is_some() && status.current_revision != status.update_revision,
            stuck: None,
            revision: status.update_revision.clone(),
            images: spec.template.spec.as_ref().map(|p| p.containers.iter().filter_map(|c| c.image.clone()).collect()).unwrap_or_default(),
        }
    }

    pub async fn fetch(kube: &Kube, target: &Target) -> Result<WorkloadState, StepError> {
        match target.kind {
            WorkloadKind::Deployment => {
                let d = kube.api::<Deployment>().get(&target.name).await.map_err(|e| kube.error(e, &format!("deployment {}", target.name)))?;
                Ok(WorkloadState::of_deployment(&d))
            }
            WorkloadKind::StatefulSet => {
                let s = kube.api::<StatefulSet>().get(&target.name).await.map_err(|e| kube.error(e, &format!("statefulset {}", target.name)))?;
                Ok(WorkloadState::of_statefulset(&s))
            }
        }
    }
}
