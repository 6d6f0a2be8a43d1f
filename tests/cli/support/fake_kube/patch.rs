//! JSON merge patch (RFC 7386) and strategic merge patch for the fields opsctl patches:
//! lists of containers, env, ports, volumes and volume mounts merge by their key; other
//! lists are replaced; `null` deletes; `$patch: delete` in a list item removes it.

use serde_json::Value;

pub fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Default::default());
            }
            let t = target.as_object_mut().expect("object");
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// The merge key of a list field, by its name (as k8s-openapi's patch strategies say).
fn merge_key(field: &str) -> Option<&'static str> {
    match field {
        "containers" | "initContainers" | "ephemeralContainers" | "env" | "volumes" | "imagePullSecrets" => Some("name"),
        "ports" => Some("containerPort"),
        "volumeMounts" => Some("mountPath"),
        "conditions" => Some("type"),
        _ => None,
    }
}

pub fn strategic_merge(target: &mut Value, patch: &Value, field: &str) {
    match (patch, merge_key(field)) {
        (Value::Object(p), _) => {
            if !target.is_object() {
                *target = Value::Object(Default::default());
            }
            let t = target.as_object_mut().expect("object");
            for (k, v) in p {
                if k.starts_with("$setElementOrder") || k == "$retainKeys" {
                    continue;
                }
                if v.is_null() {
                    t.remove(k);
                } else {
                    strategic_merge(t.entry(k.clone()).or_insert(Value::Null), v, k);
                }
            }
        }
        (Value::Array(items), Some(key)) => {
            let mut list = target.as_array().cloned().unwrap_or_default();
            for item in items {
                let id = item.get(key);
                let pos = id.and_then(|id| list.iter().position(|e| e.get(key) == Some(id)));
                let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
                match (pos, delete) {
                    (Some(i), true) => {
                        list.remove(i);
                    }
                    (None, true) => {}
                    (Some(i), false) => strategic_merge(&mut list[i], item, ""),
                    (None, false) => list.push(item.clone()),
                }
            }
            *target = Value::Array(list);
        }
        (other, _) => *target = other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn containers_merge_by_name_and_other_lists_are_replaced() {
        let mut t = json!({"spec": {"containers": [{"name": "a", "image": "x:1", "args": ["1"]}, {"name": "b", "image": "y:1"}]}});
        strategic_merge(&mut t, &json!({"spec": {"containers": [{"name": "b", "image": "y:2", "args": ["2"]}]}}), "");
        assert_eq!(t, json!({"spec": {"containers": [{"name": "a", "image": "x:1", "args": ["1"]}, {"name": "b", "image": "y:2", "args": ["2"]}]}}));
        let mut m = t.clone();
        merge(&mut m, &json!({"spec": {"containers": [{"name": "c"}]}}));
        assert_eq!(m, json!({"spec": {"containers": [{"name": "c"}]}}));
    }
}
