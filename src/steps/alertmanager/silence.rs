//! `alertmanager.silence`: silence the alerts a maintenance will cause — a restore, a drain —
//! before it starts, with a comment naming the run; `alertmanager.expire` lifts it (in an
//! `always` step, so it is lifted however the run ends). A dry run says which alerts firing
//! now it would cover, and creates nothing.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

use super::{Matcher, active_alerts, api, describe};
use crate::duration::Duration;
use crate::helpers::http::Call;
use crate::kind::{StepContext, StepKind};
use crate::vocab::{Effect, Outcome, Output, StepError};

/// Create a silence for the alerts matching `matchers`, for `duration`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Silence {
    /// What to silence: every alert matching all of these (`namespace="team-a"`).
    pub matchers: Vec<Matcher>,
    /// How long. The silence ends by itself then, even if nothing expires it.
    pub duration: Duration,
    /// Why, for whoever looks at the silence. Default: the runbook and run id.
    #[serde(default)]
    pub comment: Option<String>,
    /// Who, for whoever looks at the silence. Default: `opsctl (user@host)`.
    #[serde(default)]
    pub created_by: Option<String>,
}

impl Silence {
    async fn covered(&self, ctx: &StepContext) -> Result<String, StepError> {
        let alerts = active_alerts(ctx, &self.matchers, false, true).await?;
        Ok(if alerts.is_empty() {
            "no alert firing now".to_string()
        } else {
            let names: Vec<String> = alerts.iter().take(10).map(|a| a["labels"]["alertname"].as_str().unwrap_or("?").to_string()).collect();
            format!("{} alert(s) firing now: {}", alerts.len(), names.join(", "))
        })
    }
}

impl StepKind for Silence {
    const NAME: &'static str = "alertmanager.silence";
    const SUMMARY: &'static str = "create a silence (matchers, duration, a comment naming the run); a dry run lists the firing alerts it would cover";
    const EFFECT: Effect = Effect::Mutate;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "id", ty: "string", help: "the silence, for alertmanager.expire" },
        Output { name: "ends_at", ty: "string", help: "when it ends by itself" },
    ];

    fn check(&self) -> Result<(), String> {
        if self.matchers.is_empty() {
            return Err("`matchers` is empty: a silence needs at least one, or it would silence everything".into());
        }
        if self.duration.std().is_zero() {
            return Err("`duration` must be longer than 0s".into());
        }
        Ok(())
    }

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let now = jiff::Timestamp::now();
        let ends = now + jiff::SignedDuration::try_from(self.duration.std()).map_err(|e| StepError::invalid(format!("`duration`: {e}")))?;
        let comment = self.comment.clone().unwrap_or_else(|| format!("opsctl: runbook {}, run {}", ctx.run.runbook, ctx.run.run_id));
        let created_by = self.created_by.clone().unwrap_or_else(|| format!("opsctl ({}@{})", crate::sysinfo::user(), crate::sysinfo::hostname()));
        let body = json!({
            "matchers": self.matchers.iter().map(Matcher::json).collect::<Vec<_>>(),
            "startsAt": now.to_string(),
            "endsAt": ends.to_string(),
            "createdBy": created_by,
            "comment": comment,
        });
        let covered = self.covered(ctx).await?;
        let answer = api(ctx, Call { method: reqwest::Method::POST, path: "/api/v2/silences", query: Vec::new(), body: Some(body) })
            .await?
            .map_err(|_| StepError::error("Alertmanager has no silences API (/api/v2/silences answered 404)"))?;
        let id = answer["silenceID"].as_str().ok_or_else(|| StepError::error(format!("Alertmanager created a silence but gave no id: {answer}")))?;
        Ok(Outcome::passed(format!("silenced {} for {} (until {}, id {id}); it covers {covered}", describe(&self.matchers), self.duration, ends.strftime("%Y-%m-%d %H:%M:%SZ")))
            .value(id.to_string())
            .output("id", id)
            .output("ends_at", ends.to_string()))
    }

    async fn plan(&self, ctx: &StepContext) -> Result<String, StepError> {
        Ok(format!("would silence {} for {}; it would cover {}", describe(&self.matchers), self.duration, self.covered(ctx).await?))
    }
}
