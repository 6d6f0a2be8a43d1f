//! `ecs.services`: the services of a cluster as an operator reads them in the console —
//! running = desired, the primary deployment's rollout, a circuit breaker that fired — and
//! the tasks that stopped in a window with their reasons and exit codes ("tasks start and
//! immediately stop").

use std::collections::BTreeMap;

use aws_sdk_ecs::types::DeploymentRolloutState;
use schemars::JsonSchema;
use serde::Deserialize;

use super::{abnormal, client, cluster, describe, describe_stop, list, rollout, state, stopped_tasks, task_service};
use crate::duration::Duration;
use crate::helpers::threshold::Limits;
use crate::helpers::text::plural;
use crate::kind::{StepContext, StepKind};
use crate::vocab::{Effect, Judgement, Outcome, Output, StepError, Verdict};

/// The services of an ECS cluster: counts, rollouts, stopped tasks.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Services {
    /// The cluster. Default: the instance's `ecs.cluster`.
    #[serde(default)]
    pub cluster: Option<String>,
    /// The services. Default: the instance's `ecs.services` (on the instance's cluster),
    /// else every service of the cluster.
    #[serde(default)]
    pub services: Vec<String>,
    /// How far back stopped tasks count. Default 1h (ECS keeps stopped tasks about an hour).
    #[serde(default = "one_hour")]
    pub window: Duration,
    /// Warn above this many tasks stopped abnormally in the window. Default 0.
    #[serde(default = "zero")]
    pub warn_stopped: Option<u64>,
    /// Fail above this many.
    #[serde(default)]
    pub fail_stopped: Option<u64>,
    /// A rollout in progress: `warn` (default), `pass` or `fail`.
    #[serde(default = "warn")]
    pub on_rollout: Judgement,
    /// No service to check (an empty cluster): `fail` (default), `warn` or `pass`.
    #[serde(default)]
    pub on_empty: Judgement,
    /// Stopped tasks quoted in the message. Default 3.
    #[serde(default = "three")]
    pub samples: usize,
}

fn one_hour() -> Duration {
    Duration::from_secs(3600)
}
fn zero() -> Option<u64> {
    Some(0)
}
fn warn() -> Judgement {
    Judgement::Warn
}
fn three() -> usize {
    3
}

impl StepKind for Services {
    const NAME: &'static str = "ecs.services";
    const PERMISSIONS: &'static [crate::vocab::Permission] = {
        use crate::vocab::*;
        &[aws(&["ecs:DescribeServices"], AwsOn::EcsServices), aws(&["ecs:ListServices", "ecs:ListTasks", "ecs:DescribeTasks"], AwsOn::Any)]
    };
    const SUMMARY: &'static str = "ECS services: running = desired, the rollout (circuit breaker), tasks stopped in a window with reasons and exit codes";
    const EFFECT: Effect = Effect::Read;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "services", ty: "object", help: "per service: desired, running, pending, rollout, task_definition, stopped" },
        Output { name: "unhealthy", ty: "list", help: "services that warned or failed" },
        Output { name: "stopped", ty: "int", help: "tasks stopped abnormally in the window" },
    ];

    fn check(&self) -> Result<(), String> {
        if let (Some(w), Some(f)) = (self.warn_stopped, self.fail_stopped)
            && f < w
        {
            return Err(format!("`fail_stopped` ({f}) is below `warn_stopped` ({w})"));
        }
        Ok(())
    }

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let (client, config, retries) = client(ctx).await?;
        let cluster = cluster(ctx, self.cluster.as_deref())?;
        let names = if !self.services.is_empty() {
            self.services.clone()
        } else if let Some(listed) = ctx.instance.ecs.as_ref().filter(|e| e.cluster == cluster && !e.services.is_empty()) {
            listed.services.clone()
        } else {
            list(&client, &config, &cluster).await?
        };
        if names.is_empty() {
            return Ok(Outcome::new(self.on_empty.verdict(), format!("cluster {cluster} has no services (on_empty: {})", self.on_empty.as_str())).value("0 services"));
        }
        let (services, stopped) = tokio::try_join!(describe(&client, &config, &cluster, &names), stopped_tasks(&client, &config, &cluster, self.window.std()))?;

        let mut worst = Verdict::Passed;
        let mut problems = Vec::new();
        let mut unhealthy = Vec::new();
        let mut rolling = Vec::new();
        let mut per_service = serde_json::Map::new();
        let mut abnormal_stops: BTreeMap<&str, Vec<&aws_sdk_ecs::types::Task>> = BTreeMap::new();
        for t in stopped.iter().filter(|t| abnormal(t)) {
            if let Some(s) = task_service(t).filter(|s| names.iter().any(|n| n == s)) {
                abnormal_stops.entry(s).or_default().push(t);
            }
        }
        for s in &services {
            let name = s.service_name().unwrap_or_default();
            let (verdict, why) = judge(s, self.on_rollout);
            if verdict != Verdict::Passed {
                unhealthy.push(name.to_string());
                problems.push(format!("{name}: {why}"));
            } else if why.starts_with("rolling out") {
                // Passed by `on_rollout: pass`, but not as desired yet: said all the same.
                rolling.push(format!("{name}: {why}"));
            }
            worst = worst.max(verdict);
            let stops = abnormal_stops.get(name).map_or(&[][..], |v| v.as_slice());
            per_service.insert(
                name.to_string(),
                serde_json::json!({
                    "status": s.status(),
                    "desired": s.desired_count(),
                    "running": s.running_count(),
                    "pending": s.pending_count(),
                    "deployments": s.deployments().len(),
                    "rollout": rollout(s).map(|(r, _)| r.as_str().to_string()),
                    "task_definition": s.task_definition().map(super::revision),
                    "stopped": stops.iter().map(|t| serde_json::json!({
                        "task": t.task_arn().map(|a| a.rsplit('/').next().unwrap_or(a)),
                        "reason": t.stopped_reason(),
                        "stop_code": t.stop_code().map(|c| c.as_str()),
                        "exit_codes": t.containers().iter().filter_map(|c| Some((c.name()?.to_string(), c.exit_code()?))).collect::<BTreeMap<_, _>>(),
                    })).collect::<Vec<_>>(),
                }),
            );
        }
        let stopped_count = abnormal_stops.values().map(Vec::len).sum::<usize>() as u64;
        let limits = Limits::above_counts(self.warn_stopped, self.fail_stopped);
        let stop_verdict = limits.verdict(stopped_count as f64);
        worst = worst.max(stop_verdict);
        for (name, _) in abnormal_stops.iter() {
            if stop_verdict != Verdict::Passed && !unhealthy.iter().any(|u| u == name) {
                unhealthy.push(name.to_string());
            }
        }

        let mut message = if problems.is_empty() && rolling.is_empty() {
            format!("{} in {cluster}: all running as desired", plural(services.len() as i64, "service", "services"))
        } else if problems.is_empty() {
            format!("{} in {cluster}, {} rolling out (on_rollout: pass): {}", plural(services.len() as i64, "service", "services"), rolling.len(), rolling.join("; "))
        } else {
            format!("{} of {} in {cluster} not as desired: {}", problems.len(), plural(services.len() as i64, "service", "services"), problems.join("; "))
        };
        if stopped_count > 0 {
            let samples: Vec<String> = abnormal_stops
                .iter()
                .flat_map(|(name, ts)| ts.iter().map(move |t| format!("{name}: {}", describe_stop(t))))
                .take(self.samples)
                .collect();
            message.push_str(&format!(
                "; {} stopped in the last {}: {}{}",
                plural(stopped_count as i64, "task", "tasks"),
                self.window,
                samples.join("; "),
                if stopped_count as usize > samples.len() { "; …" } else { "" }
            ));
        }
        message.push_str(&retries.note());
        Ok(Outcome::new(worst, message)
            .value(format!("{}/{} as desired", services.len() - problems.len(), services.len()))
            .threshold(limits.describe(|v| format!("{v} stopped tasks")))
            .output("services", serde_json::Value::Object(per_service))
            .output("unhealthy", unhealthy)
            .output("stopped", stopped_count))
    }
}

/// A service's verdict and why.
fn judge(s: &aws_sdk_ecs::types::Service, on_rollout: Judgement) -> (Verdict, String) {
    let (running, desired) = (s.running_count(), s.desired_count());
    if let Some(status) = s.status().filter(|st| *st != "ACTIVE") {
        return (Verdict::Failed, format!("status {status}"));
    }
    match rollout(s) {
        Some((DeploymentRolloutState::Failed, reason)) => {
            return (Verdict::Failed, format!("rollout FAILED ({}); {}", reason.unwrap_or("no reason given"), state(s)));
        }
        Some((DeploymentRolloutState::InProgress, _)) => return (on_rollout.verdict(), format!("rolling out: {}", state(s))),
        _ => {}
    }
    if s.deployments().len() > 1 {
        return (on_rollout.verdict(), format!("rolling out: {}", state(s)));
    }
    if running < desired {
        return (Verdict::Failed, state(s));
    }
    if desired == 0 {
        return (Verdict::Warned, "desired count is 0".into());
    }
    (Verdict::Passed, state(s))
}
