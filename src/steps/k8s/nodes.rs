//! `k8s.cordon`, `k8s.uncordon`, `k8s.drain`: node maintenance as kubectl does it — the
//! drain evicts through the eviction API, so PodDisruptionBudgets are respected.

use std::time::{Duration as StdDuration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{EvictParams, ListParams, Patch, PostParams};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

use super::health::for_each_page;
use super::{Kube, client, patch_params, valid_name};
use crate::duration::Duration;
use crate::kind::{StepContext, StepKind};
use crate::vocab::{Effect, ErrorClass, Outcome, Output, StepError};

async fn unschedulable(kube: &Kube, node: &str) -> Result<bool, StepError> {
    let n = kube.cluster_api::<Node>().get(node).await.map_err(|e| kube.error(e, &format!("node {node}")))?;
    Ok(n.spec.and_then(|s| s.unschedulable).unwrap_or(false))
}

async fn set_unschedulable(kube: &Kube, node: &str, value: bool, dry_run: bool) -> Result<(), StepError> {
    kube.cluster_api::<Node>()
        .patch(node, &patch_params(dry_run), &Patch::Merge(json!({"spec": {"unschedulable": if value { json!(true) } else { json!(null) }}})))
        .await
        .map(|_| ())
        .map_err(|e| kube.error(e, &format!("node {node}")))
}

fn check_node(node: &str) -> Result<(), String> {
    if valid_name(node) { Ok(()) } else { Err(format!("`node` `{node}` is not a valid node name")) }
}

/// Marks a node unschedulable (`kubectl cordon`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Cordon {
    pub node: String,
}

impl StepKind for Cordon {
    const NAME: &'static str = "k8s.cordon";
    const SUMMARY: &'static str = "mark a node unschedulable, as kubectl cordon";
    const EFFECT: Effect = Effect::Mutate;
    const OUTPUTS: &'static [Output] = &[Output { name: "was_cordoned", ty: "bool", help: "it was already unschedulable" }];

    fn check(&self) -> Result<(), String> {
        check_node(&self.node)
    }

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let kube = client(ctx).await?;
        let was = unschedulable(&kube, &self.node).await?;
        if !was {
            set_unschedulable(&kube, &self.node, true, false).await?;
        }
        let msg = if was { format!("node {} was already cordoned", self.node) } else { format!("node {} cordoned", self.node) };
        Ok(Outcome::passed(msg).output("was_cordoned", was))
    }

    async fn plan(&self, ctx: &StepContext) -> Result<String, StepError> {
        let kube = client(ctx).await?;
        if unschedulable(&kube, &self.node).await? {
            return Ok(format!("node {} is already cordoned: nothing to do", self.node));
        }
        set_unschedulable(&kube, &self.node, true, true).await?;
        Ok(format!("would cordon node {}: schedulable → unschedulable", self.node))
    }
}

/// Marks a node schedulable again (`kubectl uncordon`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Uncordon {
    pub node: String,
}

impl StepKind for Uncordon {
    const NAME: &'static str = "k8s.uncordon";
    const SUMMARY: &'static str = "mark a node schedulable again, as kubectl uncordon";
    const EFFECT: Effect = Effect::Mutate;
    const OUTPUTS: &'static [Output] = &[Output { name: "was_cordoned", ty: "bool", help: "it was unschedulable" }];

    fn check(&self) -> Result<(), String> {
        check_node(&self.node)
    }

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let kube = client(ctx).await?;
        let was = unschedulable(&kube, &self.node).await?;
        if was {
            set_unschedulable(&kube, &self.node, false, false).await?;
        }
        let msg = if was { format!("node {} uncordoned", self.node) } else { format!("node {} was already schedulable", self.node) };
        Ok(Outcome::passed(msg).output("was_cordoned", was))
    }

    async fn plan(&self, ctx: &StepContext) -> Result<String, StepError> {
        let kube = client(ctx).await?;
        if !unschedulable(&kube, &self.node).await? {
            return Ok(format!("node {} is already schedulable: nothing to do", self.node));
        }
        set_unschedulable(&kube, &self.node, false, true).await?;
        Ok(format!("would uncordon node {}: unschedulable → schedulable", self.node))
    }
}

fn default_drain_timeout() -> Duration {
    Duration::from_secs(300)
}

/// Cordons a node and evicts its pods through the eviction API (`kubectl drain
/// --ignore-daemonsets`): a PodDisruptionBudget that forbids an eviction is retried until
/// `timeout`, then the step fails naming the pod. DaemonSet and mirror pods stay.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Drain {
    pub node: String,
    /// How long to keep trying evictions and waiting for pods to go. Default 5m.
    #[serde(default = "default_drain_timeout")]
    pub timeout: Duration,
    /// The pods' termination grace period instead of their own.
    #[serde(default)]
    pub grace: Option<Duration>,
}

struct Drainable {
    evict: Vec<(String, String)>,
    skipped: Vec<String>,
}

async fn drainable(kube: &Kube, node: &str) -> Result<Drainable, StepError> {
    let mut out = Drainable { evict: Vec::new(), skipped: Vec::new() };
    let api = kube::Api::<Pod>::all(kube.client.clone());
    for_each_page(&api, ListParams::default().fields(&format!("spec.nodeName={node}")), kube, "pods", |pods| {
        for p in pods {
            let ns = p.metadata.namespace.clone().unwrap_or_default();
            let name = p.metadata.name.clone().unwrap_or_default();
            let daemon = p.metadata.owner_references.iter().flatten().any(|o| o.kind == "DaemonSet");
            let mirror = p.metadata.annotations.as_ref().is_some_and(|a| a.contains_key("kubernetes.io/config.mirror"));
            if daemon || mirror {
                out.skipped.push(format!("{ns}/{name} ({})", if daemon { "DaemonSet" } else { "mirror pod" }));
            } else {
                out.evict.push((ns, name));
            }
        }
    })
    .await?;
    Ok(out)
}

fn evict_params(grace: Option<Duration>, dry_run: bool) -> EvictParams {
    let mut p = EvictParams::default();
    if let Some(g) = grace {
        p.delete_options = Some(kube::api::DeleteParams { grace_period_seconds: Some(g.std().as_secs() as u32), ..Default::default() });
    }
    p.post_options = PostParams { dry_run, field_manager: None };
    p
}

impl StepKind for Drain {
    const NAME: &'static str = "k8s.drain";
    const SUMMARY: &'static str = "cordon a node and evict its pods through the eviction API, respecting PodDisruptionBudgets (DaemonSet pods stay)";
    const EFFECT: Effect = Effect::Mutate;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "evicted", ty: "list", help: "`namespace/pod` evicted" },
        Output { name: "skipped", ty: "list", help: "DaemonSet and mirror pods left on the node" },
    ];

    fn check(&self) -> Result<(), String> {
        check_node(&self.node)
    }

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let kube = client(ctx).await?;
        if !unschedulable(&kube, &self.node).await? {
            set_unschedulable(&kube, &self.node, true, false).await?;
        }
        let todo = drainable(&kube, &self.node).await?;
        let start = Instant::now();
        let timeout = self.timeout.std();
        let mut evicted = Vec::new();
        for (ns, name) in &todo.evict {
            let api = kube::Api::<Pod>::namespaced(kube.client.clone(), ns);
            loop {
                match api.evict(name, &evict_params(self.grace, false)).await {
                    Ok(_) => break,
                    Err(kube::Error::Api(s)) if s.code == 404 => break,
                    Err(kube::Error::Api(s)) if s.code == 429 => {
                        if start.elapsed() >= timeout {
                            return Err(StepError::new(
                                ErrorClass::Timeout,
                                format!(
                                    "node {} cordoned, but pod {ns}/{name} could not be evicted within {}: {} (evicted so far: {})",
                                    self.node,
                                    self.timeout,
                                    s.message,
                                    if evicted.is_empty() { "none".to_string() } else { evicted.join(", ") }
                                ),
                            ));
                        }
                        tokio::time::sleep(StdDuration::from_millis(500)).await;
                    }
                    Err(e) => return Err(kube.error(e, &format!("eviction of pod {ns}/{name}"))),
                }
            }
            evicted.push(format!("{ns}/{name}"));
        }
        // Wait until the evicted pods are gone from the node.
        loop {
            let left = drainable(&kube, &self.node).await?.evict;
            let still: Vec<String> = left.iter().map(|(n, p)| format!("{n}/{p}")).filter(|p| evicted.contains(p)).collect();
            if still.is_empty() {
                break;
            }
            if start.elapsed() >= timeout {
                return Err(StepError::new(ErrorClass::Timeout, format!("node {}: evicted pods still terminating after {}: {}", self.node, self.timeout, still.join(", "))));
            }
            tokio::time::sleep(StdDuration::from_millis(300)).await;
        }
        let mut msg = format!("node {} drained: {} pods evicted", self.node, evicted.len());
        if !todo.skipped.is_empty() {
            msg.push_str(&format!(", {} left ({})", todo.skipped.len(), todo.skipped.join(", ")));
        }
        Ok(Outcome::passed(msg).value(format!("{} evicted", evicted.len())).output("evicted", evicted).output("skipped", todo.skipped))
    }

    async fn plan(&self, ctx: &StepContext) -> Result<String, StepError> {
        let kube = client(ctx).await?;
        let cordoned = unschedulable(&kube, &self.node).await?;
        let todo = drainable(&kube, &self.node).await?;
        let mut blocked = Vec::new();
        for (ns, name) in &todo.evict {
            let api = kube::Api::<Pod>::namespaced(kube.client.clone(), ns);
            match api.evict(name, &evict_params(self.grace, true)).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 429 => blocked.push(format!("{ns}/{name}")),
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(kube.error(e, &format!("eviction of pod {ns}/{name}"))),
            }
        }
        let names: Vec<String> = todo.evict.iter().map(|(n, p)| format!("{n}/{p}")).collect();
        let mut msg = format!(
            "would {}evict {} pods from node {}: {}",
            if cordoned { "" } else { "cordon it and " },
            names.len(),
            self.node,
            if names.is_empty() { "none".to_string() } else { names.join(", ") }
        );
        if !blocked.is_empty() {
            msg.push_str(&format!("; a PodDisruptionBudget blocks {} now", blocked.join(", ")));
        }
        if !todo.skipped.is_empty() {
            msg.push_str(&format!("; left on the node: {}", todo.skipped.join(", ")));
        }
        Ok(msg)
    }
}
