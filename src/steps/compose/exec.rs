//! `compose.exec`: run a program in a service's container (`docker exec`), check its exit
//! code and output. Arguments are an argv list; the author declares the effect.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;

use super::{by_service, project};
use crate::helpers::exec::{ExitCodes, capture, judge, refuse_secrets_on_command_line};
use crate::kind::{StepContext, StepKind};
use crate::pattern::Pattern;
use crate::secret::HeaderValue;
use crate::vocab::{Effect, ErrorClass, Outcome, Output, StepError};

/// Run argv in a running container of a service.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Exec {
    pub service: String,
    /// The program and its arguments, run without a shell.
    pub argv: Vec<String>,
    /// What it changes: `read`, `mutate` or `destroy`. Required.
    pub effect: Effect,
    /// Which container of the service (its compose number). Default: the first running.
    #[serde(default)]
    pub index: Option<u32>,
    /// Exit code(s) that pass. Default 0.
    #[serde(default)]
    pub expect_exit: ExitCodes,
    /// A regex stdout must match.
    #[serde(default)]
    pub expect_stdout: Option<Pattern>,
    /// Environment variables for the program; values may be secret references (they go
    /// through docker's environment, never its arguments).
    #[serde(default)]
    pub env: IndexMap<String, HeaderValue>,
    /// Run as this user (`docker exec -u`).
    #[serde(default)]
    pub user: Option<String>,
}

impl StepKind for Exec {
    const NAME: &'static str = "compose.exec";
    const SUMMARY: &'static str = "run argv in a service's container (docker exec); check exit code and stdout";
    const EFFECT: Effect = Effect::Mutate;
    const ARGV: &'static [&'static str] = &["argv"];
    const OUTPUTS: &'static [Output] = &[
        Output { name: "exit_code", ty: "int", help: "the exit code" },
        Output { name: "stdout", ty: "string", help: "standard output (first 64 KiB)" },
        Output { name: "stderr", ty: "string", help: "standard error (first 64 KiB)" },
        Output { name: "container", ty: "string", help: "the container it ran in" },
    ];

    fn effect(&self) -> Effect {
        self.effect
    }

    fn check(&self) -> Result<(), String> {
        if self.argv.is_empty() || self.argv[0].is_empty() {
            return Err("`argv` needs at least the program".into());
        }
        Ok(())
    }

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        refuse_secrets_on_command_line("argv", &self.argv, crate::helpers::exec::PASS_THROUGH_ENV)?;
        let (project, docker) = project(ctx)?;
        project.check_services(std::slice::from_ref(&self.service))?;
        let containers = docker.project_containers(&project.name).await?;
        let running: Vec<_> = by_service(&containers, &self.service).into_iter().filter(|c| c.running()).collect();
        let container = match self.index {
            Some(n) => running.iter().find(|c| c.number == n),
            None => running.first(),
        }
        .ok_or_else(|| {
            StepError::new(ErrorClass::Failed, match self.index {
                Some(n) => format!("service {} has no running container number {n}", self.service),
                None => format!("service {} has no running container", self.service),
            })
        })?;
        let mut cmd = tokio::process::Command::new("docker");
        cmd.arg("exec");
        if let Some(u) = &self.user {
            cmd.args(["-u", u]);
        }
        for (k, v) in &self.env {
            cmd.env(k, v.resolve().map_err(|e| StepError::invalid(format!("env {k}: {e}")))?);
            cmd.args(["-e", k]);
        }
        cmd.arg(&container.id).args(&self.argv);
        let c = capture(cmd, "docker exec").await?;
        let outcome = judge(&self.argv[0], c.code, c.signal, c.stdout, c.stderr, &self.expect_exit, self.expect_stdout.as_ref());
        Ok(outcome.output("container", container.name.clone()))
    }

    async fn plan(&self, _ctx: &StepContext) -> Result<String, StepError> {
        Ok(format!("would run {:?} in a container of {}", self.argv.join(" "), self.service))
    }
}
