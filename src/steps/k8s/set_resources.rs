//! `k8s.set_resources`: a container's requests and limits, as `kubectl set resources` sets
//! them, then the rollout followed.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

use super::rollout::{CHANGE_CAUSE, after_change, change_cause, container, default_wait, patch_template, template};
use super::{Kube, Target, client};
use crate::duration::Duration;
use crate::kind::{StepContext, StepKind};
use crate::vocab::{Effect, Outcome, Output, StepError};

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
    const PERMISSIONS: &'static [crate::vocab::Permission] = {
        use crate::vocab::*;
        &[kube("apps", "deployments", &["get", "patch"]), kube("apps", "statefulsets", &["get", "patch"])]
    };
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
