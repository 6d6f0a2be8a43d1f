//! `notify.webhook` and `notify.slack`: tell people. The URL is always a secret reference,
//! since a webhook URL is a credential.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;

use crate::helpers::http::{ClientKey, HttpClients, classify};
use crate::kind::{StepContext, StepKind};
use crate::secret::{HeaderValue, SecretRef};
use crate::vocab::{Effect, ErrorClass, Outcome, Output, StepError, Verdict};

/// POST a JSON document to a webhook.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    /// The webhook URL, as a secret reference: `{ env: ALERT_WEBHOOK }`.
    pub url: SecretRef,
    /// The JSON document to send. Default: `{"text": <text>}`.
    #[serde(default)]
    pub json: Option<serde_json::Value>,
    /// Shorthand for `json: { text: … }`.
    #[serde(default)]
    pub text: Option<String>,
    /// Extra headers; values may be secret references.
    #[serde(default)]
    pub headers: IndexMap<String, HeaderValue>,
}

/// Post a message to a Slack incoming webhook.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Slack {
    /// The incoming-webhook URL, as a secret reference: `{ env: SLACK_WEBHOOK }`.
    pub webhook: SecretRef,
    /// The message (Slack mrkdwn).
    pub text: String,
    /// Override the webhook's channel.
    #[serde(default)]
    pub channel: Option<String>,
    /// Override the poster's name.
    #[serde(default)]
    pub username: Option<String>,
    /// Override the poster's icon, e.g. `:rotating_light:`.
    #[serde(default)]
    pub icon_emoji: Option<String>,
}

const OUTPUTS: &[Output] = &[Output { name: "status_code", ty: "int", help: "the webhook's HTTP status" }];

impl StepKind for Webhook {
    const NAME: &'static str = "notify.webhook";
    const SUMMARY: &'static str = "POST a JSON document to a webhook (URL from a secret)";
    const EFFECT: Effect = Effect::Mutate;
    const OUTPUTS: &'static [Output] = OUTPUTS;

    fn check(&self) -> Result<(), String> {
        match (&self.json, &self.text) {
            (Some(_), Some(_)) => Err("give either `json` or `text`, not both".into()),
            (None, None) => Err("give the message as `text:` or the document as `json:`".into()),
            _ => Ok(()),
        }
    }

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let doc = match (&self.json, &self.text) {
            (Some(j), _) => j.clone(),
            (None, t) => serde_json::json!({ "text": t.clone().unwrap_or_default() }),
        };
        post(ctx, &self.url, &self.headers, &doc).await
    }

    async fn plan(&self, _ctx: &StepContext) -> Result<String, StepError> {
        Ok(format!("would POST to the webhook in {}", self.url.describe()))
    }
}

impl StepKind for Slack {
    const NAME: &'static str = "notify.slack";
    const SUMMARY: &'static str = "post a message to a Slack incoming webhook (URL from a secret)";
    const EFFECT: Effect = Effect::Mutate;
    const OUTPUTS: &'static [Output] = OUTPUTS;

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let mut doc = serde_json::json!({ "text": self.text });
        for (key, value) in [("channel", &self.channel), ("username", &self.username), ("icon_emoji", &self.icon_emoji)] {
            if let Some(v) = value {
                doc[key] = serde_json::Value::String(v.clone());
            }
        }
        post(ctx, &self.webhook, &IndexMap::new(), &doc).await
    }

    async fn plan(&self, _ctx: &StepContext) -> Result<String, StepError> {
        Ok(format!("would post to Slack (webhook in {}): {}", self.webhook.describe(), self.text))
    }
}

async fn post(
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
