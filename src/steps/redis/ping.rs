//! `redis.ping`: does Redis answer — connect, AUTH, `PING` — and how fast; which version and
//! role it is.

use std::time::Instant;

use schemars::JsonSchema;
use serde::Deserialize;

use super::conn::Reply;
use crate::duration::Duration;
use crate::helpers::threshold::Limits;
use crate::kind::{StepContext, StepKind};
use crate::vocab::{Effect, ErrorClass, Outcome, Output, StepError};

/// Connect, authenticate and PING; judge the PING's round trip.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Ping {
    /// Warn when PING takes longer than this.
    #[serde(default)]
    pub warn_latency: Option<Duration>,
    /// Fail when PING takes longer than this.
    #[serde(default)]
    pub fail_latency: Option<Duration>,
}

impl StepKind for Ping {
    const NAME: &'static str = "redis.ping";
    const SUMMARY: &'static str = "connect, AUTH, PING: latency warn/fail; the server's version and role";
    const EFFECT: Effect = Effect::Read;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "latency_ms", ty: "float", help: "PING's round trip" },
        Output { name: "version", ty: "string", help: "redis_version" },
        Output { name: "role", ty: "string", help: "master or slave (replica)" },
    ];

    fn check(&self) -> Result<(), String> {
        Limits::above_durations(self.warn_latency, self.fail_latency).check_order("warn_latency", "fail_latency")
    }

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let mut conn = super::connect(ctx).await?;
        let sent = Instant::now();
        let reply = conn.ok(&["PING"]).await?;
        let rtt = sent.elapsed();
        if reply != Reply::Status("PONG".into()) {
            return Err(StepError::new(ErrorClass::Failed, format!("Redis at {} answered PING with {reply:?}", conn.shown)));
        }
        let info = conn.info().await?;
        let version = info.get("redis_version").unwrap_or("?").to_string();
        let role = info.get("role").unwrap_or("?").to_string();
        let limits = Limits::above_durations(self.warn_latency, self.fail_latency);
        let ms = (rtt.as_secs_f64() * 10_000.0).round() / 10.0;
        Ok(Outcome::new(
            limits.verdict(rtt.as_secs_f64()),
            format!("PONG from Redis {version} ({role}) at {} in {} (connected in {})", conn.shown, crate::duration::short(rtt), crate::duration::short(conn.connect_time)),
        )
        .value(crate::duration::short(rtt))
        .threshold(limits.describe_durations())
        .output("latency_ms", ms)
        .output("version", version)
        .output("role", role))
    }
}
