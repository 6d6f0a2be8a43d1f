//! Port-forwarding through the API server (`port_forward:` in `postgres:` and `redis:`):
//! what `kubectl port-forward pod/postgres-0 5432` does, without kubectl and without a
//! local port. Each connection is one request to the pod's portforward subresource
//! (WebSocket, `v4.channel.k8s.io`: data on channel 0, errors on channel 1, each opened
//! with the port number), so a connection's end is the stream's end, and a refusal inside
//! the pod arrives as the error channel's text.
//!
//! A service is resolved like `kubectl port-forward svc/NAME`: one of the pods its
//! selector matches that is running and ready (by name, so runs pick the same one), and the
//! service's port mapped to that pod's target port (a number, or a container port's name).

use std::sync::Arc;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::ListParams;

use super::{Kube, client_in};
use crate::helpers::tunnel::{Explained, ForwardTo, PortForward, Stream, Tunnel};
use crate::instance::Instance;
use crate::kind::Resources;
use crate::vocab::{ErrorClass, StepError};

/// A tunnel to `to` in the instance's namespace; the pod is found (and a service resolved)
/// now, so a missing one is said before anything connects.
pub async fn open(instance: &Instance, resources: &Resources, to: &PortForward) -> Result<Arc<dyn Tunnel>, StepError> {
    if instance.kubernetes.is_none() {
        return Err(StepError::invalid(format!(
            "`port_forward` goes through the Kubernetes API server, and instance {} has no Kubernetes settings; add `kubernetes: {{ context: CONTEXT, namespace: NAMESPACE }}` to it in the inventory",
            instance.name
        )));
    }
    let kube = client_in(instance, resources).await?;
    let (pod, port, via) = match &to.to {
        ForwardTo::Pod(name) => {
            let pod = kube.api::<Pod>().get(name).await.map_err(|e| kube.error(e, &format!("pod {name} (port_forward)")))?;
            if let Some(why) = not_running(&pod) {
                return Err(StepError::new(ErrorClass::Unavailable, format!("cannot forward to port {} of pod {name}: it is {why}", to.port)));
            }
            (name.clone(), to.port, None)
        }
        ForwardTo::Service(name) => {
            let (pod, port) = resolve_service(&kube, name, to.port).await?;
            (pod, port, Some(name.clone()))
        }
    };
    Ok(Arc::new(PodPort { kube, pod, port, via }))
}

/// Why a pod cannot carry a port-forward (`Pending`, `being deleted`), if it cannot.
fn not_running(pod: &Pod) -> Option<String> {
    if pod.metadata.deletion_timestamp.is_some() {
        return Some("being deleted".into());
    }
    match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Running") => None,
        Some(phase) => Some(format!("{phase}, not Running")),
        None => Some("not yet scheduled".into()),
    }
}

fn ready(pod: &Pod) -> bool {
    not_running(pod).is_none()
        && pod.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The ready pod behind `service` and the pod port its `port` maps to.
async fn resolve_service(kube: &Kube, service: &str, port: u16) -> Result<(String, u16), StepError> {
    let svc = kube.api::<Service>().get(service).await.map_err(|e| kube.error(e, &format!("service {service} (port_forward)")))?;
    let spec = svc.spec.unwrap_or_default();
    let selector = spec.selector.unwrap_or_default();
    if selector.is_empty() {
        return Err(StepError::invalid(format!(
            "service {service} has no selector (its endpoints are kept by hand), so it has no pods to forward to; name the pod with `port_forward: {{ pod: NAME, port: {port} }}`"
        )));
    }
    let ports = spec.ports.unwrap_or_default();
    let Some(sp) = ports.iter().find(|p| p.port == i32::from(port)) else {
        let has: Vec<String> = ports.iter().map(|p| match &p.name {
            Some(n) if !n.is_empty() => format!("{} ({n})", p.port),
            _ => p.port.to_string(),
        }).collect();
        return Err(StepError::invalid(format!(
            "service {service} has no port {port}; its ports: {}",
            if has.is_empty() { "none".to_string() } else { has.join(", ") }
        )));
    };
    let labels = selector.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
    let mut pods = kube.api::<Pod>().list(&ListParams::default().labels(&labels)).await.map_err(|e| kube.error(e, &format!("pods of service {service}")))?.items;
    pods.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let total = pods.len();
    let Some(pod) = pods.into_iter().find(ready) else {
        return Err(StepError::new(
            ErrorClass::Unavailable,
            if total == 0 {
                format!("service {service} has no pods (none matches its selector {labels}); nothing to forward to")
            } else {
                format!("service {service} has no ready pod to forward to ({total} match its selector {labels}, none is running and ready)")
            },
        ));
    };
    let name = pod.metadata.name.clone().unwrap_or_default();
    let target = match &sp.target_port {
        None => port,
        Some(IntOrString::Int(n)) => u16::try_from(*n).map_err(|_| StepError::invalid(format!("service {service} maps port {port} to {n}, which is not a port")))?,
        Some(IntOrString::String(named)) => pod
            .spec
            .iter()
            .flat_map(|s| s.containers.iter())
            .flat_map(|c| c.ports.iter().flatten())
            .find(|p| p.name.as_deref() == Some(named.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .ok_or_else(|| StepError::invalid(format!("service {service} maps port {port} to the port named `{named}`, and pod {name} has no container port by that name")))?,
    };
    Ok((name, target))
}

/// A pod's port, opened anew for each connection.
struct PodPort {
    kube: Kube,
    pod: String,
    port: u16,
    /// The service it was found through.
    via: Option<String>,
}

impl Tunnel for PodPort {
    fn describe(&self) -> String {
        match &self.via {
            Some(s) => format!("{}:{} (port-forward to service {s})", self.pod, self.port),
            None => format!("{}:{} (port-forward)", self.pod, self.port),
        }
    }

    fn open(&self) -> BoxFuture<'_, Result<Stream, StepError>> {
        Box::pin(async move {
            let what = format!("port-forward to pod {} port {}", self.pod, self.port);
            let mut forwarder = self.kube.api::<Pod>().portforward(&self.pod, &[self.port]).await.map_err(|e| self.kube.error(e, &what))?;
            let stream = forwarder.take_stream(self.port).ok_or_else(|| StepError::error(format!("{what}: the API server gave no stream")))?;
            let why = forwarder.take_error(self.port).ok_or_else(|| StepError::error(format!("{what}: the API server gave no error channel")))?;
            let (pod, port) = (self.pod.clone(), self.port);
            let why = why.map(move |m| m.map(|m| format!("port-forward to pod {pod} port {port}: {m}"))).boxed();
            // The forwarder's task carries the stream; it ends when the stream is dropped.
            drop(forwarder);
            Ok(Stream::new(Explained::new(stream, why)))
        })
    }
}
