//! `host.command`: run a program on this machine.
//!
//! Arguments are an argv list handed to the program directly. A shell is used only when
//! the author writes `shell:` instead of `argv:`, in which case templates rendered into it
//! are the author's responsibility. The author declares the command's effect; opsctl
//! cannot know what `./migrate` does.

use std::path::PathBuf;
use std::process::Stdio;

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;

use crate::pattern::Pattern;
use crate::steps::http::HeaderValue;
use crate::steps::{Effect, ErrorClass, Outcome, Output, StepContext, StepError, StepKind, Verdict};

/// Run a program; check its exit code and output.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Command {
    /// The program and its arguments: `[./migrate, --check]`. No shell is involved.
    #[serde(default)]
    pub argv: Option<Vec<String>>,
    /// A shell command line run with `/bin/sh -c`, for pipelines. Prefer `argv`.
    #[serde(default)]
    pub shell: Option<String>,
    /// What the command changes: `read`, `mutate` or `destroy`. Required: a dry run
    /// skips anything but `read`, and `destroy` asks for confirmation.
    pub effect: Effect,
    /// The exit code (or codes) that pass. Default 0.
    #[serde(default)]
    pub expect_exit: ExitCodes,
    /// A regex that standard output must match.
    #[serde(default)]
    pub expect_stdout: Option<Pattern>,
    /// Extra environment variables; a value may be a secret reference.
    #[serde(default)]
    pub env: IndexMap<String, HeaderValue>,
    /// Working directory.
    #[serde(default)]
    pub cwd: Option<PathBuf>,
}

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

/// What a finished program left.
pub(crate) struct Captured {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs a command to the end, stdin closed, capturing (at most 64 KiB of) its output. It
/// runs in its own process group, killed whole if the step is dropped (timeout, Ctrl-C).
pub(crate) async fn capture(mut cmd: tokio::process::Command, program: &str) -> Result<Captured, StepError> {
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
pub(crate) fn judge(
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

impl ExitCodes {
    fn contains(&self, code: i32) -> bool {
        match self {
            ExitCodes::One(c) => *c == code,
            ExitCodes::Many(cs) => cs.contains(&code),
        }
    }
    fn describe(&self) -> String {
        match self {
            ExitCodes::One(c) => c.to_string(),
            ExitCodes::Many(cs) => cs.iter().map(i32::to_string).collect::<Vec<_>>().join(" or "),
        }
    }
}

/// Output kept per stream, at most.
const OUTPUT_LIMIT: usize = 64 * 1024;

impl StepKind for Command {
    const NAME: &'static str = "host.command";
    const SUMMARY: &'static str = "run a program (argv, or an explicit shell line); check exit code and stdout";
    const EFFECT: Effect = Effect::Mutate;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "exit_code", ty: "int", help: "the exit code, or null when killed by a signal" },
        Output { name: "stdout", ty: "string", help: "standard output (first 64 KiB)" },
        Output { name: "stderr", ty: "string", help: "standard error (first 64 KiB)" },
    ];

    fn effect(&self) -> Effect {
        self.effect
    }

    fn check(&self) -> Result<(), String> {
        match (&self.argv, &self.shell) {
            (Some(_), Some(_)) => Err("give either `argv` or `shell`, not both".into()),
            (None, None) => Err("give the command as `argv: [program, arg, …]` (or `shell:` for a shell line)".into()),
            (Some(argv), None) if argv.is_empty() || argv[0].is_empty() => Err("`argv` needs at least the program".into()),
            _ => Ok(()),
        }
    }

    async fn run(&self, _ctx: &StepContext) -> Result<Outcome, StepError> {
        let (program, args): (&str, Vec<&str>) = match (&self.argv, &self.shell) {
            (Some(argv), _) => (&argv[0], argv[1..].iter().map(String::as_str).collect()),
            (None, Some(line)) => ("/bin/sh", vec!["-c", line.as_str()]),
            (None, None) => unreachable!("check() requires argv or shell"),
        };
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(&args);
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        for (k, v) in &self.env {
            cmd.env(k, v.resolve().map_err(|e| StepError::invalid(format!("env {k}: {e}")))?);
        }
        let c = capture(cmd, program).await?;
        Ok(judge(program, c.code, c.signal, c.stdout, c.stderr, &self.expect_exit, self.expect_stdout.as_ref()))
    }

    async fn plan(&self, _ctx: &StepContext) -> Result<String, StepError> {
        Ok(match (&self.argv, &self.shell) {
            (Some(argv), _) => format!("would run {}", shell_words(argv)),
            (None, Some(line)) => format!("would run sh -c {line:?}"),
            (None, None) => "would run nothing".into(),
        })
    }
}

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

fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c)) {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
