//! `notify.slack`: a message to a Slack incoming webhook.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;

use super::{OUTPUTS, post};
use crate::kind::{StepContext, StepKind};
use crate::secret::SecretRef;
use crate::vocab::{Effect, Outcome, Output, StepError};

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
