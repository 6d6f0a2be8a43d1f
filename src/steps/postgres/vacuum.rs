//! `postgres.vacuum`: VACUUM (ANALYZE) a table or the whole database.

use std::time::Instant;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::kind::{StepContext, StepKind};
use crate::vocab::{Effect, Outcome, Output, StepError};

/// VACUUM a table, or every table of the database; with ANALYZE by default.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Vacuum {
    /// `schema.table` or `table`. Default: the whole database.
    #[serde(default)]
    pub table: Option<String>,
    /// Another database on the instance's server.
    #[serde(default)]
    pub database: Option<String>,
    /// Also refresh planner statistics. Default true.
    #[serde(default = "yes")]
    pub analyze: bool,
    /// VACUUM FULL: rewrites tables and holds an exclusive lock while it does.
    #[serde(default)]
    pub full: bool,
}

fn yes() -> bool {
    true
}

impl Vacuum {
    fn statement(&self) -> String {
        let mut opts = Vec::new();
        if self.full {
            opts.push("FULL");
        }
        if self.analyze {
            opts.push("ANALYZE");
        }
        let opts = if opts.is_empty() { String::new() } else { format!(" ({})", opts.join(", ")) };
        match &self.table {
            Some(t) => format!("VACUUM{opts} {}", super::quote_qualified(t)),
            None => format!("VACUUM{opts}"),
        }
    }

    /// The tables affected and their dead rows, checking that a named table exists.
    async fn targets(&self, client: &tokio_postgres::Client) -> Result<Vec<(String, i64)>, StepError> {
        let rows = super::query(
            client,
            "SELECT schemaname || '.' || relname, n_dead_tup FROM pg_stat_user_tables \
             WHERE $1::text IS NULL OR relid = to_regclass($1::text) ORDER BY n_dead_tup DESC, 1",
            &[&self.table],
            "reading pg_stat_user_tables",
        )
        .await?;
        if let (Some(t), true) = (&self.table, rows.is_empty()) {
            return Err(StepError::invalid(format!("table {t} does not exist")));
        }
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }
}

impl StepKind for Vacuum {
    const NAME: &'static str = "postgres.vacuum";
    const SUMMARY: &'static str = "VACUUM (ANALYZE) a table or the whole database";
    const EFFECT: Effect = Effect::Mutate;
    const LEASES: &'static [&'static str] = &[super::lease::NAME];
    const OUTPUTS: &'static [Output] = &[
        Output { name: "tables", ty: "int", help: "tables vacuumed" },
        Output { name: "dead_rows_before", ty: "int", help: "dead rows in them before" },
    ];

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let (info, client) = super::client(ctx, self.database.as_deref()).await?;
        let targets = self.targets(&client).await?;
        let dead: i64 = targets.iter().map(|(_, d)| d).sum();
        let sql = self.statement();
        let started = Instant::now();
        client.batch_execute(&sql).await.map_err(|e| super::conn::query_error(&e, &sql))?;
        let what = self.table.clone().unwrap_or_else(|| format!("{} tables of {}", targets.len(), info.database));
        Ok(Outcome::passed(format!("{sql}: {what}, {dead} dead rows before, in {}", crate::duration::short(started.elapsed())))
            .value(format!("{} tables", targets.len()))
            .output("tables", targets.len())
            .output("dead_rows_before", dead))
    }

    async fn plan(&self, ctx: &StepContext) -> Result<String, StepError> {
        let (info, client) = super::client(ctx, self.database.as_deref()).await?;
        let targets = self.targets(&client).await?;
        let dead: i64 = targets.iter().map(|(_, d)| d).sum();
        let most: Vec<String> = targets.iter().filter(|(_, d)| *d > 0).take(3).map(|(t, d)| format!("{t} {d}")).collect();
        let mut s = format!("would run {} on {}: {} tables, {dead} dead rows", self.statement(), info.database, targets.len());
        if !most.is_empty() {
            s.push_str(&format!(" (most: {})", most.join(", ")));
        }
        Ok(s)
    }
}
