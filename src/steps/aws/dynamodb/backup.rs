//! `dynamodb.backup`: an on-demand backup, waited for until it is AVAILABLE.

use std::time::{Duration as StdDuration, Instant};

use aws_sdk_dynamodb::types::BackupStatus;
use schemars::JsonSchema;
use serde::Deserialize;

use super::{client, describe};
use crate::duration::Duration;
use crate::kind::{StepContext, StepKind};
use crate::steps::aws::sdk_error;
use crate::units::human_bytes;
use crate::vocab::{Effect, ErrorClass, Outcome, Output, StepError};

/// Take an on-demand backup of a table and wait until it is AVAILABLE.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Backup {
    pub table: String,
    /// The backup's name. Default `<table>-opsctl-<UTC time>`.
    #[serde(default)]
    pub name: Option<String>,
    /// How long to wait for AVAILABLE. Default 30m.
    #[serde(default = "thirty_minutes")]
    pub wait_timeout: Duration,
}

fn thirty_minutes() -> Duration {
    Duration::from_secs(1800)
}

impl Backup {
    fn name(&self) -> String {
        self.name.clone().unwrap_or_else(|| format!("{}-opsctl-{}", self.table, jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ")))
    }
}

impl StepKind for Backup {
    const NAME: &'static str = "dynamodb.backup";
    const PERMISSIONS: &'static [crate::vocab::Permission] = {
        use crate::vocab::*;
        &[aws(&["dynamodb:CreateBackup", "dynamodb:DescribeBackup"], AwsOn::Tables)]
    };
    const SUMMARY: &'static str = "an on-demand DynamoDB backup, waited for until AVAILABLE; outputs its ARN";
    const EFFECT: Effect = Effect::Mutate;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "arn", ty: "string", help: "the backup ARN (for dynamodb.restore from_backup)" },
        Output { name: "name", ty: "string", help: "the backup name" },
        Output { name: "size_bytes", ty: "int", help: "as DynamoDB reports it" },
        Output { name: "item_count", ty: "int", help: "the table's item count at backup time (DynamoDB's estimate)" },
    ];

    fn check(&self) -> Result<(), String> {
        match &self.name {
            Some(n) if n.len() < 3 || n.len() > 255 || !n.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) => {
                Err(format!("`name` is 3–255 characters of letters, digits, `_`, `.` and `-`, not `{n}`"))
            }
            _ => Ok(()),
        }
    }

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let started = Instant::now();
        let (client, config, retries) = client(ctx).await?;
        let table = describe(&client, &config, &self.table).await?;
        let name = self.name();
        let created = client
            .create_backup()
            .table_name(&self.table)
            .backup_name(&name)
            .send()
            .await
            .map_err(|e| sdk_error(e, &format!("creating a backup of {}", self.table), &config))?;
        let arn = created.backup_details().map(|d| d.backup_arn().to_string()).ok_or_else(|| StepError::error("CreateBackup returned no backup ARN"))?;
        let details = loop {
            let d = client
                .describe_backup()
                .backup_arn(&arn)
                .send()
                .await
                .map_err(|e| sdk_error(e, &format!("reading backup {arn}"), &config))?
                .backup_description
                .and_then(|d| d.backup_details)
                .ok_or_else(|| StepError::error(format!("DescribeBackup returned nothing for {arn}")))?;
            match d.backup_status() {
                BackupStatus::Available => break d,
                BackupStatus::Deleted => return Err(StepError::new(ErrorClass::Failed, format!("backup {arn} was deleted while it was being created"))),
                _ if started.elapsed() > self.wait_timeout.std() => {
                    return Err(StepError::new(
                        ErrorClass::Timeout,
                        format!("backup {arn} is still {} after {}; it may still complete", d.backup_status().as_str(), self.wait_timeout),
                    ));
                }
                _ => tokio::time::sleep(StdDuration::from_secs(2)).await,
            }
        };
        let size = details.backup_size_bytes().unwrap_or(0);
        let items = table.item_count().unwrap_or(0);
        Ok(Outcome::passed(format!(
            "backed up {} as {name} (AVAILABLE, {}, ~{items} items) in {}{}",
            self.table,
            human_bytes(size.max(0) as u64),
            crate::duration::short(started.elapsed()),
            retries.note()
        ))
        .value(name.clone())
        .output("arn", arn)
        .output("name", name)
        .output("size_bytes", size)
        .output("item_count", items))
    }

    async fn plan(&self, ctx: &StepContext) -> Result<String, StepError> {
        let (client, config, _) = client(ctx).await?;
        let t = describe(&client, &config, &self.table).await?;
        Ok(format!("would create on-demand backup {} of {} (~{} items)", self.name(), self.table, t.item_count().unwrap_or(0)))
    }
}
