//! `secrets.rotate`: a new value for an AWS Secrets Manager secret, staged the way
//! Secrets Manager's own rotation does it.
//!
//! 1. The new value — generated from the system's CSPRNG with a length and charset, or
//!    read from a secret reference — is put as a new version labelled `AWSPENDING`.
//! 2. `AWSCURRENT` moves to it; Secrets Manager moves `AWSPREVIOUS` to the version that
//!    was current, which is what a rollback restores.
//! 3. `AWSPENDING` is taken off, and the secret is read back to check the new version is
//!    current.
//!
//! The value is never printed: it is registered with the scrubber the moment it exists
//! (and so is the value it replaces, which a JSON secret's update reads), and messages
//! name versions, never values.

use std::collections::HashMap;

use schemars::JsonSchema;
use serde::Deserialize;

use super::{Retries, config, sdk_error, target};
use crate::kind::{StepContext, StepKind};
use crate::secret::{Secret, SecretRef};
use crate::vocab::{Effect, ErrorClass, Outcome, Output, StepError};

/// Rotate an AWS Secrets Manager secret: AWSPENDING → AWSCURRENT, previous kept as AWSPREVIOUS.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rotate {
    /// The secret's name or ARN.
    pub secret_id: String,
    /// Take the new value from here instead of generating one.
    #[serde(default)]
    pub value: Option<SecretRef>,
    /// Length of a generated value. Default 32.
    #[serde(default = "thirty_two")]
    pub length: usize,
    /// `alphanumeric` (default), `alphanumeric_symbols`, `hex`, or `custom` with `characters`.
    #[serde(default)]
    pub charset: Charset,
    /// The characters of a `custom` charset.
    #[serde(default)]
    pub characters: Option<String>,
    /// For a JSON secret (`{"username": …, "password": …}`): replace only this key.
    #[serde(default)]
    pub json_key: Option<String>,
    /// Put AWSCURRENT back on the AWSPREVIOUS version — the value before the last
    /// rotation — instead of rotating (a rotation whose consumers did not come back).
    #[serde(default)]
    pub rollback: bool,
}

fn thirty_two() -> usize {
    32
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Charset {
    #[default]
    Alphanumeric,
    AlphanumericSymbols,
    Hex,
    Custom,
}

const ALNUM: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const SYMBOLS: &str = "!#%+,-.:=?@^_~";

impl Rotate {
    fn alphabet(&self) -> Vec<char> {
        let s: String = match self.charset {
            Charset::Alphanumeric => ALNUM.into(),
            Charset::AlphanumericSymbols => format!("{ALNUM}{SYMBOLS}"),
            Charset::Hex => "0123456789abcdef".into(),
            Charset::Custom => self.characters.clone().unwrap_or_default(),
        };
        let mut chars: Vec<char> = s.chars().collect();
        chars.sort_unstable();
        chars.dedup();
        chars
    }

    fn describe_value(&self) -> String {
        match &self.value {
            Some(r) => format!("the value of {}", r.describe()),
            None => format!("a new {}-character {} value", self.length, serde_plain(self.charset)),
        }
    }

    fn new_value(&self) -> Result<Secret, StepError> {
        match &self.value {
            Some(r) => r.resolve().map_err(|e| StepError::invalid(format!("value: {e}"))),
            None => generate(&self.alphabet(), self.length).map(Secret::new),
        }
    }
}

fn serde_plain(c: Charset) -> &'static str {
    match c {
        Charset::Alphanumeric => "alphanumeric",
        Charset::AlphanumericSymbols => "alphanumeric+symbols",
        Charset::Hex => "hex",
        Charset::Custom => "custom-charset",
    }
}

/// `length` characters drawn uniformly from `alphabet` with the system's CSPRNG
/// (rejection sampling, so no character is likelier than another).
pub fn generate(alphabet: &[char], length: usize) -> Result<String, StepError> {
    let n = alphabet.len();
    if !(2..=256).contains(&n) {
        return Err(StepError::invalid("a charset needs 2–256 distinct characters"));
    }
    let limit = 256 - (256 % n);
    let mut out = String::with_capacity(length);
    let mut buf = [0u8; 64];
    while out.chars().count() < length {
        aws_lc_rs::rand::fill(&mut buf).map_err(|_| StepError::error("the system's random number generator failed"))?;
        for b in buf {
            if (b as usize) < limit && out.chars().count() < length {
                out.push(alphabet[b as usize % n]);
            }
        }
    }
    Ok(out)
}

/// A client request token (the new version's id): 32 random hex characters.
fn token() -> Result<String, StepError> {
    generate(&"0123456789abcdef".chars().collect::<Vec<_>>(), 32)
}

struct State {
    current: Option<String>,
    pending: Option<String>,
    previous: Option<String>,
}

async fn client(ctx: &StepContext) -> Result<(aws_sdk_secretsmanager::Client, aws_config::SdkConfig, Retries), StepError> {
    let c = config(ctx).await?;
    let retries = Retries::default();
    let conf = aws_sdk_secretsmanager::config::Builder::from(&c).interceptor(retries.clone()).build();
    Ok((aws_sdk_secretsmanager::Client::from_conf(conf), c, retries))
}

async fn state(client: &aws_sdk_secretsmanager::Client, config: &aws_config::SdkConfig, id: &str) -> Result<State, StepError> {
    let d = client.describe_secret().secret_id(id).send().await.map_err(|e| {
        if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) {
            StepError::new(ErrorClass::Failed, format!("secret {id} does not exist in {} (check the name and aws.region)", target(config)))
        } else {
            sdk_error(e, &format!("describing secret {id}"), config)
        }
    })?;
    let stages: HashMap<String, Vec<String>> = d.version_ids_to_stages.unwrap_or_default();
    let with = |label: &str| stages.iter().find(|(_, s)| s.iter().any(|x| x == label)).map(|(v, _)| v.clone());
    Ok(State { current: with("AWSCURRENT"), pending: with("AWSPENDING"), previous: with("AWSPREVIOUS") })
}

fn short(version: &str) -> &str {
    &version[..version.len().min(8)]
}

impl StepKind for Rotate {
    const NAME: &'static str = "secrets.rotate";
    const PERMISSIONS: &'static [crate::vocab::Permission] = {
        use crate::vocab::*;
        &[aws(&["secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue", "secretsmanager:UpdateSecretVersionStage"], AwsOn::Secrets)]
    };
    const SUMMARY: &'static str = "rotate an AWS Secrets Manager secret: new value staged AWSPENDING → AWSCURRENT, previous kept; never printed";
    const EFFECT: Effect = Effect::Mutate;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "version_id", ty: "string", help: "the new current version" },
        Output { name: "previous_version_id", ty: "string", help: "now AWSPREVIOUS (for a rollback)" },
    ];

    fn check(&self) -> Result<(), String> {
        if self.rollback {
            return if self.value.is_some() || self.json_key.is_some() { Err("`rollback: true` puts the previous version back; it takes no `value` or `json_key`".into()) } else { Ok(()) };
        }
        if self.value.is_some() {
            return Ok(());
        }
        if !(8..=4096).contains(&self.length) {
            return Err(format!("`length` is 8–4096, not {}", self.length));
        }
        match (self.charset, &self.characters) {
            (Charset::Custom, None) => Err("`charset: custom` needs `characters`".into()),
            (Charset::Custom, Some(_)) if self.alphabet().len() < 2 => Err("`characters` needs at least 2 distinct characters".into()),
            (c, Some(_)) if c != Charset::Custom => Err("`characters` goes with `charset: custom`".into()),
            _ => Ok(()),
        }
    }

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let (client, config, retries) = client(ctx).await?;
        let id = &self.secret_id;
        let before = state(&client, &config, id).await?;
        if self.rollback {
            let (Some(previous), Some(current)) = (before.previous.clone(), before.current.clone()) else {
                return Err(StepError::new(ErrorClass::Failed, format!("secret {id} has no AWSPREVIOUS version to roll back to")));
            };
            client
                .update_secret_version_stage()
                .secret_id(id)
                .version_stage("AWSCURRENT")
                .move_to_version_id(&previous)
                .remove_from_version_id(&current)
                .send()
                .await
                .map_err(|e| sdk_error(e, &format!("moving AWSCURRENT of {id} back to version {}", short(&previous)), &config))?;
            return Ok(Outcome::passed(format!("rolled {id} back: version {} is AWSCURRENT again (version {} is AWSPREVIOUS){}", short(&previous), short(&current), retries.note()))
                .value(format!("version {}", short(&previous)))
                .output("version_id", previous)
                .output("previous_version_id", current));
        }
        let new = self.new_value()?;
        let value = match &self.json_key {
            None => new.expose().to_string(),
            Some(key) => {
                let current = client
                    .get_secret_value()
                    .secret_id(id)
                    .version_stage("AWSCURRENT")
                    .send()
                    .await
                    .map_err(|e| sdk_error(e, &format!("reading secret {id}"), &config))?
                    .secret_string
                    .unwrap_or_default();
                let _old = Secret::new(current.clone());
                let mut doc: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&current)
                    .map_err(|_| StepError::invalid(format!("secret {id} is not a JSON object, so `json_key` cannot apply; drop `json_key` to replace the whole value")))?;
                if let Some(serde_json::Value::String(old)) = doc.get(key) {
                    let _old = Secret::new(old.clone());
                }
                doc.insert(key.clone(), serde_json::Value::String(new.expose().to_string()));
                let text = serde_json::to_string(&doc).map_err(|e| StepError::error(e.to_string()))?;
                let _whole = Secret::new(text.clone());
                text
            }
        };
        let token = token()?;
        let put = client
            .put_secret_value()
            .secret_id(id)
            .client_request_token(&token)
            .secret_string(value)
            .version_stages("AWSPENDING")
            .send()
            .await
            .map_err(|e| sdk_error(e, &format!("staging a new version of {id}"), &config))?;
        let version = put.version_id.unwrap_or(token);
        let mut promote = client.update_secret_version_stage().secret_id(id).version_stage("AWSCURRENT").move_to_version_id(&version);
        if let Some(cur) = &before.current {
            promote = promote.remove_from_version_id(cur);
        }
        promote.send().await.map_err(|e| {
            let mut err = sdk_error(e, &format!("promoting version {} of {id} to AWSCURRENT", short(&version)), &config);
            err.message.push_str(&format!("; the new value is staged as AWSPENDING (version {version}) and AWSCURRENT is unchanged"));
            err
        })?;
        client
            .update_secret_version_stage()
            .secret_id(id)
            .version_stage("AWSPENDING")
            .remove_from_version_id(&version)
            .send()
            .await
            .map_err(|e| sdk_error(e, &format!("removing AWSPENDING from version {} of {id}", short(&version)), &config))?;
        let after = state(&client, &config, id).await?;
        if after.current.as_deref() != Some(version.as_str()) {
            return Err(StepError::new(
                ErrorClass::Failed,
                format!("after rotating {id}, AWSCURRENT is version {}, not the new {version}", after.current.as_deref().unwrap_or("none")),
            ));
        }
        let previous = before.current.clone();
        let kept = previous.as_deref().map_or(String::new(), |p| format!("; version {} kept as AWSPREVIOUS", short(p)));
        let replaced_pending = before.pending.as_deref().map_or(String::new(), |p| format!("; replaced a leftover AWSPENDING version {}", short(p)));
        let key = self.json_key.as_deref().map_or(String::new(), |k| format!(" (key {k})"));
        Ok(Outcome::passed(format!("rotated {id}{key}: version {} is AWSCURRENT{kept}{replaced_pending}{}", short(&version), retries.note()))
            .value(format!("version {}", short(&version)))
            .output("version_id", version)
            .output("previous_version_id", previous))
    }

    async fn plan(&self, ctx: &StepContext) -> Result<String, StepError> {
        let (client, config, _) = client(ctx).await?;
        let s = state(&client, &config, &self.secret_id).await?;
        if self.rollback {
            return match (&s.previous, &s.current) {
                (Some(p), Some(c)) => Ok(format!("would move AWSCURRENT of {} back from version {} to {}", self.secret_id, short(c), short(p))),
                _ => Err(StepError::new(ErrorClass::Failed, format!("secret {} has no AWSPREVIOUS version to roll back to", self.secret_id))),
            };
        }
        let key = self.json_key.as_deref().map_or(String::new(), |k| format!(" (key {k} of its JSON)"));
        let prev = s.current.as_deref().map_or(String::new(), |c| format!("; version {} would become AWSPREVIOUS", short(c)));
        Ok(format!("would stage {} as AWSPENDING of {}{key} and promote it to AWSCURRENT{prev}", self.describe_value(), self.secret_id))
    }
}

/// The run's SDK configuration for an instance outside a step (a secret reference is read
/// before the steps run): kept in `resources` like a step's.
async fn config_in(instance: &crate::instance::Instance, resources: &crate::kind::Resources) -> Result<aws_config::SdkConfig, String> {
    let settings = instance.aws.clone().ok_or_else(|| format!("instance {} has no `aws:` settings to read Secrets Manager with", instance.name))?;
    Ok(resources.keyed::<super::SdkConfigCell>(&crate::kind::context::settings_key(&settings)).0.get_or_init(|| async move { super::load(&settings).await }).await.clone())
}

/// `NAME[:STAGE][#KEY]`: a Secrets Manager secret's value, or a key of its JSON value.
pub async fn fetch(instance: &crate::instance::Instance, resources: &crate::kind::Resources, reference: &str) -> Result<String, String> {
    let (name_stage, key) = match reference.split_once('#') {
        Some((n, k)) => (n, Some(k)),
        None => (reference, None),
    };
    let (name, stage) = match name_stage.rsplit_once(':') {
        Some((n, s)) if !name_stage.starts_with("arn:") => (n, s),
        _ => (name_stage, "AWSCURRENT"),
    };
    let config = config_in(instance, resources).await?;
    let client = aws_sdk_secretsmanager::Client::new(&config);
    let out = client.get_secret_value().secret_id(name).version_stage(stage).send().await.map_err(|e| {
        if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) {
            format!("secret {name} (stage {stage}) does not exist in {}", target(&config))
        } else {
            sdk_error(e, &format!("reading secret {name}"), &config).message
        }
    })?;
    let value = out.secret_string().ok_or_else(|| format!("secret {name} holds binary data, not text"))?;
    match key {
        None => Ok(value.to_string()),
        Some(k) => {
            let doc: serde_json::Value = serde_json::from_str(value).map_err(|_| format!("secret {name} is not JSON, so it has no key {k}"))?;
            match doc.get(k) {
                Some(serde_json::Value::String(v)) => Ok(v.clone()),
                Some(serde_json::Value::Null) | None => {
                    let keys: Vec<&str> = doc.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default();
                    Err(format!("secret {name} has no key {k}; its keys: {}", keys.join(", ")))
                }
                Some(other) => Ok(other.to_string()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_values_use_only_the_charset_and_vary() {
        let hex: Vec<char> = "0123456789abcdef".chars().collect();
        let a = generate(&hex, 40).unwrap();
        let b = generate(&hex, 40).unwrap();
        assert_eq!(a.chars().count(), 40);
        assert!(a.chars().all(|c| hex.contains(&c)));
        assert_ne!(a, b);
        // Every character of a small alphabet shows up: no modulo bias toward the first ones.
        let ab: Vec<char> = "xyz".chars().collect();
        let s = generate(&ab, 3000).unwrap();
        for c in ab {
            let n = s.chars().filter(|x| *x == c).count();
            assert!((800..1200).contains(&n), "{c}: {n}");
        }
        assert!(generate(&['a'], 10).is_err());
    }
}
