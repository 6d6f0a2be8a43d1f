//! The Alertmanager backend: which alerts fire now (`alertmanager.alerts`), and silences set
//! and removed around maintenance (`alertmanager.silence`, `alertmanager.expire`), through
//! its HTTP API (`/api/v2/…`).
//!
//! ```yaml
//! alertmanager: { url: http://alertmanager:9093 }
//! ```

pub mod alerts;
pub mod expire;
pub mod settings;
pub mod silence;

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};

use crate::helpers::http::{Call, Endpoint, HttpClients};
use crate::kind::StepContext;
use crate::pattern::Pattern;
use crate::vocab::{ErrorClass, StepError};

/// The instance's Alertmanager, or a clear error.
pub fn endpoint(ctx: &StepContext) -> Result<Endpoint, StepError> {
    ctx.instance.alertmanager.as_ref().map(|a| a.endpoint()).ok_or_else(|| {
        StepError::invalid(format!(
            "instance {} has no Alertmanager settings; add `alertmanager: {{ url: http://alertmanager:9093 }}` to it in the inventory",
            ctx.instance.name
        ))
    })
}

/// Calls the API: `Ok(answer)`, or `Err((status, body))` for a 404 the caller explains;
/// other refusals say what they are (400 quotes Alertmanager's reason as the runbook's
/// mistake).
pub async fn api(ctx: &StepContext, call: Call<'_>) -> Result<Result<Value, u16>, StepError> {
    match endpoint(ctx)?.json(&ctx.resources.get::<HttpClients>(), "Alertmanager", call).await? {
        Ok(v) => Ok(Ok(v)),
        Err(r) if r.status == 404 => Ok(Err(404)),
        Err(r) if r.status == 400 || r.status == 422 => {
            let said = serde_json::from_str::<Value>(&r.body).ok().and_then(|v| v.as_str().map(str::to_string).or_else(|| v["message"].as_str().map(str::to_string)));
            Err(StepError::invalid(format!("{} refused the request: {}", r.at, said.unwrap_or_else(|| r.body.trim().to_string()))))
        }
        Err(r) => Err(r.error()),
    }
}

/// Calls the API, where a 404 is an error too.
pub async fn found(ctx: &StepContext, call: Call<'_>, what: &str) -> Result<Value, StepError> {
    api(ctx, call).await?.map_err(|_| StepError::new(ErrorClass::Failed, format!("no {what} in Alertmanager at {}", endpoint(ctx).map(|e| e.url).unwrap_or_default())))
}

/// A label matcher as Alertmanager writes them: `severity="critical"`, `severity=~"critical|page"`,
/// `env!="dev"`, `job!~"test.*"` (quotes optional).
#[derive(Clone, Debug, PartialEq)]
pub struct Matcher {
    pub name: String,
    pub value: String,
    pub regex: bool,
    pub equal: bool,
}

impl Matcher {
    pub fn parse(s: &str) -> Result<Matcher, String> {
        let at = s.find(['=', '!']).ok_or_else(|| format!("`{s}` is not a matcher such as `severity=\"critical\"` or `severity=~\"critical|page\"`"))?;
        let (name, rest) = s.split_at(at);
        let name = name.trim();
        let (op, value) = ["=~", "!~", "!=", "="].iter().find_map(|op| rest.strip_prefix(op).map(|v| (*op, v))).ok_or_else(|| format!("`{s}`: the operator is one of =, !=, =~, !~"))?;
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') || name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(format!("`{s}`: `{name}` is not a label name (letters, digits and _)"));
        }
        let value = value.trim();
        let value = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value).replace("\\\"", "\"");
        let regex = op.ends_with('~');
        if regex {
            Pattern::new(&format!("^(?:{value})$")).map_err(|e| format!("`{s}`: {e}"))?;
        }
        Ok(Matcher { name: name.to_string(), value, regex, equal: !op.starts_with('!') })
    }

    /// For the API's `filter` parameter.
    pub fn filter(&self) -> String {
        self.to_string()
    }

    /// For a silence.
    pub fn json(&self) -> Value {
        json!({ "name": self.name, "value": self.value, "isRegex": self.regex, "isEqual": self.equal })
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match (self.equal, self.regex) {
            (true, false) => "=",
            (false, false) => "!=",
            (true, true) => "=~",
            (false, true) => "!~",
        };
        write!(f, "{}{op}\"{}\"", self.name, self.value.replace('"', "\\\""))
    }
}

impl<'de> Deserialize<'de> for Matcher {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Matcher, D::Error> {
        let s = String::deserialize(d)?;
        if crate::yaml::de::is_placeholder(&s) {
            // A template: checked once rendered.
            return Ok(Matcher { name: String::new(), value: s, regex: false, equal: true });
        }
        Matcher::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Matcher {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Matcher".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string", "description": "A label matcher: name=\"value\", name!=\"value\", name=~\"regex\", name!~\"regex\"" })
    }
}

/// `a="b", c=~"d"`.
pub fn describe(matchers: &[Matcher]) -> String {
    matchers.iter().map(Matcher::to_string).collect::<Vec<_>>().join(", ")
}

/// The active alerts matching `matchers`, as the API lists them.
pub async fn active_alerts(ctx: &StepContext, matchers: &[Matcher], silenced: bool, inhibited: bool) -> Result<Vec<Value>, StepError> {
    let mut call = Call::get("/api/v2/alerts").query("active", "true").query("silenced", silenced.to_string()).query("inhibited", inhibited.to_string());
    for m in matchers {
        call = call.query("filter", m.filter());
    }
    let answer = found(ctx, call, "alerts API").await?;
    Ok(answer.as_array().cloned().unwrap_or_default())
}

/// An alert for messages: `HighErrorRate {instance="api-1", severity="critical"} since 12:03 — the summary`.
pub fn alert_line(a: &Value) -> String {
    let labels = a["labels"].as_object().cloned().unwrap_or_default();
    let name = labels.get("alertname").and_then(Value::as_str).unwrap_or("?");
    let rest: Vec<String> = labels.iter().filter(|(k, _)| *k != "alertname").map(|(k, v)| format!("{k}=\"{}\"", v.as_str().unwrap_or_default())).collect();
    let since = a["startsAt"].as_str().and_then(|t| t.parse::<jiff::Timestamp>().ok()).map(|t| format!(" since {}", t.strftime("%Y-%m-%d %H:%M:%SZ"))).unwrap_or_default();
    let summary = a["annotations"]["summary"].as_str().map(|s| format!(" — {}", crate::helpers::text::truncate(s, 120))).unwrap_or_default();
    format!("{name} {{{}}}{since}{summary}", rest.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matchers_read_as_alertmanager_writes_them() {
        let m = Matcher::parse("severity=~\"critical|page\"").unwrap();
        assert_eq!((m.name.as_str(), m.value.as_str(), m.regex, m.equal), ("severity", "critical|page", true, true));
        assert_eq!(m.to_string(), "severity=~\"critical|page\"");
        let m = Matcher::parse("env!=dev").unwrap();
        assert_eq!(m.to_string(), "env!=\"dev\"");
        assert_eq!(Matcher::parse("job!~test.*").unwrap().json(), json!({"name": "job", "value": "test.*", "isRegex": true, "isEqual": false}));
        assert!(Matcher::parse("severity").unwrap_err().contains("is not a matcher"));
        assert!(Matcher::parse("sev-erity=x").unwrap_err().contains("is not a label name"));
        assert!(Matcher::parse("a=~\"(\"").unwrap_err().contains("invalid regular expression"));
    }
}
