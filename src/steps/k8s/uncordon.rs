//! `k8s.uncordon`: mark a node schedulable again, as `kubectl uncordon` does.

use schemars::JsonSchema;
use serde::Deserialize;

use super::client;
use super::nodes::{check_node, set_unschedulable, unschedulable};
use crate::kind::{StepContext, StepKind};
use crate::vocab::{Effect, Outcome, Output, StepError};

/// Marks a node schedulable again (`kubectl uncordon`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Uncordon {
    pub node: String,
}

impl StepKind for Uncordon {
    const NAME: &'static str = "k8s.uncordon";
    const PERMISSIONS: &'static [crate::vocab::Permission] = {
        use crate::vocab::*;
        &[kube_cluster("", "nodes", &["get", "patch"])]
    };
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
