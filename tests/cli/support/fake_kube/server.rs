//! The fake API server's HTTP side: Kubernetes REST paths, verbs, query parameters,
//! `Status` errors, bearer-token authentication and a list of forbidden verbs.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response};
use serde_json::{Value, json};

use super::selector::{FieldSelector, LabelSelector};
use super::store::{ApiError, Cluster, ResourceType, path, resource_type, type_of};

type Reply = Response<Full<Bytes>>;

fn reply(code: u16, body: &Value) -> Reply {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(serde_json::to_vec(body).unwrap_or_default())))
        .expect("response")
}

fn error(e: ApiError) -> Reply {
    reply(e.code, &e.status())
}

/// A parsed request path.
struct Target {
    ty: &'static ResourceType,
    namespace: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

fn parse_path(p: &str) -> Result<Target, ApiError> {
    let segs: Vec<&str> = p.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(ApiError::new(404, "NotFound", "the server could not find the requested resource")),
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest),
        _ => (None, rest),
    };
    let (plural, name, sub) = match rest {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(name.to_string()), None),
        [plural, name, sub] => (*plural, Some(name.to_string()), Some(sub.to_string())),
        _ => return Err(ApiError::new(404, "NotFound", "the server could not find the requested resource")),
    };
    let ty = resource_type(group, version, plural).ok_or_else(|| ApiError::new(404, "NotFound", "the server could not find the requested resource"))?;
    Ok(Target { ty, namespace, name, sub })
}

/// Discovery, as the API server serves it: `/api` (APIVersions), `/apis` (APIGroupList),
/// `/api/v1` and `/apis/GROUP/VERSION` (APIResourceList) for the types the fake serves.
fn discovery(p: &str) -> Option<Reply> {
    let resources = |group: &str, version: &str| -> Vec<Value> {
        super::store::TYPES
            .iter()
            .filter(|t| t.group == group && t.version == version)
            .map(|t| {
                let mut verbs = vec!["create", "delete", "get", "list", "patch", "update"];
                if t.namespaced {
                    verbs.push("deletecollection");
                }
                json!({"name": t.plural, "singularName": t.kind.to_lowercase(), "namespaced": t.namespaced, "kind": t.kind, "verbs": verbs})
            })
            .collect()
    };
    let segs: Vec<&str> = p.trim_matches('/').split('/').collect();
    let doc = match segs.as_slice() {
        ["api"] => json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}),
        ["api", "v1"] => json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "v1", "resources": resources("", "v1")}),
        ["apis"] => {
            let mut groups: Vec<(&str, &str)> = super::store::TYPES.iter().filter(|t| !t.group.is_empty()).map(|t| (t.group, t.version)).collect();
            groups.dedup();
            let items: Vec<Value> = groups
                .iter()
                .map(|(g, v)| {
                    let gv = json!({"groupVersion": format!("{g}/{v}"), "version": v});
                    json!({"name": g, "versions": [gv], "preferredVersion": gv})
                })
                .collect();
            json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": items})
        }
        ["apis", g, v] => {
            let list = resources(g, v);
            if list.is_empty() {
                return Some(error(ApiError::new(404, "NotFound", "the server could not find the requested resource")));
            }
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": format!("{g}/{v}"), "resources": list})
        }
        _ => return None,
    };
    Some(reply(200, &doc))
}

fn query(req: &Request<Incoming>) -> Vec<(String, String)> {
    req.uri().query().map(|q| url::form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default()
}

fn param<'a>(q: &'a [(String, String)], k: &str) -> Option<&'a str> {
    q.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str())
}

pub async fn handle(cluster: Arc<Mutex<Cluster>>, req: Request<Incoming>) -> Result<Reply, Infallible> {
    let method = req.method().clone();
    let uri_path = req.uri().path().to_string();
    let q = query(&req);
    let auth = req.headers().get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
    let content_type = req.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    {
        let mut c = cluster.lock().unwrap();
        c.requests.push(format!("{method} {}", req.uri()));
        if let Some(token) = &c.token
            && auth.as_deref() != Some(&format!("Bearer {token}")) {
                return Ok(reply(401, &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": "Unauthorized", "reason": "Unauthorized", "code": 401})));
            }
        if let Some(rules) = &c.rbac
            && let Some((verb, group, resource, ns)) = super::rbac::attributes(&method, &uri_path, &q, req.headers().contains_key("upgrade"))
            && !super::rbac::allows(rules, &verb, &group, &resource, ns.as_deref())
        {
            c.denied.push(format!("{verb} {group}/{resource}"));
            return Ok(error(ApiError::new(403, "Forbidden", super::rbac::forbidden(&verb, &group, &resource, ns.as_deref()))));
        }
    }
    if uri_path.ends_with("/exec") && req.headers().contains_key("upgrade") {
        return Ok(super::exec::upgrade(&cluster, req, &uri_path, &q));
    }
    if uri_path.ends_with("/portforward") {
        if !req.headers().contains_key("upgrade") {
            return Ok(error(ApiError::new(400, "BadRequest", "port-forwarding needs a connection upgrade (WebSocket)")));
        }
        return Ok(super::portforward::upgrade(&cluster, req, &uri_path, &q));
    }
    if uri_path == "/version" {
        return Ok(reply(200, &json!({"major": "1", "minor": "37", "gitVersion": "v1.37.0-fake", "platform": "linux/amd64"})));
    }
    if let Some(rest) = uri_path.strip_prefix("/apis/metrics.k8s.io/v1beta1/") {
        return Ok(metrics(&cluster, rest));
    }
    if let Some(doc) = discovery(&uri_path) {
        return Ok(doc);
    }
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(error(ApiError::new(400, "BadRequest", "could not read the request body"))),
    };
    let target = match parse_path(&uri_path) {
        Ok(t) => t,
        Err(e) => return Ok(error(e)),
    };
    let verb = match (&method, &target.name) {
        (&Method::GET, None) => "list",
        (&Method::GET, Some(_)) => "get",
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, _) => "delete",
        _ => return Ok(error(ApiError::new(405, "MethodNotAllowed", format!("{method} is not supported")))),
    };
    let resource = match &target.sub {
        Some(sub) => format!("{}/{sub}", target.ty.plural),
        None => target.ty.plural.to_string(),
    };
    let mut c = cluster.lock().unwrap();
    if c.forbidden.iter().any(|(v, r)| v == verb && (*r == resource || *r == target.ty.plural)) {
        let in_ns = target.namespace.as_ref().map(|n| format!(" in the namespace \"{n}\"")).unwrap_or_default();
        let what = match &target.name {
            Some(n) => format!("{} \"{n}\" is forbidden", target.ty.qualified()),
            None => format!("{} is forbidden", target.ty.qualified()),
        };
        return Ok(error(ApiError::new(
            403,
            "Forbidden",
            format!("{what}: User \"system:serviceaccount:ops:opsctl\" cannot {verb} resource \"{resource}\" in API group \"{}\"{in_ns}", target.ty.group),
        )));
    }
    if let Some(i) = c.fail_next.iter().position(|(v, r, _)| v == verb && (*r == resource || *r == target.ty.plural)) {
        let (_, _, code) = c.fail_next.remove(i);
        let name = target.name.clone().unwrap_or_default();
        let e = match code {
            409 => ApiError::new(409, "Conflict", format!("Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again", target.ty.qualified())),
            429 => ApiError::new(429, "TooManyRequests", "the server has received too many requests and has asked us to try again later"),
            500 => ApiError::new(500, "InternalError", "Internal error occurred: etcdserver: request timed out"),
            503 => ApiError::new(503, "ServiceUnavailable", "the server is currently unable to handle the request"),
            other => ApiError::new(other, "Unknown", format!("injected {other}")),
        };
        return Ok(error(e));
    }
    let result = dispatch(&mut c, &method, &target, &q, &body, &content_type);
    Ok(match result {
        Ok(Answer::Json(code, v)) => reply(code, &v),
        Ok(Answer::Raw(b)) => Response::builder().status(200).header("content-type", "application/json").body(Full::new(Bytes::from(b))).expect("response"),
        Ok(Answer::Text(t)) => Response::builder().status(200).header("content-type", "text/plain").body(Full::new(Bytes::from(t))).expect("response"),
        Err(e) => error(e),
    })
}

enum Answer {
    Json(u16, Value),
    /// JSON already serialized (lists).
    Raw(Vec<u8>),
    Text(String),
}

fn body_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::new(400, "BadRequest", format!("the body of the request was in an unknown format: {e}")))
}

fn dispatch(c: &mut Cluster, method: &Method, t: &Target, q: &[(String, String)], body: &[u8], content_type: &str) -> Result<Answer, ApiError> {
    let ty = t.ty;
    if ty.namespaced && t.namespace.is_none() && (t.name.is_some() || *method != Method::GET) {
        return Err(ApiError::new(404, "NotFound", "the server could not find the requested resource"));
    }
    let ns = t.namespace.clone().unwrap_or_default();
    let dry_run = match param(q, "dryRun") {
        None => false,
        Some("All") => true,
        Some(other) => return Err(ApiError::new(400, "BadRequest", format!("Invalid dryRun value: {other}: supported values: \"All\""))),
    };
    let name = t.name.clone().unwrap_or_default();
    match (method.clone(), t.name.is_some(), t.sub.as_deref()) {
        (Method::GET, false, None) => {
            let labels = LabelSelector::parse(param(q, "labelSelector").unwrap_or_default()).map_err(|e| ApiError::new(400, "BadRequest", e))?;
            let fields = FieldSelector::parse(param(q, "fieldSelector").unwrap_or_default()).map_err(|e| ApiError::new(400, "BadRequest", e))?;
            let limit = param(q, "limit").and_then(|l| l.parse().ok()).filter(|l| *l > 0);
            if param(q, "watch").is_some_and(|w| w == "true" || w == "1") {
                return Err(ApiError::new(405, "MethodNotAllowed", "the fake API server does not serve watches"));
            }
            let page = c.list(ty, t.namespace.as_deref(), &labels, &fields, limit, param(q, "continue").filter(|s| !s.is_empty()))?;
            let mut meta = json!({"resourceVersion": page.resource_version});
            if let Some(token) = page.continue_token {
                meta["continue"] = json!(token);
            }
            let mut body = format!("{{\"kind\":\"{}List\",\"apiVersion\":\"{}\",\"metadata\":{meta},\"items\":[", ty.kind, ty.api_version()).into_bytes();
            for (i, item) in page.items.iter().enumerate() {
                if i > 0 {
                    body.push(b',');
                }
                body.extend_from_slice(item);
            }
            body.extend_from_slice(b"]}");
            Ok(Answer::Raw(body))
        }
        (Method::GET, true, None) => Ok(Answer::Json(200, c.get(ty, &ns, &name)?)),
        (Method::POST, false, None) => Ok(Answer::Json(201, c.create(ty, &ns, body_json(body)?, dry_run)?)),
        (Method::PUT, true, None) => Ok(Answer::Json(200, c.replace(ty, &ns, &name, body_json(body)?, false, dry_run)?)),
        (Method::PUT, true, Some("status")) => Ok(Answer::Json(200, c.replace(ty, &ns, &name, body_json(body)?, true, dry_run)?)),
        (Method::PATCH, true, sub @ (None | Some("status"))) => {
            let strategic = patch_kind(content_type)?;
            Ok(Answer::Json(200, c.patch(ty, &ns, &name, &body_json(body)?, strategic, sub.is_some(), dry_run)?))
        }
        (Method::DELETE, true, None) => {
            let obj = c.delete(ty, &ns, &name, dry_run)?;
            Ok(Answer::Json(200, obj))
        }
        (m, true, Some("scale")) if ["deployments", "statefulsets", "replicasets"].contains(&ty.plural) => scale(c, ty, &ns, &name, m, body, content_type, dry_run),
        (Method::GET, true, Some("log")) if ty.plural == "pods" => logs(c, &ns, &name, q),
        (Method::POST, true, Some("eviction")) if ty.plural == "pods" => evict(c, &ns, &name, dry_run),
        (_, true, Some("exec")) if ty.plural == "pods" => Err(ApiError::new(400, "BadRequest", "exec needs a WebSocket upgrade")),
        _ => Err(ApiError::new(405, "MethodNotAllowed", format!("{method} is not supported on this path"))),
    }
}

fn patch_kind(content_type: &str) -> Result<bool, ApiError> {
    match content_type.split(';').next().unwrap_or_default().trim() {
        "application/merge-patch+json" => Ok(false),
        "application/strategic-merge-patch+json" => Ok(true),
        other => Err(ApiError::new(415, "UnsupportedMediaType", format!("the fake API server does not support the patch type {other:?}"))),
    }
}

fn scale_of(obj: &Value) -> Value {
    let selector = obj["spec"]["selector"]["matchLabels"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect::<Vec<_>>().join(","))
        .unwrap_or_default();
    json!({
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {"name": obj["metadata"]["name"], "namespace": obj["metadata"]["namespace"], "uid": obj["metadata"]["uid"],
                     "resourceVersion": obj["metadata"]["resourceVersion"], "creationTimestamp": obj["metadata"]["creationTimestamp"]},
        "spec": {"replicas": path(obj, "spec.replicas").cloned().unwrap_or(json!(1))},
        "status": {"replicas": path(obj, "status.replicas").cloned().unwrap_or(json!(0)), "selector": selector},
    })
}

#[allow(clippy::too_many_arguments)]
fn scale(c: &mut Cluster, ty: &'static ResourceType, ns: &str, name: &str, method: Method, body: &[u8], content_type: &str, dry_run: bool) -> Result<Answer, ApiError> {
    let obj = c.get(ty, ns, name)?;
    let current = scale_of(&obj);
    let wanted = match method {
        Method::GET => return Ok(Answer::Json(200, current)),
        Method::PUT => body_json(body)?,
        Method::PATCH => {
            let mut s = current.clone();
            if patch_kind(content_type)? {
                super::patch::strategic_merge(&mut s, &body_json(body)?, "");
            } else {
                super::patch::merge(&mut s, &body_json(body)?);
            }
            s
        }
        _ => return Err(ApiError::new(405, "MethodNotAllowed", "only get, update and patch on scale")),
    };
    let replicas = path(&wanted, "spec.replicas").and_then(Value::as_i64).ok_or_else(|| ApiError::new(422, "Invalid", "Scale.autoscaling \"\" is invalid: spec.replicas: Required value"))?;
    if replicas < 0 {
        return Err(ApiError::new(422, "Invalid", format!("Scale.autoscaling \"{name}\" is invalid: spec.replicas: Invalid value: {replicas}: must be greater than or equal to 0")));
    }
    let mut next = obj.clone();
    next["spec"]["replicas"] = json!(replicas);
    match path(&wanted, "metadata.resourceVersion") {
        Some(rv) => next["metadata"]["resourceVersion"] = rv.clone(),
        None => {
            next["metadata"].as_object_mut().map(|m| m.remove("resourceVersion"));
        }
    }
    let stored = c.replace(ty, ns, name, next, false, dry_run)?;
    Ok(Answer::Json(200, scale_of(&stored)))
}

fn logs(c: &Cluster, ns: &str, name: &str, q: &[(String, String)]) -> Result<Answer, ApiError> {
    let pod = c.get(type_of("pods"), ns, name)?;
    let containers: Vec<String> = pod["spec"]["containers"].as_array().into_iter().flatten().filter_map(|c| c["name"].as_str().map(str::to_string)).collect();
    let container = match param(q, "container") {
        Some(ct) if containers.iter().any(|c| c == ct) => ct.to_string(),
        Some(ct) => return Err(ApiError::new(400, "BadRequest", format!("container {ct} is not valid for pod {name}"))),
        None if containers.len() == 1 => containers[0].clone(),
        None => {
            return Err(ApiError::new(400, "BadRequest", format!("a container name must be specified for pod {name}, choose one of: [{}]", containers.join(" "))));
        }
    };
    let lines = c.logs.get(&(ns.to_string(), name.to_string(), container)).cloned().unwrap_or_default();
    let since = param(q, "sinceSeconds").and_then(|s| s.parse::<i64>().ok()).map(|s| jiff::Timestamp::now() - jiff::SignedDuration::from_secs(s));
    let mut kept: Vec<(jiff::Timestamp, String)> = lines.into_iter().filter(|(t, _)| since.is_none_or(|s| *t >= s)).collect();
    if let Some(n) = param(q, "tailLines").and_then(|n| n.parse::<usize>().ok()) {
        let skip = kept.len().saturating_sub(n);
        kept.drain(..skip);
    }
    let stamps = param(q, "timestamps") == Some("true");
    let mut out = String::new();
    for (t, line) in kept {
        if stamps {
            out.push_str(&t.strftime("%Y-%m-%dT%H:%M:%S.%fZ").to_string());
            out.push(' ');
        }
        out.push_str(&line);
        out.push('\n');
    }
    Ok(Answer::Text(out))
}

/// The eviction subresource: refused with 429 when a PodDisruptionBudget would be violated.
fn evict(c: &mut Cluster, ns: &str, name: &str, dry_run: bool) -> Result<Answer, ApiError> {
    let pod = c.get(type_of("pods"), ns, name)?;
    let pods = c.all("pods", Some(ns));
    for pdb in c.all("poddisruptionbudgets", Some(ns)) {
        if !LabelSelector::object_matches(&pdb["spec"]["selector"], pod["metadata"].get("labels")) {
            continue;
        }
        let covered: Vec<&Value> = pods.iter().filter(|p| LabelSelector::object_matches(&pdb["spec"]["selector"], p["metadata"].get("labels"))).collect();
        let healthy = covered.iter().filter(|p| super::controller::pod_ready(p)).count() as i64;
        // As the disruption controller: the expected count is the owning controllers'
        // replicas, not the pods that happen to exist (an evicted pod's replacement may not
        // be there yet).
        let mut owners: Vec<String> = Vec::new();
        let mut total = 0i64;
        for p in &covered {
            match p["metadata"]["ownerReferences"].as_array().and_then(|r| r.first()).and_then(|r| r["uid"].as_str()) {
                Some(uid) if !owners.iter().any(|o| o == uid) => {
                    owners.push(uid.to_string());
                    let replicas = ["replicasets", "statefulsets"]
                        .iter()
                        .flat_map(|t| c.all(t, Some(ns)))
                        .find(|o| o["metadata"]["uid"] == uid)
                        .and_then(|o| o["spec"]["replicas"].as_i64())
                        .unwrap_or(1);
                    total += replicas;
                }
                Some(_) => {}
                None => total += 1,
            }
        }
        let resolve = |v: &Value| -> Option<i64> {
            match v {
                Value::Number(n) => n.as_i64(),
                Value::String(s) => s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()).map(|p| (p * total + 99) / 100),
                _ => None,
            }
        };
        let min_available = match (pdb["spec"].get("minAvailable").and_then(resolve), pdb["spec"].get("maxUnavailable").and_then(resolve)) {
            (Some(m), _) => m,
            (None, Some(u)) => total - u,
            (None, None) => total,
        };
        let pod_healthy = super::controller::pod_ready(&pod);
        if pod_healthy && healthy - 1 < min_available {
            return Err(ApiError::new(429, "TooManyRequests", "Cannot evict pod as it would violate the pod's disruption budget."));
        }
    }
    if !dry_run {
        c.delete(type_of("pods"), ns, name, false)?;
    }
    Ok(Answer::Json(201, json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201})))
}

fn metrics(cluster: &Arc<Mutex<Cluster>>, rest: &str) -> Reply {
    let c = cluster.lock().unwrap();
    let segs: Vec<&str> = rest.trim_matches('/').split('/').collect();
    let (list, kind, ns) = match segs.as_slice() {
        ["namespaces", ns, "pods"] => (&c.pod_metrics, "PodMetricsList", Some(*ns)),
        ["pods"] => (&c.pod_metrics, "PodMetricsList", None),
        ["nodes"] => (&c.node_metrics, "NodeMetricsList", None),
        _ => return error(ApiError::new(404, "NotFound", "the server could not find the requested resource")),
    };
    match list {
        None => error(ApiError::new(404, "NotFound", "the server could not find the requested resource")),
        Some(items) => {
            let items: Vec<&Value> = items.iter().filter(|i| ns.is_none_or(|n| i["metadata"]["namespace"] == n)).collect();
            reply(200, &json!({"kind": kind, "apiVersion": "metrics.k8s.io/v1beta1", "metadata": {}, "items": items}))
        }
    }
}
