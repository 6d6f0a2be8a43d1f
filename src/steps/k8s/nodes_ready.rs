//! `k8s.nodes_ready`: what `kubectl get nodes` tells an operator — nodes not ready, cordoned
//! or under pressure.

use k8s_openapi::api::core::v1::Node;
use schemars::JsonSchema;
use serde::Deserialize;

use super::health::{for_each_page, list_examples};
use super::{check_selector, client};
use crate::kind::{StepContext, StepKind};
use crate::vocab::{Effect, Outcome, Output, StepError, Verdict};

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
    const PERMISSIONS: &'static [crate::vocab::Permission] = {
        use crate::vocab::*;
        &[kube_cluster("", "nodes", &["list"])]
    };
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
