//! `{ k8s_secret: "NAMESPACE/NAME#KEY" }`: a key of a Secret in the instance's cluster, read
//! when a run starts (the procedures fetch remote references before the steps run).

use k8s_openapi::api::core::v1::Secret;

use super::client_in;
use crate::instance::Instance;
use crate::kind::Resources;

/// The value of `key` in Secret `namespace/name`, or why it cannot be read.
pub async fn fetch(instance: &Instance, resources: &Resources, reference: &str) -> Result<String, String> {
    let (path, key) = reference.split_once('#').ok_or_else(|| format!("`{reference}` names no key: write NAMESPACE/NAME#KEY"))?;
    let (namespace, name) = path.split_once('/').ok_or_else(|| format!("`{reference}` names no namespace: write NAMESPACE/NAME#KEY"))?;
    if instance.kubernetes.is_none() {
        return Err(format!("instance {} has no `kubernetes:` settings to read Secret {path} with", instance.name));
    }
    let kube = client_in(instance, resources).await.map_err(|e| e.message)?;
    let api: kube::Api<Secret> = kube::Api::namespaced(kube.client.clone(), namespace);
    let secret = api.get(name).await.map_err(|e| super::api_error(e, &format!("Secret {name}"), &kube.server, &kube.context, namespace).message)?;
    if let Some(v) = secret.data.as_ref().and_then(|d| d.get(key)) {
        return String::from_utf8(v.0.clone()).map_err(|_| format!("key {key} of Secret {path} is not text"));
    }
    if let Some(v) = secret.string_data.as_ref().and_then(|d| d.get(key)) {
        return Ok(v.clone());
    }
    let keys: Vec<String> = secret.data.as_ref().map(|d| d.keys().cloned().collect()).unwrap_or_default();
    Err(format!("Secret {path} has no key {key}; its keys: {}", keys.join(", ")))
}
