//! The local instance lock: mutating runs on one instance from one machine never overlap.
//!
//! `<state>/locks/<instance>.lock`, held with `flock` for the life of the run and released
//! by the kernel if opsctl dies. The file records who holds it (user, host, pid, run id,
//! runbook, since) so a second run can say whom it is waiting for; it exits 3. Runs from
//! other machines are kept apart by the backends' leases (`crate::lease`).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::Path;

use crate::error::Error;
use crate::lease::Holder;

/// A held lock; dropping it releases it.
#[derive(Debug)]
pub struct InstanceLock {
    file: File,
}

impl InstanceLock {
    /// Takes the lock for `instance` or fails with [`Error::Locked`] naming the holder.
    pub fn acquire(state_dir: &Path, instance: &str, holder: &Holder) -> Result<InstanceLock, Error> {
        let dir = state_dir.join("locks");
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(format!("cannot create {}", dir.display()), &e))?;
        let safe: String = instance.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
        let path = dir.join(format!("{safe}.lock"));
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(format!("cannot open lock file {}", path.display()), &e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let holder = serde_json::from_str::<Holder>(&text)
                    .map(|h| h.to_string())
                    .unwrap_or_else(|_| format!("another run (lock file {})", path.display()));
                return Err(Error::Locked { instance: instance.to_string(), holder });
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(Error::io(format!("cannot lock {}", path.display()), &e));
            }
        }
        let json = serde_json::to_string(holder).unwrap_or_default();
        file.set_len(0)
            .and_then(|_| file.rewind())
            .and_then(|_| file.write_all(json.as_bytes()))
            .and_then(|_| file.flush())
            .map_err(|e| Error::io(format!("cannot write lock file {}", path.display()), &e))?;
        Ok(InstanceLock { file })
    }
}

impl Drop for InstanceLock {
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(run: &str) -> Holder {
        Holder { run_id: run.into(), runbook: "restore".into(), user: "ops".into(), host: "h".into(), pid: 1, since: jiff::Timestamp::UNIX_EPOCH }
    }

    #[test]
    fn a_second_holder_is_refused_with_the_first_named() {
        let dir = tempfile::tempdir().unwrap();
        let first = InstanceLock::acquire(dir.path(), "team-a", &holder("r1")).unwrap();
        let err = InstanceLock::acquire(dir.path(), "team-a", &holder("r2")).unwrap_err();
        match err {
            Error::Locked { holder, .. } => assert!(holder.starts_with("run r1 (restore by ops@h, pid 1)"), "{holder}"),
            other => panic!("{other:?}"),
        }
        assert!(InstanceLock::acquire(dir.path(), "team-b", &holder("r3")).is_ok());
        drop(first);
        assert!(InstanceLock::acquire(dir.path(), "team-a", &holder("r4")).is_ok());
    }
}
