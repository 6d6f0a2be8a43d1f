//! `k8s.top`: pods' and nodes' CPU and memory from metrics.k8s.io, as `kubectl top` shows
//! them, with thresholds.

use std::collections::BTreeMap;

use kube::api::ListParams;
use schemars::JsonSchema;
use serde::Deserialize;

use super::health::for_each_page;
use super::{check_selector, client};
use crate::helpers::threshold::Limits;
use crate::kind::{StepContext, StepKind};
use crate::vocab::{Effect, Outcome, Output, StepError, Verdict};

/// A Kubernetes quantity in base units (cores, bytes): `250m` → 0.25, `1Gi` → 2^30,
/// `123456n` → 0.000123456.
pub fn quantity(q: &str) -> Option<f64> {
    let q = q.trim();
    let split = q.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+')).unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let n: f64 = num.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024f64.powi(4),
        s if s.starts_with('e') || s.starts_with('E') => 10f64.powi(s[1..].parse().ok()?),
        _ => return None,
    };
    Some(n * factor)
}

fn cores(v: f64) -> String {
    if v < 1.0 { format!("{:.0}m", v * 1000.0) } else { format!("{v:.2}") }
}

fn mib(v: f64) -> String {
    if v >= 1024.0 * 1024.0 * 1024.0 { format!("{:.1}Gi", v / 1024f64.powi(3)) } else { format!("{:.0}Mi", v / 1024f64.powi(2)) }
}

#[derive(Clone, Copy, Debug, Default, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TopWhat {
    #[default]
    Pods,
    Nodes,
}

/// CPU and memory in use (`kubectl top pods|nodes`, from metrics.k8s.io), against limits:
/// pods by absolute quantities, nodes by percent of allocatable. Without metrics-server, a
/// warning that says so.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Top {
    /// `pods` (default, in the namespace) or `nodes`.
    #[serde(default)]
    pub what: TopWhat,
    /// Only pods (or nodes) with these labels.
    #[serde(default)]
    pub selector: Option<String>,
    /// Pods: warn/fail when one uses more CPU than this (`500m`, `2`).
    #[serde(default)]
    pub warn_cpu: Option<String>,
    #[serde(default)]
    pub fail_cpu: Option<String>,
    /// Pods: warn/fail when one uses more memory than this (`512Mi`, `2Gi`).
    #[serde(default)]
    pub warn_memory: Option<String>,
    #[serde(default)]
    pub fail_memory: Option<String>,
    /// Nodes: warn/fail when CPU or memory use is above this percent of allocatable.
    #[serde(default)]
    pub warn_percent: Option<f64>,
    #[serde(default)]
    pub fail_percent: Option<f64>,
}

impl StepKind for Top {
    const NAME: &'static str = "k8s.top";
    const PERMISSIONS: &'static [crate::vocab::Permission] = {
        use crate::vocab::*;
        &[kube("metrics.k8s.io", "pods", &["list"]), kube_cluster("metrics.k8s.io", "nodes", &["list"]), kube_cluster("", "nodes", &["list"])]
    };
    const SUMMARY: &'static str = "CPU/memory in use per pod or node (metrics.k8s.io) against thresholds; a clear warning without metrics-server";
    const EFFECT: Effect = Effect::Read;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "usage", ty: "list", help: "`{name, cpu_cores, memory_bytes, cpu_percent?, memory_percent?}`, heaviest CPU first" },
        Output { name: "available", ty: "bool", help: "false when metrics.k8s.io is not served" },
    ];

    fn check(&self) -> Result<(), String> {
        for (name, v) in [("warn_cpu", &self.warn_cpu), ("fail_cpu", &self.fail_cpu), ("warn_memory", &self.warn_memory), ("fail_memory", &self.fail_memory)] {
            if let Some(v) = v {
                quantity(v).ok_or_else(|| format!("`{name}` `{v}` is not a Kubernetes quantity (e.g. `500m`, `2`, `512Mi`)"))?;
                if self.what == TopWhat::Nodes {
                    return Err(format!("`{name}` is for pods; for nodes use `warn_percent` / `fail_percent`"));
                }
            }
        }
        crate::helpers::threshold::check_percent("warn_percent", self.warn_percent)?;
        crate::helpers::threshold::check_percent("fail_percent", self.fail_percent)?;
        if self.what == TopWhat::Pods && (self.warn_percent.is_some() || self.fail_percent.is_some()) {
            return Err("`warn_percent` / `fail_percent` are for nodes; for pods use `warn_cpu`, `warn_memory`, …".into());
        }
        self.selector.as_deref().map_or(Ok(()), check_selector)
    }

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let kube = client(ctx).await?;
        let mut path = match self.what {
            TopWhat::Pods => format!("/apis/metrics.k8s.io/v1beta1/namespaces/{}/pods", kube.namespace),
            TopWhat::Nodes => "/apis/metrics.k8s.io/v1beta1/nodes".to_string(),
        };
        if let Some(s) = &self.selector {
            path.push_str(&format!("?labelSelector={}", percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC)));
        }
        let req = http::Request::get(&path).body(Vec::new()).map_err(|e| StepError::error(e.to_string()))?;
        let list: serde_json::Value = match kube.client.request(req).await {
            Ok(v) => v,
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 503 => {
                return Ok(Outcome::new(Verdict::Warned, format!("metrics.k8s.io is not served by {} ({}): install metrics-server for k8s.top", kube.server, s.code))
                    .output("usage", Vec::<String>::new())
                    .output("available", false));
            }
            Err(e) => return Err(kube.error(e, "metrics.k8s.io")),
        };
        let mut allocatable: BTreeMap<String, (f64, f64)> = BTreeMap::new();
        if self.what == TopWhat::Nodes {
            for_each_page(&kube.cluster_api::<k8s_openapi::api::core::v1::Node>(), ListParams::default(), &kube, "nodes", |nodes| {
                for n in nodes {
                    let a = n.status.and_then(|s| s.allocatable).unwrap_or_default();
                    let cpu = a.get("cpu").and_then(|q| quantity(&q.0)).unwrap_or(0.0);
                    let mem = a.get("memory").and_then(|q| quantity(&q.0)).unwrap_or(0.0);
                    allocatable.insert(n.metadata.name.unwrap_or_default(), (cpu, mem));
                }
            })
            .await?;
        }
        let mut usage: Vec<(String, f64, f64)> = Vec::new();
        for item in list["items"].as_array().into_iter().flatten() {
            let name = item["metadata"]["name"].as_str().unwrap_or_default().to_string();
            let (cpu, mem) = match self.what {
                TopWhat::Nodes => (quantity(item["usage"]["cpu"].as_str().unwrap_or("0")).unwrap_or(0.0), quantity(item["usage"]["memory"].as_str().unwrap_or("0")).unwrap_or(0.0)),
                TopWhat::Pods => item["containers"].as_array().into_iter().flatten().fold((0.0, 0.0), |(c, m), ct| {
                    (c + quantity(ct["usage"]["cpu"].as_str().unwrap_or("0")).unwrap_or(0.0), m + quantity(ct["usage"]["memory"].as_str().unwrap_or("0")).unwrap_or(0.0))
                }),
            };
            usage.push((name, cpu, mem));
        }
        usage.sort_by(|a, b| b.1.total_cmp(&a.1));
        let mut verdict = Verdict::Passed;
        let mut over = Vec::new();
        let mut out = Vec::new();
        for (name, cpu, mem) in &usage {
            let mut row = serde_json::json!({"name": name, "cpu_cores": cpu, "memory_bytes": mem});
            let v = match self.what {
                TopWhat::Pods => {
                    let q = |s: &Option<String>| s.as_deref().and_then(quantity);
                    let vc = Limits::above(q(&self.warn_cpu), q(&self.fail_cpu)).verdict(*cpu);
                    let vm = Limits::above(q(&self.warn_memory), q(&self.fail_memory)).verdict(*mem);
                    vc.max(vm)
                }
                TopWhat::Nodes => {
                    let (ac, am) = allocatable.get(name).copied().unwrap_or((0.0, 0.0));
                    let pc = if ac > 0.0 { cpu / ac * 100.0 } else { 0.0 };
                    let pm = if am > 0.0 { mem / am * 100.0 } else { 0.0 };
                    row["cpu_percent"] = serde_json::json!((pc * 10.0).round() / 10.0);
                    row["memory_percent"] = serde_json::json!((pm * 10.0).round() / 10.0);
                    Limits::above(self.warn_percent, self.fail_percent).verdict(pc.max(pm))
                }
            };
            if v > Verdict::Passed {
                over.push(match self.what {
                    TopWhat::Pods => format!("{name} ({} CPU, {})", cores(*cpu), mib(*mem)),
                    TopWhat::Nodes => format!("{name} (CPU {}%, memory {}%)", row["cpu_percent"], row["memory_percent"]),
                });
            }
            verdict = verdict.max(v);
            out.push(row);
        }
        let kind = if self.what == TopWhat::Pods { "pods" } else { "nodes" };
        let mut message = format!("{} {kind}", usage.len());
        if let Some((name, cpu, mem)) = usage.first() {
            message.push_str(&format!("; heaviest {name}: {} CPU, {}", cores(*cpu), mib(*mem)));
        }
        if !over.is_empty() {
            message.push_str(&format!("; over the limit: {}", over.join(", ")));
        }
        Ok(Outcome::new(verdict, message).value(format!("{} {kind}", usage.len())).output("usage", out).output("available", true))
    }
}

#[cfg(test)]
mod tests {
    use super::quantity;

    #[test]
    fn quantities_parse_as_kubernetes_writes_them() {
        assert_eq!(quantity("250m"), Some(0.25));
        assert_eq!(quantity("2"), Some(2.0));
        assert_eq!(quantity("1Gi"), Some(1073741824.0));
        assert_eq!(quantity("512Mi"), Some(536870912.0));
        assert!((quantity("123456789n").unwrap() - 0.123456789).abs() < 1e-12);
        assert_eq!(quantity("1e3"), Some(1000.0));
        assert_eq!(quantity("12MB"), None);
    }
}
