//! A Redis connection: TCP or TLS (`rediss://`), AUTH with an ACL user or the default one,
//! SELECT, and commands in RESP2 — the protocol `redis-cli` speaks. Small on purpose: the
//! checks send a handful of commands, and a backup reads the server's RDB stream off the
//! same socket ([`Conn::send`], [`Conn::read_line`], [`Conn::read_some`]).
//!
//! Every read and write is bounded by the settings' `timeout`; the password is registered
//! with the scrubber the moment it is read, and never leaves this module but on the wire.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::settings::RedisSettings;
use crate::helpers::tunnel::{Stream, Tunnel};
use crate::secret::HeaderValue;
use crate::vocab::{ErrorClass, StepError};

/// A reply, as RESP2 has them.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The reply as text (status, bulk or integer).
    pub fn text(&self) -> Option<String> {
        match self {
            Reply::Status(s) => Some(s.clone()),
            Reply::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            Reply::Int(i) => Some(i.to_string()),
            _ => None,
        }
    }

    pub fn int(&self) -> Option<i64> {
        match self {
            Reply::Int(i) => Some(*i),
            other => other.text()?.trim().parse().ok(),
        }
    }

    pub fn items(&self) -> &[Reply] {
        match self {
            Reply::Array(Some(items)) => items,
            _ => &[],
        }
    }
}

/// Where a URL points, with its credentials apart.
pub struct Target {
    pub host: String,
    pub port: u16,
    pub tls: bool,
    pub user: Option<String>,
    password: Option<String>,
    pub db: u32,
    /// `redis://host:6379/0`: the URL without credentials, for messages.
    pub shown: String,
}

impl Target {
    /// Reads `redis://[user[:password]@]host[:port][/db]` (or `rediss://`). A password must
    /// come by reference: a URL written in the inventory as text may not hold one.
    pub fn from_settings(settings: &RedisSettings) -> Result<Target, StepError> {
        let text = settings.url.resolve().map_err(|e| StepError::invalid(format!("redis.url: {e}")))?;
        let url = url::Url::parse(&text).map_err(|e| StepError::invalid(format!("redis.url is not a URL such as redis://host:6379/0: {e}")))?;
        let tls = match url.scheme() {
            "redis" => false,
            "rediss" => true,
            other => return Err(StepError::invalid(format!("redis.url has scheme `{other}`; use redis:// or rediss:// (TLS)"))),
        };
        let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
        let password = url.password().map(decode);
        if password.is_some() && matches!(settings.url, HeaderValue::Text(_)) {
            return Err(StepError::invalid("redis.url holds a password: give the URL by reference, `url: { env: REDIS_URL }`, so it is never written in the inventory"));
        }
        if let Some(p) = &password {
            crate::secret::register(p);
        }
        let user = Some(decode(url.username())).filter(|u| !u.is_empty());
        let host = url.host_str().ok_or_else(|| StepError::invalid("redis.url has no host"))?.trim_matches(['[', ']']).to_string();
        let port = url.port().unwrap_or(6379);
        let db = match url.path().trim_start_matches('/') {
            "" => 0,
            n => n.parse().map_err(|_| StepError::invalid(format!("redis.url: `{n}` is not a database number")))?,
        };
        let shown = format!("{}://{host}:{port}/{db}", url.scheme());
        Ok(Target { host, port, tls, user, password, db, shown })
    }
}

/// An open, authenticated connection.
pub struct Conn {
    io: BufReader<Stream>,
    pub shown: String,
    timeout: Duration,
    /// How long connecting, the TLS handshake and AUTH took.
    pub connect_time: Duration,
}

impl Conn {
    /// Connects (over TCP, or through `via`), authenticates and selects the database.
    pub async fn open(settings: &RedisSettings, via: Option<&dyn Tunnel>) -> Result<Conn, StepError> {
        let mut target = Target::from_settings(settings)?;
        let timeout = settings.timeout.map_or(Duration::from_secs(10), |t| t.std());
        let started = Instant::now();
        let at = match via {
            Some(t) => t.describe(),
            None => format!("{}:{}", target.host, target.port),
        };
        let late = || StepError::new(ErrorClass::Timeout, format!("no answer from Redis at {at} in {}", crate::duration::short(timeout)));
        let tcp: Stream = match via {
            Some(t) => {
                target.shown = at.clone();
                tokio::time::timeout(timeout, t.open()).await.map_err(|_| late())??
            }
            None => {
                let tcp = tokio::time::timeout(timeout, TcpStream::connect((target.host.as_str(), target.port)))
                    .await
                    .map_err(|_| late())?
                    .map_err(|e| unreachable(&at, &e))?;
                let _ = tcp.set_nodelay(true);
                Stream::new(tcp)
            }
        };
        let io: Stream = if target.tls {
            let roots = match &settings.ca_file {
                Some(path) => crate::helpers::tls::ca_file(path)?,
                None => Vec::new(),
            };
            if settings.insecure {
                tracing::warn!("certificate verification is off for Redis at {at} (insecure: true)");
            }
            let verify = if settings.insecure { crate::helpers::tls::Verify::Nothing } else { crate::helpers::tls::Verify::Full };
            let mut config = crate::helpers::tls::client_config_with(roots, verify).map_err(|e| StepError::error(format!("cannot set up TLS: {e}")))?;
            config.alpn_protocols.clear();
            let name = rustls::pki_types::ServerName::try_from(target.host.clone())
                .map_err(|e| StepError::invalid(format!("redis.url host `{}` cannot be checked against a certificate: {e}", target.host)))?;
            let tls = tokio::time::timeout(timeout, tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp))
                .await
                .map_err(|_| StepError::new(ErrorClass::Timeout, format!("the TLS handshake with Redis at {at} took longer than {}", crate::duration::short(timeout))))?
                .map_err(|e| StepError::new(ErrorClass::Error, format!("TLS handshake with Redis at {at} failed: {}", crate::helpers::errors::chain(&e))))?;
            Stream::new(tls)
        } else {
            tcp
        };
        let mut conn = Conn { io: BufReader::with_capacity(64 * 1024, io), shown: target.shown.clone(), timeout, connect_time: Duration::ZERO };
        if let Some(password) = &target.password {
            let reply = match &target.user {
                Some(user) => conn.call(&["AUTH", user, password]).await?,
                None => conn.call(&["AUTH", password]).await?,
            };
            if let Reply::Error(e) = reply {
                return Err(StepError::new(ErrorClass::Error, format!("Redis at {} refused the credentials ({}): check the user and password in redis.url", target.shown, first_word_rest(&e))));
            }
        }
        if target.db != 0 {
            let db = target.db.to_string();
            conn.ok(&["SELECT", &db]).await?;
        }
        conn.connect_time = started.elapsed();
        Ok(conn)
    }

    /// Sends a command and reads its reply (a Redis error is a reply, not an `Err`).
    pub async fn call(&mut self, args: &[&str]) -> Result<Reply, StepError> {
        let out = encode(args);
        let timeout = self.timeout;
        let shown = self.shown.clone();
        let what = args.first().copied().unwrap_or_default().to_string();
        tokio::time::timeout(timeout, async {
            self.io.get_mut().write_all(&out).await?;
            self.io.get_mut().flush().await?;
            read_reply(&mut self.io).await
        })
        .await
        .map_err(|_| StepError::new(ErrorClass::Timeout, format!("Redis at {shown} did not answer {what} in {}", crate::duration::short(timeout))))?
        .map_err(|e| StepError::new(ErrorClass::Unavailable, format!("Redis at {shown}: {what} failed: {e}")))
    }

    /// Sends a command whose error reply is the step's error. A server that wants a password
    /// says so in words an operator can act on.
    pub async fn ok(&mut self, args: &[&str]) -> Result<Reply, StepError> {
        match self.call(args).await? {
            Reply::Error(e) if e.starts_with("NOAUTH") => Err(StepError::invalid(format!(
                "Redis at {} needs a password: give it in redis.url (`redis://:PASSWORD@host`, by reference)",
                self.shown
            ))),
            Reply::Error(e) if e.starts_with("NOPERM") => Err(StepError::invalid(format!("Redis at {} refused {}: {e} (grant it to the ACL user)", self.shown, args[0]))),
            Reply::Error(e) => Err(StepError::new(ErrorClass::Error, format!("Redis at {} answered {} with an error: {e}", self.shown, args[0]))),
            r => Ok(r),
        }
    }

    /// `INFO` (all sections) as `field → value`.
    pub async fn info(&mut self) -> Result<Info, StepError> {
        let text = self.ok(&["INFO", "everything"]).await?.text().unwrap_or_default();
        Ok(Info::parse(&text))
    }

    /// Sends a command whose answer is not a reply but a stream (`SYNC`): read it with
    /// [`Conn::read_line`] and [`Conn::read_some`].
    pub async fn send(&mut self, args: &[&str]) -> Result<(), StepError> {
        let out = encode(args);
        let shown = self.shown.clone();
        tokio::time::timeout(self.timeout, async {
            self.io.get_mut().write_all(&out).await?;
            self.io.get_mut().flush().await
        })
        .await
        .map_err(|_| StepError::new(ErrorClass::Timeout, format!("Redis at {shown} did not take {} in time", args[0])))?
        .map_err(|e| StepError::new(ErrorClass::Unavailable, format!("Redis at {shown}: {} failed: {e}", args[0])))
    }

    /// One line of a stream, without its `\r\n`; waits up to the timeout for it.
    pub async fn read_line(&mut self) -> Result<String, StepError> {
        let mut line = Vec::new();
        let n = tokio::time::timeout(self.timeout, self.io.read_until(b'\n', &mut line))
            .await
            .map_err(|_| StepError::new(ErrorClass::Timeout, format!("Redis at {} sent nothing for {}", self.shown, crate::duration::short(self.timeout))))?
            .map_err(|e| StepError::new(ErrorClass::Unavailable, format!("reading from Redis at {}: {e}", self.shown)))?;
        if n == 0 {
            return Err(StepError::new(ErrorClass::Unavailable, format!("Redis at {} closed the connection", self.shown)));
        }
        Ok(String::from_utf8_lossy(&line).trim_end_matches(['\r', '\n']).to_string())
    }

    /// The next bytes of a stream into `buf` (0 at its end); waits up to the timeout.
    pub async fn read_some(&mut self, buf: &mut [u8]) -> Result<usize, StepError> {
        tokio::time::timeout(self.timeout, self.io.read(buf))
            .await
            .map_err(|_| StepError::new(ErrorClass::Timeout, format!("Redis at {} sent nothing for {}", self.shown, crate::duration::short(self.timeout))))?
            .map_err(|e| StepError::new(ErrorClass::Unavailable, format!("reading from Redis at {}: {e}", self.shown)))
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// `INFO`'s `field:value` lines.
#[derive(Clone, Debug, Default)]
pub struct Info(pub std::collections::BTreeMap<String, String>);

impl Info {
    pub fn parse(text: &str) -> Info {
        Info(text.lines().filter(|l| !l.starts_with('#')).filter_map(|l| l.split_once(':')).map(|(k, v)| (k.to_string(), v.trim().to_string())).collect())
    }

    pub fn get(&self, field: &str) -> Option<&str> {
        self.0.get(field).map(String::as_str)
    }

    pub fn num(&self, field: &str) -> Option<f64> {
        self.get(field)?.parse().ok()
    }
}

/// A command in RESP: an array of bulk strings.
fn encode(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn unreachable(at: &str, e: &std::io::Error) -> StepError {
    use std::io::ErrorKind::*;
    let why = match e.kind() {
        ConnectionRefused => "connection refused".to_string(),
        TimedOut => "connection timed out".to_string(),
        _ => crate::error::io_reason(e),
    };
    StepError::new(ErrorClass::Unavailable, format!("cannot reach Redis at {at}: {why}"))
}

/// `WRONGPASS invalid username-password pair` → `WRONGPASS: invalid username-password pair`.
fn first_word_rest(e: &str) -> String {
    match e.split_once(' ') {
        Some((code, rest)) => format!("{code}: {rest}"),
        None => e.to_string(),
    }
}

type ReadResult = std::io::Result<Reply>;

/// Reads one RESP2 reply.
fn read_reply<'a, R: AsyncBufReadExt + Unpin + Send>(r: &'a mut R) -> Pin<Box<dyn std::future::Future<Output = ReadResult> + Send + 'a>> {
    Box::pin(async move {
        let mut line = Vec::new();
        let n = r.read_until(b'\n', &mut line).await?;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the server closed the connection"));
        }
        let line = String::from_utf8_lossy(&line).trim_end_matches(['\r', '\n']).to_string();
        let (kind, rest) = line.split_at(line.char_indices().nth(1).map_or(line.len(), |(i, _)| i));
        let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{what} in a reply: {line:?}"));
        let len = |s: &str| s.parse::<i64>().map_err(|_| bad("a bad length"));
        Ok(match kind {
            "+" => Reply::Status(rest.to_string()),
            "-" => Reply::Error(rest.to_string()),
            ":" => Reply::Int(len(rest)?),
            "$" => match len(rest)? {
                n if n < 0 => Reply::Bulk(None),
                n => {
                    let mut buf = vec![0u8; n as usize + 2];
                    r.read_exact(&mut buf).await?;
                    buf.truncate(n as usize);
                    Reply::Bulk(Some(buf))
                }
            },
            "*" => match len(rest)? {
                n if n < 0 => Reply::Array(None),
                n => {
                    let mut items = Vec::with_capacity(n.min(1024) as usize);
                    for _ in 0..n {
                        items.push(read_reply(r).await?);
                    }
                    Reply::Array(Some(items))
                }
            },
            _ => return Err(bad("an unknown type")),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_read_as_resp2_writes_them() {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let read = |bytes: &'static [u8]| rt.block_on(async { read_reply(&mut BufReader::new(bytes)).await.unwrap() });
        assert_eq!(read(b"+PONG\r\n"), Reply::Status("PONG".into()));
        assert_eq!(read(b"-ERR no\r\n"), Reply::Error("ERR no".into()));
        assert_eq!(read(b":42\r\n").int(), Some(42));
        assert_eq!(read(b"$3\r\nabc\r\n").text().as_deref(), Some("abc"));
        assert_eq!(read(b"$-1\r\n"), Reply::Bulk(None));
        assert_eq!(read(b"*2\r\n:1\r\n*1\r\n$1\r\nx\r\n").items()[1].items()[0].text().as_deref(), Some("x"));
    }

    #[test]
    fn urls_keep_credentials_apart() {
        let s = |url: &str| RedisSettings { url: HeaderValue::Text(url.into()), ca_file: None, insecure: false, timeout: None, port_forward: None };
        let t = Target::from_settings(&s("redis://cache.internal:6380/2")).unwrap();
        assert_eq!((t.host.as_str(), t.port, t.db, t.tls, t.shown.as_str()), ("cache.internal", 6380, 2, false, "redis://cache.internal:6380/2"));
        assert!(Target::from_settings(&s("rediss://h")).unwrap().tls);
        let e = Target::from_settings(&s("redis://app:hunter2@h:6379")).err().unwrap();
        assert!(e.message.starts_with("redis.url holds a password: give the URL by reference"), "{}", e.message);
        assert!(Target::from_settings(&s("http://h")).err().unwrap().message.contains("use redis:// or rediss://"));
    }
}
