//! `k8s.secret_rotate`: new values for keys of a Secret when credentials rotate, the
//! previous Secret kept for rollback, the workloads that read it restarted. Values are
//! never printed: they are registered with the scrubber the moment they exist.
//!
//! The previous data (every key) is copied first to the Secret `<name>-opsctl-previous`
//! (annotated with the run and the keys changed); `rollback: true` copies it back.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret as KubeSecret;
use k8s_openapi::ByteString;
use kube::api::{ObjectMeta, PostParams};
use schemars::JsonSchema;
use serde::Deserialize;

use super::{Kube, Target, client, valid_name};
use crate::helpers::random::{Charset, random_value};
use crate::kind::{StepContext, StepKind};
use crate::secret::SecretRef;
use crate::vocab::{Effect, ErrorClass, Outcome, Output, StepError};

/// Where a key's new value comes from.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum NewValue {
    /// Generated from the OS CSPRNG.
    Generate { generate: Generate },
    /// Taken from a secret reference (`{ env: VAR }`, `{ file: PATH }`).
    From(SecretRef),
}

#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Generate {
    /// Characters. Default 32.
    #[serde(default = "thirty_two")]
    pub length: usize,
    /// `alphanumeric` (default), `hex` or `base64url`.
    #[serde(default)]
    pub charset: Charset,
}

fn thirty_two() -> usize {
    32
}

/// Sets keys of a Secret, keeping the previous ones for rollback.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretRotate {
    /// The Secret's name.
    pub name: String,
    /// key → `{ generate: { length: 32 } }` or a secret reference. Not with `rollback`.
    #[serde(default)]
    pub keys: BTreeMap<String, NewValue>,
    /// One key to give a generated value (`length` characters, default 32), instead of `keys`.
    #[serde(default)]
    pub key: Option<String>,
    /// The length of `key`'s generated value. Default 32.
    #[serde(default)]
    pub length: Option<usize>,
    /// Put the previous values back (from `<name>-opsctl-previous`).
    #[serde(default)]
    pub rollback: bool,
    /// Workloads to restart afterwards so they read the new values (`deployment/api`).
    #[serde(default)]
    pub restart: Vec<String>,
}

pub fn backup_name(name: &str) -> String {
    format!("{name}-opsctl-previous")
}

impl SecretRotate {
    /// `keys`, with `key` added as a generated value.
    fn keys(&self) -> BTreeMap<String, NewValue> {
        let mut all = self.keys.clone();
        if let Some(k) = &self.key {
            all.insert(k.clone(), NewValue::Generate { generate: Generate { length: self.length.unwrap_or(32), charset: Charset::default() } });
        }
        all
    }

    async fn current(&self, kube: &Kube) -> Result<KubeSecret, StepError> {
        kube.api::<KubeSecret>().get(&self.name).await.map_err(|e| kube.error(e, &format!("secret {}", self.name)))
    }

    fn values(&self) -> Result<BTreeMap<String, crate::secret::Secret>, StepError> {
        let mut out = BTreeMap::new();
        for (k, v) in &self.keys() {
            let value = match v {
                NewValue::Generate { generate } => crate::secret::Secret::new(random_value(generate.length, generate.charset)?),
                NewValue::From(r) => r.resolve().map_err(|e| StepError::invalid(format!("key {k}: {e}")))?,
            };
            crate::secret::register(value.expose());
            out.insert(k.clone(), value);
        }
        Ok(out)
    }

    async fn restart(&self, ctx: &StepContext, kube: &Kube) -> Result<Vec<String>, StepError> {
        let mut done = Vec::new();
        for t in &self.restart {
            let target = Target::parse(t).map_err(StepError::invalid)?;
            let cause = super::rollout::change_cause(ctx, &format!("secret {} rotated", self.name));
            super::rollout::restart(kube, &target, Some(cause), false).await?;
            done.push(target.to_string());
        }
        Ok(done)
    }
}

impl StepKind for SecretRotate {
    const NAME: &'static str = "k8s.secret_rotate";
    const PERMISSIONS: &'static [crate::vocab::Permission] = {
        use crate::vocab::*;
        &[kube("", "secrets", &["get", "create", "update"]), kube("apps", "deployments", &["get", "patch"]), kube("apps", "statefulsets", &["get", "patch"]), kube("apps", "replicasets", &["list"]), kube("", "pods", &["list"])]
    };
    const SUMMARY: &'static str = "set keys of a Secret (generated or from a secret reference), the previous Secret kept for rollback, workloads restarted; values never printed";
    const EFFECT: Effect = Effect::Mutate;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "keys", ty: "list", help: "the keys set (names only)" },
        Output { name: "backup", ty: "string", help: "the Secret holding the previous values" },
        Output { name: "restarted", ty: "list", help: "workloads restarted" },
    ];

    fn check(&self) -> Result<(), String> {
        if !valid_name(&self.name) {
            return Err(format!("`name` `{}` is not a valid Secret name", self.name));
        }
        if self.key.is_some() && self.keys.contains_key(self.key.as_deref().unwrap_or_default()) {
            return Err("`key` is also in `keys`; give it once".into());
        }
        if self.length.is_some() && self.key.is_none() {
            return Err("`length` is the length of `key`'s value; give `key` too".into());
        }
        match (self.keys().is_empty(), self.rollback) {
            (true, false) => return Err("give `keys` to set (or `rollback: true`)".into()),
            (false, true) => return Err("give either `keys` or `rollback: true`, not both".into()),
            _ => {}
        }
        for (k, v) in &self.keys() {
            if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
                return Err(format!("`keys`: `{k}` is not a valid Secret key (letters, digits, `-`, `_`, `.`)"));
            }
            if let NewValue::Generate { generate } = v
                && !(8..=4096).contains(&generate.length) {
                    return Err(format!("`keys.{k}.generate.length` must be between 8 and 4096, not {}", generate.length));
                }
        }
        for t in &self.restart {
            Target::parse(t)?;
        }
        Ok(())
    }

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let kube = client(ctx).await?;
        let api = kube.api::<KubeSecret>();
        let backup = backup_name(&self.name);
        let current = self.current(&kube).await?;
        let pp = PostParams { field_manager: Some("opsctl".into()), ..PostParams::default() };
        let (keys, message) = if self.rollback {
            let saved = api.get(&backup).await.map_err(|e| match e {
                kube::Error::Api(s) if s.code == 404 => StepError::new(ErrorClass::Failed, format!("no previous values to roll back to: secret {backup} does not exist")),
                e => kube.error(e, &format!("secret {backup}")),
            })?;
            for v in saved.data.iter().flatten().map(|(_, v)| String::from_utf8_lossy(&v.0).into_owned()) {
                crate::secret::register(&v);
            }
            let mut restored = current.clone();
            restored.data = saved.data.clone();
            restored.string_data = None;
            api.replace(&self.name, &pp, &restored).await.map_err(|e| kube.error(e, &format!("secret {}", self.name)))?;
            let keys: Vec<String> = saved.data.iter().flatten().map(|(k, _)| k.clone()).collect();
            (keys, format!("secret {} rolled back to the values kept in {backup}", self.name))
        } else {
            for v in current.data.iter().flatten().map(|(_, v)| String::from_utf8_lossy(&v.0).into_owned()) {
                crate::secret::register(&v);
            }
            let values = self.values()?;
            // The previous values first: if the update fails, nothing is lost.
            let keep = KubeSecret {
                metadata: ObjectMeta {
                    name: Some(backup.clone()),
                    labels: Some(BTreeMap::from([("app.kubernetes.io/managed-by".to_string(), "opsctl".to_string())])),
                    annotations: Some(BTreeMap::from([
                        ("opsctl.io/previous-of".to_string(), self.name.clone()),
                        ("opsctl.io/run".to_string(), ctx.run.run_id.clone()),
                        ("opsctl.io/keys".to_string(), self.keys().keys().cloned().collect::<Vec<_>>().join(",")),
                    ])),
                    ..ObjectMeta::default()
                },
                data: current.data.clone(),
                type_: current.type_.clone(),
                ..KubeSecret::default()
            };
            match api.get_opt(&backup).await.map_err(|e| kube.error(e, &format!("secret {backup}")))? {
                Some(old) => {
                    let mut k = keep.clone();
                    k.metadata.resource_version = old.metadata.resource_version;
                    api.replace(&backup, &pp, &k).await
                }
                None => api.create(&pp, &keep).await,
            }
            .map_err(|e| kube.error(e, &format!("secret {backup}")))?;
            let mut next = current.clone();
            let data = next.data.get_or_insert_with(BTreeMap::new);
            for (k, v) in &values {
                data.insert(k.clone(), ByteString(v.expose().as_bytes().to_vec()));
            }
            next.string_data = None;
            api.replace(&self.name, &pp, &next).await.map_err(|e| kube.error(e, &format!("secret {}", self.name)))?;
            let keys: Vec<String> = values.keys().cloned().collect();
            (keys.clone(), format!("secret {}: new values for {} (previous values kept in {backup})", self.name, keys.join(", ")))
        };
        let restarted = self.restart(ctx, &kube).await?;
        let mut message = message;
        if !restarted.is_empty() {
            message.push_str(&format!("; restarted {}", restarted.join(", ")));
        }
        Ok(Outcome::passed(message).value(format!("{} keys", keys.len())).output("keys", keys).output("backup", backup).output("restarted", restarted))
    }

    async fn plan(&self, ctx: &StepContext) -> Result<String, StepError> {
        let kube = client(ctx).await?;
        let current = self.current(&kube).await?;
        let have: Vec<&String> = current.data.iter().flatten().map(|(k, _)| k).collect();
        let restart = if self.restart.is_empty() { String::new() } else { format!(", then restart {}", self.restart.join(", ")) };
        if self.rollback {
            let backup = backup_name(&self.name);
            return match kube.api::<KubeSecret>().get_opt(&backup).await.map_err(|e| kube.error(e, &format!("secret {backup}")))? {
                Some(_) => Ok(format!("would put back the values of secret {} kept in {backup}{restart}", self.name)),
                None => Err(StepError::new(ErrorClass::Failed, format!("no previous values to roll back to: secret {backup} does not exist"))),
            };
        }
        let lines: Vec<String> = self
            .keys()
            .iter()
            .map(|(k, v)| {
                let from = match v {
                    NewValue::Generate { generate } => format!("{} random {:?} characters", generate.length, generate.charset).to_lowercase(),
                    NewValue::From(r) => r.describe(),
                };
                format!("{k} ({}, {from})", if have.contains(&k) { "replaced" } else { "added" })
            })
            .collect();
        Ok(format!("would set keys of secret {}: {}; previous values kept in {}{restart}", self.name, lines.join(", "), backup_name(&self.name)))
    }
}
