//! The PostgreSQL side of the instance lock: an advisory lock on the instance's server.
//!
//! Mutating PostgreSQL steps of one instance must never run concurrently, whichever
//! machine they start from. A run that has any takes `pg_try_advisory_lock` on a session
//! to the server's maintenance database (not the instance's database, which a restore
//! renames), named by its `application_name`, and holds it until the run ends; the server
//! releases it if opsctl dies. A second run finds the holder in `pg_locks` and exits 3.

use super::conn::ConnInfo;
use crate::instance::Instance;
use crate::kind::{Backends, Resources};
use crate::lease::{Held, Holder, LeaseError, Scope};

/// The name PostgreSQL's mutating kinds give in their `LEASES`.
pub const NAME: &str = "PostgreSQL advisory lock";

/// The advisory lock, for runs with mutating PostgreSQL steps on an instance with
/// `postgres:`.
pub struct AdvisoryLock;

#[async_trait::async_trait]
impl crate::lease::Lease for AdvisoryLock {
    fn name(&self) -> &'static str {
        NAME
    }

    fn scope(&self) -> Scope {
        Scope::Steps
    }

    fn applies(&self, instance: &Instance, needs: &[&str]) -> bool {
        instance.postgres.is_some() && needs.contains(&NAME)
    }

    async fn acquire(&self, instance: &Instance, holder: &Holder, backends: &'static dyn Backends) -> Result<Box<dyn Held>, LeaseError> {
        let settings = instance.postgres.as_ref().ok_or_else(|| LeaseError::Unavailable("the instance has no `postgres:` settings".into()))?;
        let mut info = ConnInfo::resolve(settings).map_err(|e| LeaseError::Unavailable(e.message))?;
        if let Some(to) = &settings.port_forward {
            // The lease's own Kubernetes client: the run's is made later, in its resources.
            let resources = Resources::default();
            info.via = Some(backends.port_forward(instance, &resources, to).await.map_err(|e| LeaseError::Unavailable(e.message))?);
        }
        match PgLease::take(&info, &instance.name, holder).await {
            Ok(l) => Ok(Box::new(l)),
            Err(e) => Err(match e.strip_prefix("locked:") {
                Some(by) => LeaseError::Held(format!("{by} (PostgreSQL advisory lock)")),
                None => LeaseError::Unavailable(e),
            }),
        }
    }
}

/// A held advisory lock; dropping it closes the session and releases the lock.
struct PgLease {
    _client: tokio_postgres::Client,
}

#[async_trait::async_trait]
impl Held for PgLease {
    async fn release(self: Box<Self>) {}
}

/// The lock key: FNV-1a of `opsctl:<instance>/<database>` (two inventories that name an
/// instance alike but use different databases do not block each other).
fn key(instance: &str, database: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in format!("opsctl:{instance}/{database}").bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h as i64
}

impl PgLease {
    /// Takes the lock; an error starting with `locked:` names the holder.
    async fn take(info: &ConnInfo, instance: &str, holder: &Holder) -> Result<PgLease, String> {
        let app = format!("opsctl {} {} {}@{}", holder.run_id, holder.runbook, holder.user, holder.host);
        let app: String = app.chars().take(63).collect();
        let mut last = String::new();
        for db in ["postgres", "template1"] {
            match info.with_database(db).connect(&app).await {
                Ok(client) => return PgLease::lock(client, key(instance, &info.database)).await,
                Err(e) => last = e.message,
            }
        }
        Err(last)
    }

    async fn lock(client: tokio_postgres::Client, k: i64) -> Result<PgLease, String> {
        let got: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&k])
            .await
            .map_err(|e| super::conn::query_error(&e, "pg_try_advisory_lock").message)?
            .get(0);
        if got {
            return Ok(PgLease { _client: client });
        }
        let (hi, lo) = (((k as u64) >> 32) as i64, ((k as u64) & 0xffff_ffff) as i64);
        let row = client
            .query_opt(
                "SELECT coalesce(a.application_name, ''), coalesce(a.usename, ''), to_char(a.backend_start, 'YYYY-MM-DD HH24:MI:SS TZ') \
                 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
                 WHERE l.locktype = 'advisory' AND l.granted AND l.classid::bigint = $1 AND l.objid::bigint = $2 AND l.objsubid = 1",
                &[&hi, &lo],
            )
            .await
            .ok()
            .flatten();
        Err(match row {
            Some(r) => format!("locked:{} (database user {}) since {}", r.get::<_, String>(0), r.get::<_, String>(1), r.get::<_, String>(2)),
            None => "locked:another session".to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_differ_per_instance_and_are_stable() {
        assert_eq!(super::key("team-a", "app"), super::key("team-a", "app"));
        assert_ne!(super::key("team-a", "app"), super::key("team-b", "app"));
        assert_ne!(super::key("team-a", "app"), super::key("team-a", "other"));
    }
}
