//! The engine: executes a checked runbook against one instance and reports what happened.
//!
//! validate → plan → execute → report. The loader has validated; this module plans (for
//! dry runs) and executes:
//! - blocks in order; a `parallel` block's steps concurrently, all step executions bounded
//!   by one semaphore of `--parallel` permits (so `for_each` inside `parallel` cannot exceed it);
//! - per step: `when`, `for_each`, templates rendered, confirmation for `confirm` and
//!   `destroy` steps, per-try timeout, retries with exponential backoff and ±20% jitter on
//!   the error classes the step allows, `on_failure`;
//! - a dry run executes `read` steps (they are safe and later conditions need their
//!   outputs) and asks every other step only what it *would* do;
//! - cancellation: the first signal stops launching steps and cancels the ones in flight;
//!   `always` steps, and the `on_cancel` steps of a step it caught in flight, still run, and
//!   only a second signal (or the end of the grace period) stops them.
//!
//! The engine never writes output; it emits [`Event`]s to a [`Sink`] and returns a
//! [`RunReport`].

mod steps_object;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures_util::future::join_all;
use indexmap::IndexMap;
use minijinja::value::Value as JValue;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::instance::Instance;
use crate::kind::{Resources, RunInfo, StepContext};
use crate::report::{Event, RunReport, RunStatus, SCHEMA, Sink, Status, StepReport};
use crate::runbook::{Block, OnFailure, ParamValue, Runbook, Step};
use crate::template;
use crate::vocab::{Effect, ErrorClass, Outcome, StepError, Verdict};
use crate::yaml::Node;

pub use steps_object::StepsObject;

/// How to run.
#[derive(Clone, Debug)]
pub struct Options {
    /// Execute only `read` steps; plan the others.
    pub dry_run: bool,
    /// Confirmations are answered yes.
    pub yes: bool,
    /// Step executions at once, at most.
    pub parallel: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options { dry_run: false, yes: false, parallel: 8 }
    }
}

/// Asks an operator. The CLI answers on a TTY; tests script it.
pub trait Confirm: Send + Sync {
    /// Whether anyone can be asked.
    fn interactive(&self) -> bool;
    /// Asks; true means go ahead.
    fn confirm(&self, question: &str) -> bool;
}

/// Nobody to ask: every confirmation is refused unless `--yes`.
pub struct NoTty;

impl Confirm for NoTty {
    fn interactive(&self) -> bool {
        false
    }
    fn confirm(&self, _: &str) -> bool {
        false
    }
}

/// The two stages of stopping a run (Ctrl-C, SIGTERM).
#[derive(Clone, Debug, Default)]
pub struct Interrupts {
    /// First signal: stop launching steps, cancel the ones in flight.
    pub stop: CancellationToken,
    /// Second signal: cancel `always` steps too.
    pub stop_always: CancellationToken,
}

/// Who runs, for the report and the audit record.
#[derive(Clone, Debug)]
pub struct RunMeta {
    pub run_id: String,
    pub user: String,
    pub host: String,
}

impl RunMeta {
    /// A new run id (time-ordered, unique enough: `20261123T041200Z-3f9a1c`) and the
    /// current user and host.
    pub fn current() -> RunMeta {
        let now = jiff::Timestamp::now();
        let run_id = format!("{}-{:06x}", now.strftime("%Y%m%dT%H%M%SZ"), fastrand::u32(..0x100_0000));
        RunMeta { run_id, user: crate::sysinfo::user(), host: crate::sysinfo::hostname() }
    }
}

/// Everything the engine needs for one run.
pub struct Engine<'a> {
    runbook: &'a Runbook,
    instance: Arc<Instance>,
    params: IndexMap<String, ParamValue>,
    options: Options,
    meta: RunMeta,
    sink: &'a dyn Sink,
    confirm: &'a dyn Confirm,
    /// First signal: stop launching, cancel in-flight steps.
    cancel: CancellationToken,
    /// Second signal: cancel `always` steps too.
    hard_cancel: CancellationToken,
    resources: Arc<Resources>,
    run_info: Arc<RunInfo>,
    semaphore: Semaphore,
    steps: Arc<StepsObject>,
    steps_value: JValue,
    base: Base,
    state: Mutex<State>,
}

/// Template values that do not change during a run.
struct Base {
    params: JValue,
    vars: JValue,
    instance: JValue,
    /// `run`, without `failed` and `failed_steps` (added as the run goes).
    run: serde_json::Value,
}

#[derive(Default)]
struct State {
    aborted: bool,
    refused: bool,
    /// Steps already run (or being run), so `on_failure: { run: [...] }` does not repeat them.
    started: HashSet<String>,
    /// Backends steps `need` that the instance does not have (their steps are not listed).
    not_configured: std::collections::BTreeSet<String>,
    /// Steps that have failed so far (`run.failed`, `run.failed_steps`).
    failed_steps: Vec<String>,
    /// `run` as templates see it, and how many failed steps it was made with.
    run_value: Option<(usize, JValue)>,
    /// Steps to run as cleanup: named by `on_cancel` of a step the interrupt caught in flight.
    cancel_cleanup: HashSet<String>,
}

/// A step's reports and whether it failed (after `on_failure: warn`).
struct EntryResult {
    reports: Vec<StepReport>,
    failed: bool,
}

impl<'a> Engine<'a> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        runbook: &'a Runbook,
        instance: Arc<Instance>,
        params: IndexMap<String, ParamValue>,
        options: Options,
        meta: RunMeta,
        sink: &'a dyn Sink,
        confirm: &'a dyn Confirm,
        interrupts: Interrupts,
    ) -> Engine<'a> {
        let steps = Arc::new(StepsObject::default());
        let steps_value = JValue::from_dyn_object(steps.clone());
        let base = Base {
            params: JValue::from_pairs(params.iter().map(|(k, v)| (k.clone(), v.template_value()))),
            vars: JValue::from(minijinja::value::Serde(&instance.vars)),
            instance: instance.template(),
            run: serde_json::json!({
                "id": meta.run_id,
                "runbook": runbook.name,
                "instance": instance.name,
                "dry_run": options.dry_run,
                "started_at": jiff::Timestamp::now().to_string(),
                "user": meta.user,
                "host": meta.host,
            }),
        };
        let parallel = options.parallel.max(1);
        let run_info = Arc::new(RunInfo {
            runbook: runbook.name.clone(),
            run_id: meta.run_id.clone(),
            steps: steps.clone(),
            backends: &crate::registry::BACKENDS,
        });
        Engine {
            runbook,
            instance,
            params,
            options,
            meta,
            sink,
            confirm,
            cancel: interrupts.stop,
            hard_cancel: interrupts.stop_always,
            resources: Arc::new(Resources::default()),
            run_info,
            semaphore: Semaphore::new(parallel),
            steps,
            steps_value,
            base,
            state: Mutex::new(State::default()),
        }
    }

    /// Shares `resources` (clients, once-per-command results) with the other runs of a command.
    pub fn with_resources(mut self, resources: Arc<Resources>) -> Self {
        self.resources = resources;
        self
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs every block and returns the report.
    pub async fn run(&self) -> RunReport {
        let started_at = jiff::Timestamp::now();
        let clock = Instant::now();
        self.sink.event(&Event::RunStarted {
            runbook: &self.runbook.name,
            instance: &self.instance.name,
            steps: self.runbook.steps().count(),
            dry_run: self.options.dry_run,
        });
        let mut reports: Vec<StepReport> = Vec::new();
        for block in &self.runbook.blocks {
            match block {
                Block::Step(step) => {
                    let result = self.entry(step).await;
                    reports.extend(result.reports);
                    if result.failed {
                        self.on_failure(step, &mut reports).await;
                    }
                }
                Block::Parallel(p) => {
                    // Steps the instance has no backend for are settled first: no future is
                    // made for them (a check is mostly such steps, on each instance of a fleet).
                    let running: Vec<&Step> = p.steps.iter().filter(|s| !self.not_configured(s)).collect();
                    let results = join_all(running.iter().map(|s| self.entry(s))).await;
                    let mut failed = Vec::new();
                    for (step, result) in running.into_iter().zip(results) {
                        reports.extend(result.reports);
                        if result.failed {
                            failed.push(step);
                        }
                    }
                    for step in failed {
                        self.on_failure(step, &mut reports).await;
                    }
                }
            }
        }
        let state = self.state();
        let status = if state.refused {
            RunStatus::Refused
        } else if self.cancel.is_cancelled() {
            RunStatus::Interrupted
        } else if reports.iter().any(|r| r.status == Status::Failed) {
            RunStatus::Failed
        } else {
            RunStatus::Passed
        };
        let not_configured = state.not_configured.iter().cloned().collect();
        drop(state);
        let report = RunReport {
            schema: SCHEMA.into(),
            run_id: self.meta.run_id.clone(),
            runbook: self.runbook.name.clone(),
            runbook_source: self.runbook.file.name.clone(),
            instance: self.instance.name.clone(),
            dry_run: self.options.dry_run,
            status,
            exit_code: status.exit().code(),
            started_at,
            finished_at: jiff::Timestamp::now(),
            duration_ms: ms(clock.elapsed()),
            user: self.meta.user.clone(),
            host: self.meta.host.clone(),
            opsctl_version: env!("CARGO_PKG_VERSION").into(),
            params: self.params.iter().map(|(k, v)| (k.clone(), v.redacted())).collect(),
            summary: RunReport::summarize(&reports),
            steps: reports,
            not_configured,
            reason: None,
        };
        self.sink.event(&Event::RunFinished(&report));
        report
    }

    /// Applies a failed step's `on_failure`.
    async fn on_failure(&self, step: &Step, reports: &mut Vec<StepReport>) {
        match &step.controls.on_failure {
            OnFailure::Abort => self.state().aborted = true,
            OnFailure::Continue | OnFailure::Warn => {}
            OnFailure::Run(ids) => {
                for id in ids {
                    if let Some(target) = self.runbook.steps().find(|s| &s.id == id) {
                        let result = Box::pin(self.entry(target)).await;
                        reports.extend(result.reports);
                    }
                }
                self.state().aborted = true;
            }
        }
    }

    /// The template context, with `item` when running an item of `for_each`.
    fn context(&self, item: Option<(usize, &JValue)>) -> JValue {
        let mut pairs: Vec<(&str, JValue)> = vec![
            ("params", self.base.params.clone()),
            ("vars", self.base.vars.clone()),
            ("instance", self.base.instance.clone()),
            ("steps", self.steps_value.clone()),
            ("run", {
                // Rebuilt only when a step has failed since: a context is made per step.
                let mut state = self.state();
                let failed = state.failed_steps.len();
                match &state.run_value {
                    Some((n, v)) if *n == failed => v.clone(),
                    _ => {
                        let mut run = self.base.run.clone();
                        run["failed"] = (failed > 0).into();
                        run["failed_steps"] = state.failed_steps.clone().into();
                        let v = JValue::from(minijinja::value::Serde(run));
                        state.run_value = Some((failed, v.clone()));
                        v
                    }
                }
            }),
        ];
        if let Some((i, v)) = item {
            pairs.push(("item", v.clone()));
            pairs.push(("item_index", JValue::from(i)));
        }
        JValue::from_pairs(pairs)
    }

    fn skipped(&self, step: &Step, id: String, name: String, message: impl Into<String>) -> StepReport {
        let report = StepReport {
            id,
            name,
            kind: step.kind.name.into(),
            effect: step.effect,
            status: Status::Skipped,
            message: message.into(),
            value: None,
            threshold: None,
            error_class: None,
            attempts: 0,
            started_at: None,
            duration_ms: 0.0,
            outputs: serde_json::Map::new(),
        };
        self.sink.event(&Event::StepFinished(&report));
        report
    }

    /// One entry of the plan: a step, or all items of a `for_each` step.
    /// A step that `needs` a backend the instance does not have: recorded as skipped
    /// (readable as `steps.ID`) but not run and not a row of the report. True when the step
    /// is settled so (or had already started).
    fn not_configured(&self, step: &Step) -> bool {
        let missing: Vec<&String> = step.controls.needs.iter().filter(|n| !self.instance.has(n)).collect();
        if missing.is_empty() {
            return false;
        }
        let mut state = self.state();
        if !state.started.insert(step.id.clone()) {
            return true;
        }
        state.not_configured.extend(missing.iter().map(|n| n.to_string()));
        drop(state);
        let names: Vec<&str> = missing.iter().map(|n| n.as_str()).collect();
        self.steps.insert_skipped(&step.id, format!("not configured: {}", names.join(", ")));
        true
    }

    async fn entry(&self, step: &Step) -> EntryResult {
        if self.not_configured(step) {
            return EntryResult { reports: Vec::new(), failed: false };
        }
        let label = step.label().to_string();
        {
            let mut state = self.state();
            if !state.started.insert(step.id.clone()) {
                return EntryResult { reports: Vec::new(), failed: false };
            }
            let cleanup = step.controls.always || state.cancel_cleanup.contains(&step.id);
            let reason = if self.cancel.is_cancelled() && !cleanup {
                Some("not run: the run was interrupted".to_string())
            } else if state.refused && !cleanup {
                Some("not run: a confirmation was refused".to_string())
            } else if state.aborted && !cleanup {
                Some("not run: an earlier step failed".to_string())
            } else if let Some(of) = self.runbook.steps().find(|s| s.controls.on_cancel.contains(&step.id)).filter(|_| !cleanup) {
                Some(format!("runs only when the run is interrupted while `{}` runs (on_cancel)", of.id))
            } else {
                None
            };
            if let Some(reason) = reason {
                drop(state);
                return self.single(step, self.skipped(step, step.id.clone(), label, reason));
            }
        }
        if !step.controls.on_cancel.is_empty() {
            let r = Box::pin(self.entry_body(step, label)).await;
            // Caught in flight by the interrupt: what undoes it runs, as cleanup.
            if self.cancel.is_cancelled() {
                self.state().cancel_cleanup.extend(step.controls.on_cancel.iter().cloned());
            }
            return r;
        }
        self.entry_body(step, label).await
    }

    /// Whether a step runs after an interrupt, under the second signal or the grace period
    /// only: an `always` step, or one an interrupted step's `on_cancel` names.
    fn is_cleanup(&self, step: &Step) -> bool {
        step.controls.always || self.state().cancel_cleanup.contains(&step.id)
    }

    /// A step's `when`, `for_each` and execution, once it is known to run.
    async fn entry_body(&self, step: &Step, label: String) -> EntryResult {
        if step.controls.when.is_none() && step.controls.for_each.is_none() {
            let r = self.execute(step, None).await;
            return self.single(step, r);
        }
        let ctx = self.context(None);
        if let Some(when) = &step.controls.when {
            let text = when.as_str().unwrap_or_default();
            match template::condition(text, &ctx) {
                Ok(true) => {}
                Ok(false) => return self.single(step, self.skipped(step, step.id.clone(), label, format!("when `{text}` is false"))),
                Err(e) if self.options.dry_run => {
                    let r = self.skipped(step, step.id.clone(), label, format!("cannot decide `when` in a dry run: {e}"));
                    return self.single(step, r);
                }
                Err(e) => {
                    let r = self.finish(step, step.id.clone(), label, Err(StepError::invalid(format!("when: {e}"))), 0, Instant::now());
                    return self.single(step, r);
                }
            }
        }
        let Some(for_each) = &step.controls.for_each else {
            let r = self.execute(step, None).await;
            return self.single(step, r);
        };
        let items = match self.items(for_each, &ctx) {
            Ok(items) => items,
            Err(e) => {
                let r = self.finish(step, step.id.clone(), label, Err(StepError::invalid(format!("for_each: {e}"))), 0, Instant::now());
                return self.single(step, r);
            }
        };
        if items.is_empty() {
            let what = for_each.as_str().unwrap_or("the list");
            return self.single(step, self.skipped(step, step.id.clone(), label, format!("nothing to do: for_each `{what}` is empty")));
        }
        let reports = join_all(items.iter().enumerate().map(|(i, item)| self.execute(step, Some((i, item))))).await;
        self.steps.insert_items(&step.id, &reports);
        let failed = reports.iter().any(|r| r.status == Status::Failed);
        if failed {
            self.state().failed_steps.push(step.id.clone());
        }
        EntryResult { reports, failed }
    }

    /// A step that produced one report: make its outputs readable, say whether it failed.
    fn single(&self, step: &Step, report: StepReport) -> EntryResult {
        self.steps.insert(&step.id, &report);
        let failed = report.status == Status::Failed;
        if failed {
            self.state().failed_steps.push(step.id.clone());
        }
        EntryResult { reports: vec![report], failed }
    }

    /// The items of `for_each`: a literal list (rendered) or a template that renders one.
    fn items(&self, node: &Node, ctx: &JValue) -> Result<Vec<JValue>, String> {
        if let Some(text) = node.as_str() {
            let expr = template::whole_expression(text).ok_or("write it as a single `{{ expression }}` that renders a list")?;
            let value = template::eval(expr, ctx)?;
            if value.is_none() {
                return Ok(Vec::new());
            }
            if !matches!(value.kind(), minijinja::value::ValueKind::Seq | minijinja::value::ValueKind::Iterable) {
                return Err(format!("`{text}` renders {}, not a list", value.kind()));
            }
            return Ok(value.try_iter().map_err(|e| e.to_string())?.collect());
        }
        let rendered = template::render_node(node, ctx).map_err(|(_, e)| e)?;
        let json = crate::yaml::de::from_node::<serde_json::Value>(&rendered, crate::yaml::de::Mode::Strict).map_err(|e| e.message)?;
        Ok(json.as_array().into_iter().flatten().map(|v| JValue::from(minijinja::value::Serde(v))).collect())
    }

    /// Runs one step (or one item of it): render, plan or confirm, try with retries.
    async fn execute(&self, step: &Step, item: Option<(usize, &JValue)>) -> StepReport {
        let id = match item {
            Some((i, _)) => format!("{}[{i}]", step.id),
            None => step.id.clone(),
        };
        let cleanup = self.is_cleanup(step);
        let token = if cleanup { &self.hard_cancel } else { &self.cancel };
        let permit = tokio::select! {
            p = self.semaphore.acquire() => p.ok(),
            _ = token.cancelled() => None,
        };
        // Made when a template needs it: most steps of a check have none.
        let ctx_once = std::sync::OnceLock::new();
        let ctx = || ctx_once.get_or_init(|| self.context(item));
        let name = match &step.name {
            Some(n) => {
                let text = n.as_str().unwrap_or_default();
                if crate::yaml::de::is_template(text) { template::render_text(text, ctx()).unwrap_or_else(|_| text.to_string()) } else { text.to_string() }
            }
            None => id.clone(),
        };
        if permit.is_none() || (self.cancel.is_cancelled() && !cleanup) {
            return self.skipped(step, id, name, "not run: the run was interrupted");
        }
        self.sink.event(&Event::StepStarted { id: &id, name: &name, kind: step.kind.name });
        let started = Instant::now();

        let rendered_owned;
        let rendered: &Node = if template::has_templates(&step.params) {
            match template::render_node(&step.params, ctx()) {
                Ok(n) => {
                    rendered_owned = n;
                    &rendered_owned
                }
                Err((span, e)) => {
                    if self.options.dry_run {
                        return self.skipped(step, id, name, format!("cannot render in a dry run (an earlier step only planned): {e}"));
                    }
                    let (l, c) = self.runbook.file.line_col(span.start);
                    let err = StepError::invalid(format!("{e} ({}:{l}:{c})", self.runbook.file.name));
                    return self.finish(step, id, name, Err(err), 0, started);
                }
            }
        } else {
            &step.params
        };
        // Debug builds only: the test of the panic hook (tests/cli/secrets.rs) panics here,
        // with the rendered parameters (secrets and all) in the message.
        #[cfg(debug_assertions)]
        if std::env::var("OPSCTL_DEBUG_PANIC_IN_STEP").is_ok_and(|s| s == id) {
            panic!("a panic asked for in step {id}, with {:?}", rendered.scalars().iter().filter_map(|s| s.as_str()).collect::<Vec<_>>());
        }
        // The loader found every kind in the registry; this cannot miss, but never panics.
        let Some(kind) = crate::registry::of(step.kind) else {
            return self.finish(step, id, name, Err(StepError::invalid(format!("unknown step kind `{}`", step.kind.name))), 0, started);
        };
        let step_ctx = StepContext {
            run: self.run_info.clone(),
            instance: self.instance.clone(),
            resources: self.resources.clone(),
            file: self.runbook.file.clone(),
            step_id: id.clone(),
            dry_run: self.options.dry_run,
        };

        if self.options.dry_run && step.effect != Effect::Read {
            let plan = tokio::select! {
                p = (kind.plan)(rendered, &step_ctx) => p,
                _ = token.cancelled() => Err(StepError::error("interrupted")),
            };
            return match plan {
                Ok(text) => {
                    let mut report = self.report(step, id, name, started, 0);
                    report.status = Status::Planned;
                    report.message = text;
                    self.sink.event(&Event::StepFinished(&report));
                    report
                }
                Err(e) => self.finish(step, id, name, Err(e), 0, started),
            };
        }

        if !self.options.dry_run && (step.controls.confirm.is_some() || step.effect == Effect::Destroy) && !self.options.yes {
            let question = match &step.controls.confirm {
                Some(n) => {
                    let text = n.as_str().unwrap_or_default();
                    template::render_text(text, ctx()).unwrap_or_else(|_| text.to_string())
                }
                None => format!("Step `{name}` ({}) is destructive.", step.kind.name),
            };
            let answer = self.confirm.interactive() && self.confirm.confirm(&format!("{question}\nRun step `{name}` on {}?", self.instance.name));
            if !answer {
                self.state().refused = true;
                let why = if self.confirm.interactive() { "declined by the operator" } else { "refused: needs confirmation; run with --yes" };
                return self.skipped(step, id, name, why);
            }
        }

        // `retry` and `timeout` written as templates: rendered for this run and checked as
        // the loader checks values written plainly.
        let retry_now;
        let retry = match &step.controls.templated_retry {
            None => step.controls.retry.as_ref(),
            Some(node) => match self.control::<crate::runbook::Retry>(node, ctx(), "retry") {
                Ok(r) => match r.problem() {
                    Some((field, why)) => {
                        let at = node.get(field).map_or(node.span, |n| n.span);
                        return self.finish(step, id, name, Err(StepError::invalid(self.positioned(why, at))), 0, started);
                    }
                    None => {
                        retry_now = r;
                        Some(&retry_now)
                    }
                },
                Err((true, e)) if self.options.dry_run => return self.skipped(step, id, name, format!("cannot render in a dry run (an earlier step only planned): {e}")),
                Err((_, e)) => return self.finish(step, id, name, Err(StepError::invalid(e)), 0, started),
            },
        };
        let timeout = match &step.controls.templated_timeout {
            None => step.controls.timeout,
            Some(node) => match self.control::<crate::duration::Duration>(node, ctx(), "timeout") {
                Ok(t) if t.std().is_zero() => return self.finish(step, id, name, Err(StepError::invalid(self.positioned(crate::duration::Duration::ZERO_TIMEOUT, node.span))), 0, started),
                Ok(t) => Some(t),
                Err((true, e)) if self.options.dry_run => return self.skipped(step, id, name, format!("cannot render in a dry run (an earlier step only planned): {e}")),
                Err((_, e)) => return self.finish(step, id, name, Err(StepError::invalid(e)), 0, started),
            },
        };
        let attempts_allowed = retry.map_or(1, |r| r.attempts.max(1));
        let mut attempt = 0;
        let result = loop {
            attempt += 1;
            let once = async {
                if !kind.machine {
                    return on_a_worker(kind, rendered.clone(), step_ctx.clone(), step.effect).await;
                }
                // The machine's own disks, memory and load: once per command and parameters,
                // however many instances the command runs on.
                let key = format!("{}:{}", kind.name, crate::yaml::de::from_node::<serde_json::Value>(rendered, crate::yaml::de::Mode::Strict).map(|v| v.to_string()).unwrap_or_default());
                let cell = self.resources.keyed::<MachineResult>(&key);
                let mut first = false;
                let result = cell.0.get_or_init(|| {
                    first = true;
                    on_a_worker(kind, rendered.clone(), step_ctx.clone(), step.effect)
                }).await.clone();
                match result {
                    Ok(mut o) if !first => {
                        o.message = format!("{} (measured once for this command)", o.message);
                        Ok(o)
                    }
                    other => other,
                }
            };
            let timed = async {
                match timeout {
                    Some(t) => tokio::time::timeout(t.std(), once)
                        .await
                        .unwrap_or_else(|_| Err(StepError::new(ErrorClass::Timeout, format!("timed out after {t}")))),
                    None => once.await,
                }
            };
            let result = tokio::select! {
                r = timed => r,
                _ = token.cancelled() => Err(StepError::new(ErrorClass::Error, format!("interrupted after {}", crate::duration::short(started.elapsed())))),
            };
            if token.is_cancelled() {
                break result;
            }
            let class = match &result {
                Ok(o) if o.verdict == Verdict::Failed => o.class.unwrap_or(ErrorClass::Failed),
                Ok(_) => break result,
                Err(e) => e.class,
            };
            let Some(retry) = retry.filter(|r| attempt < attempts_allowed && r.covers(class)) else {
                break result;
            };
            let base = retry.delay_after(attempt);
            let wait = base.mul_f64(0.8 + fastrand::f64() * 0.4);
            let reason = match &result {
                Ok(o) => o.message.clone(),
                Err(e) => e.message.clone(),
            };
            self.sink.event(&Event::StepRetrying { id: &id, attempt, of: attempts_allowed, wait, reason: &reason });
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = token.cancelled() => break result,
            }
        };
        drop(permit);
        self.finish(step, id, name, result, attempt, started)
    }

    /// A control written as a template (`retry`, `timeout`), rendered and read as its type;
    /// the error says where it was written, and whether rendering (true) or the rendered
    /// value failed.
    fn control<T: serde::de::DeserializeOwned>(&self, node: &Node, ctx: &JValue, what: &str) -> Result<T, (bool, String)> {
        let rendered = template::render_node(node, ctx).map_err(|(span, e)| (true, self.positioned(&format!("{what}: {e}"), span)))?;
        crate::yaml::de::from_node::<T>(&rendered, crate::yaml::de::Mode::Strict)
            .map_err(|e| (false, self.positioned(&format!("{what} renders a value it cannot use: {}", e.message), e.span.unwrap_or(node.span))))
    }

    /// `message (file:line:column)`.
    fn positioned(&self, message: &str, span: crate::source::Span) -> String {
        let (l, c) = self.runbook.file.line_col(span.start);
        format!("{message} ({}:{l}:{c})", self.runbook.file.name)
    }

    /// A report for a step that ran (or was planned), to be filled in.
    fn report(&self, step: &Step, id: String, name: String, started: Instant, attempts: u32) -> StepReport {
        StepReport {
            id,
            name,
            kind: step.kind.name.into(),
            effect: step.effect,
            status: Status::Failed,
            message: String::new(),
            value: None,
            threshold: None,
            error_class: None,
            attempts,
            started_at: Some(jiff::Timestamp::now() - jiff::SignedDuration::try_from(started.elapsed()).unwrap_or_default()),
            duration_ms: ms(started.elapsed()),
            outputs: serde_json::Map::new(),
        }
    }

    /// Turns a step's result into its report, applies `on_failure: warn`, emits it.
    #[allow(clippy::too_many_arguments)]
    fn finish(
        &self,
        step: &Step,
        id: String,
        name: String,
        result: Result<Outcome, StepError>,
        attempts: u32,
        started: Instant,
    ) -> StepReport {
        let mut report = self.report(step, id, name, started, attempts);
        match result {
            Ok(o) => {
                report.status = match o.verdict {
                    Verdict::Passed => Status::Passed,
                    Verdict::Warned => Status::Warned,
                    Verdict::Failed => Status::Failed,
                };
                if o.verdict == Verdict::Failed {
                    report.error_class = Some(o.class.unwrap_or(ErrorClass::Failed));
                }
                report.message = o.message;
                report.value = o.value;
                report.threshold = o.threshold;
                report.outputs = o.outputs;
            }
            Err(e) => {
                report.error_class = Some(e.class);
                report.message = e.message;
            }
        }
        if attempts > 1 {
            report.message = format!("{} (after {attempts} tries)", report.message);
        }
        if report.status == Status::Failed && step.controls.on_failure == OnFailure::Warn {
            report.status = Status::Warned;
            report.message = format!("{} (on_failure: warn)", report.message);
        }
        self.sink.event(&Event::StepFinished(&report));
        report
    }
}

/// A machine step's result, shared by the runs of one command.
#[derive(Default)]
struct MachineResult(tokio::sync::OnceCell<Result<Outcome, StepError>>);

fn ms(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

/// Runs a step's kind as a task of its own, so the steps of a parallel block use every
/// worker of the runtime: `join_all` alone polls them all on the engine's thread, where the
/// CPU work of each (parsing answers, TLS) would wait for the others'. The task is aborted
/// when the returned future is dropped (a timeout, an interrupt); a panic in a step is that
/// step's error, not the run's end.
fn on_a_worker(
    kind: &'static crate::registry::KindInfo,
    params: Node,
    ctx: StepContext,
    effect: Effect,
) -> impl std::future::Future<Output = Result<Outcome, StepError>> {
    /// Stops the step's task when the step is given up (an interrupt, a timeout). Aborting
    /// is asynchronous: the task's own drops (which may hand cleanup over) run later, on a
    /// worker, so waiting for it is handed to the run's cleanup, which is awaited before the
    /// run ends.
    struct AbortOnDrop(Option<tokio::task::JoinHandle<Result<Outcome, StepError>>>);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            if let Some(task) = self.0.take() {
                task.abort();
                crate::helpers::cleanup::spawn(async move {
                    let _ = task.await;
                });
            }
        }
    }
    let task = tokio::spawn(async move { (kind.run)(&params, &ctx, effect).await });
    let mut guard = AbortOnDrop(Some(task));
    async move {
        let joined = match guard.0.as_mut() {
            Some(task) => task.await,
            None => return Err(StepError::error("the step was stopped")),
        };
        let _ = guard.0.take();
        match joined {
            Ok(result) => result,
            Err(e) if e.is_panic() => {
                let payload = e.into_panic();
                let why = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "no message".into());
                Err(StepError::error(format!("the step failed unexpectedly (a bug in opsctl: {why}); please report it")))
            }
            Err(_) => Err(StepError::error("the step was stopped")),
        }
    }
}
