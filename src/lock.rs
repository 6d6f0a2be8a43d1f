//! The instance lock: mutating runs on one instance never overlap.
//!
//! This is the local-file implementation: `<state>/locks/<instance>.lock`, held with
//! `flock` for the life of the run and released by the kernel if opsctl dies. The file
//! records who holds it (user, host, pid, run id, runbook, since) so a second run can say
//! whom it is waiting for; it exits 3. Backends with shared state (a Kubernetes Lease, a
//! DynamoDB conditional write, a Postgres advisory lock) lock across machines the same way.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Who holds a lock.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Holder {
    pub run_id: String,
    pub runbook: String,
    pub user: String,
    pub host: String,
    pub pid: u32,
    pub since: jiff::Timestamp,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "run {} ({} by {}@{}, pid {}) since {}",
            self.run_id,
            self.runbook,
            self.user,
            self.host,
            self.pid,
            self.since.strftime("%Y-%m-%d %H:%M:%SZ")
        )
    }
}

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

/// A lock held on one of the instance's backends.
pub enum BackendLease {
    /// A PostgreSQL advisory lock; released when its session closes.
    Postgres(crate::steps::postgres::lease::PgLease),
    /// A DynamoDB lease item; deleted by [`BackendLease::release`], else expires.
    Dynamo(crate::steps::aws::lease::DynamoLease),
    /// A Kubernetes Lease; cleared by [`BackendLease::release`], else expires.
    Kube(crate::steps::k8s::lease::KubeLease),
}

impl BackendLease {
    pub async fn release(self) {
        match self {
            BackendLease::Postgres(l) => drop(l),
            BackendLease::Dynamo(l) => l.release().await,
            BackendLease::Kube(l) => l.release().await,
        }
    }
}

/// Locks a run needs on the instance's own backends, beyond the local one: a PostgreSQL
/// advisory lock when the run has mutating PostgreSQL steps; a Kubernetes Lease when the
/// instance has `kubernetes:` (unless `lease: false`); else a DynamoDB lease when it has
/// `aws.lease_table`. A lock held by another
/// run is [`Error::Locked`]; a backend that cannot be reached only warns (its steps will
/// fail and say why).
pub async fn backend_leases(runbook: &crate::runbook::Runbook, instance: &crate::inventory::Instance, holder: &Holder) -> Result<Vec<BackendLease>, Error> {
    use crate::steps::Effect;
    let mut held = Vec::new();
    let kube_lease = instance.kubernetes.as_ref().filter(|k| k.lease);
    if let Some(settings) = kube_lease {
        use crate::steps::k8s::lease::{KubeLease, LeaseError};
        match crate::steps::k8s::connect(settings).await {
            Ok(kube) => match KubeLease::acquire(&kube, &instance.name, holder).await {
                Ok(l) => held.push(BackendLease::Kube(l)),
                Err(LeaseError::Held(h)) => return Err(Error::Locked { instance: instance.name.clone(), holder: h }),
                Err(LeaseError::Unavailable(e)) => tracing::warn!("no Kubernetes Lease for {}: {e}", instance.name),
            },
            Err(e) => tracing::warn!("no Kubernetes Lease for {}: {}", instance.name, e.message),
        }
    }
    if let Some(table) = instance.aws.as_ref().and_then(|a| a.lease_table.clone()).filter(|_| kube_lease.is_none()) {
        use crate::steps::aws::lease::{DynamoLease, LeaseError};
        let config = crate::steps::aws::load(instance.aws.as_ref().expect("checked")).await;
        match DynamoLease::acquire(&config, &table, &instance.name, holder).await {
            Ok(l) => held.push(BackendLease::Dynamo(l)),
            Err(LeaseError::Held(h)) => {
                return Err(Error::Locked { instance: instance.name.clone(), holder: h });
            }
            Err(LeaseError::Unavailable(e)) => tracing::warn!("no DynamoDB lease for {}: {e}", instance.name),
        }
    }
    let pg_mutates = runbook.steps().any(|s| s.effect >= Effect::Mutate && s.kind.name.starts_with("postgres."));
    if let (true, Some(settings)) = (pg_mutates, &instance.postgres) {
        use crate::steps::postgres::{conn::ConnInfo, lease};
        match ConnInfo::resolve(settings) {
            Ok(info) => match lease::PgLease::acquire(&info, &instance.name, holder).await {
                Ok(l) => held.push(BackendLease::Postgres(l)),
                Err(e) => {
                    if let Some(err) = lease::to_error(&instance.name, e) {
                        for h in held {
                            h.release().await;
                        }
                        return Err(err);
                    }
                }
            },
            Err(e) => tracing::warn!("no PostgreSQL advisory lock for {}: {}", instance.name, e.message),
        }
    }
    Ok(held)
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
