//! `postgres.terminate_long_queries`: end sessions that ran too long. A dry run lists
//! exactly who would be terminated.

use schemars::JsonSchema;
use serde::Deserialize;

use super::long_queries::{Session, SessionState, sessions_older_than};
use crate::duration::Duration;
use crate::kind::{StepContext, StepKind};
use crate::vocab::{Effect, Outcome, Output, StepError};

/// Terminate client sessions running (or idle in a transaction) longer than `older_than`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Terminate {
    /// How long is too long. Default 10m.
    #[serde(default = "default_older")]
    pub older_than: Duration,
    /// Which states to end. Default both active and idle in transaction.
    #[serde(default = "default_states")]
    pub states: Vec<SessionState>,
    /// Only sessions of these users.
    #[serde(default)]
    pub users: Vec<String>,
}

fn default_older() -> Duration {
    Duration::from_secs(600)
}
fn default_states() -> Vec<SessionState> {
    vec![SessionState::Active, SessionState::IdleInTransaction]
}

fn list(sessions: &[Session]) -> String {
    sessions.iter().map(Session::describe).collect::<Vec<_>>().join("; ")
}

impl StepKind for Terminate {
    const NAME: &'static str = "postgres.terminate_long_queries";
    const SUMMARY: &'static str = "terminate sessions running or idle in a transaction longer than a limit";
    const EFFECT: Effect = Effect::Mutate;
    const LEASES: &'static [&'static str] = &[super::lease::NAME];
    const OUTPUTS: &'static [Output] = &[
        Output { name: "count", ty: "int", help: "sessions terminated" },
        Output { name: "terminated", ty: "list", help: "the sessions (pid, user, database, state, seconds, query)" },
    ];

    fn check(&self) -> Result<(), String> {
        if self.older_than.std().as_secs() < 1 {
            return Err("`older_than` must be at least 1s".into());
        }
        Ok(())
    }

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let (_, client) = super::client(ctx, None).await?;
        let sessions = sessions_older_than(&client, self.older_than, &self.states, &self.users).await?;
        let mut done = Vec::new();
        for s in &sessions {
            let row = client
                .query_one("SELECT pg_terminate_backend($1)", &[&s.pid])
                .await
                .map_err(|e| super::conn::query_error(&e, &format!("terminating pid {}", s.pid)))?;
            if row.get::<_, bool>(0) {
                done.push(s.clone());
            }
        }
        let message = if done.is_empty() {
            format!("no session longer than {}", self.older_than)
        } else {
            format!("terminated {}: {}", done.len(), list(&done))
        };
        Ok(Outcome::passed(message)
            .value(done.len().to_string())
            .output("count", done.len())
            .output("terminated", serde_json::to_value(&done).unwrap_or_default()))
    }

    async fn plan(&self, ctx: &StepContext) -> Result<String, StepError> {
        let (_, client) = super::client(ctx, None).await?;
        let sessions = sessions_older_than(&client, self.older_than, &self.states, &self.users).await?;
        Ok(if sessions.is_empty() {
            format!("would terminate nobody: no session longer than {}", self.older_than)
        } else {
            format!("would terminate {}: {}", sessions.len(), list(&sessions))
        })
    }
}
