//! `postgres.reindex`: rebuild the indexes of a table or of the whole database, without
//! blocking writes (CONCURRENTLY) where the server supports it (PostgreSQL 12+).

use std::time::Instant;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::kind::{StepContext, StepKind};
use crate::units::human_bytes;
use crate::vocab::{Effect, Outcome, Output, StepError};

/// REINDEX a table, or the database.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Reindex {
    /// `schema.table` or `table`. Default: the whole database.
    #[serde(default)]
    pub table: Option<String>,
    /// Another database on the instance's server.
    #[serde(default)]
    pub database: Option<String>,
    /// Rebuild without blocking writes (PostgreSQL 12+; ignored on older servers, which
    /// the message says). Default true.
    #[serde(default = "yes")]
    pub concurrently: bool,
}

fn yes() -> bool {
    true
}

impl Reindex {
    async fn indexes(&self, client: &tokio_postgres::Client) -> Result<(i64, i64), StepError> {
        let row = client
            .query_one(
                "SELECT count(*), coalesce(sum(pg_relation_size(i.indexrelid)), 0)::bigint FROM pg_index i \
                 JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' \
                   AND ($1::text IS NULL OR i.indrelid = to_regclass($1::text))",
                &[&self.table],
            )
            .await
            .map_err(|e| super::conn::query_error(&e, "reading pg_index"))?;
        if let Some(t) = &self.table {
            let exists = client
                .query_one("SELECT to_regclass($1::text) IS NOT NULL", &[t])
                .await
                .map_err(|e| super::conn::query_error(&e, "looking up the table"))?;
            if !exists.get::<_, bool>(0) {
                return Err(StepError::invalid(format!("table {t} does not exist")));
            }
        }
        Ok((row.get(0), row.get(1)))
    }

    async fn statement(&self, client: &tokio_postgres::Client, database: &str) -> Result<(String, bool), StepError> {
        let (version, _) = super::server_version(client).await?;
        let concurrently = self.concurrently && version >= 120_000;
        let c = if concurrently { " CONCURRENTLY" } else { "" };
        let sql = match &self.table {
            Some(t) => format!("REINDEX TABLE{c} {}", super::quote_qualified(t)),
            None => format!("REINDEX DATABASE{c} {}", super::quote_ident(database)),
        };
        Ok((sql, self.concurrently && !concurrently))
    }
}

impl StepKind for Reindex {
    const NAME: &'static str = "postgres.reindex";
    const SUMMARY: &'static str = "REINDEX a table or the database, CONCURRENTLY where the server supports it";
    const EFFECT: Effect = Effect::Mutate;
    const LEASES: &'static [&'static str] = &[super::lease::NAME];
    const OUTPUTS: &'static [Output] = &[
        Output { name: "indexes", ty: "int", help: "indexes rebuilt" },
        Output { name: "bytes_before", ty: "int", help: "their size before" },
        Output { name: "bytes_after", ty: "int", help: "their size after" },
    ];

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        // A dedicated session: REINDEX CONCURRENTLY cannot share a transaction.
        let info = super::conn_info(ctx, self.database.as_deref()).await?;
        let client = info.connect("opsctl reindex").await?;
        let (n, before) = self.indexes(&client).await?;
        let (sql, downgraded) = self.statement(&client, &info.database).await?;
        let started = Instant::now();
        client.batch_execute(&sql).await.map_err(|e| super::conn::query_error(&e, &sql))?;
        let (_, after) = self.indexes(&client).await?;
        let mut message = format!(
            "{sql}: {n} indexes, {} → {} in {}",
            human_bytes(before as u64),
            human_bytes(after as u64),
            crate::duration::short(started.elapsed())
        );
        if downgraded {
            message.push_str(" (the server is older than PostgreSQL 12: not concurrently)");
        }
        Ok(Outcome::passed(message)
            .value(format!("{n} indexes"))
            .output("indexes", n)
            .output("bytes_before", before)
            .output("bytes_after", after))
    }

    async fn plan(&self, ctx: &StepContext) -> Result<String, StepError> {
        let (info, client) = super::client(ctx, self.database.as_deref()).await?;
        let (n, bytes) = self.indexes(&client).await?;
        let (sql, downgraded) = self.statement(&client, &info.database).await?;
        Ok(format!(
            "would run {sql}: {n} indexes, {}{}",
            human_bytes(bytes as u64),
            if downgraded { " (not concurrently: the server is older than PostgreSQL 12)" } else { "" }
        ))
    }
}
