//! `compose.deploy` and `compose.rollback`: a service's image changed the way a Compose
//! project on one host is deployed by hand — the compose file says `image: ${API_IMAGE}`, the
//! env file says `API_IMAGE=registry/api:1.4.2`, and the operator edits the env file and runs
//! `up -d api`.
//!
//! The deploy writes the new value and keeps the old one beside it as `API_IMAGE_PREVIOUS`
//! (the env file is the record an operator can read and a rollback can use), recreates only
//! that service (its current number of containers kept) and waits until every container of
//! it runs the new image and is ready. The rollback swaps the two values back. An image
//! written literally in the compose file is refused: changing it would mean rewriting the
//! compose file, which is the team's source, not opsctl's.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::Deserialize;

use super::docker::Container;
use super::envfile::{env_value, read as read_env, set_values, write_atomic};
use super::{Project, by_service, compose, project, summarize, wait_until};
use crate::duration::Duration;
use crate::kind::{StepContext, StepKind};
use crate::vocab::{Effect, Outcome, Output, StepError};

/// Deploy a new image to one Compose service through its image variable.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Deploy {
    /// The service (its `image:` must be `${VARIABLE}` in the compose file).
    pub service: String,
    /// The image to run, e.g. `registry.example.com/api:1.4.2`.
    pub image: String,
    /// How long to wait until the recreated containers run the image and are ready. Default 120s.
    #[serde(default = "default_wait")]
    pub wait_timeout: Duration,
}

/// Put back the image a service ran before the last `compose.deploy`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rollback {
    /// The service deployed with `compose.deploy`.
    pub service: String,
    /// How long to wait until it is ready again. Default 120s.
    #[serde(default = "default_wait")]
    pub wait_timeout: Duration,
}

fn default_wait() -> Duration {
    Duration::from_secs(120)
}

/// The name of the variable in `${NAME}`, `${NAME:-default}`, `${NAME-default}`,
/// `${NAME:?message}` or `$NAME`, with the default when there is one; `None` for anything
/// else (a literal image, or a variable inside a longer text such as `api:${TAG}`).
pub fn image_variable(image: &str) -> Option<(String, Option<String>)> {
    let t = image.trim();
    let (name, default) = if let Some(inner) = t.strip_prefix("${").and_then(|r| r.strip_suffix('}')) {
        match inner.find([':', '-', '?']) {
            Some(i) => {
                let (n, rest) = inner.split_at(i);
                let rest = rest.strip_prefix(':').unwrap_or(rest);
                let default = rest.strip_prefix('-').map(str::to_string);
                (n.to_string(), default)
            }
            None => (inner.to_string(), None),
        }
    } else if let Some(n) = t.strip_prefix('$') {
        (n.to_string(), None)
    } else {
        return None;
    };
    let ok = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && !name.starts_with(|c: char| c.is_ascii_digit());
    ok.then_some((name, default))
}

/// Where a service's image comes from.
struct Target {
    variable: String,
    /// The compose file's default (`${VAR:-default}`), used when the env file lacks the key.
    default: Option<String>,
    env_file: PathBuf,
}

/// Finds the service's `image:` (the last compose file that sets it wins, as compose merges)
/// and checks it is a variable the env file can set.
fn target(ctx: &StepContext, project: &Project, service: &str) -> Result<Target, StepError> {
    project.check_services(&[service.to_string()])?;
    let mut image: Option<(String, PathBuf)> = None;
    for f in &project.files {
        let file = crate::yaml::read_source(f, "compose file").map_err(|d| StepError::invalid(d.to_string()))?;
        let root = crate::yaml::parse(&file).map_err(|d| StepError::invalid(d.to_string()))?;
        if let Some(text) = root.get("services").and_then(|s| s.get(service)).and_then(|s| s.get("image")).and_then(|i| i.as_str()) {
            image = Some((text.to_string(), f.clone()));
        }
    }
    let Some((image, file)) = image else {
        return Err(StepError::invalid(format!(
            "service `{service}` has no `image:` in the compose files (is it built from source?); compose.deploy changes an image through a variable, e.g. `image: ${{{}_IMAGE}}`",
            env_name(service)
        )));
    };
    let Some((variable, default)) = image_variable(&image) else {
        return Err(StepError::invalid(format!(
            "service `{service}` has a literal image (`image: {image}` in {}); opsctl deploys through a variable so the compose file stays yours: write `image: ${{{var}}}` there and put `{var}={image}` in the env file",
            file.display(),
            var = format!("{}_IMAGE", env_name(service))
        )));
    };
    let env_file = project.env_file.clone().ok_or_else(|| {
        StepError::invalid(format!(
            "instance {} has no compose.env_file: name the env file that sets {variable} (`compose: {{ env_file: .env.prod }}`), so the deploy can record the previous image there",
            ctx.instance.name
        ))
    })?;
    Ok(Target { variable, default, env_file })
}

fn env_name(service: &str) -> String {
    service.to_uppercase().replace(['-', '.'], "_")
}

fn previous_key(variable: &str) -> String {
    format!("{variable}_PREVIOUS")
}

/// Checks an image reference has no characters that would break an env file line.
fn check_image(image: &str) -> Result<(), String> {
    if image.trim().is_empty() {
        return Err("`image` is empty".into());
    }
    if image.chars().any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '\'' | '$' | '`' | '\\' | '#')) {
        return Err(format!("`image` {image:?} is not an image reference (no spaces, quotes, `$`, `#` or backslashes)"));
    }
    Ok(())
}

/// Sets `variable` to `image` (and `_PREVIOUS` to `previous`), recreates the service with
/// its current number of containers, and waits until all run `image` and are ready. The
/// outer error: nothing was changed; the inner one: the env file was written, but the
/// service did not come up with it.
async fn apply(ctx: &StepContext, service: &str, t: &Target, image: &str, previous: &str, within: Duration) -> Result<Result<String, StepError>, StepError> {
    let (project, docker) = project(ctx)?;
    let (text, mode) = read_env(&t.env_file)?;
    let prev_key = previous_key(&t.variable);
    let running = by_service(&docker.project_containers(&project.name).await?, service).iter().filter(|c| c.running()).count().max(1);
    write_atomic(&t.env_file, &set_values(&text, &[(&t.variable, image), (&prev_key, previous)]), mode)?;
    let args = vec!["up".into(), "-d".into(), "--no-deps".into(), "--scale".into(), format!("{service}={running}"), service.to_string()];
    let done = |cs: &[Container]| {
        let mine = by_service(cs, service);
        mine.len() == running && mine.iter().all(|c| c.image == image && c.ready())
    };
    let what = format!("{service} running {image} and ready");
    Ok(async {
        compose(&project, &args).await?;
        let cs = wait_until(&docker, &project, within.std(), &what, done).await?;
        Ok(summarize(service, &by_service(&cs, service)))
    }
    .await)
}

impl StepKind for Deploy {
    const NAME: &'static str = "compose.deploy";
    const SUMMARY: &'static str = "set a service's image through its `${VARIABLE}` in the env file (the previous kept as VARIABLE_PREVIOUS), up -d that service, wait until it runs the image ready";
    const EFFECT: Effect = Effect::Mutate;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "previous", ty: "string", help: "the image before (what compose.rollback puts back)" },
        Output { name: "image", ty: "string", help: "the image now" },
        Output { name: "variable", ty: "string", help: "the env file key set" },
        Output { name: "env_file", ty: "string", help: "the env file written" },
    ];

    fn check(&self) -> Result<(), String> {
        if crate::yaml::de::is_template(&self.image) {
            return Ok(());
        }
        check_image(&self.image)
    }

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        check_image(&self.image).map_err(StepError::invalid)?;
        let (project, _) = project(ctx)?;
        let t = target(ctx, &project, &self.service)?;
        let (text, _) = read_env(&t.env_file)?;
        let previous = env_value(&text, &t.variable).or_else(|| t.default.clone()).ok_or_else(|| {
            StepError::invalid(format!(
                "{} does not set {} and the compose file gives no default; set the image running now there first",
                t.env_file.display(),
                t.variable
            ))
        })?;
        let outcome = match apply(ctx, &self.service, &t, &self.image, &previous, self.wait_timeout).await? {
            Ok(state) => Outcome::passed(format!(
                "{}: {previous} → {} ({}={} in {}, the previous kept as {}); {state}",
                self.service,
                self.image,
                t.variable,
                self.image,
                t.env_file.display(),
                previous_key(&t.variable)
            )),
            // Changed but not ready: failed, with the outputs a rollback needs.
            Err(e) => Outcome::failed(format!(
                "{} ({} now says {}={}, the previous kept as {})",
                e.message,
                t.env_file.display(),
                t.variable,
                self.image,
                previous_key(&t.variable)
            )),
        };
        Ok(outcome
            .value(format!("{previous} → {}", self.image))
            .output("previous", previous)
            .output("image", self.image.clone())
            .output("variable", t.variable.clone())
            .output("env_file", t.env_file.display().to_string()))
    }

    async fn plan(&self, ctx: &StepContext) -> Result<String, StepError> {
        check_image(&self.image).map_err(StepError::invalid)?;
        let (project, _) = project(ctx)?;
        let t = target(ctx, &project, &self.service)?;
        let (text, _) = read_env(&t.env_file)?;
        let previous = env_value(&text, &t.variable).or_else(|| t.default.clone()).unwrap_or_else(|| "(unset)".into());
        Ok(format!(
            "would set {}={} in {} (now {previous}, kept as {}), recreate {} and wait up to {} until it runs the image and is ready",
            t.variable,
            self.image,
            t.env_file.display(),
            previous_key(&t.variable),
            self.service,
            self.wait_timeout
        ))
    }
}

/// The images a rollback swaps: (now, previous).
fn rollback_images(t: &Target) -> Result<(String, String), StepError> {
    let (text, _) = read_env(&t.env_file)?;
    let key = previous_key(&t.variable);
    let previous = env_value(&text, &key).filter(|v| !v.is_empty()).ok_or_else(|| {
        StepError::invalid(format!("no previous image is recorded for this service ({key} is not in {}); `opsctl deploy` records it", t.env_file.display()))
    })?;
    let now = env_value(&text, &t.variable).or_else(|| t.default.clone()).unwrap_or_default();
    Ok((now, previous))
}

impl StepKind for Rollback {
    const NAME: &'static str = "compose.rollback";
    const SUMMARY: &'static str = "put back the image a service ran before the last compose.deploy (VARIABLE_PREVIOUS), up -d it, wait until ready";
    const EFFECT: Effect = Effect::Mutate;
    const OUTPUTS: &'static [Output] =
        &[Output { name: "previous", ty: "string", help: "the image rolled back from" }, Output { name: "image", ty: "string", help: "the image now" }];

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let (project, _) = project(ctx)?;
        let t = target(ctx, &project, &self.service)?;
        let (now, previous) = rollback_images(&t)?;
        let state = apply(ctx, &self.service, &t, &previous, &now, self.wait_timeout).await??;
        Ok(Outcome::passed(format!("{}: rolled back {now} → {previous} ({} in {}); {state}", self.service, t.variable, t.env_file.display()))
            .value(format!("{now} → {previous}"))
            .output("previous", now)
            .output("image", previous))
    }

    async fn plan(&self, ctx: &StepContext) -> Result<String, StepError> {
        let (project, _) = project(ctx)?;
        let t = target(ctx, &project, &self.service)?;
        let (now, previous) = rollback_images(&t)?;
        Ok(format!(
            "would set {}={previous} in {} (now {now}), recreate {} and wait up to {} until it is ready",
            t.variable,
            t.env_file.display(),
            self.service,
            self.wait_timeout
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_variables_are_recognised_and_literals_are_not() {
        assert_eq!(image_variable("${API_IMAGE}"), Some(("API_IMAGE".into(), None)));
        assert_eq!(image_variable("${API_IMAGE:-api:1}"), Some(("API_IMAGE".into(), Some("api:1".into()))));
        assert_eq!(image_variable("${API_IMAGE-api:1}"), Some(("API_IMAGE".into(), Some("api:1".into()))));
        assert_eq!(image_variable("${API_IMAGE:?set it}"), Some(("API_IMAGE".into(), None)));
        assert_eq!(image_variable("$API_IMAGE"), Some(("API_IMAGE".into(), None)));
        assert_eq!(image_variable("nginx:1.25"), None);
        assert_eq!(image_variable("api:${TAG}"), None);
        assert_eq!(image_variable("${}"), None);
    }

    #[test]
    fn image_references_cannot_break_the_env_file() {
        assert!(check_image("registry.example.com:5000/api:1.4.2@sha256:abc").is_ok());
        assert!(check_image("api:1\nEVIL=1").is_err());
        assert!(check_image("api $(x)").is_err());
        assert!(check_image("").is_err());
    }
}
