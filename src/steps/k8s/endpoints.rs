//! `k8s.endpoints`: traffic can reach the instance — every Service with a selector has ready
//! endpoint addresses (`kubectl get endpoints`), and every Ingress has a load balancer address
//! (`kubectl get ingress`'s ADDRESS column).

use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::networking::v1::Ingress;
use schemars::JsonSchema;
use serde::Deserialize;

use super::health::{for_each_page, list_examples};
use super::{check_selector, client};
use crate::kind::{StepContext, StepKind};
use crate::vocab::{Effect, Judgement, Outcome, Output, StepError, Verdict};

/// Services with ready endpoints; ingresses with an address.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointsCheck {
    /// Only these services (by name). Default: every service of the namespace that has a
    /// selector (ExternalName services and services without a selector have no endpoints
    /// to judge).
    #[serde(default)]
    pub services: Vec<String>,
    /// Only services and ingresses with these labels.
    #[serde(default)]
    pub selector: Option<String>,
    /// Also check ingresses. Default true.
    #[serde(default = "yes")]
    pub ingresses: bool,
    /// Nothing to check (no service, no ingress): `fail` (default), `warn` or `pass`.
    #[serde(default)]
    pub on_empty: Judgement,
}

fn yes() -> bool {
    true
}

/// Ready and not-ready addresses of an Endpoints object.
fn addresses(ep: &Endpoints) -> (usize, usize) {
    ep.subsets.iter().flatten().fold((0, 0), |(r, n), s| (r + s.addresses.as_ref().map_or(0, Vec::len), n + s.not_ready_addresses.as_ref().map_or(0, Vec::len)))
}

impl StepKind for EndpointsCheck {
    const NAME: &'static str = "k8s.endpoints";
    const PERMISSIONS: &'static [crate::vocab::Permission] = {
        use crate::vocab::*;
        &[kube("", "services", &["list"]), kube("", "endpoints", &["get"]), kube("networking.k8s.io", "ingresses", &["list"])]
    };
    const SUMMARY: &'static str = "every service (with a selector) has ready endpoint addresses; every ingress has a load balancer address";
    const EFFECT: Effect = Effect::Read;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "services", ty: "map", help: "service → ready addresses" },
        Output { name: "ingresses", ty: "map", help: "ingress → its addresses (IPs or host names)" },
        Output { name: "failing", ty: "list", help: "services without ready endpoints, ingresses without an address" },
    ];

    fn check(&self) -> Result<(), String> {
        self.selector.as_deref().map_or(Ok(()), check_selector)
    }

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let kube = client(ctx).await?;
        let params = super::list_params(self.selector.as_deref());
        let mut services = Vec::new();
        for_each_page(&kube.api::<Service>(), params.clone(), &kube, "services", |page| services.extend(page)).await?;
        let named = |s: &Service| s.metadata.name.clone().unwrap_or_default();
        for wanted in &self.services {
            if !services.iter().any(|s| named(s) == *wanted) {
                return Err(StepError::new(crate::vocab::ErrorClass::Failed, format!("service {wanted} does not exist in namespace {}", kube.namespace)));
            }
        }
        let judged: Vec<&Service> = services
            .iter()
            .filter(|s| self.services.is_empty() || self.services.contains(&named(s)))
            .filter(|s| {
                let spec = s.spec.as_ref();
                spec.and_then(|p| p.selector.as_ref()).is_some_and(|m| !m.is_empty()) && spec.and_then(|p| p.type_.as_deref()) != Some("ExternalName")
            })
            .collect();
        let mut failing = Vec::new();
        let mut service_out = serde_json::Map::new();
        let ep_api = kube.api::<Endpoints>();
        for s in &judged {
            let name = named(s);
            let ep = ep_api.get_opt(&name).await.map_err(|e| kube.error(e, &format!("endpoints {name}")))?;
            let (ready, not_ready) = ep.as_ref().map(addresses).unwrap_or((0, 0));
            service_out.insert(name.clone(), ready.into());
            if ready == 0 {
                failing.push(if not_ready > 0 { format!("service {name} ({not_ready} not ready)") } else { format!("service {name} (no endpoints)") });
            }
        }
        let mut ingress_out = serde_json::Map::new();
        let mut ingress_count = 0;
        if self.ingresses && self.services.is_empty() {
            let mut ingresses = Vec::new();
            for_each_page(&kube.api::<Ingress>(), params, &kube, "ingresses", |page| ingresses.extend(page)).await?;
            ingress_count = ingresses.len();
            for i in ingresses {
                let name = i.metadata.name.clone().unwrap_or_default();
                let addrs: Vec<String> =
                    i.status.and_then(|s| s.load_balancer).and_then(|lb| lb.ingress).into_iter().flatten().filter_map(|a| a.ip.or(a.hostname)).collect();
                if addrs.is_empty() {
                    failing.push(format!("ingress {name} (no address)"));
                }
                ingress_out.insert(name, addrs.into());
            }
        }
        let total = judged.len() + ingress_count;
        if total == 0 {
            let verdict = self.on_empty.verdict();
            return Ok(Outcome::new(verdict, format!("no services with a selector and no ingresses in namespace {}", kube.namespace)).value("0"));
        }
        let ok = total - failing.len();
        let mut message = format!("{} services with ready endpoints", judged.len() - failing.iter().filter(|f| f.starts_with("service ")).count());
        if self.ingresses && self.services.is_empty() {
            message.push_str(&format!(", {} ingresses with an address", ingress_count - failing.iter().filter(|f| f.starts_with("ingress ")).count()));
        }
        if !failing.is_empty() {
            message = format!("{message}; without: {}", list_examples(&failing, 5));
        }
        let verdict = if failing.is_empty() { Verdict::Passed } else { Verdict::Failed };
        Ok(Outcome::new(verdict, message)
            .value(format!("{ok}/{total}"))
            .output("services", serde_json::Value::Object(service_out))
            .output("ingresses", serde_json::Value::Object(ingress_out))
            .output("failing", failing))
    }
}
