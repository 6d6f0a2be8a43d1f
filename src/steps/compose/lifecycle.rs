//! What the lifecycle kinds share (`compose.up`, `compose.stop`, `compose.start`,
//! `compose.restart`, `compose.scale`): changes go through the compose CLI, and are then
//! waited for through the engine.

use super::docker::Container;
use super::{Project, by_service, compose, project, summarize, wait_until};
use crate::duration::Duration;
use crate::kind::StepContext;
use crate::vocab::{Outcome, Output, StepError};

pub fn default_timeout() -> Duration {
    Duration::from_secs(120)
}
pub fn yes() -> bool {
    true
}

pub fn state_of(containers: &[Container], services: &[String]) -> String {
    services.iter().map(|s| summarize(s, &by_service(containers, s))).collect::<Vec<_>>().join("; ")
}

/// Every service listed has at least one container, and all of them are ready.
pub fn all_ready(services: &[String]) -> impl Fn(&[Container]) -> bool + '_ {
    move |cs: &[Container]| {
        services.iter().all(|s| {
            let mine = by_service(cs, s);
            !mine.is_empty() && mine.iter().all(|c| c.ready())
        })
    }
}

pub const OUTPUTS: &[Output] = &[
    Output { name: "services", ty: "list", help: "the services acted on" },
    Output { name: "state", ty: "string", help: "their state afterwards" },
];

pub async fn wait_ready(ctx: &StepContext, services: &[String], timeout: Duration, what: &str) -> Result<String, StepError> {
    let (project, docker) = project(ctx)?;
    let cs = wait_until(&docker, &project, timeout.std(), what, all_ready(services)).await?;
    Ok(state_of(&cs, services))
}

pub async fn current(ctx: &StepContext, services: &[String]) -> Result<(Project, Vec<String>, String), StepError> {
    let (project, docker) = project(ctx)?;
    let selected = project.selected(services)?;
    let cs = docker.project_containers(&project.name).await?;
    let state = state_of(&cs, &selected);
    Ok((project, selected, state))
}

/// Runs `compose ARGS [services]`, then, with `wait`, waits until the services are ready;
/// the outcome says `<done>: <state>`. What `compose.up` and `compose.start` do.
pub async fn change_then_wait(ctx: &StepContext, selected: &[String], mut args: Vec<String>, wait: bool, timeout: Duration, done: &str) -> Result<Outcome, StepError> {
    let (project, services, _) = current(ctx, selected).await?;
    args.extend(selected.iter().cloned());
    compose(&project, &args).await?;
    let state = if wait { wait_ready(ctx, &services, timeout, "services ready").await? } else { String::new() };
    Ok(Outcome::passed(format!("{done}: {state}")).value(format!("{} services", services.len())).output("services", services).output("state", state))
}
