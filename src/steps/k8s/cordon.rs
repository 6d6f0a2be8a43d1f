//! `k8s.cordon`: mark a node unschedulable, as `kubectl cordon` does.

use schemars::JsonSchema;
use serde::Deserialize;

use super::client;
use super::nodes::{check_node, set_unschedulable, unschedulable};
use crate::kind::{StepContext, StepKind};
use crate::vocab::{Effect, Outcome, Output, StepError};

/// Marks a node unschedulable (`kubectl cordon`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Cordon {
    pub node: String,
}

impl StepKind for Cordon {
    const NAME: &'static str = "k8s.cordon";
    const PERMISSIONS: &'static [crate::vocab::Permission] = {
        use crate::vocab::*;
        &[kube_cluster("", "nodes", &["get", "patch"])]
    };
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
