//! Elastic Load Balancing (v2: Application and Network Load Balancers): what the guides
//! check when "users receive 502" — `aws elbv2 describe-target-health`.

pub mod targets;

use super::{Retries, config};
use crate::kind::StepContext;
use crate::vocab::StepError;

/// An ELBv2 client for the instance, with its configuration (for messages) and the step's
/// retry counter.
pub async fn client(ctx: &StepContext) -> Result<(aws_sdk_elasticloadbalancingv2::Client, aws_config::SdkConfig, Retries), StepError> {
    let c = config(ctx).await?;
    let retries = Retries::default();
    let conf = aws_sdk_elasticloadbalancingv2::config::Builder::from(&c).interceptor(retries.clone()).build();
    Ok((aws_sdk_elasticloadbalancingv2::Client::from_conf(conf), c, retries))
}
