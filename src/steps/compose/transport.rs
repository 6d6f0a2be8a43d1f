//! Running PostgreSQL's programs inside a compose service (`docker exec -i`), for
//! `postgres: { exec: { compose_service: db } }`.
//!
//! The connection settings reach the program through docker's own environment
//! (`-e PGPASSWORD` without a value copies it from docker's environment), never through
//! arguments. Files on this machine are not visible inside the container, so dumps stream
//! through standard input and output.

use std::path::Path;
use std::process::Stdio;

use super::{Project, project};
use crate::helpers::transport::{BoxFuture, Exit, Process, Program, Transport, parse_version, stderr_tail};
use crate::kind::StepContext;
use crate::vocab::{ErrorClass, StepError};

/// A transport into the first running container of `service` of the instance's project.
pub async fn open(ctx: &StepContext, service: &str) -> Result<Box<dyn Transport>, StepError> {
    let (project, _) = project(ctx)?;
    let service = service.to_string();
    project.check_services(std::slice::from_ref(&service))?;
    Ok(Box::new(ComposeExec { project, service }))
}

/// Programs run in a service's container, through `docker exec`.
struct ComposeExec {
    project: Project,
    service: String,
}

impl ComposeExec {
    /// The id of the first running container of the service.
    async fn container(&self) -> Result<String, StepError> {
        let out = tokio::process::Command::new("docker")
            .args(["ps", "-q", "--filter", &format!("label=com.docker.compose.project={}", self.project.name)])
            .args(["--filter", &format!("label=com.docker.compose.service={}", self.service)])
            .output()
            .await
            .map_err(|e| StepError::error(format!("cannot run docker: {}", crate::error::io_reason(&e))))?;
        if !out.status.success() {
            return Err(StepError::new(ErrorClass::Unavailable, format!("docker ps failed: {}", String::from_utf8_lossy(&out.stderr).trim())));
        }
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .map(str::to_string)
            .ok_or_else(|| StepError::new(ErrorClass::Failed, format!("compose service {} of {} has no running container", self.service, self.project.name)))
    }
}

impl Transport for ComposeExec {
    fn describe(&self) -> String {
        format!("compose service {}", self.service)
    }

    fn local_files(&self) -> bool {
        false
    }

    fn find<'a>(&'a self, program: &'a str, bin_dir: Option<&'a Path>, _server_major: Option<u32>) -> BoxFuture<'a, Result<Program, StepError>> {
        Box::pin(self.find_here(program, bin_dir))
    }

    fn spawn<'a>(&'a self, program: &'a Program, args: &'a [String], env: &'a [(String, String)], stdin: bool) -> BoxFuture<'a, Result<Process, StepError>> {
        Box::pin(self.spawn_here(program, args, env, stdin))
    }
}

impl ComposeExec {
    async fn find_here(&self, program: &str, bin_dir: Option<&Path>) -> Result<Program, StepError> {
        let id = self.container().await?;
        let path = bin_dir.map_or(program.to_string(), |d| d.join(program).display().to_string());
        let out = tokio::process::Command::new("docker")
            .args(["exec", &id, &path, "--version"])
            .output()
            .await
            .map_err(|e| StepError::error(format!("cannot run docker: {}", crate::error::io_reason(&e))))?;
        let text = String::from_utf8_lossy(&out.stdout);
        match (out.status.success(), parse_version(&text)) {
            (true, Some((version, major))) => Ok(Program { path: path.into(), version, major }),
            _ => Err(StepError::invalid(format!(
                "{program} does not run in compose service {} ({}): install the PostgreSQL client in its image, or set `postgres.bin_dir`",
                self.service,
                String::from_utf8_lossy(&out.stderr).trim()
            ))),
        }
    }

    async fn spawn_here(&self, program: &Program, args: &[String], env: &[(String, String)], stdin: bool) -> Result<Process, StepError> {
        let id = self.container().await?;
        let mut cmd = tokio::process::Command::new("docker");
        cmd.arg("exec");
        if stdin {
            cmd.arg("-i");
        }
        for (k, v) in env {
            cmd.env(k, v);
            cmd.args(["-e", k]);
        }
        cmd.arg(&id).arg(&program.path).args(args);
        cmd.stdin(if stdin { Stdio::piped() } else { Stdio::null() }).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| StepError::error(format!("cannot run docker exec: {}", crate::error::io_reason(&e))))?;
        let stdout = child.stdout.take().expect("piped");
        let stdin_pipe = child.stdin.take();
        let stderr = child.stderr.take().expect("piped");
        let wait = Box::pin(async move {
            let stderr = stderr_tail(stderr).await;
            let status = child.wait().await.map_err(|e| StepError::error(format!("waiting for docker exec failed: {e}")))?;
            Ok(Exit { code: status.code(), stderr })
        });
        Ok(Process {
            stdout: Box::pin(stdout),
            stdin: stdin_pipe.map(|s| Box::pin(s) as std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>),
            wait,
        })
    }
}
