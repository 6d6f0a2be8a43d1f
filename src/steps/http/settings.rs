//! The `http:` section of an instance: its API's base URL, the headers health checks send,
//! and the endpoints the `check` runbook probes.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::secret::HeaderValue;

/// How to reach an instance over HTTP.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// `https://api.team-a.example.com`; runbooks use `{{ instance.http.base_url }}`.
    pub base_url: String,
    /// Headers sent by the `check` runbook's health checks; values may be secret references.
    #[serde(default)]
    pub headers: IndexMap<String, HeaderValue>,
    /// Endpoints the `check` runbook probes, relative to `base_url`.
    #[serde(default)]
    pub health: Vec<HealthEndpoint>,
}

/// A health endpoint: a path, or a path with expectations.
#[derive(Debug, Clone, Serialize)]
pub struct HealthEndpoint {
    pub path: String,
    pub expect_status: Option<u16>,
    pub expect_json: Option<IndexMap<String, serde_json::Value>>,
    pub expect_body: Option<String>,
    pub warn_latency: Option<crate::duration::Duration>,
    pub fail_latency: Option<crate::duration::Duration>,
}

/// A health endpoint written as a mapping.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct HealthEndpointMap {
    /// The path under `base_url`, e.g. `/ready`.
    path: String,
    /// The status it must answer (default: any 2xx).
    #[serde(default)]
    expect_status: Option<u16>,
    /// Fields the JSON body must have, e.g. `{ status: ready }`.
    #[serde(default)]
    expect_json: Option<IndexMap<String, serde_json::Value>>,
    /// Text the body must contain.
    #[serde(default)]
    expect_body: Option<String>,
    /// Warn when it answers slower.
    #[serde(default)]
    warn_latency: Option<crate::duration::Duration>,
    /// Fail when it answers slower.
    #[serde(default)]
    fail_latency: Option<crate::duration::Duration>,
}

/// As the loader reads it: a path, or a mapping.
impl JsonSchema for HealthEndpoint {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "HealthEndpoint".into()
    }
    fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        crate::yaml::de::string_or_map_schema::<HealthEndpointMap>(g, "A path under base_url, e.g. /health")
    }
}

impl<'de> Deserialize<'de> for HealthEndpoint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::yaml::de::string_or_map(
            d,
            "a path such as `/health`, or a mapping with `path`",
            |path| HealthEndpoint { path: path.to_string(), expect_status: None, expect_json: None, expect_body: None, warn_latency: None, fail_latency: None },
            |f: HealthEndpointMap| HealthEndpoint {
                path: f.path,
                expect_status: f.expect_status,
                expect_json: f.expect_json,
                expect_body: f.expect_body,
                warn_latency: f.warn_latency,
                fail_latency: f.fail_latency,
            },
        )
    }
}
