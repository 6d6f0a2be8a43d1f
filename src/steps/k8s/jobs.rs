//! `k8s.cronjob_succeeded` and `k8s.jobs`: did the backup CronJob run, and did Jobs fail.

use k8s_openapi::api::batch::v1::{CronJob, Job};
use kube::api::ListParams;
use schemars::JsonSchema;
use serde::Deserialize;

use super::{check_selector, client, valid_name};
use super::health::for_each_page;
use crate::duration::Duration;
use crate::kind::{StepContext, StepKind};
use crate::vocab::{Effect, Outcome, Output, StepError, Verdict};

/// `42s ago`, `5m12s ago`; from an hour on, to the minute (`3h ago`, `26h5m ago`): a
/// second's precision in a job's age is noise.
fn ago(t: jiff::Timestamp) -> String {
    let mut secs = (jiff::Timestamp::now() - t).get_seconds().max(0) as u64;
    if secs >= 3600 {
        secs -= secs % 60;
    }
    format!("{} ago", Duration(std::time::Duration::from_secs(secs)))
}

fn job_failed(j: &Job) -> bool {
    j.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|cs| cs.iter().any(|c| c.type_ == "Failed" && c.status == "True"))
}

fn job_complete(j: &Job) -> bool {
    j.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|cs| cs.iter().any(|c| c.type_ == "Complete" && c.status == "True"))
}

fn job_time(j: &Job) -> Option<jiff::Timestamp> {
    let s = j.status.as_ref();
    s.and_then(|s| s.completion_time.as_ref().map(|t| t.0))
        .or_else(|| s.and_then(|s| s.conditions.as_ref()).and_then(|cs| cs.iter().filter_map(|c| c.last_transition_time.as_ref().map(|t| t.0)).max()))
        .or_else(|| s.and_then(|s| s.start_time.as_ref().map(|t| t.0)))
        .or_else(|| j.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

fn job_reason(j: &Job) -> String {
    j.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Failed"))
        .map(|c| format!("{}{}", c.reason.clone().unwrap_or_default(), c.message.as_ref().map(|m| format!(": {m}")).unwrap_or_default()))
        .unwrap_or_default()
}

/// A CronJob's last successful run is recent enough (`within`); failed runs since then and
/// a suspended schedule are reported.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CronjobSucceeded {
    /// The CronJob's name.
    pub name: String,
    /// The last success must be at most this old (e.g. `26h` for a daily job).
    pub within: Duration,
}

impl StepKind for CronjobSucceeded {
    const NAME: &'static str = "k8s.cronjob_succeeded";
    const SUMMARY: &'static str = "a CronJob's last successful Job within a window; failed Jobs since and a suspended schedule reported";
    const EFFECT: Effect = Effect::Read;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "last_success", ty: "string", help: "when the last Job succeeded (RFC 3339), or empty" },
        Output { name: "age_seconds", ty: "int", help: "seconds since then (-1 if never)" },
        Output { name: "failed_jobs", ty: "list", help: "`job: reason` for Jobs that failed after the last success" },
        Output { name: "active", ty: "int", help: "Jobs running now" },
    ];

    fn check(&self) -> Result<(), String> {
        if !valid_name(&self.name) {
            return Err(format!("`name` `{}` is not a valid Kubernetes name", self.name));
        }
        Ok(())
    }

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let kube = client(ctx).await?;
        let cj = kube.api::<CronJob>().get(&self.name).await.map_err(|e| kube.error(e, &format!("cronjob {}", self.name)))?;
        let uid = cj.metadata.uid.clone().unwrap_or_default();
        let status = cj.status.clone().unwrap_or_default();
        let mut jobs = Vec::new();
        for_each_page(&kube.api::<Job>(), ListParams::default(), &kube, "jobs", |js| {
            jobs.extend(js.into_iter().filter(|j| j.metadata.owner_references.iter().flatten().any(|o| o.uid == uid)));
        })
        .await?;
        // The CronJob controller's lastSuccessfulTime, or the newest complete Job (older
        // clusters and controllers that do not set it).
        let last = status.last_successful_time.as_ref().map(|t| t.0).or_else(|| jobs.iter().filter(|j| job_complete(j)).filter_map(job_time).max());
        let failed: Vec<String> = jobs
            .iter()
            .filter(|j| job_failed(j) && job_time(j).is_some_and(|t| last.is_none_or(|l| t > l)))
            .map(|j| format!("{}: {}", j.metadata.name.clone().unwrap_or_default(), job_reason(j)))
            .collect();
        let active = status.active.as_ref().map_or(0, Vec::len);
        let suspended = cj.spec.suspend.unwrap_or(false);
        let within = jiff::SignedDuration::try_from(self.within.std()).unwrap_or_default();
        let (mut verdict, mut message) = match last {
            Some(t) if jiff::Timestamp::now() - within <= t => (Verdict::Passed, format!("cronjob/{} last succeeded {}", self.name, ago(t))),
            Some(t) => (Verdict::Failed, format!("cronjob/{} last succeeded {} (more than {})", self.name, ago(t), self.within)),
            None => (Verdict::Failed, format!("cronjob/{} has never succeeded", self.name)),
        };
        if !failed.is_empty() {
            message.push_str(&format!("; {} failed since: {}", failed.len(), failed.join("; ")));
            verdict = verdict.max(Verdict::Warned);
        }
        if suspended {
            message.push_str("; the schedule is suspended");
            verdict = verdict.max(Verdict::Warned);
        }
        if active > 0 {
            message.push_str(&format!("; {active} running now"));
        }
        Ok(Outcome::new(verdict, message)
            .value(last.map_or("never".into(), ago))
            .threshold(Some(format!("fail > {}", self.within)))
            .output("last_success", last.map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()).unwrap_or_default())
            .output("age_seconds", last.map_or(-1, |t| (jiff::Timestamp::now() - t).get_seconds()))
            .output("failed_jobs", failed)
            .output("active", active))
    }
}

fn day() -> Duration {
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
