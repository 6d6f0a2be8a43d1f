//! `postgres.connections`: sessions by state against `max_connections`.

use schemars::JsonSchema;
use serde::Deserialize;

use crate::helpers::threshold::{Limits, check_ratio};
use crate::kind::{StepContext, StepKind};
use crate::vocab::{Effect, Outcome, Output, StepError};

/// Client sessions (total, active, idle, idle in transaction; per database) against
/// `max_connections`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Connections {
    /// Warn above this share of max_connections (0–1). Default 0.8.
    #[serde(default = "warn_default")]
    pub warn_ratio: Option<f64>,
    /// Fail above this share of max_connections (0–1). Default 0.95.
    #[serde(default = "fail_default")]
    pub fail_ratio: Option<f64>,
}

fn warn_default() -> Option<f64> {
    Some(0.8)
}
fn fail_default() -> Option<f64> {
    Some(0.95)
}

impl StepKind for Connections {
    const NAME: &'static str = "postgres.connections";
    const SUMMARY: &'static str = "sessions by state and database against max_connections (warn/fail ratio)";
    const EFFECT: Effect = Effect::Read;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "total", ty: "int", help: "client sessions" },
        Output { name: "active", ty: "int", help: "running a query" },
        Output { name: "idle", ty: "int", help: "idle" },
        Output { name: "idle_in_transaction", ty: "int", help: "idle inside an open transaction" },
        Output { name: "max_connections", ty: "int", help: "the server's limit" },
        Output { name: "ratio", ty: "float", help: "total / max_connections" },
        Output { name: "by_database", ty: "map", help: "sessions per database" },
    ];

    fn check(&self) -> Result<(), String> {
        check_ratio("warn_ratio", self.warn_ratio)?;
        check_ratio("fail_ratio", self.fail_ratio)?;
        self.limits().check_order("warn_ratio", "fail_ratio")
    }

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let (_, client) = super::client(ctx, None).await?;
        let max: i32 = client
            .query_one("SELECT current_setting('max_connections')::int", &[])
            .await
            .map_err(|e| super::conn::query_error(&e, "reading max_connections"))?
            .get(0);
        let rows = super::query(
            &client,
            "SELECT coalesce(datname, ''), coalesce(state, 'unknown'), count(*)::bigint FROM pg_stat_activity WHERE backend_type = 'client backend' GROUP BY 1, 2",
            &[],
            "reading pg_stat_activity",
        )
        .await?;
        let (mut total, mut active, mut idle, mut idle_tx) = (0i64, 0i64, 0i64, 0i64);
        let mut by_db = serde_json::Map::new();
        for r in &rows {
            let (db, state, n): (String, String, i64) = (r.get(0), r.get(1), r.get(2));
            total += n;
            match state.as_str() {
                "active" => active += n,
                "idle" => idle += n,
                "idle in transaction" | "idle in transaction (aborted)" => idle_tx += n,
                _ => {}
            }
            let e = by_db.entry(db).or_insert(serde_json::json!(0));
            *e = serde_json::json!(e.as_i64().unwrap_or(0) + n);
        }
        let ratio = total as f64 / f64::from(max.max(1));
        let limits = self.limits();
        Ok(Outcome::new(
            limits.verdict(ratio),
            format!("{total} of {max} connections ({active} active, {idle} idle, {idle_tx} idle in transaction)"),
        )
        .value(format!("{total}/{max} ({:.0}%)", ratio * 100.0))
        .threshold(limits.describe(|r| format!("{:.0}%", r * 100.0)))
        .output("total", total)
        .output("active", active)
        .output("idle", idle)
        .output("idle_in_transaction", idle_tx)
        .output("max_connections", max)
        .output("ratio", (ratio * 1000.0).round() / 1000.0)
        .output("by_database", by_db))
    }
}

impl Connections {
    fn limits(&self) -> Limits {
        Limits::above(self.warn_ratio, self.fail_ratio)
    }
}
