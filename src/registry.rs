//! The step registry: every step kind, type-erased for the loader and the engine, and the
//! answers to what backends ask of each other.
//!
//! This is the one module that knows every backend. [`KINDS`] lists the kinds; [`KindInfo`]
//! is a kind with its parameter type erased: the loader keeps its [`KindSpec`] and calls
//! `validate` with templates as wildcards before anything runs; the engine renders
//! templates into a step's YAML node and calls [`KindInfo::run`] (or `plan`), which
//! deserialize it strictly (it finds the kind from the step's spec with [`of`]).
//!
//! [`LEASES`] are the backends' leases, in the order they are tried; [`BACKENDS`] answers
//! `crate::kind::Backends` for steps: the instance's backup store, the format of a backend's
//! backups, a transport into a container or a pod, a tunnel to a pod's port.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde_json::Value;

use crate::backup::BackupStore;
use crate::backup::local::LocalStore;
use crate::helpers::transport::Transport;
use crate::helpers::tunnel::{PortForward, Tunnel};
use crate::instance::Instance;
use crate::kind::{Backends, BackupFormat, Place, Resources, StepContext, StepKind, decode};
use crate::lease::Lease;
use crate::source::Span;
use crate::steps::{alertmanager, assert, aws, backup, compose, host, http, k8s, notify, postgres, prometheus, redis, sleep, timeline};
use crate::vocab::{Effect, KindSpec, Outcome, StepError};
use crate::yaml::de::{DeError, Mode, from_node};
use crate::yaml::Node;

/// A step kind with its type erased: its description ([`KindSpec`], which the runbook model
/// holds) and how the engine runs and plans it.
pub struct KindInfo {
    pub spec: KindSpec,
    /// Runs the step; refuses if templating made its effect greater than `allowed`, the
    /// effect the loader saw.
    pub run: for<'a> fn(&'a Node, &'a StepContext, Effect) -> BoxFuture<'a, Result<Outcome, StepError>>,
    pub plan: for<'a> fn(&'a Node, &'a StepContext) -> BoxFuture<'a, Result<String, StepError>>,
}

impl std::ops::Deref for KindInfo {
    type Target = KindSpec;
    fn deref(&self) -> &KindSpec {
        &self.spec
    }
}

/// A kind's parameter names, required ones first, for error messages.
pub fn fields(kind: &KindSpec) -> (Vec<String>, Vec<String>) {
    let mut g = generator();
    let schema = (kind.schema)(&mut g).to_value();
    let defs = g.definitions().clone();
    let resolved = match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => defs.get(r.trim_start_matches("#/$defs/")).cloned().unwrap_or_default(),
        None => schema,
    };
    let required: Vec<String> = resolved["required"].as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_string)).collect();
    let optional: Vec<String> = resolved["properties"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, _)| k.clone())
        .filter(|k| !required.contains(k))
        .collect();
    (required, optional)
}

/// The JSON Schema dialect parameter schemas are generated in.
pub fn generator() -> schemars::SchemaGenerator {
    schemars::generate::SchemaSettings::draft2020_12().into_generator()
}

const fn kind<T: StepKind>() -> KindInfo {
    KindInfo {
        spec: KindSpec {
            name: T::NAME,
            summary: T::SUMMARY,
            effect: T::EFFECT,
            outputs: T::OUTPUTS,
            literal: T::LITERAL,
            leases: T::LEASES,
            machine: T::MACHINE,
            permissions: T::PERMISSIONS,
            argv: T::ARGV,
            validate: validate_erased::<T>,
            schema: schema_erased::<T>,
        },
        run: run_erased::<T>,
        plan: plan_erased::<T>,
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
fn field_named(node: &Node, message: &str) -> Option<Span> {
    let entries = node.as_map()?;
    message.split('`').skip(1).step_by(2).find_map(|name| entries.iter().find(|(k, _)| k.as_str() == Some(name)).map(|(k, _)| k.span))
}

fn run_erased<'a, T: StepKind>(node: &'a Node, ctx: &'a StepContext, allowed: Effect) -> BoxFuture<'a, Result<Outcome, StepError>> {
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
    kind::<alertmanager::alerts::Alerts>(),
    kind::<alertmanager::expire::Expire>(),
    kind::<alertmanager::silence::Silence>(),
    kind::<assert::Assert>(),
    kind::<backup::fresh::Fresh>(),
    kind::<backup::prune::Prune>(),
    kind::<backup::verify::Verify>(),
    kind::<aws::cloudwatch::alarms::Alarms>(),
    kind::<aws::cloudwatch::logs::Logs>(),
    kind::<aws::cloudwatch::logs_query::LogsQuery>(),
    kind::<aws::cloudwatch::metric::Metric>(),
    kind::<aws::cloudwatch::put_metrics::PutMetrics>(),
    kind::<compose::deploy::Deploy>(),
    kind::<compose::env_rotate::EnvRotate>(),
    kind::<compose::exec::Exec>(),
    kind::<compose::logs::Logs>(),
    kind::<compose::restart::Restart>(),
    kind::<compose::deploy::Rollback>(),
    kind::<compose::scale::Scale>(),
    kind::<compose::services_healthy::ServicesHealthy>(),
    kind::<compose::start::Start>(),
    kind::<compose::stats::Stats>(),
    kind::<compose::stop::Stop>(),
    kind::<compose::up::Up>(),
    kind::<compose::disk::Disk>(),
    kind::<aws::dynamodb::backup::Backup>(),
    kind::<aws::dynamodb::export::Export>(),
    kind::<aws::dynamodb::pitr::Pitr>(),
    kind::<aws::dynamodb::restore::Restore>(),
    kind::<aws::dynamodb::set_capacity::SetCapacity>(),
    kind::<aws::dynamodb::table_status::TableStatus>(),
    kind::<aws::ecs::deploy::Deploy>(),
    kind::<aws::ecs::rollback::Rollback>(),
    kind::<aws::ecs::scale::Scale>(),
    kind::<aws::ecs::services::Services>(),
    kind::<aws::elb::targets::Targets>(),
    kind::<host::command::Command>(),
    kind::<host::disk::Disk>(),
    kind::<host::load::Load>(),
    kind::<host::memory::Memory>(),
    kind::<http::check::Check>(),
    kind::<k8s::capacity::Capacity>(),
    kind::<k8s::cordon::Cordon>(),
    kind::<k8s::cronjob_succeeded::CronjobSucceeded>(),
    kind::<k8s::deployment_ready::DeploymentReady>(),
    kind::<k8s::drain::Drain>(),
    kind::<k8s::endpoints::EndpointsCheck>(),
    kind::<k8s::events::Events>(),
    kind::<k8s::exec::Exec>(),
    kind::<k8s::jobs::Jobs>(),
    kind::<k8s::logs::Logs>(),
    kind::<k8s::nodes_ready::NodesReady>(),
    kind::<k8s::patch::PatchStep>(),
    kind::<k8s::pods_healthy::PodsHealthy>(),
    kind::<k8s::resource::Resource>(),
    kind::<k8s::rollout_history::RolloutHistory>(),
    kind::<k8s::rollout_restart::RolloutRestart>(),
    kind::<k8s::rollout_status::RolloutStatus>(),
    kind::<k8s::rollout_undo::RolloutUndo>(),
    kind::<k8s::rollouts::Rollouts>(),
    kind::<k8s::scale::Scale>(),
    kind::<k8s::scale_all::ScaleAll>(),
    kind::<k8s::secret_rotate::SecretRotate>(),
    kind::<k8s::set_image::SetImage>(),
    kind::<k8s::set_resources::SetResources>(),
    kind::<k8s::top::Top>(),
    kind::<k8s::uncordon::Uncordon>(),
    kind::<k8s::workloads::Workloads>(),
    kind::<notify::slack::Slack>(),
    kind::<notify::webhook::Webhook>(),
    kind::<postgres::backup::Backup>(),
    kind::<postgres::bloat::Bloat>(),
    kind::<postgres::connections::Connections>(),
    kind::<postgres::long_queries::LongQueries>(),
    kind::<postgres::ping::Ping>(),
    kind::<postgres::query::Query>(),
    kind::<postgres::reindex::Reindex>(),
    kind::<postgres::replication::Replication>(),
    kind::<postgres::restore::Restore>(),
    kind::<postgres::restore::RestoreTest>(),
    kind::<postgres::size::Size>(),
    kind::<postgres::slow_queries::SlowQueries>(),
    kind::<postgres::terminate::Terminate>(),
    kind::<postgres::vacuum::Vacuum>(),
    kind::<prometheus::query::Query>(),
    kind::<prometheus::rules::Rules>(),
    kind::<prometheus::targets::Targets>(),
    kind::<aws::rds::restore_drill::DeleteDrill>(),
    kind::<aws::rds::instances::Instances>(),
    kind::<aws::rds::restore_drill::RestoreDrill>(),
    kind::<aws::rds::snapshots::Snapshots>(),
    kind::<redis::backup::Backup>(),
    kind::<redis::info::RedisInfo>(),
    kind::<redis::ping::Ping>(),
    kind::<redis::queue_depth::QueueDepth>(),
    kind::<redis::slowlog::Slowlog>(),
    kind::<aws::secrets::Rotate>(),
    kind::<sleep::Sleep>(),
    kind::<timeline::Timeline>(),
];

/// The kind called `name`.
pub fn lookup(name: &str) -> Option<&'static KindInfo> {
    KINDS.iter().find(|k| k.name == name)
}

/// The kind whose description the loader gave a runbook step: every `&'static KindSpec` it
/// hands out is the `spec` of one of [`KINDS`], found here by its address (no search: the
/// engine asks once per step).
pub fn of(spec: &KindSpec) -> Option<&'static KindInfo> {
    let first = KINDS.as_ptr() as usize + std::mem::offset_of!(KindInfo, spec);
    let offset = (spec as *const KindSpec as usize).checked_sub(first)?;
    let size = std::mem::size_of::<KindInfo>();
    KINDS.get(offset / size).filter(|k| offset % size == 0 && std::ptr::eq(&k.spec, spec))
}

/// The backends' leases, in the order they are tried: of the instance leases that apply,
/// the first is taken (a Kubernetes Lease, else a DynamoDB item); then those the run's
/// steps need (PostgreSQL's advisory lock).
pub static LEASES: &[&dyn Lease] = &[&k8s::lease::KubeLease, &aws::lease::DynamoLease, &postgres::lease::AdvisoryLock];

/// The formats of the backups backends write.
pub static BACKUP_FORMATS: &[BackupFormat] = &[postgres::backup::FORMAT, aws::dynamodb::export::FORMAT, redis::backup::FORMAT];

/// The format of backups whose manifest says `kind`.
pub fn backup_format(kind: &str) -> Option<&'static BackupFormat> {
    BACKUP_FORMATS.iter().find(|f| f.kind == kind)
}

/// The instance's backup store, or why it has none: S3 when `backups.s3` is set, else the
/// local `dir`.
pub fn backup_store(instance: &Instance) -> Result<Box<dyn BackupStore>, String> {
    let settings = instance.backups.as_ref().ok_or_else(|| {
        format!("instance {} has no backup store; set `backups: {{ dir: /var/backups/opsctl }}` in the inventory", instance.name)
    })?;
    match (&settings.s3, &settings.dir) {
        (Some(s3), dir) => {
            let aws = instance.aws.clone().unwrap_or_default();
            let staging = dir.as_ref().map(|d| d.join(&instance.name).join(".staging"));
            Ok(Box::new(aws::s3store::S3Store::new(s3, &instance.name, aws, staging)?))
        }
        (None, Some(dir)) => Ok(Box::new(LocalStore::new(dir.join(&instance.name)))),
        (None, None) => Err(format!("instance {}: `backups` needs a `dir` or an `s3: {{ bucket: … }}`", instance.name)),
    }
}

/// What backends ask of each other, answered from the registry.
pub struct Registry;

/// The registry, as steps see it (`ctx.run.backends`).
pub static BACKENDS: Registry = Registry;

impl Backends for Registry {
    fn backup_store(&self, instance: &Instance) -> Result<Box<dyn BackupStore>, String> {
        backup_store(instance)
    }

    fn backup_format(&self, kind: &str) -> Option<&'static BackupFormat> {
        backup_format(kind)
    }

    fn transport<'a>(&'a self, ctx: &'a StepContext, place: Place<'a>) -> BoxFuture<'a, Result<Box<dyn Transport>, StepError>> {
        match place {
            Place::ComposeService(service) => Box::pin(compose::transport::open(ctx, service)),
            Place::Pod { pod, container } => Box::pin(k8s::transport::open(ctx, pod, container)),
        }
    }

    fn port_forward<'a>(&'a self, instance: &'a Instance, resources: &'a Resources, to: &'a PortForward) -> BoxFuture<'a, Result<Arc<dyn Tunnel>, StepError>> {
        Box::pin(k8s::forward::open(instance, resources, to))
    }

    fn fetch_secret<'a>(&'a self, instance: &'a Instance, resources: &'a Resources, reference: &'a crate::secret::SecretRef) -> BoxFuture<'a, Result<String, String>> {
        use crate::secret::SecretRef;
        match reference {
            SecretRef::AwsSecret(r) => Box::pin(aws::secrets::fetch(instance, resources, r)),
            SecretRef::K8sSecret(r) => Box::pin(k8s::secret_ref::fetch(instance, resources, r)),
            other => Box::pin(std::future::ready(other.resolve().map(|s| s.expose().to_string()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::COMMON_OUTPUTS;

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

    #[test]
    fn fields_lists_required_then_optional() {
        let (required, optional) = fields(lookup("host.command").unwrap());
        assert_eq!(required, ["effect"]);
        assert!(optional.contains(&"argv".to_string()));
    }

    #[test]
    fn a_spec_leads_back_to_its_kind() {
        for k in KINDS {
            assert!(std::ptr::eq(of(&k.spec).unwrap(), k), "{}", k.name);
        }
        let stray = KindSpec { ..KINDS[0].spec };
        assert!(of(&stray).is_none());
    }

    #[test]
    fn backup_formats_are_unique() {
        for (i, f) in BACKUP_FORMATS.iter().enumerate() {
            assert!(!BACKUP_FORMATS[..i].iter().any(|g| g.kind == f.kind), "{} twice", f.kind);
        }
    }
}
