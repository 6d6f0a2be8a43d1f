//! What a running step can see: its run, its instance, the run's shared clients, and the
//! other backends (through the registry, never by importing them).

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;

use crate::backup::{BackupStore, Manifest};
use crate::helpers::transport::Transport;
use crate::helpers::tunnel::{PortForward, Tunnel};
use crate::instance::Instance;
use crate::source::SourceFile;
use crate::vocab::{StepError, StepSummary};

/// Things steps share within a run, made on first use and kept by type. Each backend keeps
/// its own here — the HTTP clients, the PostgreSQL connection, the AWS configuration, the
/// Kubernetes client — without this module knowing their types.
#[derive(Default)]
pub struct Resources {
    values: Mutex<HashMap<(TypeId, String), Arc<dyn Any + Send + Sync>>>,
}

impl Resources {
    /// The `T`, made with `T::default()` the first time a step asks for it. One per
    /// command: a command run on several instances shares its resources between their
    /// runs, so anything that depends on the instance's settings is [`Resources::keyed`].
    pub fn get<T: Default + Send + Sync + 'static>(&self) -> Arc<T> {
        self.keyed("")
    }

    /// The `T` for `key` (the settings it was made from: a client per cluster, per
    /// account, per database), made with `T::default()` on first use.
    pub fn keyed<T: Default + Send + Sync + 'static>(&self, key: &str) -> Arc<T> {
        let mut values = self.values.lock().unwrap_or_else(|e| e.into_inner());
        let value = values.entry((TypeId::of::<T>(), key.to_string())).or_insert_with(|| Arc::new(T::default())).clone();
        value.downcast::<T>().unwrap_or_else(|_| unreachable!("a value is stored under its own type id"))
    }
}

/// The key a settings value is kept under in [`Resources::keyed`]: its JSON.
pub fn settings_key(settings: &impl serde::Serialize) -> String {
    serde_json::to_string(settings).unwrap_or_default()
}

/// The steps of a run that have finished so far. The engine keeps them; a step that
/// reports on the run (`cloudwatch.put_metrics`) reads them.
pub trait FinishedSteps: Send + Sync {
    /// One line per finished step, by id.
    fn summaries(&self) -> Vec<StepSummary>;
    /// Every finished step's (and `for_each` item's) output `name` that is a list, its
    /// entries concatenated in step-id order: how `timeline` gathers the `timeline`
    /// entries of a run's steps.
    fn collect(&self, name: &str) -> Vec<serde_json::Value>;
}

/// The run a step belongs to.
pub struct RunInfo {
    pub runbook: String,
    pub run_id: String,
    /// The steps finished so far.
    pub steps: Arc<dyn FinishedSteps>,
    /// What one backend may ask of the others.
    pub backends: &'static dyn Backends,
}

/// What a running step can see.
#[derive(Clone)]
pub struct StepContext {
    pub run: Arc<RunInfo>,
    pub instance: Arc<Instance>,
    pub resources: Arc<Resources>,
    pub file: Arc<SourceFile>,
    pub step_id: String,
    pub dry_run: bool,
}

impl StepContext {
    /// The instance's backup store, or why it has none (an error in the inventory).
    pub fn backup_store(&self) -> Result<Box<dyn BackupStore>, StepError> {
        self.run.backends.backup_store(&self.instance).map_err(StepError::invalid)
    }
}

/// Where a program runs when it does not run on this machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place<'a> {
    /// The first running container of a service of the instance's compose project.
    ComposeService(&'a str),
    /// A pod in the instance's Kubernetes namespace, and the container (default: its first).
    Pod { pod: &'a str, container: Option<&'a str> },
}

/// Checks the structure of a staged (verified) backup file; returns what it found, for the
/// message: `1200 archive entries`, `RDB version 10, CRC64 matches`.
pub type CheckFn = for<'a> fn(&'a StepContext, &'a Manifest, &'a Path) -> BoxFuture<'a, Result<String, StepError>>;

/// A kind of backup a backend writes: how `backup.verify` checks it beyond its checksums,
/// and how `backup list` describes it.
pub struct BackupFormat {
    /// The manifest's `kind`: `postgres`, `dynamodb`.
    pub kind: &'static str,
    /// The file whose structure is checked.
    pub file: &'static str,
    pub check: CheckFn,
    /// Where the backup came from and how many rows or items it holds, for `backup list`.
    pub describe: fn(&Manifest) -> Option<(String, String)>,
}

/// What one backend asks of another: a backup store that may live in S3, a program run in
/// a container or a pod, the format of another backend's backups. The registry, which
/// knows every backend, answers; a backend never imports another.
pub trait Backends: Send + Sync {
    /// The instance's backup store: S3 when `backups.s3` is set, else the directory.
    fn backup_store(&self, instance: &Instance) -> Result<Box<dyn BackupStore>, String>;
    /// The format of backups whose manifest says `kind`.
    fn backup_format(&self, kind: &str) -> Option<&'static BackupFormat>;
    /// A transport that runs programs at `place`.
    fn transport<'a>(&'a self, ctx: &'a StepContext, place: Place<'a>) -> BoxFuture<'a, Result<Box<dyn Transport>, StepError>>;
    /// A tunnel to a port in the instance's Kubernetes namespace, through the API server
    /// (`port_forward:`). `resources` keeps the Kubernetes client: a step's, or a lease's
    /// own.
    fn port_forward<'a>(&'a self, instance: &'a Instance, resources: &'a Resources, to: &'a PortForward) -> BoxFuture<'a, Result<Arc<dyn Tunnel>, StepError>>;
    /// The value of a remote secret reference (`aws_secret`, `k8s_secret`), or why it
    /// cannot be read (never the value).
    fn fetch_secret<'a>(&'a self, instance: &'a Instance, resources: &'a Resources, reference: &'a crate::secret::SecretRef) -> BoxFuture<'a, Result<String, String>>;
}
