//! `{{ }}` templates in runbooks (minijinja).
//!
//! Templates fill scalar values: `url: "{{ instance.http.base_url }}/health"`. A value that
//! is exactly one expression keeps the expression's type, so `replicas: "{{ params.n }}"`
//! gives a number and `expect_json: "{{ item.expect_json }}"` a mapping.
//!
//! The names a template may use are `params`, `vars`, `instance`, `steps`, `run`, and
//! `item` / `item_index` inside a `for_each` step. [`references`] lists the dotted paths a
//! template reads so the loader can check each one before anything runs. Rendering is
//! strict: an undefined value or a `null` printed into text is an error, never an empty
//! string in a URL.

mod growth;

use std::sync::{Arc, LazyLock};

use minijinja::value::Value as JValue;
use minijinja::{Environment, ErrorKind, UndefinedBehavior};

use crate::source::Span;
use crate::yaml::de::is_template;
use crate::yaml::{Node, Scalar, Style, Value};

/// The top-level names a template can use.
pub const ROOTS: &[&str] = &["params", "vars", "instance", "steps", "run", "item", "item_index"];

/// What one template may do: about this many instructions, or 64 bytes of data each
/// (~128 MB). A runbook's templates use a tiny part of it; `((1,)*666)*66*667666` would
/// otherwise build 88 million values (found by fuzzing).
pub const FUEL: u64 = 2_000_000;

static ENV: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    env.add_function("range", growth::range);
    env.add_function(growth::MUL, growth::mul);
    env.add_function(growth::CONCAT, growth::concat);
    env.add_filter("string", |value: JValue| growth::as_text(&value));
    env.set_formatter(|out, state, value| {
        if value.is_none() {
            return Err(minijinja::Error::new(ErrorKind::InvalidOperation, "a null value cannot be printed into text"));
        }
        minijinja::escape_formatter(out, state, &growth::as_text(value)?)
    });
    env
});

/// `{{ expr }}` and nothing else: returns `expr`.
pub fn whole_expression(text: &str) -> Option<&str> {
    let t = text.trim();
    let inner = t.strip_prefix("{{")?.strip_suffix("}}")?;
    if inner.contains("{{") || inner.contains("}}") || t.contains("{%") {
        return None;
    }
    Some(inner.trim())
}

fn describe_error(e: &minijinja::Error) -> String {
    let detail = e.detail().map(str::to_string).unwrap_or_default();
    let mut msg = match e.kind() {
        ErrorKind::UndefinedError => "undefined value".to_string(),
        ErrorKind::SyntaxError => "template syntax error".to_string(),
        ErrorKind::UnknownFilter => "unknown filter".to_string(),
        ErrorKind::UnknownTest => "unknown test".to_string(),
        ErrorKind::UnknownFunction => "unknown function".to_string(),
        ErrorKind::InvalidOperation => "invalid operation".to_string(),
        ErrorKind::BadSerialization => "value cannot be used here".to_string(),
        ErrorKind::OutOfFuel => format!("the template does too much work (more than {FUEL} steps, or about {} MB of data); make it simpler", FUEL * 64 / 1_000_000),
        other => other.to_string(),
    };
    if !detail.is_empty() {
        msg = format!("{msg}: {detail}");
    }
    msg
}

/// Renders a template into text.
pub fn render_text(text: &str, ctx: &JValue) -> Result<String, String> {
    with_compiled_template(text, |template| template.render(ctx)).map_err(|e| format!("template `{text}`: {}", describe_error(&e)))
}

/// Calls `f` with `text` compiled, its `*` and `~` checked ([`growth`]). Compiled templates
/// are kept by their text, like [`compiled_expression`]; a template borrows its text, so a
/// kept one keeps its text for the life of the process (at most 10,000 texts, the
/// runbooks' own; past the bound, one is compiled for the call).
fn with_compiled_template<T>(text: &str, f: impl FnOnce(&minijinja::Template) -> Result<T, minijinja::Error>) -> Result<T, minijinja::Error> {
    type Cache = std::collections::HashMap<String, minijinja::Template<'static, 'static>>;
    static CACHE: LazyLock<std::sync::Mutex<Cache>> = LazyLock::new(Default::default);
    let hit = CACHE.lock().unwrap_or_else(|e| e.into_inner()).get(text).cloned();
    if let Some(template) = hit {
        return f(&template);
    }
    let guarded = growth::guarded(text, false)?;
    let source = guarded.as_deref().unwrap_or(text);
    // Compiled borrowing first, so a text that does not compile is not kept.
    let template = ENV.template_from_str(source)?;
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if cache.len() >= 10_000 {
        drop(cache);
        return f(&template);
    }
    let kept: &'static str = Box::leak(source.to_string().into_boxed_str());
    let template = ENV.template_from_str(kept)?;
    cache.insert(text.to_string(), template.clone());
    drop(cache);
    f(&template)
}

/// Evaluates an expression (without braces).
pub fn eval(expr: &str, ctx: &JValue) -> Result<JValue, String> {
    let compiled = compiled_expression(expr).map_err(|e| format!("expression `{expr}`: {}", describe_error(&e)))?;
    let value = compiled.eval(ctx).map_err(|e| format!("expression `{expr}`: {}", describe_error(&e)))?;
    if value.is_undefined() {
        return Err(format!("expression `{expr}`: undefined value"));
    }
    Ok(value)
}

/// Compiled expressions by their text: a runbook's expressions are evaluated for every
/// instance of a fleet and every item of a `for_each`, and compiled once. Runbooks hold
/// few distinct texts; past the bound, new ones are compiled each time.
fn compiled_expression(expr: &str) -> Result<Arc<minijinja::Expression<'static, 'static>>, minijinja::Error> {
    type Cache = std::collections::HashMap<String, Arc<minijinja::Expression<'static, 'static>>>;
    static CACHE: LazyLock<std::sync::Mutex<Cache>> = LazyLock::new(Default::default);
    if let Some(hit) = CACHE.lock().unwrap_or_else(|e| e.into_inner()).get(expr) {
        return Ok(hit.clone());
    }
    let compiled = Arc::new(ENV.compile_expression_owned(growth::guarded(expr, true)?.unwrap_or_else(|| expr.to_string()))?);
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if cache.len() < 10_000 {
        cache.insert(expr.to_string(), compiled.clone());
    }
    Ok(compiled)
}

/// A `when:` or `assert.that` condition: `"{{ expr }}"`, or a bare expression.
pub fn condition(text: &str, ctx: &JValue) -> Result<bool, String> {
    let expr = whole_expression(text).unwrap_or(text);
    if is_template(expr) {
        let rendered = render_text(text, ctx)?;
        return match rendered.trim() {
            "true" | "True" => Ok(true),
            "false" | "False" | "" => Ok(false),
            other => Err(format!("condition `{text}` rendered `{other}`, not true or false")),
        };
    }
    Ok(eval(expr, ctx)?.is_true())
}

/// The dotted paths a template or bare expression reads, e.g. `steps.api.status_code`.
pub fn references(text: &str, bare_expression: bool) -> Result<Arc<Vec<String>>, String> {
    // A runbook is bound to each instance of a fleet: its templates are parsed once (one
    // map per kind of text, so a lookup borrows the text).
    type Cache = std::collections::HashMap<String, Result<Arc<Vec<String>>, String>>;
    static CACHE: LazyLock<std::sync::Mutex<[Cache; 2]>> = LazyLock::new(Default::default);
    if let Some(hit) = CACHE.lock().unwrap_or_else(|e| e.into_inner())[bare_expression as usize].get(text) {
        return hit.clone();
    }
    let found = references_uncached(text, bare_expression).map(Arc::new);
    let mut caches = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    let cache = &mut caches[bare_expression as usize];
    if cache.len() >= 20_000 {
        cache.clear();
    }
    cache.insert(text.to_string(), found.clone());
    found
}

fn references_uncached(text: &str, bare_expression: bool) -> Result<Vec<String>, String> {
    let bare = bare_expression && !is_template(text);
    // What would refuse it at run time refuses it now (a `{% for %}`, say). And the checked
    // text is what is compiled: minijinja folds constants when it compiles, and folding
    // `6 ~ 6353366 * [6]` wrote 6 million items out (found by fuzzing).
    let guarded = growth::guarded(text, bare).map_err(|e| describe_error(&e))?;
    let source = guarded.as_deref().unwrap_or(text);
    let mut refs: Vec<String> = if bare {
        ENV.compile_expression(source).map_err(|e| describe_error(&e))?.undeclared_variables(true).into_iter().collect()
    } else {
        ENV.template_from_str(source).map_err(|e| describe_error(&e))?.undeclared_variables(true).into_iter().collect()
    };
    refs.retain(|r| r != growth::MUL && r != growth::CONCAT);
    refs.sort();
    Ok(refs)
}

/// A copy of `node` with every templated scalar rendered.
pub fn render_node(node: &Node, ctx: &JValue) -> Result<Node, (Span, String)> {
    match &node.value {
        Value::Scalar(s) if is_template(&s.text) => {
            if let Some(expr) = whole_expression(&s.text) {
                let value = eval(expr, ctx).map_err(|e| (node.span, e))?;
                return value_to_node(&value, node.span).map_err(|e| (node.span, format!("template `{}`: {e}", s.text)));
            }
            let text = render_text(&s.text, ctx).map_err(|e| (node.span, e))?;
            Ok(Node::new(node.span, Value::Scalar(Scalar { text, style: Style::Rendered })))
        }
        Value::Null | Value::Scalar(_) => Ok(node.clone()),
        Value::Seq(items) => Ok(Node::new(
            node.span,
            Value::Seq(items.iter().map(|i| render_node(i, ctx)).collect::<Result<_, _>>()?),
        )),
        Value::Map(entries) => Ok(Node::new(
            node.span,
            Value::Map(
                entries
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), render_node(v, ctx)?)))
                    .collect::<Result<_, (Span, String)>>()?,
            ),
        )),
    }
}

/// True when any scalar under `node` is a template.
pub fn has_templates(node: &Node) -> bool {
    // Asked for every step a run executes: walks without collecting, however deep.
    let mut stack = vec![node];
    while let Some(n) = stack.pop() {
        match &n.value {
            Value::Scalar(s) if is_template(&s.text) => return true,
            Value::Scalar(_) | Value::Null => {}
            Value::Seq(items) => stack.extend(items.iter()),
            Value::Map(entries) => entries.iter().for_each(|(k, v)| stack.extend([k, v])),
        }
    }
    false
}

/// A template value as a node, keeping its type.
pub fn value_to_node(value: &JValue, span: Span) -> Result<Node, String> {
    let json = serde_json::to_value(value).map_err(|e| format!("value cannot be used here: {e}"))?;
    Ok(json_to_node(&json, span))
}

/// JSON data (instance settings, step outputs) as a node.
pub fn json_to_node(json: &serde_json::Value, span: Span) -> Node {
    use serde_json::Value as J;
    let scalar = |text: String, style| Node::new(span, Value::Scalar(Scalar { text, style }));
    match json {
        J::Null => Node::new(span, Value::Null),
        J::Bool(b) => scalar(b.to_string(), Style::Plain),
        J::Number(n) => scalar(n.to_string(), Style::Plain),
        J::String(s) => scalar(s.clone(), Style::Rendered),
        J::Array(items) => Node::new(span, Value::Seq(items.iter().map(|i| json_to_node(i, span)).collect())),
        J::Object(map) => Node::new(
            span,
            Value::Map(map.iter().map(|(k, v)| (Node::string(span, k.clone()), json_to_node(v, span))).collect()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::de::{Mode, from_node};

    fn ctx() -> JValue {
        minijinja::context! {
            params => minijinja::context! { n => 3, name => "api", on => true },
            instance => minijinja::context! { name => "team-a", http => minijinja::context! { base_url => "http://127.0.0.1:8080", health => vec!["/health"] } },
            steps => minijinja::context! { api => minijinja::context! { status_code => 200, failed => false } },
            nothing => JValue::from(()),
        }
    }

    #[test]
    fn whole_expressions_keep_their_type() {
        let node = Node::new(Span::default(), Value::Scalar(Scalar { text: "{{ params.n }}".into(), style: Style::Quoted }));
        let rendered = render_node(&node, &ctx()).unwrap();
        assert_eq!(from_node::<u32>(&rendered, Mode::Strict).unwrap(), 3);
    }

    #[test]
    fn mixed_text_renders_to_a_string() {
        assert_eq!(render_text("{{ instance.http.base_url }}/health", &ctx()).unwrap(), "http://127.0.0.1:8080/health");
    }

    #[test]
    fn undefined_and_null_are_errors_not_empty_strings() {
        let err = render_text("{{ instance.http.missing }}/x", &ctx()).unwrap_err();
        assert!(err.contains("undefined value"), "{err}");
        let err = render_text("x{{ nothing }}", &ctx()).unwrap_err();
        assert!(err.contains("null"), "{err}");
    }

    #[test]
    fn conditions_accept_braces_or_bare_expressions() {
        assert!(condition("{{ steps.api.status_code == 200 }}", &ctx()).unwrap());
        assert!(!condition("steps.api.failed", &ctx()).unwrap());
        assert!(condition("params.on and params.n > 2", &ctx()).unwrap());
    }

    #[test]
    fn references_are_dotted_paths() {
        assert_eq!(
            *references("{{ steps.bakup.id }}-{{ params.x | upper }}", false).unwrap(),
            vec!["params.x".to_string(), "steps.bakup.id".to_string()]
        );
        assert_eq!(*references("steps.a.failed or run.dry_run", true).unwrap(), vec!["run.dry_run", "steps.a.failed"]);
        assert!(references("{{ steps.a. }}", false).is_err());
    }

    #[test]
    fn a_template_that_would_build_too_much_is_refused() {
        // Found by fuzzing (fuzz/regressions/template): 88 million values, 2.3 GB.
        let e = condition("((667,)*666,7)*66*667666", &ctx()).unwrap_err();
        assert!(e.contains("repeating a list of 668 items 66 times would make a list of more than 10000 items; opsctl templates stop there"), "{e}");
        // Fuel: the data a template makes, here a string.
        let e = render_text("{{ 'x' * 1000000000 }}", &ctx()).unwrap_err();
        assert!(e.ends_with("the template does too much work (more than 2000000 steps, or about 128 MB of data); make it simpler"), "{e}");
        // Found by fuzzing (fuzz/regressions/template): a lazy list of 66 million items turned
        // into text, item by item, for more than ten seconds; fuel does not see lazy lists.
        let hang = "s\0\0{{66686666*[666-66]~66.~33333336666666666666666666~6>666~66+6~6>666666*[666-66]~66.~33333333+9 }}";
        let started = std::time::Instant::now();
        let e = render_text(hang, &ctx()).unwrap_err();
        assert!(e.ends_with("invalid operation: repeating a list of 1 items 66686666 times would make a list of more than 10000 items; opsctl templates stop there"), "{e}");
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        // Lists inside lists count.
        for expr in ["[[1] * 5000] * 3", "[range(5000)] * 3", "[{'a': [0] * 4000}] * 3", "2 * [1, 2] * 2501"] {
            let e = eval(expr, &ctx()).unwrap_err();
            assert!(e.contains("would make a list of more than 10000 items"), "{expr}: {e}");
        }
        let e = eval("range(10001)", &ctx()).unwrap_err();
        assert!(e.contains("range of 10001 numbers would make a list of more than 10000 items"), "{e}");
        // Text stops at 1 MB as it is written, whatever the value holds.
        let e = render_text("{{ [[1] * 3000] * 3 ~ [range(9999)] ~ ('x' * 990000) }}", &ctx()).unwrap_err();
        assert!(e.ends_with("the text would be longer than 1000000 bytes; opsctl templates stop there"), "{e}");
        let e = render_text("{{ ['x' * 999999, 'y'] }}", &ctx()).unwrap_err();
        assert!(e.ends_with("the text would be longer than 1000000 bytes; opsctl templates stop there"), "{e}");
        let e = render_text("{{ ['x' * 999999, 'y']|string }}", &ctx()).unwrap_err();
        assert!(e.ends_with("the text would be longer than 1000000 bytes; opsctl templates stop there"), "{e}");
        // Found by fuzzing (fuzz/regressions/template): minijinja folds constants when it
        // compiles, and folding this wrote six million items out, for seconds, before
        // anything ran. What is compiled is the checked text.
        let started = std::time::Instant::now();
        assert_eq!(*references("{{e or 6~6353366*[6]+e or 6}}", false).unwrap(), vec!["e".to_string()]);
        assert_eq!(*references("n * 2 ~ m", true).unwrap(), vec!["m".to_string(), "n".to_string()], "the calls are not references");
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        // Loops are refused where the runbook is checked (`references`), and when rendered.
        let e = references("{% for i in range(1000) %}{{ i }}{% endfor %}", false).unwrap_err();
        assert!(e.starts_with("invalid operation: `{% for %}` (line 1) is not available in opsctl templates"), "{e}");
        assert!(render_text("{% for i in range(3) %}{{ i }}{% endfor %}", &ctx()).unwrap_err().contains("`{% for %}` (line 1) is not available"));
        // What runbooks do is far below all of it, and unchanged.
        let same = |expr: &str, want: serde_json::Value| assert_eq!(serde_json::to_value(eval(expr, &ctx()).unwrap()).unwrap(), want, "{expr}");
        same("params.n * 2 + 1", serde_json::json!(7));
        same("[1, 2] * 3", serde_json::json!([1, 2, 1, 2, 1, 2]));
        same("3 * (1,)", serde_json::json!([1, 1, 1]));
        same("[1] * -2", serde_json::json!([]));
        same("'ab' * 2 ~ 'c'", serde_json::json!("ababc"));
        same("[0] * 10000", serde_json::json!(vec![0; 10000]));
        same("1.5 * 2", serde_json::json!(3.0));
        same("(2 + 3) * 4 - 1 * 2", serde_json::json!(18));
        same("range(2, 11, 3)|list", serde_json::json!([2, 5, 8]));
        same("range(5, 0, -2)|list", serde_json::json!([5, 3, 1]));
        same("range(3)|length", serde_json::json!(3));
        assert_eq!(render_text("{{ params.name ~ '-' * 2 }}{{ range(3)|join(',') }}", &ctx()).unwrap(), "api--0,1,2");
        assert_eq!(render_text("{{ 'a' ~ 1 ~ [1, 'b'] ~ params.on ~ none }}|{{ [1, {'k': 2}] }}|{{ 2.5|string }}", &ctx()).unwrap(), "a1[1, 'b']TrueNone|[1, {'k': 2}]|2.5", "as minijinja writes them");
        for bad in ["{{ params.missing * 2 }}", "{{ params.missing ~ 'x' }}"] {
            let e = render_text(bad, &ctx()).unwrap_err();
            assert!(e.contains("undefined value"), "{bad}: {e}");
        }
        let e = eval("'a' * 'b'", &ctx()).unwrap_err();
        assert!(e.contains("invalid operation"), "{e}");
        // A long chain still compiles.
        let chain = vec!["1"; 300].join(" * ");
        assert_eq!(serde_json::to_value(eval(&chain, &ctx()).unwrap()).unwrap(), serde_json::json!(1));
    }
}
