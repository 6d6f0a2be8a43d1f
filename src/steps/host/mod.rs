//! The host backend: the machine opsctl runs on. Linux only (`/proc`, `statvfs`).

pub mod command;
pub mod disk;
pub mod load;
pub mod memory;

use crate::vocab::StepError;

/// Runs blocking system calls off the async threads, so a hung mount cannot stall the run
/// and the step's timeout still fires.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, StepError> + Send + 'static) -> Result<T, StepError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| StepError::error(format!("host probe failed: {e}")))?
}

/// Reads a file under /proc.
pub fn read_proc(path: &str) -> Result<String, StepError> {
    std::fs::read_to_string(path)
        .map_err(|e| StepError::error(format!("cannot read {path}: {} (host steps need Linux)", crate::error::io_reason(&e))))
}
