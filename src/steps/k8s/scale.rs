//! `k8s.scale`: one workload's replicas, through the scale subresource; and what
//! `k8s.scale_all` shares with it: the remembered count, patching the scale, and waiting
//! until workloads are rolled out.

use std::time::{Duration as StdDuration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use kube::api::Patch;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

use super::health::WorkloadState;
use super::{Kube, Target, WorkloadKind, client, patch_params};
use crate::duration::Duration;
use crate::kind::{StepContext, StepKind};
use crate::vocab::{Effect, ErrorClass, Outcome, Output, StepError};

/// Where `scale_all` keeps the count it replaced.
pub const PREVIOUS: &str = "opsctl.io/previous-replicas";

pub fn yes() -> bool {
    true
}
pub fn default_wait() -> Duration {
    Duration::from_secs(300)
}

/// The replicas a workload asks for now.
pub async fn replicas_of(kube: &Kube, t: &Target) -> Result<i32, StepError> {
    let what = format!("{} {}", t.kind.as_str(), t.name);
    let scale = match t.kind {
        WorkloadKind::Deployment => kube.api::<Deployment>().get_scale(&t.name).await,
        WorkloadKind::StatefulSet => kube.api::<StatefulSet>().get_scale(&t.name).await,
    }
    .map_err(|e| kube.error(e, &what))?;
    Ok(scale.spec.and_then(|s| s.replicas).unwrap_or(0))
}

/// Sets replicas through the scale subresource.
pub async fn patch_scale(kube: &Kube, t: &Target, replicas: u32, dry_run: bool) -> Result<(), StepError> {
    let what = format!("{} {}", t.kind.as_str(), t.name);
    let pp = patch_params(dry_run);
    let patch = json!({"spec": {"replicas": replicas}});
    match t.kind {
        WorkloadKind::Deployment => kube.api::<Deployment>().patch_scale(&t.name, &pp, &Patch::Merge(&patch)).await.map(|_| ()),
        WorkloadKind::StatefulSet => kube.api::<StatefulSet>().patch_scale(&t.name, &pp, &Patch::Merge(&patch)).await.map(|_| ()),
    }
    .map_err(|e| kube.error(e, &what))
}

/// Polls until every target is rolled out, or the timeout passes (then fails saying which
/// is not and how far it got).
pub async fn wait_rolled_out(kube: &Kube, targets: &[Target], timeout: StdDuration) -> Result<Vec<WorkloadState>, StepError> {
    let start = Instant::now();
    let mut delay = StdDuration::from_millis(100);
    loop {
        let mut states = Vec::with_capacity(targets.len());
        for t in targets {
            states.push(WorkloadState::fetch(kube, t).await?);
        }
        let pending: Vec<&WorkloadState> = states.iter().filter(|s| !s.complete()).collect();
        if pending.is_empty() {
            return Ok(states);
        }
        if let Some(stuck) = pending.iter().find(|s| s.stuck.is_some()) {
            return Err(StepError::new(ErrorClass::Failed, format!("rollout cannot finish: {}", stuck.describe())));
        }
        if start.elapsed() >= timeout {
            let what: Vec<String> = pending.iter().map(|s| s.describe()).collect();
            return Err(StepError::new(
                ErrorClass::Timeout,
                format!("not rolled out after {}: {}", Duration(timeout), what.join("; ")),
            ));
        }
        tokio::time::sleep(delay.min(timeout.saturating_sub(start.elapsed()))).await;
        delay = (delay * 2).min(StdDuration::from_secs(2));
    }
}

/// Sets the replicas of a Deployment or StatefulSet (the scale subresource), then waits
/// until they are ready.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Scale {
    /// `deployment/NAME` (or `NAME`), `statefulset/NAME`.
    pub target: String,
    pub replicas: u32,
    /// Wait until the workload is rolled out at the new count. Default true.
    #[serde(default = "yes")]
    pub wait: bool,
    /// How long to wait. Default 5m.
    #[serde(default = "default_wait")]
    pub wait_timeout: Duration,
}

impl StepKind for Scale {
    const NAME: &'static str = "k8s.scale";
    const PERMISSIONS: &'static [crate::vocab::Permission] = {
        use crate::vocab::*;
        &[kube("apps", "deployments", &["get"]), kube("apps", "statefulsets", &["get"]), kube("apps", "deployments/scale", &["get", "patch"]), kube("apps", "statefulsets/scale", &["get", "patch"]), kube("apps", "replicasets", &["list"]), kube("", "pods", &["list"])]
    };
    const SUMMARY: &'static str = "set a deployment's or statefulset's replicas (plan shows before → after), then wait until ready";
    const EFFECT: Effect = Effect::Mutate;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "previous", ty: "int", help: "the replicas before" },
        Output { name: "replicas", ty: "int", help: "the replicas now" },
    ];

    fn check(&self) -> Result<(), String> {
        Target::parse(&self.target).map(|_| ())
    }

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let kube = client(ctx).await?;
        let t = Target::parse(&self.target).map_err(StepError::invalid)?;
        let previous = replicas_of(&kube, &t).await?;
        if previous != self.replicas as i32 {
            patch_scale(&kube, &t, self.replicas, false).await?;
        }
        let mut message = if previous == self.replicas as i32 { format!("{t} already at {previous} replicas") } else { format!("{t} scaled {previous} → {}", self.replicas) };
        if self.wait {
            let states = wait_rolled_out(&kube, std::slice::from_ref(&t), self.wait_timeout.std()).await?;
            message.push_str(&format!("; {}", states[0].describe()));
        }
        Ok(Outcome::passed(message).value(format!("{previous} → {}", self.replicas)).output("previous", previous).output("replicas", self.replicas))
    }

    async fn plan(&self, ctx: &StepContext) -> Result<String, StepError> {
        let kube = client(ctx).await?;
        let t = Target::parse(&self.target).map_err(StepError::invalid)?;
        let previous = replicas_of(&kube, &t).await?;
        if previous == self.replicas as i32 {
            return Ok(format!("{t} is already at {previous} replicas: nothing to do"));
        }
        // The API server checks the change without making it.
        patch_scale(&kube, &t, self.replicas, true).await?;
        Ok(format!("would scale {t} {previous} → {} (accepted by the API server's dry run)", self.replicas))
    }
}
