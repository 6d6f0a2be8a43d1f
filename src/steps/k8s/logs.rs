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
    /// `deployment/NAME` (or `NAME`), `statefulset/NAME`, `pod/NAME` or `cronjob/NAME` (the
    /// pods of its newest Job); or give `selector`.
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
    /// Group the matching lines by message (numbers, ids, addresses and times normalised)
    /// and say the most frequent ones in the message. The `groups` output is there anyway.
    #[serde(default)]
    pub group: bool,
}


/// One container's log read: the pod, its tally, and its first matching line (time, text).
type PodLog = (String, Tally, Option<(String, String)>);

/// What a pod belongs to, for counting per component: its Deployment (a ReplicaSet's name
/// without its template hash), StatefulSet, DaemonSet or Job — or the pod itself.
fn component(p: &Pod) -> String {
    let owner = p.metadata.owner_references.iter().flatten().find(|o| o.controller == Some(true));
    match owner {
        Some(o) if o.kind == "ReplicaSet" => {
            let hash = p.metadata.labels.as_ref().and_then(|l| l.get("pod-template-hash"));
            match hash.and_then(|h| o.name.strip_suffix(&format!("-{h}"))) {
                Some(d) => format!("deployment/{d}"),
                None => format!("replicaset/{}", o.name),
            }
        }
        Some(o) => format!("{}/{}", o.kind.to_lowercase(), o.name),
        None => format!("pod/{}", p.metadata.name.clone().unwrap_or_default()),
    }
}

/// `cronjob/NAME` (or `cronjobs/`, `cj/`): the name.
fn cronjob_name(target: &str) -> Option<&str> {
    let (kind, name) = target.split_once('/')?;
    matches!(kind, "cronjob" | "cronjobs" | "cj" | "cronjob.batch").then_some(name)
}

/// The newest Job a CronJob made (by creation time) and its pods' selector.
async fn newest_job(kube: &Kube, name: &str) -> Result<(String, String), StepError> {
    use k8s_openapi::api::batch::v1::{CronJob, Job};
    let cj = kube.api::<CronJob>().get(name).await.map_err(|e| kube.error(e, &format!("cronjob {name}")))?;
    let uid = cj.metadata.uid.unwrap_or_default();
    let mut jobs = Vec::new();
    for_each_page(&kube.api::<Job>(), ListParams::default(), kube, "jobs", |js| {
        jobs.extend(js.into_iter().filter(|j| j.metadata.owner_references.iter().flatten().any(|o| o.uid == uid)));
    })
    .await?;
    let newest = jobs
        .into_iter()
        .max_by_key(|j| j.metadata.creation_timestamp.as_ref().map(|t| t.0))
        .ok_or_else(|| StepError::new(ErrorClass::Failed, format!("cronjob/{name} has no Jobs (it has not run, or its Jobs were cleaned up)")))?;
    let job = newest.metadata.name.clone().unwrap_or_default();
    let labels = newest.spec.and_then(|s| s.selector).and_then(|s| s.match_labels);
    let selector = match labels {
        Some(l) if !l.is_empty() => super::match_labels(Some(&l)),
        _ => format!("job-name={job}"),
    };
    Ok((job, selector))
}

/// Pods a target names: a pod, the pods of a workload's selector, or those of a CronJob's
/// newest Job.
async fn pods_of(kube: &Kube, target: Option<&str>, selector: Option<&str>) -> Result<(String, Vec<Pod>), StepError> {
    let (what, selector) = match (target, selector) {
        (Some(t), None) if cronjob_name(t).is_some() => {
            let name = cronjob_name(t).unwrap_or_default();
            let (job, selector) = newest_job(kube, name).await?;
            (format!("cronjob/{name} (its newest Job, {job})"), selector)
        }
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
    const PERMISSIONS: &'static [crate::vocab::Permission] = {
        use crate::vocab::*;
        &[kube("", "pods", &["get", "list"]), kube("", "pods/log", &["get"]), kube("apps", "deployments", &["get"]), kube("apps", "statefulsets", &["get"]), kube("batch", "cronjobs", &["get"]), kube("batch", "jobs", &["list"])]
    };
    const SUMMARY: &'static str = "count log lines matching a regex across a deployment's, a pod's or a selector's pods (since/tail), warn/fail thresholds, samples, 401/403/429 counts";
    const EFFECT: Effect = Effect::Read;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "matches", ty: "int", help: "matching lines" },
        Output { name: "lines", ty: "int", help: "lines read" },
        Output { name: "samples", ty: "list", help: "the first matching lines (cut to 300 characters)" },
        Output { name: "status_counts", ty: "map", help: "lines mentioning HTTP 401, 403 and 429" },
        Output { name: "groups", ty: "list", help: "the ten most frequent matching messages, numbers and ids normalised: {count, message, example}" },
        Output { name: "pods", ty: "int", help: "pods read" },
        Output { name: "by_component", ty: "map", help: "matching lines per component: a pod's workload (deployment, statefulset, daemonset, job) or the pod" },
        Output { name: "timeline", ty: "list", help: "the first matching line of each component in the window, as {time, what, component, message}" },
    ];

    fn check(&self) -> Result<(), String> {
        match (&self.target, &self.selector) {
            (Some(_), Some(_)) => return Err("give `target` or `selector`, not both".into()),
            (Some(t), None) if cronjob_name(t).is_some() => {}
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
        let mut component_of = std::collections::HashMap::new();
        for p in &pods {
            let name = p.metadata.name.clone().unwrap_or_default();
            component_of.insert(name.clone(), component(p));
            let containers: Vec<String> = match &self.container {
                Some(c) => vec![c.clone()],
                None => p.spec.as_ref().map(|s| s.containers.iter().map(|c| c.name.clone()).collect()).unwrap_or_default(),
            };
            for c in containers {
                streams.push((name.clone(), c));
            }
        }
        let since = self.since.std().as_secs().max(1) as i64;
        let results: Vec<Result<PodLog, StepError>> = futures_util::stream::iter(streams)
            .map(|(pod, container)| {
                let kube = &kube;
                async move {
                    let params = LogParams { container: Some(container.clone()), since_seconds: Some(since), tail_lines: self.tail.map(i64::from), timestamps: true, ..LogParams::default() };
                    let stream = kube.api::<Pod>().log_stream(&pod, &params).await.map_err(|e| kube.error(e, &format!("logs of pod {pod} container {container}")))?;
                    let mut lines = stream.lines();
                    let mut tally = Tally::default();
                    let mut first: Option<(String, String)> = None;
                    while let Some(line) = lines.next().await {
                        let line = line.map_err(|e| StepError::new(ErrorClass::Unavailable, format!("reading logs of pod {pod}: {e}")))?;
                        // The API server's timestamp first (asked for), then the line as written.
                        let (stamp, text) = match line.split_once(' ') {
                            Some((t, rest)) if t.parse::<jiff::Timestamp>().is_ok() => (t.to_string(), rest.to_string()),
                            _ => (String::new(), line),
                        };
                        if first.is_none() && !stamp.is_empty() && self.pattern.is_match(&text) {
                            first = Some((stamp, text.clone()));
                        }
                        tally.line(&text, &self.pattern, self.samples, Some(&pod));
                    }
                    Ok((pod, tally, first))
                }
            })
            .buffer_unordered(8)
            .collect()
            .await;
        let mut tally = Tally::default();
        let mut by_component: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
        let mut first_errors: std::collections::BTreeMap<String, (String, String)> = std::collections::BTreeMap::new();
        for r in results {
            let (pod, t, first) = r?;
            let c = component_of.get(&pod).cloned().unwrap_or(pod.clone());
            *by_component.entry(c.clone()).or_default() += t.matches;
            if let Some((stamp, text)) = first {
                let earlier = first_errors.get(&c).is_none_or(|(s, _)| stamp.parse::<jiff::Timestamp>().ok() < s.parse::<jiff::Timestamp>().ok());
                if earlier {
                    first_errors.insert(c, (stamp, crate::helpers::text::truncate(&format!("{pod}: {text}"), 300)));
                }
            }
            tally.merge(t, self.samples);
        }
        let timeline: Vec<serde_json::Value> = first_errors
            .iter()
            .map(|(c, (t, text))| serde_json::json!({ "time": t, "what": "first error", "component": c, "message": text }))
            .collect();
        let mut message = format!("{} of {} lines of {what} ({} pods) in the last {} match {}", tally.matches, tally.lines, pods.len(), self.since, self.pattern);
        let busy: Vec<String> = by_component.iter().filter(|(_, n)| **n > 0).map(|(c, n)| format!("{c} {n}")).collect();
        if by_component.len() > 1 && !busy.is_empty() {
            message.push_str(&format!(" ({})", busy.join(", ")));
        }
        Ok(tally
            .outcome_grouped(&Limits::above_counts(self.warn_above, self.fail_above), message, self.group)
            .output("pods", pods.len())
            .output("by_component", serde_json::to_value(&by_component).unwrap_or_default())
            .output("timeline", timeline))
    }
}
