//! `dynamodb.set_capacity`: a table's billing mode and provisioned capacity, planned as
//! before → after, then waited for until ACTIVE.

use aws_sdk_dynamodb::types::{BillingMode, ProvisionedThroughput, TableDescription};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::table::{billing, capacity, describe_capacity};
use super::{build, client, describe, wait_active};
use crate::duration::Duration;
use crate::kind::{StepContext, StepKind};
use crate::steps::aws::sdk_error;
use crate::vocab::{Effect, Outcome, Output, StepError};

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
    const PERMISSIONS: &'static [crate::vocab::Permission] = {
        use crate::vocab::*;
        &[aws(&["dynamodb:DescribeTable", "dynamodb:UpdateTable"], AwsOn::Tables)]
    };
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
