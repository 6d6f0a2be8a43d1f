//! CloudWatch: `cloudwatch.metric`, `cloudwatch.alarms`, `cloudwatch.put_metrics`, the
//! CloudWatch Logs kinds `cloudwatch.logs` and `cloudwatch.logs_query`, and the clients
//! they share.

pub mod alarms;
pub mod logs;
pub mod logs_query;
pub mod metric;
pub mod put_metrics;

use crate::kind::StepContext;
use crate::steps::aws::{Retries, config};
use crate::vocab::StepError;

pub async fn client(ctx: &StepContext) -> Result<(aws_sdk_cloudwatch::Client, aws_config::SdkConfig, Retries), StepError> {
    let c = config(ctx).await?;
    let retries = Retries::default();
    let conf = aws_sdk_cloudwatch::config::Builder::from(&c).interceptor(retries.clone()).build();
    Ok((aws_sdk_cloudwatch::Client::from_conf(conf), c, retries))
}

/// A CloudWatch Logs client for the instance, with its configuration and retry counter.
pub async fn logs_client(ctx: &StepContext) -> Result<(aws_sdk_cloudwatchlogs::Client, aws_config::SdkConfig, Retries), StepError> {
    let c = config(ctx).await?;
    let retries = Retries::default();
    let conf = aws_sdk_cloudwatchlogs::config::Builder::from(&c).interceptor(retries.clone()).build();
    Ok((aws_sdk_cloudwatchlogs::Client::from_conf(conf), c, retries))
}

/// The log groups a step names, else the instance's `cloudwatch_logs.groups`.
pub fn log_groups(ctx: &StepContext, given: &[String]) -> Result<Vec<String>, StepError> {
    if !given.is_empty() {
        return Ok(given.to_vec());
    }
    ctx.instance.cloudwatch_logs.as_ref().map(|c| c.groups.clone()).filter(|g| !g.is_empty()).ok_or_else(|| {
        StepError::invalid(format!(
            "no log group: give `groups:` to the step, or add `cloudwatch_logs: {{ groups: [/ecs/NAME] }}` to instance {} in the inventory",
            ctx.instance.name
        ))
    })
}

/// A missing log group as such, not an API error.
pub fn group_error(e: StepError, group: &str, config: &aws_config::SdkConfig) -> StepError {
    if e.message.contains("ResourceNotFound") || e.message.contains("does not exist") || e.message.contains("specified log group") {
        StepError::new(crate::vocab::ErrorClass::Failed, format!("log group {group} does not exist [{}]", crate::steps::aws::target(config)))
    } else {
        e
    }
}
