//! `postgres.size`: the database's size and its largest tables.

use schemars::JsonSchema;
use serde::Deserialize;

use crate::helpers::threshold::Limits;
use crate::kind::{StepContext, StepKind};
use crate::units::{ByteSize, human_bytes};
use crate::vocab::{Effect, Outcome, Output, StepError};

/// Database size and the top-N tables by total size (with indexes and TOAST).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Size {
    /// Another database on the instance's server.
    #[serde(default)]
    pub database: Option<String>,
    /// How many tables to list. Default 10.
    #[serde(default = "ten")]
    pub top: u32,
    /// Warn when the database is larger, e.g. `50GB`.
    #[serde(default)]
    pub warn_bytes: Option<ByteSize>,
    /// Fail when the database is larger.
    #[serde(default)]
    pub fail_bytes: Option<ByteSize>,
}

fn ten() -> u32 {
    10
}

impl StepKind for Size {
    const NAME: &'static str = "postgres.size";
    const SUMMARY: &'static str = "database size and the largest tables, against warn/fail sizes";
    const EFFECT: Effect = Effect::Read;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "database_bytes", ty: "int", help: "pg_database_size" },
        Output { name: "tables", ty: "list", help: "name, total_bytes, table_bytes, rows_estimate; largest first" },
    ];

    fn check(&self) -> Result<(), String> {
        self.limits().check_order("warn_bytes", "fail_bytes")
    }

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let (info, client) = super::client(ctx, self.database.as_deref()).await?;
        let db: i64 = client
            .query_one("SELECT pg_database_size(current_database())", &[])
            .await
            .map_err(|e| super::conn::query_error(&e, "reading the database size"))?
            .get(0);
        let rows = super::query(
            &client,
            "SELECT n.nspname || '.' || c.relname, pg_total_relation_size(c.oid), pg_relation_size(c.oid), c.reltuples::bigint \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' \
             ORDER BY 2 DESC, 1 LIMIT $1",
            &[&i64::from(self.top)],
            "reading table sizes",
        )
        .await?;
        let tables: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "name": r.get::<_, String>(0),
                    "total_bytes": r.get::<_, i64>(1),
                    "table_bytes": r.get::<_, i64>(2),
                    "rows_estimate": r.get::<_, i64>(3),
                })
            })
            .collect();
        let biggest: Vec<String> = tables
            .iter()
            .take(3)
            .map(|t| format!("{} {}", t["name"].as_str().unwrap_or(""), human_bytes(t["total_bytes"].as_u64().unwrap_or(0))))
            .collect();
        let limits = self.limits();
        let mut message = format!("{} is {}", info.database, human_bytes(db as u64));
        if !biggest.is_empty() {
            message.push_str(&format!("; largest: {}", biggest.join(", ")));
        }
        Ok(Outcome::new(limits.verdict(db as f64), message)
            .value(human_bytes(db as u64))
            .threshold(limits.describe(|b| human_bytes(b as u64)))
            .output("database_bytes", db)
            .output("tables", tables))
    }
}

impl Size {
    fn limits(&self) -> Limits {
        Limits::above(self.warn_bytes.map(|b| b.0 as f64), self.fail_bytes.map(|b| b.0 as f64))
    }
}
