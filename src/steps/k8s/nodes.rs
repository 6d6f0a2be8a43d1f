//! What node maintenance shares (`k8s.cordon`, `k8s.uncordon`, `k8s.drain`): reading and
//! setting a node's `unschedulable`.

use k8s_openapi::api::core::v1::Node;
use kube::api::Patch;
use serde_json::json;

use super::{Kube, patch_params, valid_name};
use crate::vocab::StepError;

pub async fn unschedulable(kube: &Kube, node: &str) -> Result<bool, StepError> {
    let n = kube.cluster_api::<Node>().get(node).await.map_err(|e| kube.error(e, &format!("node {node}")))?;
    Ok(n.spec.and_then(|s| s.unschedulable).unwrap_or(false))
}

pub async fn set_unschedulable(kube: &Kube, node: &str, value: bool, dry_run: bool) -> Result<(), StepError> {
    kube.cluster_api::<Node>()
        .patch(node, &patch_params(dry_run), &Patch::Merge(json!({"spec": {"unschedulable": if value { json!(true) } else { json!(null) }}})))
        .await
        .map(|_| ())
        .map_err(|e| kube.error(e, &format!("node {node}")))
}

pub fn check_node(node: &str) -> Result<(), String> {
    if valid_name(node) { Ok(()) } else { Err(format!("`node` `{node}` is not a valid node name")) }
}
