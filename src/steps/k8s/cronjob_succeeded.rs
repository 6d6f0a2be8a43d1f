//! `k8s.cronjob_succeeded`: did the backup CronJob run — its last success within `within`,
//! and the Jobs that failed since.

use k8s_openapi::api::batch::v1::{CronJob, Job};
use kube::api::ListParams;
use schemars::JsonSchema;
use serde::Deserialize;

use super::health::for_each_page;
use super::jobs::{ago, job_complete, job_failed, job_reason, job_time};
use super::{client, valid_name};
use crate::duration::Duration;
use crate::kind::{StepContext, StepKind};
use crate::vocab::{Effect, Outcome, Output, StepError, Verdict};

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
    const PERMISSIONS: &'static [crate::vocab::Permission] = {
        use crate::vocab::*;
        &[kube("batch", "cronjobs", &["get"]), kube("batch", "jobs", &["list"])]
    };
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
