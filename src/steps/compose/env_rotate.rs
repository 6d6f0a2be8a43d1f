//! `compose.env_rotate`: give named keys of an env file new random values, recreate the
//! services that read it, check they come back healthy — and put the old file back if
//! they do not.
//!
//! Values come from the operating system's CSPRNG, are registered as secrets (masked in
//! every output) and never printed. The old file is kept as `<file>.<time>.bak`, mode 0600.
//! Services are recreated (`up -d --force-recreate`), not restarted: a restart does not
//! re-read an env file.

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::Deserialize;

use super::docker::Container;
use super::envfile::{self, keys_in, set_values, write_atomic};
use super::{Project, by_service, compose, project, wait_until};
use crate::duration::Duration;
use crate::helpers::random::{Charset, random_value};
use crate::kind::{StepContext, StepKind};
use crate::secret::Secret;
use crate::vocab::{Effect, ErrorClass, Outcome, Output, StepError};

/// Rotate keys of an env file used by a compose project.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvRotate {
    /// The env file. Default: the instance's `compose.env_file`.
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// The keys to give new values (each must be in the file).
    pub keys: Vec<String>,
    /// Length of the new values. Default 32.
    #[serde(default = "default_length")]
    pub length: usize,
    /// Characters of the new values. Default alphanumeric.
    #[serde(default)]
    pub charset: Charset,
    /// Services to recreate. Default: those whose `env_file:` is this file; for the
    /// project's own env file, all services.
    #[serde(default)]
    pub services: Vec<String>,
    /// How long to wait for them to be healthy. Default 120s.
    #[serde(default = "default_wait")]
    pub wait_timeout: Duration,
}

fn default_length() -> usize {
    32
}
fn default_wait() -> Duration {
    Duration::from_secs(120)
}

impl EnvRotate {
    fn file(&self, ctx: &StepContext, project: &Project) -> Result<PathBuf, StepError> {
        self.file.clone().or_else(|| project.env_file.clone()).ok_or_else(|| {
            StepError::invalid(format!("name the env file with `file:` (instance {} has no compose.env_file)", ctx.instance.name))
        })
    }

    /// The services that read `file`.
    fn services(&self, project: &Project, file: &Path) -> Result<Vec<String>, StepError> {
        if !self.services.is_empty() {
            return project.selected(&self.services);
        }
        let canon = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
        let target = canon(file);
        let mut users: Vec<String> = project.service_env_files.iter().filter(|(_, f)| canon(f) == target).map(|(s, _)| s.clone()).collect();
        users.dedup();
        if users.is_empty() && project.env_file.as_deref().map(canon).as_ref() == Some(&target) {
            return Ok(project.services.clone());
        }
        if users.is_empty() {
            return Err(StepError::invalid(format!("no service declares env_file {}; name the services to recreate with `services:`", file.display())));
        }
        Ok(users)
    }

    async fn recreate(&self, project: &Project, services: &[String]) -> Result<(), StepError> {
        let mut args = vec!["up".to_string(), "-d".to_string(), "--force-recreate".to_string(), "--no-deps".to_string()];
        args.extend(services.iter().cloned());
        compose(project, &args).await.map(|_| ())
    }

    fn read(&self, file: &Path) -> Result<(String, u32), StepError> {
        let (text, mode) = envfile::read(file)?;
        let present = keys_in(&text);
        for k in &self.keys {
            if !present.contains(k) {
                return Err(StepError::invalid(format!("key {k} is not in {} (it has: {})", file.display(), present.join(", "))));
            }
        }
        Ok((text, mode))
    }
}

impl StepKind for EnvRotate {
    const NAME: &'static str = "compose.env_rotate";
    const SUMMARY: &'static str = "new random values for keys of an env file (0600 backup), recreate its services, roll back if unhealthy";
    const EFFECT: Effect = Effect::Mutate;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "keys", ty: "list", help: "the keys given new values (never the values)" },
        Output { name: "backup", ty: "string", help: "the copy of the old file (mode 0600)" },
        Output { name: "services", ty: "list", help: "the services recreated" },
    ];

    fn check(&self) -> Result<(), String> {
        if self.keys.is_empty() {
            return Err("`keys` lists no key to rotate".into());
        }
        if !(16..=256).contains(&self.length) {
            return Err(format!("`length` is {}; use 16 to 256 characters", self.length));
        }
        Ok(())
    }

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let (project, docker) = project(ctx)?;
        let file = self.file(ctx, &project)?;
        let services = self.services(&project, &file)?;
        let (old, mode) = self.read(&file)?;
        let new: Vec<(String, Secret)> = self.keys.iter().map(|k| Ok((k.clone(), Secret::new(random_value(self.length, self.charset)?)))).collect::<Result<_, StepError>>()?;
        // The old file, kept where only its owner can read it.
        let backup = PathBuf::from(format!("{}.{}.bak", file.display(), jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ")));
        write_atomic(&backup, &old, 0o600)?;
        let values: Vec<(&str, &str)> = new.iter().map(|(k, v)| (k.as_str(), v.expose())).collect();
        write_atomic(&file, &set_values(&old, &values), mode)?;
        let ready = |cs: &[Container]| services.iter().all(|s| {
            let mine = by_service(cs, s);
            !mine.is_empty() && mine.iter().all(|c| c.ready())
        });
        let outcome = async {
            self.recreate(&project, &services).await?;
            wait_until(&docker, &project, self.wait_timeout.std(), "the recreated services healthy", ready).await
        }
        .await;
        if let Err(e) = outcome {
            // Put the old values back and bring the services back with them.
            write_atomic(&file, &old, mode)?;
            let back = async {
                self.recreate(&project, &services).await?;
                wait_until(&docker, &project, self.wait_timeout.std(), "the services healthy with the old values", ready).await
            }
            .await;
            let how = match back {
                Ok(_) => "the old file is back and the services are healthy with it".to_string(),
                Err(b) => format!("the old file is back, but the services are not healthy with it either: {}", b.message),
            };
            return Err(StepError::new(ErrorClass::Failed, format!("rotation rolled back: {}; {how}", e.message)));
        }
        Ok(Outcome::passed(format!(
            "new {}-character values for {} in {}; recreated {}; the old file is kept as {}",
            self.length,
            self.keys.join(", "),
            file.display(),
            services.join(", "),
            backup.display()
        ))
        .value(format!("{} keys", self.keys.len()))
        .output("keys", self.keys.clone())
        .output("backup", backup.display().to_string())
        .output("services", services))
    }

    async fn plan(&self, ctx: &StepContext) -> Result<String, StepError> {
        let (project, _) = project(ctx)?;
        let file = self.file(ctx, &project)?;
        let services = self.services(&project, &file)?;
        self.read(&file)?;
        Ok(format!(
            "would give new {}-character values to {} in {} (a 0600 copy of the old file kept), recreate {} and wait up to {} for health; the old file goes back if they are not healthy",
            self.length,
            self.keys.join(", "),
            file.display(),
            services.join(", "),
            self.wait_timeout
        ))
    }
}
