//! Typed runbook parameters and their values.
//!
//! ```yaml
//! params:
//!   backup:   { type: string, required: true, help: "backup id from `opsctl backup list`" }
//!   scale_to: { type: int, default: 3, min: 0 }
//!   mode:     { type: enum, values: [fast, safe], default: safe }
//!   wait:     { type: duration, default: 30s }
//!   token:    { type: secret, default: { env: API_TOKEN } }
//! ```
//!
//! Values come from `-p name=value` on the command line or from the default; both go
//! through the same checks (type, bounds, pattern, allowed values).

use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::diagnostic::Diagnostic;
use crate::duration::Duration;
use crate::pattern::Pattern;
use crate::secret::{MASK, Secret, SecretRef};
use crate::source::{SourceFile, Span};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ParamType {
    String,
    Int,
    Bool,
    Duration,
    Enum,
    Secret,
}

impl ParamType {
    fn name(self) -> &'static str {
        match self {
            ParamType::String => "string",
            ParamType::Int => "int",
            ParamType::Bool => "bool",
            ParamType::Duration => "duration",
            ParamType::Enum => "enum",
            ParamType::Secret => "secret",
        }
    }
}

/// A parameter declaration as written.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ParamDecl {
    #[serde(rename = "type")]
    pub ty: ParamType,
    /// Must be given (on the command line) when there is no default.
    #[serde(default)]
    pub required: bool,
    /// The value when none is given. For `secret`, a reference: `{ env: VAR }`.
    #[serde(default)]
    pub default: Option<serde_json::Value>,
    /// Smallest value (`int`: a number; `duration`: a duration).
    #[serde(default)]
    pub min: Option<serde_json::Value>,
    /// Largest value (`int`: a number; `duration`: a duration).
    #[serde(default)]
    pub max: Option<serde_json::Value>,
    /// A regex a `string` must match.
    #[serde(default)]
    pub pattern: Option<Pattern>,
    /// The allowed values of an `enum`.
    #[serde(default)]
    pub values: Vec<String>,
    /// What the parameter is for; shown by `opsctl list runbooks` and in errors.
    #[serde(default)]
    pub help: Option<String>,
}

/// A declared parameter with its position.
#[derive(Clone, Debug)]
pub struct Param {
    pub name: String,
    pub decl: ParamDecl,
    /// The parameter's name in the runbook.
    pub span: Span,
    /// Where the default is written, if any.
    pub default_span: Option<Span>,
    min: Option<Bound>,
    max: Option<Bound>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Bound {
    Int(i64),
    Duration(Duration),
}

/// A parameter's value.
#[derive(Clone, Debug, PartialEq)]
pub enum ParamValue {
    String(String),
    Int(i64),
    Bool(bool),
    Duration(Duration),
    Secret(Secret),
    /// Optional, not given, no default.
    Unset,
}

impl ParamValue {
    /// What templates see.
    pub fn template_value(&self) -> minijinja::Value {
        match self {
            ParamValue::String(s) => minijinja::Value::from(s.as_str()),
            ParamValue::Int(i) => minijinja::Value::from(*i),
            ParamValue::Bool(b) => minijinja::Value::from(*b),
            ParamValue::Duration(d) => minijinja::Value::from(d.to_string()),
            ParamValue::Secret(s) => minijinja::Value::from(s.expose()),
            ParamValue::Unset => minijinja::Value::from(()),
        }
    }

    /// What reports and history see: secrets masked.
    pub fn redacted(&self) -> serde_json::Value {
        match self {
            ParamValue::String(s) => s.clone().into(),
            ParamValue::Int(i) => (*i).into(),
            ParamValue::Bool(b) => (*b).into(),
            ParamValue::Duration(d) => d.to_string().into(),
            ParamValue::Secret(_) => MASK.into(),
            ParamValue::Unset => serde_json::Value::Null,
        }
    }
}

impl Param {
    /// Checks the declaration itself: bounds fit the type, the default is a valid value.
    pub fn new(name: String, decl: ParamDecl, span: Span, node: &crate::yaml::Node, file: &Arc<SourceFile>) -> Result<Param, Diagnostic> {
        let at = |key: &str| node.get(key).map(|n| n.span).unwrap_or(span);
        let ty = decl.ty;
        let bound = |key: &str, v: &Option<serde_json::Value>| -> Result<Option<Bound>, Diagnostic> {
            let Some(v) = v else { return Ok(None) };
            let parsed = match (ty, v) {
                (ParamType::Int, serde_json::Value::Number(n)) => n.as_i64().map(Bound::Int),
                (ParamType::Duration, serde_json::Value::String(s)) => Duration::parse(s).ok().map(Bound::Duration),
                _ => None,
            };
            parsed.map(Some).ok_or_else(|| {
                let want = match ty {
                    ParamType::Int => "a whole number",
                    ParamType::Duration => "a duration such as `30s`",
                    _ => "nothing: only int and duration parameters have bounds",
                };
                Diagnostic::new(format!("`{key}` of parameter `{name}` must be {want}")).at(file, at(key))
            })
        };
        let min = bound("min", &decl.min)?;
        let max = bound("max", &decl.max)?;
        if decl.pattern.is_some() && ty != ParamType::String {
            return Err(Diagnostic::new(format!("`pattern` applies to string parameters; `{name}` is {}", ty.name())).at(file, at("pattern")));
        }
        if ty == ParamType::Enum && decl.values.is_empty() {
            return Err(Diagnostic::new(format!("enum parameter `{name}` needs `values: [...]`")).at(file, span));
        }
        if ty != ParamType::Enum && !decl.values.is_empty() {
            return Err(Diagnostic::new(format!("`values` applies to enum parameters; `{name}` is {}", ty.name())).at(file, at("values")));
        }
        if decl.required && decl.default.is_some() {
            return Err(Diagnostic::new(format!("parameter `{name}` is required and has a default; drop one")).at(file, at("required")));
        }
        let param = Param { name, decl, span, default_span: node.get("default").map(|n| n.span), min, max };
        if let Some(d) = &param.decl.default {
            if ty != ParamType::Secret {
                param.from_default(d).map_err(|e| Diagnostic::new(format!("bad default for parameter `{}`: {e}", param.name)).at(file, at("default")))?;
            } else if serde_json::from_value::<SecretRef>(d.clone()).is_err() {
                return Err(Diagnostic::new(format!("the default of secret parameter `{}` must be a reference: `{{ env: VAR }}`, `{{ file: PATH }}`, `{{ aws_secret: NAME#KEY }}` or `{{ k8s_secret: NAMESPACE/NAME#KEY }}`", param.name))
                    .at(file, at("default")));
            }
        }
        Ok(param)
    }

    /// The type for messages: `int (0 ≤ n)`, `enum (fast, safe)`.
    pub fn describe_type(&self) -> String {
        let mut s = self.decl.ty.name().to_string();
        match self.decl.ty {
            ParamType::Enum => s.push_str(&format!(" ({})", self.decl.values.join(", "))),
            ParamType::Int | ParamType::Duration => {
                let show = |b: &Bound| match b {
                    Bound::Int(i) => i.to_string(),
                    Bound::Duration(d) => d.to_string(),
                };
                match (&self.min, &self.max) {
                    (Some(lo), Some(hi)) => s.push_str(&format!(" from {} to {}", show(lo), show(hi))),
                    (Some(lo), None) => s.push_str(&format!(" ≥ {}", show(lo))),
                    (None, Some(hi)) => s.push_str(&format!(" ≤ {}", show(hi))),
                    (None, None) => {}
                }
            }
            ParamType::String => {
                if let Some(p) = &self.decl.pattern {
                    s.push_str(&format!(" matching {p}"));
                }
            }
            _ => {}
        }
        s
    }

    /// A value given as text on the command line.
    pub fn parse(&self, text: &str) -> Result<ParamValue, String> {
        let value = match self.decl.ty {
            ParamType::String => ParamValue::String(text.to_string()),
            ParamType::Secret => ParamValue::Secret(Secret::new(text)),
            ParamType::Enum => ParamValue::String(text.to_string()),
            ParamType::Int => ParamValue::Int(text.trim().parse().map_err(|_| format!("expected a whole number, found \"{text}\""))?),
            ParamType::Bool => ParamValue::Bool(match text.trim() {
                "true" | "yes" | "1" | "on" => true,
                "false" | "no" | "0" | "off" => false,
                _ => return Err(format!("expected true or false, found \"{text}\"")),
            }),
            ParamType::Duration => ParamValue::Duration(Duration::parse(text)?),
        };
        self.check(value)
    }

    /// The declared default as a value.
    pub fn from_default(&self, v: &serde_json::Value) -> Result<ParamValue, String> {
        use serde_json::Value as J;
        let value = match (self.decl.ty, v) {
            (ParamType::Secret, _) => {
                let r: SecretRef = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
                ParamValue::Secret(r.resolve()?)
            }
            (ParamType::String | ParamType::Enum, J::String(s)) => ParamValue::String(s.clone()),
            (ParamType::String | ParamType::Enum, J::Number(n)) => ParamValue::String(n.to_string()),
            (ParamType::Int, J::Number(n)) => ParamValue::Int(n.as_i64().ok_or_else(|| format!("expected a whole number, found {n}"))?),
            (ParamType::Bool, J::Bool(b)) => ParamValue::Bool(*b),
            (ParamType::Duration, J::String(s)) => ParamValue::Duration(Duration::parse(s)?),
            (ty, other) => return Err(format!("expected {}, found {other}", ty.name())),
        };
        self.check(value)
    }

    fn check(&self, value: ParamValue) -> Result<ParamValue, String> {
        match &value {
            ParamValue::Int(i) => {
                if let Some(Bound::Int(lo)) = self.min
                    && *i < lo {
                        return Err(format!("{i} is below the minimum {lo}"));
                    }
                if let Some(Bound::Int(hi)) = self.max
                    && *i > hi {
                        return Err(format!("{i} is above the maximum {hi}"));
                    }
            }
            ParamValue::Duration(d) => {
                if let Some(Bound::Duration(lo)) = self.min
                    && *d < lo {
                        return Err(format!("{d} is shorter than the minimum {lo}"));
                    }
                if let Some(Bound::Duration(hi)) = self.max
                    && *d > hi {
                        return Err(format!("{d} is longer than the maximum {hi}"));
                    }
            }
            ParamValue::String(s) if self.decl.ty == ParamType::Enum
                && !self.decl.values.iter().any(|v| v == s) => {
                    let mut msg = format!("\"{s}\" is not one of {}", self.decl.values.join(", "));
                    if let Some(m) = crate::diagnostic::did_you_mean(s, self.decl.values.iter().map(String::as_str)) {
                        msg.push_str(&format!("; did you mean `{m}`?"));
                    }
                    return Err(msg);
                }
            ParamValue::String(s) => {
                if let Some(p) = &self.decl.pattern
                    && !p.is_match(s) {
                        return Err(format!("\"{s}\" does not match {p}"));
                    }
            }
            _ => {}
        }
        Ok(value)
    }
}
