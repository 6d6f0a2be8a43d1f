//! ECS steps and what they share: services described in batches of ten (the API's limit),
//! a cluster's stopped tasks read once and grouped by service, and waiting until a service
//! is stable — `aws ecs wait services-stable`'s rule: running = desired and one deployment.

pub mod deploy;
pub mod rollback;
pub mod scale;
pub mod services;

use std::time::{Duration, Instant};

use aws_sdk_ecs::types::{DeploymentRolloutState, DesiredStatus, Service, Task};

use super::{Retries, config, sdk_error};
use crate::kind::StepContext;
use crate::vocab::{ErrorClass, StepError};

/// An ECS client for the instance, with its configuration (for messages) and the step's
/// retry counter.
pub async fn client(ctx: &StepContext) -> Result<(aws_sdk_ecs::Client, aws_config::SdkConfig, Retries), StepError> {
    let c = config(ctx).await?;
    let retries = Retries::default();
    let conf = aws_sdk_ecs::config::Builder::from(&c).interceptor(retries.clone()).build();
    Ok((aws_sdk_ecs::Client::from_conf(conf), c, retries))
}

/// The cluster a step names, else the instance's `ecs.cluster`.
pub fn cluster(ctx: &StepContext, given: Option<&str>) -> Result<String, StepError> {
    if let Some(c) = given.filter(|c| !c.is_empty()) {
        return Ok(c.to_string());
    }
    ctx.instance.ecs.as_ref().map(|e| e.cluster.clone()).filter(|c| !c.is_empty()).ok_or_else(|| {
        StepError::invalid(format!(
            "no ECS cluster: give `cluster:` to the step, or add `ecs: {{ cluster: NAME }}` to instance {} in the inventory",
            ctx.instance.name
        ))
    })
}

/// Every service of a cluster, by name (ListServices, paged).
pub async fn list(client: &aws_sdk_ecs::Client, config: &aws_config::SdkConfig, cluster: &str) -> Result<Vec<String>, StepError> {
    let mut names = Vec::new();
    let mut pages = client.list_services().cluster(cluster).max_results(100).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| sdk_error(e, &format!("listing the services of cluster {cluster}"), config))?;
        names.extend(page.service_arns().iter().map(|a| a.rsplit('/').next().unwrap_or(a).to_string()));
    }
    names.sort();
    Ok(names)
}

/// Services by name, ten per DescribeServices call, in the order asked; one that does not
/// exist (or was deleted) is an error naming it.
pub async fn describe(client: &aws_sdk_ecs::Client, config: &aws_config::SdkConfig, cluster: &str, names: &[String]) -> Result<Vec<Service>, StepError> {
    let calls = names.chunks(10).map(|batch| async move {
        client
            .describe_services()
            .cluster(cluster)
            .set_services(Some(batch.to_vec()))
            .send()
            .await
            .map_err(|e| sdk_error(e, &format!("describing services of cluster {cluster}"), config))
    });
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for out in futures_util::future::try_join_all(calls).await? {
        found.extend(out.services().iter().filter(|s| s.status() != Some("INACTIVE")).cloned());
        missing.extend(out.failures().iter().filter_map(|f| f.arn()).map(|a| a.rsplit('/').next().unwrap_or(a).to_string()));
    }
    for n in names {
        if !found.iter().any(|s| s.service_name() == Some(n.as_str())) && !missing.contains(n) {
            missing.push(n.clone());
        }
    }
    if !missing.is_empty() {
        return Err(StepError::new(ErrorClass::Failed, format!("cluster {cluster} has no service {} [{}]", missing.join(", "), super::target(config))));
    }
    let mut ordered = Vec::with_capacity(names.len());
    for n in names {
        if let Some(s) = found.iter().find(|s| s.service_name() == Some(n.as_str())) {
            ordered.push(s.clone());
        }
    }
    Ok(ordered)
}

/// One service, by name.
pub async fn describe_one(client: &aws_sdk_ecs::Client, config: &aws_config::SdkConfig, cluster: &str, name: &str) -> Result<Service, StepError> {
    let mut all = describe(client, config, cluster, &[name.to_string()]).await?;
    all.pop().ok_or_else(|| StepError::new(ErrorClass::Failed, format!("cluster {cluster} has no service {name}")))
}

/// The tasks of a cluster stopped since `since`, read once (ListTasks paged, DescribeTasks
/// in batches of 100) rather than per service.
pub async fn stopped_tasks(client: &aws_sdk_ecs::Client, config: &aws_config::SdkConfig, cluster: &str, since: Duration) -> Result<Vec<Task>, StepError> {
    let mut arns = Vec::new();
    let mut pages = client.list_tasks().cluster(cluster).desired_status(DesiredStatus::Stopped).max_results(100).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| sdk_error(e, &format!("listing the stopped tasks of cluster {cluster}"), config))?;
        arns.extend(page.task_arns().iter().cloned());
    }
    let calls = arns.chunks(100).map(|batch| async move {
        client
            .describe_tasks()
            .cluster(cluster)
            .set_tasks(Some(batch.to_vec()))
            .send()
            .await
            .map_err(|e| sdk_error(e, &format!("describing the stopped tasks of cluster {cluster}"), config))
    });
    let cutoff = std::time::SystemTime::now() - since;
    let mut tasks = Vec::new();
    for out in futures_util::future::try_join_all(calls).await? {
        tasks.extend(out.tasks().iter().filter(|t| {
            t.stopped_at().and_then(|at| std::time::SystemTime::try_from(*at).ok()).is_none_or(|at| at >= cutoff)
        }).cloned());
    }
    Ok(tasks)
}

/// The service a task belongs to (its group is `service:NAME`).
pub fn task_service(t: &Task) -> Option<&str> {
    t.group().and_then(|g| g.strip_prefix("service:"))
}

/// Whether a stopped task stopped for a reason worth reporting: anything but the scheduler
/// replacing it in a deployment or scale-in (or a person stopping it) with every container
/// exiting 0.
pub fn abnormal(t: &Task) -> bool {
    let routine = matches!(t.stop_code().map(|c| c.as_str()), Some("ServiceSchedulerInitiated") | Some("UserInitiated"))
        && !t.stopped_reason().is_some_and(|r| r.contains("failed") || r.contains("exited"));
    let bad_exit = t.containers().iter().any(|c| c.exit_code().is_some_and(|x| x != 0));
    !routine || bad_exit
}

/// `Essential container in task exited (api: exit 1, OutOfMemoryError)`.
pub fn describe_stop(t: &Task) -> String {
    let reason = t.stopped_reason().unwrap_or("no reason given");
    let containers: Vec<String> = t
        .containers()
        .iter()
        .filter(|c| c.exit_code().is_some_and(|x| x != 0) || c.reason().is_some())
        .map(|c| {
            let mut s = format!("{}:", c.name().unwrap_or("?"));
            if let Some(x) = c.exit_code() {
                s.push_str(&format!(" exit {x}"));
            }
            if let Some(r) = c.reason() {
                s.push_str(&format!(" {r}"));
            }
            s
        })
        .collect();
    if containers.is_empty() { reason.to_string() } else { format!("{reason} ({})", containers.join("; ")) }
}

/// The primary deployment's rollout state (`COMPLETED`, `IN_PROGRESS`, `FAILED`), if ECS
/// reports one (services with a non-ECS deployment controller have none).
pub fn rollout(s: &Service) -> Option<(&DeploymentRolloutState, Option<&str>)> {
    let primary = s.deployments().iter().find(|d| d.status() == Some("PRIMARY"))?;
    primary.rollout_state().map(|r| (r, primary.rollout_state_reason()))
}

/// `running 2/2, rollout COMPLETED, api:7` — a service's state in a few words.
pub fn state(s: &Service) -> String {
    let mut out = format!("running {}/{}", s.running_count(), s.desired_count());
    if s.pending_count() > 0 {
        out.push_str(&format!(" ({} pending)", s.pending_count()));
    }
    if let Some((r, _)) = rollout(s) {
        out.push_str(&format!(", rollout {}", r.as_str()));
    }
    if s.deployments().len() > 1 {
        out.push_str(&format!(", {} deployments", s.deployments().len()));
    }
    if let Some(td) = s.task_definition() {
        out.push_str(&format!(", {}", revision(td)));
    }
    out
}

/// `arn:aws:ecs:…:task-definition/api:7` → `api:7`.
pub fn revision(task_definition: &str) -> &str {
    task_definition.rsplit('/').next().unwrap_or(task_definition)
}

/// Stable, as `aws ecs wait services-stable` decides: one deployment, running = desired, and
/// (where ECS reports it) the rollout not in progress.
pub fn stable(s: &Service) -> bool {
    s.deployments().len() == 1
        && s.running_count() == s.desired_count()
        && !rollout(s).is_some_and(|(r, _)| matches!(r, DeploymentRolloutState::InProgress | DeploymentRolloutState::Failed))
}

/// Polls a service until it is stable, or its rollout failed, or `timeout` passed.
pub async fn wait_stable(
    client: &aws_sdk_ecs::Client,
    config: &aws_config::SdkConfig,
    cluster: &str,
    name: &str,
    limit: crate::duration::Duration,
    every: Duration,
) -> Result<(Service, Duration), StepError> {
    let timeout = limit.std();
    let started = Instant::now();
    loop {
        let s = describe_one(client, config, cluster, name).await?;
        if let Some((DeploymentRolloutState::Failed, reason)) = rollout(&s) {
            return Err(StepError::new(ErrorClass::Failed, format!("the rollout of {name} failed: {}", reason.unwrap_or("no reason given"))));
        }
        if stable(&s) {
            return Ok((s, started.elapsed()));
        }
        if started.elapsed() >= timeout {
            return Err(StepError::new(
                ErrorClass::Timeout,
                format!("{name} was not stable after {limit}: {}", state(&s)),
            ));
        }
        tokio::time::sleep(every.min(timeout.saturating_sub(started.elapsed())).max(Duration::from_millis(50))).await;
    }
}

/// The revision the primary deployment runs (`api:7`), else the service's.
pub fn running_revision(s: &Service) -> Option<String> {
    s.deployments()
        .iter()
        .find(|d| d.status() == Some("PRIMARY"))
        .and_then(|d| d.task_definition())
        .or(s.task_definition())
        .map(|t| revision(t).to_string())
}

/// Points a service at `task_definition` and waits until it is stable on it; returns the
/// service then and how long it took.
pub async fn switch(
    client: &aws_sdk_ecs::Client,
    config: &aws_config::SdkConfig,
    cluster: &str,
    name: &str,
    task_definition: &str,
    limit: crate::duration::Duration,
    every: Duration,
) -> Result<(Service, Duration), StepError> {
    switched(client, config, cluster, name, task_definition, limit, every).await?
}

/// [`switch`], saying whether the service was changed: the outer error means it was not
/// (the update was refused), the inner one that it was but did not become stable on the
/// new revision.
pub async fn switched(
    client: &aws_sdk_ecs::Client,
    config: &aws_config::SdkConfig,
    cluster: &str,
    name: &str,
    task_definition: &str,
    limit: crate::duration::Duration,
    every: Duration,
) -> Result<Result<(Service, Duration), StepError>, StepError> {
    client
        .update_service()
        .cluster(cluster)
        .service(name)
        .task_definition(task_definition)
        .send()
        .await
        .map_err(|e| sdk_error(e, &format!("updating {name} in cluster {cluster} to {}", revision(task_definition)), config))?;
    Ok(async {
        let (s, took) = wait_stable(client, config, cluster, name, limit, every).await?;
        let now = running_revision(&s).unwrap_or_default();
        if now != revision(task_definition) {
            return Err(StepError::new(ErrorClass::Failed, format!("{name} is stable but runs {now}, not {}", revision(task_definition))));
        }
        Ok((s, took))
    }
    .await)
}

/// A task definition by family:revision or ARN, with its tags.
pub async fn task_definition(
    client: &aws_sdk_ecs::Client,
    config: &aws_config::SdkConfig,
    name: &str,
) -> Result<(aws_sdk_ecs::types::TaskDefinition, Vec<aws_sdk_ecs::types::Tag>), StepError> {
    let out = client
        .describe_task_definition()
        .task_definition(name)
        .include(aws_sdk_ecs::types::TaskDefinitionField::Tags)
        .send()
        .await
        .map_err(|e| {
            let err = sdk_error(e, &format!("reading task definition {}", revision(name)), config);
            if err.message.contains("Unable to describe task definition") || err.message.contains("not found") || err.message.contains("does not exist") {
                StepError::new(ErrorClass::Failed, format!("task definition {} does not exist [{}]", revision(name), super::target(config)))
            } else {
                err
            }
        })?;
    let tags = out.tags().to_vec();
    let td = out.task_definition.ok_or_else(|| StepError::error(format!("ECS described no task definition {name}")))?;
    Ok((td, tags))
}
