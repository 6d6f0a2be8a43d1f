//! One instance: a deployed copy of a platform, and how to reach each of its backends.
//!
//! Pure data, as the inventory declares it: each backend's section is that backend's
//! `settings.rs`. Steps see the instance they run on through their context; the inventory
//! (`crate::inventory`) loads and selects instances.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::backup::settings::BackupSettings;
use crate::steps::alertmanager::settings::AlertmanagerSettings;
use crate::steps::aws::settings::{AwsSettings, CloudwatchLogsSettings, DynamoSettings, EcsSettings, ElbSettings, RdsSettings};
use crate::steps::compose::settings::ComposeSettings;
use crate::steps::http::settings::HttpSettings;
use crate::steps::k8s::settings::KubeSettings;
use crate::steps::postgres::settings::PostgresSettings;
use crate::steps::prometheus::settings::PrometheusSettings;
use crate::steps::redis::settings::RedisSettings;

/// The names a runbook's `requires:` and a step's `needs:` use, as [`Instance::backends`]
/// reports them: a section of the instance (`dynamodb`, `elb`, `rds` and `cloudwatch_logs`
/// count when they list something; `s3` is a backup store in S3; `host` is always there).
pub const BACKEND_NAMES: &[&str] = &[
    "host", "http", "postgres", "backups", "compose", "kubernetes", "prometheus", "alertmanager", "redis", "aws", "dynamodb", "ecs",
    "elb", "rds", "cloudwatch_logs", "s3",
];

/// One deployed copy of a platform: a tenant, an environment.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Instance {
    /// Filled in from the key under `instances:`.
    #[serde(skip_deserializing)]
    pub name: String,
    /// Free-form labels, for `--selector` and for templates (`instance.labels.tier`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Values runbooks read as `{{ vars.NAME }}`.
    #[serde(default)]
    pub vars: BTreeMap<String, serde_json::Value>,
    /// The instance's HTTP API.
    #[serde(default)]
    pub http: Option<HttpSettings>,
    /// The instance's PostgreSQL.
    #[serde(default)]
    pub postgres: Option<PostgresSettings>,
    /// Where the instance's backups go, and retention.
    #[serde(default)]
    pub backups: Option<BackupSettings>,
    /// The instance's Docker Compose project.
    #[serde(default)]
    pub compose: Option<ComposeSettings>,
    /// How to reach the instance's AWS account.
    #[serde(default)]
    pub aws: Option<AwsSettings>,
    /// The instance's DynamoDB tables.
    #[serde(default)]
    pub dynamodb: Option<DynamoSettings>,
    /// The instance's ECS cluster and services.
    #[serde(default)]
    pub ecs: Option<EcsSettings>,
    /// The instance's load balancer target groups.
    #[serde(default)]
    pub elb: Option<ElbSettings>,
    /// The instance's RDS DB instances.
    #[serde(default)]
    pub rds: Option<RdsSettings>,
    /// The instance's CloudWatch Logs groups.
    #[serde(default)]
    pub cloudwatch_logs: Option<CloudwatchLogsSettings>,
    /// How to reach the instance's Kubernetes cluster.
    #[serde(default)]
    pub kubernetes: Option<KubeSettings>,
    /// The instance's Prometheus.
    #[serde(default)]
    pub prometheus: Option<PrometheusSettings>,
    /// The instance's Alertmanager.
    #[serde(default)]
    pub alertmanager: Option<AlertmanagerSettings>,
    /// The instance's Redis.
    #[serde(default)]
    pub redis: Option<RedisSettings>,
}

impl Instance {
    /// What templates see as `instance`: every setting, with secret references shown as
    /// references (never values). Sections the instance does not have are `null`.
    pub fn template_value(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(obj) = v.as_object_mut() {
            if obj.get("http").is_some_and(|h| h.is_null()) {
                obj.insert("http".into(), serde_json::json!({ "base_url": null, "headers": {}, "health": [] }));
            }
            if obj.get("dynamodb").is_some_and(|d| d.is_null()) {
                obj.insert("dynamodb".into(), serde_json::json!({ "tables": [] }));
            }
        }
        v
    }

    /// Whether the instance has the backend `name` (one of [`BACKEND_NAMES`]).
    pub fn has(&self, name: &str) -> bool {
        self.backends().contains(&name)
    }

    /// The backends this instance declares, for `list instances`, a step's `needs:` and a
    /// runbook's `requires:`.
    pub fn backends(&self) -> Vec<&'static str> {
        let mut out = vec!["host"];
        if self.http.is_some() {
            out.push("http");
        }
        if self.postgres.is_some() {
            out.push("postgres");
        }
        if self.backups.is_some() {
            out.push("backups");
        }
        if self.compose.is_some() {
            out.push("compose");
        }
        if self.kubernetes.is_some() {
            out.push("kubernetes");
        }
        if self.prometheus.is_some() {
            out.push("prometheus");
        }
        if self.alertmanager.is_some() {
            out.push("alertmanager");
        }
        if self.redis.is_some() {
            out.push("redis");
        }
        if self.aws.is_some() {
            out.push("aws");
        }
        if self.dynamodb.as_ref().is_some_and(|d| !d.tables.is_empty()) {
            out.push("dynamodb");
        }
        if self.ecs.is_some() {
            out.push("ecs");
        }
        if self.elb.as_ref().is_some_and(|e| !e.target_groups.is_empty()) {
            out.push("elb");
        }
        if self.rds.as_ref().is_some_and(|r| !r.instances.is_empty()) {
            out.push("rds");
        }
        if self.cloudwatch_logs.as_ref().is_some_and(|c| !c.groups.is_empty()) {
            out.push("cloudwatch_logs");
        }
        if self.backups.as_ref().is_some_and(|b| b.s3.is_some()) {
            out.push("s3");
        }
        out
    }
}
