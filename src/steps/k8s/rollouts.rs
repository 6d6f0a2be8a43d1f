//! `k8s.rollouts`: what was rolled out recently — each new ReplicaSet revision of the
//! namespace's Deployments in a window, with its images and change cause, and the rollouts
//! still in progress. The "what changed?" of an incident (`kubectl rollout history` for
//! every deployment at once, by time).

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::api::ListParams;
use schemars::JsonSchema;
use serde::Deserialize;

use super::client;
use super::health::{for_each_page, list_examples};
use crate::duration::Duration;
use crate::kind::{StepContext, StepKind};
use crate::vocab::{Effect, Outcome, Output, StepError, Verdict};

/// Recent rollouts of the namespace's Deployments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rollouts {
    /// How far back. Default 1h.
    #[serde(default = "crate::helpers::logscan::hour")]
    pub since: Duration,
    /// Warn when a rollout is in progress. Default true.
    #[serde(default = "yes")]
    pub warn_in_progress: bool,
}

fn yes() -> bool {
    true
}

const REVISION: &str = "deployment.kubernetes.io/revision";
const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";

impl StepKind for Rollouts {
    const NAME: &'static str = "k8s.rollouts";
    const PERMISSIONS: &'static [crate::vocab::Permission] = {
        use crate::vocab::*;
        &[kube("apps", "deployments", &["list"]), kube("apps", "replicasets", &["list"])]
    };
    const SUMMARY: &'static str = "the namespace's Deployment rollouts in a window (revision, images, change cause, when) and those still in progress";
    const EFFECT: Effect = Effect::Read;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "rollouts", ty: "list", help: "{deployment, revision, images, change_cause, time}, newest first" },
        Output { name: "in_progress", ty: "list", help: "deployments not fully rolled out" },
        Output { name: "timeline", ty: "list", help: "{time, what, component, message} entries for a `timeline` step" },
    ];

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let kube = client(ctx).await?;
        let since = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(self.since.std().as_secs() as i64);
        let mut sets = Vec::new();
        for_each_page(&kube.api::<ReplicaSet>(), ListParams::default(), &kube, "replicasets", |page| sets.extend(page)).await?;
        let mut rollouts: Vec<(jiff::Timestamp, serde_json::Value)> = Vec::new();
        for rs in &sets {
            let Some(owner) = rs.metadata.owner_references.iter().flatten().find(|o| o.kind == "Deployment") else { continue };
            let Some(created) = rs.metadata.creation_timestamp.as_ref().map(|t| t.0) else { continue };
            if created < since {
                continue;
            }
            let annotations = rs.metadata.annotations.clone().unwrap_or_default();
            let images: Vec<String> =
                rs.spec.template.as_ref().and_then(|t| t.spec.as_ref()).map(|s| s.containers.iter().filter_map(|c| c.image.clone()).collect()).unwrap_or_default();
            rollouts.push((
                created,
                serde_json::json!({
                    "deployment": owner.name, "revision": annotations.get(REVISION).cloned().unwrap_or_default(),
                    "images": images, "change_cause": annotations.get(CHANGE_CAUSE), "time": created.to_string(),
                }),
            ));
        }
        // Newest first; within one second, the higher revision first.
        let rev = |r: &serde_json::Value| r["revision"].as_str().and_then(|s| s.parse::<i64>().ok()).unwrap_or(0);
        rollouts.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| rev(&b.1).cmp(&rev(&a.1))));
        let mut deployments = Vec::new();
        for_each_page(&kube.api::<Deployment>(), ListParams::default(), &kube, "deployments", |page| deployments.extend(page)).await?;
        let in_progress: Vec<String> = deployments
            .iter()
            .filter(|d| {
                let want = d.spec.replicas.unwrap_or(1);
                let st = d.status.clone().unwrap_or_default();
                // As `kubectl rollout status` judges it.
                let updated = st.updated_replicas.unwrap_or(0);
                st.observed_generation < d.metadata.generation
                    || updated < want
                    || st.replicas.unwrap_or(0) > updated
                    || st.available_replicas.unwrap_or(0) < updated
            })
            .map(|d| format!("deployment/{}", d.metadata.name.clone().unwrap_or_default()))
            .collect();
        let describe = |r: &serde_json::Value| {
            let images: Vec<&str> = r["images"].as_array().into_iter().flatten().filter_map(|i| i.as_str()).collect();
            let cause = r["change_cause"].as_str().map(|c| format!(" ({c})")).unwrap_or_default();
            format!("revision {}: {}{cause}", r["revision"].as_str().unwrap_or("?"), images.join(", "))
        };
        let timeline: Vec<serde_json::Value> = rollouts
            .iter()
            .map(|(_, r)| serde_json::json!({ "time": r["time"], "what": "rollout", "component": format!("deployment/{}", r["deployment"].as_str().unwrap_or_default()), "message": describe(r) }))
            .collect();
        let mut message = if rollouts.is_empty() {
            format!("no rollouts in the last {}", self.since)
        } else {
            let lines: Vec<String> = rollouts.iter().map(|(_, r)| format!("deployment/{} {}", r["deployment"].as_str().unwrap_or_default(), describe(r))).collect();
            format!("{} rollout(s) in the last {}: {}", rollouts.len(), self.since, list_examples(&lines, 5))
        };
        if !in_progress.is_empty() {
            message.push_str(&format!("; in progress: {}", in_progress.join(", ")));
        }
        let verdict = if self.warn_in_progress && !in_progress.is_empty() { Verdict::Warned } else { Verdict::Passed };
        Ok(Outcome::new(verdict, message)
            .value(rollouts.len().to_string())
            .output("rollouts", rollouts.into_iter().map(|(_, r)| r).collect::<Vec<_>>())
            .output("in_progress", in_progress)
            .output("timeline", timeline))
    }
}
