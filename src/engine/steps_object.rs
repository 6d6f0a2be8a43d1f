//! `steps` in templates: the results of the steps that have finished, read by id.
//!
//! A shared map behind a minijinja object, so building a template context is O(1) however
//! many steps have run (10,000-step runbooks stay linear). Each step's result is an object
//! too, read field by field when a template asks: recording a step (a fleet records every
//! step of every instance, most of them never read) converts nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use minijinja::value::{Enumerator, Object, ObjectRepr, Value};

use crate::kind::FinishedSteps;
use crate::report::{Status, StepReport};
use crate::vocab::StepSummary;

#[derive(Debug, Default)]
pub struct StepsObject {
    results: Mutex<HashMap<String, Arc<Record>>>,
}

/// The fields every step has, before its kind's outputs.
const COMMON: [&str; 5] = ["status", "failed", "message", "duration", "attempts"];

/// One step's result as templates read it: `status`, `failed`, `message`, `duration`
/// (seconds), `attempts`, its kind's outputs (which win over the common fields of the same
/// name), and for a `for_each` step `items`, one result per item.
#[derive(Debug)]
struct Record {
    status: Status,
    message: String,
    duration: f64,
    attempts: u32,
    outputs: serde_json::Map<String, serde_json::Value>,
    items: Option<Vec<Arc<Record>>>,
}

impl Record {
    fn of(report: &StepReport) -> Record {
        Record {
            status: report.status,
            message: report.message.clone(),
            duration: report.duration_ms / 1000.0,
            attempts: report.attempts,
            outputs: report.outputs.clone(),
            items: None,
        }
    }

    fn field(&self, key: &str) -> Option<Value> {
        if let Some(v) = self.outputs.get(key) {
            return Some(Value::from(minijinja::value::Serde(v)));
        }
        Some(match key {
            "status" => Value::from(self.status.as_str()),
            "failed" => Value::from(self.status == Status::Failed),
            "message" => Value::from(self.message.as_str()),
            "duration" => Value::from(self.duration),
            "attempts" => Value::from(self.attempts),
            "items" => Value::from(self.items.as_ref()?.iter().map(|r| Value::from_dyn_object(r.clone())).collect::<Vec<_>>()),
            _ => return None,
        })
    }

    fn keys(&self) -> Vec<&str> {
        let mut keys: Vec<&str> = COMMON.to_vec();
        if self.items.is_some() {
            keys.push("items");
        }
        for k in self.outputs.keys() {
            if !keys.contains(&k.as_str()) {
                keys.push(k);
            }
        }
        keys
    }

    /// The list output `name` of this step, or of each of its items.
    fn list(&self, name: &str, out: &mut Vec<serde_json::Value>) {
        match &self.items {
            Some(items) => items.iter().for_each(|i| i.list(name, out)),
            None => {
                if let Some(list) = self.outputs.get(name).and_then(|l| l.as_array()) {
                    out.extend(list.iter().cloned());
                }
            }
        }
    }
}

impl Object for Record {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.field(key.as_str()?)
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(self.keys().into_iter().map(Value::from).collect())
    }
}

impl StepsObject {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Record>>> {
        self.results.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a step: the common outputs plus its kind's.
    pub fn insert(&self, id: &str, report: &StepReport) {
        self.map().insert(id.to_string(), Arc::new(Record::of(report)));
    }

    /// Records a step that did not run, with why.
    pub fn insert_skipped(&self, id: &str, message: String) {
        let record = Record { status: Status::Skipped, message, duration: 0.0, attempts: 0, outputs: serde_json::Map::new(), items: None };
        self.map().insert(id.to_string(), Arc::new(record));
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
        let record = Record {
            status: worst,
            message: format!("{} items, {failed} failed", reports.len()),
            duration: reports.iter().map(|r| r.duration_ms).fold(0.0, f64::max) / 1000.0,
            attempts: reports.iter().map(|r| r.attempts).max().unwrap_or(0),
            outputs: serde_json::Map::new(),
            items: Some(reports.iter().map(|r| Arc::new(Record::of(r))).collect()),
        };
        self.map().insert(id.to_string(), Arc::new(record));
    }
}

impl FinishedSteps for StepsObject {
    fn collect(&self, name: &str) -> Vec<serde_json::Value> {
        let map = self.map();
        let mut ids: Vec<&String> = map.keys().collect();
        ids.sort();
        let mut out = Vec::new();
        for id in ids {
            map[id].list(name, &mut out);
        }
        out
    }

    fn summaries(&self) -> Vec<StepSummary> {
        let mut out: Vec<StepSummary> = self
            .map()
            .iter()
            .map(|(id, r)| StepSummary { id: id.clone(), status: r.status.as_str().to_string(), duration_secs: r.duration })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }
}

impl Object for StepsObject {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.map().get(key.as_str()?).map(|r| Value::from_dyn_object(r.clone()))
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        let keys: Vec<Value> = self.map().keys().map(|k| Value::from(k.as_str())).collect();
        Enumerator::Iter(Box::new(keys.into_iter()))
    }
}
