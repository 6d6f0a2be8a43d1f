//! JSON Schema for runbooks and the inventory, generated from the Rust types.
//!
//! Editors use it for completion and checking (`# yaml-language-server: $schema=…`). The
//! runbook schema is assembled from each step kind's parameter struct, so a new kind appears
//! in it by being in [`crate::registry::KINDS`]. Values that take a number, a boolean, an enum
//! or a patterned string also accept a `{{ }}` template, as the loader does.

use serde_json::{Value, json};

use crate::inventory::InventoryFile;
use crate::registry::{KINDS, generator};
use crate::runbook::{CONTROLS, OnCancel, OnFailure, ParamDecl, Retry};

/// The runbook schema.
pub fn runbook() -> Value {
    let mut g = generator();
    let retry = g.subschema_for::<Retry>().to_value();
    let on_failure = g.subschema_for::<OnFailure>().to_value();
    let on_cancel = g.subschema_for::<OnCancel>().to_value();
    let param = g.subschema_for::<ParamDecl>().to_value();
    let duration = g.subschema_for::<crate::duration::Duration>().to_value();
    let kinds: Vec<(&str, &str, Value)> = KINDS.iter().map(|k| (k.name, k.summary, (k.schema)(&mut g).to_value())).collect();
    let mut defs = g.take_definitions(true);
    for (name, def) in defs.iter_mut() {
        // `retry` and `timeout` take templates (rendered per run); `on_failure`, parameter
        // declarations and error classes do not.
        if name != "OnFailure" && name != "OnCancel" && name != "ParamDecl" && name != "ParamType" && name != "ErrorClass" {
            allow_templates(def, true);
        }
    }
    defs.insert("Template".into(), json!({ "type": "string", "pattern": "\\{\\{|\\{%", "description": "A minijinja template" }));
    let backend = json!({ "type": "string", "enum": crate::instance::BACKEND_NAMES });
    let backends = json!({ "anyOf": [backend, { "type": "array", "items": backend }] });
    let requirement = json!({
        "type": "object",
        "properties": { "all": backends, "any": backends, "when": { "type": ["string", "boolean"] } },
        "additionalProperties": false,
        "description": "The instance has all of `all` and one of `any` (only when `when` holds)",
    });
    let controls = json!({
        "id": { "type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$", "description": "Unique; later steps read outputs as steps.<id>.<output>" },
        "name": { "type": "string", "description": "Display name; may be templated" },
        "needs": { "anyOf": [backend, { "type": "array", "items": backend }], "description": "Backends the instance must have; without them the step is not run and not listed" },
        "when": { "type": ["string", "boolean"], "description": "Run only when this condition holds" },
        "retry": retry,
        "timeout": duration,
        "on_failure": on_failure,
        "on_cancel": on_cancel,
        "confirm": { "type": "string", "description": "Ask before running (or require --yes)" },
        "always": { "type": "boolean", "description": "Run even after a failure or an interrupt (cleanup)" },
        "for_each": { "type": ["string", "array"], "description": "Run once per item; `item` and `item_index` are in scope" },
    });
    debug_assert_eq!(controls.as_object().map(|o| o.len()), Some(CONTROLS.len()));
    let variants: Vec<Value> = kinds
        .iter()
        .map(|(name, summary, params)| {
            let mut props = controls.as_object().cloned().unwrap_or_default();
            props.insert(name.to_string(), params.clone());
            json!({
                "title": name,
                "description": summary,
                "type": "object",
                "required": [name],
                "properties": props,
                "additionalProperties": false,
            })
        })
        .collect();
    defs.insert("Step".into(), json!({ "oneOf": variants }));
    defs.insert(
        "Parallel".into(),
        json!({
            "type": "object",
            "required": ["parallel"],
            "properties": { "parallel": { "type": "array", "items": { "$ref": "#/$defs/Step" } }, "name": { "type": "string" } },
            "additionalProperties": false,
            "description": "Steps run concurrently (bounded by --parallel)",
        }),
    );
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://opsctl.dev/schema/runbook.json",
        "title": "opsctl runbook",
        "type": "object",
        "required": ["name", "steps"],
        "additionalProperties": false,
        "properties": {
            "name": { "type": "string" },
            "summary": { "type": "string" },
            "description": { "type": "string" },
            "requires": { "anyOf": [requirement, { "type": "array", "items": requirement }], "description": "What an instance must have for this runbook to apply (else refused, exit 2)" },
            "params": { "type": "object", "additionalProperties": param },
            "steps": { "type": "array", "minItems": 1, "items": { "anyOf": [{ "$ref": "#/$defs/Step" }, { "$ref": "#/$defs/Parallel" }] } },
        },
        "$defs": defs,
    })
}

/// The inventory schema.
pub fn inventory() -> Value {
    let mut v = generator().into_root_schema_for::<InventoryFile>().to_value();
    if let Some(o) = v.as_object_mut() {
        o.insert("title".into(), json!("opsctl inventory"));
        o.insert("$id".into(), json!("https://opsctl.dev/schema/inventory.json"));
        // Top-level `x-…` keys are the file's own (anchors the instances share); the loader skips them.
        o.insert("patternProperties".into(), json!({ "^x-": {} }));
    }
    v
}

/// Lets every typed value of a step's parameters also be a template, as the loader does: a
/// number, boolean, enum or patterned string, and — below a definition's top, where a value
/// is one `{{ expression }}` rendering a mapping or a list (`headers: "{{ instance.http.headers
/// }}"`) — a mapping, a list or a reference to a defined type. A definition itself (a kind's
/// parameters) stays a mapping.
fn allow_templates(v: &mut Value, top: bool) {
    match v {
        Value::Object(o) => {
            for (_, child) in o.iter_mut() {
                allow_templates(child, false);
            }
            let is = |t: &Value, names: &[&str]| t.as_str().is_some_and(|t| names.contains(&t));
            let mut kinds: Vec<&str> = vec!["integer", "number", "boolean"];
            if !top {
                kinds.extend(["object", "array"]);
            }
            let typed = match o.get("type") {
                Some(t @ Value::String(_)) => is(t, &kinds),
                Some(Value::Array(ts)) => ts.iter().any(|t| is(t, &kinds)),
                _ => false,
            };
            let constrained_string = o.get("type") == Some(&json!("string")) && (o.contains_key("pattern") || o.contains_key("enum"));
            let reference = !top && o.len() == 1 && o.get("$ref").is_some_and(|r| r != "#/$defs/Template");
            if typed || constrained_string || reference {
                let original = Value::Object(std::mem::take(o));
                o.insert("anyOf".into(), json!([original, { "$ref": "#/$defs/Template" }]));
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|c| allow_templates(c, false)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_in_the_runbook_schema() {
        let schema = runbook();
        let variants = schema["$defs"]["Step"]["oneOf"].as_array().unwrap();
        assert_eq!(variants.len(), KINDS.len());
        let titles: Vec<&str> = variants.iter().map(|v| v["title"].as_str().unwrap()).collect();
        assert!(titles.contains(&"http.check"));
    }

    #[test]
    fn typed_values_accept_templates() {
        let mut v = json!({ "type": "integer", "minimum": 0 });
        allow_templates(&mut v, true);
        assert_eq!(v, json!({ "anyOf": [{ "type": "integer", "minimum": 0 }, { "$ref": "#/$defs/Template" }] }));
        // A kind's parameters stay a mapping; a mapping, a list or a defined type inside may be one template.
        let mut v = json!({ "type": "object", "properties": { "headers": { "type": "object" }, "expect": { "$ref": "#/$defs/Expect" } } });
        allow_templates(&mut v, true);
        assert_eq!(v["type"], "object");
        assert_eq!(v["properties"]["headers"], json!({ "anyOf": [{ "type": "object" }, { "$ref": "#/$defs/Template" }] }));
        assert_eq!(v["properties"]["expect"], json!({ "anyOf": [{ "$ref": "#/$defs/Expect" }, { "$ref": "#/$defs/Template" }] }));
    }

    #[test]
    fn inventory_schema_has_instances() {
        assert!(inventory()["properties"]["instances"].is_object());
    }
}
