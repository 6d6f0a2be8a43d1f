//! `redis.slowlog`: the commands Redis logged as slow in a window — what `SLOWLOG GET`
//! shows an operator chasing latency — counted against thresholds, with samples. Only the
//! command's name is shown: its arguments may hold data.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

use crate::duration::Duration;
use crate::helpers::threshold::Limits;
use crate::kind::{StepContext, StepKind};
use crate::vocab::{Effect, Outcome, Output, StepError};

/// Count slow-log entries slower than `slower_than` in the last `since`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Slowlog {
    /// Only entries that took longer than this. Default 10ms (Redis logs from
    /// `slowlog-log-slower-than`, 10ms unless configured).
    #[serde(default = "ten_ms")]
    pub slower_than: Duration,
    /// Only entries from the last `since`. Default 1h.
    #[serde(default = "crate::helpers::logscan::hour")]
    pub since: Duration,
    /// Warn when more entries than this are found.
    #[serde(default)]
    pub warn_above: Option<u64>,
    /// Fail when more entries than this are found.
    #[serde(default)]
    pub fail_above: Option<u64>,
    /// Samples kept (the slowest first). Default 5.
    #[serde(default = "crate::helpers::logscan::five")]
    pub samples: usize,
}

fn ten_ms() -> Duration {
    Duration::from_millis(10)
}

impl StepKind for Slowlog {
    const NAME: &'static str = "redis.slowlog";
    const SUMMARY: &'static str = "slow-log entries slower than a threshold in a window, counted against warn/fail_above; samples name the command, never its arguments";
    const EFFECT: Effect = Effect::Read;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "count", ty: "int", help: "entries found" },
        Output { name: "slowest_ms", ty: "float", help: "the slowest entry (null when none)" },
        Output { name: "samples", ty: "list", help: "the slowest: command, duration_ms, at" },
    ];

    fn check(&self) -> Result<(), String> {
        Limits::above_counts(self.warn_above, self.fail_above).check_order("warn_above", "fail_above")
    }

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let mut conn = super::connect(ctx).await?;
        let log = conn.ok(&["SLOWLOG", "GET", "128"]).await?;
        let since = jiff::Timestamp::now().as_second() - self.since.std().as_secs() as i64;
        let floor_us = self.slower_than.std().as_micros() as i64;
        let mut found: Vec<(String, f64, i64)> = log
            .items()
            .iter()
            .filter_map(|e| {
                let f = e.items();
                let (at, us) = (f.get(1)?.int()?, f.get(2)?.int()?);
                let command = f.get(3)?.items().first()?.text()?.to_uppercase();
                (at >= since && us > floor_us).then_some((command, us as f64 / 1000.0, at))
            })
            .collect();
        found.sort_by(|a, b| b.1.total_cmp(&a.1));
        let limits = Limits::above_counts(self.warn_above, self.fail_above);
        let message = match found.first() {
            None => format!("no command slower than {} in the last {}", self.slower_than, self.since),
            Some(slowest) => format!(
                "{} command(s) slower than {} in the last {}; slowest {} {:.1}ms",
                found.len(),
                self.slower_than,
                self.since,
                slowest.0,
                slowest.1
            ),
        };
        let samples: Vec<serde_json::Value> = found
            .iter()
            .take(self.samples)
            .map(|(c, ms, at)| json!({ "command": c, "duration_ms": (ms * 1000.0).round() / 1000.0, "at": jiff::Timestamp::from_second(*at).map(|t| t.to_string()).unwrap_or_default() }))
            .collect();
        Ok(Outcome::new(limits.verdict(found.len() as f64), message)
            .value(format!("{} slow", found.len()))
            .threshold(limits.describe(|v| format!("{v:.0}")))
            .output("count", found.len())
            .output("slowest_ms", found.first().map(|f| f.1))
            .output("samples", samples))
    }
}
