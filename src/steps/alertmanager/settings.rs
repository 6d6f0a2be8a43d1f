//! The `alertmanager:` section of an instance: where its Alertmanager answers (with the same
//! headers, TLS settings and timeout as any HTTP API), and which of its alerts are this
//! instance's.

use std::path::PathBuf;

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::Duration;
use crate::helpers::http::Endpoint;
use crate::secret::HeaderValue;

/// `alertmanager: { url: http://alertmanager:9093, matchers: ['namespace="team-a"'] }`
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerSettings {
    /// The API's base URL: `http://alertmanager:9093`.
    pub url: String,
    /// Headers sent with every request, e.g. `Authorization: { env: AM_TOKEN }`.
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
    pub timeout: Option<Duration>,
    /// The matchers that select this instance's alerts (`namespace="team-a"`):
    /// `alertmanager.alerts` looks only at those (in `check`, `gate` and `triage`), and the
    /// restore runbook silences them while it works (without them it silences nothing).
    #[serde(default)]
    pub matchers: Vec<String>,
}

impl AlertmanagerSettings {
    /// The HTTP API part.
    pub fn endpoint(&self) -> Endpoint {
        Endpoint { url: self.url.clone(), headers: self.headers.clone(), ca_file: self.ca_file.clone(), insecure: self.insecure, timeout: self.timeout }
    }
}
