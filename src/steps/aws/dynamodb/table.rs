//! `dynamodb.table_status`, `dynamodb.set_capacity`, `dynamodb.pitr`.

use aws_sdk_dynamodb::types::{BillingMode, PointInTimeRecoverySpecification, PointInTimeRecoveryStatus, ProvisionedThroughput, TableDescription};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{build, client, describe, wait_active};
use crate::duration::Duration;
use crate::kind::{StepContext, StepKind};
use crate::steps::aws::sdk_error;
use crate::units::human_bytes;
use crate::vocab::{Effect, ErrorClass, Outcome, Output, StepError, Verdict};

fn billing(t: &TableDescription) -> &'static str {
    match t.billing_mode_summary().and_then(|b| b.billing_mode()) {
        Some(BillingMode::PayPerRequest) => "on_demand",
        _ => "provisioned",
    }
}

fn capacity(t: &TableDescription) -> (i64, i64) {
    let p = t.provisioned_throughput();
    (p.and_then(|p| p.read_capacity_units()).unwrap_or(0), p.and_then(|p| p.write_capacity_units()).unwrap_or(0))
}

fn describe_capacity(t: &TableDescription) -> String {
    match billing(t) {
        "on_demand" => "on-demand".to_string(),
        _ => {
            let (r, w) = capacity(t);
            format!("provisioned {r} RCU / {w} WCU")
        }
    }
}

/// A table's state: status, items, size, billing, point-in-time recovery, encryption.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TableStatus {
    pub table: String,
    /// Fail when point-in-time recovery is off.
    #[serde(default)]
    pub expect_pitr: bool,
    /// Warn when the table holds more bytes than this.
    #[serde(default)]
    pub warn_bytes: Option<crate::units::ByteSize>,
}

impl StepKind for TableStatus {
    const NAME: &'static str = "dynamodb.table_status";
    const SUMMARY: &'static str = "a table's status, item count, size, billing mode, PITR and encryption";
    const EFFECT: Effect = Effect::Read;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "table_status", ty: "string", help: "ACTIVE, UPDATING, …" },
        Output { name: "item_count", ty: "int", help: "items (DynamoDB updates it about every 6 hours)" },
        Output { name: "size_bytes", ty: "int", help: "table size" },
        Output { name: "billing_mode", ty: "string", help: "on_demand or provisioned" },
        Output { name: "read_capacity", ty: "int", help: "provisioned RCU" },
        Output { name: "write_capacity", ty: "int", help: "provisioned WCU" },
        Output { name: "pitr", ty: "bool", help: "point-in-time recovery on" },
        Output { name: "encryption", ty: "string", help: "SSE status, or `default` (AWS-owned key)" },
        Output { name: "arn", ty: "string", help: "the table ARN" },
    ];

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let (client, config, retries) = client(ctx).await?;
        let t = describe(&client, &config, &self.table).await?;
        let pitr = client
            .describe_continuous_backups()
            .table_name(&self.table)
            .send()
            .await
            .map_err(|e| sdk_error(e, &format!("reading the backups settings of {}", self.table), &config))?
            .continuous_backups_description
            .and_then(|c| c.point_in_time_recovery_description)
            .and_then(|p| p.point_in_time_recovery_status)
            .is_some_and(|s| s == PointInTimeRecoveryStatus::Enabled);
        let status = t.table_status().map_or("UNKNOWN".to_string(), |s| s.as_str().to_string());
        let size = t.table_size_bytes().unwrap_or(0);
        let sse = t.sse_description().and_then(|s| s.status()).map_or("default".to_string(), |s| s.as_str().to_string());
        let (read, write) = capacity(&t);
        let mut verdict = if status == "ACTIVE" { Verdict::Passed } else { Verdict::Warned };
        let mut problems = Vec::new();
        if status != "ACTIVE" {
            problems.push(format!("status {status}"));
        }
        if self.expect_pitr && !pitr {
            verdict = Verdict::Failed;
            problems.push("point-in-time recovery is off".to_string());
        }
        if let Some(w) = self.warn_bytes.filter(|w| size as u64 > w.0) {
            verdict = verdict.max(Verdict::Warned);
            problems.push(format!("{} is more than {}", human_bytes(size as u64), human_bytes(w.0)));
        }
        let summary = format!(
            "{} is {status}: {} items, {}, {}, PITR {}, encryption {sse}",
            self.table,
            t.item_count().unwrap_or(0),
            human_bytes(size as u64),
            describe_capacity(&t),
            if pitr { "on" } else { "off" }
        );
        let message = if problems.is_empty() { summary } else { format!("{}; {summary}", problems.join("; ")) } + &retries.note();
        Ok(Outcome::new(verdict, message)
            .value(status.clone())
            .output("table_status", status)
            .output("item_count", t.item_count().unwrap_or(0))
            .output("size_bytes", size)
            .output("billing_mode", billing(&t))
            .output("read_capacity", read)
            .output("write_capacity", write)
            .output("pitr", pitr)
            .output("encryption", sse)
            .output("arn", t.table_arn().unwrap_or_default().to_string()))
    }
}

/// `on_demand` or `provisioned`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Billing {
    OnDemand,
    Provisioned,
}

/// Change a table's capacity (RCU/WCU) or billing mode, then wait until it is ACTIVE.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetCapacity {
    pub table: String,
    /// Read capacity units (provisioned).
    #[serde(default)]
    pub read: Option<i64>,
    /// Write capacity units (provisioned).
    #[serde(default)]
    pub write: Option<i64>,
    /// Switch the billing mode.
    #[serde(default)]
    pub billing_mode: Option<Billing>,
    /// How long to wait for ACTIVE. Default 10m.
    #[serde(default = "ten_minutes")]
    pub wait_timeout: Duration,
}

fn ten_minutes() -> Duration {
    Duration::from_secs(600)
}

impl SetCapacity {
    fn target(&self, now: &TableDescription) -> Result<(Billing, i64, i64), StepError> {
        let (r0, w0) = capacity(now);
        let mode = self.billing_mode.unwrap_or(if self.read.is_some() || self.write.is_some() { Billing::Provisioned } else if billing(now) == "on_demand" { Billing::OnDemand } else { Billing::Provisioned });
        let (r, w) = (self.read.unwrap_or(r0.max(1)), self.write.unwrap_or(w0.max(1)));
        if mode == Billing::OnDemand && (self.read.is_some() || self.write.is_some()) {
            return Err(StepError::invalid("`read`/`write` apply to provisioned billing, not on_demand"));
        }
        Ok((mode, r, w))
    }

    fn describe_target(mode: Billing, r: i64, w: i64) -> String {
        match mode {
            Billing::OnDemand => "on-demand".to_string(),
            Billing::Provisioned => format!("provisioned {r} RCU / {w} WCU"),
        }
    }
}

impl StepKind for SetCapacity {
    const NAME: &'static str = "dynamodb.set_capacity";
    const SUMMARY: &'static str = "change RCU/WCU or the billing mode (plan: before → after), wait until ACTIVE";
    const EFFECT: Effect = Effect::Mutate;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "previous", ty: "string", help: "capacity before" },
        Output { name: "current", ty: "string", help: "capacity after" },
    ];

    fn check(&self) -> Result<(), String> {
        if self.read.is_none() && self.write.is_none() && self.billing_mode.is_none() {
            return Err("give `read`/`write` or `billing_mode`".into());
        }
        for (n, v) in [("read", self.read), ("write", self.write)] {
            if v.is_some_and(|v| v < 1) {
                return Err(format!("`{n}` must be at least 1"));
            }
        }
        Ok(())
    }

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let (client, config, retries) = client(ctx).await?;
        let now = describe(&client, &config, &self.table).await?;
        let before = describe_capacity(&now);
        let (mode, r, w) = self.target(&now)?;
        let after = Self::describe_target(mode, r, w);
        if before == after {
            return Ok(Outcome::passed(format!("{} is already {after}", self.table)).value(after.clone()).output("previous", before).output("current", after));
        }
        let mut req = client.update_table().table_name(&self.table);
        req = match mode {
            Billing::OnDemand => req.billing_mode(BillingMode::PayPerRequest),
            Billing::Provisioned => req
                .billing_mode(BillingMode::Provisioned)
                .provisioned_throughput(build(ProvisionedThroughput::builder().read_capacity_units(r).write_capacity_units(w).build())?),
        };
        req.send().await.map_err(|e| sdk_error(e, &format!("updating {}", self.table), &config))?;
        let t = wait_active(&client, &config, &self.table, self.wait_timeout.std()).await?;
        let current = describe_capacity(&t);
        Ok(Outcome::passed(format!("{}: {before} → {current}{}", self.table, retries.note())).value(current.clone()).output("previous", before).output("current", current))
    }

    async fn plan(&self, ctx: &StepContext) -> Result<String, StepError> {
        let (client, config, _) = client(ctx).await?;
        let now = describe(&client, &config, &self.table).await?;
        let (mode, r, w) = self.target(&now)?;
        let (before, after) = (describe_capacity(&now), Self::describe_target(mode, r, w));
        Ok(if before == after { format!("would change nothing: {} is already {after}", self.table) } else { format!("would change {}: {before} → {after}", self.table) })
    }
}

/// Make sure point-in-time recovery is on; report the restorable window.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Pitr {
    pub table: String,
}

pub(super) async fn pitr_state(client: &aws_sdk_dynamodb::Client, config: &aws_config::SdkConfig, table: &str) -> Result<(bool, Option<String>, Option<String>), StepError> {
    let d = client
        .describe_continuous_backups()
        .table_name(table)
        .send()
        .await
        .map_err(|e| {
            if e.as_service_error().is_some_and(|s| s.is_table_not_found_exception()) {
                StepError::new(ErrorClass::Failed, format!("table {table} does not exist in {} (check aws.region)", crate::steps::aws::target(config)))
            } else {
                sdk_error(e, &format!("reading the backups settings of {table}"), config)
            }
        })?
        .continuous_backups_description
        .and_then(|c| c.point_in_time_recovery_description);
    let on = d.as_ref().and_then(|p| p.point_in_time_recovery_status.clone()).is_some_and(|s| s == PointInTimeRecoveryStatus::Enabled);
    let fmt = |t: Option<&aws_smithy_types::DateTime>| t.and_then(|t| t.fmt(aws_smithy_types::date_time::Format::DateTime).ok());
    Ok((on, fmt(d.as_ref().and_then(|p| p.earliest_restorable_date_time())), fmt(d.as_ref().and_then(|p| p.latest_restorable_date_time()))))
}

impl StepKind for Pitr {
    const NAME: &'static str = "dynamodb.pitr";
    const SUMMARY: &'static str = "ensure point-in-time recovery is on; report the earliest restorable time";
    const EFFECT: Effect = Effect::Mutate;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "enabled_now", ty: "bool", help: "true when this step turned it on" },
        Output { name: "earliest_restorable", ty: "string", help: "RFC 3339, or null" },
        Output { name: "latest_restorable", ty: "string", help: "RFC 3339, or null" },
    ];

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let (client, config, retries) = client(ctx).await?;
        let (on, _, _) = pitr_state(&client, &config, &self.table).await?;
        if !on {
            client
                .update_continuous_backups()
                .table_name(&self.table)
                .point_in_time_recovery_specification(build(PointInTimeRecoverySpecification::builder().point_in_time_recovery_enabled(true).build())?)
                .send()
                .await
                .map_err(|e| sdk_error(e, &format!("enabling point-in-time recovery on {}", self.table), &config))?;
        }
        let (_, earliest, latest) = pitr_state(&client, &config, &self.table).await?;
        let message = match (&earliest, on) {
            (Some(e), true) => format!("point-in-time recovery is on for {}; restorable from {e}", self.table),
            (Some(e), false) => format!("turned point-in-time recovery on for {}; restorable from {e}", self.table),
            (None, _) => format!("point-in-time recovery is on for {}", self.table),
        } + &retries.note();
        Ok(Outcome::passed(message).value("on").output("enabled_now", !on).output("earliest_restorable", earliest).output("latest_restorable", latest))
    }

    async fn plan(&self, ctx: &StepContext) -> Result<String, StepError> {
        let (client, config, _) = client(ctx).await?;
        let (on, earliest, _) = pitr_state(&client, &config, &self.table).await?;
        Ok(if on {
            format!("would change nothing: point-in-time recovery is on for {} (restorable from {})", self.table, earliest.unwrap_or_default())
        } else {
            format!("would turn point-in-time recovery on for {}", self.table)
        })
    }
}
