//! HTTP clients for the backends that speak HTTP (`http.check`, `notify.*`): one client per
//! TLS setting per run, so connections are reused; and request errors turned into a clear
//! message and a retry class.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use super::errors::{chain, find};
use super::tls;
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
