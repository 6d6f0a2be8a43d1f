//! The `alertmanager:` section of an instance: where its Alertmanager answers, with the same
//! headers, TLS settings and timeout as any HTTP API.

/// `alertmanager: { url: http://alertmanager:9093 }`
pub type AlertmanagerSettings = crate::helpers::http::Endpoint;
