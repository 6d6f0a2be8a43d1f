//! The fake API server's object store: typed resources kept as Kubernetes JSON, with
//! resourceVersion, uid, generation, 409 conflicts, dry runs, selectors and paging.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use k8s_openapi::api::{apps, batch, coordination, core, networking, policy, rbac};

use super::selector::{FieldSelector, LabelSelector};

/// A resource type the fake serves.
pub struct ResourceType {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    /// Objects are checked and normalised through the k8s-openapi type: a field of the wrong
    /// type is a 400, an unknown field is dropped (as the API server prunes it).
    pub normalize: fn(Value) -> Result<Value, String>,
    /// Writes to the main resource keep the stored status (there is a `/status` subresource).
    pub status_subresource: bool,
    /// `metadata.generation` goes up when `spec` changes.
    pub generation: bool,
}

impl ResourceType {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.to_string() } else { format!("{}/{}", self.group, self.version) }
    }
    /// As the API server names it in messages: `deployments.apps`, `pods`.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() { self.plural.to_string() } else { format!("{}.{}", self.plural, self.group) }
    }
}

fn norm<T: DeserializeOwned + Serialize>(v: Value) -> Result<Value, String> {
    let t: T = serde_json::from_value(v).map_err(|e| e.to_string())?;
    serde_json::to_value(t).map_err(|e| e.to_string())
}

/// Custom resources have no k8s-openapi type: kept as given (a CRD without a schema).
fn raw(v: Value) -> Result<Value, String> {
    if v.is_object() { Ok(v) } else { Err("the object is not a JSON object".into()) }
}

macro_rules! rt {
    ($g:expr, $v:expr, $p:expr, $k:expr, $ns:expr, $t:ty, $status:expr, $gen:expr) => {
        ResourceType { group: $g, version: $v, plural: $p, kind: $k, namespaced: $ns, normalize: norm::<$t>, status_subresource: $status, generation: $gen }
    };
}

pub static TYPES: &[ResourceType] = &[
    rt!("", "v1", "pods", "Pod", true, core::v1::Pod, true, false),
    rt!("", "v1", "nodes", "Node", false, core::v1::Node, true, false),
    rt!("", "v1", "services", "Service", true, core::v1::Service, true, false),
    rt!("", "v1", "events", "Event", true, core::v1::Event, false, false),
    rt!("", "v1", "secrets", "Secret", true, core::v1::Secret, false, false),
    rt!("", "v1", "configmaps", "ConfigMap", true, core::v1::ConfigMap, false, false),
    rt!("", "v1", "namespaces", "Namespace", false, core::v1::Namespace, true, false),
    rt!("apps", "v1", "deployments", "Deployment", true, apps::v1::Deployment, true, true),
    rt!("apps", "v1", "statefulsets", "StatefulSet", true, apps::v1::StatefulSet, true, true),
    rt!("apps", "v1", "replicasets", "ReplicaSet", true, apps::v1::ReplicaSet, true, true),
    rt!("batch", "v1", "jobs", "Job", true, batch::v1::Job, true, true),
    rt!("batch", "v1", "cronjobs", "CronJob", true, batch::v1::CronJob, true, true),
    rt!("networking.k8s.io", "v1", "ingresses", "Ingress", true, networking::v1::Ingress, true, true),
    rt!("coordination.k8s.io", "v1", "leases", "Lease", true, coordination::v1::Lease, false, false),
    rt!("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", true, policy::v1::PodDisruptionBudget, true, true),
    rt!("", "v1", "endpoints", "Endpoints", true, core::v1::Endpoints, false, false),
    rt!("", "v1", "serviceaccounts", "ServiceAccount", true, core::v1::ServiceAccount, false, false),
    rt!("rbac.authorization.k8s.io", "v1", "roles", "Role", true, rbac::v1::Role, false, false),
    rt!("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", true, rbac::v1::RoleBinding, false, false),
    rt!("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", false, rbac::v1::ClusterRole, false, false),
    rt!("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", false, rbac::v1::ClusterRoleBinding, false, false),
    // Custom resources the procedures look at, as their CRDs define them.
    ResourceType { group: "argoproj.io", version: "v1alpha1", plural: "applications", kind: "Application", namespaced: true, normalize: raw, status_subresource: false, generation: true },
    ResourceType { group: "velero.io", version: "v1", plural: "backups", kind: "Backup", namespaced: true, normalize: raw, status_subresource: true, generation: true },
    ResourceType { group: "s3.aws.upbound.io", version: "v1beta1", plural: "buckets", kind: "Bucket", namespaced: false, normalize: raw, status_subresource: true, generation: true },
];

pub fn resource_type(group: &str, version: &str, plural: &str) -> Option<&'static ResourceType> {
    TYPES.iter().find(|t| t.group == group && t.version == version && t.plural == plural)
}

pub fn type_of(plural: &str) -> &'static ResourceType {
    TYPES.iter().find(|t| t.plural == plural).unwrap_or_else(|| panic!("the fake does not serve {plural}"))
}

/// An API error, answered as a `Status` object.
#[derive(Debug)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { code, reason, message: message.into() }
    }
    pub fn not_found(ty: &ResourceType, name: &str) -> ApiError {
        ApiError::new(404, "NotFound", format!("{} \"{name}\" not found", ty.qualified()))
    }
    pub fn status(&self) -> Value {
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": self.message, "reason": self.reason, "code": self.code})
    }
}

/// Everything the fake cluster holds.
pub struct Cluster {
    /// Objects by plural, then by (namespace, name); cluster-scoped objects have namespace "".
    pub objects: HashMap<&'static str, BTreeMap<(String, String), Value>>,
    rv: u64,
    uid: u64,
    names: u64,
    /// Requests must carry `Authorization: Bearer <token>` when set.
    pub token: Option<String>,
    /// (verb, plural) pairs refused with 403, e.g. ("patch", "deployments").
    pub forbidden: Vec<(String, String)>,
    /// When set, RBAC is enforced with these rules (see `rbac`).
    pub rbac: Option<Vec<super::rbac::Rule>>,
    /// Requests RBAC refused: "verb group/resource".
    pub denied: Vec<String>,
    /// Errors to answer once each: (verb, plural, code), e.g. ("update", "deployments", 409).
    pub fail_next: Vec<(String, String, u16)>,
    /// How long new pods take to become ready.
    pub ready_after: Duration,
    /// Pods whose image contains one of these never become ready (CrashLoopBackOff).
    pub crashing_images: Vec<String>,
    /// Container logs: (namespace, pod, container) → (time, line).
    pub logs: HashMap<(String, String, String), Vec<(jiff::Timestamp, String)>>,
    /// metrics.k8s.io answers: None when metrics-server is not installed (404).
    pub pod_metrics: Option<Vec<Value>>,
    pub node_metrics: Option<Vec<Value>>,
    /// Pods waiting to become ready: (when, namespace, name).
    pub timers: Vec<(Instant, String, String)>,
    /// When each Deployment rollout began: (namespace, name, template hash).
    pub rollouts: HashMap<(String, String, String), Instant>,
    /// List JSON of objects by (plural, namespace, name), with the resourceVersion it is of.
    pub list_cache: HashMap<(&'static str, String, String), (String, bytes::Bytes)>,
    /// Set by every write; the controller reconciles when set.
    pub dirty: bool,
    /// Every request: "METHOD path?query".
    pub requests: Vec<String>,
    /// Where a pod's port really is: (namespace, pod, port) → address. Unmapped ports are
    /// 127.0.0.1 with the same number.
    pub forwards: HashMap<(String, String, u16), std::net::SocketAddr>,
    /// How many more port-forward connections may reach their pod; after that, each is
    /// refused inside the pod. None: no limit.
    pub forward_budget: Option<usize>,
}

impl Default for Cluster {
    fn default() -> Self {
        Cluster {
            objects: HashMap::new(),
            rv: 1000,
            uid: 0,
            names: 0,
            token: None,
            forbidden: Vec::new(),
            rbac: None,
            denied: Vec::new(),
            fail_next: Vec::new(),
            ready_after: Duration::from_millis(300),
            crashing_images: Vec::new(),
            logs: HashMap::new(),
            pod_metrics: None,
            node_metrics: None,
            timers: Vec::new(),
            rollouts: HashMap::new(),
            list_cache: HashMap::new(),
            dirty: false,
            requests: Vec::new(),
            forwards: HashMap::new(),
            forward_budget: None,
        }
    }
}

/// `a.b.c` in a JSON value.
pub fn path<'a>(v: &'a Value, dotted: &str) -> Option<&'a Value> {
    dotted.split('.').try_fold(v, |v, k| v.get(k))
}

pub fn now_rfc3339() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A list's paging state: where to continue.
pub struct Page {
    /// Each item as list JSON (without kind and apiVersion, as the API server lists them).
    pub items: Vec<bytes::Bytes>,
    pub continue_token: Option<String>,
    pub resource_version: String,
}

impl Cluster {
    fn next_rv(&mut self) -> String {
        self.rv += 1;
        self.rv.to_string()
    }

    pub fn current_rv(&self) -> String {
        self.rv.to_string()
    }

    /// A random-looking lowercase suffix, as generateName and ReplicaSets use.
    pub fn suffix(&mut self, len: usize) -> String {
        self.names += 1;
        let mut x = self.names.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5bd1e995;
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        (0..len)
            .map(|_| {
                let c = ALPHABET[(x % ALPHABET.len() as u64) as usize] as char;
                x /= ALPHABET.len() as u64;
                x ^= x << 7;
                c
            })
            .collect()
    }

    fn key(ty: &ResourceType, ns: &str, name: &str) -> (String, String) {
        (if ty.namespaced { ns.to_string() } else { String::new() }, name.to_string())
    }

    pub fn get(&self, ty: &ResourceType, ns: &str, name: &str) -> Result<Value, ApiError> {
        self.objects
            .get(ty.plural)
            .and_then(|m| m.get(&Self::key(ty, ns, name)))
            .cloned()
            .ok_or_else(|| ApiError::not_found(ty, name))
    }

    /// Objects of a type in a namespace (all namespaces for None), by (namespace, name).
    pub fn all(&self, plural: &str, ns: Option<&str>) -> Vec<Value> {
        self.objects
            .get(plural)
            .map(|m| m.iter().filter(|((n, _), _)| ns.is_none_or(|want| n == want)).map(|(_, v)| v.clone()).collect())
            .unwrap_or_default()
    }

    pub fn list(
        &mut self,
        ty: &ResourceType,
        ns: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
        limit: Option<usize>,
        continue_from: Option<&str>,
    ) -> Result<Page, ApiError> {
        let start = match continue_from {
            Some(token) => {
                let (n, name) = token.split_once('/').ok_or_else(|| ApiError::new(400, "BadRequest", "invalid continue token"))?;
                Some((n.to_string(), name.to_string()))
            }
            None => None,
        };
        let empty = BTreeMap::new();
        let map = self.objects.get(ty.plural).unwrap_or(&empty);
        let cache = &mut self.list_cache;
        let mut items: Vec<bytes::Bytes> = Vec::new();
        let mut last: Option<(&String, &String)> = None;
        let mut continue_token = None;
        let iter: Box<dyn Iterator<Item = (&(String, String), &Value)>> = match &start {
            Some(s) => Box::new(map.range((std::ops::Bound::Excluded(s.clone()), std::ops::Bound::Unbounded))),
            None => Box::new(map.iter()),
        };
        for ((n, name), v) in iter {
            if ns.is_some_and(|want| want != n) {
                continue;
            }
            if !labels.matches(path(v, "metadata.labels")) || !fields.matches(v) {
                continue;
            }
            if limit.is_some_and(|l| items.len() >= l) {
                let (last_ns, last_name) = last.expect("limit > 0");
                continue_token = Some(format!("{last_ns}/{last_name}"));
                break;
            }
            // Serialized once per resourceVersion, as the API server's watch cache keeps
            // objects ready to send.
            let rv = path(v, "metadata.resourceVersion").and_then(Value::as_str).unwrap_or_default();
            let key = (ty.plural, n.clone(), name.clone());
            let bytes = match cache.get(&key) {
                Some((cached_rv, b)) if cached_rv == rv => b.clone(),
                _ => {
                    let mut item = v.clone();
                    if let Some(o) = item.as_object_mut() {
                        o.remove("kind");
                        o.remove("apiVersion");
                    }
                    let b = bytes::Bytes::from(serde_json::to_vec(&item).unwrap_or_default());
                    cache.insert(key, (rv.to_string(), b.clone()));
                    b
                }
            };
            items.push(bytes);
            last = Some((n, name));
        }
        Ok(Page { items, continue_token, resource_version: self.current_rv() })
    }

    pub fn create(&mut self, ty: &'static ResourceType, ns: &str, mut obj: Value, dry_run: bool) -> Result<Value, ApiError> {
        let meta = obj.get_mut("metadata").and_then(Value::as_object_mut).ok_or_else(|| ApiError::new(400, "BadRequest", "metadata is required"))?;
        let name = match meta.get("name").and_then(Value::as_str) {
            Some(n) => n.to_string(),
            None => match meta.get("generateName").and_then(Value::as_str).map(str::to_string) {
                Some(prefix) => {
                    let n = format!("{prefix}{}", self.suffix(5));
                    obj["metadata"]["name"] = json!(n);
                    n
                }
                None => return Err(ApiError::new(422, "Invalid", format!("{} \"\" is invalid: metadata.name: Required value: name or generateName is required", ty.kind))),
            },
        };
        if self.objects.get(ty.plural).is_some_and(|m| m.contains_key(&Self::key(ty, ns, &name))) {
            return Err(ApiError::new(409, "AlreadyExists", format!("{} \"{name}\" already exists", ty.qualified())));
        }
        obj["apiVersion"] = json!(ty.api_version());
        obj["kind"] = json!(ty.kind);
        self.uid += 1;
        obj["metadata"]["uid"] = json!(format!("00000000-0000-4000-8000-{:012x}", self.uid));
        obj["metadata"]["creationTimestamp"] = json!(now_rfc3339());
        if ty.namespaced {
            obj["metadata"]["namespace"] = json!(ns);
        }
        if ty.generation {
            obj["metadata"]["generation"] = json!(1);
        }
        let mut obj = (ty.normalize)(obj).map_err(|e| ApiError::new(400, "BadRequest", format!("{} in body: {e}", ty.kind)))?;
        if dry_run {
            obj["metadata"]["resourceVersion"] = json!(self.current_rv());
            return Ok(obj);
        }
        obj["metadata"]["resourceVersion"] = json!(self.next_rv());
        self.objects.entry(ty.plural).or_default().insert(Self::key(ty, ns, &name), obj.clone());
        self.dirty = true;
        Ok(obj)
    }

    /// PUT: `new` replaces the object; a resourceVersion in `new` must match (409 otherwise).
    /// Through the main resource the status is kept; through `/status` only the status changes.
    pub fn replace(&mut self, ty: &'static ResourceType, ns: &str, name: &str, mut new: Value, status_only: bool, dry_run: bool) -> Result<Value, ApiError> {
        let old = self.get(ty, ns, name)?;
        if let Some(rv) = path(&new, "metadata.resourceVersion").and_then(Value::as_str)
            && Some(rv) != path(&old, "metadata.resourceVersion").and_then(Value::as_str) {
                return Err(ApiError::new(
                    409,
                    "Conflict",
                    format!("Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again", ty.qualified()),
                ));
            }
        if path(&new, "metadata.name").and_then(Value::as_str).is_some_and(|n| n != name) {
            return Err(ApiError::new(400, "BadRequest", "the name of the object does not match the name on the URL"));
        }
        if status_only {
            let status = new.get("status").cloned();
            new = old.clone();
            match status {
                Some(s) => new["status"] = s,
                None => {
                    new.as_object_mut().map(|o| o.remove("status"));
                }
            }
        } else if ty.status_subresource {
            match old.get("status") {
                Some(s) => new["status"] = s.clone(),
                None => {
                    new.as_object_mut().map(|o| o.remove("status"));
                }
            }
        }
        for keep in ["uid", "creationTimestamp", "namespace", "name", "generation"] {
            match old["metadata"].get(keep) {
                Some(v) => new["metadata"][keep] = v.clone(),
                None => {
                    new["metadata"].as_object_mut().map(|m| m.remove(keep));
                }
            }
        }
        new["apiVersion"] = json!(ty.api_version());
        new["kind"] = json!(ty.kind);
        if ty.generation && old.get("spec") != new.get("spec") {
            let g = path(&old, "metadata.generation").and_then(Value::as_i64).unwrap_or(1);
            new["metadata"]["generation"] = json!(g + 1);
        }
        let mut new = (ty.normalize)(new).map_err(|e| ApiError::new(400, "BadRequest", format!("{} in body: {e}", ty.kind)))?;
        let mut comparable = new.clone();
        comparable["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
        if comparable == old || dry_run {
            // No change: the API server keeps the resourceVersion.
            new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
            return Ok(new);
        }
        new["metadata"]["resourceVersion"] = json!(self.next_rv());
        self.objects.entry(ty.plural).or_default().insert(Self::key(ty, ns, name), new.clone());
        self.dirty = true;
        Ok(new)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn patch(&mut self, ty: &'static ResourceType, ns: &str, name: &str, patch: &Value, strategic: bool, status_only: bool, dry_run: bool) -> Result<Value, ApiError> {
        let old = self.get(ty, ns, name)?;
        if !patch.is_object() {
            return Err(ApiError::new(400, "BadRequest", "the patch is not a JSON object"));
        }
        let mut new = old.clone();
        if strategic {
            super::patch::strategic_merge(&mut new, patch, "");
        } else {
            super::patch::merge(&mut new, patch);
        }
        if status_only {
            // replace() takes only the status from `new`.
        } else if ty.status_subresource {
            new["status"] = old.get("status").cloned().unwrap_or(Value::Null);
        }
        self.replace(ty, ns, name, new, status_only, dry_run)
    }

    pub fn delete(&mut self, ty: &ResourceType, ns: &str, name: &str, dry_run: bool) -> Result<Value, ApiError> {
        let obj = self.get(ty, ns, name)?;
        if dry_run {
            return Ok(obj);
        }
        self.objects.get_mut(ty.plural).map(|m| m.remove(&Self::key(ty, ns, name)));
        self.next_rv();
        self.dirty = true;
        // Garbage collection of dependents (foreground, at once).
        if let Some(uid) = path(&obj, "metadata.uid").and_then(Value::as_str).map(str::to_string) {
            let mut dependents = Vec::new();
            for t in TYPES {
                for ((n, nm), v) in self.objects.get(t.plural).into_iter().flatten() {
                    let owned = path(v, "metadata.ownerReferences").and_then(Value::as_array).is_some_and(|refs| refs.iter().any(|r| r["uid"] == json!(uid)));
                    if owned {
                        dependents.push((t, n.clone(), nm.clone()));
                    }
                }
            }
            for (t, n, nm) in dependents {
                let _ = self.delete(t, &n, &nm, false);
            }
        }
        Ok(obj)
    }

    /// Stores an object as given (test set-up), filling uid, resourceVersion and
    /// generation; status included.
    pub fn seed(&mut self, plural: &str, obj: Value) -> Value {
        let ty = type_of(plural);
        let ns = path(&obj, "metadata.namespace").and_then(Value::as_str).unwrap_or("default").to_string();
        let name = path(&obj, "metadata.name").and_then(Value::as_str).expect("seeded objects have a name").to_string();
        let status = obj.get("status").cloned();
        let exists = self.get(ty, &ns, &name).is_ok();
        let mut stored = if exists {
            let mut o = obj.clone();
            o["metadata"].as_object_mut().map(|m| m.remove("resourceVersion"));
            self.replace(ty, &ns, &name, o, false, false).expect("seed replace")
        } else {
            self.create(ty, &ns, obj, false).expect("seed create")
        };
        if let Some(s) = status {
            stored["status"] = s;
            stored["metadata"]["resourceVersion"] = json!(self.next_rv());
            let stored = (ty.normalize)(stored).expect("seeded status is valid");
            self.objects.entry(ty.plural).or_default().insert(Self::key(ty, &ns, &name), stored.clone());
            return stored;
        }
        stored
    }

    /// Writes an object as the controller does (status included), bumping the
    /// resourceVersion only if something changed.
    pub fn store(&mut self, plural: &str, mut obj: Value) {
        let ty = type_of(plural);
        let ns = path(&obj, "metadata.namespace").and_then(Value::as_str).unwrap_or_default().to_string();
        let name = path(&obj, "metadata.name").and_then(Value::as_str).unwrap_or_default().to_string();
        let key = Self::key(ty, &ns, &name);
        if let Some(old) = self.objects.get(ty.plural).and_then(|m| m.get(&key)) {
            obj["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
            if *old == obj {
                return;
            }
        }
        obj["metadata"]["resourceVersion"] = json!(self.next_rv());
        self.objects.entry(ty.plural).or_default().insert(key, obj);
        self.dirty = true;
    }

    /// The resourceVersion of every object, for "nothing changed" assertions.
    pub fn versions(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (plural, m) in &self.objects {
            for ((ns, name), v) in m {
                let rv = path(v, "metadata.resourceVersion").and_then(Value::as_str).unwrap_or_default().to_string();
                out.insert(format!("{plural}/{ns}/{name}"), rv);
            }
        }
        out
    }
}
