//! `k8s.capacity`: resource headroom on nodes, as the "Allocated resources" part of
//! `kubectl describe nodes` shows it — the CPU and memory the pods on each node request,
//! against what the node can allocate. A deploy that adds pods needs room to schedule them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::ListParams;
use schemars::JsonSchema;
use serde::Deserialize;

use super::health::{for_each_page, list_examples};
use super::top::quantity;
use super::{check_selector, client};
use crate::helpers::threshold::{Limits, check_ratio, percent};
use crate::kind::{StepContext, StepKind};
use crate::vocab::{Effect, Outcome, Output, StepError, Verdict};

/// The share of each node's allocatable CPU and memory its pods request.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Capacity {
    /// Only nodes with these labels (`pool=general`).
    #[serde(default)]
    pub selector: Option<String>,
    /// Warn when a node's pods request more than this share (0–1) of its CPU or memory.
    #[serde(default)]
    pub warn_ratio: Option<f64>,
    /// Fail above this share. Default 0.9.
    #[serde(default = "default_fail")]
    pub fail_ratio: Option<f64>,
}

fn default_fail() -> Option<f64> {
    Some(0.9)
}

/// Requests and allocatable of one node.
#[derive(Debug, Default, Clone, PartialEq)]
struct NodeUse {
    cpu_requested: f64,
    memory_requested: f64,
    cpu_allocatable: f64,
    memory_allocatable: f64,
    pods: usize,
    unschedulable: bool,
}

impl NodeUse {
    fn cpu_ratio(&self) -> f64 {
        if self.cpu_allocatable > 0.0 { self.cpu_requested / self.cpu_allocatable } else { 0.0 }
    }
    fn memory_ratio(&self) -> f64 {
        if self.memory_allocatable > 0.0 { self.memory_requested / self.memory_allocatable } else { 0.0 }
    }
    fn worst(&self) -> f64 {
        self.cpu_ratio().max(self.memory_ratio())
    }
}

/// What a pod requests: the sum of its containers, or its largest init container when
/// that is more (as the scheduler counts it).
fn pod_requests(p: &Pod) -> (f64, f64) {
    let Some(spec) = &p.spec else { return (0.0, 0.0) };
    let of = |c: &k8s_openapi::api::core::v1::Container| {
        let req = c.resources.as_ref().and_then(|r| r.requests.as_ref());
        let get = |k: &str| req.and_then(|r| r.get(k)).and_then(|q| quantity(&q.0)).unwrap_or(0.0);
        (get("cpu"), get("memory"))
    };
    let (mut cpu, mut mem) = spec.containers.iter().map(of).fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
    for init in spec.init_containers.iter().flatten() {
        let (c, m) = of(init);
        cpu = cpu.max(c);
        mem = mem.max(m);
    }
    (cpu, mem)
}

impl StepKind for Capacity {
    const NAME: &'static str = "k8s.capacity";
    const PERMISSIONS: &'static [crate::vocab::Permission] = {
        use crate::vocab::*;
        &[kube_cluster("", "nodes", &["list"]), kube_cluster("", "pods", &["list"])]
    };
    const SUMMARY: &'static str =
        "per node, the CPU and memory its pods request against allocatable (kubectl describe nodes' Allocated resources), against warn/fail ratios";
    const EFFECT: Effect = Effect::Read;
    const OUTPUTS: &'static [Output] = &[
        Output {
            name: "nodes",
            ty: "map",
            help: "per node: cpu_requested, cpu_allocatable (cores), memory_requested, memory_allocatable (bytes), cpu_ratio, memory_ratio, pods",
        },
        Output { name: "worst", ty: "float", help: "the highest requested share, CPU or memory, over the nodes" },
    ];

    fn check(&self) -> Result<(), String> {
        check_ratio("warn_ratio", self.warn_ratio)?;
        check_ratio("fail_ratio", self.fail_ratio)?;
        Limits::above(self.warn_ratio, self.fail_ratio).check_order("warn_ratio", "fail_ratio")?;
        self.selector.as_deref().map_or(Ok(()), check_selector)
    }

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let kube = client(ctx).await?;
        let mut nodes: BTreeMap<String, NodeUse> = BTreeMap::new();
        for_each_page(&kube.cluster_api::<Node>(), super::list_params(self.selector.as_deref()), &kube, "nodes", |page| {
            for n in page {
                let alloc = n.status.as_ref().and_then(|s| s.allocatable.as_ref());
                let get = |k: &str| alloc.and_then(|a| a.get(k)).and_then(|q| quantity(&q.0)).unwrap_or(0.0);
                nodes.insert(
                    n.metadata.name.clone().unwrap_or_default(),
                    NodeUse {
                        cpu_allocatable: get("cpu"),
                        memory_allocatable: get("memory"),
                        unschedulable: n.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false),
                        ..NodeUse::default()
                    },
                );
            }
        })
        .await?;
        if nodes.is_empty() {
            let what = self.selector.as_ref().map(|s| format!(" match {s}")).unwrap_or_default();
            return Ok(Outcome::failed(format!("no nodes{what}: no room to schedule anything")).value("0 nodes"));
        }
        let running = ListParams::default().fields("status.phase!=Succeeded,status.phase!=Failed");
        let all_pods: kube::Api<Pod> = kube::Api::all(kube.client.clone());
        for_each_page(&all_pods, running, &kube, "pods in all namespaces", |page| {
            for p in page {
                let Some(node) = p.spec.as_ref().and_then(|s| s.node_name.clone()) else { continue };
                if let Some(u) = nodes.get_mut(&node) {
                    let (cpu, mem) = pod_requests(&p);
                    u.cpu_requested += cpu;
                    u.memory_requested += mem;
                    u.pods += 1;
                }
            }
        })
        .await?;
        let limits = Limits::above(self.warn_ratio, self.fail_ratio);
        let schedulable: Vec<(&String, &NodeUse)> = nodes.iter().filter(|(_, u)| !u.unschedulable).collect();
        let judged = if schedulable.is_empty() { nodes.iter().collect::<Vec<_>>() } else { schedulable };
        let worst = judged.iter().map(|(_, u)| u.worst()).fold(0.0, f64::max);
        // Headroom is fine while any schedulable node has room: judge the roomiest one.
        let roomiest = judged.iter().map(|(_, u)| u.worst()).fold(f64::INFINITY, f64::min);
        let verdict = limits.verdict(roomiest);
        let describe = |(name, u): &(&String, &NodeUse)| format!("{name} cpu {} memory {}", percent(u.cpu_ratio() * 100.0), percent(u.memory_ratio() * 100.0));
        let full: Vec<String> = judged.iter().filter(|(_, u)| limits.verdict(u.worst()) != Verdict::Passed).map(describe).collect();
        // Some nodes near full while others have room: a warning, not a failure.
        let verdict = if verdict == Verdict::Passed && !full.is_empty() { Verdict::Warned } else { verdict };
        let mut message = match verdict {
            Verdict::Passed | Verdict::Warned => format!("{} nodes; the roomiest has {} requested", judged.len(), percent(roomiest * 100.0)),
            _ => format!("every node is {} requested or more; no room for more pods", percent(roomiest * 100.0)),
        };
        if !full.is_empty() {
            message.push_str(&format!("; near full: {}", list_examples(&full, 5)));
        }
        let cordoned: Vec<String> = nodes.iter().filter(|(_, u)| u.unschedulable).map(|(n, _)| n.clone()).collect();
        if !cordoned.is_empty() {
            message.push_str(&format!("; cordoned (not counted): {}", list_examples(&cordoned, 5)));
        }
        let out: serde_json::Map<String, serde_json::Value> = nodes
            .iter()
            .map(|(n, u)| {
                (
                    n.clone(),
                    serde_json::json!({
                        "cpu_requested": u.cpu_requested, "cpu_allocatable": u.cpu_allocatable,
                        "memory_requested": u.memory_requested, "memory_allocatable": u.memory_allocatable,
                        "cpu_ratio": (u.cpu_ratio() * 1000.0).round() / 1000.0, "memory_ratio": (u.memory_ratio() * 1000.0).round() / 1000.0,
                        "pods": u.pods,
                    }),
                )
            })
            .collect();
        Ok(Outcome::new(verdict, message)
            .value(percent(roomiest * 100.0))
            .threshold(limits.describe(|v| percent(v * 100.0)))
            .output("nodes", serde_json::Value::Object(out))
            .output("worst", (worst * 1000.0).round() / 1000.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_requests_its_containers_or_its_largest_init_container() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "spec": {
                "initContainers": [{ "name": "i", "resources": { "requests": { "cpu": "2", "memory": "64Mi" } } }],
                "containers": [
                    { "name": "a", "resources": { "requests": { "cpu": "250m", "memory": "128Mi" } } },
                    { "name": "b", "resources": { "requests": { "cpu": "500m" } } },
                    { "name": "c" }
                ]
            }
        }))
        .unwrap();
        assert_eq!(pod_requests(&pod), (2.0, 128.0 * 1024.0 * 1024.0));
    }
}
