//! Changing a workload's pod template and following the rollout: `k8s.set_image`,
//! `k8s.set_resources`, `k8s.rollout_restart`, `k8s.rollout_status`,
//! `k8s.rollout_history`, `k8s.rollout_undo`.
//!
//! Changes are strategic merge patches of the pod template, as kubectl makes them, with
//! `kubernetes.io/change-cause` set so the rollout history says who changed what. History
//! and undo work as kubectl's do: through the Deployment's ReplicaSets and their
//! `deployment.kubernetes.io/revision` annotations; undo writes the chosen ReplicaSet's pod
//! template back into the Deployment (a replace with the resourceVersion read, so a
//! concurrent change is a 409, not lost).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use kube::api::{ListParams, Patch, PostParams};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

use super::health::WorkloadState;
use super::{Kube, Target, WorkloadKind, client, patch_workload};
use super::scale::wait_rolled_out;
use crate::duration::Duration;
use crate::kind::{StepContext, StepKind};
use crate::vocab::{Effect, Outcome, Output, StepError, Verdict};

pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";

fn default_wait() -> Duration {
    Duration::from_secs(300)
}

/// A workload's pod template, read for a change.
async fn template(kube: &Kube, t: &Target) -> Result<PodTemplateSpec, StepError> {
    let what = format!("{} {}", t.kind.as_str(), t.name);
    match t.kind {
        WorkloadKind::Deployment => kube.api::<Deployment>().get(&t.name).await.map(|d| Some(d.spec.template)),
        WorkloadKind::StatefulSet => kube.api::<StatefulSet>().get(&t.name).await.map(|s| Some(s.spec.template)),
    }
    .map_err(|e| kube.error(e, &what))?
    .ok_or_else(|| StepError::error(format!("{t} has no spec")))
}

/// The named container of a template, or an error listing the ones there are.
fn container<'a>(tpl: &'a PodTemplateSpec, t: &Target, name: &str) -> Result<&'a k8s_openapi::api::core::v1::Container, StepError> {
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

async fn patch_template(kube: &Kube, t: &Target, patch: &serde_json::Value, dry_run: bool) -> Result<(), StepError> {
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
async fn after_change(kube: &Kube, t: &Target, wait: bool, timeout: Duration) -> Result<WorkloadState, StepError> {
    if wait {
        Ok(wait_rolled_out(kube, std::slice::from_ref(t), timeout.std()).await?.remove(0))
    } else {
        WorkloadState::fetch(kube, t).await
    }
}

/// Sets a container's image (`kubectl set image`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetImage {
    /// `deployment/NAME` (or `NAME`), `statefulset/NAME`.
    pub target: String,
    /// The container whose image changes.
    pub container: String,
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
        let previous = container(&tpl, &t, &self.container)?.image.clone().unwrap_or_default();
        if previous == self.image {
            let w = WorkloadState::fetch(&kube, &t).await?;
            return Ok(Outcome::passed(format!("{t} container {} already runs {}", self.container, self.image))
                .output("previous_image", previous)
                .output("revision", w.revision.unwrap_or_default()));
        }
        let cause = change_cause(ctx, &format!("set image {}={}", self.container, self.image));
        let patch = json!({"metadata": {"annotations": {CHANGE_CAUSE: cause}},
                           "spec": {"template": {"spec": {"containers": [{"name": self.container, "image": self.image}]}}}});
        patch_template(&kube, &t, &patch, false).await?;
        let w = after_change(&kube, &t, self.wait, self.wait_timeout).await?;
        Ok(Outcome::passed(format!("{t} container {}: {previous} → {}; {}", self.container, self.image, w.describe()))
            .value(self.image.clone())
            .output("previous_image", previous)
            .output("revision", w.revision.unwrap_or_default()))
    }

    async fn plan(&self, ctx: &StepContext) -> Result<String, StepError> {
        let kube = client(ctx).await?;
        let t = Target::parse(&self.target).map_err(StepError::invalid)?;
        let tpl = template(&kube, &t).await?;
        let previous = container(&tpl, &t, &self.container)?.image.clone().unwrap_or_default();
        if previous == self.image {
            return Ok(format!("{t} container {} already runs {}: nothing to do", self.container, self.image));
        }
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": self.container, "image": self.image}]}}}});
        patch_template(&kube, &t, &patch, true).await?;
        Ok(format!("would set {t} container {}: {previous} → {} (accepted by the API server's dry run)", self.container, self.image))
    }
}

/// CPU and memory for `set_resources`.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// CPU, Kubernetes quantity: `250m`, `1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    /// Memory, Kubernetes quantity: `512Mi`, `2Gi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
}

fn check_quantity(field: &str, q: &str) -> Result<(), String> {
    let re = regex::Regex::new(r"^([0-9]+(\.[0-9]+)?|\.[0-9]+)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$").expect("regex");
    if re.is_match(q) { Ok(()) } else { Err(format!("`{field}` `{q}` is not a Kubernetes quantity (e.g. `250m`, `1`, `512Mi`, `2Gi`)")) }
}

/// Sets a container's resource requests and limits (`kubectl set resources`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetResources {
    /// `deployment/NAME` (or `NAME`), `statefulset/NAME`.
    pub target: String,
    pub container: String,
    #[serde(default)]
    pub requests: Option<Resources>,
    #[serde(default)]
    pub limits: Option<Resources>,
    /// Wait until the rollout completes. Default false.
    #[serde(default)]
    pub wait: bool,
    /// How long to wait. Default 5m.
    #[serde(default = "default_wait")]
    pub wait_timeout: Duration,
}

impl SetResources {
    fn describe(r: &Option<BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>) -> String {
        match r {
            Some(m) if !m.is_empty() => m.iter().map(|(k, v)| format!("{k}={}", v.0)).collect::<Vec<_>>().join(","),
            _ => "none".into(),
        }
    }

    fn wanted(&self) -> String {
        let side = |r: &Option<Resources>| match r {
            Some(r) => [r.cpu.as_ref().map(|c| format!("cpu={c}")), r.memory.as_ref().map(|m| format!("memory={m}"))].into_iter().flatten().collect::<Vec<_>>().join(","),
            None => "unchanged".into(),
        };
        format!("requests {}, limits {}", side(&self.requests), side(&self.limits))
    }

    fn patch(&self, cause: Option<String>) -> serde_json::Value {
        let mut resources = serde_json::Map::new();
        if let Some(r) = &self.requests {
            resources.insert("requests".into(), serde_json::to_value(r).unwrap_or_default());
        }
        if let Some(l) = &self.limits {
            resources.insert("limits".into(), serde_json::to_value(l).unwrap_or_default());
        }
        let mut p = json!({"spec": {"template": {"spec": {"containers": [{"name": self.container, "resources": resources}]}}}});
        if let Some(c) = cause {
            p["metadata"] = json!({"annotations": {CHANGE_CAUSE: c}});
        }
        p
    }

    async fn current(&self, kube: &Kube, t: &Target) -> Result<String, StepError> {
        let tpl = template(kube, t).await?;
        let c = container(&tpl, t, &self.container)?;
        let r = c.resources.clone().unwrap_or_default();
        Ok(format!("requests {}, limits {}", Self::describe(&r.requests), Self::describe(&r.limits)))
    }
}

impl StepKind for SetResources {
    const NAME: &'static str = "k8s.set_resources";
    const SUMMARY: &'static str = "set a container's CPU/memory requests and limits (plan shows before → after)";
    const EFFECT: Effect = Effect::Mutate;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "previous", ty: "string", help: "requests and limits before" },
        Output { name: "revision", ty: "string", help: "the rollout revision afterwards" },
    ];

    fn check(&self) -> Result<(), String> {
        Target::parse(&self.target)?;
        if self.requests.is_none() && self.limits.is_none() {
            return Err("give `requests`, `limits` or both".into());
        }
        for (side, r) in [("requests", &self.requests), ("limits", &self.limits)] {
            if let Some(r) = r {
                if r.cpu.is_none() && r.memory.is_none() {
                    return Err(format!("`{side}` sets neither cpu nor memory"));
                }
                if let Some(c) = &r.cpu {
                    check_quantity(&format!("{side}.cpu"), c)?;
                }
                if let Some(m) = &r.memory {
                    check_quantity(&format!("{side}.memory"), m)?;
                }
            }
        }
        Ok(())
    }

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let kube = client(ctx).await?;
        let t = Target::parse(&self.target).map_err(StepError::invalid)?;
        let previous = self.current(&kube, &t).await?;
        let cause = change_cause(ctx, &format!("set resources {} {}", self.container, self.wanted()));
        patch_template(&kube, &t, &self.patch(Some(cause)), false).await?;
        let now = self.current(&kube, &t).await?;
        let w = after_change(&kube, &t, self.wait, self.wait_timeout).await?;
        Ok(Outcome::passed(format!("{t} container {}: {previous} → {now}; {}", self.container, w.describe()))
            .output("previous", previous)
            .output("revision", w.revision.unwrap_or_default()))
    }

    async fn plan(&self, ctx: &StepContext) -> Result<String, StepError> {
        let kube = client(ctx).await?;
        let t = Target::parse(&self.target).map_err(StepError::invalid)?;
        let previous = self.current(&kube, &t).await?;
        patch_template(&kube, &t, &self.patch(None), true).await?;
        Ok(format!("would set {t} container {}: {previous} → {} (accepted by the API server's dry run)", self.container, self.wanted()))
    }
}

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

/// Waits until a rollout completes (`kubectl rollout status`), or fails at the timeout
/// saying how far it got; fails at once when the controller reports the progress deadline
/// exceeded.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RolloutStatus {
    /// `deployment/NAME` (or `NAME`), `statefulset/NAME`.
    pub target: String,
    /// How long to wait. Default 5m.
    #[serde(default = "default_wait")]
    pub timeout: Duration,
}

impl StepKind for RolloutStatus {
    const NAME: &'static str = "k8s.rollout_status";
    const SUMMARY: &'static str = "wait until a rollout completes or times out, saying how far it got";
    const EFFECT: Effect = Effect::Read;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "revision", ty: "string", help: "the rollout revision" },
        Output { name: "ready", ty: "int", help: "replicas ready" },
    ];

    fn check(&self) -> Result<(), String> {
        Target::parse(&self.target).map(|_| ())
    }

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let kube = client(ctx).await?;
        let t = Target::parse(&self.target).map_err(StepError::invalid)?;
        let w = wait_rolled_out(&kube, std::slice::from_ref(&t), self.timeout.std()).await?.remove(0);
        Ok(Outcome::passed(format!("rolled out: {}", w.describe()))
            .value(format!("{}/{}", w.ready, w.desired))
            .output("revision", w.revision.unwrap_or_default())
            .output("ready", w.ready))
    }
}

/// One revision of a Deployment.
#[derive(Clone, Debug)]
struct Revision {
    number: i64,
    replica_set: ReplicaSet,
}

impl Revision {
    fn images(&self) -> Vec<String> {
        self.replica_set.spec.template.as_ref().and_then(|t| t.spec.as_ref()).map(|p| p.containers.iter().filter_map(|c| c.image.clone()).collect()).unwrap_or_default()
    }
    fn cause(&self) -> Option<String> {
        self.replica_set.metadata.annotations.as_ref().and_then(|a| a.get(CHANGE_CAUSE).cloned())
    }
}

/// A Deployment and its revisions, oldest first (its ReplicaSets, as kubectl finds them:
/// matching the selector and owned by it).
async fn revisions(kube: &Kube, name: &str) -> Result<(Deployment, Vec<Revision>), StepError> {
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

/// Lists a Deployment's revisions (`kubectl rollout history`): number, images, change cause.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RolloutHistory {
    /// `deployment/NAME` (or `NAME`).
    pub target: String,
}

impl StepKind for RolloutHistory {
    const NAME: &'static str = "k8s.rollout_history";
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
