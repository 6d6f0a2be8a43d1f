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
}

fn yes() -> bool {
    true
}
