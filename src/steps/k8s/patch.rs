//! `k8s.patch`: a merge or strategic merge patch of a named object (a ConfigMap's keys, a
//! Service's selector, a CronJob's schedule), with the change shown field by field.

use k8s_openapi::api::{apps, batch, core, networking, policy};
use kube::api::{ApiResource, DynamicObject, Patch};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use super::{Kube, client, patch_params, valid_name};
use crate::kind::{StepContext, StepKind};
use crate::vocab::{Effect, Outcome, Output, StepError};

#[derive(Clone, Copy, Debug, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PatchType {
    /// Strategic merge patch: lists of containers, env, ports, volumes merge by their key.
    #[default]
    Strategic,
    /// JSON merge patch (RFC 7386): lists are replaced; `null` deletes a key.
    Merge,
}

/// Patches a named object.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchStep {
    /// `configmap/NAME`, `deployment/NAME`, `statefulset/NAME`, `service/NAME`,
    /// `ingress/NAME`, `cronjob/NAME`, `job/NAME`, `poddisruptionbudget/NAME`.
    pub target: String,
    /// The patch, as YAML: `{ data: { LOG_LEVEL: debug } }`.
    pub patch: serde_json::Map<String, Value>,
    /// `strategic` (default) or `merge`.
    #[serde(default, rename = "type")]
    pub patch_type: PatchType,
}

fn resource(kind: &str) -> Result<(ApiResource, &'static str), String> {
    Ok(match kind.to_ascii_lowercase().as_str() {
        "configmap" | "configmaps" | "cm" => (ApiResource::erase::<core::v1::ConfigMap>(&()), "configmap"),
        "deployment" | "deployments" | "deploy" => (ApiResource::erase::<apps::v1::Deployment>(&()), "deployment"),
        "statefulset" | "statefulsets" | "sts" => (ApiResource::erase::<apps::v1::StatefulSet>(&()), "statefulset"),
        "service" | "services" | "svc" => (ApiResource::erase::<core::v1::Service>(&()), "service"),
        "ingress" | "ingresses" | "ing" => (ApiResource::erase::<networking::v1::Ingress>(&()), "ingress"),
        "cronjob" | "cronjobs" | "cj" => (ApiResource::erase::<batch::v1::CronJob>(&()), "cronjob"),
        "job" | "jobs" => (ApiResource::erase::<batch::v1::Job>(&()), "job"),
        "poddisruptionbudget" | "poddisruptionbudgets" | "pdb" => (ApiResource::erase::<policy::v1::PodDisruptionBudget>(&()), "poddisruptionbudget"),
        "secret" | "secrets" => return Err("Secrets are changed with `k8s.secret_rotate`, which never shows their values".into()),
        other => return Err(format!("`target` kind `{other}` is not one of configmap, deployment, statefulset, service, ingress, cronjob, job, poddisruptionbudget")),
    })
}

impl PatchStep {
    fn parsed(&self) -> Result<(ApiResource, String, String), String> {
        let (kind, name) = self.target.split_once('/').ok_or_else(|| format!("`target` `{}` must be KIND/NAME, e.g. configmap/app-config", self.target))?;
        let (ar, kind) = resource(kind)?;
        if !valid_name(name) {
            return Err(format!("`target` name `{name}` is not a valid Kubernetes name"));
        }
        Ok((ar, kind.to_string(), name.to_string()))
    }

    async fn apply(&self, kube: &Kube, dry_run: bool) -> Result<(String, Vec<String>, String), StepError> {
        let (ar, kind, name) = self.parsed().map_err(StepError::invalid)?;
        let api = kube::Api::<DynamicObject>::namespaced_with(kube.client.clone(), &kube.namespace, &ar);
        let what = format!("{kind} {name}");
        let before = api.get(&name).await.map_err(|e| kube.error(e, &what))?;
        let patch = Value::Object(self.patch.clone());
        let pp = patch_params(dry_run);
        let after = match self.patch_type {
            PatchType::Strategic => api.patch(&name, &pp, &Patch::Strategic(&patch)).await,
            PatchType::Merge => api.patch(&name, &pp, &Patch::Merge(&patch)).await,
        }
        .map_err(|e| kube.error(e, &what))?;
        let mut changes = Vec::new();
        diff("", &serde_json::to_value(&before).unwrap_or_default(), &serde_json::to_value(&after).unwrap_or_default(), &mut changes);
        Ok((format!("{kind}/{name}"), changes, after.metadata.resource_version.unwrap_or_default()))
    }
}

fn short(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "(none)".into(),
        Some(Value::String(s)) => crate::helpers::text::truncate(s, 80),
        Some(other) => crate::helpers::text::truncate(&other.to_string(), 80),
    }
}

/// Changed leaves between two objects, `path: old → new`, bookkeeping fields left out.
fn diff(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    const IGNORED: &[&str] = &["metadata.resourceVersion", "metadata.managedFields", "metadata.generation", "status"];
    if IGNORED.contains(&path) {
        return;
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                match (x.get(k), y.get(k)) {
                    (Some(l), Some(r)) => diff(&p, l, r, out),
                    (l, r) if !IGNORED.contains(&p.as_str()) => out.push(format!("{p}: {} → {}", short(l), short(r))),
                    _ => {}
                }
            }
        }
        _ if a != b => out.push(format!("{path}: {} → {}", short(Some(a)), short(Some(b)))),
        _ => {}
    }
}

impl StepKind for PatchStep {
    const NAME: &'static str = "k8s.patch";
    const PERMISSIONS: &'static [crate::vocab::Permission] = {
        use crate::vocab::*;
        &[kube("apps", "deployments", &["get", "patch"]), kube("apps", "statefulsets", &["get", "patch"])]
    };
    const SUMMARY: &'static str = "merge or strategic merge patch of a named object (ConfigMap keys, a Service, a CronJob…); plan and message list each changed field";
    const EFFECT: Effect = Effect::Mutate;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "changes", ty: "list", help: "`path: old → new` for each changed field" },
        Output { name: "resource_version", ty: "string", help: "the object's resourceVersion afterwards" },
    ];

    fn check(&self) -> Result<(), String> {
        if self.patch.is_empty() {
            return Err("`patch` is empty".into());
        }
        self.parsed().map(|_| ())
    }

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let kube = client(ctx).await?;
        let (target, changes, rv) = self.apply(&kube, false).await?;
        let msg = if changes.is_empty() { format!("{target} already as patched: nothing changed") } else { format!("{target} patched: {}", changes.join("; ")) };
        Ok(Outcome::passed(msg).value(format!("{} changed", changes.len())).output("changes", changes).output("resource_version", rv))
    }

    async fn plan(&self, ctx: &StepContext) -> Result<String, StepError> {
        let kube = client(ctx).await?;
        let (target, changes, _) = self.apply(&kube, true).await?;
        Ok(if changes.is_empty() { format!("{target} is already as patched: nothing to do") } else { format!("would patch {target}: {} (accepted by the API server's dry run)", changes.join("; ")) })
    }
}
