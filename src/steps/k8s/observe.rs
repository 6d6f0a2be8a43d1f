//! `k8s.events`, `k8s.logs`, `k8s.top`: what `kubectl get events --sort-by`, `kubectl logs
//! | grep -c` and `kubectl top` tell an operator, with thresholds.

use std::collections::BTreeMap;

use futures_util::{AsyncBufReadExt, StreamExt};
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{ListParams, LogParams};
use schemars::JsonSchema;
use serde::Deserialize;

use super::health::for_each_page;
use super::{Kube, check_selector, client};
use crate::duration::Duration;
use crate::helpers::logscan::Tally;
use crate::helpers::threshold::Limits;
use crate::kind::{StepContext, StepKind};
use crate::pattern::Pattern;
use crate::vocab::{Effect, ErrorClass, Outcome, Output, StepError, Verdict};

fn zero() -> Option<u64> {
    Some(0)
}

/// Warning events of the namespace within a window, newest first.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Events {
    /// How far back. Default 1h.
    #[serde(default = "crate::helpers::logscan::hour")]
    pub window: Duration,
    /// Only these reasons (`BackOff`, `FailedScheduling`, `OOMKilling`, …).
    #[serde(default)]
    pub reasons: Vec<String>,
    /// Only events about this object name (a pod, a deployment).
    #[serde(default)]
    pub object: Option<String>,
    /// Warn when more events (counting repeats). Default 0: any warns.
    #[serde(default = "zero")]
    pub warn_above: Option<u64>,
    /// Fail when more events.
    #[serde(default)]
    pub fail_above: Option<u64>,
}

fn event_time(e: &Event) -> Option<jiff::Timestamp> {
    e.last_timestamp
        .as_ref()
        .map(|t| t.0)
        .or_else(|| e.event_time.as_ref().map(|t| t.0))
        .or_else(|| e.first_timestamp.as_ref().map(|t| t.0))
        .or_else(|| e.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

impl StepKind for Events {
    const NAME: &'static str = "k8s.events";
    const SUMMARY: &'static str = "Warning events of the namespace in a window (reason and object filters), newest first; warn/fail above a count";
    const EFFECT: Effect = Effect::Read;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "count", ty: "int", help: "warning events in the window, repeats counted" },
        Output { name: "events", ty: "list", help: "`{time, reason, object, message, count}`, newest first (at most 20)" },
        Output { name: "by_reason", ty: "map", help: "reason → count" },
    ];

    fn check(&self) -> Result<(), String> {
        Limits::above_counts(self.warn_above, self.fail_above).check_order("warn_above", "fail_above")
    }

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let kube = client(ctx).await?;
        let mut fields = vec!["type=Warning".to_string()];
        if let Some(o) = &self.object {
            fields.push(format!("involvedObject.name={o}"));
        }
        let since = jiff::Timestamp::now() - jiff::SignedDuration::try_from(self.window.std()).unwrap_or_default();
        let mut kept: Vec<(jiff::Timestamp, Event)> = Vec::new();
        for_each_page(&kube.api::<Event>(), ListParams::default().fields(&fields.join(",")), &kube, "events", |events| {
            for e in events {
                let Some(t) = event_time(&e) else { continue };
                if t < since || (!self.reasons.is_empty() && !self.reasons.iter().any(|r| Some(r) == e.reason.as_ref())) {
                    continue;
                }
                kept.push((t, e));
            }
        })
        .await?;
        kept.sort_by_key(|k| std::cmp::Reverse(k.0));
        let count: u64 = kept.iter().map(|(_, e)| e.count.unwrap_or(1).max(1) as u64).sum();
        let mut by_reason: BTreeMap<String, u64> = BTreeMap::new();
        for (_, e) in &kept {
            *by_reason.entry(e.reason.clone().unwrap_or_default()).or_default() += e.count.unwrap_or(1).max(1) as u64;
        }
        let list: Vec<serde_json::Value> = kept
            .iter()
            .take(20)
            .map(|(t, e)| {
                serde_json::json!({
                    "time": t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
                    "reason": e.reason,
                    "object": format!("{}/{}", e.involved_object.kind.clone().unwrap_or_default().to_lowercase(), e.involved_object.name.clone().unwrap_or_default()),
                    "message": e.message.as_deref().map(|m| crate::helpers::text::truncate(m, 300)),
                    "count": e.count.unwrap_or(1),
                })
            })
            .collect();
        let limits = Limits::above_counts(self.warn_above, self.fail_above);
        let mut message = format!("{count} warning events in the last {}", self.window);
        if !by_reason.is_empty() {
            message.push_str(&format!(" ({})", by_reason.iter().map(|(r, n)| format!("{r}: {n}")).collect::<Vec<_>>().join(", ")));
        }
        if let Some(first) = list.first() {
            message.push_str(&format!("; latest: {} {} {}", first["object"].as_str().unwrap_or_default(), first["reason"].as_str().unwrap_or_default(), first["message"].as_str().unwrap_or_default()));
        }
        Ok(Outcome::new(limits.verdict(count as f64), message)
            .value(count.to_string())
            .threshold(limits.describe(|v| format!("{v:.0}")))
            .output("count", count)
            .output("events", list)
            .output("by_reason", serde_json::to_value(by_reason).unwrap_or_default()))
    }
}

/// Counts log lines matching a pattern across a deployment's, statefulset's, a pod's or a
/// selector's pods (`kubectl logs --since … | grep -c`), plus HTTP 401/403/429 mentions.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Logs {
    /// `deployment/NAME` (or `NAME`), `statefulset/NAME` or `pod/NAME`; or give `selector`.
    #[serde(default)]
    pub target: Option<String>,
    /// A label selector for the pods, instead of `target`.
    #[serde(default)]
    pub selector: Option<String>,
    /// The container. Default: every container of each pod.
    #[serde(default)]
    pub container: Option<String>,
    /// A regex, e.g. `(?i)error`.
    pub pattern: Pattern,
    /// How far back. Default 1h.
    #[serde(default = "crate::helpers::logscan::hour")]
    pub since: Duration,
    /// At most this many of the latest lines per container.
    #[serde(default)]
    pub tail: Option<u32>,
    #[serde(default)]
    pub warn_above: Option<u64>,
    #[serde(default)]
    pub fail_above: Option<u64>,
    /// Matching lines kept as samples. Default 5.
    #[serde(default = "crate::helpers::logscan::five")]
    pub samples: usize,
}

/// One container's log: the tally and its 401/403/429 counts.
type LogCount = (Tally, [u64; 3]);

/// Pods a target names: a pod, or the pods of a workload's selector.
async fn pods_of(kube: &Kube, target: Option<&str>, selector: Option<&str>) -> Result<(String, Vec<Pod>), StepError> {
    let (what, selector) = match (target, selector) {
        (Some(t), None) if t.starts_with("pod/") || t.starts_with("pods/") || t.starts_with("po/") => {
            let name = t.split_once('/').map(|(_, n)| n).unwrap_or_default();
            let pod = kube.api::<Pod>().get(name).await.map_err(|e| kube.error(e, &format!("pod {name}")))?;
            return Ok((format!("pod/{name}"), vec![pod]));
        }
        (Some(t), None) => {
            let target = super::Target::parse(t).map_err(StepError::invalid)?;
            (target.to_string(), super::workload_selector(kube, &target).await?)
        }
        (None, Some(s)) => (format!("pods matching {s}"), s.to_string()),
        _ => return Err(StepError::invalid("give `target` or `selector`")),
    };
    let mut pods = Vec::new();
    for_each_page(&kube.api::<Pod>(), ListParams::default().labels(&selector), kube, "pods", |p| pods.extend(p)).await?;
    Ok((what, pods))
}

impl StepKind for Logs {
    const NAME: &'static str = "k8s.logs";
    const SUMMARY: &'static str = "count log lines matching a regex across a deployment's, a pod's or a selector's pods (since/tail), warn/fail thresholds, samples, 401/403/429 counts";
    const EFFECT: Effect = Effect::Read;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "matches", ty: "int", help: "matching lines" },
        Output { name: "lines", ty: "int", help: "lines read" },
        Output { name: "samples", ty: "list", help: "the first matching lines (cut to 300 characters)" },
        Output { name: "status_counts", ty: "map", help: "lines mentioning HTTP 401, 403 and 429" },
        Output { name: "pods", ty: "int", help: "pods read" },
    ];

    fn check(&self) -> Result<(), String> {
        match (&self.target, &self.selector) {
            (Some(_), Some(_)) => return Err("give `target` or `selector`, not both".into()),
            (None, None) => return Err("give `target` (deployment/NAME, pod/NAME) or `selector`".into()),
            (Some(t), None) if !t.starts_with("pod/") && !t.starts_with("pods/") && !t.starts_with("po/") => {
                super::Target::parse(t)?;
            }
            (None, Some(s)) => check_selector(s)?,
            _ => {}
        }
        Limits::above_counts(self.warn_above, self.fail_above).check_order("warn_above", "fail_above")
    }

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let kube = client(ctx).await?;
        let (what, pods) = pods_of(&kube, self.target.as_deref(), self.selector.as_deref()).await?;
        if pods.is_empty() {
            return Err(StepError::new(ErrorClass::Failed, format!("{what}: no pods to read logs from")));
        }
        let mut streams = Vec::new();
        for p in &pods {
            let name = p.metadata.name.clone().unwrap_or_default();
            let containers: Vec<String> = match &self.container {
                Some(c) => vec![c.clone()],
                None => p.spec.as_ref().map(|s| s.containers.iter().map(|c| c.name.clone()).collect()).unwrap_or_default(),
            };
            for c in containers {
                streams.push((name.clone(), c));
            }
        }
        let since = self.since.std().as_secs().max(1) as i64;
        let status_re = regex::Regex::new(r"\b(401|403|429)\b").expect("regex");
        let results: Vec<Result<LogCount, StepError>> = futures_util::stream::iter(streams)
            .map(|(pod, container)| {
                let kube = &kube;
                let status_re = &status_re;
                async move {
                    let params = LogParams { container: Some(container.clone()), since_seconds: Some(since), tail_lines: self.tail.map(i64::from), ..LogParams::default() };
                    let stream = kube.api::<Pod>().log_stream(&pod, &params).await.map_err(|e| kube.error(e, &format!("logs of pod {pod} container {container}")))?;
                    let mut lines = stream.lines();
                    let (mut tally, mut status) = (Tally::default(), [0u64; 3]);
                    while let Some(line) = lines.next().await {
                        let line = line.map_err(|e| StepError::new(ErrorClass::Unavailable, format!("reading logs of pod {pod}: {e}")))?;
                        tally.line(&line, &self.pattern, self.samples, Some(&pod));
                        if let Some(c) = status_re.captures(&line) {
                            status[match &c[1] {
                                "401" => 0,
                                "403" => 1,
                                _ => 2,
                            }] += 1;
                        }
                    }
                    Ok((tally, status))
                }
            })
            .buffer_unordered(8)
            .collect()
            .await;
        let (mut tally, mut status) = (Tally::default(), [0u64; 3]);
        for r in results {
            let (t, st) = r?;
            tally.merge(t, self.samples);
            for i in 0..3 {
                status[i] += st[i];
            }
        }
        let mut message = format!("{} of {} lines of {what} ({} pods) in the last {} match {}", tally.matches, tally.lines, pods.len(), self.since, self.pattern);
        if status.iter().any(|s| *s > 0) {
            message.push_str(&format!("; HTTP 401: {}, 403: {}, 429: {}", status[0], status[1], status[2]));
        }
        Ok(tally
            .outcome(&Limits::above_counts(self.warn_above, self.fail_above), message)
            .output("status_counts", serde_json::json!({"401": status[0], "403": status[1], "429": status[2]}))
            .output("pods", pods.len()))
    }
}

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
