//! `k8s.scale_all`: every Deployment and StatefulSet of the namespace (or a selector) to a
//! count — to 0 for a restore — and back.
//!
//! It records each workload's count before it changes it in the annotation
//! `opsctl.io/previous-replicas`, in the same request as the change; `restore: true` scales
//! each annotated workload back and removes the annotation. The counts therefore survive
//! a crash between the two steps, and a second `scale_all` to 0 does not overwrite them.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use kube::api::Patch;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

use super::health::for_each_page;
use super::scale::{default_wait, PREVIOUS, wait_rolled_out, yes};
use super::{Kube, Target, WorkloadKind, check_selector, client, list_params, patch_workload};
use crate::duration::Duration;
use crate::kind::{StepContext, StepKind};
use crate::vocab::{Effect, Outcome, Output, StepError};

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
    const PERMISSIONS: &'static [crate::vocab::Permission] = {
        use crate::vocab::*;
        &[kube("apps", "deployments", &["get", "list", "patch"]), kube("apps", "statefulsets", &["get", "list", "patch"]), kube("apps", "deployments/scale", &["patch"]), kube("apps", "statefulsets/scale", &["patch"])]
    };
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
