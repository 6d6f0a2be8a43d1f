//! The Kubernetes side of the instance lock: a `coordination.k8s.io/v1` Lease named
//! `opsctl-<instance>` in the instance's namespace.
//!
//! `holderIdentity` is the run id; the holder's details (user, host, pid, runbook) are in
//! the annotation `opsctl.io/holder`. Taking the lease creates it, or replaces an expired
//! or released one with the resourceVersion read — a 409 means another run got there
//! first. The holder renews `renewTime` every TTL/3 and releases the lease (clears the
//! holder) when the run ends; if opsctl dies, the lease expires after the TTL.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};

use super::{Kube, connect};
use crate::instance::Instance;
use crate::lease::{Held, Holder, LeaseError, Scope};

/// How long a lease lives without renewal.
pub const TTL: Duration = Duration::from_secs(60);
const HOLDER: &str = "opsctl.io/holder";

/// The instance lease for instances with `kubernetes:` (unless `lease: false`).
pub struct KubeLease;

#[async_trait::async_trait]
impl crate::lease::Lease for KubeLease {
    fn name(&self) -> &'static str {
        "Kubernetes Lease"
    }

    fn scope(&self) -> Scope {
        Scope::Instance
    }

    fn applies(&self, instance: &Instance, _needs: &[&str]) -> bool {
        instance.kubernetes.as_ref().is_some_and(|k| k.lease)
    }

    async fn acquire(&self, instance: &Instance, holder: &Holder, _: &'static dyn crate::kind::Backends) -> Result<Box<dyn Held>, LeaseError> {
        let settings = instance.kubernetes.as_ref().ok_or_else(|| LeaseError::Unavailable("the instance has no `kubernetes:` settings".into()))?;
        let kube = connect(settings).await.map_err(|e| LeaseError::Unavailable(e.message))?;
        Ok(Box::new(HeldLease::take(&kube, &instance.name, holder).await?))
    }
}

/// A Lease this run holds.
struct HeldLease {
    kube: Kube,
    name: String,
    run_id: String,
    renewal: tokio::task::JoinHandle<()>,
}

pub fn lease_name(instance: &str) -> String {
    let safe: String = instance.to_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '-' }).collect();
    format!("opsctl-{}", safe.trim_matches('-'))
}

fn now() -> MicroTime {
    MicroTime(jiff::Timestamp::now())
}

fn live(spec: &LeaseSpec) -> bool {
    let Some(holder) = spec.holder_identity.as_deref().filter(|h| !h.is_empty()) else { return false };
    let _ = holder;
    let ttl = spec.lease_duration_seconds.unwrap_or(TTL.as_secs() as i32) as i64;
    let last = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()).map(|t| t.0);
    last.is_some_and(|t| t + jiff::SignedDuration::from_secs(ttl) > jiff::Timestamp::now())
}

/// How long ago the lease ran out, by this machine's clock: `2m ago`.
fn ago(spec: &LeaseSpec) -> String {
    let last = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()).map(|t| t.0);
    match last {
        Some(t) => {
            let secs = (jiff::Timestamp::now().as_second() - t.as_second()).max(0) as u64;
            format!("{} ago", crate::duration::short(Duration::from_secs(secs)))
        }
        None => "at an unknown time".into(),
    }
}

fn describe(lease: &Lease) -> String {
    let spec = lease.spec.clone().unwrap_or_default();
    let who = lease
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(HOLDER))
        .and_then(|h| serde_json::from_str::<Holder>(h).ok())
        .map(|h| format!("run {} ({} by {}@{}, pid {})", h.run_id, h.runbook, h.user, h.host, h.pid))
        .unwrap_or_else(|| format!("`{}`", spec.holder_identity.clone().unwrap_or_default()));
    let since = spec.acquire_time.map(|t| t.0.strftime("%Y-%m-%d %H:%M:%SZ").to_string()).unwrap_or_else(|| "an unknown time".into());
    format!("{who} since {since} (Kubernetes Lease {}/{})", lease.metadata.namespace.clone().unwrap_or_default(), lease.metadata.name.clone().unwrap_or_default())
}

impl HeldLease {
    async fn take(kube: &Kube, instance: &str, holder: &Holder) -> Result<HeldLease, LeaseError> {
        let api = kube.api::<Lease>();
        let name = lease_name(instance);
        let what = format!("lease {name}");
        let holder_json = serde_json::to_string(holder).unwrap_or_default();
        let mine = |meta: ObjectMeta, transitions: i32| Lease {
            metadata: ObjectMeta { annotations: Some(BTreeMap::from([(HOLDER.to_string(), holder_json.clone())])), ..meta },
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.run_id.clone()),
                lease_duration_seconds: Some(TTL.as_secs() as i32),
                acquire_time: Some(now()),
                renew_time: Some(now()),
                lease_transitions: Some(transitions),
                ..LeaseSpec::default()
            }),
        };
        let pp = PostParams { field_manager: Some("opsctl".into()), ..PostParams::default() };
        for _ in 0..3 {
            match api.get_opt(&name).await {
                Ok(None) => {
                    let lease = mine(ObjectMeta { name: Some(name.clone()), ..ObjectMeta::default() }, 0);
                    match api.create(&pp, &lease).await {
                        Ok(_) => return Ok(Self::held(kube, name, holder)),
                        Err(kube::Error::Api(s)) if s.code == 409 => continue,
                        Err(e) => return Err(LeaseError::Unavailable(kube.error(e, &what).message)),
                    }
                }
                Ok(Some(current)) => {
                    let spec = current.spec.clone().unwrap_or_default();
                    let other = spec.holder_identity.as_deref().is_some_and(|h| !h.is_empty() && h != holder.run_id);
                    if live(&spec) && other {
                        return Err(LeaseError::Held(describe(&current)));
                    }
                    if other {
                        // Expired by our clock. A holder whose clock is behind ours renews a
                        // lease that looks expired here: watch it for one renewal period, by
                        // our own clock, before believing it (as Kubernetes' leader election
                        // does), and say what was found.
                        let ttl = spec.lease_duration_seconds.unwrap_or(TTL.as_secs() as i32).max(1) as u64;
                        tokio::time::sleep(Duration::from_millis(ttl * 1000 / 3 + 500)).await;
                        let after = api.get_opt(&name).await.map_err(|e| LeaseError::Unavailable(kube.error(e, &what).message))?;
                        let Some(after) = after else { continue };
                        if after.metadata.resource_version != current.metadata.resource_version {
                            let renewed = after.spec.clone().unwrap_or_default();
                            if renewed.holder_identity == spec.holder_identity && renewed.holder_identity.as_deref().is_some_and(|h| !h.is_empty()) {
                                return Err(LeaseError::Held(format!(
                                    "{}; it is being renewed, though by this machine's clock its last renewal was {}: the holder's clock is behind this one's (check NTP on both)",
                                    describe(&after),
                                    ago(&renewed)
                                )));
                            }
                            continue;
                        }
                        tracing::warn!("took over the expired {} (last renewed {}; not renewed in the {}s since)", describe(&current), ago(&spec), ttl / 3);
                    }
                    let transitions = spec.lease_transitions.unwrap_or(0) + 1;
                    let lease = mine(ObjectMeta { annotations: None, ..current.metadata.clone() }, transitions);
                    match api.replace(&name, &pp, &lease).await {
                        Ok(_) => return Ok(Self::held(kube, name, holder)),
                        Err(kube::Error::Api(s)) if s.code == 409 => continue,
                        Err(e) => return Err(LeaseError::Unavailable(kube.error(e, &what).message)),
                    }
                }
                Err(e) => return Err(LeaseError::Unavailable(kube.error(e, &what).message)),
            }
        }
        match api.get_opt(&name).await {
            Ok(Some(l)) => Err(LeaseError::Held(describe(&l))),
            _ => Err(LeaseError::Held(format!("another run (Kubernetes Lease {}/{name} kept changing)", kube.namespace))),
        }
    }

    fn held(kube: &Kube, name: String, holder: &Holder) -> HeldLease {
        let renewal = {
            let (kube, name, run_id) = (kube.clone(), name.clone(), holder.run_id.clone());
            tokio::spawn(async move {
                let api = kube.api::<Lease>();
                loop {
                    tokio::time::sleep(TTL / 3).await;
                    let r = async {
                        let mut l = api.get(&name).await?;
                        let spec = l.spec.get_or_insert_with(LeaseSpec::default);
                        if spec.holder_identity.as_deref() != Some(run_id.as_str()) {
                            tracing::warn!("the Kubernetes Lease {name} was taken over by {}", describe(&l));
                            return Ok(());
                        }
                        spec.renew_time = Some(now());
                        api.replace(&name, &PostParams::default(), &l).await.map(|_| ())
                    }
                    .await;
                    if let Err(e) = r {
                        tracing::warn!("could not renew the Kubernetes Lease {name}: {}", super::root_cause(&e));
                    }
                }
            })
        };
        HeldLease { kube: kube.clone(), name, run_id: holder.run_id.clone(), renewal }
    }
}

#[async_trait::async_trait]
impl Held for HeldLease {
    /// Clears the holder if the lease is still ours.
    async fn release(self: Box<Self>) {
        self.renewal.abort();
        let api = self.kube.api::<Lease>();
        let r = async {
            let mut l = api.get(&self.name).await?;
            let spec = l.spec.get_or_insert_with(LeaseSpec::default);
            if spec.holder_identity.as_deref() != Some(self.run_id.as_str()) {
                return Ok(());
            }
            spec.holder_identity = None;
            spec.renew_time = None;
            spec.acquire_time = None;
            l.metadata.annotations.get_or_insert_with(BTreeMap::new).remove(HOLDER);
            api.replace(&self.name, &PostParams::default(), &l).await.map(|_| ())
        }
        .await;
        if let Err(e) = r {
            tracing::warn!("could not release the Kubernetes Lease {}: {} (it expires by itself)", self.name, super::root_cause(&e));
        }
    }
}

impl Drop for HeldLease {
    fn drop(&mut self) {
        self.renewal.abort();
    }
}
