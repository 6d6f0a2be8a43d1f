//! The `postgres:` section of an instance: how to reach its database, and where its
//! client programs run.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::Duration;
use crate::helpers::tunnel::PortForward;
use crate::secret::SecretRef;

/// How to reach an instance's PostgreSQL.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PostgresSettings {
    /// The connection string (`postgres://user:pass@host:5432/db?sslmode=require` or
    /// `host=… dbname=…`), as a secret reference. Without it, the `PG*` environment
    /// variables are used, as libpq does.
    #[serde(default)]
    pub url: Option<SecretRef>,
    /// The database, overriding the connection string's.
    #[serde(default)]
    pub database: Option<String>,
    /// How long to wait for a connection. Default 10s.
    #[serde(default)]
    pub connect_timeout: Option<Duration>,
    /// Where `pg_dump` and `pg_restore` are. Default: the version matching the server under
    /// /usr/lib/postgresql, else the newest there, else $PATH (inside the container with
    /// `exec`).
    #[serde(default)]
    pub bin_dir: Option<PathBuf>,
    /// Run pg_dump and pg_restore inside a compose service (`{ compose_service: db }`) or a
    /// Kubernetes pod (`{ pod: postgres-primary-0 }`) of the instance instead of on this
    /// machine.
    #[serde(default)]
    pub exec: Option<ExecSettings>,
    /// Reach a server inside the instance's Kubernetes namespace through the API server:
    /// `{ pod: postgres-primary-0, port: 5432 }` or `{ service: postgres, port: 5432 }`
    /// (one of its ready pods). The connection string's host is then only the name a
    /// certificate is checked against (`sslmode=verify-full`).
    #[serde(default)]
    pub port_forward: Option<PortForward>,
}

/// Where PostgreSQL's programs run when not on this machine.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecSettings {
    /// The compose service whose container has pg_dump and pg_restore.
    #[serde(default)]
    pub compose_service: Option<String>,
    /// The pod (in the instance's Kubernetes namespace) that has them.
    #[serde(default)]
    pub pod: Option<String>,
    /// The pod's container. Default: its first.
    #[serde(default)]
    pub container: Option<String>,
    /// The server's address as seen from inside that container. Default 127.0.0.1.
    #[serde(default)]
    pub host: Option<String>,
    /// The server's port as seen from inside that container. Default: the connection's.
    #[serde(default)]
    pub port: Option<u16>,
}
