//! Secrets: values that must never be shown.
//!
//! Two defences, both always on:
//! 1. [`Secret`] has no `Display` and no `Serialize`; `Debug` prints `***`. Code that wants
//!    the value calls [`Secret::expose`], which is easy to grep for.
//! 2. Every secret value that opsctl resolves is registered with the process-wide
//!    [`scrub`] list, and every sink (terminal, logs, JSON, JUnit, history) passes its text
//!    through [`scrub`] before writing. So a secret that reaches a message anyway — an
//!    error that quotes a webhook URL, a command that echoes a token — is masked.
//!
//! Secrets are given by reference in runbooks and the inventory, never inline:
//! `{env: VAR}`, `{file: PATH}`, `{aws_secret: "team-a/db#password"}` (Secrets Manager) or
//! `{k8s_secret: "team-a/db-credentials#password"}` (a Kubernetes Secret of the instance's
//! cluster). The last two are fetched once, when a run on an instance starts (the
//! procedures ask the backends and [`provide`] the values here), so reading any reference
//! stays synchronous.

use std::borrow::Cow;
use std::fmt;
use std::path::PathBuf;
use std::sync::RwLock;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What secrets are replaced with.
pub const MASK: &str = "***";

/// Values shorter than this are not scrubbed from text (masking every `a` in a report
/// helps nobody); opsctl warns when it resolves one.
pub const MIN_SCRUB_LEN: usize = 4;

static KNOWN: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// A secret value. Cannot be displayed or serialized.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value and registers it for scrubbing.
    pub fn new(value: impl Into<String>) -> Secret {
        let value = value.into();
        register(&value);
        Secret(value)
    }

    /// The value. Use only to hand it to the thing that needs it (a header, a process).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Adds a value to the scrub list, with the escaped forms it takes in JSON and XML.
pub fn register(value: &str) {
    if value.chars().count() < MIN_SCRUB_LEN {
        if !value.is_empty() {
            tracing::warn!("a secret value is shorter than {MIN_SCRUB_LEN} characters; it cannot be masked in output");
        }
        return;
    }
    let mut forms = vec![value.to_string()];
    let json = serde_json::to_string(value).unwrap_or_default();
    let json = json[1..json.len().saturating_sub(1).max(1)].to_string();
    forms.push(json);
    forms.push(xml_escape(value));
    let mut known = KNOWN.write().unwrap_or_else(|e| e.into_inner());
    for form in forms {
        if !known.contains(&form) {
            known.push(form);
        }
    }
    // Longest first, so a secret that contains another is masked whole.
    known.sort_by_key(|s| std::cmp::Reverse(s.len()));
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&apos;")
}

/// Whether `text` holds a known secret value.
pub fn holds_secret(text: &str) -> bool {
    matches!(scrub(text), Cow::Owned(_))
}

/// Masks every known secret value in `text`.
pub fn scrub(text: &str) -> Cow<'_, str> {
    let known = KNOWN.read().unwrap_or_else(|e| e.into_inner());
    if known.is_empty() || !known.iter().any(|k| text.contains(k.as_str())) {
        return Cow::Borrowed(text);
    }
    let mut out = text.to_string();
    for k in known.iter() {
        if out.contains(k.as_str()) {
            out = out.replace(k.as_str(), MASK);
        }
    }
    Cow::Owned(out)
}

/// The most a secret file may hold.
const MAX_SECRET_FILE: u64 = 64 * 1024;

/// The error for a secret written inline; diagnostics with it do not show the source line.
pub const INLINE_SECRET: &str = "a secret is given by reference, `{ env: VAR }`, `{ file: PATH }`, `{ aws_secret: NAME#KEY }` or `{ k8s_secret: NAMESPACE/NAME#KEY }`, never inline";

/// Where a secret comes from. Never the value itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SecretRef {
    /// An environment variable's value.
    Env(String),
    /// A file's content, without its trailing newline.
    File(PathBuf),
    /// A Secrets Manager secret: `NAME` (its whole value), `NAME#KEY` (a key of its JSON
    /// value), with `:STAGE` after the name for another stage than AWSCURRENT
    /// (`team-a/db:AWSPREVIOUS#password`).
    AwsSecret(String),
    /// A key of a Kubernetes Secret in the instance's cluster: `NAMESPACE/NAME#KEY`.
    K8sSecret(String),
}

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<SecretRef, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "snake_case", deny_unknown_fields)]
        enum Reference {
            Env(String),
            File(PathBuf),
            AwsSecret(String),
            K8sSecret(String),
        }
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = SecretRef;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a secret reference: `{ env: VAR }`, `{ file: PATH }`, `{ aws_secret: NAME#KEY }` or `{ k8s_secret: NAMESPACE/NAME#KEY }`")
            }
            fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<SecretRef, E> {
                // Do not echo the value: it may be the secret itself.
                Err(E::custom(INLINE_SECRET))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<SecretRef, A::Error> {
                let r = Reference::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(match r {
                    Reference::Env(v) => SecretRef::Env(v),
                    Reference::File(p) => SecretRef::File(p),
                    Reference::AwsSecret(v) => SecretRef::AwsSecret(v),
                    Reference::K8sSecret(v) => SecretRef::K8sSecret(v),
                })
            }
        }
        d.deserialize_any(V)
    }
}

impl SecretRef {
    /// Reads the secret.
    pub fn resolve(&self) -> Result<Secret, String> {
        match self {
            SecretRef::Env(var) => match std::env::var(var) {
                Ok(v) if !v.is_empty() => Ok(Secret::new(v)),
                Ok(_) => Err(format!("environment variable {var} is empty")),
                Err(std::env::VarError::NotPresent) => Err(format!("environment variable {var} is not set")),
                Err(std::env::VarError::NotUnicode(_)) => Err(format!("environment variable {var} is not valid UTF-8")),
            },
            SecretRef::File(path) => {
                // At most 64 KiB: a secret file holds one value (`{ file: /dev/zero }` would
                // otherwise read forever).
                use std::io::Read;
                let cannot = |e: std::io::Error| format!("cannot read secret file {}: {}", path.display(), crate::error::io_reason(&e));
                let mut bytes = Vec::new();
                std::fs::File::open(path).and_then(|f| f.take(MAX_SECRET_FILE + 1).read_to_end(&mut bytes)).map_err(cannot)?;
                if bytes.len() as u64 > MAX_SECRET_FILE {
                    return Err(format!("secret file {} is larger than 64 KiB; a secret file holds one value", path.display()));
                }
                let text = String::from_utf8(bytes).map_err(|_| format!("secret file {} is not valid UTF-8", path.display()))?;
                let value = text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text);
                if value.is_empty() {
                    return Err(format!("secret file {} is empty", path.display()));
                }
                Ok(Secret::new(value))
            }
            SecretRef::AwsSecret(_) | SecretRef::K8sSecret(_) => {
                let fetched = FETCHED.read().unwrap_or_else(|e| e.into_inner());
                match fetched.get(&self.describe()) {
                    Some(Ok(v)) => Ok(Secret::new(v.clone())),
                    Some(Err(why)) => Err(format!("{}: {why}", self.describe())),
                    None => Err(format!("{} was not fetched: it is read when a run on an instance starts, and cannot be used here", self.describe())),
                }
            }
        }
    }

    /// Whether the value lives in a backend (fetched when a run starts).
    pub fn is_remote(&self) -> bool {
        matches!(self, SecretRef::AwsSecret(_) | SecretRef::K8sSecret(_))
    }

    /// `env:VAR`, `file:PATH`, `aws_secret:NAME#KEY`, `k8s_secret:NS/NAME#KEY`, for plans,
    /// reports and errors (never the value).
    pub fn describe(&self) -> String {
        match self {
            SecretRef::Env(v) => format!("env:{v}"),
            SecretRef::File(p) => format!("file:{}", p.display()),
            SecretRef::AwsSecret(r) => format!("aws_secret:{r}"),
            SecretRef::K8sSecret(r) => format!("k8s_secret:{r}"),
        }
    }
}

/// Values of remote references, by their description, as fetched for the current run.
static FETCHED: RwLock<std::collections::BTreeMap<String, Result<String, String>>> = RwLock::new(std::collections::BTreeMap::new());

/// Records what a remote reference resolved to (or why it could not be), registering a
/// value with the scrubber first.
pub fn provide(reference: &SecretRef, value: Result<String, String>) {
    if let Ok(v) = &value {
        register(v);
    }
    FETCHED.write().unwrap_or_else(|e| e.into_inner()).insert(reference.describe(), value);
}

/// Whether a remote reference has been fetched already (by an earlier instance's run).
pub fn is_provided(reference: &SecretRef) -> bool {
    FETCHED.read().unwrap_or_else(|e| e.into_inner()).contains_key(&reference.describe())
}

/// Every remote reference in a JSON document (an instance's settings, serialized): objects
/// `{"aws_secret": "…"}` and `{"k8s_secret": "…"}`.
pub fn remote_refs(value: &serde_json::Value, out: &mut Vec<SecretRef>) {
    match value {
        serde_json::Value::Object(map) => {
            if map.len() == 1 {
                match map.iter().next() {
                    Some((k, serde_json::Value::String(v))) if k == "aws_secret" => out.push(SecretRef::AwsSecret(v.clone())),
                    Some((k, serde_json::Value::String(v))) if k == "k8s_secret" => out.push(SecretRef::K8sSecret(v.clone())),
                    _ => {}
                }
            }
            for v in map.values() {
                remote_refs(v, out);
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| remote_refs(v, out)),
        _ => {}
    }
}

/// A `std::io::Write` that scrubs secrets line by line; used for logs.
pub struct ScrubWriter<W: std::io::Write>(pub W);

impl<W: std::io::Write> std::io::Write for ScrubWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.0.write_all(scrub(&text).as_bytes())?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// A header value: text (may be templated), or a secret reference.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum HeaderValue {
    Text(String),
    Secret(SecretRef),
}

impl<'de> Deserialize<'de> for HeaderValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<HeaderValue, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = HeaderValue;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a header value, or a secret reference such as `{ env: API_TOKEN }`")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<HeaderValue, E> {
                Ok(HeaderValue::Text(s.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<HeaderValue, E> {
                Ok(HeaderValue::Text(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<HeaderValue, E> {
                Ok(HeaderValue::Text(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<HeaderValue, A::Error> {
                SecretRef::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(HeaderValue::Secret)
            }
        }
        d.deserialize_any(V)
    }
}

impl HeaderValue {
    /// The value to send. Secret values are registered for scrubbing when resolved.
    pub fn resolve(&self) -> Result<String, String> {
        match self {
            HeaderValue::Text(t) => Ok(t.clone()),
            HeaderValue::Secret(r) => r.resolve().map(|s| s.expose().to_string()),
        }
    }

    /// For plans: secrets as references.
    pub fn describe(&self) -> String {
        match self {
            HeaderValue::Text(t) => t.clone(),
            HeaderValue::Secret(r) => format!("<secret {}>", r.describe()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("hunter2-unit-test-secret");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(s.expose(), "hunter2-unit-test-secret");
    }

    #[test]
    fn registered_values_are_scrubbed_in_all_forms() {
        let _s = Secret::new("tok\"en<unit>&scrub");
        assert_eq!(scrub("a tok\"en<unit>&scrub b"), "a *** b");
        assert_eq!(scrub(r#"{"x":"tok\"en<unit>&scrub"}"#), r#"{"x":"***"}"#);
        assert_eq!(scrub("<m>tok&quot;en&lt;unit&gt;&amp;scrub</m>"), "<m>***</m>");
        assert_eq!(scrub("nothing here"), "nothing here");
    }

    #[test]
    fn references_resolve_from_env_and_file() {
        // SAFETY: tests in this module use a variable name nobody else reads.
        unsafe { std::env::set_var("OPSCTL_UNIT_SECRET_X", "from-env-value") };
        let s = SecretRef::Env("OPSCTL_UNIT_SECRET_X".into()).resolve().unwrap();
        assert_eq!(s.expose(), "from-env-value");
        assert_eq!(
            SecretRef::Env("OPSCTL_UNIT_SECRET_MISSING".into()).resolve().unwrap_err(),
            "environment variable OPSCTL_UNIT_SECRET_MISSING is not set"
        );
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        std::fs::write(&p, "from-file-value\n").unwrap();
        assert_eq!(SecretRef::File(p).resolve().unwrap().expose(), "from-file-value");
        assert_eq!(SecretRef::File("/dev/zero".into()).resolve().unwrap_err(), "secret file /dev/zero is larger than 64 KiB; a secret file holds one value");
        let bin = dir.path().join("bin");
        std::fs::write(&bin, b"\xff\xfe").unwrap();
        assert!(SecretRef::File(bin).resolve().unwrap_err().ends_with("is not valid UTF-8"));
    }
}
