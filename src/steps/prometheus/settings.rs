//! The `prometheus:` section of an instance: where its Prometheus answers, with the same
//! headers, TLS settings and timeout as any HTTP API.

/// `prometheus: { url: http://prometheus:9090, headers: { Authorization: { env: PROM_TOKEN } } }`
pub type PrometheusSettings = crate::helpers::http::Endpoint;
