//! `host.command`: run a program on this machine.
//!
//! Arguments are an argv list handed to the program directly. A shell is used only when
//! the author writes `shell:` instead of `argv:`, in which case templates rendered into it
//! are the author's responsibility. The author declares the command's effect; opsctl
//! cannot know what `./migrate` does.

use std::path::PathBuf;

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;

use crate::helpers::exec::{ExitCodes, PASS_THROUGH_ENV, capture, judge, refuse_secrets_on_command_line};
use crate::kind::{StepContext, StepKind};
use crate::pattern::Pattern;
use crate::secret::HeaderValue;
use crate::vocab::{Effect, Outcome, Output, StepError};

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

impl StepKind for Command {
    const NAME: &'static str = "host.command";
    const SUMMARY: &'static str = "run a program (argv, or an explicit shell line); check exit code and stdout";
    const EFFECT: Effect = Effect::Mutate;
    const LITERAL: &'static [&'static str] = &["effect"];
    const ARGV: &'static [&'static str] = &["argv", "shell"];
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
        let field = if self.argv.is_some() { "argv" } else { "shell" };
        refuse_secrets_on_command_line(field, self.argv.iter().flatten().chain(&self.shell), PASS_THROUGH_ENV)?;
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
