//! `k8s.scale` and `k8s.scale_all`: replicas of one workload, or of a whole namespace
//! (to 0 for a restore, and back).
//!
//! `scale_all` records each workload's count before it changes it in the annotation
//! `opsctl.io/previous-replicas`, in the same request as the change; `restore: true` scales
//! each annotated workload back and removes the annotation. The counts therefore survive
//! a crash between the two steps, and a second `scale_all` to 0 does not overwrite them.

use std::collections::BTreeMap;
use std::time::{Duration as StdDuration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use kube::api::Patch;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

use super::health::{WorkloadState, for_each_page};
use super::{Kube, Target, WorkloadKind, check_selector, client, list_params, patch_params, patch_workload};
use crate::duration::Duration;
use crate::kind::{StepContext, StepKind};
use crate::vocab::{Effect, ErrorClass, Outcome, Output, StepError};

/// Where `scale_all` keeps the count it replaced.
pub const PREVIOUS: &str = "opsctl.io/previous-replicas";

fn yes() -> bool {
    true
}
fn default_wait() -> Duration {
    Duration::from_secs(300)
}

/// The replicas a workload asks for now.
async fn replicas_of(kube: &Kube, t: &Target) -> Result<i32, StepError> {
    let what = format!("{} {}", t.kind.as_str(), t.name);
    let scale = match t.kind {
        WorkloadKind::Deployment => kube.api::<Deployment>().get_scale(&t.name).await,
        WorkloadKind::StatefulSet => kube.api::<StatefulSet>().get_scale(&t.name).await,
    }
    .map_err(|e| kube.error(e, &what))?;
    Ok(scale.spec.and_then(|s| s.replicas).unwrap_or(0))
}

/// Sets replicas through the scale subresource.
async fn patch_scale(kube: &Kube, t: &Target, replicas: u32, dry_run: bool) -> Result<(), StepError> {
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

/// Scales every Deployment and StatefulSet of the namespace (or those matching `selector`)
/// to `replicas`, remembering each previous count; or, with `restore: true`, back to the
/// remembered counts.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScaleAll {
    /// The count to scale to, e.g. 0 before a restore.
    #[serde(default)]
    pub replicas: Option<u32>,
    /// Scale each workload back to the count remembered by an earlier `scale_all`.
    #[serde(default)]
    pub restore: bool,
    /// Only workloads with these labels.
    #[serde(default)]
    pub selector: Option<String>,
    /// Wait until every workload is rolled out at its new count. Default true.
    #[serde(default = "yes")]
    pub wait: bool,
    /// How long to wait. Default 5m.
    #[serde(default = "default_wait")]
    pub wait_timeout: Duration,
}

struct Workload {
    target: Target,
    replicas: i32,
    remembered: Option<i32>,
}

async fn workloads(kube: &Kube, selector: Option<&str>) -> Result<Vec<Workload>, StepError> {
    let params = list_params(selector);
    let remembered = |a: &Option<BTreeMap<String, String>>| a.as_ref().and_then(|a| a.get(PREVIOUS)).and_then(|v| v.parse().ok());
    let mut out = Vec::new();
    for_each_page(&kube.api::<Deployment>(), params.clone(), kube, "deployments", |ds| {
        out.extend(ds.into_iter().map(|d| Workload {
            target: Target { kind: WorkloadKind::Deployment, name: d.metadata.name.clone().unwrap_or_default() },
            replicas: d.spec.replicas.unwrap_or(1),
            remembered: remembered(&d.metadata.annotations),
        }))
    })
    .await?;
    for_each_page(&kube.api::<StatefulSet>(), params, kube, "statefulsets", |ss| {
        out.extend(ss.into_iter().map(|s| Workload {
            target: Target { kind: WorkloadKind::StatefulSet, name: s.metadata.name.clone().unwrap_or_default() },
            replicas: s.spec.replicas.unwrap_or(1),
            remembered: remembered(&s.metadata.annotations),
        }))
    })
    .await?;
    Ok(out)
}

impl ScaleAll {
    /// (target, from, to, patch) for each workload that changes.
    fn changes(&self, list: &[Workload]) -> Vec<(Target, i32, i32, serde_json::Value)> {
        let mut out = Vec::new();
        for w in list {
            if self.restore {
                if let Some(r) = w.remembered {
                    out.push((w.target.clone(), w.replicas, r, json!({"metadata": {"annotations": {PREVIOUS: null}}, "spec": {"replicas": r}})));
                }
            } else if let Some(n) = self.replicas {
                let n = n as i32;
                if w.replicas != n {
                    // Keep the first remembered count: scaling to 0 twice must not forget it.
                    let keep = w.remembered.unwrap_or(w.replicas);
                    out.push((w.target.clone(), w.replicas, n, json!({"metadata": {"annotations": {PREVIOUS: keep.to_string()}}, "spec": {"replicas": n}})));
                }
            }
        }
        out
    }
}

impl StepKind for ScaleAll {
    const NAME: &'static str = "k8s.scale_all";
    const SUMMARY: &'static str = "scale every deployment and statefulset of the namespace (e.g. to 0 for a restore), remembering the counts; `restore: true` scales back";
    const EFFECT: Effect = Effect::Mutate;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "previous", ty: "map", help: "`kind/name` → replicas before, for each workload changed" },
        Output { name: "changed", ty: "int", help: "how many workloads changed" },
    ];

    fn check(&self) -> Result<(), String> {
        match (self.replicas, self.restore) {
            (Some(_), true) => return Err("give either `replicas` or `restore: true`, not both".into()),
            (None, false) => return Err("give `replicas` (e.g. 0) or `restore: true`".into()),
            _ => {}
        }
        self.selector.as_deref().map_or(Ok(()), check_selector)
    }

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let kube = client(ctx).await?;
        let list = workloads(&kube, self.selector.as_deref()).await?;
        let changes = self.changes(&list);
        let mut previous = serde_json::Map::new();
        let mut lines = Vec::new();
        for (t, from, to, patch) in &changes {
            patch_workload(&kube, t, &Patch::Merge(patch), false).await?;
            previous.insert(t.to_string(), json!(from));
            lines.push(format!("{t} {from} → {to}"));
        }
        let targets: Vec<Target> = changes.iter().map(|(t, ..)| t.clone()).collect();
        if self.wait && !targets.is_empty() {
            wait_rolled_out(&kube, &targets, self.wait_timeout.std()).await?;
        }
        let message = if changes.is_empty() {
            if self.restore { format!("no workload in namespace {} has a remembered count", kube.namespace) } else { format!("every workload in namespace {} is already at {}", kube.namespace, self.replicas.unwrap_or(0)) }
        } else {
            format!("scaled {} workloads: {}", changes.len(), lines.join(", "))
        };
        Ok(Outcome::passed(message).value(format!("{} changed", changes.len())).output("previous", previous).output("changed", changes.len()))
    }

    async fn plan(&self, ctx: &StepContext) -> Result<String, StepError> {
        let kube = client(ctx).await?;
        let list = workloads(&kube, self.selector.as_deref()).await?;
        let changes = self.changes(&list);
        if changes.is_empty() {
            return Ok(if self.restore { "no workload has a remembered count: nothing to restore".into() } else { "every workload is already at that count: nothing to do".into() });
        }
        for (t, _, _, patch) in &changes {
            patch_workload(&kube, t, &Patch::Merge(patch), true).await?;
        }
        let lines: Vec<String> = changes.iter().map(|(t, from, to, _)| format!("{t} {from} → {to}")).collect();
        Ok(format!("would scale {} workloads: {} (accepted by the API server's dry run)", changes.len(), lines.join(", ")))
    }
}
