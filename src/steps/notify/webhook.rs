//! `notify.webhook`: POST a JSON document to a webhook.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;

use super::{OUTPUTS, post};
use crate::kind::{StepContext, StepKind};
use crate::secret::{HeaderValue, SecretRef};
use crate::vocab::{Effect, Outcome, Output, StepError};

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
