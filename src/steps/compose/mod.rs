//! The Docker Compose backend: a project's services — health, logs, stats, lifecycle,
//! exec, env-file rotation — and Docker's disk use.
//!
//! Reading goes to the Docker Engine API ([`docker`]); changing goes through the compose
//! CLI — `docker compose` (v2) when installed, else `docker-compose` (v1) — always as an
//! argv list. The project comes from the inventory:
//!
//! ```yaml
//! compose: { files: [docker-compose.prod.yml], project: loyalty, env_file: .env.prod }
//! ```

pub mod deploy;
pub mod disk;
pub mod docker;
pub mod env_rotate;
pub mod envfile;
pub mod exec;
pub mod lifecycle;
pub mod logs;
pub mod restart;
pub mod scale;
pub mod services_healthy;
pub mod settings;
pub mod start;
pub mod stats;
pub mod stop;
pub mod transport;
pub mod up;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::kind::StepContext;
use crate::vocab::{ErrorClass, StepError};
use docker::{Container, Docker};
use settings::ComposeSettings;

/// A project resolved for use.
#[derive(Clone, Debug)]
pub struct Project {
    pub files: Vec<PathBuf>,
    /// As compose names it in container labels.
    pub name: String,
    pub env_file: Option<PathBuf>,
    /// Service names defined in the files, in order.
    pub services: Vec<String>,
    /// Env files each service declares (`env_file:`), resolved against the project dir.
    pub service_env_files: Vec<(String, PathBuf)>,
}

/// Compose's project-name normalisation: lower case, `[a-z0-9_-]` only.
pub fn normalize_name(name: &str) -> String {
    name.to_lowercase().chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-').collect()
}

impl Project {
    pub fn resolve(settings: &ComposeSettings) -> Result<Project, StepError> {
        if settings.files.is_empty() {
            return Err(StepError::invalid("compose: `files` lists no compose file"));
        }
        let mut services: Vec<String> = Vec::new();
        let mut service_env_files = Vec::new();
        for f in &settings.files {
            let file = crate::yaml::read_source(f, "compose file").map_err(|d| StepError::invalid(d.to_string()))?;
            let root = crate::yaml::parse(&file).map_err(|d| StepError::invalid(d.to_string()))?;
            let Some(map) = root.get("services").and_then(crate::yaml::Node::as_map) else {
                if root.is_null() {
                    return Err(StepError::invalid(format!("compose file {} is empty", f.display())));
                }
                return Err(StepError::invalid(format!("compose file {} has no `services:` mapping", f.display())));
            };
            let dir = f.parent().unwrap_or(Path::new("."));
            for (k, v) in map {
                let name = k.as_str().unwrap_or_default().to_string();
                for env in v.get("env_file").into_iter().flat_map(|e| match e.as_seq() {
                    Some(items) => items.iter().filter_map(|i| i.as_str()).collect::<Vec<_>>(),
                    None => e.as_str().into_iter().collect(),
                }) {
                    service_env_files.push((name.clone(), dir.join(env)));
                }
                if !services.contains(&name) {
                    services.push(name);
                }
            }
        }
        let dir_name = settings.files[0]
            .canonicalize()
            .ok()
            .and_then(|p| p.parent().and_then(|d| d.file_name()).map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_default();
        let name = normalize_name(settings.project.as_deref().unwrap_or(&dir_name));
        if name.is_empty() {
            return Err(StepError::invalid("compose: set `project:` (the directory name gives no usable project name)"));
        }
        Ok(Project { files: settings.files.clone(), name, env_file: settings.env_file.clone(), services, service_env_files })
    }

    /// Checks that every service named exists in the files.
    pub fn check_services(&self, names: &[String]) -> Result<(), StepError> {
        for n in names {
            if !self.services.contains(n) {
                let mut msg = format!("service `{n}` is not in the compose files");
                if let Some(s) = crate::diagnostic::did_you_mean(n, self.services.iter().map(String::as_str)) {
                    msg.push_str(&format!("; did you mean `{s}`?"));
                }
                msg.push_str(&format!(" (services: {})", self.services.join(", ")));
                return Err(StepError::invalid(msg));
            }
        }
        Ok(())
    }

    /// The services named, or all of them.
    pub fn selected(&self, names: &[String]) -> Result<Vec<String>, StepError> {
        self.check_services(names)?;
        Ok(if names.is_empty() { self.services.clone() } else { names.to_vec() })
    }
}

/// The instance's project and the engine, or a clear error.
pub fn project(ctx: &StepContext) -> Result<(Project, Docker), StepError> {
    let settings = ctx.instance.compose.as_ref().ok_or_else(|| {
        StepError::invalid(format!(
            "instance {} has no compose settings; add `compose: {{ files: [docker-compose.yml] }}` to it in the inventory",
            ctx.instance.name
        ))
    })?;
    Ok((Project::resolve(settings)?, Docker::from_env()?))
}

/// Which compose program is installed.
#[derive(Clone, Debug)]
pub struct ComposeCli {
    pub argv0: Vec<String>,
    pub version: String,
}

static CLI: OnceLock<Result<ComposeCli, String>> = OnceLock::new();

/// `docker compose` (v2) if it works, else `docker-compose` (v1).
pub fn cli() -> Result<ComposeCli, StepError> {
    CLI.get_or_init(|| {
        let try_one = |argv: &[&str]| -> Option<ComposeCli> {
            let out = std::process::Command::new(argv[0]).args(&argv[1..]).arg("version").arg("--short").output().ok()?;
            out.status.success().then(|| ComposeCli {
                argv0: argv.iter().map(|s| s.to_string()).collect(),
                version: String::from_utf8_lossy(&out.stdout).trim().to_string(),
            })
        };
        try_one(&["docker", "compose"]).or_else(|| try_one(&["docker-compose"])).ok_or_else(|| {
            "neither `docker compose` (v2) nor `docker-compose` (v1) is installed; install the Docker Compose plugin (Debian/Ubuntu: `apt-get install docker-compose-plugin`, or `docker-compose`)".to_string()
        })
    })
    .clone()
    .map_err(StepError::invalid)
}

/// Runs `compose -f … -p … ARGS`; returns standard output, or an error with the end of
/// standard error.
pub async fn compose(project: &Project, args: &[String]) -> Result<String, StepError> {
    let cli = cli()?;
    let mut argv: Vec<String> = cli.argv0[1..].to_vec();
    for f in &project.files {
        argv.push("-f".into());
        argv.push(f.display().to_string());
    }
    argv.push("-p".into());
    argv.push(project.name.clone());
    if let Some(e) = &project.env_file {
        argv.push("--env-file".into());
        argv.push(e.display().to_string());
    }
    argv.extend(args.iter().cloned());
    let mut cmd = tokio::process::Command::new(&cli.argv0[0]);
    cmd.args(&argv).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    let out = cmd.output().await.map_err(|e| StepError::error(format!("cannot run {}: {}", cli.argv0.join(" "), crate::error::io_reason(&e))))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = err.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        let tail = lines[lines.len().saturating_sub(4)..].join("; ");
        let shown: Vec<String> = args.iter().take(3).cloned().collect();
        return Err(StepError::new(ErrorClass::Error, format!("{} {} failed: {tail}", cli.argv0.join(" "), shown.join(" "))));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Containers of `services`, grouped in service order.
pub fn by_service<'a>(containers: &'a [Container], service: &str) -> Vec<&'a Container> {
    containers.iter().filter(|c| c.service == service).collect()
}

/// Polls the engine until `done` holds for the project's containers, or `within` passes.
pub async fn wait_until(
    docker: &Docker,
    project: &Project,
    within: Duration,
    what: &str,
    done: impl Fn(&[Container]) -> bool,
) -> Result<Vec<Container>, StepError> {
    let started = Instant::now();
    loop {
        let containers = docker.project_containers(&project.name).await?;
        if done(&containers) {
            return Ok(containers);
        }
        if started.elapsed() >= within {
            let state: Vec<String> = containers.iter().map(|c| format!("{} {}", c.name, c.describe())).collect();
            return Err(StepError::new(
                ErrorClass::Timeout,
                format!("{what} did not happen within {}: {}", crate::duration::Duration(within), if state.is_empty() { "no containers".into() } else { state.join(", ") }),
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `web: 2/2 running (healthy)`-style summary of one service.
pub fn summarize(service: &str, cs: &[&Container]) -> String {
    let ready = cs.iter().filter(|c| c.ready()).count();
    let states: Vec<String> = cs.iter().map(|c| c.describe()).collect();
    let mut uniq = states.clone();
    uniq.dedup();
    format!("{service}: {ready}/{} {}", cs.len(), if uniq.is_empty() { "no containers".to_string() } else { uniq.join(", ") })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_names_are_normalised_like_compose() {
        assert_eq!(normalize_name("Loyalty App.prod"), "loyaltyappprod");
        assert_eq!(normalize_name("team_a-1"), "team_a-1");
    }

    #[test]
    fn services_come_from_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.yml");
        let b = dir.path().join("b.yml");
        std::fs::write(&a, "services:\n  web: { image: x, env_file: [.env.web] }\n  db: { image: y }\n").unwrap();
        std::fs::write(&b, "services:\n  web: { ports: ['80:80'] }\n  worker: { image: z, env_file: .env.worker }\n").unwrap();
        let p = Project::resolve(&ComposeSettings { files: vec![a, b], project: Some("Demo".into()), env_file: None }).unwrap();
        assert_eq!(p.services, ["web", "db", "worker"]);
        assert_eq!(p.name, "demo");
        assert_eq!(p.service_env_files.len(), 2);
        let err = p.check_services(&["wbe".into()]).unwrap_err();
        assert_eq!(err.message, "service `wbe` is not in the compose files; did you mean `web`? (services: web, db, worker)");
    }

    #[test]
    fn missing_and_invalid_files_are_clear() {
        let err = Project::resolve(&ComposeSettings { files: vec!["/no/such/compose.yml".into()], ..Default::default() }).unwrap_err();
        assert_eq!(err.message, "cannot read compose file /no/such/compose.yml: no such file or directory");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.yml");
        std::fs::write(&f, "services:\n  web: [unclosed\n").unwrap();
        let err = Project::resolve(&ComposeSettings { files: vec![f], ..Default::default() }).unwrap_err();
        assert!(err.message.contains("c.yml:3:1: invalid YAML"), "{}", err.message);
    }
}
