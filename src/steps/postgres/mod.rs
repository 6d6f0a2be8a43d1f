//! The PostgreSQL backend: health checks, maintenance, and verified backup and restore.
//!
//! What operations guides do with `psql -c`, `pg_isready`, `pg_dump` and
//! `find backups/ -mtime +30 -delete`, as typed steps. SQL runs through tokio-postgres with
//! parameters bound, never interpolated; `pg_dump`/`pg_restore` run through a
//! [`Transport`]: on this machine ([`tools::Local`]), or in a compose service's container or
//! a pod (`postgres.exec`), which the registry hands over.

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
pub mod settings;
pub mod size;
pub mod slow_queries;
pub mod terminate;
pub mod tools;
pub mod vacuum;

use std::sync::Arc;

use conn::{ConnInfo, Pool};
use settings::{ExecSettings, PostgresSettings};

use crate::helpers::transport::Transport;
use crate::helpers::tunnel::LocalPort;
use crate::kind::{Place, StepContext};
use crate::vocab::StepError;

/// A transport and the libpq environment its programs get.
pub type Placed = (Box<dyn Transport>, Vec<(String, String)>);

/// Where pg_dump and pg_restore run for this instance (no connection settings needed).
pub async fn transport_only(ctx: &StepContext) -> Result<Box<dyn Transport>, StepError> {
    let place = match &settings(ctx)?.exec {
        None => return Ok(Box::new(tools::Local)),
        Some(ExecSettings { compose_service: Some(service), pod: None, .. }) => Place::ComposeService(service),
        Some(ExecSettings { pod: Some(pod), compose_service: None, container, .. }) => Place::Pod { pod, container: container.as_deref() },
        Some(_) => return Err(StepError::invalid("`postgres.exec` needs exactly one of `compose_service` and `pod`")),
    };
    ctx.run.backends.transport(ctx, place).await
}

/// Where pg_dump and pg_restore run for this instance, and the libpq environment they get
/// (with `exec`, the server as seen from inside the container; through a tunnel, a
/// loopback port that lives as long as the transport).
pub async fn transport(ctx: &StepContext, info: &ConnInfo) -> Result<Placed, StepError> {
    let transport = transport_only(ctx).await?;
    let mut seen = info.clone();
    if let Some(exec) = &settings(ctx)?.exec {
        seen.host = exec.host.clone().unwrap_or_else(|| "127.0.0.1".into());
        if let Some(p) = exec.port {
            seen.port = p;
        }
        return Ok((transport, seen.libpq_env()));
    }
    if let Some(via) = &info.via {
        let local = LocalPort::open(via.clone()).await?;
        // libpq connects to PGHOSTADDR and checks a certificate against PGHOST.
        seen.port = local.port;
        let mut env = seen.libpq_env();
        env.push(("PGHOSTADDR".into(), "127.0.0.1".into()));
        return Ok((Box::new(tools::Forwarded { local, to: via.describe() }), env));
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

/// Connection settings for the instance, optionally for another database on its server;
/// with `port_forward`, the tunnel (the pod found, a service resolved) is opened here.
pub async fn conn_info(ctx: &StepContext, database: Option<&str>) -> Result<ConnInfo, StepError> {
    let settings = settings(ctx)?;
    let mut info = ConnInfo::resolve(settings)?;
    if let Some(to) = &settings.port_forward {
        info.via = Some(ctx.run.backends.port_forward(&ctx.instance, &ctx.resources, to).await?);
    }
    Ok(match database {
        Some(db) => info.with_database(db),
        None => info,
    })
}

/// A client for the instance's database (shared within the run), or a dedicated one for
/// another database.
pub async fn client(ctx: &StepContext, database: Option<&str>) -> Result<(ConnInfo, Arc<tokio_postgres::Client>), StepError> {
    let info = conn_info(ctx, database).await?;
    let client = match database {
        // One connection per instance: a command on several instances shares resources.
        None => ctx.resources.keyed::<Pool>(&ctx.instance.name).get(&info).await?,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_identifiers() {
        assert_eq!(quote_ident("users"), "\"users\"");
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(quote_qualified("public.users"), "\"public\".\"users\"");
    }
}
