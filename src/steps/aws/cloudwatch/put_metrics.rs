//! `cloudwatch.put_metrics`: the run's own results as CloudWatch metrics, for dashboards and
//! alarms on the procedures themselves.

use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use aws_smithy_types::DateTime;
use schemars::JsonSchema;
use serde::Deserialize;

use super::{client};
use crate::kind::{StepContext, StepKind};
use crate::steps::aws::sdk_error;
use crate::vocab::{Effect, Outcome, Output, StepError};

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
    const PERMISSIONS: &'static [crate::vocab::Permission] = {
        use crate::vocab::*;
        &[aws(&["cloudwatch:PutMetricData"], AwsOn::Any)]
    };
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
