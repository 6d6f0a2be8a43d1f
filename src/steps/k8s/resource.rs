//! `k8s.resource`: any resource — custom ones included — held to expectations on its fields,
//! its conditions and the age of a timestamp: the generic "assert a resource property" step.
//! Argo CD Applications (Healthy, Synced), Crossplane resources (Ready, Synced), Velero
//! backups (the newest Completed within a day), cert-manager Certificates (Ready) all fit it.
//!
//! The kind is found through the API server's discovery (`/apis/GROUP/VERSION`), so a kind
//! whose CRD is not installed is said so, and its scope (namespaced or not) is the server's.

use kube::api::{Api, DynamicObject, GroupVersionKind};
use kube::discovery::Scope;
use serde_json::Value;

use super::health::list_examples;
use super::settings::ResourceCheck;
use super::{check_selector, client};
use crate::kind::{StepContext, StepKind};
use crate::vocab::{Effect, Outcome, Output, StepError, Verdict};

/// The step's parameters are an inventory entry's: see [`ResourceCheck`].
pub type Resource = ResourceCheck;

/// The value at a dotted path (`status.health.status`; a number indexes a list).
pub fn field<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, part| match v {
        Value::Array(items) => part.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => v.get(part),
    })
}

/// Whether `actual` is what `expected` says: equal (text and numbers compared as text when
/// their types differ), or one of a list.
fn matches(actual: &Value, expected: &Value) -> bool {
    match expected {
        Value::Array(any) => any.iter().any(|e| matches(actual, e)),
        Value::String(e) => match actual {
            Value::String(a) => a == e,
            Value::Null => false,
            Value::Number(n) => e.parse::<f64>().ok().zip(n.as_f64()).is_some_and(|(a, b)| a == b),
            Value::Bool(b) => e == if *b { "true" } else { "false" },
            _ => false,
        },
        Value::Number(e) => actual.as_f64().is_some_and(|a| Some(a) == e.as_f64()) || actual.as_str().is_some_and(|a| a == e.to_string()),
        other => actual == other,
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// What is wrong with one object, in words; empty when nothing is.
fn problems(check: &ResourceCheck, obj: &Value, now: jiff::Timestamp) -> Vec<String> {
    let mut out = Vec::new();
    for (path, expected) in &check.expect {
        match field(obj, path) {
            None | Some(Value::Null) => out.push(format!("{path} is not set (expected {})", show(expected))),
            Some(actual) if !matches(actual, expected) => out.push(format!("{path} is {}, expected {}", show(actual), show(expected))),
            Some(_) => {}
        }
    }
    let conditions = field(obj, "status.conditions").and_then(Value::as_array).cloned().unwrap_or_default();
    for c in &check.conditions {
        let (ty, want) = c.split_once('=').unwrap_or((c.as_str(), "True"));
        match conditions.iter().find(|x| x["type"] == ty) {
            None => out.push(format!("has no {ty} condition")),
            Some(x) if x["status"] != want => {
                let why: Vec<String> = ["reason", "message"].iter().filter_map(|k| x[*k].as_str().filter(|s| !s.is_empty()).map(str::to_string)).collect();
                let why = if why.is_empty() { String::new() } else { format!(" ({})", why.join(": ")) };
                out.push(format!("{ty} is {}{why}", x["status"].as_str().unwrap_or("unknown")));
            }
            Some(_) => {}
        }
    }
    if let (Some(path), Some(max)) = (&check.age_field, &check.max_age) {
        match field(obj, path).and_then(Value::as_str).map(|t| t.parse::<jiff::Timestamp>()) {
            None => out.push(format!("{path} is not set")),
            Some(Err(_)) => out.push(format!("{path} is not a timestamp")),
            Some(Ok(t)) => {
                let age = (now.as_second() - t.as_second()).max(0) as u64;
                if age > max.std().as_secs() {
                    out.push(format!("{path} is {} old (max {max})", crate::duration::age(age as i64)));
                }
            }
        }
    }
    out
}

fn check_params(r: &ResourceCheck) -> Result<(), String> {
    let templated = |s: &str| crate::yaml::de::is_template(s);
    if !templated(&r.api_version) && (r.api_version.is_empty() || r.api_version.matches('/').count() > 1) {
        return Err(format!("`api_version` `{}` is `group/version` (`argoproj.io/v1alpha1`) or `v1`", r.api_version));
    }
    if r.kind.is_empty() {
        return Err("`kind` is empty".into());
    }
    if r.name.is_some() && r.selector.is_some() {
        return Err("give `name` or `selector`, not both".into());
    }
    if let Some(s) = r.selector.as_deref().filter(|s| !templated(s)) {
        check_selector(s)?;
    }
    for c in &r.conditions {
        if !templated(c) && c.split_once('=').is_some_and(|(t, s)| t.is_empty() || s.is_empty()) {
            return Err(format!("`conditions`: `{c}` is `Type=Status` (`Ready=True`) or `Type`"));
        }
    }
    if r.age_field.is_some() != r.max_age.is_some() {
        return Err("`age_field` and `max_age` go together: the timestamp field and how old it may be".into());
    }
    Ok(())
}

impl StepKind for ResourceCheck {
    const NAME: &'static str = "k8s.resource";
    const SUMMARY: &'static str = "any resource by apiVersion/kind (custom ones found through discovery), by name or selector: dotted fields, conditions and a timestamp's age held to expectations";
    const EFFECT: Effect = Effect::Read;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "total", ty: "int", help: "resources judged" },
        Output { name: "failing", ty: "list", help: "names of those not as expected" },
        Output { name: "items", ty: "list", help: "per resource: name, namespace, problems" },
    ];

    fn check(&self) -> Result<(), String> {
        check_params(self)
    }

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let kube = client(ctx).await?;
        let (group, version) = self.api_version.rsplit_once('/').unwrap_or(("", self.api_version.as_str()));
        let gvk = GroupVersionKind::gvk(group, version, &self.kind);
        let what = format!("{} {}", self.api_version, self.kind);
        let (ar, caps) = kube::discovery::pinned_kind(&kube.client, &gvk).await.map_err(|e| match &e {
            kube::Error::Api(s) if s.code == 404 => StepError::invalid(format!("the API server does not serve {} (is its CRD installed?)", self.api_version)),
            kube::Error::Discovery(_) => {
                StepError::invalid(format!("the API server does not serve {what} (is its CRD installed? check `kind` and `api_version`)"))
            }
            _ => kube.error(e, &format!("discovering {what}")),
        })?;
        let namespaced = caps.scope == Scope::Namespaced;
        let ns = self.namespace.clone().unwrap_or_else(|| kube.namespace.clone());
        let api: Api<DynamicObject> = if namespaced { Api::namespaced_with(kube.client.clone(), &ns, &ar) } else { Api::all_with(kube.client.clone(), &ar) };
        let place = if namespaced { format!(" in namespace {ns}") } else { String::new() };
        let mut objects: Vec<Value> = match &self.name {
            Some(name) => match api.get_opt(name).await.map_err(|e| kube.error(e, &format!("{} {name}", self.kind)))? {
                Some(o) => vec![serde_json::to_value(o).unwrap_or_default()],
                None => Vec::new(),
            },
            None => {
                let list = api.list(&super::list_params(self.selector.as_deref())).await.map_err(|e| kube.error(e, &format!("{} list", self.kind)))?;
                list.items.into_iter().map(|o| serde_json::to_value(o).unwrap_or_default()).collect()
            }
        };
        if self.newest {
            objects.sort_by_key(|o| std::cmp::Reverse(field(o, "metadata.creationTimestamp").and_then(Value::as_str).unwrap_or_default().to_string()));
            objects.truncate(1);
        }
        let subject = match (&self.name, &self.selector) {
            (Some(n), _) => format!("{} {n}{place}", self.kind),
            (None, Some(s)) => format!("{} matching {s}{place}", self.kind),
            (None, None) => format!("{}{place}", self.kind),
        };
        if objects.is_empty() {
            let verdict = self.on_empty.verdict();
            let msg = match &self.name {
                Some(_) => format!("{subject} does not exist"),
                None => format!("no {subject}"),
            };
            return Ok(Outcome::new(verdict, msg).value("0").output("total", 0).output("failing", Vec::<String>::new()).output("items", Vec::<Value>::new()));
        }
        let now = jiff::Timestamp::now();
        let mut failing = Vec::new();
        let mut described = Vec::new();
        let mut items = Vec::new();
        for o in &objects {
            let name = field(o, "metadata.name").and_then(Value::as_str).unwrap_or_default().to_string();
            let p = problems(self, o, now);
            if !p.is_empty() {
                failing.push(name.clone());
                described.push(format!("{name}: {}", p.join(", ")));
            }
            items.push(serde_json::json!({ "name": name, "namespace": field(o, "metadata.namespace"), "problems": p }));
        }
        let total = objects.len();
        let ok = total - failing.len();
        let verdict = if failing.is_empty() { Verdict::Passed } else { Verdict::Failed };
        let message = if failing.is_empty() {
            let mut what: Vec<String> = self.expect.iter().map(|(k, v)| format!("{k} {}", show(v))).collect();
            what.extend(self.conditions.iter().cloned());
            if let (Some(f), Some(m)) = (&self.age_field, &self.max_age) {
                what.push(format!("{f} within {m}"));
            }
            let how = if what.is_empty() { "exists".to_string() } else { format!("as expected: {}", what.join(", ")) };
            format!(
                "{}{subject} {how}",
                if self.newest {
                    "the newest "
                } else if total > 1 {
                    "every "
                } else {
                    ""
                }
            )
        } else {
            format!("{ok}/{total} {subject} as expected; {}", list_examples(&described, 5))
        };
        Ok(Outcome::new(verdict, message).value(format!("{ok}/{total}")).output("total", total).output("failing", failing).output("items", items))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_conditions_and_ages_are_judged() {
        let obj = json!({"metadata": {"name": "app"}, "status": {
            "health": {"status": "Degraded"}, "sync": {"status": "Synced"}, "replicas": 3,
            "conditions": [{"type": "Ready", "status": "False", "reason": "ReconcileError", "message": "cannot connect"}],
            "completionTimestamp": "2026-11-27T00:00:00Z"}});
        let check = ResourceCheck {
            expect: [
                ("status.health.status".to_string(), json!("Healthy")),
                ("status.sync.status".to_string(), json!(["Synced", "Unknown"])),
                ("status.replicas".to_string(), json!("3")),
                ("status.missing".to_string(), json!("x")),
            ]
            .into_iter()
            .collect(),
            conditions: vec!["Ready=True".into(), "Synced".into()],
            age_field: Some("status.completionTimestamp".into()),
            max_age: Some(crate::duration::Duration::from_secs(26 * 3600)),
            ..ResourceCheck::default()
        };
        let now: jiff::Timestamp = "2026-11-30T00:00:00Z".parse().unwrap();
        assert_eq!(
            problems(&check, &obj, now),
            [
                "status.health.status is Degraded, expected Healthy",
                "status.missing is not set (expected x)",
                "Ready is False (ReconcileError: cannot connect)",
                "has no Synced condition",
                "status.completionTimestamp is 3d old (max 1d2h)",
            ]
        );
        assert_eq!(field(&json!({"a": [{"b": 1}]}), "a.0.b"), Some(&json!(1)));
    }
}
