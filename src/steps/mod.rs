//! Step kinds: what a step can do.
//!
//! Each step kind is a parameter struct (serde + JSON Schema) that implements [`StepKind`]:
//! its name, static effect, declared outputs, and `run`. The list of step kinds is
//! [`KINDS`], one table in one place; [`lookup`] finds a kind by name. Adding a kind is the
//! checklist in the README ("Adding a step kind").
//!
//! The engine never sees a kind's struct: it holds a step's parameters as a YAML [`Node`],
//! renders templates into it at run time, and calls the erased functions in [`KindInfo`],
//! which deserialize the node strictly and run the step. The loader calls
//! [`KindInfo::validate`] before anything runs, with templates as wildcards.

pub mod assert;
pub mod aws;
pub mod backup;
pub mod compose;
pub mod host;
pub mod http;
pub mod k8s;
pub mod logscan;
pub mod notify;
pub mod postgres;
pub mod sleep;
pub mod threshold;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::inventory::Instance;
use crate::source::SourceFile;
use crate::yaml::Node;
use crate::yaml::de::{DeError, Mode, from_node};

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

/// Things steps share within a run, built on first use: HTTP clients, the PostgreSQL
/// connection.
#[derive(Default)]
pub struct Resources {
    http: Mutex<HashMap<http::ClientKey, reqwest::Client>>,
    pub postgres: postgres::conn::Pool,
    /// The AWS SDK configuration, loaded once per run.
    pub aws: tokio::sync::OnceCell<aws_config::SdkConfig>,
    /// The Kubernetes client, built once per run.
    pub kube: tokio::sync::OnceCell<Result<k8s::Kube, StepError>>,
}

impl Resources {
    pub fn http_client(&self, key: &http::ClientKey) -> Result<reqwest::Client, StepError> {
        let mut clients = self.http.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = clients.get(key) {
            return Ok(c.clone());
        }
        let client = http::build_client(key)?;
        clients.insert(key.clone(), client.clone());
        Ok(client)
    }
}

/// The run a step belongs to.
pub struct RunInfo {
    pub runbook: String,
    pub run_id: String,
    /// The steps finished so far.
    pub steps: Arc<crate::engine::StepsObject>,
}

/// What a running step can see.
pub struct StepContext {
    pub run: Arc<RunInfo>,
    pub instance: Arc<Instance>,
    pub resources: Arc<Resources>,
    pub file: Arc<SourceFile>,
    pub step_id: String,
    pub dry_run: bool,
}

/// A step kind: typed parameters plus behaviour.
pub trait StepKind: DeserializeOwned + JsonSchema + Send + Sync + 'static {
    /// The action key in runbooks: `http.check`.
    const NAME: &'static str;
    /// One line for `opsctl list` and the README.
    const SUMMARY: &'static str;
    const EFFECT: Effect;
    /// Outputs beyond [`COMMON_OUTPUTS`].
    const OUTPUTS: &'static [Output];

    /// The effect of this particular step; only kinds whose author declares it override.
    fn effect(&self) -> Effect {
        Self::EFFECT
    }

    /// Checks across fields, after the parameters parsed.
    fn check(&self) -> Result<(), String> {
        Ok(())
    }

    /// Does the work.
    fn run(&self, ctx: &StepContext) -> impl Future<Output = Result<Outcome, StepError>> + Send;

    /// What running would change, for plans and dry runs. Kinds that can read the current
    /// state say "before → after"; the default admits it cannot predict.
    fn plan(&self, _ctx: &StepContext) -> impl Future<Output = Result<String, StepError>> + Send {
        async { Ok(format!("would run {} (cannot predict the change)", Self::NAME)) }
    }
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A step kind with its type erased, as the loader and engine use it.
pub struct KindInfo {
    pub name: &'static str,
    pub summary: &'static str,
    pub effect: Effect,
    pub outputs: &'static [Output],
    /// Parses parameters with templates as wildcards; returns the step's effect.
    pub validate: fn(&Node) -> Result<Effect, DeError>,
    /// Runs the step; refuses if templating made its effect greater than `allowed`, the
    /// effect the loader saw.
    pub run: for<'a> fn(&'a Node, &'a StepContext, Effect) -> BoxFuture<'a, Result<Outcome, StepError>>,
    pub plan: for<'a> fn(&'a Node, &'a StepContext) -> BoxFuture<'a, Result<String, StepError>>,
    pub schema: fn(&mut schemars::SchemaGenerator) -> schemars::Schema,
}

impl fmt::Debug for KindInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

impl KindInfo {
    pub fn has_output(&self, name: &str) -> bool {
        COMMON_OUTPUTS.iter().chain(self.outputs).any(|o| o.name == name)
    }

    pub fn output_names(&self) -> Vec<&'static str> {
        COMMON_OUTPUTS.iter().chain(self.outputs).map(|o| o.name).collect()
    }
}

const fn kind<T: StepKind>() -> KindInfo {
    KindInfo {
        name: T::NAME,
        summary: T::SUMMARY,
        effect: T::EFFECT,
        outputs: T::OUTPUTS,
        validate: validate_erased::<T>,
        run: run_erased::<T>,
        plan: plan_erased::<T>,
        schema: schema_erased::<T>,
    }
}

fn validate_erased<T: StepKind>(node: &Node) -> Result<Effect, DeError> {
    let params: T = from_node(node, Mode::Validate)?;
    if !crate::template::has_templates(node) {
        params.check().map_err(|m| {
            let at = field_named(node, &m).unwrap_or(node.span);
            DeError::new(m).or_at(at)
        })?;
    }
    Ok(params.effect())
}

/// The span of the first parameter a `check` message names in backticks (`` `stat` is
/// one of … ``), so the error points at that field rather than the whole step.
fn field_named(node: &Node, message: &str) -> Option<crate::source::Span> {
    let entries = node.as_map()?;
    message.split('`').skip(1).step_by(2).find_map(|name| entries.iter().find(|(k, _)| k.as_str() == Some(name)).map(|(k, _)| k.span))
}

/// Parses a rendered parameter node strictly.
pub fn decode<T: StepKind>(node: &Node, ctx: &StepContext) -> Result<T, StepError> {
    let params: T = from_node(node, Mode::Strict).map_err(|e| {
        let at = e.span.map(|s| {
            let (l, c) = ctx.file.line_col(s.start);
            format!(" ({}:{l}:{c})", ctx.file.name)
        });
        StepError::invalid(format!("invalid parameters after templating: {e}{}", at.unwrap_or_default()))
    })?;
    params.check().map_err(StepError::invalid)?;
    Ok(params)
}

fn run_erased<'a, T: StepKind>(
    node: &'a Node,
    ctx: &'a StepContext,
    allowed: Effect,
) -> BoxFuture<'a, Result<Outcome, StepError>> {
    Box::pin(async move {
        let params: T = decode(node, ctx)?;
        if params.effect() > allowed {
            return Err(StepError::invalid(format!(
                "after templating this step would {}, but it was validated as `{allowed}`; write the fields that decide its effect literally",
                params.effect()
            )));
        }
        params.run(ctx).await
    })
}

fn plan_erased<'a, T: StepKind>(node: &'a Node, ctx: &'a StepContext) -> BoxFuture<'a, Result<String, StepError>> {
    Box::pin(async move {
        let params: T = decode(node, ctx)?;
        params.plan(ctx).await
    })
}

fn schema_erased<T: StepKind>(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    generator.subschema_for::<T>()
}

/// Every step kind. Keep it sorted by name.
pub static KINDS: &[KindInfo] = &[
    kind::<assert::Assert>(),
    kind::<backup::Prune>(),
    kind::<backup::Verify>(),
    kind::<aws::cloudwatch::Alarms>(),
    kind::<aws::cloudwatch::Metric>(),
    kind::<aws::cloudwatch::PutMetrics>(),
    kind::<compose::env_rotate::EnvRotate>(),
    kind::<compose::exec::Exec>(),
    kind::<compose::logs::Logs>(),
    kind::<compose::lifecycle::Restart>(),
    kind::<compose::lifecycle::Scale>(),
    kind::<compose::services::ServicesHealthy>(),
    kind::<compose::lifecycle::Start>(),
    kind::<compose::stats::Stats>(),
    kind::<compose::lifecycle::Stop>(),
    kind::<compose::lifecycle::Up>(),
    kind::<compose::disk::Disk>(),
    kind::<aws::dynamodb::backup::Backup>(),
    kind::<aws::dynamodb::export::Export>(),
    kind::<aws::dynamodb::table::Pitr>(),
    kind::<aws::dynamodb::restore::Restore>(),
    kind::<aws::dynamodb::table::SetCapacity>(),
    kind::<aws::dynamodb::table::TableStatus>(),
    kind::<host::command::Command>(),
    kind::<host::disk::Disk>(),
    kind::<host::load::Load>(),
    kind::<host::memory::Memory>(),
    kind::<http::check::Check>(),
    kind::<k8s::nodes::Cordon>(),
    kind::<k8s::jobs::CronjobSucceeded>(),
    kind::<k8s::health::DeploymentReady>(),
    kind::<k8s::nodes::Drain>(),
    kind::<k8s::observe::Events>(),
    kind::<k8s::exec::Exec>(),
    kind::<k8s::jobs::Jobs>(),
    kind::<k8s::observe::Logs>(),
    kind::<k8s::health::NodesReady>(),
    kind::<k8s::patch::PatchStep>(),
    kind::<k8s::health::PodsHealthy>(),
    kind::<k8s::rollout::RolloutHistory>(),
    kind::<k8s::rollout::RolloutRestart>(),
    kind::<k8s::rollout::RolloutStatus>(),
    kind::<k8s::rollout::RolloutUndo>(),
    kind::<k8s::scale::Scale>(),
    kind::<k8s::scale::ScaleAll>(),
    kind::<k8s::secret::SecretRotate>(),
    kind::<k8s::rollout::SetImage>(),
    kind::<k8s::rollout::SetResources>(),
    kind::<k8s::observe::Top>(),
    kind::<k8s::nodes::Uncordon>(),
    kind::<k8s::health::Workloads>(),
    kind::<notify::Slack>(),
    kind::<notify::Webhook>(),
    kind::<postgres::backup::Backup>(),
    kind::<postgres::bloat::Bloat>(),
    kind::<postgres::connections::Connections>(),
    kind::<postgres::long_queries::LongQueries>(),
    kind::<postgres::ping::Ping>(),
    kind::<postgres::query::Query>(),
    kind::<postgres::reindex::Reindex>(),
    kind::<postgres::replication::Replication>(),
    kind::<postgres::restore::Restore>(),
    kind::<postgres::size::Size>(),
    kind::<postgres::slow_queries::SlowQueries>(),
    kind::<postgres::terminate::Terminate>(),
    kind::<postgres::vacuum::Vacuum>(),
    kind::<aws::secrets::Rotate>(),
    kind::<sleep::Sleep>(),
];

/// The kind called `name`.
pub fn lookup(name: &str) -> Option<&'static KindInfo> {
    KINDS.iter().find(|k| k.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_sorted_and_unique() {
        let names: Vec<_> = KINDS.iter().map(|k| k.name).collect();
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(names, sorted);
    }

    #[test]
    fn outputs_do_not_shadow_common_ones() {
        for k in KINDS {
            for o in k.outputs {
                assert!(!COMMON_OUTPUTS.iter().any(|c| c.name == o.name), "{} redeclares {}", k.name, o.name);
            }
        }
    }
}
