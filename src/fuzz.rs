//! Entry points for the fuzz targets (`fuzz/fuzz_targets/`, run by `scripts/fuzz.sh`) and
//! for the test that replays their corpus and every input that ever failed
//! (`tests/cli/fuzz.rs`). Each takes arbitrary bytes and must return — no panic, no hang, no
//! unbounded memory — whatever they hold; errors are rendered as an operator would see them
//! (a diagnostic with a bad position would panic there).

use std::sync::LazyLock;

use minijinja::value::Value as JValue;

use crate::inventory::Inventory;
use crate::runbook::Runbook;

/// The targets, by name: what `scripts/fuzz.sh` runs and the replay test feeds.
pub const TARGETS: &[(&str, fn(&[u8]))] = &[("runbook", runbook), ("inventory", inventory), ("template", template), ("units", units), ("json_path", json_path)];

/// A runbook file: loaded (YAML, the language, every kind's parameters), its references
/// checked, its parameters bound with none given, every error rendered.
pub fn runbook(data: &[u8]) {
    let file = match crate::yaml::source_from_bytes("fuzz.yaml", "runbook", data.to_vec()) {
        Ok(f) => f,
        Err(d) => return drop(d.render(false)),
    };
    match Runbook::load(file) {
        Ok(rb) => {
            for d in crate::runbook::check::references(&rb, None) {
                drop(d.render(false));
            }
            if let Err(ds) = crate::runbook::check::bind_params(&rb, &[]) {
                ds.iter().for_each(|d| drop(d.render(false)));
            }
        }
        Err(ds) => ds.iter().for_each(|d| drop(d.render(false))),
    }
}

/// An inventory file: loaded with its checks, every instance's template value and backends
/// worked out, every error rendered.
pub fn inventory(data: &[u8]) {
    let file = match crate::yaml::source_from_bytes("opsctl.yaml", "inventory", data.to_vec()) {
        Ok(f) => f,
        Err(d) => return drop(d.render(false)),
    };
    match Inventory::from_source(file, None) {
        Ok(inv) => {
            for i in inv.instances.values() {
                drop(i.template());
                drop(i.backends());
                let _ = i.remote_secret_refs();
            }
            drop(inv.select(&[("tier".into(), "prod".into())]));
            if let Err(d) = inv.instance("no-such-instance") {
                drop(d.render(false));
            }
        }
        Err(d) => drop(d.render(false)),
    }
}

/// What templates see in the fuzz target: a little of everything.
static CONTEXT: LazyLock<JValue> = LazyLock::new(|| {
    let v = serde_json::json!({
        "params": { "n": 3, "name": "api", "on": true, "list": [1, 2, 3], "map": { "a": "b" } },
        "vars": { "api": "coffee" },
        "instance": { "name": "team-a", "http": { "base_url": "http://127.0.0.1:1", "headers": {} }, "postgres": null },
        "steps": { "s": { "status": "passed", "failed": false, "outputs": { "count": 2, "items": [{ "x": 1 }] } } },
        "run": { "failed": false, "failed_steps": [] },
        "item": { "name": "x" },
        "item_index": 0,
    });
    JValue::from(minijinja::value::Serde(v))
});

/// A template or bare expression: its references, rendered as text, evaluated as an
/// expression and as a condition.
pub fn template(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    drop(crate::template::references(text, false));
    drop(crate::template::references(text, true));
    drop(crate::template::render_text(text, &CONTEXT));
    if let Some(expr) = crate::template::whole_expression(text) {
        drop(crate::template::eval(expr, &CONTEXT));
    }
    drop(crate::template::condition(text, &CONTEXT));
}

/// Durations, sizes, Kubernetes quantities and targets, each line parsed as each; a parsed
/// value printed and parsed again gives the same value.
pub fn units(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for line in text.lines().take(64) {
        if let Ok(d) = crate::duration::Duration::parse(line) {
            let again = crate::duration::Duration::parse(&d.to_string());
            assert_eq!(again.as_ref().ok(), Some(&d), "duration `{line}` printed as `{d}` does not read back");
            drop(crate::duration::short(d.std()));
        }
        if let Ok(b) = crate::units::ByteSize::parse(line) {
            drop(format!("{b:?}"));
        }
        let _ = crate::steps::k8s::top::quantity(line);
        drop(crate::steps::k8s::Target::parse(line));
    }
}

/// A JSON document after the first line, and a path on the first: `checks.db.status`.
pub fn json_path(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (path, doc) = text.split_once('\n').unwrap_or((text, "null"));
    let Ok(doc) = serde_json::from_str::<serde_json::Value>(doc) else { return };
    let _ = crate::steps::http::check::lookup(&doc, path);
}
