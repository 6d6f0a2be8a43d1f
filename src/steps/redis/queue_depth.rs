//! `redis.queue_depth`: how many jobs wait in a worker's queue — `LLEN`, `XLEN`, `ZCARD` or
//! `SCARD` by the key's type — against thresholds: the OpsForge guide's "queue depth of the
//! worker".

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::helpers::threshold::Limits;
use crate::kind::{StepContext, StepKind};
use crate::vocab::{Effect, Judgement, Outcome, Output, StepError, Verdict};

/// Measure the length of queue keys (list, stream, sorted set or set).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueDepth {
    /// The keys: `queue:emails`, `bull:orders:wait`, `stream:events`.
    pub keys: Vec<String>,
    /// Warn when a queue holds more than this.
    #[serde(default)]
    pub warn_above: Option<u64>,
    /// Fail when a queue holds more than this.
    #[serde(default)]
    pub fail_above: Option<u64>,
    /// What a key that does not exist means — Redis deletes an empty list, so it is an empty
    /// queue, or a wrong name: `pass` (default, and said so), `warn` or `fail`.
    #[serde(default = "pass")]
    pub on_missing: Judgement,
}

fn pass() -> Judgement {
    Judgement::Pass
}

impl StepKind for QueueDepth {
    const NAME: &'static str = "redis.queue_depth";
    const SUMMARY: &'static str = "length of queue keys (LLEN, XLEN, ZCARD, SCARD by type) against warn/fail_above; a missing key is `on_missing`";
    const EFFECT: Effect = Effect::Read;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "depths", ty: "map", help: "each key's length (0 for a missing key)" },
        Output { name: "max", ty: "int", help: "the longest queue" },
    ];

    fn check(&self) -> Result<(), String> {
        if self.keys.is_empty() {
            return Err("`keys` is empty: name the queues to measure".into());
        }
        Limits::above_counts(self.warn_above, self.fail_above).check_order("warn_above", "fail_above")
    }

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let mut conn = super::connect(ctx).await?;
        let limits = Limits::above_counts(self.warn_above, self.fail_above);
        let mut verdict = Verdict::Passed;
        let mut parts = Vec::new();
        let mut depths = serde_json::Map::new();
        for key in &self.keys {
            let kind = conn.ok(&["TYPE", key]).await?.text().unwrap_or_default();
            let command = match kind.as_str() {
                "list" => "LLEN",
                "stream" => "XLEN",
                "zset" => "ZCARD",
                "set" => "SCARD",
                "none" => {
                    verdict = verdict.max(self.on_missing.verdict());
                    depths.insert(key.clone(), json!(0));
                    parts.push(format!("{key} does not exist (an empty queue, or a wrong name)"));
                    continue;
                }
                other => return Err(StepError::invalid(format!("key {key} is a {other}, not a queue (a list, stream, sorted set or set)"))),
            };
            let n = conn.ok(&[command, key]).await?.int().unwrap_or(0);
            verdict = verdict.max(limits.verdict(n as f64));
            depths.insert(key.clone(), json!(n));
            parts.push(format!("{key} {n} ({kind})"));
        }
        let max = depths.values().filter_map(Value::as_i64).max().unwrap_or(0);
        Ok(Outcome::new(verdict, parts.join(", "))
            .value(format!("{max} max"))
            .threshold(limits.describe(|v| format!("{v:.0}")))
            .output("depths", Value::Object(depths))
            .output("max", max))
    }
}
