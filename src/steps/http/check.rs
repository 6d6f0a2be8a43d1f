//! `http.check`: one request, judged on status, JSON fields, body, latency and the TLS
//! certificate's remaining life.

use std::path::PathBuf;
use std::time::Instant;

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::{Duration, short};
use crate::helpers::http::{ClientKey, HttpClients, classify};
use crate::helpers::threshold::Limits;
use crate::kind::{StepContext, StepKind};
use crate::pattern::Pattern;
use crate::secret::HeaderValue;
use crate::vocab::{Effect, ErrorClass, Outcome, Output, StepError, Verdict};
use crate::yaml::de::is_placeholder;

/// Request a URL and check the answer.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Check {
    /// The URL to request.
    pub url: String,
    /// HTTP method; anything but GET, HEAD and OPTIONS makes the step `mutate`.
    #[serde(default)]
    pub method: Method,
    /// Request headers; a value may be a secret reference (`{ env: API_TOKEN }`).
    #[serde(default)]
    pub headers: IndexMap<String, HeaderValue>,
    /// A request body sent as is.
    #[serde(default)]
    pub body: Option<String>,
    /// A request body sent as JSON.
    #[serde(default)]
    pub json: Option<serde_json::Value>,
    /// The status (or list of statuses) that passes. Default: any 2xx.
    #[serde(default)]
    pub expect_status: Option<StatusSet>,
    /// JSON fields by dotted path and the value each must have:
    /// `{ status: healthy, checks.database.status: healthy }`.
    #[serde(default)]
    pub expect_json: Option<IndexMap<String, serde_json::Value>>,
    /// A regex the body must match.
    #[serde(default)]
    pub expect_body: Option<Pattern>,
    /// Warn when the answer takes longer than this.
    #[serde(default)]
    pub warn_latency: Option<Duration>,
    /// Fail when the answer takes longer than this.
    #[serde(default)]
    pub fail_latency: Option<Duration>,
    /// Warn when the server's certificate expires in fewer days than this (https only).
    #[serde(default = "default_warn_cert_days")]
    pub warn_cert_days: Option<u32>,
    /// Fail when the server's certificate expires in fewer days than this (https only).
    #[serde(default)]
    pub fail_cert_days: Option<u32>,
    /// A PEM file of CA certificates to trust, for private CAs and self-signed servers.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Skip certificate verification (the expiry is still reported).
    #[serde(default)]
    pub insecure: bool,
}

fn default_warn_cert_days() -> Option<u32> {
    Some(14)
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    #[default]
    Get,
    Head,
    Options,
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    fn as_reqwest(self) -> reqwest::Method {
        match self {
            Method::Get => reqwest::Method::GET,
            Method::Head => reqwest::Method::HEAD,
            Method::Options => reqwest::Method::OPTIONS,
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
            Method::Patch => reqwest::Method::PATCH,
            Method::Delete => reqwest::Method::DELETE,
        }
    }
}

/// One status or a list: `200` or `[200, 204]`.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum StatusSet {
    One(u16),
    Many(Vec<u16>),
}

impl<'de> Deserialize<'de> for StatusSet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<StatusSet, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = StatusSet;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an HTTP status such as 200, or a list such as [200, 204]")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<StatusSet, E> {
                status(v).map(StatusSet::One)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<StatusSet, E> {
                match u64::try_from(v) {
                    Ok(v) => status(v).map(StatusSet::One),
                    Err(_) => Err(E::custom(format!("{v} is not an HTTP status (100-599)"))),
                }
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<StatusSet, E> {
                if is_placeholder(s) {
                    return Ok(StatusSet::One(200));
                }
                match s.trim().parse::<u64>() {
                    Ok(v) => status(v).map(StatusSet::One),
                    Err(_) => Err(E::custom(format!("\"{s}\" is not an HTTP status (100-599)"))),
                }
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<StatusSet, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = seq.next_element::<i64>()? {
                    let v = u64::try_from(v).map_err(|_| serde::de::Error::custom(format!("{v} is not an HTTP status (100-599)")))?;
                    out.push(status(v)?);
                }
                if out.is_empty() {
                    return Err(serde::de::Error::custom("the list of statuses is empty"));
                }
                Ok(StatusSet::Many(out))
            }
        }
        d.deserialize_any(V)
    }
}

fn status<E: serde::de::Error>(v: u64) -> Result<u16, E> {
    if (100..=599).contains(&v) { Ok(v as u16) } else { Err(E::custom(format!("{v} is not an HTTP status (100-599)"))) }
}

impl StatusSet {
    fn contains(&self, s: u16) -> bool {
        match self {
            StatusSet::One(v) => *v == s,
            StatusSet::Many(vs) => vs.contains(&s),
        }
    }
    fn describe(&self) -> String {
        match self {
            StatusSet::One(v) => v.to_string(),
            StatusSet::Many(vs) => vs.iter().map(u16::to_string).collect::<Vec<_>>().join(" or "),
        }
    }
}

/// Bodies kept in outputs, at most.
const BODY_OUTPUT_LIMIT: usize = 64 * 1024;
/// Bodies read, at most.
const BODY_READ_LIMIT: usize = 8 * 1024 * 1024;

impl StepKind for Check {
    const NAME: &'static str = "http.check";
    const SUMMARY: &'static str = "request a URL; check status, JSON fields, body, latency and TLS expiry";
    const EFFECT: Effect = Effect::Read;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "status_code", ty: "int", help: "the HTTP status" },
        Output { name: "latency_ms", ty: "float", help: "time to the full answer, in milliseconds" },
        Output { name: "body", ty: "string", help: "the body (first 64 KiB)" },
        Output { name: "json", ty: "map", help: "the body parsed as JSON, or null" },
        Output { name: "cert_days_left", ty: "int", help: "days until the server certificate expires (https), or null" },
        Output { name: "url", ty: "string", help: "the URL requested" },
    ];

    fn effect(&self) -> Effect {
        match self.method {
            Method::Get | Method::Head | Method::Options => Effect::Read,
            _ => Effect::Mutate,
        }
    }

    fn check(&self) -> Result<(), String> {
        Limits::above_durations(self.warn_latency, self.fail_latency)
            .check_order("warn_latency", "fail_latency")?;
        Limits::below(self.warn_cert_days.map(f64::from), self.fail_cert_days.map(f64::from))
            .check_order("warn_cert_days", "fail_cert_days")?;
        if self.body.is_some() && self.json.is_some() {
            return Err("give either `body` or `json`, not both".into());
        }
        Ok(())
    }

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let url = reqwest::Url::parse(&self.url).map_err(|e| StepError::invalid(format!("invalid URL `{}`: {e}", self.url)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(StepError::invalid(format!("URL `{}` must start with http:// or https://", self.url)));
        }
        let client = ctx.resources.get::<HttpClients>().client(&ClientKey { ca_file: self.ca_file.clone(), insecure: self.insecure })?;
        let mut request = client.request(self.method.as_reqwest(), url.clone());
        for (name, value) in &self.headers {
            let v = value.resolve().map_err(|e| StepError::invalid(format!("header {name}: {e}")))?;
            let hv = reqwest::header::HeaderValue::from_str(&v)
                .map_err(|_| StepError::invalid(format!("header {name} has characters not allowed in HTTP headers")))?;
            request = request.header(name.as_str(), hv);
        }
        if let Some(body) = &self.body {
            request = request.body(body.clone());
        }
        if let Some(json) = &self.json {
            request = request.header("content-type", "application/json").body(json.to_string());
        }

        let started = Instant::now();
        let mut response = request.send().await.map_err(|e| classify(&e, &url))?;
        let cert_days = response.extensions().get::<reqwest::tls::TlsInfo>().and_then(|t| t.peer_certificate()).and_then(cert_days_left);
        let code = response.status().as_u16();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| classify(&e, &url))? {
            if body.len() + chunk.len() > BODY_READ_LIMIT {
                return Err(StepError::error(format!("the body from {url} is larger than {BODY_READ_LIMIT} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        let latency = started.elapsed();
        let body = String::from_utf8_lossy(&body).into_owned();
        let json: Option<serde_json::Value> = serde_json::from_str(&body).ok();

        let mut verdict = Verdict::Passed;
        let mut class = None;
        let mut problems: Vec<String> = Vec::new();
        let mut fail = |v: Verdict, msg: String| {
            verdict = verdict.max(v);
            problems.push(msg);
        };

        let status_ok = match &self.expect_status {
            Some(set) => set.contains(code),
            None => (200..300).contains(&code),
        };
        if !status_ok {
            let expected = self.expect_status.as_ref().map_or("2xx".to_string(), StatusSet::describe);
            fail(Verdict::Failed, format!("status {code}, expected {expected}"));
            class = Some(match code {
                429 => ErrorClass::Throttled,
                500..=599 => ErrorClass::Http5xx,
                _ => ErrorClass::Failed,
            });
        }
        if let Some(expect) = &self.expect_json {
            match &json {
                None => fail(Verdict::Failed, format!("the body is not JSON: {}", snippet(&body))),
                Some(doc) => {
                    for (path, want) in expect {
                        match lookup(doc, path) {
                            None => fail(Verdict::Failed, format!("{path} is missing")),
                            Some(got) if !json_equal(got, want) => {
                                fail(Verdict::Failed, format!("{path} is {got}, expected {want}"))
                            }
                            Some(_) => {}
                        }
                    }
                }
            }
        }
        if let Some(pattern) = &self.expect_body
            && !pattern.is_match(&body) {
                fail(Verdict::Failed, format!("the body does not match {pattern}: {}", snippet(&body)));
            }
        let latency_limits = Limits::above_durations(self.warn_latency, self.fail_latency);
        match latency_limits.verdict(latency.as_secs_f64()) {
            Verdict::Passed => {}
            v => {
                let limit = if v == Verdict::Failed { self.fail_latency } else { self.warn_latency };
                fail(v, format!("took {}, more than {}", short(latency), limit.unwrap_or_default()));
            }
        }
        let cert_limits = Limits::below(self.warn_cert_days.map(f64::from), self.fail_cert_days.map(f64::from));
        if let Some(days) = cert_days {
            match cert_limits.verdict(days as f64) {
                Verdict::Passed => {}
                v => fail(v, format!("the TLS certificate expires in {days} days")),
            }
        }

        let mut thresholds = Vec::new();
        if let Some(t) = latency_limits.describe_durations() {
            thresholds.push(format!("latency {t}"));
        }
        if cert_days.is_some()
            && let Some(t) = cert_limits.describe(|d| format!("{d}d")) {
                thresholds.push(format!("cert {t}"));
            }
        let message = if problems.is_empty() {
            format!("{} {} answered {code}", self.method_name(), url)
        } else {
            problems.join("; ")
        };
        let mut value = format!("{code} in {}", short(latency));
        if let Some(days) = cert_days {
            value.push_str(&format!(", cert {days}d"));
        }
        let mut outcome = Outcome::new(verdict, message)
            .value(value)
            .threshold((!thresholds.is_empty()).then(|| thresholds.join("; ")))
            .output("status_code", code)
            .output("latency_ms", (latency.as_secs_f64() * 1000.0 * 10.0).round() / 10.0)
            .output("body", truncate(&body, BODY_OUTPUT_LIMIT))
            .output("json", json.unwrap_or(serde_json::Value::Null))
            .output("cert_days_left", cert_days.map(serde_json::Value::from).unwrap_or(serde_json::Value::Null))
            .output("url", url.to_string());
        if let Some(c) = class {
            outcome = outcome.class(c);
        }
        Ok(outcome)
    }

    async fn plan(&self, _ctx: &StepContext) -> Result<String, StepError> {
        Ok(format!("would send {} {}", self.method_name(), self.url))
    }
}

impl Check {
    fn method_name(&self) -> &'static str {
        match self.method {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Options => "OPTIONS",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }
}

/// `checks.database.status` or `items.0.name` in a JSON document.
pub fn lookup<'a>(doc: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    if let Some(v) = doc.as_object().and_then(|o| o.get(path)) {
        return Some(v);
    }
    path.split('.').try_fold(doc, |cur, part| match cur {
        serde_json::Value::Object(o) => o.get(part),
        serde_json::Value::Array(a) => part.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

/// Equality that treats `1` and `1.0` alike and compares text to numbers and booleans by
/// their text (`expect_json: { version: 2 }` matches `"2"`).
fn json_equal(got: &serde_json::Value, want: &serde_json::Value) -> bool {
    use serde_json::Value as J;
    match (got, want) {
        (J::Number(a), J::Number(b)) => a.as_f64() == b.as_f64(),
        (J::String(s), J::Number(n)) | (J::Number(n), J::String(s)) => s.trim().parse::<f64>().ok() == n.as_f64(),
        (J::String(s), J::Bool(b)) | (J::Bool(b), J::String(s)) => s.trim() == if *b { "true" } else { "false" },
        _ => got == want,
    }
}

fn cert_days_left(der: &[u8]) -> Option<i64> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let not_after = cert.validity().not_after.timestamp();
    let now = jiff::Timestamp::now().as_second();
    Some((not_after - now).div_euclid(86_400))
}

fn snippet(body: &str) -> String {
    let one_line: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.is_empty() {
        return "(empty)".into();
    }
    let cut = truncate(&one_line, 120);
    if cut.len() < one_line.len() { format!("{cut}…") } else { cut }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dotted_paths_reach_nested_fields() {
        let doc = json!({ "status": "healthy", "checks": { "database": { "status": "degraded" } }, "items": [{ "n": 1 }] });
        assert_eq!(lookup(&doc, "checks.database.status"), Some(&json!("degraded")));
        assert_eq!(lookup(&doc, "items.0.n"), Some(&json!(1)));
        assert_eq!(lookup(&doc, "checks.cache"), None);
    }

    #[test]
    fn json_values_compare_by_meaning() {
        assert!(json_equal(&json!(1.0), &json!(1)));
        assert!(json_equal(&json!("2"), &json!(2)));
        assert!(json_equal(&json!(2), &json!("2.0")));
        assert!(!json_equal(&json!("two"), &json!(2)));
        assert!(json_equal(&json!(true), &json!("true")));
        assert!(!json_equal(&json!("healthy"), &json!("degraded")));
    }
}
