//! `k8s.workloads`: every Deployment and StatefulSet of the namespace (or a selector), as
//! `kubectl get deploy,sts` shows them, each judged as `k8s.deployment_ready` does.

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use schemars::JsonSchema;
use serde::Deserialize;

use super::health::{WorkloadState, for_each_page};
use super::{check_selector, client};
use crate::kind::{StepContext, StepKind};
use crate::vocab::{Effect, Outcome, Output, StepError, Verdict};

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
    const PERMISSIONS: &'static [crate::vocab::Permission] = {
        use crate::vocab::*;
        &[kube("apps", "deployments", &["list"]), kube("apps", "statefulsets", &["list"])]
    };
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
