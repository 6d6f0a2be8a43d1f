//! The PostgreSQL backend: health checks, maintenance, and verified backup and restore.
//!
//! What operations guides do with `psql -c`, `pg_isready`, `pg_dump` and
//! `find backups/ -mtime +30 -delete`, as typed steps. SQL runs through tokio-postgres with
//! parameters bound, never interpolated; `pg_dump`/`pg_restore` run through a
//! [`tools::Transport`] so they can later run inside a container or a pod.

pub mod backup;
pub mod bloat;
pub mod conn;
pub mod connections;
pub mod lease;
pub mod long_queries;
pub mod ping;
pub mod query;
pub mod reindex;
pub mod replication;
pub mod restore;
pub mod size;
pub mod slow_queries;
pub mod terminate;
pub mod tools;
pub mod vacuum;

use std::path::PathBuf;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{StepContext, StepError};
use crate::duration::Duration;
use crate::secret::SecretRef;
use conn::ConnInfo;

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

/// A transport and the libpq environment its programs get.
pub type Placed = (Box<dyn tools::Transport>, Vec<(String, String)>);

/// Where pg_dump and pg_restore run for this instance (no connection settings needed).
pub async fn transport_only(ctx: &StepContext) -> Result<Box<dyn tools::Transport>, StepError> {
    match &settings(ctx)?.exec {
        None => Ok(Box::new(tools::Local)),
        Some(ExecSettings { compose_service: Some(service), pod: None, .. }) => {
            let (project, docker) = super::compose::project(ctx)?;
            project.check_services(std::slice::from_ref(service))?;
            Ok(Box::new(super::compose::transport::ComposeExec { project, docker, service: service.clone() }))
        }
        Some(ExecSettings { pod: Some(pod), compose_service: None, container, .. }) => {
            let kube = super::k8s::client(ctx).await?;
            Ok(Box::new(super::k8s::transport::PodExec { kube, pod: pod.clone(), container: container.clone() }))
        }
        Some(_) => Err(StepError::invalid("`postgres.exec` needs exactly one of `compose_service` and `pod`")),
    }
}

/// Where pg_dump and pg_restore run for this instance, and the libpq environment they get
/// (with `exec`, the server as seen from inside the container).
pub async fn transport(ctx: &StepContext, info: &ConnInfo) -> Result<Placed, StepError> {
    let transport = transport_only(ctx).await?;
    let mut seen = info.clone();
    if let Some(exec) = &settings(ctx)?.exec {
        seen.host = exec.host.clone().unwrap_or_else(|| "127.0.0.1".into());
        if let Some(p) = exec.port {
            seen.port = p;
        }
    }
    Ok((transport, seen.libpq_env()))
}

/// The instance's PostgreSQL settings, or a clear error.
pub fn settings(ctx: &StepContext) -> Result<&PostgresSettings, StepError> {
    ctx.instance.postgres.as_ref().ok_or_else(|| {
        StepError::invalid(format!(
            "instance {} has no PostgreSQL settings; add `postgres: {{ url: {{ env: DATABASE_URL }} }}` to it in the inventory",
            ctx.instance.name
        ))
    })
}

/// Connection settings for the instance, optionally for another database on its server.
pub fn conn_info(ctx: &StepContext, database: Option<&str>) -> Result<ConnInfo, StepError> {
    let info = ConnInfo::resolve(settings(ctx)?)?;
    Ok(match database {
        Some(db) => info.with_database(db),
        None => info,
    })
}

/// A client for the instance's database (shared within the run), or a dedicated one for
/// another database.
pub async fn client(ctx: &StepContext, database: Option<&str>) -> Result<(ConnInfo, Arc<tokio_postgres::Client>), StepError> {
    let info = conn_info(ctx, database)?;
    let client = match database {
        None => ctx.resources.postgres.get(&info).await?,
        Some(_) => Arc::new(info.connect("opsctl").await?),
    };
    Ok((info, client))
}

/// `server_version_num` and `server_version` (`150018`, `15.18`).
pub async fn server_version(client: &tokio_postgres::Client) -> Result<(u32, String), StepError> {
    let row = client
        .query_one("SELECT current_setting('server_version_num')::int, current_setting('server_version')", &[])
        .await
        .map_err(|e| conn::query_error(&e, "reading the server version"))?;
    let num: i32 = row.get(0);
    let text: String = row.get(1);
    Ok((num as u32, text.split_whitespace().next().unwrap_or_default().to_string()))
}

/// Quotes an identifier: `"my ""table"""`.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes `schema.table` or `table` part by part.
pub fn quote_qualified(name: &str) -> String {
    match name.split_once('.') {
        Some((schema, table)) => format!("{}.{}", quote_ident(schema), quote_ident(table)),
        None => quote_ident(name),
    }
}

/// Runs a query and maps errors.
pub async fn query(
    client: &tokio_postgres::Client,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    what: &str,
) -> Result<Vec<tokio_postgres::Row>, StepError> {
    client.query(sql, params).await.map_err(|e| conn::query_error(&e, what))
}

/// `ms` rounded to one decimal.
fn ms(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

/// `1 table`, `3 tables`.
pub fn plural(n: impl Into<i64>, one: &str, many: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Text cut to `n` characters, on one line.
pub fn truncate(s: &str, n: usize) -> String {
    let one: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() > n { format!("{}…", one.chars().take(n).collect::<String>()) } else { one }
}

/// A human size: `10GB`, `512MB`, `1.5GiB`, or a number of bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn parse(s: &str) -> Result<ByteSize, String> {
        let t = s.trim();
        let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: f64 = num.parse().map_err(|_| format!("`{s}` is not a size such as 10GB or 512MiB"))?;
        let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1.0,
            "kb" => 1e3,
            "mb" => 1e6,
            "gb" => 1e9,
            "tb" => 1e12,
            "kib" | "k" => 1024.0,
            "mib" | "m" => 1024.0 * 1024.0,
            "gib" | "g" => 1024.0 * 1024.0 * 1024.0,
            "tib" | "t" => 1024f64.powi(4),
            other => return Err(format!("unknown size unit `{other}` in `{s}`; use B, KB, MB, GB, TB, KiB, MiB, GiB, TiB")),
        };
        Ok(ByteSize((n * mult).round() as u64))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<ByteSize, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a size such as 10GB or 512MiB")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v).map(ByteSize).map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<ByteSize, E> {
                if crate::yaml::de::is_placeholder(s) {
                    return Ok(ByteSize(0));
                }
                ByteSize::parse(s).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for ByteSize {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ByteSize".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": ["string", "integer"], "description": "A size: 10GB, 512MiB, or bytes" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_identifiers() {
        assert_eq!(quote_ident("users"), "\"users\"");
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(quote_qualified("public.users"), "\"public\".\"users\"");
    }

    #[test]
    fn parses_sizes() {
        assert_eq!(ByteSize::parse("10GB").unwrap(), ByteSize(10_000_000_000));
        assert_eq!(ByteSize::parse("1.5 GiB").unwrap(), ByteSize(1_610_612_736));
        assert_eq!(ByteSize::parse("512").unwrap(), ByteSize(512));
        assert!(ByteSize::parse("10 parsecs").is_err());
    }
}
