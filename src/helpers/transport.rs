//! Process transports: a program started somewhere — on this machine, in a compose
//! service's container, in a pod — handed back as its standard streams and an exit.
//!
//! PostgreSQL's `pg_dump` and `pg_restore` run through a [`Transport`]; the backend that
//! owns the place (Compose, Kubernetes) implements it, and the registry picks one for a
//! [`crate::kind::Place`], so the backend that runs the program never imports the one that
//! owns the place.

use std::path::{Path, PathBuf};
use std::pin::Pin;

pub use futures_util::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

use crate::vocab::StepError;

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

/// `pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)` → ("15.18", 15).
pub fn parse_version(text: &str) -> Option<(String, u32)> {
    let v = text.split_whitespace().find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()))?;
    let major = v.split('.').next()?.parse().ok()?;
    Some((v.to_string(), major))
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
}
