//! `k8s.jobs`: did Jobs fail, and which run long; and what a Job's status says, which
//! `k8s.cronjob_succeeded` reads too.

use k8s_openapi::api::batch::v1::Job;
use schemars::JsonSchema;
use serde::Deserialize;

use super::health::for_each_page;
use super::{check_selector, client};
use crate::duration::Duration;
use crate::kind::{StepContext, StepKind};
use crate::vocab::{Effect, Outcome, Output, StepError, Verdict};

/// `42s ago`, `5m12s ago`; from an hour on, to the minute (`3h ago`, `26h5m ago`): a
/// second's precision in a job's age is noise.
pub fn ago(t: jiff::Timestamp) -> String {
    let mut secs = (jiff::Timestamp::now() - t).get_seconds().max(0) as u64;
    if secs >= 3600 {
        secs -= secs % 60;
    }
    format!("{} ago", Duration(std::time::Duration::from_secs(secs)))
}

pub fn job_failed(j: &Job) -> bool {
    j.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|cs| cs.iter().any(|c| c.type_ == "Failed" && c.status == "True"))
}

pub fn job_complete(j: &Job) -> bool {
    j.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|cs| cs.iter().any(|c| c.type_ == "Complete" && c.status == "True"))
}

pub fn job_time(j: &Job) -> Option<jiff::Timestamp> {
    let s = j.status.as_ref();
    s.and_then(|s| s.completion_time.as_ref().map(|t| t.0))
        .or_else(|| s.and_then(|s| s.conditions.as_ref()).and_then(|cs| cs.iter().filter_map(|c| c.last_transition_time.as_ref().map(|t| t.0)).max()))
        .or_else(|| s.and_then(|s| s.start_time.as_ref().map(|t| t.0)))
        .or_else(|| j.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

pub fn job_reason(j: &Job) -> String {
    j.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Failed"))
        .map(|c| format!("{}{}", c.reason.clone().unwrap_or_default(), c.message.as_ref().map(|m| format!(": {m}")).unwrap_or_default()))
        .unwrap_or_default()
}

pub fn day() -> Duration {
    Duration::from_secs(86400)
}

/// Jobs of the namespace (or a selector's): failed ones within a window fail the step; ones
/// running longer than `warn_running` warn.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Jobs {
    #[serde(default)]
    pub selector: Option<String>,
    /// Failures older than this are history. Default 24h.
    #[serde(default = "day")]
    pub window: Duration,
    /// Warn about Jobs still running after this long.
    #[serde(default)]
    pub warn_running: Option<Duration>,
}

impl StepKind for Jobs {
    const NAME: &'static str = "k8s.jobs";
    const PERMISSIONS: &'static [crate::vocab::Permission] = {
        use crate::vocab::*;
        &[kube("batch", "jobs", &["list"])]
    };
    const SUMMARY: &'static str = "Jobs of the namespace: failed ones within a window fail, long-running ones warn";
    const EFFECT: Effect = Effect::Read;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "total", ty: "int", help: "Jobs seen" },
        Output { name: "succeeded", ty: "int", help: "complete Jobs in the window" },
        Output { name: "failed_jobs", ty: "list", help: "`job: reason` for Jobs failed in the window" },
        Output { name: "running", ty: "list", help: "Jobs running now" },
    ];

    fn check(&self) -> Result<(), String> {
        self.selector.as_deref().map_or(Ok(()), check_selector)
    }

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let kube = client(ctx).await?;
        let params = super::list_params(self.selector.as_deref());
        let mut jobs = Vec::new();
        for_each_page(&kube.api::<Job>(), params, &kube, "jobs", |js| jobs.extend(js)).await?;
        let since = jiff::Timestamp::now() - jiff::SignedDuration::try_from(self.window.std()).unwrap_or_default();
        let recent = |j: &Job| job_time(j).is_some_and(|t| t >= since);
        let failed: Vec<String> = jobs.iter().filter(|j| job_failed(j) && recent(j)).map(|j| format!("{}: {}", j.metadata.name.clone().unwrap_or_default(), job_reason(j))).collect();
        let succeeded = jobs.iter().filter(|j| job_complete(j) && recent(j)).count();
        let mut running = Vec::new();
        let mut long = Vec::new();
        for j in jobs.iter().filter(|j| !job_complete(j) && !job_failed(j) && j.status.as_ref().and_then(|s| s.active).unwrap_or(0) > 0) {
            let name = j.metadata.name.clone().unwrap_or_default();
            let start = j.status.as_ref().and_then(|s| s.start_time.as_ref()).map(|t| t.0);
            if let (Some(limit), Some(start)) = (self.warn_running, start)
                && jiff::Timestamp::now() - jiff::SignedDuration::try_from(limit.std()).unwrap_or_default() > start
            {
                long.push(format!("{name} (started {})", ago(start)));
            }
            running.push(name);
        }
        let verdict = if !failed.is_empty() {
            Verdict::Failed
        } else if !long.is_empty() {
            Verdict::Warned
        } else {
            Verdict::Passed
        };
        let mut message = format!("{} jobs: {succeeded} succeeded and {} failed in the last {}, {} running", jobs.len(), failed.len(), self.window, running.len());
        if !failed.is_empty() {
            message.push_str(&format!("; failed: {}", failed.join("; ")));
        }
        if !long.is_empty() {
            message.push_str(&format!("; running long: {}", long.join(", ")));
        }
        Ok(Outcome::new(verdict, message).value(format!("{} failed", failed.len())).output("total", jobs.len()).output("succeeded", succeeded).output("failed_jobs", failed).output("running", running))
    }
}
