//! Connecting to PostgreSQL: where the settings come from, TLS, and errors people can act on.
//!
//! Settings are read like libpq reads them: first the `PG*` environment variables
//! (`PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`, `PGDATABASE`, `PGSSLMODE`, `PGSSLROOTCERT`,
//! `PGCONNECT_TIMEOUT`), then the instance's connection string (a URL or `key=value` pairs,
//! given as a secret reference), then the inventory's `database:`. The same settings are
//! handed to `pg_dump`/`pg_restore` through their environment — never their arguments, so
//! no password shows up in `ps`.
//!
//! `sslmode` follows libpq: `disable`; `prefer` and `require` encrypt without verifying the
//! server (libpq does the same); `verify-ca` and `verify-full` verify against
//! `sslrootcert` (or the system's roots), `verify-full` also the host name.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::helpers::tunnel::{Stream, Tunnel};
use crate::secret::Secret;
use crate::steps::postgres::settings::PostgresSettings;
use crate::vocab::{ErrorClass, StepError};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(s: &str) -> Result<SslMode, String> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "allow" | "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => return Err(format!("unknown sslmode `{other}`; use disable, prefer, require, verify-ca or verify-full")),
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// Resolved connection settings.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<Secret>,
    pub database: String,
    pub sslmode: SslMode,
    pub sslrootcert: Option<PathBuf>,
    pub connect_timeout: Duration,
    /// The tunnel connections go through (`port_forward:`), instead of TCP to host:port.
    pub via: Option<Arc<dyn Tunnel>>,
}

impl ConnInfo {
    /// Reads the environment, the instance's connection string and overrides.
    pub fn resolve(settings: &PostgresSettings) -> Result<ConnInfo, StepError> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (var, key) in [
            ("PGHOST", "host"),
            ("PGPORT", "port"),
            ("PGUSER", "user"),
            ("PGPASSWORD", "password"),
            ("PGDATABASE", "dbname"),
            ("PGSSLMODE", "sslmode"),
            ("PGSSLROOTCERT", "sslrootcert"),
            ("PGCONNECT_TIMEOUT", "connect_timeout"),
        ] {
            if let Some(v) = env(var) {
                pairs.push((key.to_string(), v));
            }
        }
        if let Some(r) = &settings.url {
            let secret = r.resolve().map_err(|e| StepError::invalid(format!("postgres url: {e}")))?;
            pairs.extend(parse_conn_string(secret.expose()).map_err(|e| StepError::invalid(format!("postgres url in {}: {e}", r.describe())))?);
        }
        let mut info = ConnInfo {
            host: "localhost".into(),
            port: 5432,
            user: crate::sysinfo::user(),
            password: None,
            database: String::new(),
            sslmode: SslMode::Prefer,
            sslrootcert: None,
            connect_timeout: Duration::from_secs(10),
            via: None,
        };
        for (k, v) in pairs {
            match k.as_str() {
                "host" | "hostaddr" => info.host = v,
                "port" => info.port = v.parse().map_err(|_| StepError::invalid(format!("postgres port `{v}` is not a number")))?,
                "user" => info.user = v,
                "password" => info.password = Some(Secret::new(v)),
                "dbname" => info.database = v,
                "sslmode" => info.sslmode = SslMode::parse(&v).map_err(StepError::invalid)?,
                "sslrootcert" => info.sslrootcert = Some(PathBuf::from(v)),
                "connect_timeout" => {
                    let secs: u64 = v.parse().map_err(|_| StepError::invalid(format!("connect_timeout `{v}` is not a number of seconds")))?;
                    info.connect_timeout = Duration::from_secs(secs.max(1));
                }
                "application_name" | "options" | "target_session_attrs" | "keepalives" => {}
                other => return Err(StepError::invalid(format!("unsupported connection setting `{other}`"))),
            }
        }
        if let Some(db) = &settings.database {
            info.database = db.clone();
        }
        if let Some(t) = settings.connect_timeout {
            info.connect_timeout = t.std();
        }
        if info.database.is_empty() {
            info.database = info.user.clone();
        }
        Ok(info)
    }

    /// `user@host:port/database` for messages (never the password); through a tunnel,
    /// `user/database at postgres-0:5432 (port-forward)`.
    pub fn describe(&self) -> String {
        match &self.via {
            Some(t) => format!("{}/{} at {}", self.user, self.database, t.describe()),
            None => format!("{}@{}:{}/{}", self.user, self.host, self.port, self.database),
        }
    }

    /// Where the server is: `host:port`, or the tunnel.
    pub fn target(&self) -> String {
        match &self.via {
            Some(t) => t.describe(),
            None => format!("{}:{}", self.host, self.port),
        }
    }

    /// The same settings for another database on the server.
    pub fn with_database(&self, db: &str) -> ConnInfo {
        ConnInfo { database: db.to_string(), ..self.clone() }
    }

    /// Environment for libpq programs (pg_dump, pg_restore, psql).
    pub fn libpq_env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("PGHOST".to_string(), self.host.clone()),
            ("PGPORT".to_string(), self.port.to_string()),
            ("PGUSER".to_string(), self.user.clone()),
            ("PGDATABASE".to_string(), self.database.clone()),
            ("PGSSLMODE".to_string(), self.sslmode.as_str().to_string()),
            ("PGCONNECT_TIMEOUT".to_string(), self.connect_timeout.as_secs().max(1).to_string()),
        ];
        if let Some(p) = &self.password {
            env.push(("PGPASSWORD".to_string(), p.expose().to_string()));
        }
        if let Some(c) = &self.sslrootcert {
            env.push(("PGSSLROOTCERT".to_string(), c.display().to_string()));
        }
        env
    }

    fn config(&self, application_name: &str) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        c.host(&self.host)
            .port(self.port)
            .user(&self.user)
            .dbname(&self.database)
            .connect_timeout(self.connect_timeout)
            .application_name(application_name)
            .ssl_mode(match self.sslmode {
                SslMode::Disable => tokio_postgres::config::SslMode::Disable,
                SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
                _ => tokio_postgres::config::SslMode::Require,
            });
        if let Some(p) = &self.password {
            c.password(p.expose());
        }
        c
    }

    /// Opens a connection; its driver runs on the runtime until the client is dropped.
    pub async fn connect(&self, application_name: &str) -> Result<tokio_postgres::Client, StepError> {
        let config = self.config(application_name);
        if let Some(via) = &self.via {
            return self.connect_through(via.as_ref(), &config).await;
        }
        let result = if self.sslmode == SslMode::Disable {
            config.connect(tokio_postgres::NoTls).await.map(|(client, conn)| {
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                client
            })
        } else {
            let tls = tokio_postgres_rustls::MakeRustlsConnect::new(self.tls_config()?);
            config.connect(tls).await.map(|(client, conn)| {
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                client
            })
        };
        result.map_err(|e| self.connect_error(&e))
    }

    /// The same over a tunnel's stream: the TLS negotiation and startup run inside it, and
    /// the whole of it is bounded by `connect_timeout` (which tokio-postgres applies to TCP
    /// only).
    async fn connect_through(&self, via: &dyn Tunnel, config: &tokio_postgres::Config) -> Result<tokio_postgres::Client, StepError> {
        let limit = self.connect_timeout;
        let late = || StepError::new(ErrorClass::Timeout, format!("no answer from PostgreSQL at {} within {}s", via.describe(), limit.as_secs()));
        let started = tokio::time::Instant::now();
        let stream = tokio::time::timeout(limit, via.open()).await.map_err(|_| late())??;
        let left = limit.saturating_sub(started.elapsed());
        let result = if self.sslmode == SslMode::Disable {
            tokio::time::timeout(left, config.connect_raw(stream, tokio_postgres::NoTls)).await.map_err(|_| late())?.map(|(client, conn)| {
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                client
            })
        } else {
            use tokio_postgres::tls::MakeTlsConnect;
            let mut make = tokio_postgres_rustls::MakeRustlsConnect::new(self.tls_config()?);
            let tls = <_ as MakeTlsConnect<Stream>>::make_tls_connect(&mut make, &self.host)
                .map_err(|e| StepError::invalid(format!("PostgreSQL host `{}` cannot be checked against a certificate: {e}", self.host)))?;
            tokio::time::timeout(left, config.connect_raw(stream, tls)).await.map_err(|_| late())?.map(|(client, conn)| {
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                client
            })
        };
        result.map_err(|e| self.connect_error(&e))
    }

    fn tls_config(&self) -> Result<rustls::ClientConfig, StepError> {
        let roots = match &self.sslrootcert {
            Some(path) => {
                use rustls::pki_types::CertificateDer;
                use rustls::pki_types::pem::PemObject;
                let pem = std::fs::read(path).map_err(|e| {
                    StepError::invalid(format!("cannot read sslrootcert {}: {}", path.display(), crate::error::io_reason(&e)))
                })?;
                CertificateDer::pem_slice_iter(&pem)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| StepError::invalid(format!("sslrootcert {}: {e}", path.display())))?
            }
            None => Vec::new(),
        };
        let verify = match self.sslmode {
            SslMode::VerifyCa => crate::helpers::tls::Verify::CaOnly,
            SslMode::VerifyFull => crate::helpers::tls::Verify::Full,
            _ => crate::helpers::tls::Verify::Nothing,
        };
        let mut config = crate::helpers::tls::client_config_with(roots, verify)
            .map_err(|e| StepError::error(format!("cannot set up TLS: {e}")))?;
        config.alpn_protocols.clear();
        Ok(config)
    }

    /// Maps a connection error to what the operator should look at.
    pub fn connect_error(&self, e: &tokio_postgres::Error) -> StepError {
        let target = self.target();
        if let Some(db) = e.as_db_error() {
            use tokio_postgres::error::SqlState;
            let code = db.code();
            if *code == SqlState::INVALID_PASSWORD {
                return StepError::new(ErrorClass::Error, format!("authentication failed for user \"{}\" at {target}: check the password", self.user));
            }
            if *code == SqlState::INVALID_CATALOG_NAME {
                return StepError::new(ErrorClass::Error, format!("database \"{}\" does not exist at {target}", self.database));
            }
            if *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION {
                return StepError::new(ErrorClass::Error, format!("{target} refused user \"{}\": {}", self.user, db.message()));
            }
            if *code == SqlState::TOO_MANY_CONNECTIONS || *code == SqlState::CANNOT_CONNECT_NOW {
                return StepError::new(ErrorClass::Unavailable, format!("{target}: {}", db.message()));
            }
            return StepError::new(ErrorClass::Error, format!("{target}: {}", db.message()));
        }
        let text = crate::helpers::errors::chain(e);
        if let Some(tls) = crate::helpers::errors::find::<rustls::Error>(e) {
            use rustls::{CertificateError as C, Error as E};
            let why = match tls {
                E::InvalidCertificate(C::UnknownIssuer | C::BadSignature) => format!(
                    "the server's certificate is not signed by {}",
                    self.sslrootcert.as_ref().map_or("a CA this machine trusts".to_string(), |p| format!("the CA in sslrootcert {}", p.display()))
                ),
                E::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
                    format!("the server's certificate is not valid for {} (sslmode=verify-full checks the host name)", self.host)
                }
                E::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => "the server's certificate has expired".to_string(),
                other => other.to_string(),
            };
            return StepError::new(ErrorClass::Error, format!("TLS with PostgreSQL at {target} failed: {why}"));
        }
        if let Some(io) = crate::helpers::errors::find::<std::io::Error>(e) {
            use std::io::ErrorKind::*;
            let what = match io.kind() {
                ConnectionRefused => "connection refused",
                TimedOut => "connection timed out",
                HostUnreachable | NetworkUnreachable => "host unreachable",
                ConnectionReset => "connection reset",
                _ => "",
            };
            if !what.is_empty() {
                return StepError::new(ErrorClass::Unavailable, format!("cannot connect to PostgreSQL at {target}: {what}"));
            }
        }
        if text.contains("timeout") || text.contains("timed out") {
            return StepError::new(ErrorClass::Timeout, format!("no answer from PostgreSQL at {target} within {}s", self.connect_timeout.as_secs()));
        }
        if text.contains("failed to lookup address") || text.contains("Name or service not known") {
            return StepError::new(ErrorClass::Unavailable, format!("cannot resolve PostgreSQL host {}", self.host));
        }
        if text.contains("server does not support TLS") {
            return StepError::new(ErrorClass::Error, format!("{target} does not support TLS, and sslmode is {}", self.sslmode.as_str()));
        }
        StepError::new(ErrorClass::Unavailable, format!("cannot connect to PostgreSQL at {target}: {text}"))
    }
}

/// A query error, with the server's message and detail.
pub fn query_error(e: &tokio_postgres::Error, what: &str) -> StepError {
    match e.as_db_error() {
        Some(db) => {
            let mut msg = format!("{what}: {}", db.message());
            if let Some(d) = db.detail() {
                msg.push_str(&format!(" ({d})"));
            }
            let class = if db.code() == &tokio_postgres::error::SqlState::QUERY_CANCELED {
                ErrorClass::Timeout
            } else {
                ErrorClass::Error
            };
            StepError::new(class, msg)
        }
        None if e.is_closed() => StepError::new(ErrorClass::Unavailable, format!("{what}: the connection to PostgreSQL was lost")),
        None => StepError::error(format!("{what}: {}", crate::helpers::errors::chain(e))),
    }
}

/// Splits a connection string into key/value pairs: a `postgres://` URL or libpq's
/// `key=value key='quoted value'` form.
pub fn parse_conn_string(s: &str) -> Result<Vec<(String, String)>, String> {
    let s = s.trim();
    if s.starts_with("postgres://") || s.starts_with("postgresql://") {
        let url = url::Url::parse(s).map_err(|e| format!("not a valid URL ({e})"))?;
        let decode = |v: &str| percent_decode(v);
        let mut out = Vec::new();
        if let Some(h) = url.host_str().filter(|h| !h.is_empty()) {
            out.push(("host".into(), h.trim_start_matches('[').trim_end_matches(']').to_string()));
        }
        if let Some(p) = url.port() {
            out.push(("port".into(), p.to_string()));
        }
        if !url.username().is_empty() {
            out.push(("user".into(), decode(url.username())));
        }
        if let Some(p) = url.password() {
            out.push(("password".into(), decode(p)));
        }
        let db = url.path().trim_start_matches('/');
        if !db.is_empty() {
            out.push(("dbname".into(), decode(db)));
        }
        for (k, v) in url.query_pairs() {
            out.push((k.into_owned(), v.into_owned()));
        }
        return Ok(out);
    }
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=' && !c.is_whitespace())).collect();
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') {
            return Err(format!("expected `key=value`, found `{key}` without a value"));
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'\'') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err(format!("unterminated quote in the value of `{key}`")),
                    Some('\\') => value.extend(chars.next()),
                    Some('\'') => break,
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        out.push((key, value));
    }
    Ok(out)
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// A shared, lazily opened connection for the steps of one run.
#[derive(Default)]
pub struct Pool {
    client: tokio::sync::Mutex<Option<Arc<tokio_postgres::Client>>>,
}

impl Pool {
    pub async fn get(&self, info: &ConnInfo) -> Result<Arc<tokio_postgres::Client>, StepError> {
        let mut slot = self.client.lock().await;
        if let Some(c) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        let client = Arc::new(info.connect("opsctl").await?);
        *slot = Some(client.clone());
        Ok(client)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls_and_keyword_strings() {
        let url = parse_conn_string("postgres://app:p%40ss@db.example.com:6543/orders?sslmode=verify-full").unwrap();
        assert_eq!(
            url,
            vec![
                ("host".into(), "db.example.com".into()),
                ("port".into(), "6543".into()),
                ("user".into(), "app".into()),
                ("password".into(), "p@ss".into()),
                ("dbname".into(), "orders".into()),
                ("sslmode".into(), "verify-full".into()),
            ]
        );
        let kw = parse_conn_string("host=db port=5433 user=app password='a b\\'c' dbname = orders").unwrap();
        assert_eq!(kw[3], ("password".into(), "a b'c".into()));
        assert_eq!(kw[4], ("dbname".into(), "orders".into()));
        assert!(parse_conn_string("host").is_err());
        assert!(parse_conn_string("password='open").is_err());
    }

    #[test]
    fn the_connection_string_wins_over_the_environment_and_database_over_both() {
        let settings = PostgresSettings { database: Some("other".into()), ..PostgresSettings::default() };
        // SAFETY: the variable names are used by this test only.
        unsafe { std::env::set_var("OPSCTL_UNIT_PGURL", "postgres://u@h:1/db?sslmode=disable") };
        let settings = PostgresSettings { url: Some(crate::secret::SecretRef::Env("OPSCTL_UNIT_PGURL".into())), ..settings };
        let info = ConnInfo::resolve(&settings).unwrap();
        assert_eq!((info.host.as_str(), info.port, info.user.as_str(), info.database.as_str()), ("h", 1, "u", "other"));
        assert_eq!(info.sslmode, SslMode::Disable);
        assert!(info.libpq_env().iter().all(|(k, _)| k != "PGPASSWORD"));
    }
}
