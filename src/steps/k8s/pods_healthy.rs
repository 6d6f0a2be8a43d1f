//! `k8s.pods_healthy`: what `kubectl get pods` tells an operator — failed, crash-looping,
//! not ready and restarting pods — over every page of a large namespace.

use k8s_openapi::api::core::v1::Pod;
use schemars::JsonSchema;
use serde::Deserialize;

use super::health::{for_each_page, list_examples};
use super::{Kube, check_selector, client};
use crate::kind::{StepContext, StepKind};
use crate::vocab::{Effect, Outcome, Output, StepError, Verdict};

fn default_ratio() -> f64 {
    1.0
}

/// Pods (all in the namespace, or those matching `selector`) are running and ready: none
/// failed or crash-looping, restarts under a limit, enough of them ready.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PodsHealthy {
    /// A label selector, as kubectl's `-l`: `app=api`, `tier in (web,api)`. Default: every pod.
    #[serde(default)]
    pub selector: Option<String>,
    /// Warn when a pod restarted more often than this.
    #[serde(default)]
    pub warn_restarts: Option<u32>,
    /// Fail when a pod restarted more often than this.
    #[serde(default)]
    pub max_restarts: Option<u32>,
    /// Fail when fewer than this share of the pods is ready (0 to 1). Default 1: all.
    #[serde(default = "default_ratio")]
    pub min_ready_ratio: f64,
    /// Pass when no pod matches (default: that fails — a selector that matches nothing is
    /// usually a mistake).
    #[serde(default)]
    pub allow_none: bool,
}

impl StepKind for PodsHealthy {
    const NAME: &'static str = "k8s.pods_healthy";
    const PERMISSIONS: &'static [crate::vocab::Permission] = {
        use crate::vocab::*;
        &[kube("", "pods", &["list"])]
    };
    const SUMMARY: &'static str = "pods running and ready: no CrashLoopBackOff or failed pods, restarts under a limit, ready ratio";
    const EFFECT: Effect = Effect::Read;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "total", ty: "int", help: "pods checked (completed ones excluded)" },
        Output { name: "ready", ty: "int", help: "pods ready" },
        Output { name: "not_ready", ty: "list", help: "`pod: why` for each pod not ready" },
        Output { name: "crash_looping", ty: "list", help: "pods with a container in CrashLoopBackOff" },
        Output { name: "max_restarts", ty: "int", help: "the most restarts of any pod" },
    ];

    fn check(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.min_ready_ratio) {
            return Err(format!("`min_ready_ratio` must be between 0 and 1, not {}", self.min_ready_ratio));
        }
        if let (Some(w), Some(f)) = (self.warn_restarts, self.max_restarts)
            && w > f {
                return Err(format!("`warn_restarts` ({w}) is above `max_restarts` ({f})"));
            }
        self.selector.as_deref().map_or(Ok(()), check_selector)
    }

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let kube = client(ctx).await?;
        let api = kube.api::<Pod>();
        let params = super::list_params(self.selector.as_deref());
        let mut s = PodSummary::default();
        for_each_page(&api, params, &kube, "pods", |pods| {
            for p in &pods {
                s.add(p);
            }
        })
        .await?;
        Ok(s.judge(self, &kube))
    }
}

#[derive(Default)]
struct PodSummary {
    total: usize,
    ready: usize,
    not_ready: Vec<String>,
    failed: Vec<String>,
    crash_looping: Vec<String>,
    restarts: Vec<(String, i32)>,
    max_restarts: i32,
}

impl PodSummary {
    fn add(&mut self, p: &Pod) {
        let name = p.metadata.name.clone().unwrap_or_default();
        let status = p.status.as_ref();
        let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("Unknown");
        if phase == "Succeeded" {
            return;
        }
        self.total += 1;
        let containers = status.and_then(|s| s.container_statuses.as_ref()).map(Vec::as_slice).unwrap_or_default();
        let restarts: i32 = containers.iter().map(|c| c.restart_count).max().unwrap_or(0);
        if restarts > 0 {
            self.restarts.push((name.clone(), restarts));
        }
        self.max_restarts = self.max_restarts.max(restarts);
        let waiting: Vec<String> = containers
            .iter()
            .filter_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone().map(|r| format!("{} {r}", c.name)))
            .collect();
        if waiting.iter().any(|w| w.ends_with("CrashLoopBackOff")) {
            self.crash_looping.push(name.clone());
        }
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        if phase == "Failed" {
            let reason = status.and_then(|s| s.reason.clone()).unwrap_or_else(|| "Failed".into());
            self.failed.push(format!("{name}: {reason}"));
            self.not_ready.push(format!("{name}: Failed ({reason})"));
        } else if ready {
            self.ready += 1;
        } else {
            let why = if waiting.is_empty() { phase.to_string() } else { waiting.join(", ") };
            self.not_ready.push(format!("{name}: {why}"));
        }
    }

    fn judge(mut self, params: &PodsHealthy, kube: &Kube) -> Outcome {
        let selector = params.selector.as_ref().map(|s| format!(" matching {s}")).unwrap_or_default();
        if self.total == 0 {
            let message = format!("no pods{selector} in namespace {}", kube.namespace);
            let v = if params.allow_none { Verdict::Passed } else { Verdict::Failed };
            return Outcome::new(v, message).value("0/0").output("total", 0).output("ready", 0).output("not_ready", Vec::<String>::new()).output("crash_looping", Vec::<String>::new()).output("max_restarts", 0);
        }
        let ratio = self.ready as f64 / self.total as f64;
        let over = |limit: Option<u32>| -> Vec<String> {
            limit.map(|l| self.restarts.iter().filter(|(_, r)| *r > l as i32).map(|(n, r)| format!("{n} ({r})")).collect()).unwrap_or_default()
        };
        let fail_restarts = over(params.max_restarts);
        let warn_restarts = over(params.warn_restarts);
        let mut problems = Vec::new();
        if !self.crash_looping.is_empty() {
            problems.push(format!("CrashLoopBackOff: {}", list_examples(&self.crash_looping, 5)));
        }
        if !self.failed.is_empty() {
            problems.push(format!("failed: {}", list_examples(&self.failed, 5)));
        }
        if ratio < params.min_ready_ratio {
            problems.push(format!("not ready: {}", list_examples(&self.not_ready, 5)));
        }
        if !fail_restarts.is_empty() {
            problems.push(format!("restarted more than {} times: {}", params.max_restarts.unwrap_or_default(), list_examples(&fail_restarts, 5)));
        }
        let mut warnings = Vec::new();
        if problems.is_empty() && !self.not_ready.is_empty() {
            warnings.push(format!("not ready: {}", list_examples(&self.not_ready, 5)));
        }
        if fail_restarts.is_empty() && !warn_restarts.is_empty() {
            warnings.push(format!("restarted more than {} times: {}", params.warn_restarts.unwrap_or_default(), list_examples(&warn_restarts, 5)));
        }
        let verdict = if !problems.is_empty() {
            Verdict::Failed
        } else if !warnings.is_empty() {
            Verdict::Warned
        } else {
            Verdict::Passed
        };
        let mut message = format!("{}/{} pods{selector} ready", self.ready, self.total);
        for p in problems.iter().chain(&warnings) {
            message.push_str("; ");
            message.push_str(p);
        }
        let mut limits = vec![];
        if params.min_ready_ratio > 0.0 {
            limits.push(format!("fail < {}% ready", (params.min_ready_ratio * 100.0).round()));
        }
        if let Some(w) = params.warn_restarts {
            limits.push(format!("warn > {w} restarts"));
        }
        if let Some(f) = params.max_restarts {
            limits.push(format!("fail > {f} restarts"));
        }
        self.not_ready.truncate(100);
        Outcome::new(verdict, message)
            .value(format!("{}/{}", self.ready, self.total))
            .threshold(Some(limits.join(", ")))
            .output("total", self.total)
            .output("ready", self.ready)
            .output("not_ready", self.not_ready)
            .output("crash_looping", self.crash_looping)
            .output("max_restarts", self.max_restarts)
    }
}
