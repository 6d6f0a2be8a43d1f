//! The words a step is described in: what it may change ([`Effect`]), how it ended
//! ([`Verdict`], [`Outcome`]), why it failed ([`ErrorClass`], [`StepError`]), what it
//! declares it outputs ([`Output`]), and a kind as the runbook model sees it ([`KindSpec`]).
//!
//! Pure data, no tokio and no SDK: the runbook model, the report and every backend speak
//! these words, so they sit below all of them.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::yaml::Node;
use crate::yaml::de::DeError;

/// What a step may change. Known statically from the kind (or, for `host.command`, from
/// what the author declares).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// Only looks.
    Read,
    /// Changes something that can be changed back.
    Mutate,
    /// Changes something that cannot be undone (drops, overwrites, deletes).
    Destroy,
}

impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Effect::Read => "read",
            Effect::Mutate => "mutate",
            Effect::Destroy => "destroy",
        })
    }
}

/// Why a step failed, for `retry.on` and for reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// The step or a request took too long.
    Timeout,
    /// The other side said "slow down" (HTTP 429, AWS throttling).
    Throttled,
    /// Could not reach the other side: connection refused, DNS, reset.
    Unavailable,
    /// The other side answered with a 5xx status.
    #[serde(rename = "http_5xx")]
    Http5xx,
    /// The step ran and its check failed (wrong status, a threshold crossed).
    Failed,
    /// Any other error (I/O, a process that would not start).
    Error,
    /// Bad parameters after templating. Never retried.
    Invalid,
    /// In `retry.on`: every class except `invalid`.
    Any,
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = serde_json::to_value(self).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        f.write_str(&s)
    }
}

/// A step that could not do its work.
#[derive(Clone, Debug, PartialEq)]
pub struct StepError {
    pub class: ErrorClass,
    pub message: String,
}

impl StepError {
    pub fn new(class: ErrorClass, message: impl Into<String>) -> StepError {
        StepError { class, message: message.into() }
    }
    pub fn invalid(message: impl Into<String>) -> StepError {
        StepError::new(ErrorClass::Invalid, message)
    }
    pub fn error(message: impl Into<String>) -> StepError {
        StepError::new(ErrorClass::Error, message)
    }
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The verdict of a step that ran, from best to worst.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    Passed,
    Warned,
    Failed,
}

/// What an unmet expectation does to a step (`assert`, `postgres.query`): fail it, or
/// only warn.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    #[default]
    Fail,
    Warn,
}

impl Severity {
    /// The verdict on an expectation that holds or does not.
    pub fn verdict(self, holds: bool) -> Verdict {
        match (holds, self) {
            (true, _) => Verdict::Passed,
            (false, Severity::Fail) => Verdict::Failed,
            (false, Severity::Warn) => Verdict::Warned,
        }
    }
}

/// What a check makes of an answer that holds nothing to judge — no series, no targets, a
/// NaN: a decision each such check takes explicitly, `fail` unless the author says otherwise.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Judgement {
    Pass,
    Warn,
    #[default]
    Fail,
}

impl Judgement {
    /// As written in a runbook: `pass`, `warn`, `fail`.
    pub fn as_str(self) -> &'static str {
        match self {
            Judgement::Pass => "pass",
            Judgement::Warn => "warn",
            Judgement::Fail => "fail",
        }
    }

    pub fn verdict(self) -> Verdict {
        match self {
            Judgement::Pass => Verdict::Passed,
            Judgement::Warn => Verdict::Warned,
            Judgement::Fail => Verdict::Failed,
        }
    }
}

/// What a step that ran reports.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub verdict: Verdict,
    pub message: String,
    /// The measured value, for the table: `72.4%`, `183ms`.
    pub value: Option<String>,
    /// The thresholds it was held to: `warn > 80%, fail > 90%`.
    pub threshold: Option<String>,
    /// The kind's declared outputs, readable as `steps.<id>.<name>`.
    pub outputs: serde_json::Map<String, serde_json::Value>,
    /// Set on a failed verdict to say which retry class it belongs to (default `failed`).
    pub class: Option<ErrorClass>,
}

impl Outcome {
    pub fn new(verdict: Verdict, message: impl Into<String>) -> Outcome {
        Outcome {
            verdict,
            message: message.into(),
            value: None,
            threshold: None,
            outputs: serde_json::Map::new(),
            class: None,
        }
    }
    pub fn passed(message: impl Into<String>) -> Outcome {
        Outcome::new(Verdict::Passed, message)
    }
    pub fn failed(message: impl Into<String>) -> Outcome {
        Outcome::new(Verdict::Failed, message)
    }
    pub fn value(mut self, v: impl Into<String>) -> Outcome {
        self.value = Some(v.into());
        self
    }
    pub fn threshold(mut self, t: Option<String>) -> Outcome {
        self.threshold = t;
        self
    }
    pub fn output(mut self, name: &str, v: impl Into<serde_json::Value>) -> Outcome {
        self.outputs.insert(name.to_string(), v.into());
        self
    }
    pub fn class(mut self, c: ErrorClass) -> Outcome {
        self.class = Some(c);
        self
    }
}

/// A declared output of a step kind.
#[derive(Clone, Copy, Debug)]
pub struct Output {
    pub name: &'static str,
    /// `int`, `float`, `string`, `bool`, `list`, `map`.
    pub ty: &'static str,
    pub help: &'static str,
}

/// Outputs every step has, whatever its kind.
pub const COMMON_OUTPUTS: &[Output] = &[
    Output { name: "status", ty: "string", help: "passed, warned, failed, skipped or planned" },
    Output { name: "failed", ty: "bool", help: "true when the step failed" },
    Output { name: "message", ty: "string", help: "what the step said" },
    Output { name: "duration", ty: "float", help: "seconds the step took" },
    Output { name: "attempts", ty: "int", help: "how many times it ran (retries)" },
];

/// A step kind as the runbook model sees it: its name, what it may change, what it outputs,
/// and how its parameters are checked — but no way to run it (that is the registry's
/// `KindInfo`, which holds one of these).
pub struct KindSpec {
    pub name: &'static str,
    pub summary: &'static str,
    pub effect: Effect,
    pub outputs: &'static [Output],
    /// Parameters that must be written literally, not templated (`kind::StepKind::LITERAL`).
    pub literal: &'static [&'static str],
    /// Leases a mutating step of this kind needs (`kind::StepKind::LEASES`).
    pub leases: &'static [&'static str],
    /// Reads only the machine opsctl runs on (`kind::StepKind::MACHINE`).
    pub machine: bool,
    /// What it needs of the backends' access control (`kind::StepKind::PERMISSIONS`).
    pub permissions: &'static [Permission],
    /// Parameters that become a program's command line (`kind::StepKind::ARGV`).
    pub argv: &'static [&'static str],
    /// Parses parameters with templates as wildcards; returns the step's effect.
    pub validate: fn(&Node) -> Result<Effect, DeError>,
    /// The JSON Schema of the parameters.
    pub schema: fn(&mut schemars::SchemaGenerator) -> schemars::Schema,
}

impl fmt::Debug for KindSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

impl KindSpec {
    pub fn has_output(&self, name: &str) -> bool {
        COMMON_OUTPUTS.iter().chain(self.outputs).any(|o| o.name == name)
    }

    pub fn output_names(&self) -> Vec<&'static str> {
        COMMON_OUTPUTS.iter().chain(self.outputs).map(|o| o.name).collect()
    }
}

/// A finished step, as `cloudwatch.put_metrics` publishes it.
#[derive(Clone, Debug, PartialEq)]
pub struct StepSummary {
    pub id: String,
    pub status: String,
    pub duration_secs: f64,
}

/// What a step kind needs of a backend's access control, for `opsctl permissions`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permission {
    /// Kubernetes RBAC: verbs on a resource (`pods`, `pods/log`) of an API group (`""` is the
    /// core group), in the instance's namespace — or cluster-wide (`nodes`, every pod).
    Kube { group: &'static str, resource: &'static str, verbs: &'static [&'static str], cluster: bool },
    /// AWS IAM actions on the instance's resources of one sort.
    Aws { actions: &'static [&'static str], on: AwsOn },
}

/// Which of the instance's AWS resources an IAM action is granted on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum AwsOn {
    /// Actions that take no resource ARN (`Describe*`, `List*`, metric reads and writes).
    Any,
    /// `dynamodb.tables`.
    Tables,
    /// The backup store's bucket and prefix (`backups.s3`), when it is S3.
    Bucket,
    /// The Secrets Manager secrets the instance refers to.
    Secrets,
    /// `cloudwatch_logs.groups`.
    LogGroups,
    /// `ecs.cluster` and its `ecs.services`.
    EcsServices,
    /// `rds.instances`, and the drills' instances and snapshots.
    DbInstances,
}

/// Namespaced Kubernetes access.
pub const fn kube(group: &'static str, resource: &'static str, verbs: &'static [&'static str]) -> Permission {
    Permission::Kube { group, resource, verbs, cluster: false }
}

/// Cluster-wide Kubernetes access (a ClusterRole).
pub const fn kube_cluster(group: &'static str, resource: &'static str, verbs: &'static [&'static str]) -> Permission {
    Permission::Kube { group, resource, verbs, cluster: true }
}

/// AWS IAM actions.
pub const fn aws(actions: &'static [&'static str], on: AwsOn) -> Permission {
    Permission::Aws { actions, on }
}
