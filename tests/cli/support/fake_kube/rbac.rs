//! RBAC as the API server enforces it, for the rules of the Roles and ClusterRoles given to
//! the fake (all bound to the fake's one token): a request is allowed when a rule grants its
//! verb on its API group and resource (`pods/log` for a subresource) — a Role's only in
//! its namespace, a ClusterRole's anywhere — and refused with the API server's 403
//! otherwise. Discovery (`/api`, `/apis`, `/version`) is open to every authenticated user,
//! as `system:discovery` makes it.

use serde_json::Value;

#[derive(Clone, Debug)]
pub struct Rule {
    /// The Role's namespace; `None` for a ClusterRole.
    pub namespace: Option<String>,
    pub groups: Vec<String>,
    pub resources: Vec<String>,
    pub verbs: Vec<String>,
}

/// The rules of every Role and ClusterRole in a multi-document YAML (bindings and other
/// kinds are skipped), read with opsctl's own YAML reader.
pub fn rules_of(yaml: &str) -> Vec<Rule> {
    let mut out = Vec::new();
    for doc in yaml.split("\n---\n") {
        let file = opsctl::source::SourceFile::new("rbac.yaml", doc);
        let node = opsctl::yaml::parse(&file).unwrap_or_else(|e| panic!("RBAC YAML: {e}"));
        let v: Value = opsctl::yaml::de::from_node(&node, opsctl::yaml::de::Mode::Strict).unwrap_or_else(|e| panic!("RBAC YAML: {}", e.message));
        let namespace = match v["kind"].as_str() {
            Some("Role") => Some(v["metadata"]["namespace"].as_str().unwrap_or("default").to_string()),
            Some("ClusterRole") => None,
            _ => continue,
        };
        let strings = |x: &Value| x.as_array().into_iter().flatten().filter_map(|s| s.as_str().map(str::to_string)).collect::<Vec<_>>();
        for r in v["rules"].as_array().into_iter().flatten() {
            out.push(Rule { namespace: namespace.clone(), groups: strings(&r["apiGroups"]), resources: strings(&r["resources"]), verbs: strings(&r["verbs"]) });
        }
    }
    out
}

/// What a request asks for: (verb, group, resource, namespace), or `None` for discovery.
pub fn attributes(method: &hyper::Method, path: &str, query: &[(String, String)], upgrade: bool) -> Option<(String, String, String, Option<String>)> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match segs.as_slice() {
        ["api", _v, rest @ ..] if !rest.is_empty() => ("", rest),
        ["apis", g, _v, rest @ ..] if !rest.is_empty() => (*g, rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest),
        _ => (None, rest),
    };
    let (resource, named) = match rest {
        [plural] => (plural.to_string(), false),
        [plural, _name] => (plural.to_string(), true),
        [plural, _name, sub] => (format!("{plural}/{sub}"), true),
        _ => return None,
    };
    let watch = query.iter().any(|(k, v)| k == "watch" && (v == "true" || v == "1"));
    let verb = match *method {
        // exec, attach and port-forward over WebSocket: `create` on the subresource.
        hyper::Method::GET if upgrade => "create",
        hyper::Method::GET if watch => "watch",
        hyper::Method::GET if named => "get",
        hyper::Method::GET => "list",
        hyper::Method::POST => "create",
        hyper::Method::PUT => "update",
        hyper::Method::PATCH => "patch",
        hyper::Method::DELETE => "delete",
        _ => "unknown",
    };
    Some((verb.to_string(), group.to_string(), resource, namespace))
}

/// Whether the rules allow the request.
pub fn allows(rules: &[Rule], verb: &str, group: &str, resource: &str, namespace: Option<&str>) -> bool {
    let any = |list: &[String], x: &str| list.iter().any(|l| l == "*" || l == x);
    rules.iter().any(|r| {
        let scope = match (&r.namespace, namespace) {
            (None, _) => true,
            (Some(rn), Some(n)) => rn == n,
            (Some(_), None) => false,
        };
        scope && any(&r.verbs, verb) && any(&r.groups, group) && any(&r.resources, resource)
    })
}

/// The API server's message for a refused request.
pub fn forbidden(verb: &str, group: &str, resource: &str, namespace: Option<&str>) -> String {
    let in_ns = namespace.map(|n| format!(" in the namespace \"{n}\"")).unwrap_or_default();
    let scope = if namespace.is_some() { "" } else { " at the cluster scope" };
    format!("{resource} is forbidden: User \"system:serviceaccount:ops:opsctl\" cannot {verb} resource \"{resource}\" in API group \"{group}\"{in_ns}{scope}")
}
