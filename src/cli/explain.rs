//! `opsctl explain KIND`: a step kind's reference from the binary, as `kubectl explain` and
//! `ansible-doc` give theirs — what it does, its effect, every parameter (type, default,
//! meaning, from the same types the loader checks with), its outputs, what it needs from the
//! instance, and an example that validates (`examples.yaml`; a test loads every one).

use serde_json::{Value, json};

use super::Ui;
use super::args::{Format, Global};
use crate::diagnostic::{Diagnostic, did_you_mean};
use crate::error::{Error, Exit};
use crate::registry;
use crate::report::Destination;

/// One example step per kind.
pub const EXAMPLES: &str = include_str!("examples.yaml");

/// The example of `kind`, as YAML text (a list with one step).
pub fn example(kind: &str) -> Option<String> {
    let file = crate::source::SourceFile::new("examples.yaml", EXAMPLES);
    let root = crate::yaml::parse(&file).ok()?;
    root.get(kind).and_then(|n| n.as_str()).map(str::to_string)
}

/// What a kind reads from the instance, by its backend.
pub fn needs(kind: &str) -> &'static str {
    match kind.split('.').next().unwrap_or_default() {
        "k8s" => "`kubernetes:` (context, namespace, kubeconfig or in_cluster)",
        "postgres" => "`postgres:` (url; exec or port_forward for in-cluster servers); a backup store (`backups:`) for backups and restores",
        "redis" => "`redis:` (url; port_forward); a backup store for `redis.backup`",
        "compose" | "docker" => "`compose:` (files, project, env_file) and the Docker engine",
        "dynamodb" => "`aws:` (region, profile); a backup store for exports",
        "ecs" => "`aws:` and `ecs:` (cluster, services)",
        "elb" => "`aws:`; `elb.target_groups` unless the step names them",
        "rds" => "`aws:`; `rds.instances` unless the step names them",
        "cloudwatch" => "`aws:`; `cloudwatch_logs.groups` for the logs kinds, `aws.alarm_prefix` for alarms, unless the step names them",
        "secrets" => "`aws:`",
        "prometheus" => "`prometheus:` (url)",
        "alertmanager" => "`alertmanager:` (url; matchers)",
        "backup" => "`backups:` (dir or s3)",
        _ => "nothing from the instance",
    }
}

fn effect_text(effect: crate::vocab::Effect) -> &'static str {
    match effect {
        crate::vocab::Effect::Read => "read — changes nothing; runs in a dry run too",
        crate::vocab::Effect::Mutate => "mutate — changes something; a dry run shows what it would change and changes nothing; a run takes the instance's lock",
        crate::vocab::Effect::Destroy => "destroy — deletes or replaces; asks on a terminal or needs --yes; a dry run shows what it would do",
    }
}

/// `#/$defs/X` resolved in `defs`.
fn resolve<'a>(v: &'a Value, defs: &'a serde_json::Map<String, Value>) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix("#/$defs/")) {
        Some(name) => defs.get(name).map_or(v, |d| resolve(d, defs)),
        None => v,
    }
}

/// A parameter's type in words: `text`, `integer ≥ 0`, `duration`, `one of a, b`, `list of text`.
fn type_text(v: &Value, defs: &serde_json::Map<String, Value>) -> String {
    if let Some(name) = v.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix("#/$defs/")) {
        let lower = name.to_lowercase();
        if ["duration", "pattern", "bytesize", "secretref", "secretvalue"].iter().any(|k| lower.starts_with(k)) {
            return match lower.as_str() {
                l if l.starts_with("duration") => "duration".into(),
                l if l.starts_with("pattern") => "regex".into(),
                l if l.starts_with("bytesize") => "size".into(),
                _ => "secret reference".into(),
            };
        }
        return type_text(resolve(v, defs), defs);
    }
    if let Some(values) = v.get("enum").and_then(Value::as_array) {
        return format!("one of {}", values.iter().map(|x| x.as_str().map_or(x.to_string(), str::to_string)).collect::<Vec<_>>().join(", "));
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(alts) = v.get(key).and_then(Value::as_array) {
            let mut parts: Vec<String> = alts.iter().filter(|a| a.get("type") != Some(&json!("null"))).map(|a| type_text(a, defs)).collect();
            parts.dedup();
            return parts.join(" or ");
        }
    }
    if let Some(c) = v.get("const") {
        return c.as_str().map_or(c.to_string(), str::to_string);
    }
    let ty = match v.get("type") {
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).find(|t| *t != "null").unwrap_or("any").to_string(),
        _ => return if v.get("properties").is_some() { "mapping".into() } else { "any".into() },
    };
    match ty.as_str() {
        "string" => "text".into(),
        "integer" => match v.get("minimum").and_then(Value::as_i64) {
            Some(m) => format!("integer ≥ {m}"),
            None => "integer".into(),
        },
        "number" => "number".into(),
        "boolean" => "boolean".into(),
        "array" => format!("list of {}", v.get("items").map_or("any".into(), |i| type_text(i, defs))),
        "object" => match v.get("additionalProperties") {
            Some(a) if a.is_object() => format!("mapping of text → {}", type_text(a, defs)),
            _ => "mapping".into(),
        },
        other => other.into(),
    }
}

/// The reference of `kind` as a JSON document.
pub fn reference(name: &str) -> Result<Value, Error> {
    let Some(info) = registry::lookup(name) else {
        let mut d = Diagnostic::new(format!("unknown step kind `{name}`"));
        if let Some(s) = did_you_mean(name, registry::KINDS.iter().map(|k| k.name)) {
            d = d.help(format!("did you mean `{s}`?"));
        }
        return Err(d.help("`opsctl list kinds` lists every step kind").into());
    };
    let spec = &info.spec;
    let mut g = registry::generator();
    let schema = (spec.schema)(&mut g).to_value();
    let defs: serde_json::Map<String, Value> = g.take_definitions(true).into_iter().collect();
    let root = resolve(&schema, &defs).clone();
    let required: Vec<&str> = root.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
    let params: Vec<Value> = root
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(field, v)| {
            let resolved = resolve(v, &defs);
            let description = v.get("description").or_else(|| resolved.get("description")).and_then(Value::as_str).unwrap_or_default();
            let default = v.get("default").or_else(|| resolved.get("default")).cloned();
            json!({
                "name": field, "type": type_text(v, &defs), "required": required.contains(&field.as_str()),
                "default": default, "description": description.split_whitespace().collect::<Vec<_>>().join(" "),
            })
        })
        .collect();
    Ok(json!({
        "kind": spec.name,
        "summary": spec.summary,
        "description": root.get("description").and_then(Value::as_str).map(|d| d.split_whitespace().collect::<Vec<_>>().join(" ")),
        "effect": spec.effect,
        "effect_means": effect_text(spec.effect),
        "needs": needs(spec.name),
        "permissions": spec.permissions.iter().map(|p| match p {
            crate::vocab::Permission::Kube { group, resource, verbs, cluster } => {
                let g = if group.is_empty() { "core" } else { group };
                format!("kubernetes: {} {resource} ({g}){}", verbs.join(", "), if *cluster { ", cluster-wide" } else { "" })
            }
            crate::vocab::Permission::Aws { actions, on } => format!("aws: {} on {on:?}", actions.join(", ")),
        }).collect::<Vec<_>>(),
        "parameters": params,
        "outputs": spec.outputs.iter().map(|o| json!({ "name": o.name, "type": o.ty, "description": o.help })).collect::<Vec<_>>(),
        "common_outputs": ["status", "failed", "message", "duration", "attempts"],
        "example": example(spec.name),
    }))
}

/// The reference as text.
pub fn render(doc: &Value) -> String {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let mut out = format!("{} — {}\n", s(&doc["kind"]), s(&doc["summary"]));
    if let Some(d) = doc["description"].as_str() {
        out.push_str(&format!("\n{}\n", wrap(d, 96, "")));
    }
    out.push_str(&format!("\neffect: {}\nneeds: {}\n", s(&doc["effect_means"]), s(&doc["needs"])));
    let perms = doc["permissions"].as_array().cloned().unwrap_or_default();
    if !perms.is_empty() {
        out.push_str("permissions (`opsctl permissions`):\n");
        for p in &perms {
            out.push_str(&format!("  {}\n", s(p)));
        }
    }
    let params = doc["parameters"].as_array().cloned().unwrap_or_default();
    out.push_str("\nparameters:");
    if params.is_empty() {
        out.push_str(" none\n");
    } else {
        out.push('\n');
        let width = params.iter().map(|p| s(&p["name"]).len()).max().unwrap_or(0);
        for p in &params {
            let mut ty = s(&p["type"]);
            if p["required"] == true {
                ty.push_str(", required");
            } else if !p["default"].is_null() {
                let d = p["default"].as_str().map_or(p["default"].to_string(), str::to_string);
                ty.push_str(&format!(", default {d}"));
            }
            out.push_str(&format!("  {:width$}  {ty}\n", s(&p["name"])));
            let d = s(&p["description"]);
            if !d.is_empty() {
                out.push_str(&format!("{}\n", wrap(&d, 96, &" ".repeat(width + 4))));
            }
        }
    }
    out.push_str("\noutputs (besides status, failed, message, duration, attempts):");
    let outputs = doc["outputs"].as_array().cloned().unwrap_or_default();
    if outputs.is_empty() {
        out.push_str(" none\n");
    } else {
        out.push('\n');
        let width = outputs.iter().map(|o| s(&o["name"]).len()).max().unwrap_or(0);
        for o in &outputs {
            out.push_str(&format!("  {:width$}  {:6}  {}\n", s(&o["name"]), s(&o["type"]), s(&o["description"])));
        }
    }
    if let Some(e) = doc["example"].as_str() {
        out.push_str("\nexample:\n");
        for line in e.lines() {
            out.push_str(&format!("  {line}\n"));
        }
    }
    out
}

/// Words wrapped at `width`, each line after `indent`.
fn wrap(text: &str, width: usize, indent: &str) -> String {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && indent.len() + line.len() + 1 + word.len() > width {
            lines.push(format!("{indent}{line}"));
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(format!("{indent}{line}"));
    }
    lines.join("\n")
}

pub fn explain(g: &Global, _ui: &Ui, kind: &str) -> Result<Exit, Error> {
    let doc = reference(kind)?;
    let text = if g.output.iter().any(|o| o.format == Format::Json) {
        let mut t = serde_json::to_string_pretty(&doc).unwrap_or_default();
        t.push('\n');
        t
    } else {
        render(&doc)
    };
    Destination::Stdout.write(&text)?;
    Ok(Exit::Passed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_an_example_that_validates() {
        for k in registry::KINDS {
            let example = example(k.name).unwrap_or_else(|| panic!("no example for {} in src/cli/examples.yaml", k.name));
            let text = format!("name: example\nparams:\n  backup: {{ type: string, default: x }}\nsteps:\n{example}");
            let rb = crate::runbook::Runbook::load(crate::source::SourceFile::new(format!("example of {}", k.name), text));
            assert!(rb.is_ok(), "the example of {} does not load: {:?}", k.name, rb.err());
            let rb = rb.unwrap();
            assert_eq!(rb.steps().last().unwrap().kind.name, k.name, "the example of {} is of another kind", k.name);
        }
    }

    #[test]
    fn the_reference_lists_parameters_with_types_and_defaults() {
        let doc = reference("k8s.scale").unwrap();
        let params = doc["parameters"].as_array().unwrap();
        let by = |n: &str| params.iter().find(|p| p["name"] == n).unwrap().clone();
        assert_eq!(by("target")["type"], "text");
        assert_eq!(by("target")["required"], true);
        assert_eq!(by("wait_timeout")["type"], "duration");
        assert_eq!(by("wait_timeout")["default"], "5m");
        assert_eq!(by("wait")["default"], true);
        assert!(render(&doc).contains("example:\n  - id: scale\n    k8s.scale: { target: deployment/api, replicas: 5 }\n"));
        assert!(reference("k8s.scal").is_err());
    }
}
