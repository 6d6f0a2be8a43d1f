//! `postgres.bloat`: dead rows per table, the part of a table VACUUM would reclaim.
//!
//! The estimate is `n_dead_tup / (n_live_tup + n_dead_tup)` from the statistics collector,
//! and that share of the table's size: cheap, needs no extension, and is what autovacuum
//! itself acts on.

use schemars::JsonSchema;
use serde::Deserialize;

use crate::helpers::threshold::{Limits, check_ratio, percent};
use crate::kind::{StepContext, StepKind};
use crate::units::human_bytes;
use crate::vocab::{Effect, Outcome, Output, StepError};

/// Estimate bloat per table from dead-row statistics.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Bloat {
    /// Another database on the instance's server.
    #[serde(default)]
    pub database: Option<String>,
    /// Ignore tables with fewer rows (live + dead). Default 1000.
    #[serde(default = "thousand")]
    pub min_rows: i64,
    /// How many tables to list. Default 10.
    #[serde(default = "ten")]
    pub top: u32,
    /// Warn when a table's dead share is above this (0–1). Default 0.2.
    #[serde(default = "warn_default")]
    pub warn_ratio: Option<f64>,
    /// Fail when a table's dead share is above this (0–1).
    #[serde(default)]
    pub fail_ratio: Option<f64>,
}

fn thousand() -> i64 {
    1000
}
fn ten() -> u32 {
    10
}
fn warn_default() -> Option<f64> {
    Some(0.2)
}

impl StepKind for Bloat {
    const NAME: &'static str = "postgres.bloat";
    const SUMMARY: &'static str = "dead-row share per table (bloat estimate), against warn/fail ratios";
    const EFFECT: Effect = Effect::Read;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "worst_ratio", ty: "float", help: "the highest dead share of a listed table" },
        Output { name: "tables", ty: "list", help: "name, live_rows, dead_rows, dead_ratio, bytes, bloat_bytes, last_vacuum; worst first" },
    ];

    fn check(&self) -> Result<(), String> {
        check_ratio("warn_ratio", self.warn_ratio)?;
        check_ratio("fail_ratio", self.fail_ratio)?;
        self.limits().check_order("warn_ratio", "fail_ratio")
    }

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let (info, client) = super::client(ctx, self.database.as_deref()).await?;
        let rows = super::query(
            &client,
            "SELECT schemaname || '.' || relname, n_live_tup, n_dead_tup, \
                    n_dead_tup::float8 / greatest(n_live_tup + n_dead_tup, 1), pg_total_relation_size(relid), \
                    greatest(last_vacuum, last_autovacuum)::text \
             FROM pg_stat_user_tables WHERE n_live_tup + n_dead_tup >= $1 \
             ORDER BY 4 DESC, 1 LIMIT $2",
            &[&self.min_rows, &i64::from(self.top)],
            "reading pg_stat_user_tables",
        )
        .await?;
        let tables: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                let ratio: f64 = r.get(3);
                let bytes: i64 = r.get(4);
                serde_json::json!({
                    "name": r.get::<_, String>(0),
                    "live_rows": r.get::<_, i64>(1),
                    "dead_rows": r.get::<_, i64>(2),
                    "dead_ratio": (ratio * 1000.0).round() / 1000.0,
                    "bytes": bytes,
                    "bloat_bytes": (bytes as f64 * ratio) as i64,
                    "last_vacuum": r.get::<_, Option<String>>(5),
                })
            })
            .collect();
        let worst = tables.first().and_then(|t| t["dead_ratio"].as_f64()).unwrap_or(0.0);
        let limits = self.limits();
        let message = match tables.first() {
            None => format!("no table in {} has {} rows or more", info.database, self.min_rows),
            Some(t) => format!(
                "worst: {} with {} dead rows ({} dead, ~{} reclaimable)",
                t["name"].as_str().unwrap_or(""),
                t["dead_rows"],
                percent(worst * 100.0),
                human_bytes(t["bloat_bytes"].as_u64().unwrap_or(0))
            ),
        };
        Ok(Outcome::new(limits.verdict(worst), message)
            .value(percent(worst * 100.0))
            .threshold(limits.describe(|r| percent(r * 100.0)))
            .output("worst_ratio", worst)
            .output("tables", tables))
    }
}

impl Bloat {
    fn limits(&self) -> Limits {
        Limits::above(self.warn_ratio, self.fail_ratio)
    }
}
