//! `alertmanager.expire`: lift a silence `alertmanager.silence` set, by id. One already
//! expired is left as it is (the cleanup step of a run that expired it before passes).

use schemars::JsonSchema;
use serde::Deserialize;

use super::{api, found};
use crate::helpers::http::Call;
use crate::kind::{StepContext, StepKind};
use crate::vocab::{Effect, Outcome, Output, StepError};

/// Expire a silence now.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Expire {
    /// The silence id (`steps.<silence step>.id`).
    pub id: String,
}

impl Expire {
    /// The silence's state (`active`, `pending`, `expired`) and what it matches.
    async fn state(&self, ctx: &StepContext) -> Result<(String, String), StepError> {
        let path = format!("/api/v2/silence/{}", self.id);
        let s = found(ctx, Call::get(&path), &format!("silence {}", self.id)).await?;
        let matchers: Vec<String> = s["matchers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| {
                let op = match (m["isEqual"].as_bool().unwrap_or(true), m["isRegex"].as_bool().unwrap_or(false)) {
                    (true, false) => "=",
                    (false, false) => "!=",
                    (true, true) => "=~",
                    (false, true) => "!~",
                };
                format!("{}{op}\"{}\"", m["name"].as_str().unwrap_or("?"), m["value"].as_str().unwrap_or(""))
            })
            .collect();
        Ok((s["status"]["state"].as_str().unwrap_or("unknown").to_string(), matchers.join(", ")))
    }
}

impl StepKind for Expire {
    const NAME: &'static str = "alertmanager.expire";
    const SUMMARY: &'static str = "expire a silence by id (one already expired is left as it is)";
    const EFFECT: Effect = Effect::Mutate;
    const OUTPUTS: &'static [Output] = &[Output { name: "id", ty: "string", help: "the silence" }];

    fn check(&self) -> Result<(), String> {
        if self.id.trim().is_empty() {
            return Err("`id` is empty: give the id `alertmanager.silence` output".into());
        }
        Ok(())
    }

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let (state, matchers) = self.state(ctx).await?;
        if state == "expired" {
            return Ok(Outcome::passed(format!("silence {} ({matchers}) is already expired", self.id)).value("expired").output("id", self.id.clone()));
        }
        let path = format!("/api/v2/silence/{}", self.id);
        api(ctx, Call { method: reqwest::Method::DELETE, path: &path, query: Vec::new(), body: None })
            .await?
            .map_err(|_| StepError::new(crate::vocab::ErrorClass::Failed, format!("no silence {} in Alertmanager", self.id)))?;
        Ok(Outcome::passed(format!("expired silence {} ({matchers})", self.id)).value("expired").output("id", self.id.clone()))
    }

    async fn plan(&self, ctx: &StepContext) -> Result<String, StepError> {
        let (state, matchers) = self.state(ctx).await?;
        Ok(if state == "expired" {
            format!("silence {} ({matchers}) is already expired; nothing to do", self.id)
        } else {
            format!("would expire silence {} ({matchers}, {state})", self.id)
        })
    }
}
