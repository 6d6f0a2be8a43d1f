//! The HTTP backend: one shared client per TLS setting, and the `http.check` step.

pub mod check;
pub mod tls;

use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ErrorClass, StepError};
use crate::secret::SecretRef;

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

/// What distinguishes one HTTP client from another.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ClientKey {
    /// A PEM file of CA certificates to trust in addition to the system's.
    pub ca_file: Option<PathBuf>,
    /// Skip certificate verification.
    pub insecure: bool,
}

/// Builds a client; the run keeps one per [`ClientKey`] so connections are reused.
pub fn build_client(key: &ClientKey) -> Result<reqwest::Client, StepError> {
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("opsctl/", env!("CARGO_PKG_VERSION")))
        .tls_info(true)
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(64);
    let mut roots = Vec::new();
    if let Some(path) = &key.ca_file {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let pem = std::fs::read(path).map_err(|e| {
            StepError::invalid(format!("cannot read ca_file {}: {}", path.display(), crate::error::io_reason(&e)))
        })?;
        roots = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| StepError::invalid(format!("ca_file {} holds no valid PEM certificate: {e}", path.display())))?;
        if roots.is_empty() {
            return Err(StepError::invalid(format!("ca_file {} holds no PEM certificate", path.display())));
        }
    }
    let tls = tls::client_config(roots, key.insecure).map_err(|e| StepError::error(format!("cannot set up TLS: {e}")))?;
    builder = builder.tls_backend_preconfigured(tls);
    builder.build().map_err(|e| StepError::error(format!("cannot build an HTTP client: {}", chain(&e))))
}

/// An error and its causes, joined: reqwest's own text is only the outermost layer.
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![err.to_string()];
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = e.source();
    }
    parts.join(": ")
}

/// Turns a request error into a clear message and a retry class.
pub fn classify(err: &reqwest::Error, url: &reqwest::Url) -> StepError {
    let host = url.host_str().unwrap_or("?");
    let port = url.port_or_known_default().map(|p| format!(":{p}")).unwrap_or_default();
    let target = format!("{host}{port}");
    if err.is_timeout() {
        return StepError::new(ErrorClass::Timeout, format!("no answer from {target} in time ({url})"));
    }
    if let Some(tls) = find::<rustls::Error>(err) {
        return tls_error(tls, &target);
    }
    if let Some(io) = find::<std::io::Error>(err) {
        use std::io::ErrorKind::*;
        let what = match io.kind() {
            ConnectionRefused => Some("connection refused"),
            ConnectionReset => Some("connection reset"),
            ConnectionAborted => Some("connection aborted"),
            TimedOut => Some("connection timed out"),
            HostUnreachable => Some("host unreachable"),
            NetworkUnreachable => Some("network unreachable"),
            _ => None,
        };
        if let Some(what) = what {
            return StepError::new(ErrorClass::Unavailable, format!("{what} to {target}"));
        }
    }
    let text = chain(err);
    if text.contains("dns error") || text.contains("failed to lookup address") {
        return StepError::new(ErrorClass::Unavailable, format!("cannot resolve host {host}"));
    }
    if err.is_connect() {
        return StepError::new(ErrorClass::Unavailable, format!("cannot connect to {target}: {text}"));
    }
    if err.is_builder() {
        return StepError::invalid(format!("invalid request to {url}: {text}"));
    }
    StepError::new(ErrorClass::Unavailable, format!("request to {target} failed: {text}"))
}

/// The first error of type `T` among `err` and its causes, looking inside `io::Error`
/// wrappers too (their `source()` skips the error they wrap).
pub fn find<'a, T: std::error::Error + 'static>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a T> {
    let mut stack: Vec<&'a (dyn std::error::Error + 'static)> = vec![err];
    while let Some(e) = stack.pop() {
        if let Some(t) = e.downcast_ref::<T>() {
            return Some(t);
        }
        if let Some(inner) = e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            stack.push(inner);
        }
        if let Some(next) = e.source() {
            stack.push(next);
        }
    }
    None
}

fn tls_error(err: &rustls::Error, target: &str) -> StepError {
    use rustls::{CertificateError, Error as E};
    let untrusted = "the certificate is not trusted (self-signed or unknown issuer); set `ca_file` to its CA, or `insecure: true` to skip verification";
    let reason = match err {
        E::InvalidCertificate(CertificateError::UnknownIssuer) => untrusted.to_string(),
        // A self-signed certificate that says it is a CA (what `openssl req -x509` makes).
        E::InvalidCertificate(CertificateError::Other(o)) if format!("{o:?}").contains("CaUsedAsEndEntity") => untrusted.to_string(),
        E::InvalidCertificate(CertificateError::Expired | CertificateError::ExpiredContext { .. }) => "the certificate has expired".to_string(),
        E::InvalidCertificate(CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }) => {
            "the certificate is not valid for this host name".to_string()
        }
        other => other.to_string(),
    };
    StepError::new(ErrorClass::Error, format!("TLS handshake with {target} failed: {reason}"))
}
