//! `postgres.ping`: connect, `SELECT 1`, report latency and version (what `pg_isready` and
//! `psql -c 'select 1'` are used for).

use std::time::Instant;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::duration::{Duration, short};
use crate::helpers::threshold::Limits;
use crate::kind::{StepContext, StepKind};
use crate::vocab::{Effect, Outcome, Output, StepError};

/// Open a fresh connection and run `SELECT 1`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Ping {
    /// Another database on the instance's server.
    #[serde(default)]
    pub database: Option<String>,
    /// Warn when connecting and answering takes longer.
    #[serde(default)]
    pub warn_latency: Option<Duration>,
    /// Fail when connecting and answering takes longer.
    #[serde(default)]
    pub fail_latency: Option<Duration>,
}

impl StepKind for Ping {
    const NAME: &'static str = "postgres.ping";
    const SUMMARY: &'static str = "connect and SELECT 1: latency, server version, primary or replica";
    const EFFECT: Effect = Effect::Read;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "latency_ms", ty: "float", help: "connect + SELECT 1, in milliseconds" },
        Output { name: "server_version", ty: "string", help: "e.g. 15.18" },
        Output { name: "server_version_num", ty: "int", help: "e.g. 150018" },
        Output { name: "in_recovery", ty: "bool", help: "true on a replica" },
        Output { name: "database", ty: "string", help: "the database connected to" },
    ];

    fn check(&self) -> Result<(), String> {
        self.limits().check_order("warn_latency", "fail_latency")
    }

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let info = super::conn_info(ctx, self.database.as_deref()).await?;
        let started = Instant::now();
        let client = info.connect("opsctl ping").await?;
        let row = client
            .query_one("SELECT 1, current_setting('server_version_num')::int, current_setting('server_version'), pg_is_in_recovery()", &[])
            .await
            .map_err(|e| super::conn::query_error(&e, "SELECT 1"))?;
        let latency = started.elapsed();
        let num: i32 = row.get(1);
        let version: String = row.get(2);
        let version = version.split_whitespace().next().unwrap_or_default().to_string();
        let recovery: bool = row.get(3);
        let limits = self.limits();
        let role = if recovery { "replica" } else { "primary" };
        Ok(Outcome::new(
            limits.verdict(latency.as_secs_f64()),
            format!("PostgreSQL {version} ({role}) at {} answered in {}", info.target(), short(latency)),
        )
        .value(short(latency))
        .threshold(limits.describe_durations())
        .output("latency_ms", super::ms(latency))
        .output("server_version", version)
        .output("server_version_num", num)
        .output("in_recovery", recovery)
        .output("database", info.database.clone()))
    }
}

impl Ping {
    fn limits(&self) -> Limits {
        Limits::above_durations(self.warn_latency, self.fail_latency)
    }
}
