//! `rds.snapshots`: the newest available snapshot of each DB instance (automated, manual or
//! either) is younger than `max_age` — the RPO you would get if you restored now.

use std::time::SystemTime;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{client, db_instances, missing};
use crate::duration::Duration;
use crate::kind::{StepContext, StepKind};
use crate::steps::aws::sdk_error;
use crate::vocab::{Effect, Outcome, Output, StepError, Verdict};

/// Which snapshots count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotType {
    #[default]
    Any,
    Automated,
    Manual,
}

/// The newest snapshot of each DB instance, and its age.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Snapshots {
    /// DB instance identifiers. Default: the instance's `rds.instances`.
    #[serde(default)]
    pub instances: Vec<String>,
    /// The oldest the newest snapshot may be. Default 26h (a daily backup and its window).
    #[serde(default = "day_and_two_hours")]
    pub max_age: Duration,
    /// `any` (default), `automated` or `manual`.
    #[serde(default, rename = "type")]
    pub snapshot_type: SnapshotType,
}

fn day_and_two_hours() -> Duration {
    Duration::from_secs(26 * 3600)
}

/// The newest available snapshot of `id` (id, type, created), if any.
pub async fn newest(
    client: &aws_sdk_rds::Client,
    config: &aws_config::SdkConfig,
    id: &str,
    kind: SnapshotType,
) -> Result<Option<(String, String, SystemTime)>, StepError> {
    let mut req = client.describe_db_snapshots().db_instance_identifier(id);
    match kind {
        SnapshotType::Automated => req = req.snapshot_type("automated"),
        SnapshotType::Manual => req = req.snapshot_type("manual"),
        SnapshotType::Any => {}
    }
    let mut best: Option<(String, String, SystemTime)> = None;
    let mut pages = req.into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| missing(sdk_error(e, &format!("snapshots of {id}"), config), id, config))?;
        for s in page.db_snapshots() {
            if s.status() != Some("available") {
                continue;
            }
            let Some(at) = s.snapshot_create_time().and_then(|t| SystemTime::try_from(*t).ok()) else { continue };
            if best.as_ref().is_none_or(|b| at > b.2) {
                best = Some((s.db_snapshot_identifier().unwrap_or_default().to_string(), s.snapshot_type().unwrap_or_default().to_string(), at));
            }
        }
    }
    Ok(best)
}

impl StepKind for Snapshots {
    const NAME: &'static str = "rds.snapshots";
    const PERMISSIONS: &'static [crate::vocab::Permission] = {
        use crate::vocab::*;
        &[aws(&["rds:DescribeDBSnapshots"], AwsOn::DbInstances)]
    };
    const SUMMARY: &'static str = "the newest available RDS snapshot of each DB instance is younger than max_age (the RPO now)";
    const EFFECT: Effect = Effect::Read;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "snapshot", ty: "string", help: "the newest snapshot (of the first DB instance)" },
        Output { name: "age_seconds", ty: "int", help: "its age" },
        Output { name: "snapshots", ty: "object", help: "per DB instance: snapshot, type, age_seconds" },
    ];

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let (client, config, retries) = client(ctx).await?;
        let ids = db_instances(ctx, &self.instances)?;
        let mut worst = Verdict::Passed;
        let mut parts = Vec::new();
        let mut per = serde_json::Map::new();
        let mut first: Option<(String, u64)> = None;
        for id in &ids {
            // A DB instance that does not exist is said as such, not as "no snapshots".
            client.describe_db_instances().db_instance_identifier(id).send().await.map_err(|e| missing(sdk_error(e, &format!("DB instance {id}"), &config), id, &config))?;
            match newest(&client, &config, id, self.snapshot_type).await? {
                None => {
                    worst = Verdict::Failed;
                    parts.push(format!("{id}: no available {}snapshot", match self.snapshot_type {
                        SnapshotType::Any => "",
                        SnapshotType::Automated => "automated ",
                        SnapshotType::Manual => "manual ",
                    }));
                    per.insert(id.clone(), serde_json::Value::Null);
                }
                Some((snap, kind, at)) => {
                    let age = SystemTime::now().duration_since(at).unwrap_or_default();
                    let shown = Duration::from_secs(age.as_secs()).to_string();
                    if age > self.max_age.std() {
                        worst = Verdict::Failed;
                        parts.push(format!("{id}: newest snapshot {snap} ({kind}) is {shown} old, older than {}", self.max_age));
                    } else {
                        parts.push(format!("{id}: {snap} ({kind}), {shown} old"));
                    }
                    first.get_or_insert((snap.clone(), age.as_secs()));
                    per.insert(id.clone(), serde_json::json!({"snapshot": snap, "type": kind, "age_seconds": age.as_secs()}));
                }
            }
        }
        let (snap, age) = first.map_or((serde_json::Value::Null, serde_json::Value::Null), |(s, a)| (serde_json::json!(s), serde_json::json!(a)));
        Ok(Outcome::new(worst, format!("{}{}", parts.join("; "), retries.note()))
            .threshold(Some(format!("fail > {}", self.max_age)))
            .output("snapshot", snap)
            .output("age_seconds", age)
            .output("snapshots", serde_json::Value::Object(per)))
    }
}
