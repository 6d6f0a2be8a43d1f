//! The `aws:`, `dynamodb:`, `ecs:`, `elb:`, `rds:` and `cloudwatch_logs:` sections of an
//! instance: how to reach its AWS account, its DynamoDB tables, its ECS services, its load
//! balancer target groups, its RDS DB instances and its log groups.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::Duration;

/// How to reach an instance's AWS account.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AwsSettings {
    /// The region, e.g. `us-east-1`. Default: the SDK's (environment, profile).
    #[serde(default)]
    pub region: Option<String>,
    /// A profile from ~/.aws/config.
    #[serde(default)]
    pub profile: Option<String>,
    /// Another endpoint (an emulator); `$AWS_ENDPOINT_URL` works too.
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// The longest an AWS call may take, retries included. Default 60s.
    #[serde(default)]
    pub timeout: Option<Duration>,
    /// How long to wait for a connection. Default 5s.
    #[serde(default)]
    pub connect_timeout: Option<Duration>,
    /// `standard` (default) or `adaptive` (client-side rate limiting).
    #[serde(default)]
    pub retry_mode: RetryMode,
    /// Tries per call, the first included. Default 3.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// A DynamoDB table for the instance lease (partition key `instance`, a string), for
    /// instances without Kubernetes.
    #[serde(default)]
    pub lease_table: Option<String>,
    /// The instance's CloudWatch alarms: those whose names start with this (`team-b-`).
    /// `check` and `gate` fail while one is in ALARM.
    #[serde(default)]
    pub alarm_prefix: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RetryMode {
    #[default]
    Standard,
    Adaptive,
}

/// An instance's DynamoDB tables (for `check` and templates).
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DynamoSettings {
    #[serde(default)]
    pub tables: Vec<String>,
}

/// An instance's ECS services (for `check` and as the ECS steps' defaults).
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EcsSettings {
    /// The cluster.
    pub cluster: String,
    /// The services `check` looks at. Default: every service of the cluster.
    #[serde(default)]
    pub services: Vec<String>,
}

/// An instance's load balancer target groups (for `check` and as `elb.targets`' default).
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ElbSettings {
    /// Target groups, by name or ARN.
    #[serde(default)]
    pub target_groups: Vec<String>,
}

/// An instance's CloudWatch Logs groups (the CloudWatch Logs steps' default).
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CloudwatchLogsSettings {
    /// Log group names, e.g. `/ecs/production/application`.
    #[serde(default)]
    pub groups: Vec<String>,
}

/// An instance's RDS DB instances (the RDS steps' default).
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RdsSettings {
    /// DB instance identifiers.
    #[serde(default)]
    pub instances: Vec<String>,
}
