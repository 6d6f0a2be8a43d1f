//! Docker Compose projects for the tests, on the real Docker engine.
//!
//! Images come from `tests/images/build.sh` (no registry is reachable here). Each test gets
//! its own project name; a watchdog removes the project's containers when the test
//! process exits, however it exits.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use super::{Scratch, in_ci};

pub const BUSYBOX: &str = "opsctl-test-busybox:1";
pub const PGCLIENT: &str = "opsctl-test-pgclient:1";

static READY: OnceLock<Result<Vec<String>, String>> = OnceLock::new();

/// The compose program (`docker compose` or `docker-compose`), after checking the engine
/// and building the images; `None` (after saying why) outside CI when something is missing.
pub fn available() -> Option<Vec<String>> {
    let ready = READY.get_or_init(|| {
        let engine = Command::new("docker").args(["version", "--format", "{{.Server.Version}}"]).output().map_err(|e| format!("docker: {e}"))?;
        if !engine.status.success() {
            return Err(format!("the Docker engine is not reachable: {}", String::from_utf8_lossy(&engine.stderr).trim()));
        }
        let cli = if Command::new("docker").args(["compose", "version"]).output().is_ok_and(|o| o.status.success()) {
            vec!["docker".to_string(), "compose".to_string()]
        } else if Command::new("docker-compose").arg("version").output().is_ok_and(|o| o.status.success()) {
            vec!["docker-compose".to_string()]
        } else {
            return Err("neither `docker compose` nor `docker-compose` is installed".into());
        };
        let build = Command::new(super::repo().join("tests/images/build.sh")).output().map_err(|e| e.to_string())?;
        if !build.status.success() {
            return Err(format!("building the test images failed: {}", String::from_utf8_lossy(&build.stderr)));
        }
        Ok(cli)
    });
    match ready {
        Ok(cli) => Some(cli.clone()),
        Err(why) => {
            assert!(!in_ci(), "Docker Compose is needed under CI=true: {why}");
            eprintln!("skipped: {why}");
            None
        }
    }
}

/// A compose project in a scratch directory.
pub struct Project {
    pub name: String,
    pub file: PathBuf,
    pub cli: Vec<String>,
}

impl Project {
    /// Writes `compose_yaml` (with `{image}` and `{pgclient}` replaced) into the scratch dir.
    pub fn new(s: &Scratch, test: &str, compose_yaml: &str) -> Option<Project> {
        let cli = available()?;
        let name = format!("opsctl-{test}-{}", std::process::id()).replace('_', "-");
        let text = compose_yaml.replace("{image}", BUSYBOX).replace("{pgclient}", PGCLIENT);
        let file = s.write("docker-compose.yml", &text);
        let project = Project { name, file, cli };
        project.watchdog();
        Some(project)
    }

    fn watchdog(&self) {
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; ids=$(docker ps -aq --filter label=com.docker.compose.project={name}); [ -n \"$ids\" ] && docker rm -f $ids >/dev/null 2>&1; docker network rm {name}_default >/dev/null 2>&1; true",
            pid = std::process::id(),
            name = self.name
        );
        let mut c = Command::new("sh");
        c.args(["-c", &script]).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        std::os::unix::process::CommandExt::process_group(&mut c, 0);
        #[allow(clippy::zombie_processes)]
        let _watchdog = c.spawn().expect("watchdog starts");
    }

    /// Runs the compose CLI on the project (test setup, not the thing under test).
    #[track_caller]
    pub fn compose(&self, args: &[&str]) -> String {
        let out = Command::new(&self.cli[0])
            .args(&self.cli[1..])
            .args(["-f", self.file.to_str().unwrap(), "-p", &self.name])
            .args(args)
            .output()
            .expect("compose runs");
        assert!(out.status.success(), "compose {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The inventory for an instance `app` using this project.
    pub fn inventory(&self, s: &Scratch, extra: &str) {
        s.write(
            "opsctl.yaml",
            &format!("instances:\n  app:\n    compose: {{ files: [docker-compose.yml], project: {}{extra} }}\n", self.name),
        );
    }

    /// `name state health` of every container, sorted: what a dry run must leave alone.
    pub fn snapshot(&self) -> Vec<String> {
        let out = Command::new("docker")
            .args(["ps", "-a", "--filter", &format!("label=com.docker.compose.project={}", self.name)])
            .args(["--format", "{{.ID}} {{.Names}} {{.State}} {{.Status}}"])
            .output()
            .unwrap();
        let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            // "Up 3 seconds (healthy)": keep the state and health, not the age.
            .map(|l| l.split(" Up ").next().unwrap().split(" Exited ").next().unwrap().to_string())
            .collect();
        lines.sort();
        lines
    }

    /// Running containers of a service.
    pub fn running(&self, service: &str) -> usize {
        let out = Command::new("docker")
            .args(["ps", "-q", "--filter", &format!("label=com.docker.compose.project={}", self.name)])
            .args(["--filter", &format!("label=com.docker.compose.service={service}")])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).lines().count()
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = Command::new(&self.cli[0])
            .args(&self.cli[1..])
            .args(["-f", self.file.to_str().unwrap(), "-p", &self.name, "down", "-v", "-t", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
