//! The Kubernetes backend: workloads' health, scaling, rollouts and their undo, through
//! kube-rs and the k8s-openapi types.
//!
//! The client comes from the kubeconfig (`$KUBECONFIG`, else `~/.kube/config`) with the
//! inventory's context and namespace, or from the pod's service account when opsctl runs
//! in a cluster:
//!
//! ```yaml
//! kubernetes: { context: eks-prod, namespace: team-a }
//! ```
//!
//! One client per run, built on first use. Every API error becomes a message that says
//! what to do: unreachable server, 401, 403 (with the verb and resource), 404, 409.

pub mod capacity;
pub mod cordon;
pub mod cronjob_succeeded;
pub mod deployment_ready;
pub mod drain;
pub mod endpoints;
pub mod events;
pub mod exec;
pub mod forward;
pub mod health;
pub mod jobs;
pub mod lease;
pub mod logs;
pub mod nodes;
pub mod nodes_ready;
pub mod patch;
pub mod pods_healthy;
pub mod resource;
pub mod rollout;
pub mod rollout_history;
pub mod rollouts;
pub mod rollout_restart;
pub mod rollout_status;
pub mod rollout_undo;
pub mod scale;
pub mod scale_all;
pub mod secret_ref;
pub mod secret_rotate;
pub mod set_image;
pub mod set_resources;
pub mod settings;
pub mod stream;
pub mod top;
pub mod transport;
pub mod uncordon;
pub mod workloads;

use std::path::PathBuf;

use crate::instance::Instance;
use crate::kind::{Resources, StepContext};
use crate::vocab::{ErrorClass, StepError};
use settings::KubeSettings;

/// A connected client and where it points.
#[derive(Clone)]
pub struct Kube {
    pub client: kube::Client,
    pub namespace: String,
    /// The API server's URL, for messages.
    pub server: String,
    /// The kubeconfig context (or `in-cluster`), for messages.
    pub context: String,
}

impl Kube {
    pub fn api<K>(&self) -> kube::Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        kube::Api::namespaced(self.client.clone(), &self.namespace)
    }

    pub fn cluster_api<K>(&self) -> kube::Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::ClusterResourceScope, DynamicType = ()>,
    {
        kube::Api::all(self.client.clone())
    }

    /// Turns a kube error into a step error that says what to do; `what` names the object
    /// (`deployment api`).
    pub fn error(&self, err: kube::Error, what: &str) -> StepError {
        api_error(err, what, &self.server, &self.context, &self.namespace)
    }
}

/// Builds the client for `settings`.
pub async fn connect(settings: &KubeSettings) -> Result<Kube, StepError> {
    use kube::config::{Config, KubeConfigOptions, Kubeconfig};
    let in_cluster = settings.in_cluster
        || (settings.kubeconfig.is_none()
            && std::env::var_os("KUBECONFIG").is_none_or(|v| v.is_empty())
            && !home_kubeconfig().is_some_and(|p| p.exists())
            && std::env::var_os("KUBERNETES_SERVICE_HOST").is_some());
    let (mut config, context) = if in_cluster {
        let c = Config::incluster().map_err(|e| StepError::invalid(format!("cannot use the pod's service account: {e}")))?;
        (c, "in-cluster".to_string())
    } else {
        let kubeconfig = match &settings.kubeconfig {
            Some(p) => Kubeconfig::read_from(p).map_err(|e| {
                StepError::invalid(format!("cannot read kubeconfig {}: {}", p.display(), root_cause(&e)))
            })?,
            None => Kubeconfig::read().map_err(|e| {
                let at = match std::env::var("KUBECONFIG") {
                    Ok(v) if !v.is_empty() => format!("$KUBECONFIG ({v})"),
                    _ => home_kubeconfig().map_or("~/.kube/config".into(), |p| p.display().to_string()),
                };
                StepError::invalid(format!(
                    "cannot read the kubeconfig at {at}: {}; set `kubernetes.kubeconfig` in the inventory or $KUBECONFIG",
                    root_cause(&e)
                ))
            })?,
        };
        let contexts: Vec<String> = kubeconfig.contexts.iter().map(|c| c.name.clone()).collect();
        let context = match settings.context.clone().or_else(|| kubeconfig.current_context.clone()) {
            Some(c) if contexts.contains(&c) => c,
            Some(c) => {
                let mut msg = format!("kubeconfig has no context `{c}`");
                if let Some(s) = crate::diagnostic::did_you_mean(&c, contexts.iter().map(String::as_str)) {
                    msg.push_str(&format!("; did you mean `{s}`?"));
                }
                msg.push_str(&format!(" (contexts: {})", if contexts.is_empty() { "none".into() } else { contexts.join(", ") }));
                return Err(StepError::invalid(msg));
            }
            None => return Err(StepError::invalid("the kubeconfig has no current context; set `kubernetes.context` in the inventory")),
        };
        let options = KubeConfigOptions { context: Some(context.clone()), ..KubeConfigOptions::default() };
        let c = Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .map_err(|e| StepError::invalid(format!("cannot use kubeconfig context `{context}`: {}", root_cause(&e))))?;
        (c, context)
    };
    if let Some(ns) = &settings.namespace {
        config.default_namespace = ns.clone();
    }
    let timeout = settings.timeout.map_or(std::time::Duration::from_secs(30), |d| d.std());
    config.connect_timeout = Some(std::time::Duration::from_secs(5).min(timeout));
    config.read_timeout = Some(timeout);
    config.write_timeout = Some(timeout);
    // kube-rs would retry 429, 503 and 504 by itself, up to 15 times with a backoff that
    // grows to minutes. An eviction blocked by a PodDisruptionBudget is a 429, and a drain
    // must see it at once; so retries are opsctl's: a step's `retry: { on: [throttled,
    // http_5xx] }`, and the waits of drain and rollout status.
    config.default_retry = false;
    let server = config.cluster_url.to_string().trim_end_matches('/').to_string();
    let namespace = config.default_namespace.clone();
    let client = kube::Client::try_from(config).map_err(|e| StepError::invalid(format!("cannot build a Kubernetes client for {server}: {}", root_cause(&e))))?;
    Ok(Kube { client, namespace, server, context })
}

fn home_kubeconfig() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".kube/config"))
}

/// The instance's Kubernetes settings, or a clear error.
pub fn settings(ctx: &StepContext) -> Result<&KubeSettings, StepError> {
    ctx.instance.kubernetes.as_ref().ok_or_else(|| no_settings(&ctx.instance.name))
}

/// The run's client (kept in its resources), built on first use.
#[derive(Default)]
struct KubeClient(tokio::sync::OnceCell<Result<Kube, StepError>>);

/// The run's client, built on first use.
pub async fn client(ctx: &StepContext) -> Result<Kube, StepError> {
    settings(ctx)?;
    client_in(&ctx.instance, &ctx.resources).await
}

/// The client for `instance` kept in `resources`, built on first use.
pub async fn client_in(instance: &Instance, resources: &Resources) -> Result<Kube, StepError> {
    let settings = instance.kubernetes.clone().ok_or_else(|| no_settings(&instance.name))?;
    resources.keyed::<KubeClient>(&crate::kind::context::settings_key(&settings)).0.get_or_init(|| async move { connect(&settings).await }).await.clone()
}

fn no_settings(instance: &str) -> StepError {
    StepError::invalid(format!(
        "instance {instance} has no Kubernetes settings; add `kubernetes: {{ context: CONTEXT, namespace: NAMESPACE }}` to it in the inventory"
    ))
}

/// The innermost cause of an error, which is usually the one worth showing.
pub fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

pub fn api_error(err: kube::Error, what: &str, server: &str, context: &str, namespace: &str) -> StepError {
    match err {
        kube::Error::Api(status) => {
            let message = status.message.clone();
            match status.code {
                401 => StepError::new(
                    ErrorClass::Error,
                    format!("the API server at {server} refused the credentials of context `{context}` (401 Unauthorized): the token is wrong or expired; refresh the kubeconfig's credentials"),
                ),
                403 => StepError::new(
                    ErrorClass::Error,
                    format!("forbidden (403): {message}; grant this permission to the identity opsctl runs as (RBAC Role/RoleBinding)"),
                ),
                404 => StepError::new(ErrorClass::Failed, format!("{what} not found in namespace {namespace} (context `{context}`)")),
                409 => StepError::new(
                    ErrorClass::Error,
                    format!("{what} was changed by someone else while opsctl was updating it (409 Conflict: {message}); run again to work from its current state"),
                ),
                422 => StepError::invalid(format!("the API server rejected the change to {what} (422 Invalid): {message}")),
                429 => StepError::new(ErrorClass::Throttled, format!("the API server is throttling requests for {what} (429): {message}")),
                c if c >= 500 => StepError::new(ErrorClass::Http5xx, format!("the API server answered {c} for {what}: {message}")),
                c => StepError::error(format!("the API server answered {c} for {what}: {message}")),
            }
        }
        kube::Error::HyperError(_) | kube::Error::Service(_) => {
            let cause = root_cause(&err);
            let lower = cause.to_lowercase();
            let reason = if lower.contains("connection refused") {
                "connection refused".to_string()
            } else if lower.contains("timed out") || lower.contains("elapsed") {
                return StepError::new(ErrorClass::Timeout, format!("the Kubernetes API server at {server} did not answer in time ({what})"));
            } else if lower.contains("dns") || lower.contains("lookup") || lower.contains("resolve") {
                format!("cannot resolve its host ({cause})")
            } else {
                cause
            };
            StepError::new(
                ErrorClass::Unavailable,
                format!("cannot reach the Kubernetes API server at {server} (context `{context}`): {reason}"),
            )
        }
        kube::Error::Auth(e) => StepError::error(format!("cannot authenticate to {server} (context `{context}`): {}", root_cause(&e))),
        kube::Error::SerdeError(e) => StepError::error(format!("unexpected answer from the API server at {server} for {what}: {e}")),
        other => StepError::error(format!("Kubernetes request for {what} failed: {}", root_cause(&other))),
    }
}

/// A workload a step acts on: `deployment/api` (or `deploy/api`, or just `api`),
/// `statefulset/db` (`sts/db`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub kind: WorkloadKind,
    pub name: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
}

impl WorkloadKind {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "deployment",
            WorkloadKind::StatefulSet => "statefulset",
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.kind.as_str(), self.name)
    }
}

impl Target {
    pub fn parse(s: &str) -> Result<Target, String> {
        let (kind, name) = match s.split_once('/') {
            Some((k, n)) => (k, n),
            None => ("deployment", s),
        };
        let kind = match kind.to_ascii_lowercase().as_str() {
            "deployment" | "deployments" | "deploy" => WorkloadKind::Deployment,
            "statefulset" | "statefulsets" | "sts" => WorkloadKind::StatefulSet,
            other => return Err(format!("`target` kind `{other}` is not one of deployment, statefulset (write `deployment/NAME`)")),
        };
        if !valid_name(name) {
            return Err(format!("`target` name `{name}` is not a valid Kubernetes name (lower case letters, digits, `-` and `.`)"));
        }
        Ok(Target { kind, name: name.to_string() })
    }

    /// Only Deployments (rollout history and undo).
    pub fn deployment(s: &str) -> Result<String, String> {
        let t = Target::parse(s)?;
        match t.kind {
            WorkloadKind::Deployment => Ok(t.name),
            k => Err(format!("`target` must be a deployment (this step does not support {}s)", k.as_str())),
        }
    }
}

pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// A label selector as kubectl writes it; checked before it is sent.
pub fn check_selector(s: &str) -> Result<(), String> {
    for part in s.split(',').map(str::trim) {
        if part.is_empty() {
            return Err(format!("`selector` `{s}` has an empty requirement"));
        }
    }
    Ok(())
}

/// List parameters for an optional label selector.
pub fn list_params(selector: Option<&str>) -> kube::api::ListParams {
    let params = kube::api::ListParams::default();
    match selector {
        Some(s) => params.labels(s),
        None => params,
    }
}

/// `matchLabels` as a label selector string: `app=api,tier=web`.
pub fn match_labels(labels: Option<&std::collections::BTreeMap<String, String>>) -> String {
    labels.into_iter().flatten().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

/// The label selector of a workload's pods.
pub async fn workload_selector(kube: &Kube, t: &Target) -> Result<String, StepError> {
    use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
    let what = format!("{} {}", t.kind.as_str(), t.name);
    let labels = match t.kind {
        WorkloadKind::Deployment => kube.api::<Deployment>().get(&t.name).await.map(|d| d.spec.selector.match_labels),
        WorkloadKind::StatefulSet => kube.api::<StatefulSet>().get(&t.name).await.map(|s| s.spec.selector.match_labels),
    }
    .map_err(|e| kube.error(e, &what))?;
    Ok(match_labels(labels.as_ref()))
}

/// Patches a workload's main resource (template, replicas and annotations in one request).
pub async fn patch_workload(kube: &Kube, t: &Target, patch: &kube::api::Patch<&serde_json::Value>, dry_run: bool) -> Result<(), StepError> {
    use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
    let what = format!("{} {}", t.kind.as_str(), t.name);
    let pp = patch_params(dry_run);
    match t.kind {
        WorkloadKind::Deployment => kube.api::<Deployment>().patch(&t.name, &pp, patch).await.map(|_| ()),
        WorkloadKind::StatefulSet => kube.api::<StatefulSet>().patch(&t.name, &pp, patch).await.map(|_| ()),
    }
    .map_err(|e| kube.error(e, &what))
}

/// Patch parameters for a change, with `dryRun=All` when planning.
pub fn patch_params(dry_run: bool) -> kube::api::PatchParams {
    kube::api::PatchParams { dry_run, field_manager: Some("opsctl".into()), ..Default::default() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_like_kubectl() {
        assert_eq!(Target::parse("deploy/api").unwrap(), Target { kind: WorkloadKind::Deployment, name: "api".into() });
        assert_eq!(Target::parse("api").unwrap().kind, WorkloadKind::Deployment);
        assert_eq!(Target::parse("sts/db").unwrap(), Target { kind: WorkloadKind::StatefulSet, name: "db".into() });
        assert!(Target::parse("cronjob/x").unwrap_err().contains("not one of deployment"));
        assert!(Target::parse("deployment/Api").unwrap_err().contains("not a valid Kubernetes name"));
        assert!(Target::deployment("sts/db").unwrap_err().contains("must be a deployment"));
    }
}
