//! A small client for the Docker Engine API: what compose steps read.
//!
//! State is read from the engine directly — one `GET /containers/json` filtered by the
//! project's `com.docker.compose.project` label, then `inspect` calls in parallel —
//! instead of parsing `docker compose ps` tables: machine-readable, one round trip for the
//! list, the same whether Compose v1 or v2 is installed. The engine is found like the
//! docker CLI finds it: `$DOCKER_HOST` (`unix://…` or `tcp://…`), else
//! `/var/run/docker.sock`.

use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;

use crate::vocab::{ErrorClass, StepError};

/// Where the engine listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Unix(std::path::PathBuf),
    Tcp(String),
}

impl Endpoint {
    /// `$DOCKER_HOST`, else the default socket.
    pub fn from_env() -> Result<Endpoint, StepError> {
        let host = std::env::var("DOCKER_HOST").ok();
        let tls = std::env::var("DOCKER_TLS_VERIFY").is_ok_and(|v| !v.is_empty());
        Endpoint::parse(host.as_deref(), tls)
    }

    /// The endpoint for a `DOCKER_HOST` value.
    pub fn parse(host: Option<&str>, tls_verify: bool) -> Result<Endpoint, StepError> {
        match host.filter(|h| !h.is_empty()) {
            None => Ok(Endpoint::Unix("/var/run/docker.sock".into())),
            Some(h) => {
                if let Some(p) = h.strip_prefix("unix://") {
                    Ok(Endpoint::Unix(p.into()))
                } else if let Some(a) = h.strip_prefix("tcp://") {
                    if tls_verify {
                        return Err(StepError::invalid("DOCKER_TLS_VERIFY is set: opsctl reaches TLS-protected engines only through a unix socket or an SSH tunnel"));
                    }
                    Ok(Endpoint::Tcp(a.trim_end_matches('/').to_string()))
                } else {
                    Err(StepError::invalid(format!("DOCKER_HOST `{h}` is not unix://PATH or tcp://HOST:PORT")))
                }
            }
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Endpoint::Unix(p) => format!("unix://{}", p.display()),
            Endpoint::Tcp(a) => format!("tcp://{a}"),
        }
    }
}

/// The engine client.
#[derive(Clone, Debug)]
pub struct Docker {
    pub endpoint: Endpoint,
}

/// API version requested: Docker 20.10 and later speak it.
const API: &str = "/v1.41";

impl Docker {
    pub fn from_env() -> Result<Docker, StepError> {
        Ok(Docker { endpoint: Endpoint::from_env()? })
    }

    fn unreachable(&self, why: String) -> StepError {
        StepError::new(
            ErrorClass::Unavailable,
            format!("cannot reach the Docker engine at {}: {why} (is Docker running? DOCKER_HOST selects another engine)", self.endpoint.describe()),
        )
    }

    async fn send(&self, method: &str, path: &str, body: Option<serde_json::Value>) -> Result<(StatusCode, Bytes), StepError> {
        let uri = format!("{API}{path}");
        let mut builder = Request::builder().method(method).uri(&uri).header("host", "docker");
        let body = match body {
            Some(b) => {
                builder = builder.header("content-type", "application/json");
                http_body_util::Either::Left(http_body_util::Full::new(Bytes::from(b.to_string())))
            }
            None => http_body_util::Either::Right(Empty::<Bytes>::new()),
        };
        let request = builder.body(body).map_err(|e| StepError::error(format!("bad request {uri}: {e}")))?;
        macro_rules! exchange {
            ($stream:expr) => {{
                let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new($stream))
                    .await
                    .map_err(|e| self.unreachable(e.to_string()))?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                let response = sender.send_request(request).await.map_err(|e| self.unreachable(e.to_string()))?;
                let status = response.status();
                let bytes = response
                    .into_body()
                    .collect()
                    .await
                    .map_err(|e| self.unreachable(format!("reading the answer to {uri}: {e}")))?
                    .to_bytes();
                (status, bytes)
            }};
        }
        let connect_timeout = Duration::from_secs(5);
        let result = match &self.endpoint {
            Endpoint::Unix(p) => {
                let s = tokio::time::timeout(connect_timeout, tokio::net::UnixStream::connect(p))
                    .await
                    .map_err(|_| self.unreachable("no answer".into()))?
                    .map_err(|e| self.unreachable(crate::error::io_reason(&e)))?;
                exchange!(s)
            }
            Endpoint::Tcp(a) => {
                let s = tokio::time::timeout(connect_timeout, tokio::net::TcpStream::connect(a))
                    .await
                    .map_err(|_| self.unreachable("no answer".into()))?
                    .map_err(|e| self.unreachable(crate::error::io_reason(&e)))?;
                exchange!(s)
            }
        };
        Ok(result)
    }

    fn api_error(&self, what: &str, status: StatusCode, body: &[u8]) -> StepError {
        let msg = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string());
        let class = if status.is_server_error() { ErrorClass::Error } else { ErrorClass::Failed };
        StepError::new(class, format!("{what}: the Docker engine answered {}: {msg}", status.as_u16()))
    }

    /// `GET path` as JSON.
    pub async fn get(&self, path: &str, what: &str) -> Result<serde_json::Value, StepError> {
        let (status, body) = self.send("GET", path, None).await?;
        if !status.is_success() {
            return Err(self.api_error(what, status, &body));
        }
        serde_json::from_slice(&body).map_err(|e| StepError::error(format!("{what}: the Docker engine sent invalid JSON: {e}")))
    }

    /// `GET path` as raw bytes (logs).
    pub async fn get_raw(&self, path: &str, what: &str) -> Result<Bytes, StepError> {
        let (status, body) = self.send("GET", path, None).await?;
        if !status.is_success() {
            return Err(self.api_error(what, status, &body));
        }
        Ok(body)
    }

    /// Containers of a compose project (all states), with their compose labels.
    pub async fn project_containers(&self, project: &str) -> Result<Vec<Container>, StepError> {
        let filters = serde_json::json!({ "label": [format!("com.docker.compose.project={project}")] }).to_string();
        let path = format!("/containers/json?all=1&filters={}", percent_encoding::utf8_percent_encode(&filters, percent_encoding::NON_ALPHANUMERIC));
        let list = self.get(&path, "listing containers").await?;
        let ids: Vec<String> = list.as_array().into_iter().flatten().filter_map(|c| c["Id"].as_str().map(str::to_string)).collect();
        let inspected = futures_util::future::join_all(ids.iter().map(|id| async move { self.get(&format!("/containers/{id}/json"), "inspecting a container").await })).await;
        let mut out = Vec::new();
        for v in inspected {
            // A container removed between list and inspect is simply gone.
            let Ok(v) = v else { continue };
            out.push(Container::from_inspect(&v));
        }
        out.sort_by(|a, b| (a.service.as_str(), a.number).cmp(&(b.service.as_str(), b.number)));
        Ok(out)
    }
}

/// A compose container, from `docker inspect`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Container {
    pub id: String,
    pub name: String,
    pub service: String,
    /// `com.docker.compose.container-number`.
    pub number: u32,
    /// running, exited, restarting, paused, created, dead.
    pub state: String,
    /// healthy, unhealthy, starting; `None` without a healthcheck.
    pub health: Option<String>,
    pub exit_code: i64,
    pub restart_count: i64,
    pub started_at: String,
    /// The image as the container was created with it (`Config.Image`).
    pub image: String,
}

impl Container {
    fn from_inspect(v: &serde_json::Value) -> Container {
        let labels = &v["Config"]["Labels"];
        Container {
            id: v["Id"].as_str().unwrap_or_default().to_string(),
            name: v["Name"].as_str().unwrap_or_default().trim_start_matches('/').to_string(),
            service: labels["com.docker.compose.service"].as_str().unwrap_or_default().to_string(),
            number: labels["com.docker.compose.container-number"].as_str().and_then(|n| n.parse().ok()).unwrap_or(0),
            state: v["State"]["Status"].as_str().unwrap_or_default().to_string(),
            health: v["State"]["Health"]["Status"].as_str().map(str::to_string),
            exit_code: v["State"]["ExitCode"].as_i64().unwrap_or(0),
            restart_count: v["RestartCount"].as_i64().unwrap_or(0),
            started_at: v["State"]["StartedAt"].as_str().unwrap_or_default().to_string(),
            image: v["Config"]["Image"].as_str().unwrap_or_default().to_string(),
        }
    }

    pub fn running(&self) -> bool {
        self.state == "running"
    }

    /// Running, and healthy if it has a healthcheck.
    pub fn ready(&self) -> bool {
        self.running() && self.health.as_deref().is_none_or(|h| h == "healthy")
    }

    /// `running (healthy)`, `exited (3)`.
    pub fn describe(&self) -> String {
        match (&self.health, self.state.as_str()) {
            (Some(h), "running") => format!("running ({h})"),
            (_, "exited") => format!("exited ({})", self.exit_code),
            (_, s) => s.to_string(),
        }
    }
}

/// Splits a non-TTY log stream into lines: each frame is an 8-byte header (stream, 3
/// zero bytes, big-endian length) and its payload.
pub fn log_lines(raw: &[u8]) -> Vec<String> {
    let mut text = Vec::with_capacity(raw.len());
    let mut rest = raw;
    let framed = raw.len() >= 8 && matches!(raw[0], 0..=2) && raw[1..4] == [0, 0, 0];
    if framed {
        while rest.len() >= 8 {
            let len = u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]) as usize;
            let end = (8 + len).min(rest.len());
            text.extend_from_slice(&rest[8..end]);
            rest = &rest[end..];
        }
    } else {
        text.extend_from_slice(raw);
    }
    String::from_utf8_lossy(&text).lines().map(str::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_multiplexed_log_frames() {
        let mut raw = vec![1, 0, 0, 0, 0, 0, 0, 6];
        raw.extend_from_slice(b"hello\n");
        raw.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 11]);
        raw.extend_from_slice(b"ERROR boom\n");
        assert_eq!(log_lines(&raw), vec!["hello", "ERROR boom"]);
        assert_eq!(log_lines(b"plain\ntext\n"), vec!["plain", "text"]);
    }

    #[test]
    fn docker_host_is_honoured() {
        assert_eq!(Endpoint::parse(None, false).unwrap(), Endpoint::Unix("/var/run/docker.sock".into()));
        assert_eq!(Endpoint::parse(Some("unix:///run/d.sock"), false).unwrap().describe(), "unix:///run/d.sock");
        assert_eq!(Endpoint::parse(Some("tcp://10.0.0.1:2375/"), false).unwrap(), Endpoint::Tcp("10.0.0.1:2375".into()));
        assert!(Endpoint::parse(Some("tcp://10.0.0.1:2376"), true).is_err());
        assert_eq!(Endpoint::parse(Some("ssh://x"), false).unwrap_err().message, "DOCKER_HOST `ssh://x` is not unix://PATH or tcp://HOST:PORT");
    }
}
