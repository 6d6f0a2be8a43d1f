//! PostgreSQL's client programs (`pg_dump`, `pg_restore`) on this machine: [`Local`] finds
//! the version that matches the server where Debian installs each one, and runs it.
//!
//! PostgreSQL inside a container or a pod is common (`docker exec db pg_dump`, `kubectl
//! exec postgres-0 -- pg_dump`): there the Compose and Kubernetes backends' transports run
//! the same argv, and backup/restore only ever see a [`Transport`]'s streams.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;

use tokio::io::AsyncWrite;

use crate::helpers::transport::{BoxFuture, Exit, Process, Program, Transport, parse_version, stderr_tail};
use crate::helpers::tunnel::LocalPort;
use crate::vocab::{ErrorClass, StepError};

/// This machine.
pub struct Local;

/// Where Debian and Ubuntu install each PostgreSQL version's programs.
const DEBIAN_LAYOUT: &str = "/usr/lib/postgresql";

impl Local {
    fn candidates(program: &str, bin_dir: Option<&Path>, server_major: Option<u32>) -> Vec<PathBuf> {
        if let Some(dir) = bin_dir {
            return vec![dir.join(program)];
        }
        let mut out = Vec::new();
        // The version matching the server first, then the newest installed, then $PATH.
        let mut versions: Vec<u32> = std::fs::read_dir(DEBIAN_LAYOUT)
            .map(|rd| rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect())
            .unwrap_or_default();
        versions.sort_unstable_by(|a, b| b.cmp(a));
        if let Some(m) = server_major.filter(|m| versions.contains(m)) {
            out.push(Path::new(DEBIAN_LAYOUT).join(m.to_string()).join("bin").join(program));
        }
        out.extend(versions.iter().map(|v| Path::new(DEBIAN_LAYOUT).join(v.to_string()).join("bin").join(program)));
        if let Some(path) = std::env::var_os("PATH") {
            out.extend(std::env::split_paths(&path).map(|d| d.join(program)));
        }
        out
    }
}

impl Transport for Local {
    fn describe(&self) -> String {
        "this machine".into()
    }

    fn local_files(&self) -> bool {
        true
    }

    fn find<'a>(&'a self, program: &'a str, bin_dir: Option<&'a Path>, server_major: Option<u32>) -> BoxFuture<'a, Result<Program, StepError>> {
        Box::pin(Self::find_here(program, bin_dir, server_major))
    }

    fn spawn<'a>(&'a self, program: &'a Program, args: &'a [String], env: &'a [(String, String)], stdin: bool) -> BoxFuture<'a, Result<Process, StepError>> {
        Box::pin(std::future::ready(Self::spawn_here(program, args, env, stdin)))
    }
}

/// This machine, with the server behind a loopback port that forwards through a tunnel
/// (`port_forward:`); the port closes when this is dropped, at the end of the step.
pub struct Forwarded {
    pub local: LocalPort,
    /// The tunnel, for messages.
    pub to: String,
}

impl Transport for Forwarded {
    fn describe(&self) -> String {
        format!("this machine, through {}", self.to)
    }

    fn local_files(&self) -> bool {
        true
    }

    fn find<'a>(&'a self, program: &'a str, bin_dir: Option<&'a Path>, server_major: Option<u32>) -> BoxFuture<'a, Result<Program, StepError>> {
        Local.find(program, bin_dir, server_major)
    }

    fn spawn<'a>(&'a self, program: &'a Program, args: &'a [String], env: &'a [(String, String)], stdin: bool) -> BoxFuture<'a, Result<Process, StepError>> {
        Box::pin(async move {
            let mut process = Local::spawn_here(program, args, env, stdin)?;
            // A program that could not reach the server says "server closed the connection
            // unexpectedly"; the tunnel knows why.
            let wait = process.wait;
            let errors = self.local.errors();
            process.wait = Box::pin(async move {
                let mut exit = wait.await?;
                if !exit.success()
                    && let Some(why) = errors.get()
                {
                    exit.stderr.push_str(&format!("\n{why}\n"));
                }
                Ok(exit)
            });
            Ok(process)
        })
    }
}

impl Local {
    async fn find_here(program: &str, bin_dir: Option<&Path>, server_major: Option<u32>) -> Result<Program, StepError> {
        let candidates = Self::candidates(program, bin_dir, server_major);
        let Some(path) = candidates.iter().find(|p| p.is_file()) else {
            let looked = match bin_dir {
                Some(d) => format!("in {}", d.display()),
                None => format!("in {DEBIAN_LAYOUT}/*/bin or $PATH"),
            };
            return Err(StepError::invalid(format!(
                "{program} was not found ({looked}); install the PostgreSQL client programs (Debian/Ubuntu: `apt-get install postgresql-client`, Fedora/RHEL: `dnf install postgresql`) or set `postgres.bin_dir` in the inventory"
            )));
        };
        let out = tokio::process::Command::new(path)
            .arg("--version")
            .output()
            .await
            .map_err(|e| StepError::error(format!("cannot run {}: {}", path.display(), crate::error::io_reason(&e))))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let (version, major) = parse_version(&text)
            .ok_or_else(|| StepError::error(format!("cannot read the version of {} from {text:?}", path.display())))?;
        Ok(Program { path: path.clone(), version, major })
    }

    fn spawn_here(program: &Program, args: &[String], env: &[(String, String)], stdin: bool) -> Result<Process, StepError> {
        let mut cmd = tokio::process::Command::new(&program.path);
        cmd.args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| {
            StepError::new(ErrorClass::Error, format!("cannot run {}: {}", program.path.display(), crate::error::io_reason(&e)))
        })?;
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let stdin_pipe = child.stdin.take();
        let name = program.path.display().to_string();
        let wait = Box::pin(async move {
            let stderr = stderr_tail(stderr).await;
            let status = child.wait().await.map_err(|e| StepError::error(format!("waiting for {name} failed: {e}")))?;
            Ok(Exit { code: status.code(), stderr })
        });
        Ok(Process {
            stdout: Box::pin(stdout),
            stdin: stdin_pipe.map(|s| Box::pin(s) as Pin<Box<dyn AsyncWrite + Send>>),
            wait,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_program_names_the_package() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let err = rt.block_on(Local.find("pg_dump", Some(Path::new("/nonexistent")), None)).unwrap_err();
        assert!(err.message.starts_with("pg_dump was not found (in /nonexistent); install the PostgreSQL client programs (Debian/Ubuntu: `apt-get install postgresql-client`"), "{}", err.message);
    }
}
