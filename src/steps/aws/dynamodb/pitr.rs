//! `dynamodb.pitr`: point-in-time recovery is on, with its earliest and latest restorable
//! times.

use aws_sdk_dynamodb::types::{PointInTimeRecoverySpecification, PointInTimeRecoveryStatus};
use schemars::JsonSchema;
use serde::Deserialize;

use super::{build, client};
use crate::kind::{StepContext, StepKind};
use crate::steps::aws::sdk_error;
use crate::vocab::{Effect, ErrorClass, Outcome, Output, StepError};

/// Make sure point-in-time recovery is on; report the restorable window.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Pitr {
    pub table: String,
}

pub async fn pitr_state(client: &aws_sdk_dynamodb::Client, config: &aws_config::SdkConfig, table: &str) -> Result<(bool, Option<String>, Option<String>), StepError> {
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
    const PERMISSIONS: &'static [crate::vocab::Permission] = {
        use crate::vocab::*;
        &[aws(&["dynamodb:DescribeContinuousBackups", "dynamodb:UpdateContinuousBackups"], AwsOn::Tables)]
    };
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
