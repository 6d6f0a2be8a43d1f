//! The `redis:` section of an instance: how to reach its Redis.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::Duration;
use crate::helpers::tunnel::PortForward;
use crate::secret::HeaderValue;

/// How to reach an instance's Redis.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    /// `redis://[user[:password]@]host:6379/0`, or `rediss://` for TLS. A URL that holds a
    /// password is given by reference: `{ env: REDIS_URL }`.
    pub url: HeaderValue,
    /// A PEM file of CA certificates to trust (with `rediss://`) besides the system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Skip certificate verification (a warning says so on every use).
    #[serde(default)]
    pub insecure: bool,
    /// The longest connecting or one command may take. Default 10s.
    #[serde(default)]
    pub timeout: Option<Duration>,
    /// Reach a server inside the instance's Kubernetes namespace through the API server:
    /// `{ pod: redis-master-0, port: 6379 }` or `{ service: redis, port: 6379 }` (one of
    /// its ready pods). The URL's host is then only the name a certificate is checked
    /// against (`rediss://`).
    #[serde(default)]
    pub port_forward: Option<PortForward>,
}
