//! `redis.info`: one `INFO`, judged the way an operator reads it — memory against
//! `maxmemory`, the keyspace hit rate, clients against `maxclients` and rejected
//! connections, evictions, persistence, replication — with every figure it judged as an
//! output.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::conn::Info;
use crate::duration::Duration;
use crate::helpers::threshold::{Limits, check_ratio, percent};
use crate::kind::{StepContext, StepKind};
use crate::units::human_bytes;
use crate::vocab::{Effect, Outcome, Output, StepError, Verdict};

/// Read `INFO` once and judge memory, hit rate, clients, persistence and replication.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RedisInfo {
    /// Warn when memory used is above this share of `maxmemory` (of the host's memory when
    /// no `maxmemory` is set). Default 0.8.
    #[serde(default = "eighty")]
    pub warn_memory_ratio: Option<f64>,
    /// Fail above this share. Default 0.95.
    #[serde(default = "ninety_five")]
    pub fail_memory_ratio: Option<f64>,
    /// Warn when the keyspace hit rate (hits / lookups since start) is below this.
    #[serde(default)]
    pub min_hit_rate: Option<f64>,
    /// Warn when connected clients are above this share of `maxclients`. Default 0.8.
    #[serde(default = "eighty")]
    pub warn_clients_ratio: Option<f64>,
    /// Fail above this share. Default 0.95.
    #[serde(default = "ninety_five")]
    pub fail_clients_ratio: Option<f64>,
    /// Fail when the last successful RDB save is older than this (`26h` for a daily save).
    #[serde(default)]
    pub max_last_save_age: Option<Duration>,
    /// On a master: fail when fewer replicas than this are connected.
    #[serde(default)]
    pub expect_replicas: Option<u32>,
    /// Fail when a replica has not acknowledged for longer than this (its `lag`).
    #[serde(default)]
    pub max_replica_lag: Option<Duration>,
}

fn eighty() -> Option<f64> {
    Some(0.8)
}
fn ninety_five() -> Option<f64> {
    Some(0.95)
}

/// One judged aspect: verdict and the words for it.
struct Part(Verdict, String);

impl RedisInfo {
    fn judge(&self, info: &Info, now: i64) -> (Vec<Part>, Map<String, Value>) {
        let mut parts = Vec::new();
        let mut out = Map::new();
        let num = |f: &str| info.num(f);

        // Memory.
        let used = num("used_memory").unwrap_or(0.0);
        let max = num("maxmemory").unwrap_or(0.0);
        let host = num("total_system_memory").unwrap_or(0.0);
        let (base, of) = if max > 0.0 { (max, "maxmemory") } else { (host, "the host's memory (no maxmemory is set)") };
        out.insert("used_memory".into(), json!(used as u64));
        out.insert("maxmemory".into(), json!(max as u64));
        if base > 0.0 {
            let ratio = used / base;
            let limits = Limits::above(self.warn_memory_ratio, self.fail_memory_ratio);
            out.insert("memory_ratio".into(), json!((ratio * 10_000.0).round() / 10_000.0));
            parts.push(Part(limits.verdict(ratio), format!("memory {} of {of} ({} of {})", percent(ratio * 100.0), human_bytes(used as u64), human_bytes(base as u64))));
        } else {
            parts.push(Part(Verdict::Warned, format!("memory {} used; neither maxmemory nor the host's memory is known", human_bytes(used as u64))));
        }

        // Keyspace hit rate.
        let (hits, misses) = (num("keyspace_hits").unwrap_or(0.0), num("keyspace_misses").unwrap_or(0.0));
        out.insert("keyspace_hits".into(), json!(hits as u64));
        out.insert("keyspace_misses".into(), json!(misses as u64));
        if hits + misses > 0.0 {
            let rate = hits / (hits + misses);
            out.insert("hit_rate".into(), json!((rate * 10_000.0).round() / 10_000.0));
            let low = self.min_hit_rate.is_some_and(|m| rate < m);
            let under = self.min_hit_rate.filter(|_| low).map(|m| format!(", below {}", percent(m * 100.0))).unwrap_or_default();
            parts.push(Part(if low { Verdict::Warned } else { Verdict::Passed }, format!("hit rate {} ({hits:.0} hits, {misses:.0} misses{under})", percent(rate * 100.0))));
        } else {
            out.insert("hit_rate".into(), Value::Null);
            parts.push(Part(Verdict::Passed, "no key lookups since start".into()));
        }

        // Clients.
        let clients = num("connected_clients").unwrap_or(0.0);
        let maxclients = num("maxclients").unwrap_or(0.0);
        out.insert("connected_clients".into(), json!(clients as u64));
        out.insert("maxclients".into(), json!(maxclients as u64));
        if maxclients > 0.0 {
            let limits = Limits::above(self.warn_clients_ratio, self.fail_clients_ratio);
            parts.push(Part(limits.verdict(clients / maxclients), format!("{clients:.0}/{maxclients:.0} clients")));
        }
        let rejected = num("rejected_connections").unwrap_or(0.0);
        out.insert("rejected_connections".into(), json!(rejected as u64));
        if rejected > 0.0 {
            parts.push(Part(Verdict::Warned, format!("{rejected:.0} connection(s) rejected since start (maxclients reached)")));
        }
        let evicted = num("evicted_keys").unwrap_or(0.0);
        out.insert("evicted_keys".into(), json!(evicted as u64));
        if evicted > 0.0 {
            let policy = info.get("maxmemory_policy").unwrap_or("?");
            parts.push(Part(Verdict::Passed, format!("{evicted:.0} key(s) evicted since start ({policy})")));
        }

        // Persistence.
        let bgsave = info.get("rdb_last_bgsave_status").unwrap_or("ok").to_string();
        let rewrite = info.get("aof_last_bgrewrite_status").unwrap_or("ok").to_string();
        let aof_write = info.get("aof_last_write_status").unwrap_or("ok").to_string();
        let aof = info.get("aof_enabled") == Some("1");
        out.insert("rdb_last_bgsave_status".into(), json!(bgsave));
        out.insert("aof_last_bgrewrite_status".into(), json!(rewrite));
        let saved = num("rdb_last_save_time").map(|t| now - t as i64);
        out.insert("last_save_age_s".into(), json!(saved));
        let mut persistence = Vec::new();
        let mut verdict = Verdict::Passed;
        if bgsave != "ok" {
            verdict = Verdict::Failed;
            persistence.push(format!("the last RDB save failed (rdb_last_bgsave_status: {bgsave})"));
        }
        if aof && (rewrite != "ok" || aof_write != "ok") {
            verdict = Verdict::Failed;
            persistence.push(format!("the AOF is failing (aof_last_bgrewrite_status: {rewrite}, aof_last_write_status: {aof_write})"));
        }
        if let (Some(max_age), Some(age)) = (self.max_last_save_age, saved) {
            let ago = crate::duration::short(std::time::Duration::from_secs(age.max(0) as u64));
            if age as f64 > max_age.std().as_secs_f64() {
                verdict = Verdict::Failed;
                persistence.push(format!("last RDB save {ago} ago (more than {max_age})"));
            } else {
                persistence.push(format!("last RDB save {ago} ago"));
            }
        }
        if persistence.is_empty() {
            persistence.push(if aof { "RDB and AOF ok".into() } else { "RDB ok".into() });
        }
        parts.push(Part(verdict, persistence.join(", ")));

        // Replication.
        let role = info.get("role").unwrap_or("?").to_string();
        out.insert("role".into(), json!(role));
        if role == "slave" {
            let link = info.get("master_link_status").unwrap_or("?").to_string();
            out.insert("master_link_status".into(), json!(link));
            let master = format!("{}:{}", info.get("master_host").unwrap_or("?"), info.get("master_port").unwrap_or("?"));
            if link == "up" {
                parts.push(Part(Verdict::Passed, format!("replica of {master}, link up")));
            } else {
                let since = info.get("master_link_down_since_seconds").map(|s| format!(" for {s}s")).unwrap_or_default();
                parts.push(Part(Verdict::Failed, format!("replica of {master}, link {link}{since}")));
            }
        } else {
            let replicas: Vec<(String, f64)> = (0..)
                .map_while(|i| info.get(&format!("slave{i}")))
                .map(|r| {
                    let field = |k: &str| r.split(',').find_map(|kv| kv.strip_prefix(&format!("{k}="))).unwrap_or("?").to_string();
                    (format!("{}:{} ({})", field("ip"), field("port"), field("state")), field("lag").parse().unwrap_or(0.0))
                })
                .collect();
            let connected = num("connected_slaves").unwrap_or(replicas.len() as f64) as u32;
            out.insert("connected_replicas".into(), json!(connected));
            let lag = replicas.iter().map(|r| r.1).fold(0.0, f64::max);
            out.insert("max_replica_lag_s".into(), json!(lag));
            let mut v = Verdict::Passed;
            let mut words = format!("{role} with {connected} replica(s)");
            if let Some(want) = self.expect_replicas {
                words = format!("{role} with {connected}/{want} replica(s)");
                if connected < want {
                    v = Verdict::Failed;
                }
            }
            if !replicas.is_empty() {
                words.push_str(&format!(": {}", replicas.iter().map(|r| format!("{} lag {}s", r.0, r.1)).collect::<Vec<_>>().join(", ")));
            }
            if let Some(max_lag) = self.max_replica_lag.filter(|m| lag > m.std().as_secs_f64()) {
                v = Verdict::Failed;
                words.push_str(&format!(" (lag above {max_lag})"));
            }
            parts.push(Part(v, words));
        }
        (parts, out)
    }
}

impl StepKind for RedisInfo {
    const NAME: &'static str = "redis.info";
    const SUMMARY: &'static str = "one INFO judged: memory vs maxmemory (or the host's), hit rate, clients vs maxclients, rejected connections, evictions, persistence, replication";
    const EFFECT: Effect = Effect::Read;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "used_memory", ty: "int", help: "bytes" },
        Output { name: "maxmemory", ty: "int", help: "bytes; 0 when not set" },
        Output { name: "memory_ratio", ty: "float", help: "used over maxmemory (or the host's memory)" },
        Output { name: "hit_rate", ty: "float", help: "hits / lookups since start; null without lookups" },
        Output { name: "keyspace_hits", ty: "int", help: "since start" },
        Output { name: "keyspace_misses", ty: "int", help: "since start" },
        Output { name: "connected_clients", ty: "int", help: "now" },
        Output { name: "maxclients", ty: "int", help: "the limit" },
        Output { name: "rejected_connections", ty: "int", help: "since start" },
        Output { name: "evicted_keys", ty: "int", help: "since start" },
        Output { name: "rdb_last_bgsave_status", ty: "string", help: "ok or err" },
        Output { name: "aof_last_bgrewrite_status", ty: "string", help: "ok or err" },
        Output { name: "last_save_age_s", ty: "int", help: "seconds since the last successful RDB save" },
        Output { name: "role", ty: "string", help: "master or slave" },
        Output { name: "connected_replicas", ty: "int", help: "on a master" },
        Output { name: "max_replica_lag_s", ty: "float", help: "on a master: the largest replica lag" },
        Output { name: "master_link_status", ty: "string", help: "on a replica: up or down" },
    ];

    fn check(&self) -> Result<(), String> {
        for (name, v) in [
            ("warn_memory_ratio", self.warn_memory_ratio),
            ("fail_memory_ratio", self.fail_memory_ratio),
            ("min_hit_rate", self.min_hit_rate),
            ("warn_clients_ratio", self.warn_clients_ratio),
            ("fail_clients_ratio", self.fail_clients_ratio),
        ] {
            check_ratio(name, v)?;
        }
        Limits::above(self.warn_memory_ratio, self.fail_memory_ratio).check_order("warn_memory_ratio", "fail_memory_ratio")?;
        Limits::above(self.warn_clients_ratio, self.fail_clients_ratio).check_order("warn_clients_ratio", "fail_clients_ratio")
    }

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let mut conn = super::connect(ctx).await?;
        let info = conn.info().await?;
        let (parts, outputs) = self.judge(&info, jiff::Timestamp::now().as_second());
        let verdict = parts.iter().map(|p| p.0).max().unwrap_or(Verdict::Passed);
        // Problems first, so the table's message column leads with them.
        let mut ordered: Vec<&Part> = parts.iter().filter(|p| p.0 > Verdict::Passed).collect();
        ordered.extend(parts.iter().filter(|p| p.0 == Verdict::Passed));
        let message = ordered.iter().map(|p| p.1.as_str()).collect::<Vec<_>>().join("; ");
        let value = outputs.get("memory_ratio").and_then(Value::as_f64).map(|r| format!("{} memory", percent(r * 100.0))).unwrap_or_default();
        let mut outcome = Outcome::new(verdict, message).value(value);
        outcome.outputs = outputs;
        Ok(outcome)
    }
}
