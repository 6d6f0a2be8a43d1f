//! `postgres.slow_queries`: the slowest statements by mean time, from pg_stat_statements.

use schemars::JsonSchema;
use serde::Deserialize;

use crate::duration::Duration;
use crate::helpers::text::truncate;
use crate::helpers::threshold::Limits;
use crate::kind::{StepContext, StepKind};
use crate::vocab::{Effect, Outcome, Output, StepError, Verdict};

/// Top-N statements by mean execution time. Without pg_stat_statements the step warns
/// and says how to enable it.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SlowQueries {
    /// Another database on the instance's server.
    #[serde(default)]
    pub database: Option<String>,
    /// How many statements. Default 10.
    #[serde(default = "ten")]
    pub top: u32,
    /// Ignore statements called fewer times. Default 1.
    #[serde(default = "one")]
    pub min_calls: i64,
    /// Warn when the slowest mean is above this.
    #[serde(default)]
    pub warn_mean: Option<Duration>,
    /// Fail when the slowest mean is above this.
    #[serde(default)]
    pub fail_mean: Option<Duration>,
    /// Fail (not warn) when pg_stat_statements is missing.
    #[serde(default)]
    pub require_extension: bool,
}

fn ten() -> u32 {
    10
}
fn one() -> i64 {
    1
}

impl StepKind for SlowQueries {
    const NAME: &'static str = "postgres.slow_queries";
    const SUMMARY: &'static str = "slowest statements by mean time from pg_stat_statements (warns when it is missing)";
    const EFFECT: Effect = Effect::Read;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "available", ty: "bool", help: "whether pg_stat_statements could be read" },
        Output { name: "queries", ty: "list", help: "query, calls, mean_ms, total_ms, rows; slowest first" },
    ];

    fn check(&self) -> Result<(), String> {
        self.limits().check_order("warn_mean", "fail_mean")
    }

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let (info, client) = super::client(ctx, self.database.as_deref()).await?;
        let installed = !super::query(&client, "SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'", &[], "reading pg_extension")
            .await?
            .is_empty();
        let missing = |why: String| {
            let v = if self.require_extension { Verdict::Failed } else { Verdict::Warned };
            Ok(Outcome::new(v, why).value("n/a").output("available", false).output("queries", serde_json::json!([])))
        };
        if !installed {
            let preloaded: String = client
                .query_one("SELECT current_setting('shared_preload_libraries')", &[])
                .await
                .map_err(|e| super::conn::query_error(&e, "reading shared_preload_libraries"))?
                .get(0);
            let how = if preloaded.contains("pg_stat_statements") {
                "run CREATE EXTENSION pg_stat_statements in it".to_string()
            } else {
                "add it to shared_preload_libraries, restart the server, then run CREATE EXTENSION pg_stat_statements".to_string()
            };
            return missing(format!("pg_stat_statements is not installed in database {}: {how}", info.database));
        }
        let (version, _) = super::server_version(&client).await?;
        let (mean, total) = if version >= 130_000 { ("mean_exec_time", "total_exec_time") } else { ("mean_time", "total_time") };
        let sql = format!(
            "SELECT query, calls, {mean}, {total}, rows FROM pg_stat_statements \
             WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND calls >= $1 \
             ORDER BY {mean} DESC LIMIT $2"
        );
        let rows = match client.query(&sql, &[&self.min_calls, &i64::from(self.top)]).await {
            Ok(r) => r,
            Err(e) => {
                let msg = e.as_db_error().map(|d| d.message().to_string()).unwrap_or_else(|| e.to_string());
                return missing(format!("pg_stat_statements cannot be read in {}: {msg}", info.database));
            }
        };
        let queries: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "query": truncate(&r.get::<_, String>(0), 300),
                    "calls": r.get::<_, i64>(1),
                    "mean_ms": (r.get::<_, f64>(2) * 100.0).round() / 100.0,
                    "total_ms": (r.get::<_, f64>(3) * 100.0).round() / 100.0,
                    "rows": r.get::<_, i64>(4),
                })
            })
            .collect();
        let worst_ms = queries.first().and_then(|q| q["mean_ms"].as_f64()).unwrap_or(0.0);
        let limits = self.limits();
        let message = match queries.first() {
            None => format!("no statement in {} called {} times or more", info.database, self.min_calls),
            Some(q) => format!("slowest: {:.1} ms mean over {} calls: {}", worst_ms, q["calls"], truncate(q["query"].as_str().unwrap_or(""), 80)),
        };
        Ok(Outcome::new(limits.verdict(worst_ms / 1000.0), message)
            .value(format!("{worst_ms:.1}ms"))
            .threshold(limits.describe_durations())
            .output("available", true)
            .output("queries", queries))
    }
}

impl SlowQueries {
    fn limits(&self) -> Limits {
        Limits::above_durations(self.warn_mean, self.fail_mean)
    }
}
