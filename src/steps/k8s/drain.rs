//! `k8s.drain`: cordon a node and evict its pods through the eviction API, as `kubectl
//! drain` does, so PodDisruptionBudgets are respected.

use std::time::{Duration as StdDuration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{EvictParams, ListParams, PostParams};
use schemars::JsonSchema;
use serde::Deserialize;

use super::health::for_each_page;
use super::nodes::{check_node, set_unschedulable, unschedulable};
use super::{Kube, client};
use crate::duration::Duration;
use crate::kind::{StepContext, StepKind};
use crate::vocab::{Effect, ErrorClass, Outcome, Output, StepError};

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
    const PERMISSIONS: &'static [crate::vocab::Permission] = {
        use crate::vocab::*;
        &[kube_cluster("", "nodes", &["get", "patch"]), kube_cluster("", "pods", &["list"]), kube_cluster("", "pods/eviction", &["create"])]
    };
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
