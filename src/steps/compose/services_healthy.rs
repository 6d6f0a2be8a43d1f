//! `compose.services_healthy`: every (or every listed) service running, healthchecks
//! healthy, replica counts as expected, restarts under a limit — from one engine listing.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;

use super::{by_service, project, summarize};
use crate::kind::{StepContext, StepKind};
use crate::vocab::{Effect, Outcome, Output, StepError, Verdict};

/// Check that a project's services are up and healthy.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServicesHealthy {
    /// Which services. Default: every service in the compose files.
    #[serde(default)]
    pub services: Vec<String>,
    /// Services that are not meant to keep running (one-shot jobs); skipped.
    #[serde(default)]
    pub ignore: Vec<String>,
    /// Expected running containers per service: `{ api: 3 }`. Default: at least one.
    #[serde(default)]
    pub replicas: IndexMap<String, u32>,
    /// Fail when a container restarted more often than this.
    #[serde(default)]
    pub max_restarts: Option<i64>,
}

impl StepKind for ServicesHealthy {
    const NAME: &'static str = "compose.services_healthy";
    const SUMMARY: &'static str = "services running, healthchecks healthy, replica counts and restarts, from one engine listing";
    const EFFECT: Effect = Effect::Read;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "services", ty: "map", help: "per service: running, expected, healthy, unhealthy, restarts" },
        Output { name: "containers", ty: "list", help: "id, name, service, state, health, restart_count" },
        Output { name: "ready", ty: "int", help: "services fully ready" },
    ];

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let (project, docker) = project(ctx)?;
        let wanted = project.selected(&self.services)?;
        project.check_services(&self.ignore)?;
        project.check_services(&self.replicas.keys().cloned().collect::<Vec<_>>())?;
        let containers = docker.project_containers(&project.name).await?;
        let mut verdict = Verdict::Passed;
        let mut problems = Vec::new();
        let mut summary = serde_json::Map::new();
        let mut ready_services = 0;
        let checked: Vec<&String> = wanted.iter().filter(|s| !self.ignore.contains(s)).collect();
        for service in &checked {
            let cs = by_service(&containers, service);
            let running = cs.iter().filter(|c| c.running()).count() as u32;
            let expected = self.replicas.get(*service).copied();
            let unhealthy: Vec<&str> = cs.iter().filter(|c| c.health.as_deref() == Some("unhealthy")).map(|c| c.name.as_str()).collect();
            let starting = cs.iter().filter(|c| c.running() && c.health.as_deref() == Some("starting")).count();
            let stopped: Vec<String> = cs.iter().filter(|c| !c.running()).map(|c| format!("{} {}", c.name, c.describe())).collect();
            let restarts = cs.iter().map(|c| c.restart_count).max().unwrap_or(0);
            let mut bad = false;
            match expected {
                Some(n) if running != n => {
                    problems.push(format!("{service}: {running} running, expected {n}"));
                    bad = true;
                }
                None if running == 0 => {
                    problems.push(if cs.is_empty() { format!("{service}: no containers") } else { format!("{service}: none running ({})", stopped.join(", ")) });
                    bad = true;
                }
                _ => {}
            }
            if !stopped.is_empty() && running > 0 {
                problems.push(format!("{service}: {}", stopped.join(", ")));
                bad = true;
            }
            if !unhealthy.is_empty() {
                problems.push(format!("{service}: unhealthy ({})", unhealthy.join(", ")));
                bad = true;
            }
            if let Some(max) = self.max_restarts.filter(|m| restarts > *m) {
                problems.push(format!("{service}: restarted {restarts} times (more than {max})"));
                bad = true;
            }
            if bad {
                verdict = Verdict::Failed;
            } else if starting > 0 {
                verdict = verdict.max(Verdict::Warned);
                problems.push(format!("{service}: healthcheck still starting"));
            } else {
                ready_services += 1;
            }
            summary.insert(
                service.to_string(),
                serde_json::json!({
                    "running": running,
                    "expected": expected,
                    "healthy": cs.iter().filter(|c| c.health.as_deref() == Some("healthy")).count(),
                    "unhealthy": unhealthy.len(),
                    "restarts": restarts,
                    "summary": summarize(service, &cs),
                }),
            );
        }
        let message = if problems.is_empty() {
            format!("{} services of {} ready", checked.len(), project.name)
        } else {
            problems.join("; ")
        };
        Ok(Outcome::new(verdict, message)
            .value(format!("{ready_services}/{} ready", checked.len()))
            .output("services", summary)
            .output("containers", serde_json::to_value(&containers).unwrap_or_default())
            .output("ready", ready_services))
    }
}
