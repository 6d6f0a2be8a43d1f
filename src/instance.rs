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
/// count when they list something; `s3` is a backup store in S3; `alarms` is
/// `aws.alarm_prefix`; `host` is always there).
pub const BACKEND_NAMES: &[&str] = &[
    "host", "http", "postgres", "backups", "compose", "kubernetes", "prometheus", "alertmanager", "redis", "aws", "dynamodb", "ecs",
    "elb", "rds", "cloudwatch_logs", "s3", "alarms",
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
    /// What `opsctl routine daily|weekly|monthly` runs: runbook names (or `{ runbook, params,
    /// stop_on_failure }`), replacing the shipped list of that routine.
    #[serde(default)]
    pub routines: BTreeMap<String, Vec<RoutineEntry>>,
    /// Secrets `opsctl rotate-secret NAME` rotates, by name.
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretDecl>,
    /// Thresholds of the deploy gate and of a deploy's verification.
    #[serde(default)]
    pub gate: Option<GateSettings>,
    /// What the log review (`opsctl logs`, the daily routine) counts and how it judges it.
    #[serde(default)]
    pub logs: Option<LogSettings>,
    /// What is worked out from the settings once: every run of a fleet asks.
    #[serde(skip)]
    #[schemars(skip)]
    pub derived: Derived,
    /// Where the instance is written (none for the built-in `localhost`): its local secret
    /// references are resolved before a run, and one that cannot be read is reported there.
    #[serde(skip)]
    #[schemars(skip)]
    pub origin: Option<std::sync::Arc<Origin>>,
}

/// Where an instance's `{ env: … }` and `{ file: … }` references are written.
#[derive(Debug)]
pub struct Origin {
    pub file: std::sync::Arc<crate::source::SourceFile>,
    pub local_refs: Vec<LocalRef>,
}

/// A local secret reference in an instance's settings.
#[derive(Debug)]
pub struct LocalRef {
    /// The section it is under (`postgres`, `http`): the backend that reads it.
    pub section: String,
    pub reference: crate::secret::SecretRef,
    /// The variable's name or the file's path, as written.
    pub span: crate::source::Span,
}

/// Worked out from an instance's settings on first use. Settings do not change once an
/// instance is shared; a clone (which may be changed) works them out again.
#[derive(Default)]
pub struct Derived {
    json: std::sync::OnceLock<std::sync::Arc<serde_json::Value>>,
    template: std::sync::OnceLock<minijinja::Value>,
    backends: std::sync::OnceLock<Vec<&'static str>>,
    remote_refs: std::sync::OnceLock<Vec<crate::secret::SecretRef>>,
}

impl Clone for Derived {
    fn clone(&self) -> Self {
        Derived::default()
    }
}

impl std::fmt::Debug for Derived {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Derived")
    }
}

/// `logs: { since: 24h, pattern: "(?i)error", warn_above: 0, fail_above: 500 }`
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// How far back the review reads. Default 24h.
    #[serde(default = "default_log_since")]
    pub since: crate::duration::Duration,
    /// What an error line is. Default `(?i)\b(error|fatal|panic)\b`.
    #[serde(default = "default_error_pattern")]
    pub pattern: String,
    /// Warn when a component has more error lines. Default 0: any error line warns.
    #[serde(default = "default_log_warn")]
    pub warn_above: Option<u64>,
    /// Fail when a component has more. Default: never.
    #[serde(default)]
    pub fail_above: Option<u64>,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings { since: default_log_since(), pattern: default_error_pattern(), warn_above: default_log_warn(), fail_above: None }
    }
}

fn default_log_since() -> crate::duration::Duration {
    crate::duration::Duration::from_secs(24 * 3600)
}
fn default_log_warn() -> Option<u64> {
    Some(0)
}

/// One runbook of a routine: `backup`, or `{ runbook: backup, params: { what: postgres },
/// stop_on_failure: true }`.
#[derive(Debug, Clone, Serialize)]
pub struct RoutineEntry {
    pub runbook: String,
    /// Parameters, as `-p NAME=VALUE` would give them.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    /// When this runbook fails, the routine's later runbooks do not run. Default false: a
    /// failed runbook does not stop the others.
    #[serde(default)]
    pub stop_on_failure: bool,
}

impl RoutineEntry {
    pub fn named(runbook: &str) -> RoutineEntry {
        RoutineEntry { runbook: runbook.to_string(), params: BTreeMap::new(), stop_on_failure: false }
    }
}

/// A routine's runbook written as a mapping.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RoutineEntryMap {
    /// The runbook's name.
    runbook: String,
    /// Parameters, as `-p NAME=VALUE` would give them.
    #[serde(default)]
    params: BTreeMap<String, serde_json::Value>,
    /// When this runbook fails, the routine's later runbooks do not run (default false).
    #[serde(default)]
    stop_on_failure: bool,
}

/// As the loader reads it: a runbook name, or a mapping.
impl JsonSchema for RoutineEntry {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "RoutineEntry".into()
    }
    fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        crate::yaml::de::string_or_map_schema::<RoutineEntryMap>(g, "A runbook name, e.g. backup")
    }
}

impl<'de> Deserialize<'de> for RoutineEntry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::yaml::de::string_or_map(d, "a runbook name such as `backup`, or a mapping with `runbook`", RoutineEntry::named, |f: RoutineEntryMap| {
            let params = f
                .params
                .into_iter()
                .map(|(k, v)| {
                    let text = match v {
                        serde_json::Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (k, text)
                })
                .collect();
            RoutineEntry { runbook: f.runbook, params, stop_on_failure: f.stop_on_failure }
        })
    }
}

/// A secret `opsctl rotate-secret NAME` rotates: a key of an env file (Compose), a key of a
/// Kubernetes Secret, or an AWS Secrets Manager secret; and what reads it.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretDecl {
    /// An env file (relative to the inventory) holding `key`; its services are recreated.
    #[serde(default)]
    pub env_file: Option<std::path::PathBuf>,
    /// A Kubernetes Secret in the instance's namespace holding `key`.
    #[serde(default)]
    pub k8s_secret: Option<String>,
    /// An AWS Secrets Manager secret (name or ARN); `key` names a field of a JSON secret.
    #[serde(default)]
    pub aws_secret: Option<String>,
    /// The key (env file, Secret), or the JSON field (Secrets Manager).
    #[serde(default)]
    pub key: Option<String>,
    /// What reads it and is restarted: Compose services, or Kubernetes workloads
    /// (`deployment/api`).
    #[serde(default)]
    pub restart: Vec<String>,
    /// Length of the generated value. Default 32.
    #[serde(default)]
    pub length: Option<usize>,
}

/// `gate: { max_errors: 10, window: 10m, error_rate_query: "…", max_error_rate: 0.01 }`
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GateSettings {
    /// Error log lines allowed across the instance's components in `window`. Default 10.
    #[serde(default = "default_max_errors")]
    pub max_errors: u64,
    /// How far back errors count. Default 10m.
    #[serde(default = "default_window")]
    pub window: crate::duration::Duration,
    /// What an error line looks like. Default `(?i)\b(error|fatal|panic)\b`.
    #[serde(default = "default_error_pattern")]
    pub error_pattern: String,
    /// A PromQL query whose value is the error rate (a ratio), on an instance with Prometheus.
    #[serde(default)]
    pub error_rate_query: Option<String>,
    /// The highest error rate the gate accepts. Default 0.01 (1 %).
    #[serde(default = "default_max_error_rate")]
    pub max_error_rate: f64,
    /// The highest share of a node's allocatable CPU or memory its pods may request. Default 0.9.
    #[serde(default = "default_max_requested")]
    pub max_requested: f64,
}

impl Default for GateSettings {
    fn default() -> Self {
        GateSettings {
            max_errors: default_max_errors(),
            window: default_window(),
            error_pattern: default_error_pattern(),
            error_rate_query: None,
            max_error_rate: default_max_error_rate(),
            max_requested: default_max_requested(),
        }
    }
}

fn default_max_errors() -> u64 {
    10
}
fn default_window() -> crate::duration::Duration {
    crate::duration::Duration::from_secs(600)
}
fn default_error_pattern() -> String {
    r"(?i)\b(error|fatal|panic)\b".to_string()
}
fn default_max_error_rate() -> f64 {
    0.01
}
fn default_max_requested() -> f64 {
    0.9
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
            if obj.get("gate").is_some_and(|g| g.is_null()) {
                obj.insert("gate".into(), serde_json::to_value(GateSettings::default()).unwrap_or_default());
            }
            if obj.get("logs").is_some_and(|g| g.is_null()) {
                obj.insert("logs".into(), serde_json::to_value(LogSettings::default()).unwrap_or_default());
            }
        }
        v
    }

    /// [`Instance::template_value`] as a template value, made once.
    pub fn template(&self) -> minijinja::Value {
        self.derived.template.get_or_init(|| minijinja::Value::from(minijinja::value::Serde(self.template_json().as_ref()))).clone()
    }

    /// [`Instance::template_value`], made once.
    pub fn template_json(&self) -> std::sync::Arc<serde_json::Value> {
        self.derived.json.get_or_init(|| std::sync::Arc::new(self.template_value())).clone()
    }

    /// The remote secret references (`aws_secret`, `k8s_secret`) in the instance's
    /// settings, found once.
    pub fn remote_secret_refs(&self) -> &[crate::secret::SecretRef] {
        self.derived.remote_refs.get_or_init(|| {
            let mut refs = Vec::new();
            crate::secret::remote_refs(&serde_json::to_value(self).unwrap_or_default(), &mut refs);
            refs
        })
    }

    /// Whether the instance has the backend `name` (one of [`BACKEND_NAMES`]).
    pub fn has(&self, name: &str) -> bool {
        self.derived.backends.get_or_init(|| self.backends()).contains(&name)
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
        if self.aws.as_ref().is_some_and(|a| a.alarm_prefix.is_some()) {
            out.push("alarms");
        }
        out
    }
}
