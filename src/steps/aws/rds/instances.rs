//! `rds.instances`: each DB instance `available`, its free storage against its allocated
//! size (CloudWatch `FreeStorageSpace`), pending maintenance actions, and — as warnings —
//! Multi-AZ and backup retention.

use std::time::{Duration as StdDuration, SystemTime};

use aws_sdk_cloudwatch::types::{Dimension, Statistic};
use schemars::JsonSchema;
use serde::Deserialize;

use super::{client, db_instances, missing};
use crate::helpers::threshold::{Limits, percent};
use crate::kind::{StepContext, StepKind};
use crate::steps::aws::sdk_error;
use crate::units::human_bytes;
use crate::vocab::{Effect, Judgement, Outcome, Output, StepError, Verdict};

/// The state of RDS DB instances.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Instances {
    /// DB instance identifiers. Default: the instance's `rds.instances`.
    #[serde(default)]
    pub instances: Vec<String>,
    /// Warn below this much free storage, in percent of the allocated size. Default 20.
    #[serde(default = "twenty")]
    pub warn_free_storage_percent: Option<f64>,
    /// Fail below this. Default 10.
    #[serde(default = "ten")]
    pub fail_free_storage_percent: Option<f64>,
    /// No `FreeStorageSpace` data in the last 15 minutes: `warn` (default), `fail` or `pass`.
    #[serde(default = "warn")]
    pub on_no_storage_data: Judgement,
    /// Warn when an instance is not Multi-AZ.
    #[serde(default)]
    pub expect_multi_az: bool,
    /// Warn when automated backups are kept fewer days than this. Default 1 (backups on).
    #[serde(default = "one")]
    pub min_backup_retention_days: i32,
}

fn twenty() -> Option<f64> {
    Some(20.0)
}
fn ten() -> Option<f64> {
    Some(10.0)
}
fn warn() -> Judgement {
    Judgement::Warn
}
fn one() -> i32 {
    1
}

/// Statuses that pass on their way back to `available`.
const PASSING: &[&str] = &["backing-up", "modifying", "maintenance", "upgrading", "storage-optimization", "configuring-enhanced-monitoring", "configuring-log-exports", "renaming", "rebooting"];

impl StepKind for Instances {
    const NAME: &'static str = "rds.instances";
    const PERMISSIONS: &'static [crate::vocab::Permission] = {
        use crate::vocab::*;
        &[aws(&["rds:DescribeDBInstances"], AwsOn::DbInstances)]
    };
    const SUMMARY: &'static str = "RDS DB instances: status available, free storage vs allocated, pending maintenance; Multi-AZ and backup retention as warnings";
    const EFFECT: Effect = Effect::Read;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "instances", ty: "object", help: "per DB instance: status, engine, class, allocated and free storage, multi_az, backup_retention_days, maintenance, endpoint" },
        Output { name: "unhealthy", ty: "list", help: "DB instances that warned or failed" },
    ];

    fn check(&self) -> Result<(), String> {
        Limits::below(self.warn_free_storage_percent, self.fail_free_storage_percent).check_order("warn_free_storage_percent", "fail_free_storage_percent")
    }

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let (client, config, retries) = client(ctx).await?;
        let (cw, _, _) = crate::steps::aws::cloudwatch::client(ctx).await?;
        let ids = db_instances(ctx, &self.instances)?;
        let limits = Limits::below(self.warn_free_storage_percent, self.fail_free_storage_percent);
        let maintenance = client
            .describe_pending_maintenance_actions()
            .send()
            .await
            .map_err(|e| sdk_error(e, "reading pending maintenance actions", &config))?;
        let mut worst = Verdict::Passed;
        let mut notes = Vec::new();
        let mut unhealthy = Vec::new();
        let mut per = serde_json::Map::new();
        for id in &ids {
            let out = client.describe_db_instances().db_instance_identifier(id).send().await.map_err(|e| missing(sdk_error(e, &format!("DB instance {id}"), &config), id, &config))?;
            let Some(db) = out.db_instances().first() else {
                return Err(missing(StepError::error("DBInstanceNotFound"), id, &config));
            };
            let status = db.db_instance_status().unwrap_or("unknown").to_string();
            let mut verdict = Verdict::Passed;
            let mut why = Vec::new();
            if status != "available" {
                let v = if PASSING.contains(&status.as_str()) { Verdict::Warned } else { Verdict::Failed };
                verdict = verdict.max(v);
                why.push(format!("status {status}"));
            }
            let allocated = u64::try_from(db.allocated_storage().unwrap_or(0)).unwrap_or(0) * 1024 * 1024 * 1024;
            let free = free_storage(&cw, id).await;
            let (free, free_error) = match free {
                Ok(f) => (f, None),
                Err(e) => (None, Some(e)),
            };
            let free_percent = match (free, allocated) {
                (Some(f), a) if a > 0 => {
                    let p = f / a as f64 * 100.0;
                    let v = limits.verdict(p);
                    if v != Verdict::Passed {
                        why.push(format!("{} free of {} ({})", human_bytes(f as u64), human_bytes(allocated), percent(p)));
                    }
                    verdict = verdict.max(v);
                    Some(p)
                }
                _ => {
                    let v = self.on_no_storage_data.verdict();
                    if v != Verdict::Passed {
                        let cause = free_error.clone().unwrap_or_else(|| "no FreeStorageSpace data in the last 15m".into());
                        why.push(format!("free storage unknown: {cause} (on_no_storage_data: {})", self.on_no_storage_data.as_str()));
                    }
                    verdict = verdict.max(v);
                    None
                }
            };
            let actions: Vec<String> = maintenance
                .pending_maintenance_actions()
                .iter()
                .filter(|p| p.resource_identifier().is_some_and(|r| r.ends_with(&format!(":db:{id}"))))
                .flat_map(|p| p.pending_maintenance_action_details().iter())
                .map(|a| {
                    let mut s = a.action().unwrap_or("action").to_string();
                    if let Some(d) = a.description() {
                        s.push_str(&format!(": {d}"));
                    }
                    if let Some(t) = a.auto_applied_after_date() {
                        s.push_str(&format!(" (applied after {t})"));
                    } else if let Some(t) = a.forced_apply_date() {
                        s.push_str(&format!(" (forced on {t})"));
                    }
                    s
                })
                .collect();
            if !actions.is_empty() {
                verdict = verdict.max(Verdict::Warned);
                why.push(format!("pending maintenance: {}", actions.join("; ")));
            }
            let multi_az = db.multi_az().unwrap_or(false);
            if self.expect_multi_az && !multi_az {
                verdict = verdict.max(Verdict::Warned);
                why.push("not Multi-AZ".into());
            }
            let retention = db.backup_retention_period().unwrap_or(0);
            if retention < self.min_backup_retention_days {
                verdict = verdict.max(Verdict::Warned);
                why.push(if retention == 0 { "automated backups are off".into() } else { format!("backups kept {retention} days (< {})", self.min_backup_retention_days) });
            }
            if verdict != Verdict::Passed {
                unhealthy.push(id.clone());
                notes.push(format!("{id}: {}", why.join(", ")));
            }
            worst = worst.max(verdict);
            per.insert(
                id.clone(),
                serde_json::json!({
                    "status": status,
                    "engine": db.engine(),
                    "engine_version": db.engine_version(),
                    "class": db.db_instance_class(),
                    "allocated_bytes": allocated,
                    "free_bytes": free.map(|f| f as u64),
                    "free_percent": free_percent.map(|p| (p * 10.0).round() / 10.0),
                    "multi_az": multi_az,
                    "backup_retention_days": retention,
                    "maintenance": actions,
                    "endpoint": db.endpoint().and_then(|e| e.address()).map(|a| format!("{a}:{}", db.endpoint().and_then(|e| e.port()).unwrap_or(5432))),
                }),
            );
        }
        let message = if notes.is_empty() {
            format!("{} available{}", crate::helpers::text::plural(ids.len() as i64, "DB instance", "DB instances"), retries.note())
        } else {
            format!("{}{}", notes.join("; "), retries.note())
        };
        Ok(Outcome::new(worst, message)
            .value(format!("{}/{} healthy", ids.len() - unhealthy.len(), ids.len()))
            .threshold(limits.describe(|v| format!("{v:.0}% free")))
            .output("instances", serde_json::Value::Object(per))
            .output("unhealthy", unhealthy))
    }
}

/// The least free storage in the last 15 minutes, in bytes (CloudWatch `AWS/RDS`
/// `FreeStorageSpace`, 5-minute minimums), None without data, or why it could not be read.
async fn free_storage(cw: &aws_sdk_cloudwatch::Client, id: &str) -> Result<Option<f64>, String> {
    let now = SystemTime::now();
    let out = cw
        .get_metric_statistics()
        .namespace("AWS/RDS")
        .metric_name("FreeStorageSpace")
        .dimensions(Dimension::builder().name("DBInstanceIdentifier").value(id).build())
        .start_time((now - StdDuration::from_secs(900)).into())
        // A minute ahead: a datapoint stamped in this very second still counts (the API
        // takes whole seconds).
        .end_time((now + StdDuration::from_secs(60)).into())
        .period(300)
        .statistics(Statistic::Minimum)
        .send()
        .await
        .map_err(|e| format!("reading FreeStorageSpace failed ({})", crate::helpers::errors::chain(&e)))?;
    Ok(out.datapoints().iter().filter_map(|d| d.minimum()).reduce(f64::min))
}
