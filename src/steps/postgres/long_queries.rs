//! `postgres.long_queries`: sessions running a query, or holding a transaction open, for
//! longer than a limit.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::Duration;
use crate::helpers::text::truncate;
use crate::helpers::threshold::Limits;
use crate::kind::{StepContext, StepKind};
use crate::vocab::{Effect, Outcome, Output, StepError};

/// Which sessions count as long-running.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    /// Running a query (measured from the query's start).
    Active,
    /// Idle inside an open transaction (measured from the transaction's start).
    IdleInTransaction,
}

fn default_states() -> Vec<SessionState> {
    vec![SessionState::Active, SessionState::IdleInTransaction]
}

/// A session found by [`sessions_older_than`].
#[derive(Clone, Debug, Serialize)]
pub struct Session {
    pub pid: i32,
    pub user: String,
    pub database: String,
    pub application: String,
    pub state: String,
    pub seconds: f64,
    pub query: String,
}

impl Session {
    pub fn describe(&self) -> String {
        format!(
            "pid {} {}@{} {} for {}: {}",
            self.pid,
            self.user,
            self.database,
            self.state,
            crate::duration::short(std::time::Duration::from_secs_f64(self.seconds)),
            truncate(&self.query, 60)
        )
    }
}

/// Client sessions in `states` for longer than `older_than`, longest first; never this
/// session itself.
pub async fn sessions_older_than(
    client: &tokio_postgres::Client,
    older_than: Duration,
    states: &[SessionState],
    users: &[String],
) -> Result<Vec<Session>, StepError> {
    let want_active = states.contains(&SessionState::Active);
    let want_idle_tx = states.contains(&SessionState::IdleInTransaction);
    let rows = super::query(
        client,
        "SELECT pid, coalesce(usename, ''), coalesce(datname, ''), coalesce(application_name, ''), state, \
                extract(epoch FROM age)::float8, coalesce(query, '') \
         FROM (SELECT *, CASE WHEN state = 'active' THEN now() - query_start ELSE now() - xact_start END AS age \
               FROM pg_stat_activity \
               WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() \
                 AND ((state = 'active' AND $1) OR (state LIKE 'idle in transaction%' AND $2))) s \
         WHERE age > make_interval(secs => $3) AND (cardinality($4::text[]) = 0 OR usename = ANY($4::text[])) \
         ORDER BY age DESC",
        &[&want_active, &want_idle_tx, &older_than.std().as_secs_f64(), &users],
        "reading pg_stat_activity",
    )
    .await?;
    Ok(rows
        .iter()
        .map(|r| Session {
            pid: r.get(0),
            user: r.get(1),
            database: r.get(2),
            application: r.get(3),
            state: r.get::<_, Option<String>>(4).unwrap_or_default(),
            seconds: (r.get::<_, f64>(5) * 10.0).round() / 10.0,
            query: truncate(&r.get::<_, String>(6), 200),
        })
        .collect())
}

/// List sessions running (or holding a transaction) longer than `older_than`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LongQueries {
    /// How long counts as long. Default 10s.
    #[serde(default = "default_older")]
    pub older_than: Duration,
    /// Which states to look at. Default both.
    #[serde(default = "default_states")]
    pub states: Vec<SessionState>,
    /// Warn when more sessions than this are long. Default 0 (any).
    #[serde(default = "zero")]
    pub warn_above: Option<u32>,
    /// Fail when more sessions than this are long.
    #[serde(default)]
    pub fail_above: Option<u32>,
}

fn default_older() -> Duration {
    Duration::from_secs(10)
}
fn zero() -> Option<u32> {
    Some(0)
}

impl StepKind for LongQueries {
    const NAME: &'static str = "postgres.long_queries";
    const SUMMARY: &'static str = "sessions running a query or holding a transaction longer than a limit";
    const EFFECT: Effect = Effect::Read;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "count", ty: "int", help: "long-running sessions" },
        Output { name: "queries", ty: "list", help: "pid, user, database, application, state, seconds, query (cut to 200 characters)" },
    ];

    fn check(&self) -> Result<(), String> {
        Limits::above(self.warn_above.map(f64::from), self.fail_above.map(f64::from)).check_order("warn_above", "fail_above")
    }

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let (_, client) = super::client(ctx, None).await?;
        let sessions = sessions_older_than(&client, self.older_than, &self.states, &[]).await?;
        let limits = Limits::above(self.warn_above.map(f64::from), self.fail_above.map(f64::from));
        let n = sessions.len();
        let message = if n == 0 {
            format!("no session longer than {}", self.older_than)
        } else {
            let shown: Vec<String> = sessions.iter().take(3).map(Session::describe).collect();
            format!("{n} longer than {}: {}{}", self.older_than, shown.join("; "), if n > 3 { "; …" } else { "" })
        };
        Ok(Outcome::new(limits.verdict(n as f64), message)
            .value(n.to_string())
            .threshold(limits.describe(|v| format!("{v:.0}")))
            .output("count", n)
            .output("queries", serde_json::to_value(&sessions).unwrap_or_default()))
    }
}
