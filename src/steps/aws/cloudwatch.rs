//! `cloudwatch.metric`, `cloudwatch.alarms`, `cloudwatch.put_metrics`.

use std::collections::BTreeMap;

use aws_sdk_cloudwatch::types::{Datapoint, Dimension, MetricDatum, StandardUnit, StateValue, Statistic};
use aws_smithy_types::DateTime;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Retries, config, sdk_error};
use crate::duration::Duration;
use crate::helpers::threshold::Limits;
use crate::kind::{StepContext, StepKind};
use crate::vocab::{Effect, Outcome, Output, StepError, Verdict};

async fn client(ctx: &StepContext) -> Result<(aws_sdk_cloudwatch::Client, aws_config::SdkConfig, Retries), StepError> {
    let c = config(ctx).await?;
    let retries = Retries::default();
    let conf = aws_sdk_cloudwatch::config::Builder::from(&c).interceptor(retries.clone()).build();
    Ok((aws_sdk_cloudwatch::Client::from_conf(conf), c, retries))
}

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

/// Fail when alarms are in ALARM.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Alarms {
    /// Only alarms whose names start with this (e.g. `team-a-`).
    #[serde(default)]
    pub prefix: Option<String>,
    /// Warn on alarms in INSUFFICIENT_DATA.
    #[serde(default)]
    pub warn_insufficient_data: bool,
}

impl StepKind for Alarms {
    const NAME: &'static str = "cloudwatch.alarms";
    const SUMMARY: &'static str = "CloudWatch alarms in ALARM (matching a prefix) fail the step";
    const EFFECT: Effect = Effect::Read;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "firing", ty: "list", help: "names of the alarms in ALARM" },
        Output { name: "insufficient_data", ty: "list", help: "names of the alarms in INSUFFICIENT_DATA" },
        Output { name: "total", ty: "int", help: "alarms matched" },
    ];

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let (client, config, retries) = client(ctx).await?;
        let mut pages = client.describe_alarms().set_alarm_name_prefix(self.prefix.clone()).into_paginator().send();
        let (mut firing, mut insufficient, mut total) = (Vec::new(), Vec::new(), 0usize);
        let mut reasons = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| sdk_error(e, "listing CloudWatch alarms", &config))?;
            // Metric and composite alarms alike: name, state, reason.
            let alarms = page
                .metric_alarms()
                .iter()
                .map(|a| (a.alarm_name(), a.state_value(), a.state_reason()))
                .chain(page.composite_alarms().iter().map(|a| (a.alarm_name(), a.state_value(), a.state_reason())));
            for (name, state, reason) in alarms {
                total += 1;
                let name = name.unwrap_or("?").to_string();
                match state {
                    Some(StateValue::Alarm) => {
                        reasons.push(format!("{name} ({})", reason.unwrap_or("no reason given")));
                        firing.push(name);
                    }
                    Some(StateValue::InsufficientData) => insufficient.push(name),
                    _ => {}
                }
            }
        }
        let scope = self.prefix.as_ref().map_or("alarms".to_string(), |p| format!("alarms {p}*"));
        let (verdict, message) = if !firing.is_empty() {
            (Verdict::Failed, format!("{} of {total} {scope} in ALARM: {}", firing.len(), reasons.join("; ")))
        } else if self.warn_insufficient_data && !insufficient.is_empty() {
            (Verdict::Warned, format!("{} of {total} {scope} have insufficient data: {}", insufficient.len(), insufficient.join(", ")))
        } else if total == 0 {
            (Verdict::Passed, format!("no {scope} exist"))
        } else {
            (Verdict::Passed, format!("none of {total} {scope} in ALARM"))
        };
        Ok(Outcome::new(verdict, message + &retries.note())
            .value(format!("{} in ALARM", firing.len()))
            .output("firing", firing)
            .output("insufficient_data", insufficient)
            .output("total", total))
    }
}

/// Publish this run's results to CloudWatch so alarms can watch opsctl runs: per finished
/// step `StepFailed` (0/1) and `StepDuration` (seconds), dimensions Runbook, Instance,
/// Step; per run `RunFailed` and `StepsFailed`, dimensions Runbook, Instance.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PutMetrics {
    /// Default `opsctl`.
    #[serde(default = "opsctl")]
    pub namespace: String,
    /// Only the run-level metrics, not one per step.
    #[serde(default)]
    pub run_only: bool,
}

fn opsctl() -> String {
    "opsctl".into()
}

impl PutMetrics {
    fn data(&self, ctx: &StepContext) -> Vec<MetricDatum> {
        let now = DateTime::from_secs(jiff::Timestamp::now().as_second());
        let steps: Vec<_> = ctx.run.steps.summaries().into_iter().filter(|s| s.status != "skipped" && s.status != "planned").collect();
        let dim = |n: &str, v: &str| Dimension::builder().name(n).value(v).build();
        let run_dims = vec![dim("Runbook", &ctx.run.runbook), dim("Instance", &ctx.instance.name)];
        let failed = steps.iter().filter(|s| s.status == "failed").count();
        let datum = |name: &str, value: f64, unit: StandardUnit, dims: Vec<Dimension>| {
            MetricDatum::builder().metric_name(name).value(value).unit(unit).timestamp(now).set_dimensions(Some(dims)).build()
        };
        let mut out = vec![
            datum("RunFailed", if failed > 0 { 1.0 } else { 0.0 }, StandardUnit::Count, run_dims.clone()),
            datum("StepsFailed", failed as f64, StandardUnit::Count, run_dims.clone()),
        ];
        if !self.run_only {
            for s in &steps {
                let mut dims = run_dims.clone();
                dims.push(dim("Step", &s.id));
                out.push(datum("StepFailed", if s.status == "failed" { 1.0 } else { 0.0 }, StandardUnit::Count, dims.clone()));
                out.push(datum("StepDuration", s.duration_secs, StandardUnit::Seconds, dims));
            }
        }
        out
    }
}

impl StepKind for PutMetrics {
    const NAME: &'static str = "cloudwatch.put_metrics";
    const SUMMARY: &'static str = "publish this run's results (failed and duration per step) to CloudWatch for alarms";
    const EFFECT: Effect = Effect::Read;
    const OUTPUTS: &'static [Output] = &[Output { name: "published", ty: "int", help: "metric values sent" }];

    fn check(&self) -> Result<(), String> {
        if self.namespace.is_empty() || self.namespace.starts_with("AWS/") {
            return Err(format!("`namespace` must be your own, not empty and not under AWS/ (`{}`)", self.namespace));
        }
        Ok(())
    }

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let data = self.data(ctx);
        if ctx.dry_run {
            return Ok(Outcome::passed(format!("dry run: would publish {} metric value(s) to {}", data.len(), self.namespace)).output("published", 0));
        }
        let (client, config, retries) = client(ctx).await?;
        let n = data.len();
        for chunk in data.chunks(500) {
            client
                .put_metric_data()
                .namespace(&self.namespace)
                .set_metric_data(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| sdk_error(e, &format!("publishing metrics to {}", self.namespace), &config))?;
        }
        let failed = ctx.run.steps.summaries().iter().filter(|s| s.status == "failed").count();
        let status = if failed == 0 { "no failures".to_string() } else { format!("{failed} failed step(s)") };
        Ok(Outcome::passed(format!("published {n} metric value(s) to {} ({status}){}", self.namespace, retries.note()))
            .value(format!("{n} values"))
            .output("published", n))
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
