//! `rds.restore_drill` and `rds.delete_drill`: the monthly disaster-recovery test. The
//! newest (or a given) snapshot is restored into a scratch DB instance tagged as this run's
//! drill; the step waits until it is available and gives later steps its endpoint (a
//! `postgres.query` can count rows there), the measured time to available (RTO) and the
//! snapshot's age (RPO). `rds.delete_drill`, in an `always` step, deletes it — and refuses
//! any instance that is not an opsctl drill. A drill that fails before it is available
//! deletes its own instance.

use std::time::{Duration as StdDuration, Instant, SystemTime};

use aws_sdk_rds::types::Tag;
use schemars::JsonSchema;
use serde::Deserialize;

use super::snapshots::{SnapshotType, newest};
use super::{client, db_instances, missing};
use crate::duration::Duration;
use crate::kind::{StepContext, StepKind};
use crate::steps::aws::sdk_error;
use crate::vocab::{Effect, ErrorClass, Outcome, Output, StepError};

/// The tag that marks a drill's scratch instance (its value: the run id).
const DRILL_TAG: &str = "opsctl:drill";

/// Restore a snapshot into a scratch DB instance and measure RTO and RPO.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreDrill {
    /// The DB instance whose snapshot is restored. Default: the instance's first `rds.instances`.
    #[serde(default)]
    pub instance: Option<String>,
    /// A snapshot identifier. Default: the newest available one.
    #[serde(default)]
    pub snapshot: Option<String>,
    /// The scratch instance's class. Default: the snapshot's instance's.
    #[serde(default)]
    pub instance_class: Option<String>,
    /// How long to wait until available. Default 1h.
    #[serde(default = "hour")]
    pub wait_timeout: Duration,
    /// How often to look. Default 15s.
    #[serde(default = "fifteen_seconds")]
    pub poll: Duration,
    /// Fail (keeping the drill instance for the cleanup step) when it took longer than this
    /// to become available: the RTO target.
    #[serde(default)]
    pub max_rto: Option<Duration>,
    /// Fail when the snapshot was older than this: the RPO target.
    #[serde(default)]
    pub max_rpo: Option<Duration>,
}

fn hour() -> Duration {
    Duration::from_secs(3600)
}
fn fifteen_seconds() -> Duration {
    Duration::from_secs(15)
}

impl RestoreDrill {
    async fn source(&self, ctx: &StepContext, client: &aws_sdk_rds::Client, config: &aws_config::SdkConfig) -> Result<(String, String, SystemTime), StepError> {
        let db = match &self.instance {
            Some(i) => i.clone(),
            None => db_instances(ctx, &[])?.remove(0),
        };
        client.describe_db_instances().db_instance_identifier(&db).send().await.map_err(|e| missing(sdk_error(e, &format!("DB instance {db}"), config), &db, config))?;
        match &self.snapshot {
            Some(id) => {
                let out = client.describe_db_snapshots().db_snapshot_identifier(id).send().await.map_err(|e| {
                    let e = sdk_error(e, &format!("snapshot {id}"), config);
                    if e.message.contains("not found") || e.message.contains("NotFound") { StepError::new(ErrorClass::Failed, format!("snapshot {id} does not exist")) } else { e }
                })?;
                let s = out.db_snapshots().first().ok_or_else(|| StepError::new(ErrorClass::Failed, format!("snapshot {id} does not exist")))?;
                let at = s.snapshot_create_time().and_then(|t| SystemTime::try_from(*t).ok()).unwrap_or_else(SystemTime::now);
                Ok((db, id.clone(), at))
            }
            None => newest(client, config, &db, SnapshotType::Any)
                .await?
                .map(|(id, _, at)| (db.clone(), id, at))
                .ok_or_else(|| StepError::new(ErrorClass::Failed, format!("{db} has no available snapshot to restore"))),
        }
    }

    /// `<db>-drill-<run id's last part>`, within RDS's 63 characters.
    fn scratch_name(db: &str, run_id: &str) -> String {
        let suffix: String = run_id.rsplit('-').next().unwrap_or(run_id).chars().filter(|c| c.is_ascii_alphanumeric()).collect();
        let base: String = db.chars().take(63 - 7 - suffix.len()).collect();
        format!("{base}-drill-{suffix}").to_lowercase()
    }
}

impl StepKind for RestoreDrill {
    const NAME: &'static str = "rds.restore_drill";
    const PERMISSIONS: &'static [crate::vocab::Permission] = {
        use crate::vocab::*;
        &[aws(&["rds:DescribeDBSnapshots", "rds:DescribeDBInstances", "rds:RestoreDBInstanceFromDBSnapshot", "rds:AddTagsToResource"], AwsOn::DbInstances)]
    };
    const SUMMARY: &'static str = "restore the newest (or a given) RDS snapshot into a scratch instance tagged as a drill; wait until available; RTO and RPO as outputs";
    const EFFECT: Effect = Effect::Mutate;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "instance", ty: "string", help: "the scratch DB instance (delete it with rds.delete_drill)" },
        Output { name: "endpoint", ty: "string", help: "host:port of the scratch instance" },
        Output { name: "host", ty: "string", help: "its host" },
        Output { name: "port", ty: "int", help: "its port" },
        Output { name: "snapshot", ty: "string", help: "the snapshot restored" },
        Output { name: "rto_seconds", ty: "float", help: "from the restore call to available" },
        Output { name: "rpo_seconds", ty: "int", help: "the snapshot's age when the drill began" },
    ];

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let (client, config, retries) = client(ctx).await?;
        let (db, snapshot, taken) = self.source(ctx, &client, &config).await?;
        let rpo = SystemTime::now().duration_since(taken).unwrap_or_default().as_secs();
        let scratch = Self::scratch_name(&db, &ctx.run.run_id);
        let started = Instant::now();
        client
            .restore_db_instance_from_db_snapshot()
            .db_instance_identifier(&scratch)
            .db_snapshot_identifier(&snapshot)
            .set_db_instance_class(self.instance_class.clone())
            .multi_az(false)
            .publicly_accessible(false)
            .tags(Tag::builder().key(DRILL_TAG).value(&ctx.run.run_id).build())
            .send()
            .await
            .map_err(|e| sdk_error(e, &format!("restoring {snapshot} into {scratch}"), &config))?;
        let waited = wait_available(&client, &config, &scratch, self.wait_timeout, self.poll.std(), started).await;
        let (host, port) = match waited {
            Ok(at) => at,
            Err(e) => {
                // Never leave a half-made drill behind.
                let cleanup = client.delete_db_instance().db_instance_identifier(&scratch).skip_final_snapshot(true).send().await;
                let note = match cleanup {
                    Ok(_) => format!("; {scratch} is being deleted"),
                    Err(d) => format!("; deleting {scratch} failed too ({}): delete it by hand", sdk_error(d, "deleting", &config).message),
                };
                return Err(StepError::new(e.class, format!("{}{note}", e.message)));
            }
        };
        let rto = started.elapsed();
        let mut missed = Vec::new();
        if let Some(max) = self.max_rto.filter(|m| rto > m.std()) {
            missed.push(format!("RTO {} is over the target {max}", crate::duration::short(rto)));
        }
        if let Some(max) = self.max_rpo.filter(|m| rpo > m.std().as_secs()) {
            missed.push(format!("RPO {} is over the target {max}", Duration::from_secs(rpo)));
        }
        let message = format!(
            "restored {snapshot} of {db} into {scratch} ({host}:{port}), available after {} (RTO); the snapshot was {} old (RPO){}{}",
            crate::duration::short(rto),
            Duration::from_secs(rpo),
            retries.note(),
            if missed.is_empty() { String::new() } else { format!("; {}", missed.join("; ")) }
        );
        Ok(if missed.is_empty() { Outcome::passed(message) } else { Outcome::failed(message) }
        .value(crate::duration::short(rto))
        .output("instance", scratch)
        .output("endpoint", format!("{host}:{port}"))
        .output("host", host)
        .output("port", port)
        .output("snapshot", snapshot)
        .output("rto_seconds", (rto.as_secs_f64() * 10.0).round() / 10.0)
        .output("rpo_seconds", rpo))
    }

    async fn plan(&self, ctx: &StepContext) -> Result<String, StepError> {
        let (client, config, _) = client(ctx).await?;
        let (db, snapshot, taken) = self.source(ctx, &client, &config).await?;
        let age = SystemTime::now().duration_since(taken).unwrap_or_default().as_secs();
        Ok(format!(
            "would restore {snapshot} of {db} ({} old) into a scratch instance {}, wait until it is available, and leave it for rds.delete_drill",
            Duration::from_secs(age),
            Self::scratch_name(&db, &ctx.run.run_id)
        ))
    }
}

/// Polls until the instance is available; its endpoint.
async fn wait_available(
    client: &aws_sdk_rds::Client,
    config: &aws_config::SdkConfig,
    id: &str,
    limit: Duration,
    every: StdDuration,
    started: Instant,
) -> Result<(String, i32), StepError> {
    loop {
        let out = client.describe_db_instances().db_instance_identifier(id).send().await.map_err(|e| sdk_error(e, &format!("DB instance {id}"), config))?;
        let db = out.db_instances().first();
        let status = db.and_then(|d| d.db_instance_status()).unwrap_or("unknown");
        if status == "available"
            && let Some(ep) = db.and_then(|d| d.endpoint())
        {
            return Ok((ep.address().unwrap_or_default().to_string(), ep.port().unwrap_or(5432)));
        }
        if matches!(status, "failed" | "incompatible-restore" | "incompatible-parameters" | "incompatible-network") {
            return Err(StepError::new(ErrorClass::Failed, format!("the drill instance {id} ended {status}")));
        }
        if started.elapsed() >= limit.std() {
            return Err(StepError::new(ErrorClass::Timeout, format!("the drill instance {id} was not available after {limit} (status {status})")));
        }
        tokio::time::sleep(every.min(limit.std().saturating_sub(started.elapsed())).max(StdDuration::from_millis(50))).await;
    }
}

/// Delete a drill's scratch DB instance (only one tagged as an opsctl drill).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteDrill {
    /// The scratch instance: `{{ steps.drill.instance }}`.
    pub instance: String,
}

impl DeleteDrill {
    /// The drill tag's value (the run that made it), or a refusal.
    async fn drill_of(&self, client: &aws_sdk_rds::Client, config: &aws_config::SdkConfig) -> Result<String, StepError> {
        let out = client
            .describe_db_instances()
            .db_instance_identifier(&self.instance)
            .send()
            .await
            .map_err(|e| missing(sdk_error(e, &format!("DB instance {}", self.instance), config), &self.instance, config))?;
        let db = out.db_instances().first().ok_or_else(|| StepError::new(ErrorClass::Failed, format!("DB instance {} does not exist", self.instance)))?;
        db.tag_list().iter().find(|t| t.key() == Some(DRILL_TAG)).and_then(|t| t.value()).map(str::to_string).ok_or_else(|| {
            StepError::invalid(format!("refusing to delete {}: it is not an opsctl drill (no `{DRILL_TAG}` tag); nothing was deleted", self.instance))
        })
    }
}

impl StepKind for DeleteDrill {
    const NAME: &'static str = "rds.delete_drill";
    const PERMISSIONS: &'static [crate::vocab::Permission] = {
        use crate::vocab::*;
        &[aws(&["rds:DescribeDBInstances", "rds:DeleteDBInstance"], AwsOn::DbInstances)]
    };
    const SUMMARY: &'static str = "delete a restore drill's scratch DB instance (refuses one not tagged as an opsctl drill)";
    const EFFECT: Effect = Effect::Destroy;
    const OUTPUTS: &'static [Output] = &[Output { name: "instance", ty: "string", help: "the instance deleted" }];

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let (client, config, retries) = client(ctx).await?;
        let run = self.drill_of(&client, &config).await?;
        client
            .delete_db_instance()
            .db_instance_identifier(&self.instance)
            .skip_final_snapshot(true)
            .send()
            .await
            .map_err(|e| sdk_error(e, &format!("deleting {}", self.instance), &config))?;
        Ok(Outcome::passed(format!("deleting drill instance {} (made by run {run}){}", self.instance, retries.note())).output("instance", self.instance.clone()))
    }

    async fn plan(&self, ctx: &StepContext) -> Result<String, StepError> {
        let (client, config, _) = client(ctx).await?;
        let run = self.drill_of(&client, &config).await?;
        Ok(format!("would delete drill instance {} (made by run {run}), without a final snapshot", self.instance))
    }
}
