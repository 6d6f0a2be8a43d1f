//! `compose.stats`: CPU and memory use per service, like `docker stats --no-stream`.

use schemars::JsonSchema;
use serde::Deserialize;

use super::project;
use crate::helpers::threshold::{Limits, check_percent, percent};
use crate::kind::{StepContext, StepKind};
use crate::units::human_bytes;
use crate::vocab::{Effect, Outcome, Output, StepError, Verdict};

/// CPU % and memory % of each service's running containers (the highest per service)
/// against thresholds.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Stats {
    /// Which services. Default: all.
    #[serde(default)]
    pub services: Vec<String>,
    /// Warn above this CPU % (100 = one core).
    #[serde(default)]
    pub warn_cpu: Option<f64>,
    /// Fail above this CPU %.
    #[serde(default)]
    pub fail_cpu: Option<f64>,
    /// Warn above this % of the container's memory limit.
    #[serde(default = "warn_mem")]
    pub warn_memory: Option<f64>,
    /// Fail above this % of the memory limit.
    #[serde(default = "fail_mem")]
    pub fail_memory: Option<f64>,
}

fn warn_mem() -> Option<f64> {
    Some(85.0)
}
fn fail_mem() -> Option<f64> {
    Some(95.0)
}

/// CPU % as `docker stats` computes it, from one stats sample.
pub fn cpu_percent(s: &serde_json::Value) -> f64 {
    let cpu = s["cpu_stats"]["cpu_usage"]["total_usage"].as_f64().unwrap_or(0.0);
    let pre = s["precpu_stats"]["cpu_usage"]["total_usage"].as_f64().unwrap_or(0.0);
    let sys = s["cpu_stats"]["system_cpu_usage"].as_f64().unwrap_or(0.0);
    let presys = s["precpu_stats"]["system_cpu_usage"].as_f64().unwrap_or(0.0);
    let online = s["cpu_stats"]["online_cpus"]
        .as_f64()
        .or_else(|| s["cpu_stats"]["cpu_usage"]["percpu_usage"].as_array().map(|a| a.len() as f64))
        .unwrap_or(1.0);
    let (dc, ds) = (cpu - pre, sys - presys);
    if dc > 0.0 && ds > 0.0 { dc / ds * online * 100.0 } else { 0.0 }
}

/// Memory in use (without page cache) and the limit, as `docker stats` shows them.
pub fn memory(s: &serde_json::Value) -> (f64, f64) {
    let m = &s["memory_stats"];
    let usage = m["usage"].as_f64().unwrap_or(0.0);
    let cache = m["stats"]["inactive_file"].as_f64().or_else(|| m["stats"]["total_inactive_file"].as_f64()).or_else(|| m["stats"]["cache"].as_f64()).unwrap_or(0.0);
    ((usage - cache).max(0.0), m["limit"].as_f64().unwrap_or(0.0))
}

impl StepKind for Stats {
    const NAME: &'static str = "compose.stats";
    const SUMMARY: &'static str = "CPU % and memory % per service against thresholds (docker stats --no-stream)";
    const EFFECT: Effect = Effect::Read;
    const OUTPUTS: &'static [Output] = &[Output { name: "services", ty: "map", help: "per service: cpu_percent, memory_percent, memory_bytes (highest container)" }];

    fn check(&self) -> Result<(), String> {
        check_percent("warn_memory", self.warn_memory)?;
        check_percent("fail_memory", self.fail_memory)?;
        self.cpu().check_order("warn_cpu", "fail_cpu")?;
        self.mem().check_order("warn_memory", "fail_memory")
    }

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let (project, docker) = project(ctx)?;
        let services = project.selected(&self.services)?;
        let containers: Vec<_> = docker.project_containers(&project.name).await?.into_iter().filter(|c| c.running() && services.contains(&c.service)).collect();
        // stream=false without one-shot: the engine samples twice, so CPU % is meaningful.
        let samples = futures_util::future::join_all(containers.iter().map(|c| { let docker = &docker; async move { docker.get(&format!("/containers/{}/stats?stream=false", c.id), "reading stats").await } })).await;
        let mut per: std::collections::BTreeMap<String, (f64, f64, f64)> = std::collections::BTreeMap::new();
        for (c, s) in containers.iter().zip(samples) {
            let s = s?;
            let cpu = cpu_percent(&s);
            let (used, limit) = memory(&s);
            let mem_pct = if limit > 0.0 { used / limit * 100.0 } else { 0.0 };
            let e = per.entry(c.service.clone()).or_insert((0.0, 0.0, 0.0));
            *e = (e.0.max(cpu), e.1.max(mem_pct), e.2.max(used));
        }
        let mut verdict = Verdict::Passed;
        let mut parts = Vec::new();
        let mut out = serde_json::Map::new();
        for (service, (cpu, mem, bytes)) in &per {
            let v = self.cpu().verdict(*cpu).max(self.mem().verdict(*mem));
            verdict = verdict.max(v);
            parts.push(format!("{service} cpu {} mem {} ({})", percent(*cpu), percent(*mem), human_bytes(*bytes as u64)));
            out.insert(service.clone(), serde_json::json!({ "cpu_percent": (cpu * 10.0).round() / 10.0, "memory_percent": (mem * 10.0).round() / 10.0, "memory_bytes": *bytes as u64 }));
        }
        let mut thresholds = Vec::new();
        thresholds.extend(self.cpu().describe(|v| format!("cpu {}", percent(v))));
        thresholds.extend(self.mem().describe(|v| format!("mem {}", percent(v))));
        let max_cpu = per.values().map(|v| v.0).fold(0.0, f64::max);
        let max_mem = per.values().map(|v| v.1).fold(0.0, f64::max);
        Ok(Outcome::new(verdict, if parts.is_empty() { "no running containers".into() } else { parts.join("; ") })
            .value(format!("cpu {} mem {}", percent(max_cpu), percent(max_mem)))
            .threshold((!thresholds.is_empty()).then(|| thresholds.join("; ")))
            .output("services", out))
    }
}

impl Stats {
    fn cpu(&self) -> Limits {
        Limits::above(self.warn_cpu, self.fail_cpu)
    }
    fn mem(&self) -> Limits {
        Limits::above(self.warn_memory, self.fail_memory)
    }
}
