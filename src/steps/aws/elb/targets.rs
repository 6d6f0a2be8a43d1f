//! `elb.targets`: the targets of target groups (named, or every one of a load balancer, or
//! the instance's `elb.target_groups`): enough healthy ones, and every other one named with
//! its state, reason and description — "users receiving 502" in one step.

use aws_sdk_elasticloadbalancingv2::types::{TargetGroup, TargetHealthStateEnum};
use schemars::JsonSchema;
use serde::Deserialize;

use super::client;
use crate::helpers::text::plural;
use crate::kind::{StepContext, StepKind};
use crate::steps::aws::{sdk_error, target};
use crate::vocab::{Effect, ErrorClass, Judgement, Outcome, Output, StepError, Verdict};

/// Target health of ELBv2 target groups.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Targets {
    /// Target groups, by name or ARN. Default: the instance's `elb.target_groups`.
    #[serde(default)]
    pub target_groups: Vec<String>,
    /// Or every target group of this load balancer (name or ARN).
    #[serde(default)]
    pub load_balancer: Option<String>,
    /// Fail when a target group has fewer healthy targets. Default 1.
    #[serde(default = "one")]
    pub min_healthy: usize,
    /// A target group without targets: `fail` (default), `warn` or `pass`.
    #[serde(default)]
    pub on_empty: Judgement,
    /// Unhealthy targets quoted in the message. Default 5.
    #[serde(default = "five")]
    pub samples: usize,
}

fn one() -> usize {
    1
}
fn five() -> usize {
    5
}

impl Targets {
    /// The target groups to look at.
    async fn groups(&self, ctx: &StepContext, client: &aws_sdk_elasticloadbalancingv2::Client, config: &aws_config::SdkConfig) -> Result<Vec<TargetGroup>, StepError> {
        let mut req = client.describe_target_groups();
        let what;
        if let Some(lb) = &self.load_balancer {
            let arn = if lb.starts_with("arn:") {
                lb.clone()
            } else {
                let out = client.describe_load_balancers().names(lb).send().await.map_err(|e| not_found(sdk_error(e, &format!("load balancer {lb}"), config), &format!("load balancer {lb}"), config))?;
                out.load_balancers().first().and_then(|l| l.load_balancer_arn()).map(str::to_string).ok_or_else(|| StepError::new(ErrorClass::Failed, format!("no load balancer {lb} [{}]", target(config))))?
            };
            req = req.load_balancer_arn(arn);
            what = format!("the target groups of load balancer {lb}");
        } else {
            let names = if self.target_groups.is_empty() {
                ctx.instance.elb.as_ref().map(|e| e.target_groups.clone()).unwrap_or_default()
            } else {
                self.target_groups.clone()
            };
            if names.is_empty() {
                return Err(StepError::invalid(format!(
                    "no target group: give `target_groups:` or `load_balancer:` to the step, or add `elb: {{ target_groups: [NAME] }}` to instance {} in the inventory",
                    ctx.instance.name
                )));
            }
            let (arns, plain): (Vec<String>, Vec<String>) = names.into_iter().partition(|n| n.starts_with("arn:"));
            // The API takes names or ARNs in one call, not both.
            let mut found = Vec::new();
            for (batch, by_arn) in [(arns, true), (plain, false)] {
                if batch.is_empty() {
                    continue;
                }
                let r = if by_arn { client.describe_target_groups().set_target_group_arns(Some(batch.clone())) } else { client.describe_target_groups().set_names(Some(batch.clone())) };
                let shown = batch.join(", ");
                let out = r.send().await.map_err(|e| not_found(sdk_error(e, &format!("target group {shown}"), config), &format!("target group {shown}"), config))?;
                found.extend(out.target_groups().iter().cloned());
            }
            return Ok(found);
        }
        let mut found = Vec::new();
        let mut pages = req.into_paginator().send();
        while let Some(page) = pages.next().await {
            found.extend(page.map_err(|e| sdk_error(e, &what, config))?.target_groups().iter().cloned());
        }
        if found.is_empty() {
            return Err(StepError::new(ErrorClass::Failed, format!("{what}: none (no listener forwards to a target group) [{}]", target(config))));
        }
        Ok(found)
    }
}

/// `TargetGroupNotFound` and `LoadBalancerNotFound` as "no such thing", not an API error.
fn not_found(e: StepError, what: &str, config: &aws_config::SdkConfig) -> StepError {
    if e.message.contains("not found") || e.message.contains("does not exist") || e.message.contains("NotFound") {
        StepError::new(ErrorClass::Failed, format!("{what} does not exist [{}]", target(config)))
    } else {
        e
    }
}

impl StepKind for Targets {
    const NAME: &'static str = "elb.targets";
    const PERMISSIONS: &'static [crate::vocab::Permission] = {
        use crate::vocab::*;
        &[aws(&["elasticloadbalancing:DescribeTargetGroups", "elasticloadbalancing:DescribeTargetHealth"], AwsOn::Any)]
    };
    const SUMMARY: &'static str = "ELBv2 target health: healthy targets per target group against min_healthy; every other target with its state, reason and description";
    const EFFECT: Effect = Effect::Read;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "target_groups", ty: "object", help: "per target group: healthy, total, and each target's state, reason, description" },
        Output { name: "healthy", ty: "int", help: "healthy targets in all the groups" },
        Output { name: "unhealthy", ty: "list", help: "`group/target:port (state, reason)` for every target not healthy" },
    ];

    fn check(&self) -> Result<(), String> {
        if self.load_balancer.is_some() && !self.target_groups.is_empty() {
            return Err("give `target_groups` or `load_balancer`, not both".into());
        }
        Ok(())
    }

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let (client, config, retries) = client(ctx).await?;
        let groups = self.groups(ctx, &client, &config).await?;
        let calls = groups.iter().map(|g| {
            let client = &client;
            let config = &config;
            async move {
                let name = g.target_group_name().unwrap_or_default();
                let out = client
                    .describe_target_health()
                    .set_target_group_arn(g.target_group_arn.clone())
                    .send()
                    .await
                    .map_err(|e| sdk_error(e, &format!("target health of {name}"), config))?;
                Ok::<_, StepError>((name.to_string(), out.target_health_descriptions().to_vec()))
            }
        });
        let results = futures_util::future::try_join_all(calls).await?;

        let mut worst = Verdict::Passed;
        let mut problems = Vec::new();
        let mut not_healthy = Vec::new();
        let mut total_healthy = 0usize;
        let mut per_group = serde_json::Map::new();
        for (name, targets) in &results {
            let state = |t: &aws_sdk_elasticloadbalancingv2::types::TargetHealthDescription| {
                t.target_health().and_then(|h| h.state()).map_or("unknown".to_string(), |s| s.as_str().to_string())
            };
            let healthy = targets.iter().filter(|t| t.target_health().and_then(|h| h.state()) == Some(&TargetHealthStateEnum::Healthy)).count();
            total_healthy += healthy;
            let mut listed = Vec::new();
            for t in targets {
                let id = t.target().and_then(|x| x.id()).unwrap_or("?");
                let port = t.target().and_then(|x| x.port()).map_or(String::new(), |p| format!(":{p}"));
                let health = t.target_health();
                let reason = health.and_then(|h| h.reason()).map(|r| r.as_str().to_string());
                let description = health.and_then(|h| h.description()).map(str::to_string);
                let st = state(t);
                if st != "healthy" {
                    let mut why = st.clone();
                    if let Some(r) = &reason {
                        why.push_str(&format!(", {r}"));
                    }
                    if let Some(d) = &description {
                        why.push_str(&format!(": {d}"));
                    }
                    not_healthy.push(format!("{name}/{id}{port} ({why})"));
                }
                listed.push(serde_json::json!({"id": id, "port": t.target().and_then(|x| x.port()), "state": st, "reason": reason, "description": description}));
            }
            per_group.insert(name.clone(), serde_json::json!({"healthy": healthy, "total": targets.len(), "targets": listed}));
            let verdict = if targets.is_empty() {
                problems.push(format!("{name} has no targets (on_empty: {})", self.on_empty.as_str()));
                self.on_empty.verdict()
            } else if healthy < self.min_healthy {
                problems.push(format!("{name}: {healthy}/{} healthy, fewer than {}", targets.len(), self.min_healthy));
                Verdict::Failed
            } else if healthy < targets.len() {
                problems.push(format!("{name}: {healthy}/{} healthy", targets.len()));
                Verdict::Warned
            } else {
                Verdict::Passed
            };
            worst = worst.max(verdict);
        }
        let total: usize = results.iter().map(|(_, t)| t.len()).sum();
        let mut message = if problems.is_empty() {
            format!("{} healthy in {}", plural(total_healthy as i64, "target", "targets"), plural(results.len() as i64, "target group", "target groups"))
        } else {
            problems.join("; ")
        };
        if !not_healthy.is_empty() {
            let shown: Vec<&String> = not_healthy.iter().take(self.samples).collect();
            message.push_str(&format!(
                "; not healthy: {}{}",
                shown.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("; "),
                if not_healthy.len() > shown.len() { format!("; and {} more", not_healthy.len() - shown.len()) } else { String::new() }
            ));
        }
        message.push_str(&retries.note());
        Ok(Outcome::new(worst, message)
            .value(format!("{total_healthy}/{total} healthy"))
            .threshold(Some(format!("fail < {} healthy per group", self.min_healthy)))
            .output("target_groups", serde_json::Value::Object(per_group))
            .output("healthy", total_healthy)
            .output("unhealthy", not_healthy))
    }
}
