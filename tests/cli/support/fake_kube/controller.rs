//! A small simulated controller manager and kubelet, enough for rollouts to progress:
//!
//! - Deployment: its pod template's hash names a ReplicaSet (`<name>-<hash>`, label
//!   `pod-template-hash`). A template never seen creates a ReplicaSet with the next
//!   `deployment.kubernetes.io/revision`; a template seen before (an undo) re-uses that
//!   ReplicaSet and gives it the next revision, as the real controller does. The new
//!   ReplicaSet gets the desired replicas at once; old ones go to 0 once the new pods are
//!   all ready. Status: replicas, updated/ready/available/unavailable, observedGeneration
//!   and the Available and Progressing conditions (ProgressDeadlineExceeded after
//!   `progressDeadlineSeconds`).
//! - ReplicaSet and StatefulSet: create and delete pods to match replicas (StatefulSet
//!   pods are `<name>-<ordinal>`, replaced when the template changes).
//! - Kubelet: a new pod is Pending, then Running and Ready after `ready_after` (with a pod IP);
//!   a pod whose image is in `crashing_images` is Running, not ready, in CrashLoopBackOff.
//! - Endpoints: every Service with a selector has an Endpoints object of the same name, its
//!   matching pods' IPs under `addresses` (Ready) or `notReadyAddresses`, with the service's
//!   ports.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::time::Instant;

use serde_json::{Value, json};

use super::selector::LabelSelector;
use super::store::{Cluster, path};

const REVISION: &str = "deployment.kubernetes.io/revision";

pub fn template_hash(template: &Value) -> String {
    let mut h = DefaultHasher::new();
    template.to_string().hash(&mut h);
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut x = h.finish();
    (0..10)
        .map(|_| {
            let c = ALPHABET[(x % ALPHABET.len() as u64) as usize] as char;
            x /= ALPHABET.len() as u64;
            c
        })
        .collect()
}

fn s<'a>(v: &'a Value, p: &str) -> &'a str {
    path(v, p).and_then(Value::as_str).unwrap_or_default()
}

fn owned_by(v: &Value, uid: &str) -> bool {
    path(v, "metadata.ownerReferences").and_then(Value::as_array).is_some_and(|refs| refs.iter().any(|r| r["uid"] == uid))
}

fn revision(v: &Value) -> i64 {
    path(v, "metadata.annotations").and_then(|a| a.get(REVISION)).and_then(Value::as_str).and_then(|r| r.parse().ok()).unwrap_or(0)
}

pub fn pod_ready(p: &Value) -> bool {
    path(p, "status.conditions").and_then(Value::as_array).is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

fn owner_ref(kind: &str, owner: &Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": kind, "name": s(owner, "metadata.name"), "uid": s(owner, "metadata.uid"), "controller": true, "blockOwnerDeletion": true})
}

/// Runs until nothing changes.
pub fn reconcile(c: &mut Cluster) {
    endpoints(c);
    let now = Instant::now();
    let due: Vec<(String, String)> = c.timers.iter().filter(|(t, _, _)| *t <= now).map(|(_, ns, n)| (ns.clone(), n.clone())).collect();
    c.timers.retain(|(t, _, _)| *t > now);
    for (ns, name) in due {
        if let Ok(mut pod) = c.get(super::store::type_of("pods"), &ns, &name) {
            make_ready(&mut pod);
            c.store("pods", pod);
        }
    }
    if !c.dirty {
        check_deadlines(c);
        return;
    }
    for _ in 0..10 {
        c.dirty = false;
        for d in c.all("deployments", None) {
            deployment(c, &d);
        }
        for rs in c.all("replicasets", None) {
            replicas(c, &rs, "ReplicaSet");
        }
        for ss in c.all("statefulsets", None) {
            statefulset(c, &ss);
        }
        if !c.dirty {
            break;
        }
    }
    c.dirty = false;
}

/// Deployments whose progress deadline passed get their condition even when nothing else
/// changes.
fn check_deadlines(c: &mut Cluster) {
    let expired = c.rollouts.iter().any(|((ns, name, _), started)| {
        c.get(super::store::type_of("deployments"), ns, name).is_ok_and(|d| {
            let deadline = path(&d, "spec.progressDeadlineSeconds").and_then(Value::as_u64).unwrap_or(600);
            let reasons: Vec<&str> = path(&d, "status.conditions").and_then(Value::as_array).into_iter().flatten().map(|c| c["reason"].as_str().unwrap_or_default()).collect();
            started.elapsed().as_secs() >= deadline && !reasons.contains(&"ProgressDeadlineExceeded") && !reasons.contains(&"NewReplicaSetAvailable")
        })
    });
    if expired {
        c.dirty = true;
        reconcile(c);
    }
}

/// A pod's IP: its own, or one derived from its name (pods the tests seed have none).
fn pod_ip(p: &Value) -> String {
    if let Some(ip) = path(p, "status.podIP").and_then(Value::as_str) {
        return ip.to_string();
    }
    let mut h = DefaultHasher::new();
    s(p, "metadata.name").hash(&mut h);
    let x = h.finish();
    format!("10.{}.{}.{}", (x >> 16) as u8, (x >> 8) as u8, (x as u8).max(1))
}

/// The endpoints controller: Endpoints follow their Service's selector and pods' readiness.
fn endpoints(c: &mut Cluster) {
    for svc in c.all("services", None) {
        let Some(sel) = path(&svc, "spec.selector").and_then(Value::as_object).filter(|m| !m.is_empty()) else { continue };
        let ns = s(&svc, "metadata.namespace").to_string();
        let name = s(&svc, "metadata.name").to_string();
        let text: Vec<String> = sel.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect();
        let Ok(selector) = LabelSelector::parse(&text.join(",")) else { continue };
        let (mut ready, mut not_ready) = (Vec::new(), Vec::new());
        for p in c.all("pods", Some(&ns)).iter().filter(|p| selector.matches(p["metadata"].get("labels"))) {
            let addr = json!({"ip": pod_ip(p), "nodeName": p["spec"]["nodeName"], "targetRef": {"kind": "Pod", "namespace": ns, "name": s(p, "metadata.name"), "uid": s(p, "metadata.uid")}});
            if pod_ready(p) { ready.push(addr) } else { not_ready.push(addr) }
        }
        let ports: Vec<Value> = path(&svc, "spec.ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|p| json!({"name": p["name"], "port": p.get("targetPort").filter(|t| t.is_u64()).unwrap_or(&p["port"]), "protocol": p.get("protocol").cloned().unwrap_or(json!("TCP"))}))
            .collect();
        let mut subset = json!({"ports": ports});
        if !ready.is_empty() {
            subset["addresses"] = json!(ready);
        }
        if !not_ready.is_empty() {
            subset["notReadyAddresses"] = json!(not_ready);
        }
        let subsets = if ready.is_empty() && not_ready.is_empty() { json!([]) } else { json!([subset]) };
        match c.get(super::store::type_of("endpoints"), &ns, &name) {
            Ok(mut ep) => {
                if ep["subsets"] != subsets {
                    ep["subsets"] = subsets;
                    c.store("endpoints", ep);
                }
            }
            Err(_) => {
                c.seed("endpoints", json!({"metadata": {"name": name, "namespace": ns, "labels": svc["metadata"]["labels"]}, "subsets": subsets}));
            }
        }
    }
}

fn make_ready(pod: &mut Value) {
    let now = super::store::now_rfc3339();
    pod["status"]["podIP"] = json!(pod_ip(pod));
    pod["status"]["phase"] = json!("Running");
    pod["status"]["conditions"] = json!([
        {"type": "PodScheduled", "status": "True"},
        {"type": "Initialized", "status": "True"},
        {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
        {"type": "Ready", "status": "True", "lastTransitionTime": now},
    ]);
    if let Some(statuses) = pod["status"]["containerStatuses"].as_array_mut() {
        for cs in statuses {
            cs["ready"] = json!(true);
            cs["started"] = json!(true);
            cs["state"] = json!({"running": {"startedAt": now}});
        }
    }
}

fn new_pod(c: &mut Cluster, name: String, ns: &str, template: &Value, labels: Value, owner: Value) -> Value {
    // The scheduler: the first node that is Ready and not cordoned.
    let node = c
        .all("nodes", None)
        .iter()
        .find(|n| n["spec"]["unschedulable"] != true && path(n, "status.conditions").and_then(Value::as_array).is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True")))
        .map(|n| s(n, "metadata.name").to_string());
    let mut spec = template.get("spec").cloned().unwrap_or(json!({}));
    if let Some(n) = node {
        spec["nodeName"] = json!(n);
    }
    let containers: Vec<Value> = spec["containers"].as_array().cloned().unwrap_or_default();
    let crashing = containers.iter().any(|ct| c.crashing_images.iter().any(|bad| s(ct, "image").contains(bad.as_str())));
    let statuses: Vec<Value> = containers
        .iter()
        .map(|ct| {
            if crashing {
                json!({"name": ct["name"], "image": ct["image"], "imageID": "", "ready": false, "restartCount": 4, "started": false,
                       "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting failed container"}},
                       "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}})
            } else {
                json!({"name": ct["name"], "image": ct["image"], "imageID": "", "ready": false, "restartCount": 0, "started": false,
                       "state": {"waiting": {"reason": "ContainerCreating"}}})
            }
        })
        .collect();
    let pod = json!({
        "metadata": {"name": name, "namespace": ns, "labels": labels, "annotations": template["metadata"]["annotations"], "ownerReferences": [owner]},
        "spec": spec,
        "status": {
            "phase": if crashing { "Running" } else { "Pending" },
            "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "False"}],
            "containerStatuses": statuses,
            "startTime": super::store::now_rfc3339(),
        }
    });
    let created = c.seed("pods", pod);
    if !crashing {
        c.timers.push((Instant::now() + c.ready_after, ns.to_string(), name));
    }
    created
}

fn deployment(c: &mut Cluster, d: &Value) {
    let ns = s(d, "metadata.namespace").to_string();
    let name = s(d, "metadata.name").to_string();
    let uid = s(d, "metadata.uid").to_string();
    let desired = path(d, "spec.replicas").and_then(Value::as_i64).unwrap_or(1);
    let template = d["spec"]["template"].clone();
    let hash = template_hash(&template);
    let owned: Vec<Value> = c.all("replicasets", Some(&ns)).into_iter().filter(|rs| owned_by(rs, &uid)).collect();
    let max_rev = owned.iter().map(revision).max().unwrap_or(0);
    let current = owned.iter().find(|rs| s(rs, "metadata.labels.pod-template-hash") == hash).cloned();
    let new_rs = match current {
        None => {
            let mut labels = template["metadata"]["labels"].clone();
            labels["pod-template-hash"] = json!(hash);
            let mut selector = d["spec"]["selector"].clone();
            selector["matchLabels"]["pod-template-hash"] = json!(hash);
            let mut tpl = template.clone();
            tpl["metadata"]["labels"] = labels.clone();
            c.rollouts.insert((ns.clone(), name.clone(), hash.clone()), Instant::now());
            c.seed(
                "replicasets",
                json!({
                    "metadata": {"name": format!("{name}-{hash}"), "namespace": ns, "labels": labels,
                                 "annotations": copied_annotations(d, max_rev + 1), "ownerReferences": [owner_ref("Deployment", d)]},
                    "spec": {"replicas": desired, "selector": selector, "template": tpl},
                }),
            )
        }
        Some(mut rs) => {
            let mut changed = false;
            if revision(&rs) < max_rev {
                rs["metadata"]["annotations"] = copied_annotations(d, max_rev + 1);
                c.rollouts.insert((ns.clone(), name.clone(), hash.clone()), Instant::now());
                changed = true;
            }
            if path(&rs, "spec.replicas").and_then(Value::as_i64) != Some(desired) {
                rs["spec"]["replicas"] = json!(desired);
                changed = true;
            }
            if changed {
                c.store("replicasets", rs.clone());
            }
            rs
        }
    };
    let new_rev = revision(&new_rs);
    let pods: Vec<Value> = c.all("pods", Some(&ns));
    let pods_of = |rs: &Value| -> Vec<Value> { pods.iter().filter(|p| owned_by(p, s(rs, "metadata.uid"))).cloned().collect() };
    let new_pods = pods_of(&new_rs);
    let new_ready = new_pods.iter().filter(|p| pod_ready(p)).count() as i64;
    let complete = new_ready >= desired && new_pods.len() as i64 == desired;
    let mut total = 0;
    let mut ready = 0;
    for rs in c.all("replicasets", Some(&ns)).into_iter().filter(|rs| owned_by(rs, &uid)) {
        let p = pods_of(&rs);
        total += p.len() as i64;
        ready += p.iter().filter(|p| pod_ready(p)).count() as i64;
        if complete && s(&rs, "metadata.name") != s(&new_rs, "metadata.name") && path(&rs, "spec.replicas").and_then(Value::as_i64) != Some(0) {
            let mut old = rs.clone();
            old["spec"]["replicas"] = json!(0);
            c.store("replicasets", old);
        }
    }
    let started = c.rollouts.get(&(ns.clone(), name.clone(), hash.clone())).copied();
    let deadline = path(d, "spec.progressDeadlineSeconds").and_then(Value::as_u64).unwrap_or(600);
    let now = super::store::now_rfc3339();
    let progressing = if complete {
        json!({"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable", "message": format!("ReplicaSet \"{}\" has successfully progressed.", s(&new_rs, "metadata.name")), "lastUpdateTime": now, "lastTransitionTime": now})
    } else if started.is_some_and(|t| t.elapsed().as_secs() >= deadline) {
        json!({"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": format!("ReplicaSet \"{}\" has timed out progressing.", s(&new_rs, "metadata.name")), "lastUpdateTime": now, "lastTransitionTime": now})
    } else {
        json!({"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated", "message": format!("ReplicaSet \"{}\" is progressing.", s(&new_rs, "metadata.name")), "lastUpdateTime": now, "lastTransitionTime": now})
    };
    let available = ready >= desired;
    let mut status = json!({
        "observedGeneration": path(d, "metadata.generation").cloned().unwrap_or(json!(1)),
        "replicas": total,
        "updatedReplicas": new_pods.len(),
        "readyReplicas": ready,
        "availableReplicas": ready,
        "conditions": [
            {"type": "Available", "status": if available { "True" } else { "False" },
             "reason": if available { "MinimumReplicasAvailable" } else { "MinimumReplicasUnavailable" },
             "message": if available { "Deployment has minimum availability." } else { "Deployment does not have minimum availability." },
             "lastUpdateTime": now, "lastTransitionTime": now},
            progressing,
        ],
    });
    if desired > ready {
        status["unavailableReplicas"] = json!(desired - ready);
    }
    let mut next = d.clone();
    // Timestamps would change on every pass; keep the old ones when the rest is equal.
    if let Some(old) = d.get("status")
        && same_ignoring_times(old, &status) {
            status = old.clone();
        }
    next["status"] = status;
    next["metadata"]["annotations"][REVISION] = json!(new_rev.to_string());
    c.store("deployments", next);
}

/// The deployment controller copies the Deployment's annotations (change-cause among them)
/// to the ReplicaSet it makes current.
fn copied_annotations(d: &Value, revision: i64) -> Value {
    let mut a = d["metadata"]["annotations"].as_object().cloned().unwrap_or_default();
    a.insert(REVISION.into(), json!(revision.to_string()));
    Value::Object(a)
}

fn same_ignoring_times(a: &Value, b: &Value) -> bool {
    fn strip(v: &Value) -> Value {
        match v {
            Value::Object(m) => Value::Object(m.iter().filter(|(k, _)| !k.ends_with("Time")).map(|(k, v)| (k.clone(), strip(v))).collect()),
            Value::Array(a) => Value::Array(a.iter().map(strip).collect()),
            other => other.clone(),
        }
    }
    strip(a) == strip(b)
}

/// A ReplicaSet's pods follow its replicas; its status counts them.
fn replicas(c: &mut Cluster, rs: &Value, kind: &str) {
    let ns = s(rs, "metadata.namespace").to_string();
    let uid = s(rs, "metadata.uid").to_string();
    let desired = path(rs, "spec.replicas").and_then(Value::as_i64).unwrap_or(1);
    let mut pods: Vec<Value> = c.all("pods", Some(&ns)).into_iter().filter(|p| owned_by(p, &uid)).collect();
    while (pods.len() as i64) < desired {
        let name = format!("{}-{}", s(rs, "metadata.name"), c.suffix(5));
        let labels = rs["spec"]["template"]["metadata"]["labels"].clone();
        let p = new_pod(c, name, &ns, &rs["spec"]["template"], labels, owner_ref(kind, rs));
        pods.push(p);
    }
    if pods.len() as i64 > desired {
        // Not-ready pods go first, then the newest.
        pods.sort_by_key(|p| (pod_ready(p), std::cmp::Reverse(s(p, "metadata.name").to_string())));
        let extra = pods.len() - desired as usize;
        for p in pods.drain(..extra) {
            let _ = c.delete(super::store::type_of("pods"), &ns, s(&p, "metadata.name"), false);
        }
    }
    let ready = pods.iter().filter(|p| pod_ready(p)).count();
    let mut next = rs.clone();
    next["status"] = json!({"replicas": pods.len(), "readyReplicas": ready, "availableReplicas": ready, "fullyLabeledReplicas": pods.len(),
                            "observedGeneration": path(rs, "metadata.generation").cloned().unwrap_or(json!(1))});
    c.store("replicasets", next);
}

fn statefulset(c: &mut Cluster, ss: &Value) {
    let ns = s(ss, "metadata.namespace").to_string();
    let name = s(ss, "metadata.name").to_string();
    let uid = s(ss, "metadata.uid").to_string();
    let desired = path(ss, "spec.replicas").and_then(Value::as_i64).unwrap_or(1);
    let template = ss["spec"]["template"].clone();
    let revision = format!("{name}-{}", template_hash(&template));
    let pods: Vec<Value> = c.all("pods", Some(&ns)).into_iter().filter(|p| owned_by(p, &uid)).collect();
    for p in &pods {
        let ordinal: i64 = s(p, "metadata.name").rsplit('-').next().and_then(|o| o.parse().ok()).unwrap_or(i64::MAX);
        if ordinal >= desired || s(p, "metadata.labels.controller-revision-hash") != revision {
            let _ = c.delete(super::store::type_of("pods"), &ns, s(p, "metadata.name"), false);
        }
    }
    let mut labels = template["metadata"]["labels"].clone();
    labels["controller-revision-hash"] = json!(revision);
    for i in 0..desired {
        let pod_name = format!("{name}-{i}");
        if c.get(super::store::type_of("pods"), &ns, &pod_name).is_err() {
            new_pod(c, pod_name, &ns, &template, labels.clone(), owner_ref("StatefulSet", ss));
        }
    }
    let pods: Vec<Value> = c.all("pods", Some(&ns)).into_iter().filter(|p| owned_by(p, &uid)).collect();
    let ready = pods.iter().filter(|p| pod_ready(p)).count();
    let selector_ok = ss["spec"]["selector"].is_object() && LabelSelector::object_matches(&ss["spec"]["selector"], Some(&labels));
    let mut next = ss.clone();
    next["status"] = json!({"replicas": pods.len(), "readyReplicas": ready, "availableReplicas": ready, "currentReplicas": pods.len(),
                            "updatedReplicas": pods.len(), "currentRevision": revision, "updateRevision": revision,
                            "observedGeneration": path(ss, "metadata.generation").cloned().unwrap_or(json!(1))});
    if !selector_ok {
        next["status"]["conditions"] = json!([{"type": "SelectorMismatch", "status": "True"}]);
    }
    c.store("statefulsets", next);
}
