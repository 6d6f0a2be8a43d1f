//! The AWS backend: DynamoDB, ECS, load balancers (ELBv2), CloudWatch, Secrets Manager,
//! and S3 as a backup store.
//!
//! One SDK configuration per run — the standard credential chain (environment, profile,
//! SSO, container and instance roles), the instance's region, profile, `endpoint_url`
//! (also `$AWS_ENDPOINT_URL`, for emulators), timeouts and retry mode — shared by every
//! AWS client the run builds. Errors are mapped to what the operator can act on: missing
//! credentials, a table that is not in the configured region, throttling (retried by the
//! SDK, then classed `throttled` for `retry.on`), 5xx.

pub mod cloudwatch;
pub mod dynamodb;
pub mod ecs;
pub mod elb;
pub mod lease;
pub mod rds;
pub mod s3store;
pub mod secrets;
pub mod settings;

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use settings::{AwsSettings, RetryMode};

use crate::kind::StepContext;
use crate::vocab::{ErrorClass, StepError};

/// Builds the SDK configuration for these settings.
pub async fn load(settings: &AwsSettings) -> aws_config::SdkConfig {
    use aws_config::retry::RetryConfig;
    use aws_config::timeout::TimeoutConfig;
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(r) = &settings.region {
        loader = loader.region(aws_config::Region::new(r.clone()));
    }
    if let Some(p) = &settings.profile {
        loader = loader.profile_name(p);
    }
    if let Some(e) = &settings.endpoint_url {
        loader = loader.endpoint_url(e);
    }
    let retry = match settings.retry_mode {
        RetryMode::Standard => RetryConfig::standard(),
        RetryMode::Adaptive => RetryConfig::adaptive(),
    };
    loader = loader.retry_config(retry.with_max_attempts(settings.max_attempts.unwrap_or(3).max(1)));
    loader = loader.timeout_config(
        TimeoutConfig::builder()
            .operation_timeout(settings.timeout.map_or(std::time::Duration::from_secs(60), |d| d.std()))
            .connect_timeout(settings.connect_timeout.map_or(std::time::Duration::from_secs(5), |d| d.std()))
            .build(),
    );
    loader.load().await
}

/// The instance's AWS settings, or a clear error.
pub fn settings(ctx: &StepContext) -> Result<&AwsSettings, StepError> {
    ctx.instance.aws.as_ref().ok_or_else(|| {
        StepError::invalid(format!("instance {} has no AWS settings; add `aws: {{ region: us-east-1 }}` to it in the inventory", ctx.instance.name))
    })
}

/// The run's SDK configuration (kept in its resources), loaded once per run.
#[derive(Default)]
pub struct SdkConfigCell(pub tokio::sync::OnceCell<aws_config::SdkConfig>);

/// The run's SDK configuration, built on first use.
pub async fn config(ctx: &StepContext) -> Result<aws_config::SdkConfig, StepError> {
    let settings = settings(ctx)?.clone();
    Ok(ctx.resources.keyed::<SdkConfigCell>(&crate::kind::context::settings_key(&settings)).0.get_or_init(|| async move { load(&settings).await }).await.clone())
}

/// Where calls go, for messages: the region, and the endpoint when it is not AWS's.
pub fn target(config: &aws_config::SdkConfig) -> String {
    let region = config.region().map_or("no region".to_string(), |r| format!("region {r}"));
    match config.endpoint_url() {
        Some(e) => format!("{region} at {e}"),
        None => region,
    }
}

/// Counts the responses the SDK retried for one step — throttling and 5xx — so the step
/// can say so: a run that succeeded only after retries is worth knowing about.
#[derive(Clone, Debug, Default)]
pub struct Retries(std::sync::Arc<RetryCounts>);

#[derive(Debug, Default)]
pub struct RetryCounts {
    throttled: std::sync::atomic::AtomicU64,
    server: std::sync::atomic::AtomicU64,
}

impl Retries {
    /// Throttled and 5xx responses seen so far.
    pub fn counts(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.0.throttled.load(Relaxed), self.0.server.load(Relaxed))
    }

    /// `; AWS throttled 3 request(s), retried` — or nothing.
    pub fn note(&self) -> String {
        match self.counts() {
            (0, 0) => String::new(),
            (t, 0) => format!("; AWS throttled {t} request(s), retried"),
            (0, s) => format!("; AWS answered 5xx to {s} request(s), retried"),
            (t, s) => format!("; AWS throttled {t} request(s) and answered 5xx to {s}, retried"),
        }
    }
}

impl aws_smithy_runtime_api::client::interceptors::Intercept for Retries {
    fn name(&self) -> &'static str {
        "opsctl-retries"
    }

    fn read_after_deserialization(
        &self,
        context: &aws_smithy_runtime_api::client::interceptors::context::AfterDeserializationInterceptorContextRef<'_>,
        _rc: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        _cfg: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        use std::sync::atomic::Ordering::Relaxed;
        let response = context.response();
        let status = response.status().as_u16();
        if status == 429 || ((status == 400 || status >= 500) && is_throttling(response)) {
            self.0.throttled.fetch_add(1, Relaxed);
        } else if status >= 500 {
            self.0.server.fetch_add(1, Relaxed);
        }
        Ok(())
    }
}

fn is_throttling(response: &HttpResponse) -> bool {
    let header = response.headers().get("x-amzn-errortype").unwrap_or_default();
    let body = response.body().bytes().map(|b| String::from_utf8_lossy(&b[..b.len().min(512)]).into_owned()).unwrap_or_default();
    THROTTLING.iter().any(|c| header.contains(c) || body.contains(c))
}

/// Error codes that mean "slow down".
const THROTTLING: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "RequestThrottled",
    "SlowDown",
    "LimitExceededException",
];

/// Turns an SDK error into a step error that says what to do.
pub fn sdk_error<E>(err: SdkError<E, HttpResponse>, what: &str, config: &aws_config::SdkConfig) -> StepError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let target = target(config);
    match &err {
        SdkError::ServiceError(se) => {
            let e = se.err();
            let code = e.code().unwrap_or("Unknown");
            let message = e.message().unwrap_or("").to_string();
            let status = se.raw().status().as_u16();
            let class = if THROTTLING.contains(&code) || status == 429 {
                ErrorClass::Throttled
            } else if status >= 500 {
                ErrorClass::Http5xx
            } else if code == "ResourceNotFoundException" || code == "NoSuchKey" || code == "NoSuchBucket" {
                ErrorClass::Failed
            } else {
                ErrorClass::Error
            };
            let text = match code {
                "UnrecognizedClientException" | "InvalidClientTokenId" | "InvalidSignatureException" | "SignatureDoesNotMatch" | "ExpiredToken" | "ExpiredTokenException" => {
                    format!("{what}: AWS rejected the credentials ({code}: {message})")
                }
                "AccessDeniedException" | "AccessDenied" => format!("{what}: access denied ({message})"),
                _ if class == ErrorClass::Throttled => format!("{what}: throttled by AWS ({code}) after the SDK's retries"),
                _ if status >= 500 => format!("{what}: AWS answered {status} ({code}: {message})"),
                _ if message.is_empty() => format!("{what}: {code}"),
                _ => format!("{what}: {message}"),
            };
            StepError::new(class, format!("{text} [{target}]"))
        }
        SdkError::TimeoutError(_) => StepError::new(ErrorClass::Timeout, format!("{what}: no answer in time [{target}]")),
        SdkError::DispatchFailure(d) => {
            let chain = crate::helpers::errors::chain(&err);
            if chain.contains("credentials") || chain.contains("no credentials") {
                return StepError::invalid(format!(
                    "{what}: no AWS credentials found; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, `aws.profile`, or run with a role [{target}]"
                ));
            }
            let class = if d.is_timeout() { ErrorClass::Timeout } else { ErrorClass::Unavailable };
            StepError::new(class, format!("{what}: cannot reach AWS ({}) [{target}]", short_cause(&err)))
        }
        SdkError::ConstructionFailure(_) => {
            let chain = crate::helpers::errors::chain(&err);
            if chain.contains("credentials") {
                return StepError::invalid(format!(
                    "{what}: no AWS credentials found; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, `aws.profile`, or run with a role [{target}]"
                ));
            }
            if chain.contains("region") {
                return StepError::invalid(format!("{what}: no AWS region; set `aws.region` or AWS_REGION"));
            }
            StepError::invalid(format!("{what}: {chain}"))
        }
        _ => StepError::error(format!("{what}: {} [{target}]", crate::helpers::errors::chain(&err))),
    }
}

/// The innermost cause of an error, for short messages.
fn short_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = err;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn settings_reach_the_sdk_config() {
        let c = load(&AwsSettings { region: Some("eu-west-1".into()), endpoint_url: Some("http://127.0.0.1:1".into()), ..Default::default() }).await;
        assert_eq!(target(&c), "region eu-west-1 at http://127.0.0.1:1");
        assert_eq!(c.retry_config().unwrap().max_attempts(), 3);
    }
}
