//! `cloudwatch.metric`: a CloudWatch statistic or percentile over a window, judged against
//! thresholds; a metric without data is said so.

use std::collections::BTreeMap;

use aws_sdk_cloudwatch::types::{Datapoint, Dimension, StandardUnit, Statistic};
use aws_smithy_types::DateTime;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{client};
use crate::duration::Duration;
use crate::helpers::threshold::Limits;
use crate::kind::{StepContext, StepKind};
use crate::steps::aws::sdk_error;
use crate::vocab::{Effect, Outcome, Output, StepError, Verdict};

/// How the datapoints of the window become one value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Reduce {
    /// The newest datapoint.
    Latest,
    /// The highest: the worst period for `*_above`.
    Max,
    /// The lowest: the worst period for `*_below`.
    Min,
    /// The mean of the datapoints.
    Avg,
}

/// What to do when the window has no datapoints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Missing {
    Ok,
    #[default]
    Warn,
    Fail,
}

/// Read a CloudWatch metric over a window and hold it to warn/fail thresholds.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Metric {
    /// `AWS/RDS`, `AWS/ApiGateway`, your own.
    pub namespace: String,
    /// `CPUUtilization`, `Latency`, `5XXError`.
    pub metric: String,
    #[serde(default)]
    pub dimensions: BTreeMap<String, String>,
    /// `Average`, `Sum`, `Minimum`, `Maximum`, `SampleCount`, or a percentile such as `p99`.
    #[serde(default = "average")]
    pub stat: String,
    /// The length of one datapoint. Default 5m.
    #[serde(default = "five_minutes")]
    pub period: Duration,
    /// How far back to look. Default 1h.
    #[serde(default = "one_hour")]
    pub window: Duration,
    /// Default: `max` with `*_above` thresholds, `min` with `*_below`.
    #[serde(default)]
    pub reduce: Option<Reduce>,
    #[serde(default)]
    pub warn_above: Option<f64>,
    #[serde(default)]
    pub fail_above: Option<f64>,
    #[serde(default)]
    pub warn_below: Option<f64>,
    #[serde(default)]
    pub fail_below: Option<f64>,
    /// No datapoints in the window: `ok`, `warn` (default) or `fail`.
    #[serde(default)]
    pub missing: Missing,
}

fn average() -> String {
    "Average".into()
}
fn five_minutes() -> Duration {
    Duration::from_secs(300)
}
fn one_hour() -> Duration {
    Duration::from_secs(3600)
}

const STATISTICS: &[&str] = &["Average", "Sum", "Minimum", "Maximum", "SampleCount"];

fn is_percentile(stat: &str) -> bool {
    stat.strip_prefix('p').is_some_and(|n| n.parse::<f64>().is_ok_and(|v| (0.0..=100.0).contains(&v)))
}

impl Metric {
    fn limits(&self) -> (Limits, Limits) {
        (Limits::above(self.warn_above, self.fail_above), Limits::below(self.warn_below, self.fail_below))
    }

    fn reduce(&self) -> Reduce {
        self.reduce.unwrap_or(if self.warn_below.is_some() || self.fail_below.is_some() { Reduce::Min } else { Reduce::Max })
    }

    fn value_of(&self, d: &Datapoint) -> Option<f64> {
        match self.stat.as_str() {
            "Average" => d.average(),
            "Sum" => d.sum(),
            "Minimum" => d.minimum(),
            "Maximum" => d.maximum(),
            "SampleCount" => d.sample_count(),
            p => d.extended_statistics().and_then(|e| e.get(p).copied()),
        }
    }

    fn describe_metric(&self) -> String {
        let dims = self.dimensions.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
        if dims.is_empty() { format!("{}/{}", self.namespace, self.metric) } else { format!("{}/{} {{{dims}}}", self.namespace, self.metric) }
    }
}

/// `72.4%`, `183.2 ms`, `12`.
fn format_value(v: f64, unit: Option<&StandardUnit>) -> String {
    let n = if v.fract() == 0.0 && v.abs() < 1e15 { format!("{v:.0}") } else { format!("{v:.2}") };
    match unit.map(|u| u.as_str()) {
        Some("Percent") => format!("{n}%"),
        Some("Milliseconds") => format!("{n} ms"),
        Some("Seconds") => format!("{n} s"),
        Some("Microseconds") => format!("{n} µs"),
        Some("Bytes") => crate::units::human_bytes(v.max(0.0) as u64),
        Some("Count") | Some("None") | None => n,
        Some(other) => format!("{n} {other}"),
    }
}

impl StepKind for Metric {
    const NAME: &'static str = "cloudwatch.metric";
    const PERMISSIONS: &'static [crate::vocab::Permission] = {
        use crate::vocab::*;
        &[aws(&["cloudwatch:GetMetricData"], AwsOn::Any)]
    };
    const SUMMARY: &'static str = "a CloudWatch metric (statistic or percentile over a window) held to warn/fail thresholds";
    const EFFECT: Effect = Effect::Read;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "value", ty: "float", help: "the reduced value, or null without datapoints" },
        Output { name: "datapoints", ty: "int", help: "datapoints in the window" },
        Output { name: "unit", ty: "string", help: "as CloudWatch reports it" },
    ];

    fn check(&self) -> Result<(), String> {
        if !STATISTICS.contains(&self.stat.as_str()) && !is_percentile(&self.stat) {
            return Err(format!("`stat` is one of {} or a percentile such as p99; not `{}`", STATISTICS.join(", "), self.stat));
        }
        let (period, window) = (self.period.std().as_secs(), self.window.std().as_secs());
        if period == 0 {
            return Err("`period` is at least 1s".into());
        }
        if window < period {
            return Err(format!("`window` ({}) is shorter than `period` ({})", self.window, self.period));
        }
        if window / period > 1440 {
            return Err(format!("{} periods of {} in {}: CloudWatch returns at most 1440 datapoints; lengthen `period`", window / period, self.period, self.window));
        }
        let (above, below) = self.limits();
        above.check_order("warn_above", "fail_above")?;
        below.check_order("warn_below", "fail_below")?;
        if self.dimensions.len() > 30 {
            return Err("CloudWatch allows at most 30 dimensions".into());
        }
        Ok(())
    }

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let (client, config, retries) = client(ctx).await?;
        // EndTime is exclusive: a minute ahead takes in what was published this second.
        let end = jiff::Timestamp::now().as_second() + 60;
        let start = end - 60 - self.window.std().as_secs() as i64;
        let mut req = client
            .get_metric_statistics()
            .namespace(&self.namespace)
            .metric_name(&self.metric)
            .start_time(DateTime::from_secs(start))
            .end_time(DateTime::from_secs(end))
            .period(self.period.std().as_secs() as i32);
        for (k, v) in &self.dimensions {
            req = req.dimensions(Dimension::builder().name(k).value(v).build());
        }
        req = if is_percentile(&self.stat) { req.extended_statistics(&self.stat) } else { req.statistics(Statistic::from(self.stat.as_str())) };
        let out = req.send().await.map_err(|e| sdk_error(e, &format!("reading {}", self.describe_metric()), &config))?;
        let mut points: Vec<(&Datapoint, f64)> = out.datapoints().iter().filter_map(|d| self.value_of(d).map(|v| (d, v))).collect();
        points.sort_by_key(|(d, _)| d.timestamp().map(|t| t.secs()).unwrap_or(0));
        let (above, below) = self.limits();
        let threshold = [above.describe(|v| v.to_string()), below.describe(|v| v.to_string())].into_iter().flatten().collect::<Vec<_>>().join(", ");
        let threshold = (!threshold.is_empty()).then_some(threshold);
        let what = format!("{} {} over {}", self.describe_metric(), self.stat, self.window);
        if points.is_empty() {
            let verdict = match self.missing {
                Missing::Ok => Verdict::Passed,
                Missing::Warn => Verdict::Warned,
                Missing::Fail => Verdict::Failed,
            };
            return Ok(Outcome::new(verdict, format!("{what}: no datapoints (is the metric name, namespace and every dimension right?){}", retries.note()))
                .value("no data")
                .threshold(threshold)
                .output("value", serde_json::Value::Null)
                .output("datapoints", 0)
                .output("unit", serde_json::Value::Null));
        }
        let values: Vec<f64> = points.iter().map(|(_, v)| *v).collect();
        let reduce = self.reduce();
        let value = match reduce {
            Reduce::Latest => *values.last().expect("not empty"),
            Reduce::Max => values.iter().copied().fold(f64::MIN, f64::max),
            Reduce::Min => values.iter().copied().fold(f64::MAX, f64::min),
            Reduce::Avg => values.iter().sum::<f64>() / values.len() as f64,
        };
        let unit = points.last().and_then(|(d, _)| d.unit().cloned());
        let verdict = above.verdict(value).max(below.verdict(value));
        let shown = format_value(value, unit.as_ref());
        let reduce_name = serde_json::to_value(reduce).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        Ok(Outcome::new(verdict, format!("{what}: {reduce_name} {shown} of {} datapoint(s){}", values.len(), retries.note()))
            .value(shown)
            .threshold(threshold)
            .output("value", value)
            .output("datapoints", values.len())
            .output("unit", unit.map(|u| u.as_str().to_string())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_and_percentiles() {
        assert!(is_percentile("p99"));
        assert!(is_percentile("p99.9"));
        assert!(!is_percentile("p101"));
        assert!(!is_percentile("Avg"));
        assert_eq!(format_value(72.44, Some(&StandardUnit::Percent)), "72.44%");
        assert_eq!(format_value(12.0, Some(&StandardUnit::Count)), "12");
        assert_eq!(format_value(183.25, Some(&StandardUnit::Milliseconds)), "183.25 ms");
    }
}
