//! Leases: locks a mutating run holds on an instance's own backends, so that two runs
//! started from two machines never change one instance at once.
//!
//! The local lock (`crate::procedures::lock`) keeps runs on one machine apart. Backends with
//! shared state lock across machines: a Kubernetes Lease, a DynamoDB item written
//! conditionally, a PostgreSQL advisory lock. Each is a [`Lease`] in its backend's folder
//! that says when it applies; the registry lists them and the procedures take the ones
//! that apply before a mutating run and release them after it.

use crate::instance::Instance;
use crate::kind::Backends;

/// Who holds a lock or a lease.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
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

/// Why a lease could not be taken.
#[derive(Debug)]
pub enum LeaseError {
    /// Another run holds it: who, since when, and which lease (the run exits 3).
    Held(String),
    /// The backend could not be reached, and why. The run goes on with a warning (`no
    /// Kubernetes Lease for team-a: …`); its steps will say what is wrong with the backend.
    Unavailable(String),
}

/// What a lease guards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The whole instance: of the instance leases that apply, only the first (in the
    /// registry's order) is taken.
    Instance,
    /// The steps that name it in their kind's `LEASES`.
    Steps,
}

/// One backend's way of locking an instance across machines.
#[async_trait::async_trait]
pub trait Lease: Send + Sync {
    /// For messages (`Kubernetes Lease`); kinds name a [`Scope::Steps`] lease by it in
    /// their `LEASES`.
    fn name(&self) -> &'static str;
    fn scope(&self) -> Scope;
    /// Whether a mutating run on `instance` takes this lease; `needs` are the leases its
    /// mutating steps' kinds name.
    fn applies(&self, instance: &Instance, needs: &[&str]) -> bool;
    /// Takes the lease for `holder`; `backends` reaches what the lease's backend does not
    /// own (a port-forward to an in-cluster database).
    async fn acquire(&self, instance: &Instance, holder: &Holder, backends: &'static dyn Backends) -> Result<Box<dyn Held>, LeaseError>;
}

/// A lease being held.
#[async_trait::async_trait]
pub trait Held: Send {
    /// Gives the lease up now; a lease that is never released expires by itself.
    async fn release(self: Box<Self>);
}
