//! `k8s.nodes_ready`, `k8s.pods_healthy`, `k8s.deployment_ready`, `k8s.workloads`: what
//! `kubectl get nodes`, `get pods`, `rollout status` and `get deploy,sts` tell an operator.

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::ListParams;
use schemars::JsonSchema;
use serde::Deserialize;

use super::{Kube, Target, WorkloadKind, check_selector, client};
use crate::kind::{StepContext, StepKind};
use crate::vocab::{Effect, Outcome, Output, StepError, Verdict};

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

fn list_examples(names: &[String], max: usize) -> String {
    let mut s = names.iter().take(max).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > max {
        s.push_str(&format!(" and {} more", names.len() - max));
    }
    s
}

/// Every node (or those matching `selector`) is Ready; cordoned nodes and nodes under
/// memory, disk or PID pressure warn.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NodesReady {
    /// Only nodes with these labels (`node-role.kubernetes.io/worker`, `pool=general`).
    #[serde(default)]
    pub selector: Option<String>,
}

impl StepKind for NodesReady {
    const NAME: &'static str = "k8s.nodes_ready";
    const SUMMARY: &'static str = "every node Ready; cordoned nodes and memory/disk/PID pressure warn";
    const EFFECT: Effect = Effect::Read;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "total", ty: "int", help: "nodes checked" },
        Output { name: "ready", ty: "int", help: "nodes Ready" },
        Output { name: "not_ready", ty: "list", help: "nodes not Ready" },
        Output { name: "cordoned", ty: "list", help: "nodes marked unschedulable" },
    ];

    fn check(&self) -> Result<(), String> {
        self.selector.as_deref().map_or(Ok(()), check_selector)
    }

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let kube = client(ctx).await?;
        let api = kube.cluster_api::<Node>();
        let params = super::list_params(self.selector.as_deref());
        let (mut total, mut not_ready, mut cordoned, mut pressure) = (0usize, Vec::new(), Vec::new(), Vec::new());
        for_each_page(&api, params, &kube, "nodes", |nodes| {
            for n in nodes {
                total += 1;
                let name = n.metadata.name.clone().unwrap_or_default();
                let conditions = n.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
                let ready = conditions.iter().find(|c| c.type_ == "Ready");
                match ready {
                    Some(c) if c.status == "True" => {}
                    Some(c) => not_ready.push(format!("{name} ({}{})", if c.status == "Unknown" { "Unknown" } else { "NotReady" }, c.reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default())),
                    None => not_ready.push(format!("{name} (no Ready condition)")),
                }
                for c in &conditions {
                    if ["MemoryPressure", "DiskPressure", "PIDPressure"].contains(&c.type_.as_str()) && c.status == "True" {
                        pressure.push(format!("{name} {}", c.type_));
                    }
                }
                if n.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false) {
                    cordoned.push(name);
                }
            }
        })
        .await?;
        let ready = total - not_ready.len();
        let verdict = if total == 0 || !not_ready.is_empty() {
            Verdict::Failed
        } else if !cordoned.is_empty() || !pressure.is_empty() {
            Verdict::Warned
        } else {
            Verdict::Passed
        };
        let mut message = if total == 0 {
            format!("no nodes{}", self.selector.as_ref().map(|s| format!(" match {s}")).unwrap_or_default())
        } else {
            format!("{ready}/{total} nodes Ready")
        };
        if !not_ready.is_empty() {
            message.push_str(&format!("; not ready: {}", list_examples(&not_ready, 5)));
        }
        if !cordoned.is_empty() {
            message.push_str(&format!("; cordoned: {}", list_examples(&cordoned, 5)));
        }
        if !pressure.is_empty() {
            message.push_str(&format!("; under pressure: {}", list_examples(&pressure, 5)));
        }
        Ok(Outcome::new(verdict, message)
            .value(format!("{ready}/{total}"))
            .output("total", total)
            .output("ready", ready)
            .output("not_ready", not_ready)
            .output("cordoned", cordoned))
    }
}

fn default_ratio() -> f64 {
    1.0
}

/// Pods (all in the namespace, or those matching `selector`) are running and ready: none
/// failed or crash-looping, restarts under a limit, enough of them ready.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PodsHealthy {
    /// A label selector, as kubectl's `-l`: `app=api`, `tier in (web,api)`. Default: every pod.
    #[serde(default)]
    pub selector: Option<String>,
    /// Warn when a pod restarted more often than this.
    #[serde(default)]
    pub warn_restarts: Option<u32>,
    /// Fail when a pod restarted more often than this.
    #[serde(default)]
    pub max_restarts: Option<u32>,
    /// Fail when fewer than this share of the pods is ready (0 to 1). Default 1: all.
    #[serde(default = "default_ratio")]
    pub min_ready_ratio: f64,
    /// Pass when no pod matches (default: that fails — a selector that matches nothing is
    /// usually a mistake).
    #[serde(default)]
    pub allow_none: bool,
}

impl StepKind for PodsHealthy {
    const NAME: &'static str = "k8s.pods_healthy";
    const SUMMARY: &'static str = "pods running and ready: no CrashLoopBackOff or failed pods, restarts under a limit, ready ratio";
    const EFFECT: Effect = Effect::Read;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "total", ty: "int", help: "pods checked (completed ones excluded)" },
        Output { name: "ready", ty: "int", help: "pods ready" },
        Output { name: "not_ready", ty: "list", help: "`pod: why` for each pod not ready" },
        Output { name: "crash_looping", ty: "list", help: "pods with a container in CrashLoopBackOff" },
        Output { name: "max_restarts", ty: "int", help: "the most restarts of any pod" },
    ];

    fn check(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.min_ready_ratio) {
            return Err(format!("`min_ready_ratio` must be between 0 and 1, not {}", self.min_ready_ratio));
        }
        if let (Some(w), Some(f)) = (self.warn_restarts, self.max_restarts)
            && w > f {
                return Err(format!("`warn_restarts` ({w}) is above `max_restarts` ({f})"));
            }
        self.selector.as_deref().map_or(Ok(()), check_selector)
    }

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let kube = client(ctx).await?;
        let api = kube.api::<Pod>();
        let params = super::list_params(self.selector.as_deref());
        let mut s = PodSummary::default();
        for_each_page(&api, params, &kube, "pods", |pods| {
            for p in &pods {
                s.add(p);
            }
        })
        .await?;
        Ok(s.judge(self, &kube))
    }
}

#[derive(Default)]
struct PodSummary {
    total: usize,
    ready: usize,
    not_ready: Vec<String>,
    failed: Vec<String>,
    crash_looping: Vec<String>,
    restarts: Vec<(String, i32)>,
    max_restarts: i32,
}

impl PodSummary {
    fn add(&mut self, p: &Pod) {
        let name = p.metadata.name.clone().unwrap_or_default();
        let status = p.status.as_ref();
        let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("Unknown");
        if phase == "Succeeded" {
            return;
        }
        self.total += 1;
        let containers = status.and_then(|s| s.container_statuses.as_ref()).map(Vec::as_slice).unwrap_or_default();
        let restarts: i32 = containers.iter().map(|c| c.restart_count).max().unwrap_or(0);
        if restarts > 0 {
            self.restarts.push((name.clone(), restarts));
        }
        self.max_restarts = self.max_restarts.max(restarts);
        let waiting: Vec<String> = containers
            .iter()
            .filter_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone().map(|r| format!("{} {r}", c.name)))
            .collect();
        if waiting.iter().any(|w| w.ends_with("CrashLoopBackOff")) {
            self.crash_looping.push(name.clone());
        }
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        if phase == "Failed" {
            let reason = status.and_then(|s| s.reason.clone()).unwrap_or_else(|| "Failed".into());
            self.failed.push(format!("{name}: {reason}"));
            self.not_ready.push(format!("{name}: Failed ({reason})"));
        } else if ready {
            self.ready += 1;
        } else {
            let why = if waiting.is_empty() { phase.to_string() } else { waiting.join(", ") };
            self.not_ready.push(format!("{name}: {why}"));
        }
    }

    fn judge(mut self, params: &PodsHealthy, kube: &Kube) -> Outcome {
        let selector = params.selector.as_ref().map(|s| format!(" matching {s}")).unwrap_or_default();
        if self.total == 0 {
            let message = format!("no pods{selector} in namespace {}", kube.namespace);
            let v = if params.allow_none { Verdict::Passed } else { Verdict::Failed };
            return Outcome::new(v, message).value("0/0").output("total", 0).output("ready", 0).output("not_ready", Vec::<String>::new()).output("crash_looping", Vec::<String>::new()).output("max_restarts", 0);
        }
        let ratio = self.ready as f64 / self.total as f64;
        let over = |limit: Option<u32>| -> Vec<String> {
            limit.map(|l| self.restarts.iter().filter(|(_, r)| *r > l as i32).map(|(n, r)| format!("{n} ({r})")).collect()).unwrap_or_default()
        };
        let fail_restarts = over(params.max_restarts);
        let warn_restarts = over(params.warn_restarts);
        let mut problems = Vec::new();
        if !self.crash_looping.is_empty() {
            problems.push(format!("CrashLoopBackOff: {}", list_examples(&self.crash_looping, 5)));
        }
        if !self.failed.is_empty() {
            problems.push(format!("failed: {}", list_examples(&self.failed, 5)));
        }
        if ratio < params.min_ready_ratio {
            problems.push(format!("not ready: {}", list_examples(&self.not_ready, 5)));
        }
        if !fail_restarts.is_empty() {
            problems.push(format!("restarted more than {} times: {}", params.max_restarts.unwrap_or_default(), list_examples(&fail_restarts, 5)));
        }
        let mut warnings = Vec::new();
        if problems.is_empty() && !self.not_ready.is_empty() {
            warnings.push(format!("not ready: {}", list_examples(&self.not_ready, 5)));
        }
        if fail_restarts.is_empty() && !warn_restarts.is_empty() {
            warnings.push(format!("restarted more than {} times: {}", params.warn_restarts.unwrap_or_default(), list_examples(&warn_restarts, 5)));
        }
        let verdict = if !problems.is_empty() {
            Verdict::Failed
        } else if !warnings.is_empty() {
            Verdict::Warned
        } else {
            Verdict::Passed
        };
        let mut message = format!("{}/{} pods{selector} ready", self.ready, self.total);
        for p in problems.iter().chain(&warnings) {
            message.push_str("; ");
            message.push_str(p);
        }
        let mut limits = vec![];
        if params.min_ready_ratio > 0.0 {
            limits.push(format!("fail < {}% ready", (params.min_ready_ratio * 100.0).round()));
        }
        if let Some(w) = params.warn_restarts {
            limits.push(format!("warn > {w} restarts"));
        }
        if let Some(f) = params.max_restarts {
            limits.push(format!("fail > {f} restarts"));
        }
        self.not_ready.truncate(100);
        Outcome::new(verdict, message)
            .value(format!("{}/{}", self.ready, self.total))
            .threshold(Some(limits.join(", ")))
            .output("total", self.total)
            .output("ready", self.ready)
            .output("not_ready", self.not_ready)
            .output("crash_looping", self.crash_looping)
            .output("max_restarts", self.max_restarts)
    }
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

/// Every Deployment and StatefulSet in the namespace is fully rolled out.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Workloads {
    /// Only workloads with these labels.
    #[serde(default)]
    pub selector: Option<String>,
}

impl StepKind for Workloads {
    const NAME: &'static str = "k8s.workloads";
    const SUMMARY: &'static str = "every Deployment and StatefulSet in the namespace fully rolled out";
    const EFFECT: Effect = Effect::Read;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "total", ty: "int", help: "workloads checked" },
        Output { name: "not_ready", ty: "list", help: "each workload not rolled out, with its state" },
    ];

    fn check(&self) -> Result<(), String> {
        self.selector.as_deref().map_or(Ok(()), check_selector)
    }

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let kube = client(ctx).await?;
        let params = super::list_params(self.selector.as_deref());
        let mut states = Vec::new();
        for_each_page(&kube.api::<Deployment>(), params.clone(), &kube, "deployments", |ds| states.extend(ds.iter().map(WorkloadState::of_deployment))).await?;
        for_each_page(&kube.api::<StatefulSet>(), params, &kube, "statefulsets", |ss| states.extend(ss.iter().map(WorkloadState::of_statefulset))).await?;
        let total = states.len();
        let not_ready: Vec<String> = states.iter().filter(|w| !w.complete()).map(WorkloadState::describe).collect();
        let (verdict, message) = if total == 0 {
            (Verdict::Warned, format!("no deployments or statefulsets in namespace {}", kube.namespace))
        } else if not_ready.is_empty() {
            (Verdict::Passed, format!("{total} workloads rolled out"))
        } else {
            (Verdict::Failed, format!("{} of {total} workloads not rolled out: {}", not_ready.len(), not_ready.join("; ")))
        };
        Ok(Outcome::new(verdict, message).value(format!("{}/{total}", total - not_ready.len())).output("total", total).output("not_ready", not_ready))
    }
}
