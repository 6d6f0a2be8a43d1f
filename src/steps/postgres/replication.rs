//! `postgres.replication`: replica lag, seen from the primary (pg_stat_replication) or from a
//! replica (the last replayed transaction).

use schemars::JsonSchema;
use serde::Deserialize;

use crate::duration::{Duration, short};
use crate::helpers::threshold::Limits;
use crate::kind::{StepContext, StepKind};
use crate::units::{ByteSize, human_bytes};
use crate::vocab::{Effect, Outcome, Output, StepError, Verdict};

/// Replication lag against thresholds; optionally how many replicas must be connected.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Replication {
    /// Warn when a replica is further behind (time).
    #[serde(default)]
    pub warn_lag: Option<Duration>,
    /// Fail when a replica is further behind (time).
    #[serde(default)]
    pub fail_lag: Option<Duration>,
    /// Warn when a replica is further behind (WAL bytes, on the primary).
    #[serde(default)]
    pub warn_lag_bytes: Option<ByteSize>,
    /// Fail when a replica is further behind (WAL bytes, on the primary).
    #[serde(default)]
    pub fail_lag_bytes: Option<ByteSize>,
    /// On the primary: fail when fewer replicas are connected.
    #[serde(default)]
    pub expect_replicas: Option<u32>,
}

impl StepKind for Replication {
    const NAME: &'static str = "postgres.replication";
    const SUMMARY: &'static str = "replica lag (time and WAL bytes) from the primary or a replica; expected replica count";
    const EFFECT: Effect = Effect::Read;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "role", ty: "string", help: "primary or replica" },
        Output { name: "replicas", ty: "list", help: "on the primary: name, client, state, sync_state, lag_bytes, lag_seconds" },
        Output { name: "max_lag_seconds", ty: "float", help: "the largest lag in seconds (null when unknown)" },
        Output { name: "max_lag_bytes", ty: "int", help: "the largest lag in WAL bytes (primary)" },
    ];

    fn check(&self) -> Result<(), String> {
        self.time_limits().check_order("warn_lag", "fail_lag")?;
        self.byte_limits().check_order("warn_lag_bytes", "fail_lag_bytes")
    }

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let (_, client) = super::client(ctx, None).await?;
        let in_recovery: bool = client
            .query_one("SELECT pg_is_in_recovery()", &[])
            .await
            .map_err(|e| super::conn::query_error(&e, "pg_is_in_recovery"))?
            .get(0);
        if in_recovery {
            let row = client
                .query_one(
                    "SELECT CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 \
                            ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp()) END::float8",
                    &[],
                )
                .await
                .map_err(|e| super::conn::query_error(&e, "reading the replay position"))?;
            let lag: Option<f64> = row.get(0);
            let limits = self.time_limits();
            let verdict = lag.map_or(Verdict::Warned, |l| limits.verdict(l));
            let message = match lag {
                Some(l) => format!("replica, {} behind the primary", short(std::time::Duration::from_secs_f64(l.max(0.0)))),
                None => "replica that has not replayed anything yet".to_string(),
            };
            return Ok(Outcome::new(verdict, message)
                .value(lag.map_or("n/a".into(), |l| short(std::time::Duration::from_secs_f64(l.max(0.0)))))
                .threshold(limits.describe_durations())
                .output("role", "replica")
                .output("replicas", serde_json::json!([]))
                .output("max_lag_seconds", lag)
                .output("max_lag_bytes", serde_json::Value::Null));
        }
        let rows = super::query(
            &client,
            "SELECT coalesce(application_name, ''), coalesce(client_addr::text, 'local'), coalesce(state, ''), coalesce(sync_state, ''), \
                    coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn), 0)::bigint, extract(epoch FROM replay_lag)::float8 \
             FROM pg_stat_replication ORDER BY 1",
            &[],
            "reading pg_stat_replication",
        )
        .await?;
        let replicas: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "name": r.get::<_, String>(0),
                    "client": r.get::<_, String>(1),
                    "state": r.get::<_, String>(2),
                    "sync_state": r.get::<_, String>(3),
                    "lag_bytes": r.get::<_, i64>(4),
                    "lag_seconds": r.get::<_, Option<f64>>(5).unwrap_or(0.0),
                })
            })
            .collect();
        let max_bytes = replicas.iter().filter_map(|r| r["lag_bytes"].as_i64()).max().unwrap_or(0);
        let max_secs = replicas.iter().filter_map(|r| r["lag_seconds"].as_f64()).fold(0.0, f64::max);
        let mut verdict = self.time_limits().verdict(max_secs).max(self.byte_limits().verdict(max_bytes as f64));
        let mut message = if replicas.is_empty() {
            "primary with no replicas connected".to_string()
        } else {
            let names: Vec<String> = replicas.iter().map(|r| format!("{} ({})", r["name"].as_str().unwrap_or(""), r["state"].as_str().unwrap_or(""))).collect();
            format!(
                "primary with {} replica(s): {}; max lag {} / {}",
                replicas.len(),
                names.join(", "),
                short(std::time::Duration::from_secs_f64(max_secs)),
                human_bytes(max_bytes as u64)
            )
        };
        if let Some(n) = self.expect_replicas
            && (replicas.len() as u32) < n {
                verdict = Verdict::Failed;
                message = format!("{message}; expected at least {n}");
            }
        let mut thresholds: Vec<String> = Vec::new();
        thresholds.extend(self.time_limits().describe_durations());
        thresholds.extend(self.byte_limits().describe(|b| human_bytes(b as u64)));
        Ok(Outcome::new(verdict, message)
            .value(format!("{} replicas", replicas.len()))
            .threshold((!thresholds.is_empty()).then(|| thresholds.join("; ")))
            .output("role", "primary")
            .output("replicas", replicas)
            .output("max_lag_seconds", max_secs)
            .output("max_lag_bytes", max_bytes))
    }
}

impl Replication {
    fn time_limits(&self) -> Limits {
        Limits::above_durations(self.warn_lag, self.fail_lag)
    }
    fn byte_limits(&self) -> Limits {
        Limits::above(self.warn_lag_bytes.map(|b| b.0 as f64), self.fail_lag_bytes.map(|b| b.0 as f64))
    }
}
