//! Procedures: what a command does with runbooks, between the command line and the engine.
//!
//! A command names a runbook ([`catalog`]) and one or more instances; for each instance the
//! runbook is bound ([`prepare`]: references checked against the instance, parameters
//! typed), a mutating run takes the local lock ([`lock`]) and the backends' leases that
//! apply, the engine runs it, and the report is appended to the history. The command line
//! parses arguments and renders the reports; the engine runs one runbook on one instance.

pub mod catalog;
pub mod fleet;
pub mod lock;
pub mod permissions;

use std::path::Path;
use std::sync::Arc;

use indexmap::IndexMap;

use crate::engine::{Confirm, Engine, Interrupts, Options, RunMeta};
use crate::error::Error;
use crate::instance::Instance;
use crate::lease::{Held, Holder, LeaseError, Scope};
use crate::report::{RunReport, Sink, history};
use crate::runbook::{self, ParamValue, Runbook};
use crate::vocab::Effect;

/// A runbook bound to one instance, ready to run.
pub struct Prepared {
    pub instance: Arc<Instance>,
    pub params: IndexMap<String, ParamValue>,
}

/// Checks the runbook's references against the instance and binds its parameters.
pub fn prepare(runbook: &Runbook, instance: Arc<Instance>, given: &[(String, String)]) -> Result<Prepared, Error> {
    let errors = runbook::check::references(runbook, Some(&instance));
    if !errors.is_empty() {
        return Err(Error::Invalid(errors));
    }
    fetch_param_defaults(runbook, &instance)?;
    let params = runbook::check::bind_params(runbook, given).map_err(Error::Invalid)?;
    check_requirements(runbook, &instance, &params)?;
    check_local_secrets(runbook, &instance)?;
    Ok(Prepared { instance, params })
}

/// Reads, before anything runs, every `{ env: … }` and `{ file: … }` reference the run
/// would read, and refuses the run (exit 2) naming each one that cannot be read where it is
/// written: those in the instance's sections its steps use — a `postgres.*` step reads
/// `postgres:`, a template naming `instance.http` reads `http:` — and those written in its
/// steps. Steps whose `needs:` the instance lacks do not count: they will not run.
pub fn check_local_secrets(runbook: &Runbook, instance: &Instance) -> Result<(), Error> {
    use crate::diagnostic::Diagnostic;
    let runnable: Vec<&runbook::Step> = runbook.steps().filter(|s| s.controls.needs.iter().all(|n| instance.has(n))).collect();
    let mut errors = Vec::new();
    if let Some(origin) = instance.origin.as_ref().filter(|o| !o.local_refs.is_empty()) {
        // The sections each step reads, by its kind's family and its templates.
        let mut readers: std::collections::BTreeMap<String, Vec<&str>> = std::collections::BTreeMap::new();
        for s in &runnable {
            let mut sections = vec![s.kind.name.split('.').next().unwrap_or_default().to_string()];
            for text in s.params.scalars().into_iter().filter_map(|n| n.as_str()).filter(|t| crate::yaml::de::is_template(t)) {
                for r in crate::template::references(text, false).iter().flat_map(|refs| refs.iter()) {
                    if let Some(rest) = r.strip_prefix("instance.") {
                        sections.push(rest.split('.').next().unwrap_or(rest).to_string());
                    }
                }
            }
            for section in sections {
                let ids = readers.entry(section).or_default();
                if !ids.contains(&s.id.as_str()) {
                    ids.push(&s.id);
                }
            }
        }
        for l in &origin.local_refs {
            let Some(ids) = readers.get(l.section.as_str()) else { continue };
            if let Err(why) = l.reference.resolve() {
                let shown: Vec<String> = ids.iter().take(3).map(|id| format!("`{id}`")).collect();
                let more = if ids.len() > 3 { format!(" and {} more", ids.len() - 3) } else { String::new() };
                errors.push(
                    Diagnostic::new(format!("instance {}: {why}", instance.name))
                        .at(&origin.file, l.span)
                        .label(format!("`{}` reads `{}:`: step {}{more}", runbook.name, l.section, shown.join(", ")))
                        .help(secret_help(&l.reference)),
                );
            }
        }
    }
    for s in &runnable {
        let mut found = Vec::new();
        crate::yaml::local_secret_refs(&s.params, &mut found);
        for (reference, span) in found {
            if let Err(why) = reference.resolve() {
                errors.push(Diagnostic::new(why).at(&runbook.file, span).label(format!("step `{}` reads it", s.id)).help(secret_help(&reference)));
            }
        }
    }
    if errors.is_empty() { Ok(()) } else { Err(Error::Invalid(errors)) }
}

/// What to do about a secret reference that cannot be read.
fn secret_help(reference: &crate::secret::SecretRef) -> &'static str {
    match reference {
        crate::secret::SecretRef::Env(_) => "set it in the environment opsctl runs in (a cron or CI job starts with almost none), or point the reference at another variable",
        _ => "make the file readable by the user opsctl runs as (a relative path is taken from the directory opsctl runs in), or point the reference at another file",
    }
}

/// Refuses a runbook whose `requires:` the instance does not meet, naming what it lacks and
/// what it has — before anything runs.
pub fn check_requirements(runbook: &Runbook, instance: &Instance, params: &IndexMap<String, ParamValue>) -> Result<(), Error> {
    use minijinja::value::Value as JValue;
    if runbook.requires.is_empty() {
        return Ok(());
    }
    let ctx = JValue::from_pairs(vec![
        ("params", JValue::from_pairs(params.iter().map(|(k, v)| (k.clone(), v.template_value())))),
        ("vars", JValue::from(minijinja::value::Serde(&instance.vars))),
        ("instance", instance.template()),
    ]);
    let has = instance.backends();
    let mut lacks = Vec::new();
    for r in &runbook.requires {
        if let Some(when) = &r.when {
            let text = when.as_str().unwrap_or_default();
            match crate::template::condition(text, &ctx) {
                Ok(false) => continue,
                Ok(true) => {}
                Err(e) => {
                    let d = crate::diagnostic::Diagnostic::new(format!("cannot decide `requires` when `{text}`: {e}")).at(&runbook.file, when.span);
                    return Err(Error::Invalid(vec![d]));
                }
            }
        }
        if let Some(what) = r.unmet(&has) {
            lacks.push(what);
        }
    }
    if lacks.is_empty() {
        return Ok(());
    }
    Err(Error::Refused(format!(
        "`{}` does not apply to instance {}: it needs {}; {} has {}",
        runbook.name,
        instance.name,
        lacks.join(", and "),
        instance.name,
        has.join(", ")
    )))
}

/// Refuses, before anything runs, a run whose steps need a confirmation nobody can give:
/// no `--yes`, no dry run, and no terminal to ask on. Steps that `need` a backend none of
/// the instances has do not count: they will not run.
pub fn refuse_unconfirmable(runbook: &Runbook, options: &Options, interactive: bool, prepared: &[Prepared]) -> Result<(), Error> {
    if options.dry_run || options.yes || interactive {
        return Ok(());
    }
    let needing: Vec<String> = runbook
        .steps()
        .filter(|s| prepared.iter().any(|p| s.controls.needs.iter().all(|n| p.instance.has(n))))
        .filter(|s| s.controls.confirm.is_some() || s.effect == Effect::Destroy)
        .map(|s| format!("`{}` ({}, {})", s.id, s.kind.name, s.effect))
        .collect();
    if needing.is_empty() {
        return Ok(());
    }
    Err(Error::Refused(format!(
        "{} needs confirmation ({}), and there is no terminal to ask; run with --yes to go ahead, or --dry-run to see the plan",
        if needing.len() == 1 { "a step" } else { "steps" },
        needing.join(", ")
    )))
}

/// What the runs of one command share: options, the terminal, interrupts, where state is
/// kept, the progress sinks, clients and once-per-command results, the history's retention.
pub struct Context<'a> {
    pub options: Options,
    pub confirm: &'a dyn Confirm,
    pub interrupts: Interrupts,
    /// Where history and local locks are kept.
    pub state_dir: &'a Path,
    /// The sink for one instance's run (a new progress line per run).
    pub sink: &'a (dyn Fn() -> Box<dyn Sink> + Sync),
    /// Clients and once-per-command results shared by the runs (see [`crate::kind::Resources`]).
    pub resources: Arc<crate::kind::Resources>,
    /// How much history is kept (`history:` in the inventory).
    pub history: crate::inventory::HistorySettings,
    /// Whether the runs go into the history (`serve`'s frequent checks do not).
    pub record: bool,
    /// Writes the runs' history records as they finish, in groups.
    pub recorder: Recorder,
}

impl<'a> Context<'a> {
    /// A command's context: its runs recorded in the history, fresh shared resources.
    pub fn new(
        options: Options,
        confirm: &'a dyn Confirm,
        interrupts: Interrupts,
        state_dir: &'a Path,
        sink: &'a (dyn Fn() -> Box<dyn Sink> + Sync),
        history: crate::inventory::HistorySettings,
    ) -> Context<'a> {
        Context { options, confirm, interrupts, state_dir, sink, resources: Arc::new(crate::kind::Resources::default()), history, record: true, recorder: Recorder::default() }
    }
}

/// Group commit of history records: a finished run hands its record over; whoever is not
/// waiting for another write writes every record handed over so far with one `fsync`, off
/// the async threads. Runs finishing together (a fleet) share writes; none waits for the
/// others' runs. [`Recorder::flush`] writes what is left when the command's runs are done.
#[derive(Default)]
pub struct Recorder {
    pending: std::sync::Mutex<Vec<Arc<RunReport>>>,
    writing: tokio::sync::Mutex<()>,
}

impl Recorder {
    async fn record(&self, state_dir: &Path, settings: crate::inventory::HistorySettings, report: Arc<RunReport>) {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).push(report);
        self.write(state_dir, settings, false).await;
    }

    /// Writes every record handed over, waiting for a write in progress.
    pub async fn flush(&self, state_dir: &Path, settings: crate::inventory::HistorySettings) {
        self.write(state_dir, settings, true).await;
    }

    async fn write(&self, state_dir: &Path, settings: crate::inventory::HistorySettings, wait: bool) {
        let _writer = if wait {
            self.writing.lock().await
        } else {
            match self.writing.try_lock() {
                Ok(g) => g,
                // The writer in progress takes this record on its next round.
                Err(_) => return,
            }
        };
        loop {
            let batch = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
            if batch.is_empty() {
                return;
            }
            let dir = state_dir.to_path_buf();
            let what = if batch.len() == 1 { "the run was".to_string() } else { format!("{} runs were", batch.len()) };
            let written = tokio::task::spawn_blocking(move || history::append_many(&dir, &batch, &settings)).await;
            match written {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!("{what} not recorded in the history: {e}"),
                Err(e) => tracing::warn!("{what} not recorded in the history: {e}"),
            }
        }
    }
}

/// How to run a runbook on its instances.
pub struct Run<'a> {
    pub runbook: &'a Runbook,
    pub ctx: &'a Context<'a>,
}

impl Run<'_> {
    /// Runs the runbook on the prepared instances under `limits`, each under its locks, and
    /// records each run in the history. Reports come back in the order the instances were
    /// given; an instance another run holds is reported `locked` and does not stop the
    /// others; an interrupt stops launching.
    pub async fn on(&self, prepared: Vec<Prepared>, limits: fleet::Limits) -> Result<Vec<RunReport>, Error> {
        let results = fleet::fan_out(
            prepared,
            limits,
            |p| self.one(p),
            |r| matches!(r, Ok(Some(rep)) if rep.status == crate::report::RunStatus::Failed) || r.is_err(),
            |p, n| Ok(Some(Arc::new(not_run(self.runbook, &p.instance.name, self.ctx.options.dry_run, crate::report::RunStatus::NotStarted, format!("not started: more than {n} instances failed (--max-errors {n})"))))),
        )
        .await;
        self.ctx.recorder.flush(self.ctx.state_dir, self.ctx.history).await;
        let mut reports = Vec::new();
        for r in results {
            if let Some(report) = r? {
                // The history has written its share: the report is ours alone again.
                reports.push(Arc::try_unwrap(report).unwrap_or_else(|shared| (*shared).clone()));
            }
        }
        Ok(reports)
    }

    /// One instance's run; `None` when an interrupt came before it started.
    async fn one(&self, p: Prepared) -> Result<Option<Arc<RunReport>>, Error> {
        if self.ctx.interrupts.stop.is_cancelled() {
            return Ok(None);
        }
        let meta = RunMeta::current();
        let locks = if !self.ctx.options.dry_run && self.runbook.effect() >= Effect::Mutate {
            let holder = Holder {
                run_id: meta.run_id.clone(),
                runbook: self.runbook.name.clone(),
                user: meta.user.clone(),
                host: meta.host.clone(),
                pid: std::process::id(),
                since: jiff::Timestamp::now(),
            };
            let taken = match lock::InstanceLock::acquire(self.ctx.state_dir, &p.instance.name, &holder) {
                Ok(local) => take_leases(self.runbook, &p.instance, &holder).await.map(|leases| (local, leases)),
                Err(e) => Err(e),
            };
            match taken {
                Ok(held) => Some(held),
                Err(Error::Locked { holder, .. }) => {
                    return Ok(Some(Arc::new(not_run(self.runbook, &p.instance.name, self.ctx.options.dry_run, crate::report::RunStatus::Locked, format!("locked by {holder}")))));
                }
                Err(e) => return Err(e),
            }
        } else {
            None
        };
        fetch_secrets(self.runbook, &p.instance).await;
        let sink = (self.ctx.sink)();
        let engine = Engine::new(self.runbook, p.instance.clone(), p.params, self.ctx.options.clone(), meta, sink.as_ref(), self.ctx.confirm, self.ctx.interrupts.clone())
            .with_resources(self.ctx.resources.clone());
        let report = Arc::new(engine.run().await);
        // What cancelled steps handed over to clean up (a half-restored database) is done
        // before the locks go and the process may exit.
        crate::helpers::cleanup::finish(std::time::Duration::from_secs(30)).await;
        drop(sink);
        if let Some((local, leases)) = locks {
            for lease in leases {
                lease.release().await;
            }
            drop(local);
        }
        if self.ctx.record {
            self.ctx.recorder.record(self.ctx.state_dir, self.ctx.history, report.clone()).await;
        }
        Ok(Some(report))
    }
}

/// The report of an instance that did not run: `--max-errors` kept it from starting,
/// another run holds it, or the runbook does not apply to it.
pub fn not_run(runbook: &Runbook, instance: &str, dry_run: bool, status: crate::report::RunStatus, reason: String) -> RunReport {
    let meta = RunMeta::current();
    let now = jiff::Timestamp::now();
    RunReport {
        schema: crate::report::SCHEMA.into(),
        run_id: meta.run_id,
        runbook: runbook.name.clone(),
        runbook_source: runbook.file.name.clone(),
        instance: instance.to_string(),
        dry_run,
        status,
        exit_code: status.exit().code(),
        started_at: now,
        finished_at: now,
        duration_ms: 0.0,
        user: meta.user,
        host: meta.host,
        opsctl_version: env!("CARGO_PKG_VERSION").into(),
        params: serde_json::Map::new(),
        summary: crate::report::Summary::default(),
        steps: Vec::new(),
        not_configured: Vec::new(),
        reason: Some(reason),
    }
}

/// One runbook of a sequence (a routine; a deploy's gate then the deploy), bound.
pub struct Queued {
    pub runbook: Arc<Runbook>,
    pub prepared: Prepared,
    /// When it fails, the later runbooks do not run.
    pub stop_on_failure: bool,
}

/// Runs a sequence's runbooks one after another on their instance, each under its own
/// locks and recorded in the history as its own run. A failed runbook does not stop the
/// others unless it says so; an interrupt stops before the next one.
pub async fn run_sequence(queue: Vec<Queued>, ctx: &Context<'_>) -> Result<(Vec<RunReport>, Vec<crate::report::NotRun>), Error> {
    let mut reports = Vec::new();
    let mut not_run = Vec::new();
    let mut stopped_by: Option<String> = None;
    for q in queue {
        if ctx.interrupts.stop.is_cancelled() {
            not_run.push(crate::report::NotRun { runbook: q.runbook.name.clone(), reason: "the run was interrupted".into() });
            continue;
        }
        if let Some(by) = &stopped_by {
            not_run.push(crate::report::NotRun { runbook: q.runbook.name.clone(), reason: format!("`{by}` failed and stops the sequence") });
            continue;
        }
        let run = Run { runbook: &q.runbook, ctx };
        let mut done = run.on(vec![q.prepared], fleet::Limits::ONE).await?;
        if q.stop_on_failure && done.iter().any(|r| r.status != crate::report::RunStatus::Passed) {
            stopped_by = Some(q.runbook.name.clone());
        }
        reports.append(&mut done);
    }
    Ok((reports, not_run))
}

/// Takes the backends' leases a mutating run on `instance` needs, in the registry's order:
/// the first instance lease that applies (a Kubernetes Lease, else a DynamoDB item), then
/// the leases its mutating steps name (PostgreSQL's advisory lock). One held by another run
/// is [`Error::Locked`] (and what was taken is released); one that cannot be reached only
/// warns — its steps will say what is wrong.
async fn take_leases(runbook: &Runbook, instance: &Instance, holder: &Holder) -> Result<Vec<Box<dyn Held>>, Error> {
    let needs: Vec<&str> = runbook.steps().filter(|s| s.effect >= Effect::Mutate).flat_map(|s| s.kind.leases.iter().copied()).collect();
    let mut held: Vec<Box<dyn Held>> = Vec::new();
    let mut instance_leased = false;
    for lease in crate::registry::LEASES {
        if !lease.applies(instance, &needs) || (lease.scope() == Scope::Instance && instance_leased) {
            continue;
        }
        instance_leased |= lease.scope() == Scope::Instance;
        match lease.acquire(instance, holder, &crate::registry::BACKENDS).await {
            Ok(h) => held.push(h),
            Err(LeaseError::Held(by)) => {
                for h in held {
                    h.release().await;
                }
                return Err(Error::Locked { instance: instance.name.clone(), holder: by });
            }
            Err(LeaseError::Unavailable(why)) => tracing::warn!("no {} for {}: {why}", lease.name(), instance.name),
        }
    }
    Ok(held)
}

/// Fetches every remote secret reference (`aws_secret`, `k8s_secret`) the instance's
/// settings and the runbook's steps hold, once, concurrently, before the steps run; values
/// are registered with the scrubber, failures kept for the step that reads the reference
/// (a reference only a skipped step holds does not stop the run).
pub async fn fetch_secrets(runbook: &Runbook, instance: &Arc<Instance>) {
    let mut refs = instance.remote_secret_refs().to_vec();
    for step in runbook.steps() {
        let mut written = Vec::new();
        crate::yaml::secret_refs(&step.params, &mut written);
        refs.extend(written.into_iter().map(|(r, _)| r).filter(crate::secret::SecretRef::is_remote));
    }
    refs.sort_by_key(|r| r.describe());
    refs.dedup();
    refs.retain(|r| !crate::secret::is_provided(r));
    if refs.is_empty() {
        return;
    }
    let resources = crate::kind::Resources::default();
    let backends: &dyn crate::kind::Backends = &crate::registry::BACKENDS;
    let fetched = futures_util::future::join_all(refs.iter().map(|r| backends.fetch_secret(instance, &resources, r))).await;
    for (r, value) in refs.iter().zip(fetched) {
        crate::secret::provide(r, value);
    }
}


/// Remote references in secret parameters' defaults are fetched before the parameters are
/// bound (the rest are fetched when the run starts). Binding is synchronous, so this uses a
/// runtime of its own; inside one (never from the command line) it leaves them to fail
/// with a clear message when read.
fn fetch_param_defaults(runbook: &Runbook, instance: &Arc<Instance>) -> Result<(), Error> {
    let mut refs = Vec::new();
    for p in &runbook.params {
        if let Some(d) = &p.decl.default {
            crate::secret::remote_refs(d, &mut refs);
        }
    }
    refs.retain(|r| !crate::secret::is_provided(r));
    if refs.is_empty() || tokio::runtime::Handle::try_current().is_ok() {
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| Error::io("cannot start the async runtime", &e))?;
    rt.block_on(async {
        let resources = crate::kind::Resources::default();
        let backends: &dyn crate::kind::Backends = &crate::registry::BACKENDS;
        for r in &refs {
            let value = backends.fetch_secret(instance, &resources, r).await;
            crate::secret::provide(r, value);
        }
    });
    Ok(())
}
