//! `steps` in templates: the results of the steps that have finished, read by id.
//!
//! A shared map behind a minijinja object, so building a template context is O(1) however
//! many steps have run (10,000-step runbooks stay linear).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use minijinja::value::{Enumerator, Object, Value};

use crate::kind::FinishedSteps;
use crate::report::{Status, StepReport};
use crate::vocab::StepSummary;

#[derive(Debug, Default)]
pub struct StepsObject {
    results: Mutex<HashMap<String, Value>>,
}

impl StepsObject {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Value>> {
        self.results.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn common(report: &StepReport) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        m.insert("status".into(), report.status.as_str().into());
        m.insert("failed".into(), (report.status == Status::Failed).into());
        m.insert("message".into(), report.message.clone().into());
        m.insert("duration".into(), (report.duration_ms / 1000.0).into());
        m.insert("attempts".into(), report.attempts.into());
        m
    }

    /// Records a step: the common outputs plus its kind's.
    pub fn insert(&self, id: &str, report: &StepReport) {
        let mut m = Self::common(report);
        for (k, v) in &report.outputs {
            m.insert(k.clone(), v.clone());
        }
        self.map().insert(id.to_string(), Value::from(minijinja::value::Serde(m)));
    }

    /// Records a `for_each` step: the worst status, and each item's outputs under `items`.
    pub fn insert_items(&self, id: &str, reports: &[StepReport]) {
        let worst = reports
            .iter()
            .map(|r| r.status)
            .max_by_key(|s| match s {
                Status::Failed => 4,
                Status::Warned => 3,
                Status::Passed => 2,
                Status::Planned => 1,
                Status::Skipped => 0,
            })
            .unwrap_or(Status::Skipped);
        let failed = reports.iter().filter(|r| r.status == Status::Failed).count();
        let items: Vec<serde_json::Value> = reports
            .iter()
            .map(|r| {
                let mut m = Self::common(r);
                m.extend(r.outputs.clone());
                serde_json::Value::Object(m)
            })
            .collect();
        let m = serde_json::json!({
            "status": worst.as_str(),
            "failed": failed > 0,
            "message": format!("{} items, {failed} failed", reports.len()),
            "duration": reports.iter().map(|r| r.duration_ms).fold(0.0, f64::max) / 1000.0,
            "attempts": reports.iter().map(|r| r.attempts).max().unwrap_or(0),
            "items": items,
        });
        self.map().insert(id.to_string(), Value::from(minijinja::value::Serde(m)));
    }
}

impl FinishedSteps for StepsObject {
    fn collect(&self, name: &str) -> Vec<serde_json::Value> {
        let map = self.map();
        let mut ids: Vec<&String> = map.keys().collect();
        ids.sort();
        let mut out = Vec::new();
        for id in ids {
            let v = serde_json::to_value(&map[id]).unwrap_or_default();
            let sources: Vec<&serde_json::Value> = match v.get("items").and_then(|i| i.as_array()) {
                Some(items) => items.iter().collect(),
                None => vec![&v],
            };
            for s in sources {
                if let Some(list) = s.get(name).and_then(|l| l.as_array()) {
                    out.extend(list.iter().cloned());
                }
            }
        }
        out
    }

    fn summaries(&self) -> Vec<StepSummary> {
        let mut out: Vec<StepSummary> = self
            .map()
            .iter()
            .map(|(id, v)| StepSummary {
                id: id.clone(),
                status: v.get_attr("status").ok().and_then(|s| s.as_str().map(str::to_string)).unwrap_or_default(),
                duration_secs: v.get_attr("duration").ok().and_then(|d| f64::try_from(d).ok()).unwrap_or(0.0),
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }
}

impl Object for StepsObject {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.map().get(key.as_str()?).cloned()
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        let keys: Vec<Value> = self.map().keys().map(|k| Value::from(k.as_str())).collect();
        Enumerator::Iter(Box::new(keys.into_iter()))
    }
}
