//! Checks that need more than the runbook file: every `{{ }}` reference resolved, and the
//! command line's `-p` values bound to the declared parameters.
//!
//! This is what makes a typo in `steps.bakup.id` an error before anything runs, not at step 7
//! of a restore at 3 a.m.

use std::collections::HashMap;

use indexmap::IndexMap;

use super::{Block, Runbook, Step};
use crate::diagnostic::{Diagnostic, did_you_mean};
use crate::instance::Instance;
use crate::source::Span;
use crate::template;
use crate::vocab::KindSpec;
use crate::yaml::de::is_template;
use crate::yaml::Node;

use super::ParamValue;

/// Fields of `run` in templates.
pub const RUN_FIELDS: &[&str] = &["id", "runbook", "instance", "dry_run", "started_at", "user", "host", "failed", "failed_steps"];

/// Names minijinja provides that templates may call.
const BUILTINS: &[&str] = &["range", "dict", "namespace", "debug", "lipsum", "cycler", "joiner", "loop"];

/// Where a step sits, to decide what it may read.
#[derive(Clone, Copy)]
struct Place {
    block: usize,
    parallel: bool,
    kind: &'static KindSpec,
}

/// Resolves every template reference in `runbook`. With an instance, `vars.*` and
/// `instance.*` are checked against its settings; without one (plain `opsctl validate`),
/// only their shape is.
pub fn references(runbook: &Runbook, instance: Option<&Instance>) -> Vec<Diagnostic> {
    let mut places: HashMap<&str, Place> = HashMap::new();
    for (block, b) in runbook.blocks.iter().enumerate() {
        match b {
            Block::Step(s) => {
                places.insert(&s.id, Place { block, parallel: false, kind: s.kind });
            }
            Block::Parallel(p) => {
                for s in &p.steps {
                    places.insert(&s.id, Place { block, parallel: true, kind: s.kind });
                }
            }
        }
    }
    let instance_value = instance.map(Instance::template_json);
    let mut checker = Checker { runbook, places, instance, instance_value, errors: Vec::new() };
    for (block, b) in runbook.blocks.iter().enumerate() {
        let steps = match b {
            Block::Step(s) => std::slice::from_ref(s),
            Block::Parallel(p) => &p.steps,
        };
        for step in steps {
            checker.step(step, block);
        }
    }
    checker.errors
}

struct Checker<'a> {
    runbook: &'a Runbook,
    places: HashMap<&'a str, Place>,
    instance: Option<&'a Instance>,
    instance_value: Option<std::sync::Arc<serde_json::Value>>,
    errors: Vec<Diagnostic>,
}

impl Checker<'_> {
    /// A secret parameter rendered into a parameter that becomes a program's command line
    /// (`KindSpec::argv`) is refused where the template names it.
    fn secrets_on_command_line(&mut self, step: &Step) {
        for field in step.kind.argv {
            let Some(node) = step.params.get(field) else { continue };
            for s in node.scalars() {
                let Some(text) = s.as_str().filter(|t| is_template(t)) else { continue };
                let Ok(refs) = template::references(text, false) else { continue };
                for path in refs.iter() {
                    let Some(name) = path.strip_prefix("params.").map(|r| r.split('.').next().unwrap_or(r)) else { continue };
                    if self.runbook.params.iter().any(|p| p.name == name && p.decl.ty == super::ParamType::Secret) {
                        self.errors.push(
                            Diagnostic::new(format!("secret parameter `{name}` would be on the command line (`{field}`) of step `{}`", step.id))
                                .at(&self.runbook.file, s.span)
                                .label("anyone on the host can read a command line (ps, /proc/PID/cmdline)")
                                .help(format!(
                                    "pass it through the program's environment instead: `env: {{ {}: \"{{{{ params.{name} }}}}\" }}` and ${} in the command (in a pod, from a Kubernetes Secret)",
                                    name.to_uppercase(),
                                    name.to_uppercase()
                                )),
                        );
                    }
                }
            }
        }
    }

    fn step(&mut self, step: &Step, block: usize) {
        let has_item = step.controls.for_each.is_some();
        let mut texts: Vec<(&Node, bool, bool)> = Vec::new(); // (node, bare expression allowed, item in scope)
        if let Some(n) = &step.name {
            texts.push((n, false, has_item));
        }
        if let Some(n) = &step.controls.when {
            texts.push((n, true, has_item));
        }
        if let Some(n) = &step.controls.confirm {
            texts.push((n, false, has_item));
        }
        if let Some(n) = &step.controls.for_each {
            for s in n.scalars() {
                texts.push((s, false, false));
            }
        }
        for s in step.params.scalars() {
            texts.push((s, false, has_item));
        }
        for n in [&step.controls.templated_retry, &step.controls.templated_timeout].into_iter().flatten() {
            for s in n.scalars() {
                texts.push((s, false, has_item));
            }
        }
        for (node, bare, item) in texts {
            let Some(text) = node.as_str() else { continue };
            if !bare && !is_template(text) {
                continue;
            }
            match template::references(text, bare) {
                Err(e) => self.errors.push(
                    Diagnostic::new(format!("invalid template: {e}")).at(&self.runbook.file, node.span).label(if e.starts_with("invalid operation") { "opsctl templates do not allow this" } else { "this template does not parse" }),
                ),
                Ok(refs) => {
                    for path in refs.iter() {
                        self.reference(step, block, node, path, item);
                    }
                }
            }
        }
        self.secrets_on_command_line(step);
        if let super::OnFailure::Run(ids) = &step.controls.on_failure {
            self.later_steps(step, block, "on_failure", ids, step.controls.on_failure_node.as_ref(), "on_failure can run steps later in the runbook (e.g. a rollback)");
        }
        let help = "on_cancel runs steps later in the runbook (what undoes this one)";
        self.later_steps(step, block, "on_cancel", &step.controls.on_cancel, step.controls.on_cancel_node.as_ref(), help);
    }

    /// The steps a control of `step` runs (`on_failure`, `on_cancel`) exist and come after it;
    /// an error points at the name in the control, not at the step.
    fn later_steps(&mut self, step: &Step, block: usize, control: &str, ids: &[String], node: Option<&Node>, help: &str) {
        for id in ids {
            let at = node.and_then(|n| n.scalars().into_iter().find(|s| s.as_str() == Some(id.as_str())).map(|s| s.span)).unwrap_or(step.span);
            match self.places.get(id.as_str()) {
                Some(p) if p.block > block => {}
                Some(_) => self.errors.push(
                    Diagnostic::new(format!("{control} of `{}` runs `{id}`, which does not come after it", step.id)).at(&self.runbook.file, at).help(help),
                ),
                None => {
                    let mut d = Diagnostic::new(format!("{control} runs unknown step `{id}`")).at(&self.runbook.file, at);
                    if let Some(s) = did_you_mean(id, self.places.keys().copied()) {
                        d = d.label(format!("did you mean `{s}`?"));
                    }
                    self.errors.push(d);
                }
            }
        }
    }

    /// Points at `segment` of `path` inside the node's source text, when it can be found.
    fn span_of(&self, node: &Node, path: &str, segment: usize) -> Span {
        let file = &self.runbook.file;
        let end = node.span.end.min(file.text.len()).max(node.span.start);
        let text = &file.text[node.span.start..end];
        let parts: Vec<&str> = path.split('.').collect();
        let prefix = parts[..=segment.min(parts.len() - 1)].join(".");
        if let Some(i) = text.find(&prefix) {
            let before: usize = parts[..segment.min(parts.len() - 1)].iter().map(|p| p.len() + 1).sum();
            let start = node.span.start + i + before;
            return Span::new(start, start + parts[segment.min(parts.len() - 1)].len());
        }
        node.span
    }

    fn error(&mut self, node: &Node, path: &str, segment: usize, message: String, label: Option<String>, help: Option<String>) {
        let mut d = Diagnostic::new(message).at(&self.runbook.file, self.span_of(node, path, segment));
        if let Some(l) = label {
            d = d.label(l);
        }
        if let Some(h) = help {
            d = d.help(h);
        }
        self.errors.push(d);
    }

    fn reference(&mut self, step: &Step, block: usize, node: &Node, path: &str, item_in_scope: bool) {
        let parts: Vec<&str> = path.split('.').collect();
        let root = parts[0];
        match root {
            "params" => {
                let Some(name) = parts.get(1) else { return };
                if self.runbook.param(name).is_none() {
                    let names: Vec<&str> = self.runbook.params.iter().map(|p| p.name.as_str()).collect();
                    let label = did_you_mean(name, names.iter().copied()).map(|s| format!("did you mean `{s}`?"));
                    let help = if names.is_empty() {
                        "this runbook declares no parameters; add them under `params:`".to_string()
                    } else {
                        format!("declared parameters: {}", names.join(", "))
                    };
                    self.error(node, path, 1, format!("unknown parameter `{name}`"), label, Some(help));
                }
            }
            "vars" => {
                let (Some(name), Some(instance)) = (parts.get(1), self.instance) else { return };
                if !instance.vars.contains_key(*name) {
                    let label = did_you_mean(name, instance.vars.keys().map(String::as_str)).map(|s| format!("did you mean `{s}`?"));
                    let help = format!(
                        "set `instances.{}.vars.{name}` in the inventory{}",
                        instance.name,
                        if instance.vars.is_empty() { String::new() } else { format!(" (it has: {})", instance.vars.keys().cloned().collect::<Vec<_>>().join(", ")) }
                    );
                    self.error(node, path, 1, format!("instance `{}` has no var `{name}`", instance.name), label, Some(help));
                }
            }
            "instance" => self.instance_path(node, path, &parts),
            "steps" => {
                let Some(id) = parts.get(1) else { return };
                match self.places.get(id).copied() {
                    None => {
                        let label = did_you_mean(id, self.places.keys().copied()).map(|s| format!("did you mean `{s}`?"));
                        self.error(node, path, 1, format!("unknown step `{id}`"), label, Some("only steps with an `id` can be read".into()));
                    }
                    Some(_) if *id == step.id => {
                        self.error(node, path, 1, format!("step `{id}` cannot read its own outputs"), None, None);
                    }
                    Some(p) if p.block == block && p.parallel => {
                        self.error(node, path, 1, format!("step `{id}` runs in parallel with this one"), Some("its outputs are not known yet".into()), Some("move it before the parallel block".into()));
                    }
                    Some(p) if p.block > block => {
                        self.error(node, path, 1, format!("step `{id}` runs after this one"), Some("its outputs are not known yet".into()), None);
                    }
                    Some(p) => {
                        if let Some(output) = parts.get(2)
                            && !p.kind.has_output(output) {
                                let names = p.kind.output_names();
                                let label = did_you_mean(output, names.iter().copied()).map(|s| format!("did you mean `{s}`?"));
                                self.error(
                                    node,
                                    path,
                                    2,
                                    format!("step `{id}` ({}) has no output `{output}`", p.kind.name),
                                    label,
                                    Some(format!("its outputs: {}", names.join(", "))),
                                );
                            }
                    }
                }
            }
            "run" => {
                if let Some(field) = parts.get(1)
                    && !RUN_FIELDS.contains(field) {
                        let label = did_you_mean(field, RUN_FIELDS.iter().copied()).map(|s| format!("did you mean `{s}`?"));
                        self.error(node, path, 1, format!("`run` has no field `{field}`"), label, Some(format!("run fields: {}", RUN_FIELDS.join(", "))));
                    }
            }
            "item" | "item_index" => {
                if !item_in_scope {
                    self.error(node, path, 0, format!("`{root}` exists only in a step with `for_each`"), None, None);
                }
            }
            _ if BUILTINS.contains(&root) => {}
            _ => {
                let label = did_you_mean(root, template::ROOTS.iter().copied()).map(|s| format!("did you mean `{s}`?"));
                self.error(node, path, 0, format!("unknown variable `{root}`"), label, Some(format!("templates can read {}", template::ROOTS[..5].join(", "))));
            }
        }
    }

    fn instance_path(&mut self, node: &Node, path: &str, parts: &[&str]) {
        let default_value;
        let (value, name) = match (&self.instance_value, self.instance) {
            (Some(v), Some(i)) => (v.as_ref(), Some(i.name.as_str())),
            _ => {
                // No instance: only the first level (the setting names) can be checked.
                default_value = Instance::default().template_value();
                (&default_value, None)
            }
        };
        let mut cur = value;
        for (i, part) in parts.iter().enumerate().skip(1) {
            let Some(obj) = cur.as_object() else { return };
            match obj.get(*part) {
                Some(next) => cur = next,
                None => {
                    if name.is_none() && i > 1 {
                        return;
                    }
                    // Open-ended maps (labels, vars) are user data: their keys are checked
                    // only against a real instance.
                    let label = did_you_mean(part, obj.keys().map(String::as_str)).map(|s| format!("did you mean `{s}`?"));
                    let at = parts[1..i].join(".");
                    let message = match name {
                        Some(n) if at.is_empty() => format!("instance `{n}` has no setting `{part}`"),
                        Some(n) => format!("instance `{n}` has no `{at}.{part}`"),
                        None => format!("instances have no setting `{part}`"),
                    };
                    let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
                    self.error(node, path, i, message, label, Some(format!("it has: {}", keys.join(", "))));
                    return;
                }
            }
        }
    }
}

/// Binds `-p name=value` pairs to the runbook's parameters, applying defaults.
pub fn bind_params(runbook: &Runbook, given: &[(String, String)]) -> Result<IndexMap<String, ParamValue>, Vec<Diagnostic>> {
    let file = &runbook.file;
    let mut errors = Vec::new();
    let mut values: IndexMap<String, ParamValue> = IndexMap::new();
    for (name, text) in given {
        let Some(param) = runbook.param(name) else {
            let names: Vec<&str> = runbook.params.iter().map(|p| p.name.as_str()).collect();
            let mut d = Diagnostic::new(format!("unknown parameter `{name}` (from -p {name}={})", shorten(text))).at(file, runbook.params_span);
            d = match did_you_mean(name, names.iter().copied()) {
                Some(s) => d.label(format!("did you mean `{s}`?")),
                None => d.label(if names.is_empty() { "this runbook declares no parameters".to_string() } else { format!("declared here: {}", names.join(", ")) }),
            };
            errors.push(d);
            continue;
        };
        let shown = if param.decl.ty == super::ParamType::Secret { "***".to_string() } else { shorten(text) };
        match param.parse(text) {
            Ok(v) => {
                values.insert(name.clone(), v);
            }
            Err(e) => errors.push(
                Diagnostic::new(format!("invalid value for parameter `{name}` (from -p {name}={shown}): {e}"))
                    .at(file, param.span)
                    .label(format!("declared here as {}", param.describe_type())),
            ),
        }
    }
    for param in &runbook.params {
        if values.contains_key(&param.name) {
            continue;
        }
        match &param.decl.default {
            Some(d) => match param.from_default(d) {
                Ok(v) => {
                    values.insert(param.name.clone(), v);
                }
                Err(e) => errors.push(
                    Diagnostic::new(format!("cannot use the default of parameter `{}`: {e}", param.name))
                        .at(file, param.default_span.unwrap_or(param.span))
                        .help(format!("give it with -p {}=VALUE", param.name)),
                ),
            },
            None if param.decl.required => {
                let mut d = Diagnostic::new(format!("missing required parameter `{}`", param.name))
                    .at(file, param.span)
                    .label(format!("{}, required", param.describe_type()))
                    .help(format!("give it with -p {}=VALUE", param.name));
                if let Some(h) = &param.decl.help {
                    d = d.help(h.clone());
                }
                errors.push(d);
            }
            None => {
                values.insert(param.name.clone(), ParamValue::Unset);
            }
        }
    }
    if errors.is_empty() { Ok(values) } else { Err(errors) }
}

fn shorten(s: &str) -> String {
    if s.chars().count() > 40 { format!("{}…", s.chars().take(40).collect::<String>()) } else { s.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SourceFile;

    fn check(text: &str) -> Vec<Diagnostic> {
        let rb = Runbook::load(SourceFile::new("r.yaml", text)).unwrap();
        references(&rb, Some(&Instance { name: "team-a".into(), ..Instance::default() }))
    }

    #[test]
    fn a_typo_in_a_step_reference_is_caught_with_a_suggestion() {
        let errs = check(
            "name: t\nsteps:\n  - id: backup\n    sleep: { duration: 1s }\n  - id: show\n    assert: { that: \"{{ steps.bakup.failed == false }}\" }\n",
        );
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].message, "unknown step `bakup`");
        assert_eq!(errs[0].label.as_deref(), Some("did you mean `backup`?"));
        assert_eq!(errs[0].position().unwrap(), "r.yaml:6:31");
    }

    #[test]
    fn later_parallel_and_own_outputs_are_not_readable() {
        let errs = check(
            "name: t\nsteps:\n  - id: a\n    assert: { that: \"{{ steps.b.failed }}\" }\n  - parallel:\n    - id: b\n      sleep: { duration: 0s }\n    - id: c\n      assert: { that: \"{{ steps.b.failed or steps.c.failed }}\" }\n",
        );
        let msgs: Vec<_> = errs.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(msgs, ["step `b` runs after this one", "step `b` runs in parallel with this one", "step `c` cannot read its own outputs"]);
    }

    #[test]
    fn outputs_params_and_instance_settings_are_checked() {
        let errs = check(
            "name: t\nparams:\n  n: { type: int, default: 1 }\nsteps:\n  - id: h\n    sleep: { duration: 0s }\n  - assert: { that: \"{{ steps.h.status_cod == 1 and params.m == 1 and instance.htp == 1 and vars.api == 1 and run.dryrun }}\" }\n",
        );
        let msgs: Vec<_> = errs.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(
            msgs,
            [
                "instance `team-a` has no setting `htp`",
                "unknown parameter `m`",
                "`run` has no field `dryrun`",
                "step `h` (sleep) has no output `status_cod`",
                "instance `team-a` has no var `api`",
            ]
        );
    }

    #[test]
    fn params_bind_with_defaults_and_report_bad_values() {
        let rb = Runbook::load(SourceFile::new(
            "r.yaml",
            "name: t\nparams:\n  n: { type: int, default: 3, min: 0 }\n  mode: { type: enum, values: [fast, safe], default: safe }\n  id: { type: string, required: true }\nsteps:\n  - sleep: { duration: 0s }\n",
        ))
        .unwrap();
        let v = bind_params(&rb, &[("id".into(), "x".into())]).unwrap();
        assert_eq!(v["n"], ParamValue::Int(3));
        assert_eq!(v["mode"], ParamValue::String("safe".into()));
        let errs = bind_params(&rb, &[("n".into(), "-1".into()), ("mode".into(), "fsat".into())]).unwrap_err();
        let msgs: Vec<_> = errs.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(
            msgs,
            [
                "invalid value for parameter `n` (from -p n=-1): -1 is below the minimum 0",
                "invalid value for parameter `mode` (from -p mode=fsat): \"fsat\" is not one of fast, safe; did you mean `fast`?",
                "missing required parameter `id`",
            ]
        );
        assert_eq!(errs[0].position().unwrap(), "r.yaml:3:3");
    }
}
