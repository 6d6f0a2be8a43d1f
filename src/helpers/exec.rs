//! Running a program to the end and judging it: the exit code against `expect_exit`, the
//! output against `expect_stdout`. `host.command` runs on this machine, `compose.exec` in
//! a container and `k8s.exec` in a pod; all three capture and judge alike.

use std::process::Stdio;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;

use crate::pattern::Pattern;
use crate::vocab::{ErrorClass, Outcome, StepError, Verdict};

/// `0` or `[0, 1]`.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum ExitCodes {
    One(i32),
    Many(Vec<i32>),
}

impl Default for ExitCodes {
    fn default() -> Self {
        ExitCodes::One(0)
    }
}

impl<'de> Deserialize<'de> for ExitCodes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<ExitCodes, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = ExitCodes;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an exit code such as 0, or a list such as [0, 1]")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ExitCodes, E> {
                i32::try_from(v).map(ExitCodes::One).map_err(|_| E::custom(format!("{v} is not an exit code")))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ExitCodes, E> {
                i32::try_from(v).map(ExitCodes::One).map_err(|_| E::custom(format!("{v} is not an exit code")))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<ExitCodes, E> {
                if crate::yaml::de::is_placeholder(s) {
                    return Ok(ExitCodes::One(0));
                }
                s.trim().parse().map(ExitCodes::One).map_err(|_| E::custom(format!("\"{s}\" is not an exit code")))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<ExitCodes, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = seq.next_element::<i32>()? {
                    out.push(v);
                }
                Ok(ExitCodes::Many(out))
            }
        }
        d.deserialize_any(V)
    }
}

impl ExitCodes {
    /// Whether `code` passes.
    pub fn contains(&self, code: i32) -> bool {
        match self {
            ExitCodes::One(c) => *c == code,
            ExitCodes::Many(cs) => cs.contains(&code),
        }
    }
    /// `0`, `0 or 1`.
    pub fn describe(&self) -> String {
        match self {
            ExitCodes::One(c) => c.to_string(),
            ExitCodes::Many(cs) => cs.iter().map(i32::to_string).collect::<Vec<_>>().join(" or "),
        }
    }
}

/// What a finished program left.
pub struct Captured {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs a command to the end, stdin closed, capturing (at most 64 KiB of) its output. It
/// runs in its own process group, killed whole if the step is dropped (timeout, Ctrl-C).
/// Refuses a command line that holds a secret value, before the program starts: anyone on
/// the host reads command lines (`ps`, `/proc/PID/cmdline`). `field` names the parameter,
/// `hint` says how to hand the secret over instead.
pub fn refuse_secrets_on_command_line<'a>(field: &str, args: impl IntoIterator<Item = &'a String>, hint: &str) -> Result<(), StepError> {
    match args.into_iter().position(|a| crate::secret::holds_secret(a)) {
        None => Ok(()),
        Some(i) => Err(StepError::invalid(format!(
            "`{field}` holds a secret value (item {}); a command line can be read by anyone on the host, so opsctl does not start it: {hint}",
            i + 1
        ))),
    }
}

/// How a program started on this host gets a secret instead of on its command line.
pub const PASS_THROUGH_ENV: &str = "pass the secret through `env:` (`env: { TOKEN: \"{{ params.token }}\" }`) and read $TOKEN in the program";

pub async fn capture(mut cmd: tokio::process::Command, program: &str) -> Result<Captured, StepError> {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true).process_group(0);
    let mut child = cmd
        .spawn()
        .map_err(|e| StepError::new(ErrorClass::Error, format!("cannot run `{program}`: {}", crate::error::io_reason(&e))))?;
    let mut group = GroupGuard(child.id());
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let (out, err, status) = tokio::join!(read_capped(&mut stdout), read_capped(&mut stderr), child.wait());
    let status = status.map_err(|e| StepError::error(format!("waiting for `{program}` failed: {e}")))?;
    group.0 = None;
    use std::os::unix::process::ExitStatusExt;
    Ok(Captured { code: status.code(), signal: status.signal(), stdout: out, stderr: err })
}

/// The verdict on a finished program: exit code in `expect_exit`, stdout matching.
pub fn judge(
    program: &str,
    code: Option<i32>,
    signal: Option<i32>,
    stdout: String,
    stderr: String,
    expect_exit: &ExitCodes,
    expect_stdout: Option<&Pattern>,
) -> Outcome {
    let mut problems = Vec::new();
    match code {
        Some(c) if !expect_exit.contains(c) => {
            let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
            let mut p = format!("exit {c}, expected {}", expect_exit.describe());
            if !last.is_empty() {
                p.push_str(&format!(": {}", last.trim()));
            }
            problems.push(p);
        }
        Some(_) => {}
        None => problems.push(format!("killed by signal {}", signal.unwrap_or(0))),
    }
    if let Some(p) = expect_stdout
        && !p.is_match(&stdout) {
            problems.push(format!("stdout does not match {p}"));
        }
    let verdict = if problems.is_empty() { Verdict::Passed } else { Verdict::Failed };
    let message = if problems.is_empty() { format!("`{program}` exited {}", code.unwrap_or(-1)) } else { problems.join("; ") };
    Outcome::new(verdict, message)
        .value(code.map_or("signal".to_string(), |c| format!("exit {c}")))
        .output("exit_code", code)
        .output("stdout", stdout)
        .output("stderr", stderr)
}

/// Output kept per stream, at most.
const OUTPUT_LIMIT: usize = 64 * 1024;

/// Kills the command's process group if the step is dropped (timeout, Ctrl-C) before the
/// command ended.
struct GroupGuard(Option<u32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            // SAFETY: kill(2) with a negative pid signals the process group we created.
            unsafe {
                libc::kill(-(pid as i32), libc::SIGKILL);
            }
        }
    }
}

async fn read_capped<R: tokio::io::AsyncRead + Unpin>(r: &mut R) -> String {
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = OUTPUT_LIMIT.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    String::from_utf8_lossy(&kept).into_owned()
}
