//! RDS: instances (status, free storage, maintenance, Multi-AZ, backups) and snapshots (the
//! RPO you would get now).

pub mod instances;
pub mod restore_drill;
pub mod snapshots;

use super::{Retries, config};
use crate::kind::StepContext;
use crate::vocab::StepError;

/// An RDS client for the instance, with its configuration and the step's retry counter.
pub async fn client(ctx: &StepContext) -> Result<(aws_sdk_rds::Client, aws_config::SdkConfig, Retries), StepError> {
    let c = config(ctx).await?;
    let retries = Retries::default();
    let conf = aws_sdk_rds::config::Builder::from(&c).interceptor(retries.clone()).build();
    Ok((aws_sdk_rds::Client::from_conf(conf), c, retries))
}

/// The DB instances a step names, else the instance's `rds.instances`.
pub fn db_instances(ctx: &StepContext, given: &[String]) -> Result<Vec<String>, StepError> {
    if !given.is_empty() {
        return Ok(given.to_vec());
    }
    ctx.instance.rds.as_ref().map(|r| r.instances.clone()).filter(|i| !i.is_empty()).ok_or_else(|| {
        StepError::invalid(format!(
            "no DB instance: give `instances:` to the step, or add `rds: {{ instances: [NAME] }}` to instance {} in the inventory",
            ctx.instance.name
        ))
    })
}

/// A DB instance that does not exist, said as such.
pub fn missing(e: StepError, id: &str, config: &aws_config::SdkConfig) -> StepError {
    if e.message.contains("DBInstanceNotFound") || e.message.contains("not found") {
        StepError::new(crate::vocab::ErrorClass::Failed, format!("DB instance {id} does not exist [{}]", super::target(config)))
    } else {
        e
    }
}
