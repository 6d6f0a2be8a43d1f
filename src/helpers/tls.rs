//! TLS for the HTTP client: the system's trust store (plus `ca_file`), loaded lazily.
//!
//! reqwest's default rustls setup reads and parses the system trust store when the client
//! is built — milliseconds that every run paid, even one that only checks `http://` URLs.
//! This verifier defers that to the first TLS handshake, and otherwise does what reqwest's
//! default does: `rustls-platform-verifier` with any extra roots, SNI, ALPN h2/http1.1.

use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// What to verify of a server's certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verify {
    /// The chain up to a trusted root, and the host name.
    Full,
    /// The chain only (PostgreSQL's `sslmode=verify-ca`).
    CaOnly,
    /// Nothing (`insecure: true`; PostgreSQL's `sslmode=require`, as libpq).
    Nothing,
}

/// The certificates of a `ca_file` (PEM), to trust besides the system's.
pub fn ca_file(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, crate::vocab::StepError> {
    use crate::vocab::StepError;
    use rustls::pki_types::pem::PemObject;
    let pem = std::fs::read(path).map_err(|e| StepError::invalid(format!("cannot read ca_file {}: {}", path.display(), crate::error::io_reason(&e))))?;
    let roots = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| StepError::invalid(format!("ca_file {} holds no valid PEM certificate: {e}", path.display())))?;
    if roots.is_empty() {
        return Err(StepError::invalid(format!("ca_file {} holds no PEM certificate", path.display())));
    }
    Ok(roots)
}

/// Builds the HTTP client's TLS configuration.
pub fn client_config(extra_roots: Vec<CertificateDer<'static>>, insecure: bool) -> Result<rustls::ClientConfig, rustls::Error> {
    client_config_with(extra_roots, if insecure { Verify::Nothing } else { Verify::Full })
}

/// A TLS configuration trusting the system's roots plus `extra_roots`.
pub fn client_config_with(extra_roots: Vec<CertificateDer<'static>>, verify: Verify) -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
    let verifier = LazyVerifier { extra_roots, verify, provider: provider.clone(), inner: OnceLock::new() };
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

#[derive(Debug)]
struct LazyVerifier {
    extra_roots: Vec<CertificateDer<'static>>,
    verify: Verify,
    provider: Arc<CryptoProvider>,
    inner: OnceLock<Result<Arc<rustls_platform_verifier::Verifier>, rustls::Error>>,
}

impl LazyVerifier {
    fn platform(&self) -> Result<&Arc<rustls_platform_verifier::Verifier>, rustls::Error> {
        self.inner
            .get_or_init(|| {
                rustls_platform_verifier::Verifier::new_with_extra_roots(self.extra_roots.clone(), self.provider.clone()).map(Arc::new)
            })
            .as_ref()
            .map_err(Clone::clone)
    }
}

impl ServerCertVerifier for LazyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let result = match self.verify {
            Verify::Nothing => return Ok(ServerCertVerified::assertion()),
            _ => self.platform()?.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now),
        };
        match result {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName | rustls::CertificateError::NotValidForNameContext { .. },
            )) if self.verify == Verify::CaOnly => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        if self.verify == Verify::Nothing {
            return Ok(HandshakeSignatureValid::assertion());
        }
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        if self.verify == Verify::Nothing {
            return Ok(HandshakeSignatureValid::assertion());
        }
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}
