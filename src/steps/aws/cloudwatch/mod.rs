//! CloudWatch: `cloudwatch.metric`, `cloudwatch.alarms`, `cloudwatch.put_metrics`, and the
//! client they share.

pub mod alarms;
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
