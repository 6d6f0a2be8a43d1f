//! The Prometheus backend: what an operator reads off Prometheus every morning and in every
//! incident — a query judged against thresholds (`prometheus.query`), the scrape targets
//! (`prometheus.targets`), the rules and the alerts they fire (`prometheus.rules`) — through
//! its HTTP API (`/api/v1/…`).
//!
//! ```yaml
//! prometheus: { url: http://prometheus:9090, headers: { Authorization: { env: PROM_TOKEN } } }
//! ```

pub mod query;
pub mod rules;
pub mod settings;
pub mod targets;

use serde_json::{Map, Value};

use crate::helpers::http::{Call, Endpoint, HttpClients};
use crate::kind::StepContext;
use crate::vocab::{ErrorClass, StepError};

/// The instance's Prometheus, or a clear error.
pub fn endpoint(ctx: &StepContext) -> Result<&Endpoint, StepError> {
    ctx.instance.prometheus.as_ref().ok_or_else(|| {
        StepError::invalid(format!(
            "instance {} has no Prometheus settings; add `prometheus: {{ url: http://prometheus:9090 }}` to it in the inventory",
            ctx.instance.name
        ))
    })
}

/// Calls the API and returns its `data`. Prometheus's own errors say what is wrong: a query
/// it cannot parse (400) is the runbook's mistake, one it cannot evaluate (422) is named as
/// such, and a Prometheus not ready yet (503) is retried by `retry.on: [http_5xx]`.
pub async fn api(ctx: &StepContext, call: Call<'_>) -> Result<Value, StepError> {
    let endpoint = endpoint(ctx)?;
    let answer = match endpoint.json(&ctx.resources.get::<HttpClients>(), "Prometheus", call).await? {
        Ok(v) => v,
        Err(refused) => {
            let said = serde_json::from_str::<Value>(&refused.body).ok().and_then(|v| v["error"].as_str().map(str::to_string));
            return Err(match (refused.status, said) {
                (400, Some(e)) => StepError::invalid(format!("Prometheus rejected the query: {e}")),
                (422, Some(e)) => StepError::error(format!("Prometheus could not evaluate the query: {e}")),
                _ => refused.error(),
            });
        }
    };
    if answer["status"] != "success" {
        let why = answer["error"].as_str().unwrap_or("no reason given");
        return Err(StepError::new(ErrorClass::Error, format!("Prometheus at {} answered status {}: {why}", endpoint.url, answer["status"])));
    }
    Ok(answer["data"].clone())
}

/// A series as Prometheus writes it: `http_requests_total{code="500", job="api"}`; `{}` for
/// a series without labels.
pub fn series_name(metric: &Map<String, Value>) -> String {
    let name = metric.get("__name__").and_then(Value::as_str).unwrap_or_default();
    let labels: Vec<String> = metric.iter().filter(|(k, _)| *k != "__name__").map(|(k, v)| format!("{k}=\"{}\"", v.as_str().unwrap_or_default())).collect();
    if labels.is_empty() && !name.is_empty() { name.to_string() } else { format!("{name}{{{}}}", labels.join(", ")) }
}

/// A sample's value, as the API writes it (`"0.5"`, `"NaN"`, `"+Inf"`).
pub fn sample(v: &Value) -> Option<f64> {
    match v.as_str()? {
        "NaN" => Some(f64::NAN),
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        s => s.parse().ok(),
    }
}

/// A value for messages: `0.9312`, `1234.5`, `NaN`.
pub fn number(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf".into() } else { "-Inf".into() };
    }
    let text = if v.abs() >= 1000.0 { format!("{v:.1}") } else { format!("{v:.4}") };
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_and_values_read_as_prometheus_writes_them() {
        let m = serde_json::json!({"__name__": "up", "job": "api", "instance": "a:9100"});
        assert_eq!(series_name(m.as_object().unwrap()), "up{job=\"api\", instance=\"a:9100\"}");
        assert_eq!(series_name(serde_json::json!({}).as_object().unwrap()), "{}");
        assert!(sample(&serde_json::json!("NaN")).unwrap().is_nan());
        assert_eq!(sample(&serde_json::json!("0.25")), Some(0.25));
        assert_eq!(number(0.93125), "0.9313");
        assert_eq!(number(2.0), "2");
        assert_eq!(number(1234.56), "1234.6");
    }
}
