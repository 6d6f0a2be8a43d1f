//! PostgreSQL's client programs (`pg_dump`, `pg_restore`) and where they run.
//!
//! A [`Transport`] starts a program and hands back its standard streams. [`Local`] runs it
//! on this machine. PostgreSQL inside a container or a pod is common (`docker exec db
//! pg_dump`, `kubectl exec postgres-0 -- pg_dump`): the Compose and Kubernetes backends add
//! transports that run the same argv there, and backup/restore only ever see streams.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

use crate::steps::{ErrorClass, StepError};

/// How a program ended.
#[derive(Clone, Debug)]
pub struct Exit {
    pub code: Option<i32>,
    /// The end of standard error (at most 8 KiB), for messages.
    pub stderr: String,
}

impl Exit {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// The last meaningful lines of standard error.
    pub fn reason(&self) -> String {
        let lines: Vec<&str> = self.stderr.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        let tail = &lines[lines.len().saturating_sub(3)..];
        if tail.is_empty() {
            match self.code {
                Some(c) => format!("exit {c}"),
                None => "killed by a signal".into(),
            }
        } else {
            tail.join("; ")
        }
    }
}

/// Reads standard error to its end and keeps the last 8 KiB (where a program's final
/// error is); reading it all means a chatty program never blocks on a full pipe.
pub async fn stderr_tail(mut stderr: impl AsyncRead + Unpin) -> String {
    let mut err = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stderr.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                err.extend_from_slice(&buf[..n]);
                if err.len() > 8192 {
                    err.drain(..err.len() - 8192);
                }
            }
        }
    }
    String::from_utf8_lossy(&err).into_owned()
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A started program.
pub struct Process {
    pub stdout: Pin<Box<dyn AsyncRead + Send>>,
    pub stdin: Option<Pin<Box<dyn AsyncWrite + Send>>>,
    /// Resolves when the program ends (standard error is collected meanwhile). Dropping the
    /// process before that kills it.
    pub wait: BoxFuture<'static, Result<Exit, StepError>>,
}

/// Where PostgreSQL's programs run.
pub trait Transport: Send + Sync {
    /// For messages: `this machine`, `compose service db`, `pod postgres-0`.
    fn describe(&self) -> String;
    /// Whether a program sees this machine's files (then `pg_restore` can read a dump by
    /// path and restore with several jobs).
    fn local_files(&self) -> bool;
    /// Finds a program, preferring the version for `server_major`.
    fn find<'a>(&'a self, program: &'a str, bin_dir: Option<&'a Path>, server_major: Option<u32>) -> BoxFuture<'a, Result<Program, StepError>>;
    /// Starts `program args…` with `env`; stdin is piped when `stdin` is set.
    fn spawn<'a>(&'a self, program: &'a Program, args: &'a [String], env: &'a [(String, String)], stdin: bool) -> BoxFuture<'a, Result<Process, StepError>>;
}

/// A program found by a transport, with its major version.
#[derive(Clone, Debug)]
pub struct Program {
    pub path: PathBuf,
    pub version: String,
    pub major: u32,
}

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

/// `pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)` → ("15.18", 15).
pub fn parse_version(text: &str) -> Option<(String, u32)> {
    let v = text.split_whitespace().find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()))?;
    let major = v.split('.').next()?.parse().ok()?;
    Some((v.to_string(), major))
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

/// Runs a program to the end, returning its standard output (bounded) and exit.
pub async fn run(transport: &dyn Transport, program: &Program, args: &[String], env: &[(String, String)]) -> Result<(String, Exit), StepError> {
    let mut p = transport.spawn(program, args, env, false).await?;
    let mut out = Vec::new();
    let mut reader = (&mut p.stdout).take(16 * 1024 * 1024);
    let (read, exit) = tokio::join!(reader.read_to_end(&mut out), p.wait);
    read.map_err(|e| StepError::error(format!("reading {}: {e}", program.path.display())))?;
    Ok((String::from_utf8_lossy(&out).into_owned(), exit?))
}

/// Runs a program with `input` streamed into its standard input; returns its standard
/// output (bounded) and exit.
pub async fn run_feeding(
    transport: &dyn Transport,
    program: &Program,
    args: &[String],
    env: &[(String, String)],
    mut input: Box<dyn AsyncRead + Send + Unpin>,
) -> Result<(String, Exit), StepError> {
    use tokio::io::AsyncWriteExt;
    let mut p = transport.spawn(program, args, env, true).await?;
    let mut stdin = p.stdin.take().ok_or_else(|| StepError::error("no standard input to write to"))?;
    let feed = async move {
        let r = tokio::io::copy(&mut input, &mut stdin).await;
        let _ = stdin.shutdown().await;
        drop(stdin);
        r
    };
    let mut out = Vec::new();
    let mut reader = (&mut p.stdout).take(16 * 1024 * 1024);
    let (fed, read, exit) = tokio::join!(feed, reader.read_to_end(&mut out), p.wait);
    let exit = exit?;
    read.map_err(|e| StepError::error(format!("reading {}: {e}", program.path.display())))?;
    // A program that ends well without reading all its input did not need the rest
    // (`pg_restore --list` reads only the table of contents): that is not an error.
    if let Err(e) = fed
        && exit.success()
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        return Err(StepError::error(format!("streaming into {}: {e}", program.path.display())));
    }
    Ok((String::from_utf8_lossy(&out).into_owned(), exit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_program_versions() {
        assert_eq!(parse_version("pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"), Some(("15.18".into(), 15)));
        assert_eq!(parse_version("pg_restore (PostgreSQL) 17beta1"), None);
        assert_eq!(parse_version("pg_restore (PostgreSQL) 17.0"), Some(("17.0".into(), 17)));
    }

    #[test]
    fn a_missing_program_names_the_package() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let err = rt.block_on(Local.find("pg_dump", Some(Path::new("/nonexistent")), None)).unwrap_err();
        assert!(err.message.starts_with("pg_dump was not found (in /nonexistent); install the PostgreSQL client programs (Debian/Ubuntu: `apt-get install postgresql-client`"), "{}", err.message);
    }
}
