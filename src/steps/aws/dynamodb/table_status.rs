//! `dynamodb.table_status`: a table is ACTIVE, its billing and capacity, size and items,
//! with thresholds.

use aws_sdk_dynamodb::types::PointInTimeRecoveryStatus;
use schemars::JsonSchema;
use serde::Deserialize;

use super::table::{billing, capacity, describe_capacity};
use super::{client, describe};
use crate::kind::{StepContext, StepKind};
use crate::steps::aws::sdk_error;
use crate::units::human_bytes;
use crate::vocab::{Effect, Outcome, Output, StepError, Verdict};

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
    const PERMISSIONS: &'static [crate::vocab::Permission] = {
        use crate::vocab::*;
        &[aws(&["dynamodb:DescribeTable"], AwsOn::Tables)]
    };
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
