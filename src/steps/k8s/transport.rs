//! Running PostgreSQL's programs inside a pod (the exec subresource), for
//! `postgres: { exec: { pod: postgres-primary-0 } }`.
//!
//! The connection settings must not travel as arguments: exec arguments show in the API
//! server's audit log and in the pod's process list. So the program runs under
//! `sh -c`, which reads `NAME=value` lines from standard input up to an empty line,
//! exports them, and then runs the program with the rest of standard input (`read`
//! consumes exactly those lines). Files on this machine are not visible in the pod, so
//! dumps stream through standard input and output.
//!
//! After the program, the shell reads what is left of standard input (`cat >/dev/null`)
//! and exits with the program's code. `pg_restore --list` reads only an archive's table of
//! contents; without the drain the API server would close the connection with our input
//! unread, and TCP's reset on such a close can destroy the exit status on its way.

use std::path::Path;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Kube, client};
use crate::helpers::transport::{BoxFuture, Exit, Process, Program, Transport, parse_version, stderr_tail};
use crate::kind::StepContext;
use crate::vocab::{ErrorClass, StepError};

/// A transport into `pod` (in the instance's namespace) and its `container` (default: the
/// pod's first).
pub async fn open(ctx: &StepContext, pod: &str, container: Option<&str>) -> Result<Box<dyn Transport>, StepError> {
    let kube = client(ctx).await?;
    Ok(Box::new(PodExec { kube, pod: pod.to_string(), container: container.map(str::to_string) }))
}

/// Reads `NAME=value` lines until an empty one, exports them, runs "$0" "$@", reads the
/// rest of standard input and exits with the program's code.
const PRELUDE: &str = r#"while IFS= read -r opsctl_line && [ -n "$opsctl_line" ]; do export "$opsctl_line"; done; "$0" "$@"; opsctl_rc=$?; cat >/dev/null; exit $opsctl_rc"#;

/// Programs run in a pod, through the exec subresource.
struct PodExec {
    kube: Kube,
    pod: String,
    container: Option<String>,
}

impl PodExec {
    async fn start(&self, argv: Vec<String>, env: &[(String, String)], stdin: bool) -> Result<Process, StepError> {
        for (k, v) in env {
            if v.contains('\n') || k.contains('=') {
                return Err(StepError::invalid(format!("the connection setting {k} cannot be passed to pod {}", self.pod)));
            }
        }
        let mut full = vec!["sh".to_string(), "-c".to_string(), PRELUDE.to_string()];
        full.extend(argv);
        let started = super::stream::exec(&self.kube, &self.pod, self.container.as_deref(), full, true).await?;
        let mut input = started.stdin.ok_or_else(|| StepError::error("exec gave no stdin stream"))?;
        let mut prelude = String::new();
        for (k, v) in env {
            prelude.push_str(&format!("{k}={v}\n"));
        }
        prelude.push('\n');
        input.write_all(prelude.as_bytes()).await.map_err(|e| StepError::new(ErrorClass::Unavailable, format!("writing to pod {}: {e}", self.pod)))?;
        let stdin_pipe = if stdin {
            Some(Box::pin(input) as std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>)
        } else {
            let _ = input.shutdown().await;
            None
        };
        let (stderr, status) = (started.stderr, started.status);
        let pod = self.pod.clone();
        let wait = Box::pin(async move {
            let stderr = stderr_tail(stderr).await;
            match status.await.ok().flatten() {
                Some(s) => match super::exec::exit_code(&s) {
                    Ok(code) => Ok(Exit { code: Some(code), stderr }),
                    Err(m) => Err(StepError::new(ErrorClass::Error, format!("cannot run in pod {pod}: {m}"))),
                },
                None => Err(StepError::new(ErrorClass::Unavailable, format!("the exec stream of pod {pod} ended without an exit status"))),
            }
        });
        Ok(Process { stdout: Box::pin(started.stdout), stdin: stdin_pipe, wait })
    }
}

impl Transport for PodExec {
    fn describe(&self) -> String {
        format!("pod {}", self.pod)
    }

    fn local_files(&self) -> bool {
        false
    }

    fn find<'a>(&'a self, program: &'a str, bin_dir: Option<&'a Path>, _server_major: Option<u32>) -> BoxFuture<'a, Result<Program, StepError>> {
        Box::pin(self.find_here(program, bin_dir))
    }

    fn spawn<'a>(&'a self, program: &'a Program, args: &'a [String], env: &'a [(String, String)], stdin: bool) -> BoxFuture<'a, Result<Process, StepError>> {
        let mut argv = vec![program.path.display().to_string()];
        argv.extend(args.iter().cloned());
        Box::pin(self.start(argv, env, stdin))
    }
}

impl PodExec {
    async fn find_here(&self, program: &str, bin_dir: Option<&Path>) -> Result<Program, StepError> {
        let path = bin_dir.map_or(program.to_string(), |d| d.join(program).display().to_string());
        let out = async {
            let mut p = self.start(vec![path.clone(), "--version".into()], &[], false).await?;
            let mut text = String::new();
            let (_, exit) = tokio::join!(p.stdout.read_to_string(&mut text), p.wait);
            Ok::<_, StepError>((text, exit?))
        }
        .await;
        match out {
            Ok((text, exit)) if exit.success() => match parse_version(&text) {
                Some((version, major)) => Ok(Program { path: path.into(), version, major }),
                None => Err(StepError::invalid(format!("{program} in pod {} printed no version ({text:?})", self.pod))),
            },
            Ok((_, exit)) => Err(StepError::invalid(format!(
                "{program} does not run in pod {} ({}): use an image with the PostgreSQL client, or set `postgres.bin_dir`",
                self.pod,
                exit.reason()
            ))),
            Err(e) => Err(e),
        }
    }
}
