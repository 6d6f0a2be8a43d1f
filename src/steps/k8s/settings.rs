//! The `kubernetes:` section of an instance: how to reach its cluster and namespace.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::Duration;

/// How to reach an instance's Kubernetes cluster.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KubeSettings {
    /// The kubeconfig context. Default: the kubeconfig's current context.
    #[serde(default)]
    pub context: Option<String>,
    /// The namespace. Default: the context's, else `default`.
    #[serde(default)]
    pub namespace: Option<String>,
    /// A kubeconfig file (relative to the inventory). Default: `$KUBECONFIG`, else
    /// `~/.kube/config`.
    #[serde(default)]
    pub kubeconfig: Option<PathBuf>,
    /// Use the pod's service account. Default: only when there is no kubeconfig and
    /// opsctl runs in a pod.
    #[serde(default)]
    pub in_cluster: bool,
    /// The longest one API request may take. Default 30s.
    #[serde(default)]
    pub timeout: Option<Duration>,
    /// Take a `coordination.k8s.io/v1` Lease for mutating runs. Default true.
    #[serde(default = "yes")]
    pub lease: bool,
    /// Resources `check` holds to expectations (`k8s.resource`): Argo CD Applications,
    /// Crossplane resources, Velero backups, certificates…
    #[serde(default)]
    pub resources: Vec<ResourceCheck>,
}

/// Resources of any kind (custom ones included, found through the API's discovery) held to
/// expectations: `k8s.resource`, and each entry of `kubernetes.resources`.
///
/// ```yaml
/// - { api_version: argoproj.io/v1alpha1, kind: Application, namespace: argocd, name: go-coffee,
///     expect: { status.health.status: Healthy, status.sync.status: Synced } }
/// - { api_version: s3.aws.upbound.io/v1beta1, kind: Bucket, conditions: [Ready=True, Synced=True] }
/// - { api_version: velero.io/v1, kind: Backup, namespace: velero, newest: true,
///     expect: { status.phase: Completed }, age_field: status.completionTimestamp, max_age: 26h }
/// ```
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceCheck {
    /// `group/version` (`argoproj.io/v1alpha1`), or `v1` for the core group.
    pub api_version: String,
    /// The kind, as in the resource's `kind:` (`Application`).
    pub kind: String,
    /// One resource by name. Default: every one (matching `selector`).
    #[serde(default)]
    pub name: Option<String>,
    /// Only resources with these labels.
    #[serde(default)]
    pub selector: Option<String>,
    /// The namespace of a namespaced kind. Default: the instance's.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Dotted field → expected value (`status.health.status: Healthy`); a list means any of
    /// these values.
    #[serde(default)]
    pub expect: std::collections::BTreeMap<String, serde_json::Value>,
    /// `Type=Status` entries of `status.conditions` (`Ready=True`).
    #[serde(default)]
    pub conditions: Vec<String>,
    /// A timestamp field (`status.completionTimestamp`) that must be younger than `max_age`.
    #[serde(default)]
    pub age_field: Option<String>,
    /// How old `age_field` may be (`26h`).
    #[serde(default)]
    pub max_age: Option<Duration>,
    /// Judge only the most recently created of the matching resources (Velero's newest backup).
    #[serde(default)]
    pub newest: bool,
    /// No resource matched: `fail` (default), `warn` or `pass`.
    #[serde(default)]
    pub on_empty: crate::vocab::Judgement,
}


fn yes() -> bool {
    true
}
