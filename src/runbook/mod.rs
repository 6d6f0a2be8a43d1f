//! Runbooks: the YAML language, loaded into checked types.
//!
//! ```yaml
//! name: restore
//! summary: Restore the instance database from a verified backup
//! params:
//!   backup: { type: string, required: true }
//! steps:
//!   - id: healthy
//!     http.check: { url: "{{ instance.http.base_url }}/health", expect_status: 200 }
//!     retry: { attempts: 10, delay: 3s, backoff: 1.5 }
//!   - parallel:
//!       - host.disk: { path: / }
//!       - host.memory: {}
//! ```
//!
//! Loading ([`Runbook::load`]) parses the file, finds each step's kind (the one key that is
//! not a control), checks its parameters against the kind's struct with templates as
//! wildcards, and checks ids. [`check::references`] then resolves every `{{ }}` reference
//! against the parameters, the steps before it and the instance. Nothing runs until both
//! pass; the engine only accepts a [`Runbook`] that has.

pub mod check;
pub mod param;

use std::collections::HashMap;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::diagnostic::{Diagnostic, did_you_mean};
use crate::duration::Duration;
use crate::registry;
use crate::source::{SourceFile, Span};
use crate::vocab::{Effect, ErrorClass, KindSpec};
use crate::yaml::de::{Mode, from_node};
use crate::yaml::{self, Node};

pub use param::{Param, ParamDecl, ParamType, ParamValue};

/// Keys of a step that are controls, not its action.
pub const CONTROLS: &[&str] = &["id", "name", "needs", "when", "retry", "timeout", "on_failure", "on_cancel", "confirm", "always", "for_each"];
const TOP_LEVEL: &[&str] = &["name", "summary", "description", "requires", "params", "steps"];

/// A loaded, checked runbook.
#[derive(Debug)]
pub struct Runbook {
    pub name: String,
    pub summary: Option<String>,
    pub description: Option<String>,
    /// What an instance must have for the runbook to apply to it (checked before anything
    /// runs; an instance without it is refused, exit 2).
    pub requires: Vec<Requirement>,
    pub params: Vec<Param>,
    pub blocks: Vec<Block>,
    pub file: Arc<SourceFile>,
    /// Where `params:` is (or the top of the file).
    pub params_span: Span,
}

/// One entry of `requires:`: `{ all: [backups], any: [postgres, dynamodb, redis], when: … }`.
/// Names are backends as `opsctl list instances` shows them ([`crate::instance::BACKEND_NAMES`]).
#[derive(Debug, Clone)]
pub struct Requirement {
    /// The instance has every one of these.
    pub all: Vec<String>,
    /// The instance has at least one of these.
    pub any: Vec<String>,
    /// Only when this condition (on `params`, `vars` and `instance`) holds.
    pub when: Option<Node>,
    pub span: Span,
}

impl Requirement {
    /// What the instance lacks, in words, or `None` when it has what is required.
    pub fn unmet(&self, has: &[&str]) -> Option<String> {
        let missing: Vec<&str> = self.all.iter().map(String::as_str).filter(|n| !has.contains(n)).collect();
        let any_missing = !self.any.is_empty() && !self.any.iter().any(|n| has.contains(&n.as_str()));
        let mut parts = Vec::new();
        if !missing.is_empty() {
            parts.push(missing.iter().map(|n| describe_backend(n)).collect::<Vec<_>>().join(" and "));
        }
        if any_missing {
            parts.push(format!("one of {}", self.any.iter().map(|n| describe_backend(n)).collect::<Vec<_>>().join(", ")));
        }
        if parts.is_empty() { None } else { Some(parts.join(" and ")) }
    }
}

/// `postgres` → "postgres (`postgres:`)", so the refusal says what to add.
fn describe_backend(name: &str) -> String {
    match name {
        "backups" => "backups (a backup store, `backups:`)".into(),
        "s3" => "s3 (`backups.s3:`)".into(),
        "dynamodb" => "dynamodb (`dynamodb.tables:`)".into(),
        "elb" => "elb (`elb.target_groups:`)".into(),
        "rds" => "rds (`rds.instances:`)".into(),
        "cloudwatch_logs" => "cloudwatch_logs (`cloudwatch_logs.groups:`)".into(),
        "alarms" => "alarms (`aws.alarm_prefix:`)".into(),
        other => format!("{other} (`{other}:`)"),
    }
}

/// A top-level entry of `steps:`.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // a runbook holds tens of blocks; boxing buys nothing
pub enum Block {
    Step(Step),
    Parallel(Parallel),
}

/// `- parallel: [steps]`: run concurrently, bounded by `--parallel`.
#[derive(Debug)]
pub struct Parallel {
    pub name: Option<String>,
    pub steps: Vec<Step>,
    pub span: Span,
}

/// One step: a kind, its parameters (as YAML, rendered at run time) and its controls.
#[derive(Debug)]
pub struct Step {
    /// The `id`, or the step's position (`3`, `2.1`) when it has none.
    pub id: String,
    /// Where the `id` is written, when it is.
    pub id_span: Option<Span>,
    /// A display name; may be templated (e.g. with `item` in a `for_each` step).
    pub name: Option<Node>,
    pub kind: &'static KindSpec,
    /// The action key.
    pub kind_span: Span,
    pub params: Node,
    pub effect: Effect,
    pub controls: Controls,
    /// The whole step.
    pub span: Span,
}

/// The common controls of a step.
#[derive(Debug, Default)]
pub struct Controls {
    /// Backends the instance must have (`needs: redis`); on an instance without them the
    /// step is not run and not listed — the report names them once as not configured.
    pub needs: Vec<String>,
    /// A condition; the step is skipped when it is false.
    pub when: Option<Node>,
    pub retry: Option<Retry>,
    pub timeout: Option<Duration>,
    /// `retry` written with templates (`attempts: "{{ params.attempts }}"`): rendered and
    /// checked when the step runs; `retry` is then `None`.
    pub templated_retry: Option<Node>,
    /// `timeout` written as a template: rendered and checked when the step runs.
    pub templated_timeout: Option<Node>,
    pub on_failure: OnFailure,
    /// Where `on_failure` was written, so an error about a step it names points at the name.
    pub on_failure_node: Option<Node>,
    /// Later steps to run when the run is interrupted while this step is in flight
    /// (cleanup, within the grace period); they run only then.
    pub on_cancel: Vec<String>,
    /// Where `on_cancel` was written.
    pub on_cancel_node: Option<Node>,
    /// Ask before running; the text is shown (templated).
    pub confirm: Option<Node>,
    /// Run even when an earlier step failed or the run was interrupted (cleanup).
    pub always: bool,
    /// Run the step once per item: a list, or a template that renders one.
    pub for_each: Option<Node>,
}

/// `retry: { attempts: 10, delay: 3s, backoff: 1.5, max_delay: 30s, on: [timeout, http_5xx] }`
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Retry {
    /// Tries in all, the first included.
    pub attempts: u32,
    /// Wait before the second try.
    #[serde(default = "default_delay")]
    pub delay: Duration,
    /// Each wait is this many times the previous one.
    #[serde(default = "default_backoff")]
    pub backoff: f64,
    /// The longest wait.
    #[serde(default = "default_max_delay")]
    pub max_delay: Duration,
    /// Which failures are retried. Default: any.
    #[serde(default = "default_on")]
    pub on: Vec<ErrorClass>,
}

fn default_delay() -> Duration {
    Duration::from_secs(1)
}
fn default_backoff() -> f64 {
    2.0
}
fn default_max_delay() -> Duration {
    Duration::from_secs(60)
}
fn default_on() -> Vec<ErrorClass> {
    vec![ErrorClass::Any]
}

impl Retry {
    /// Its fields, as written.
    pub const FIELDS: &'static [&'static str] = &["attempts", "delay", "backoff", "max_delay", "on"];

    /// What is wrong with values that parse: the field and why.
    pub fn problem(&self) -> Option<(&'static str, &'static str)> {
        if self.attempts == 0 {
            return Some(("attempts", "`attempts` counts every try, the first included; it must be at least 1"));
        }
        if !(self.backoff >= 1.0 && self.backoff.is_finite()) {
            return Some(("backoff", "`backoff` multiplies each wait; it must be at least 1"));
        }
        None
    }

    /// Whether a failure of `class` is retried.
    pub fn covers(&self, class: ErrorClass) -> bool {
        class != ErrorClass::Invalid && self.on.iter().any(|c| *c == ErrorClass::Any || *c == class)
    }

    /// The wait before try `n + 1` (`n` ≥ 1), without jitter.
    pub fn delay_after(&self, n: u32) -> std::time::Duration {
        let base = self.delay.std().as_secs_f64() * self.backoff.powi(n.saturating_sub(1) as i32);
        std::time::Duration::from_secs_f64(base.min(self.max_delay.std().as_secs_f64()).max(0.0))
    }
}

/// What a failure of this step does to the run.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// Stop: later steps are skipped, except `always` ones. The default.
    #[default]
    Abort,
    /// Record the failure and go on.
    Continue,
    /// Record it as a warning and go on.
    Warn,
    /// Run these later steps now (e.g. a rollback), then stop.
    Run(Vec<String>),
}

/// `on_cancel: { run: [release, restore_traffic] }`: later steps that undo a step when the
/// run is interrupted while it is in flight (AWS Systems Manager's `onCancel`). They run
/// after it stops, bounded by the grace period (`--grace`), and only then.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OnCancel {
    /// Step ids, each after this step.
    pub run: Vec<String>,
}

impl Step {
    /// The name when it is plain text, else the id (a templated name is rendered per run).
    pub fn label(&self) -> &str {
        self.name.as_ref().and_then(Node::as_str).filter(|n| !crate::yaml::de::is_template(n)).unwrap_or(&self.id)
    }
}

impl Runbook {
    /// Every step, parallel blocks flattened, in order.
    pub fn steps(&self) -> impl Iterator<Item = &Step> {
        self.blocks.iter().flat_map(|b| match b {
            Block::Step(s) => std::slice::from_ref(s).iter(),
            Block::Parallel(p) => p.steps.iter(),
        })
    }

    /// The greatest effect of any step.
    pub fn effect(&self) -> Effect {
        self.steps().map(|s| s.effect).max().unwrap_or(Effect::Read)
    }

    pub fn param(&self, name: &str) -> Option<&Param> {
        self.params.iter().find(|p| p.name == name)
    }

    /// Reads and loads a runbook file.
    pub fn read(path: &std::path::Path) -> Result<Runbook, Vec<Diagnostic>> {
        let file = yaml::read_source(path, "runbook").map_err(|d| vec![d])?;
        Runbook::load(file)
    }

    /// Parses and checks a runbook (everything but references; see [`check`]).
    pub fn load(file: Arc<SourceFile>) -> Result<Runbook, Vec<Diagnostic>> {
        let root = yaml::parse(&file).map_err(|d| vec![d])?;
        Loader { file: &file, errors: Vec::new() }.runbook(&root)
    }
}

struct Loader<'f> {
    file: &'f Arc<SourceFile>,
    errors: Vec<Diagnostic>,
}

/// The entries of a mapping, taken one key at a time; what is left over is unknown.
struct Fields<'a> {
    entries: &'a [(Node, Node)],
    taken: Vec<bool>,
}

impl<'a> Fields<'a> {
    fn new(entries: &'a [(Node, Node)]) -> Fields<'a> {
        Fields { entries, taken: vec![false; entries.len()] }
    }

    fn take(&mut self, key: &str) -> Option<&'a Node> {
        let i = self.entries.iter().position(|(k, _)| k.as_str() == Some(key))?;
        self.taken[i] = true;
        Some(&self.entries[i].1)
    }

    fn rest(&self) -> Vec<&'a (Node, Node)> {
        self.entries.iter().zip(&self.taken).filter(|(_, t)| !**t).map(|(e, _)| e).collect()
    }
}

impl Loader<'_> {
    fn error(&mut self, d: Diagnostic) {
        self.errors.push(d);
    }

    fn at(&self, message: impl Into<String>, span: Span) -> Diagnostic {
        Diagnostic::new(message).at(self.file, span)
    }

    /// Deserializes a literal (not templated) value, reporting what is wrong with it.
    fn typed<T: serde::de::DeserializeOwned>(&mut self, node: &Node, help: Option<&str>) -> Option<T> {
        match from_node::<T>(node, Mode::Strict) {
            Ok(v) => Some(v),
            Err(e) => {
                let mut d = e.diagnostic(self.file, node.span);
                if let Some(h) = help {
                    d = d.help(h);
                }
                self.error(d);
                None
            }
        }
    }

    fn string(&mut self, node: &Node, what: &str) -> Option<String> {
        self.typed(node, Some(&format!("`{what}` is text")))
    }

    fn runbook(mut self, root: &Node) -> Result<Runbook, Vec<Diagnostic>> {
        if root.is_null() {
            return Err(vec![Diagnostic::new(format!("runbook {} is empty", self.file.name))
                .help("a runbook needs at least `name:` and `steps:`; see `opsctl schema runbook`")]);
        }
        let Some(entries) = root.as_map() else {
            return Err(vec![self.at(format!("a runbook is a mapping with `name:` and `steps:`, not {}", root.describe()), root.span)]);
        };
        let mut fields = Fields::new(entries);
        let name = match fields.take("name") {
            Some(n) => self.string(n, "name").unwrap_or_default(),
            None => {
                self.error(self.at("missing required field `name`", root.span).help("add `name: <runbook name>` at the top"));
                String::new()
            }
        };
        let summary = fields.take("summary").and_then(|n| self.string(n, "summary"));
        let description = fields.take("description").and_then(|n| self.string(n, "description"));
        let requires = fields.take("requires").map(|n| self.requires(n)).unwrap_or_default();
        let params_node = fields.take("params");
        let params = params_node.map(|n| self.params(n)).unwrap_or_default();
        let params_span = params_node.map_or(root.span, |n| n.span);
        let steps_node = fields.take("steps");
        for (k, _) in fields.rest() {
            let key = k.as_str().unwrap_or_default();
            let mut d = self.at(format!("unknown field `{key}` in a runbook"), k.span);
            d = match did_you_mean(key, TOP_LEVEL.iter().copied()) {
                Some(s) => d.label(format!("did you mean `{s}`?")),
                None => d.label(format!("expected one of {}", crate::yaml::de::quoted_list(TOP_LEVEL))),
            };
            if registry::lookup(key).is_some() {
                d = d.help("steps go in a list under `steps:`");
            }
            self.error(d);
        }
        let mut blocks = Vec::new();
        match steps_node {
            None => self.error(self.at("missing required field `steps`", root.span).help("add `steps:` with a list of steps")),
            Some(node) => match node.as_seq() {
                Some([]) => self.error(self.at("`steps` is empty", node.span).help("a runbook needs at least one step")),
                Some(items) => {
                    for (i, item) in items.iter().enumerate() {
                        if let Some(b) = self.block(item, i + 1) {
                            blocks.push(b);
                        }
                    }
                }
                None => self.error(self.at(format!("`steps` must be a list of steps, not {}", node.describe()), node.span)),
            },
        }
        let runbook = Runbook { name, summary, description, requires, params, blocks, file: self.file.clone(), params_span };
        self.check_ids(&runbook);
        if self.errors.is_empty() { Ok(runbook) } else { Err(self.errors) }
    }

    /// `requires:` — one `{ all, any, when }` mapping or a list of them.
    fn requires(&mut self, node: &Node) -> Vec<Requirement> {
        let items: Vec<&Node> = match (&node.value, node.as_seq()) {
            (_, Some(items)) => items.iter().collect(),
            (crate::yaml::Value::Map(_), _) => vec![node],
            _ => {
                self.error(self.at(format!("`requires` takes `{{ all: [...], any: [...], when: ... }}` or a list of them, not {}", node.describe()), node.span));
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for item in items {
            let Some(entries) = item.as_map() else {
                self.error(self.at(format!("an entry of `requires` is a mapping with `all:` and/or `any:`, not {}", item.describe()), item.span)
                    .help("e.g. `requires: { any: [kubernetes, compose, ecs] }`"));
                continue;
            };
            let mut fields = Fields::new(entries);
            let (all_node, any_node) = (fields.take("all"), fields.take("any"));
            let all = all_node.map(|n| self.backend_names(n, "all")).unwrap_or_default();
            let any = any_node.map(|n| self.backend_names(n, "any")).unwrap_or_default();
            let when = fields.take("when").and_then(|n| self.condition_node(n, "when"));
            for (k, _) in fields.rest() {
                self.error(self.at(format!("unknown field `{}` in `requires`", k.as_str().unwrap_or_default()), k.span).label("expected `all`, `any` or `when`"));
            }
            if all_node.is_none() && any_node.is_none() {
                self.error(self.at("this requirement names no backend", item.span).help("add `all: [...]` or `any: [...]`"));
                continue;
            }
            if all.is_empty() && any.is_empty() {
                continue; // its names were reported
            }
            out.push(Requirement { all, any, when, span: item.span });
        }
        out
    }

    /// A backend name or a list of them, each one of [`crate::instance::BACKEND_NAMES`].
    fn backend_names(&mut self, node: &Node, what: &str) -> Vec<String> {
        let items: Vec<&Node> = match (node.as_str(), node.as_seq()) {
            (Some(_), _) => vec![node],
            (_, Some(items)) => items.iter().collect(),
            _ => {
                self.error(self.at(format!("`{what}` takes a backend name or a list of them, not {}", node.describe()), node.span));
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for n in items {
            let Some(name) = n.as_str() else {
                self.error(self.at(format!("a backend name is text, not {}", n.describe()), n.span));
                continue;
            };
            if crate::instance::BACKEND_NAMES.contains(&name) {
                out.push(name.to_string());
            } else {
                let mut d = self.at(format!("unknown backend `{name}`"), n.span);
                d = match did_you_mean(name, crate::instance::BACKEND_NAMES.iter().copied()) {
                    Some(s) => d.label(format!("did you mean `{s}`?")),
                    None => d.label(format!("expected one of {}", crate::yaml::de::quoted_list(crate::instance::BACKEND_NAMES))),
                };
                self.error(d);
            }
        }
        out
    }

    fn params(&mut self, node: &Node) -> Vec<Param> {
        let Some(entries) = node.as_map() else {
            if !node.is_null() {
                self.error(self.at(format!("`params` must be a mapping of name → declaration, not {}", node.describe()), node.span));
            }
            return Vec::new();
        };
        let mut out = Vec::new();
        for (k, v) in entries {
            let name = k.as_str().unwrap_or_default().to_string();
            if !is_identifier(&name) {
                self.error(self.at(format!("parameter name `{name}` must be letters, digits and underscores"), k.span)
                    .help("templates read it as `params.NAME`"));
                continue;
            }
            if let Some(decl) = self.typed::<ParamDecl>(v, None) {
                match Param::new(name, decl, k.span, v, self.file) {
                    Ok(p) => out.push(p),
                    Err(d) => self.error(d),
                }
            }
        }
        out
    }

    fn block(&mut self, node: &Node, position: usize) -> Option<Block> {
        let entries = self.step_entries(node)?;
        if let Some(i) = entries.iter().position(|(k, _)| k.as_str() == Some("parallel")) {
            let mut fields = Fields::new(entries);
            let list = fields.take("parallel").expect("found above");
            let name = fields.take("name").and_then(|n| self.string(n, "name"));
            for (k, _) in fields.rest() {
                let key = k.as_str().unwrap_or_default();
                self.error(self.at(format!("`{key}` cannot be set on a parallel block"), k.span)
                    .help("a parallel block takes `parallel:` (its steps) and an optional `name:`; set controls on the steps inside"));
            }
            let Some(items) = list.as_seq() else {
                self.error(self.at(format!("`parallel` holds a list of steps, not {}", list.describe()), entries[i].1.span));
                return None;
            };
            if items.is_empty() {
                self.error(self.at("`parallel` is empty", list.span));
            }
            let steps = items
                .iter()
                .enumerate()
                .filter_map(|(j, item)| {
                    if item.get("parallel").is_some() {
                        self.error(self.at("parallel blocks cannot be nested", item.span));
                        return None;
                    }
                    self.step(item, format!("{position}.{}", j + 1))
                })
                .collect();
            return Some(Block::Parallel(Parallel { name, steps, span: node.span }));
        }
        self.step(node, position.to_string()).map(Block::Step)
    }

    fn step_entries<'n>(&mut self, node: &'n Node) -> Option<&'n [(Node, Node)]> {
        match node.as_map() {
            Some(e) if !e.is_empty() => Some(e),
            _ => {
                let mut d = self.at(format!("a step is a mapping with one action such as `http.check: {{…}}`, not {}", node.describe()), node.span);
                if let Some(word) = node.as_str()
                    && let Some(k) = registry::lookup(word).or_else(|| did_you_mean(word, registry::KINDS.iter().map(|k| k.name)).and_then(registry::lookup)) {
                        d = d.help(format!("write `- {}: {{}}`", k.name));
                    }
                self.error(d);
                None
            }
        }
    }

    fn step(&mut self, node: &Node, position: String) -> Option<Step> {
        let entries = self.step_entries(node)?;
        let mut fields = Fields::new(entries);
        let mut ok = true;

        // The action: the keys that are not controls.
        let candidates: Vec<&(Node, Node)> = entries.iter().filter(|(k, _)| !CONTROLS.contains(&k.as_str().unwrap_or(""))).collect();
        let known: Vec<&(Node, Node)> = candidates.iter().copied().filter(|(k, _)| registry::lookup(k.as_str().unwrap_or("")).is_some()).collect();
        let action = match (known.len(), candidates.len()) {
            (1, _) => Some(known[0]),
            (0, 0) => {
                self.error(self.at("this step has no action", node.span)
                    .label("expected one key naming a step kind, such as `http.check`")
                    .help(format!("step kinds: {}", registry::KINDS.iter().map(|k| k.name).collect::<Vec<_>>().join(", "))));
                None
            }
            (0, _) => {
                for (k, _) in &candidates {
                    let key = k.as_str().unwrap_or_default();
                    let all = registry::KINDS.iter().map(|k| k.name).chain(CONTROLS.iter().copied());
                    let mut d = self.at(format!("unknown step kind `{key}`"), k.span);
                    d = match did_you_mean(key, all) {
                        Some(s) => d.label(format!("did you mean `{s}`?")),
                        None => d.help("run `opsctl list kinds` to see every step kind"),
                    };
                    self.error(d);
                }
                None
            }
            (_, _) => {
                let names: Vec<String> = known.iter().map(|(k, _)| format!("`{}`", k.as_str().unwrap_or(""))).collect();
                self.error(self.at(format!("a step has exactly one action; this one has {}", names.join(" and ")), known[1].0.span)
                    .help("split it into separate steps"));
                None
            }
        };
        // Keys that are neither a control nor the action.
        for (k, _) in &candidates {
            if action.is_some_and(|(a, _)| std::ptr::eq(a, k)) {
                continue;
            }
            if action.is_none() {
                break; // already reported above
            }
            let key = k.as_str().unwrap_or_default();
            let mut d = self.at(format!("unknown field `{key}` in a step"), k.span);
            d = match did_you_mean(key, CONTROLS.iter().copied()) {
                Some(s) => d.label(format!("did you mean `{s}`?")),
                None if registry::lookup(key).is_none() && key.contains('.') => {
                    d.label("not a step kind; a step has exactly one action")
                }
                None => d.label(format!("step controls are {}", crate::yaml::de::quoted_list(CONTROLS))),
            };
            self.error(d);
            ok = false;
        }

        let id_node = fields.take("id");
        let id = match id_node.map(|n| (n, self.string(n, "id"))) {
            Some((n, Some(id))) => {
                if !is_identifier(&id) {
                    self.error(self.at(format!("step id `{id}` must be letters, digits and underscores"), n.span)
                        .help(format!("templates read outputs as `steps.{id}.…`; try `{}`", id.replace(['-', '.', ' '], "_"))));
                }
                id
            }
            _ => position.clone(),
        };
        let name = fields.take("name").filter(|n| self.string(n, "name").is_some()).cloned();
        let mut controls = Controls::default();
        if let Some(n) = fields.take("needs") {
            controls.needs = self.backend_names(n, "needs");
        }
        if let Some(n) = fields.take("when") {
            controls.when = self.condition_node(n, "when");
        }
        if let Some(n) = fields.take("retry") {
            if crate::template::has_templates(n) {
                // Rendered when the step runs; what can be known now is which fields it has.
                match &n.value {
                    crate::yaml::Value::Map(entries) => {
                        for (k, _) in entries {
                            let key = k.as_str().unwrap_or_default();
                            if !Retry::FIELDS.contains(&key) {
                                let d = self.at(format!("`retry` has no field `{key}`"), k.span).help(format!("its fields: {}", Retry::FIELDS.join(", ")));
                                self.error(d);
                            }
                        }
                        controls.templated_retry = Some(n.clone());
                    }
                    _ => self.error(self.at("`retry` is a mapping, e.g. `{ attempts: 3, delay: 2s }`; templates go in its values", n.span)),
                }
            } else {
                match self.typed::<Retry>(n, None) {
                    Some(r) => match r.problem() {
                        Some((field, why)) => self.error(self.at(why, n.get(field).map_or(n.span, |a| a.span))),
                        None => controls.retry = Some(r),
                    },
                    None => {}
                }
            }
        }
        if let Some(n) = fields.take("timeout") {
            if n.as_str().is_some_and(crate::yaml::de::is_template) {
                controls.templated_timeout = Some(n.clone());
            } else {
                match self.typed::<Duration>(n, None) {
                    Some(d) if d.std().is_zero() => self.error(self.at(Duration::ZERO_TIMEOUT, n.span)),
                    d => controls.timeout = d,
                }
            }
        }
        if let Some(n) = fields.take("on_failure") {
            let help = "on_failure is `abort`, `continue`, `warn` or `{ run: [step ids] }`";
            controls.on_failure = self.typed::<OnFailure>(n, Some(help)).unwrap_or_default();
            controls.on_failure_node = Some(n.clone());
        }
        if let Some(n) = fields.take("on_cancel") {
            let help = "on_cancel is `{ run: [step ids] }`: later steps that undo this one when the run is interrupted while it runs";
            controls.on_cancel = self.typed::<OnCancel>(n, Some(help)).map(|c| c.run).unwrap_or_default();
            controls.on_cancel_node = Some(n.clone());
        }
        if let Some(n) = fields.take("confirm")
            && self.string(n, "confirm").is_some() {
                controls.confirm = Some(n.clone());
            }
        if let Some(n) = fields.take("always") {
            controls.always = self.typed::<bool>(n, None).unwrap_or_default();
        }
        if let Some(n) = fields.take("for_each") {
            let is_template = n.as_str().is_some_and(crate::yaml::de::is_template);
            if n.as_seq().is_some() || is_template {
                controls.for_each = Some(n.clone());
            } else {
                self.error(self.at(format!("`for_each` takes a list or a `{{{{ }}}}` template that renders one, not {}", n.describe()), n.span));
            }
        }

        let (kind_node, params) = action?;
        let kind = &registry::lookup(kind_node.as_str().unwrap_or_default())?.spec;
        let effect = match (kind.validate)(params) {
            Ok(effect) => effect,
            Err(e) => {
                let mut d = e.diagnostic(self.file, params.span);
                if d.help.is_empty() {
                    let (required, optional) = registry::fields(kind);
                    let mut takes: Vec<String> = required.iter().map(|f| format!("{f} (required)")).collect();
                    takes.extend(optional);
                    d = d.help(format!("`{}` takes: {}", kind.name, takes.join(", ")));
                }
                self.error(d);
                return None;
            }
        };
        if let Some((field, n)) = kind
            .literal
            .iter()
            .find_map(|f| params.get(f).filter(|n| n.as_str().is_some_and(crate::yaml::de::is_template)).map(|n| (f, n)))
        {
            self.error(self.at(format!("`{field}` must be written literally: opsctl decides what a dry run may do before anything is rendered"), n.span));
            return None;
        }
        if !ok {
            return None;
        }
        Some(Step { id, id_span: id_node.map(|n| n.span), name, kind, kind_span: kind_node.span, params: params.clone(), effect, controls, span: node.span })
    }

    /// `when:` accepts a boolean, a `{{ }}` template or a bare expression.
    fn condition_node(&mut self, n: &Node, what: &str) -> Option<Node> {
        match n.as_str() {
            Some(_) => Some(n.clone()),
            None => {
                self.error(self.at(format!("`{what}` takes a condition such as \"{{{{ steps.x.failed }}}}\", not {}", n.describe()), n.span));
                None
            }
        }
    }

    fn check_ids(&mut self, runbook: &Runbook) {
        let mut seen: HashMap<&str, Span> = HashMap::new();
        for step in runbook.steps() {
            let Some(span) = step.id_span else { continue };
            if let Some(first) = seen.get(step.id.as_str()) {
                let (line, _) = self.file.line_col(first.start);
                self.error(self.at(format!("duplicate step id `{}`", step.id), span)
                    .label(format!("`{}` is already the id of the step on line {line}", step.id)));
            } else {
                seen.insert(&step.id, span);
            }
        }
    }
}

/// Letters, digits and underscores, not starting with a digit: what `steps.X` can read.
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_') && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Runbook, Vec<Diagnostic>> {
        Runbook::load(SourceFile::new("r.yaml", text))
    }

    fn first_error(text: &str) -> Diagnostic {
        load(text).unwrap_err().remove(0)
    }

    #[test]
    fn loads_steps_parallel_blocks_and_controls() {
        let rb = load(
            "name: t\nsteps:\n  - id: a\n    sleep: { duration: 1s }\n    retry: { attempts: 3, delay: 1s }\n    timeout: 5s\n  - parallel:\n      - host.disk: {}\n      - host.memory: {}\n",
        )
        .unwrap();
        assert_eq!(rb.blocks.len(), 2);
        let ids: Vec<_> = rb.steps().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["a", "2.1", "2.2"]);
        let a = rb.steps().next().unwrap();
        assert_eq!(a.controls.retry.as_ref().unwrap().attempts, 3);
        assert_eq!(a.controls.timeout, Some(Duration::from_secs(5)));
    }

    #[test]
    fn unknown_kind_suggests_the_closest() {
        let d = first_error("name: t\nsteps:\n  - http.chek: { url: x }\n");
        assert_eq!(d.message, "unknown step kind `http.chek`");
        assert_eq!(d.position().unwrap(), "r.yaml:3:5");
        assert_eq!(d.label.as_deref(), Some("did you mean `http.check`?"));
    }

    #[test]
    fn misspelt_controls_are_caught() {
        let d = first_error("name: t\nsteps:\n  - sleep: { duration: 1s }\n    retyr: { attempts: 2 }\n");
        assert_eq!(d.message, "unknown field `retyr` in a step");
        assert_eq!(d.label.as_deref(), Some("did you mean `retry`?"));
    }

    #[test]
    fn duplicate_ids_point_at_the_second() {
        let d = first_error("name: t\nsteps:\n  - id: a\n    sleep: { duration: 1s }\n  - id: a\n    sleep: { duration: 1s }\n");
        assert_eq!(d.message, "duplicate step id `a`");
        assert_eq!(d.position().unwrap(), "r.yaml:5:9");
    }

    #[test]
    fn retry_backoff_grows_and_is_capped() {
        let r = Retry { attempts: 5, delay: Duration::from_secs(1), backoff: 2.0, max_delay: Duration::from_secs(3), on: vec![ErrorClass::Timeout] };
        assert_eq!(r.delay_after(1).as_secs(), 1);
        assert_eq!(r.delay_after(2).as_secs(), 2);
        assert_eq!(r.delay_after(3).as_secs(), 3);
        assert!(r.covers(ErrorClass::Timeout));
        assert!(!r.covers(ErrorClass::Http5xx));
        let any = Retry { on: vec![ErrorClass::Any], ..r };
        assert!(any.covers(ErrorClass::Http5xx));
        assert!(!any.covers(ErrorClass::Invalid));
    }
}
