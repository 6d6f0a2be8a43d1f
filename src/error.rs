//! Errors that end a command, and the one place that turns outcomes into exit codes.
//!
//! | code | meaning |
//! |------|---------|
//! | 0    | every step passed (warnings allowed) |
//! | 1    | a step or check failed |
//! | 2    | invalid usage, runbook, inventory or parameter; or refused (destroy without `--yes`) |
//! | 3    | the instance is locked by another run |
//! | 130  | interrupted by Ctrl-C (SIGINT) |
//! | 143  | interrupted by SIGTERM (a CronJob or CI job cancelled, a pod evicted) |

use crate::diagnostic::Diagnostic;

/// How a command ended, as the shell sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Passed,
    Failed,
    Invalid,
    Locked,
    Interrupted,
}

impl Exit {
    /// How bad an outcome is, to pick the exit code of several runs (`check --all`).
    fn severity(self) -> u8 {
        match self {
            Exit::Passed => 0,
            Exit::Failed => 1,
            Exit::Locked => 2,
            Exit::Invalid => 3,
            Exit::Interrupted => 4,
        }
    }

    /// The worst of several outcomes; `Passed` for none.
    pub fn worst(outcomes: impl IntoIterator<Item = Exit>) -> Exit {
        outcomes.into_iter().max_by_key(|e| e.severity()).unwrap_or(Exit::Passed)
    }

    pub fn code(self) -> u8 {
        match self {
            Exit::Passed => 0,
            Exit::Failed => 1,
            Exit::Invalid => 2,
            Exit::Locked => 3,
            Exit::Interrupted => INTERRUPTED_BY.load(std::sync::atomic::Ordering::Relaxed),
        }
    }
}

/// The exit code of an interrupted command: 128 + the signal that came first.
static INTERRUPTED_BY: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(130);

/// Records that the interrupt was SIGTERM (exit 143) rather than SIGINT (130).
pub fn interrupted_by_sigterm() {
    INTERRUPTED_BY.store(143, std::sync::atomic::Ordering::Relaxed);
}

/// What stops a command before or instead of a normal report.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Input is wrong: one or more diagnostics with positions.
    #[error("{}", .0.first().map(|d| d.to_string()).unwrap_or_default())]
    Invalid(Vec<Diagnostic>),
    /// opsctl will not do this without an explicit go-ahead.
    #[error("refused: {0}")]
    Refused(String),
    /// Another run holds the instance lock.
    #[error("instance {instance} is locked by {holder}")]
    Locked { instance: String, holder: String },
    /// An operator or signal stopped the command.
    #[error("interrupted")]
    Interrupted,
    /// Something outside the input failed: an output file, the history file.
    #[error("{context}: {reason}")]
    Io { context: String, reason: String },
}

impl Error {
    pub fn exit(&self) -> Exit {
        match self {
            Error::Invalid(_) | Error::Refused(_) | Error::Io { .. } => Exit::Invalid,
            Error::Locked { .. } => Exit::Locked,
            Error::Interrupted => Exit::Interrupted,
        }
    }

    pub fn io(context: impl Into<String>, err: &std::io::Error) -> Error {
        Error::Io { context: context.into(), reason: io_reason(err) }
    }

    /// Full text for the terminal.
    pub fn render(&self, color: bool) -> String {
        match self {
            Error::Invalid(diags) => diags.iter().map(|d| d.render(color)).collect::<Vec<_>>().join("\n"),
            Error::Refused(msg) => Diagnostic::new(format!("refused: {msg}")).render(color),
            Error::Locked { instance, holder } => Diagnostic::new(format!("instance {instance} is locked by another run"))
                .help(format!("held by {holder}"))
                .help("wait for that run to finish, or stop it")
                .render(color),
            other => Diagnostic::new(other.to_string()).render(color),
        }
    }
}

impl From<Diagnostic> for Error {
    fn from(d: Diagnostic) -> Error {
        Error::Invalid(vec![d])
    }
}

/// An I/O error as a short lower-case reason, without Rust's "(os error 2)".
pub fn io_reason(err: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match err.kind() {
        NotFound => "no such file or directory".into(),
        PermissionDenied => "permission denied".into(),
        IsADirectory => "is a directory".into(),
        _ => {
            let s = err.to_string();
            match s.find(" (os error") {
                Some(i) => s[..i].to_string(),
                None => s,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_the_documented_ones() {
        assert_eq!(Exit::Passed.code(), 0);
        assert_eq!(Exit::Failed.code(), 1);
        assert_eq!(Error::Refused("x".into()).exit().code(), 2);
        assert_eq!(Error::Invalid(vec![]).exit().code(), 2);
        assert_eq!(Error::Locked { instance: "a".into(), holder: "b".into() }.exit().code(), 3);
        assert_eq!(Error::Interrupted.exit().code(), 130);
        assert_eq!(Exit::worst([Exit::Passed, Exit::Failed, Exit::Passed]), Exit::Failed);
        assert_eq!(Exit::worst([Exit::Failed, Exit::Interrupted]), Exit::Interrupted);
        assert_eq!(Exit::worst([]), Exit::Passed);
    }
}
