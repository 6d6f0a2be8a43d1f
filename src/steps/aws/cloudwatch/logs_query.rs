//! `cloudwatch.logs_query`: a CloudWatch Logs Insights query run to completion (polled, and
//! stopped when `timeout` passes), its rows as output, and a numeric field of every row
//! judged against thresholds — or the number of rows.

use std::time::{Duration as StdDuration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_cloudwatchlogs::types::QueryStatus;
use schemars::JsonSchema;
use serde::Deserialize;

use super::{group_error, log_groups, logs_client};
use crate::duration::Duration;
use crate::helpers::threshold::Band;
use crate::kind::{StepContext, StepKind};
use crate::steps::aws::sdk_error;
use crate::vocab::{Effect, ErrorClass, Judgement, Outcome, Output, StepError, Verdict};

/// Run a Logs Insights query and judge its rows.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogsQuery {
    /// The query: `filter @message like /ERROR/ | stats count(*) as errors by bin(5m)`.
    pub query: String,
    /// Log groups. Default: the instance's `cloudwatch_logs.groups`.
    #[serde(default)]
    pub groups: Vec<String>,
    /// How far back. Default 1h.
    #[serde(default = "hour")]
    pub since: Duration,
    /// The numeric field judged in every row (`errors`). Without it, the number of rows is.
    #[serde(default)]
    pub field: Option<String>,
    #[serde(default)]
    pub warn_above: Option<f64>,
    #[serde(default)]
    pub fail_above: Option<f64>,
    #[serde(default)]
    pub warn_below: Option<f64>,
    #[serde(default)]
    pub fail_below: Option<f64>,
    /// No rows: `fail` (default), `warn` or `pass`. (Without `field`, 0 rows is judged by
    /// the thresholds instead.)
    #[serde(default)]
    pub on_empty: Judgement,
    /// The longest the query may run; it is stopped after. Default 2m.
    #[serde(default = "two_minutes")]
    pub timeout: Duration,
    /// How often to ask for results. Default 1s.
    #[serde(default = "one_second")]
    pub poll: Duration,
    /// Rows kept as output. Default 100.
    #[serde(default = "hundred")]
    pub max_rows: usize,
}

fn hour() -> Duration {
    Duration::from_secs(3600)
}
fn two_minutes() -> Duration {
    Duration::from_secs(120)
}
fn one_second() -> Duration {
    Duration::from_secs(1)
}
fn hundred() -> usize {
    100
}

impl LogsQuery {
    fn limits(&self) -> Band {
        Band::new(self.warn_above, self.fail_above, self.warn_below, self.fail_below)
    }
}

impl StepKind for LogsQuery {
    const NAME: &'static str = "cloudwatch.logs_query";
    const PERMISSIONS: &'static [crate::vocab::Permission] = {
        use crate::vocab::*;
        &[aws(&["logs:StartQuery"], AwsOn::LogGroups), aws(&["logs:GetQueryResults", "logs:StopQuery"], AwsOn::Any)]
    };
    const SUMMARY: &'static str = "a CloudWatch Logs Insights query run to completion with a timeout; rows as output; a numeric field (or the row count) against thresholds";
    const EFFECT: Effect = Effect::Read;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "rows", ty: "list", help: "result rows (field → value; @ptr left out), at most max_rows" },
        Output { name: "count", ty: "int", help: "rows returned" },
        Output { name: "worst", ty: "float", help: "the judged value furthest past its limits" },
        Output { name: "records_scanned", ty: "float", help: "log events the query scanned" },
    ];

    fn check(&self) -> Result<(), String> {
        if self.query.trim().is_empty() {
            return Err("`query` is empty".into());
        }
        if [self.warn_above, self.fail_above, self.warn_below, self.fail_below].iter().all(Option::is_none) {
            return Err("give a threshold (`warn_above`, `fail_above`, `warn_below`, `fail_below`): a query with none checks nothing".into());
        }
        self.limits().check_order()
    }

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let (client, config, retries) = logs_client(ctx).await?;
        let groups = log_groups(ctx, &self.groups)?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        let started = client
            .start_query()
            .set_log_group_names(Some(groups.clone()))
            .start_time(now - self.since.std().as_secs() as i64)
            .end_time(now)
            .query_string(&self.query)
            .send()
            .await
            .map_err(|e| {
                let e = sdk_error(e, "starting the Logs Insights query", &config);
                if e.message.contains("MalformedQuery") || e.message.contains("Query") && e.class == ErrorClass::Error && e.message.contains("unexpected") {
                    StepError::invalid(format!("{} — the query is not valid Logs Insights syntax", e.message))
                } else {
                    group_error(e, &groups.join(", "), &config)
                }
            })?;
        let id = started.query_id().unwrap_or_default().to_string();
        let begun = Instant::now();
        let result = loop {
            let out = client.get_query_results().query_id(&id).send().await.map_err(|e| sdk_error(e, "reading the query's results", &config))?;
            match out.status() {
                Some(QueryStatus::Complete) => break out,
                Some(QueryStatus::Failed) | Some(QueryStatus::Cancelled) | Some(QueryStatus::Timeout) => {
                    let s = out.status().map_or("?", |s| s.as_str()).to_string();
                    return Err(StepError::new(ErrorClass::Failed, format!("the Logs Insights query ended {s} (query id {id})")));
                }
                _ => {}
            }
            if begun.elapsed() >= self.timeout.std() {
                let _ = client.stop_query().query_id(&id).send().await;
                return Err(StepError::new(ErrorClass::Timeout, format!("the Logs Insights query did not complete in {}; it was stopped (query id {id})", self.timeout)));
            }
            tokio::time::sleep(self.poll.std().min(self.timeout.std().saturating_sub(begun.elapsed())).max(StdDuration::from_millis(50))).await;
        };
        let rows: Vec<serde_json::Map<String, serde_json::Value>> = result
            .results()
            .iter()
            .map(|row| {
                row.iter()
                    .filter(|f| f.field() != Some("@ptr"))
                    .map(|f| (f.field().unwrap_or_default().to_string(), serde_json::Value::String(f.value().unwrap_or_default().to_string())))
                    .collect()
            })
            .collect();
        let scanned = result.statistics().map_or(0.0, |s| s.records_scanned());
        let limits = self.limits();
        let (verdict, worst, message) = match &self.field {
            None => {
                let n = rows.len() as f64;
                (limits.verdict(n), n, format!("the query returned {} rows in {:.1}s", rows.len(), begun.elapsed().as_secs_f64()))
            }
            Some(_) if rows.is_empty() => (self.on_empty.verdict(), f64::NAN, format!("the query returned no rows (on_empty: {})", self.on_empty.as_str())),
            Some(field) => {
                let mut worst: Option<(Verdict, f64)> = None;
                let mut missing = 0;
                for row in &rows {
                    let Some(v) = row.get(field).and_then(|v| v.as_str()).and_then(|v| v.trim().parse::<f64>().ok()) else {
                        missing += 1;
                        continue;
                    };
                    let verdict = limits.verdict(v);
                    if worst.is_none_or(|(w, _)| verdict > w) {
                        worst = Some((verdict, v));
                    }
                }
                let Some((verdict, value)) = worst else {
                    return Err(StepError::new(
                        ErrorClass::Failed,
                        format!("no row of the query's {} has a number in field `{field}`", rows.len()),
                    ));
                };
                let mut m = format!("{} rows; `{field}` {} at worst", rows.len(), fmt(value));
                if missing > 0 {
                    m.push_str(&format!(" ({missing} rows without a number in `{field}`)"));
                }
                (verdict, value, m)
            }
        };
        let count = rows.len();
        let kept: Vec<serde_json::Value> = rows.into_iter().take(self.max_rows).map(serde_json::Value::Object).collect();
        Ok(Outcome::new(verdict, format!("{message}{}", retries.note()))
            .value(if worst.is_nan() { "no rows".to_string() } else { fmt(worst) })
            .threshold(limits.describe(fmt))
            .output("rows", kept)
            .output("count", count)
            .output("worst", if worst.is_nan() { serde_json::Value::Null } else { serde_json::json!(worst) })
            .output("records_scanned", scanned))
    }
}

fn fmt(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 { format!("{}", v as i64) } else { format!("{v:.3}") }
}
