//! HTTP clients for the backends that speak HTTP (`http.check`, `notify.*`, Prometheus,
//! Alertmanager): one client per TLS setting per run, so connections are reused; request
//! errors turned into a clear message and a retry class; and [`Endpoint`], an HTTP API as
//! the inventory gives it, with the JSON calls the API backends make to it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::errors::{chain, find};
use super::tls;
use crate::secret::HeaderValue;
use crate::vocab::{ErrorClass, StepError};

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
    let roots = match &key.ca_file {
        Some(path) => tls::ca_file(path)?,
        None => Vec::new(),
    };
    let tls = tls::client_config(roots, key.insecure).map_err(|e| StepError::error(format!("cannot set up TLS: {e}")))?;
    builder = builder.tls_backend_preconfigured(tls);
    builder.build().map_err(|e| StepError::error(format!("cannot build an HTTP client: {}", chain(&e))))
}

/// The run's HTTP clients, one per [`ClientKey`]; kept in the run's resources.
#[derive(Default)]
pub struct HttpClients(Mutex<HashMap<ClientKey, reqwest::Client>>);

impl HttpClients {
    /// The client for `key`, built on first use.
    pub fn client(&self, key: &ClientKey) -> Result<reqwest::Client, StepError> {
        let mut clients = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = clients.get(key) {
            return Ok(c.clone());
        }
        let client = build_client(key)?;
        clients.insert(key.clone(), client.clone());
        Ok(client)
    }
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

/// An HTTP API as the inventory gives it (`prometheus:`, `alertmanager:`): where it is, the
/// headers every request carries (a value may be a secret reference), TLS, and a timeout.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// The API's base URL: `http://prometheus:9090`, `https://alertmanager.example.com`.
    pub url: String,
    /// Headers sent with every request, e.g. `Authorization: { env: PROM_TOKEN }`.
    #[serde(default)]
    pub headers: IndexMap<String, HeaderValue>,
    /// A PEM file of CA certificates to trust in addition to the system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Skip certificate verification (a warning says so on every use).
    #[serde(default)]
    pub insecure: bool,
    /// The longest one request may take. Default 30s.
    #[serde(default)]
    pub timeout: Option<crate::duration::Duration>,
}

/// A request to an [`Endpoint`]'s JSON API.
pub struct Call<'a> {
    pub method: reqwest::Method,
    /// The path under the base URL: `/api/v1/query`.
    pub path: &'a str,
    pub query: Vec<(&'a str, String)>,
    pub body: Option<serde_json::Value>,
}

impl Call<'_> {
    pub fn get(path: &str) -> Call<'_> {
        Call { method: reqwest::Method::GET, path, query: Vec::new(), body: None }
    }

    pub fn query(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.query.push((name, value.into()));
        self
    }
}

/// An answer that was not a success: where from, its status and body, for the backend to
/// explain ([`Refused::error`] says what an operator can do about the usual ones).
#[derive(Debug)]
pub struct Refused {
    /// `Prometheus at http://…`.
    pub at: String,
    pub status: u16,
    pub body: String,
}

impl Refused {
    /// The usual reading: 429 is `throttled`, 5xx `http_5xx` (both retried by `retry.on`),
    /// 401/403 point at the inventory's headers, anything else quotes the answer.
    pub fn error(self) -> StepError {
        let Refused { at, status, body } = self;
        let said = super::text::truncate(&body, 300);
        match status {
            429 => StepError::new(ErrorClass::Throttled, format!("{at} answered 429 Too Many Requests")),
            500..=599 => StepError::new(ErrorClass::Http5xx, format!("{at} answered {status}: {said}")),
            401 | 403 => StepError::invalid(format!(
                "{at} answered {status}: the credentials are missing or refused; set the `headers` of its inventory section (e.g. `Authorization: {{ env: TOKEN }}`)"
            )),
            _ => StepError::error(format!("{at} answered {status}: {said}")),
        }
    }
}

impl Endpoint {
    /// Sends `call` to the API named `what` (`Prometheus`, for messages) and reads its JSON
    /// answer (`null` for an empty one). A transport error is a [`StepError`] with its retry
    /// class; a non-success status is handed back as [`Refused`].
    pub async fn json(&self, clients: &HttpClients, what: &str, call: Call<'_>) -> Result<Result<serde_json::Value, Refused>, StepError> {
        let base = reqwest::Url::parse(self.url.trim_end_matches('/'))
            .map_err(|e| StepError::invalid(format!("{what} url `{}` is not a URL: {e}", self.url)))?;
        let mut url = base.clone();
        url.set_path(&format!("{}{}", base.path().trim_end_matches('/'), call.path));
        if !call.query.is_empty() {
            url.query_pairs_mut().extend_pairs(call.query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        if self.insecure {
            tracing::warn!("certificate verification is off for {what} at {} (insecure: true)", self.url);
        }
        let client = clients.client(&ClientKey { ca_file: self.ca_file.clone(), insecure: self.insecure })?;
        let timeout = self.timeout.map_or(Duration::from_secs(30), |t| t.std());
        let mut request = client.request(call.method, url.clone()).timeout(timeout).header("accept", "application/json");
        for (name, value) in &self.headers {
            let v = value.resolve().map_err(|e| StepError::invalid(format!("{what} header {name}: {e}")))?;
            request = request.header(name.as_str(), v);
        }
        if let Some(body) = &call.body {
            request = request.header("content-type", "application/json").body(body.to_string());
        }
        let response = request.send().await.map_err(|e| classify(&e, &url))?;
        let status = response.status().as_u16();
        let body = response.text().await.map_err(|e| classify(&e, &url))?;
        let at = format!("{what} at {}", self.url);
        if !(200..300).contains(&status) {
            return Ok(Err(Refused { at, status, body }));
        }
        if body.trim().is_empty() {
            return Ok(Ok(serde_json::Value::Null));
        }
        serde_json::from_str(&body)
            .map(Ok)
            .map_err(|e| StepError::error(format!("{at} answered {status} with what is not JSON ({e}): {}", super::text::truncate(&body, 200))))
    }
}
