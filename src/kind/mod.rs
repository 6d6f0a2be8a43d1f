//! The contract between the engine and a step kind: what a kind declares and does
//! ([`StepKind`]), and what it sees while it runs ([`StepContext`]).
//!
//! A step kind is a parameter struct (serde + JSON Schema) in its backend's folder that
//! implements [`StepKind`]. Backends implement this module; the registry erases the types
//! and lists every kind; the engine runs them. Nothing here knows a backend.

pub mod context;

use std::future::Future;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;

pub use context::{Backends, BackupFormat, FinishedSteps, Place, Resources, RunInfo, StepContext};

use crate::vocab::{Effect, Outcome, Output, StepError};
use crate::yaml::de::{Mode, from_node};
use crate::yaml::Node;

/// A step kind: typed parameters plus behaviour.
pub trait StepKind: DeserializeOwned + JsonSchema + Send + Sync + 'static {
    /// The action key in runbooks: `http.check`.
    const NAME: &'static str;
    /// One line for `opsctl list` and the README.
    const SUMMARY: &'static str;
    const EFFECT: Effect;
    /// Outputs beyond [`crate::vocab::COMMON_OUTPUTS`].
    const OUTPUTS: &'static [Output];
    /// Parameters that decide the step's effect and so must be written literally: opsctl
    /// decides what a dry run may do before anything is rendered. `host.command` declares
    /// `effect`.
    const LITERAL: &'static [&'static str] = &[];
    /// Leases (by name, see [`crate::lease`]) a mutating step of this kind needs beyond the
    /// instance's own: PostgreSQL's mutating kinds need the advisory lock on the server.
    const LEASES: &'static [&'static str] = &[];
    /// The step reads the machine opsctl runs on and nothing of the instance (its disks,
    /// memory, load): a command on several instances runs it once per set of parameters
    /// and gives every instance that result.
    const MACHINE: bool = false;
    /// What it needs of the backends' access control — Kubernetes verbs on resources, AWS
    /// IAM actions — for `opsctl permissions` (least privilege, computed from runbooks).
    const PERMISSIONS: &'static [crate::vocab::Permission] = &[];
    /// Parameters that become a program's command line (`argv`, `shell`). Anyone on the host
    /// can read a command line (`/proc/PID/cmdline`, `ps`), so a secret is refused there —
    /// where a template shows it when the runbook is loaded, and in the rendered values when
    /// the step runs — and passed through the environment instead.
    const ARGV: &'static [&'static str] = &[];

    /// The effect of this particular step; only kinds whose author declares it override.
    fn effect(&self) -> Effect {
        Self::EFFECT
    }

    /// Checks across fields, after the parameters parsed.
    fn check(&self) -> Result<(), String> {
        Ok(())
    }

    /// Does the work.
    fn run(&self, ctx: &StepContext) -> impl Future<Output = Result<Outcome, StepError>> + Send;

    /// What running would change, for plans and dry runs. Kinds that can read the current
    /// state say "before → after"; the default admits it cannot predict.
    fn plan(&self, _ctx: &StepContext) -> impl Future<Output = Result<String, StepError>> + Send {
        async { Ok(format!("would run {} (cannot predict the change)", Self::NAME)) }
    }
}

/// Parses a rendered parameter node strictly, as the kind's struct, and checks it.
pub fn decode<T: StepKind>(node: &Node, ctx: &StepContext) -> Result<T, StepError> {
    let params: T = from_node(node, Mode::Strict).map_err(|e| {
        let at = e.span.map(|s| {
            let (l, c) = ctx.file.line_col(s.start);
            format!(" ({}:{l}:{c})", ctx.file.name)
        });
        StepError::invalid(format!("invalid parameters after templating: {e}{}", at.unwrap_or_default()))
    })?;
    params.check().map_err(StepError::invalid)?;
    Ok(params)
}
