//! The notify backend: `notify.webhook` and `notify.slack` tell people. The URL is always a
//! secret reference, since a webhook URL is a credential.

pub mod slack;
pub mod webhook;

use indexmap::IndexMap;

use crate::helpers::http::{ClientKey, HttpClients, classify};
use crate::kind::StepContext;
use crate::secret::{HeaderValue, SecretRef};
use crate::vocab::{ErrorClass, Outcome, Output, StepError, Verdict};

pub const OUTPUTS: &[Output] = &[Output { name: "status_code", ty: "int", help: "the webhook's HTTP status" }];

pub async fn post(
    ctx: &StepContext,
    url: &SecretRef,
    headers: &IndexMap<String, HeaderValue>,
    doc: &serde_json::Value,
) -> Result<Outcome, StepError> {
    let secret = url.resolve().map_err(|e| StepError::invalid(format!("webhook URL: {e}")))?;
    let parsed = reqwest::Url::parse(secret.expose())
        .map_err(|e| StepError::invalid(format!("the webhook URL in {} is not a URL: {e}", url.describe())))?;
    let client = ctx.resources.get::<HttpClients>().client(&ClientKey::default())?;
    let mut request = client.post(parsed.clone()).header("content-type", "application/json").body(doc.to_string());
    for (name, value) in headers {
        let v = value.resolve().map_err(|e| StepError::invalid(format!("header {name}: {e}")))?;
        request = request.header(name.as_str(), v);
    }
    let response = request.send().await.map_err(|e| classify(&e, &parsed))?;
    let code = response.status().as_u16();
    let body = response.text().await.unwrap_or_default();
    let outcome = if (200..300).contains(&code) {
        Outcome::passed(format!("delivered ({code})"))
    } else {
        let class = match code {
            429 => ErrorClass::Throttled,
            500..=599 => ErrorClass::Http5xx,
            _ => ErrorClass::Failed,
        };
        Outcome::new(Verdict::Failed, format!("the webhook answered {code}: {}", body.trim())).class(class)
    };
    Ok(outcome.value(code.to_string()).output("status_code", code))
}
