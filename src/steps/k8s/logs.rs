//! `k8s.logs`: matching lines in a workload's or pods' logs (`kubectl logs | grep -c`),
//! streamed, with thresholds and samples.

use futures_util::{AsyncBufReadExt, StreamExt};
use k8s_openapi::api::core::v1::Pod;
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
use crate::vocab::{Effect, ErrorClass, Outcome, Output, StepError};

/// Counts log lines matching a pattern across a deployment's, statefulset's, a pod's or a
/// selector's pods (`kubectl logs --since … | grep -c`), plus HTTP 401/403/429 mentions.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Logs {
    /// `deployment/NAME` (or `NAME`), `statefulset/NAME` or `pod/NAME`; or give `selector`.
    /// Neither: every pod of the namespace.
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
        (None, None) => (format!("every pod of namespace {}", kube.namespace), String::new()),
        _ => return Err(StepError::invalid("give `target` or `selector`, not both")),
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
