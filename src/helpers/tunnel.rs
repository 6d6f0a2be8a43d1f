//! Connections to a port this machine cannot reach by address — a database inside a
//! Kubernetes cluster, reached through the API server's portforward subresource.
//!
//! The Kubernetes backend opens a [`Tunnel`] for `port_forward:` settings (asked through
//! [`crate::kind::Backends::port_forward`]); PostgreSQL and Redis connect through its
//! streams instead of TCP. Programs that connect by address themselves (`pg_dump`,
//! `pg_restore`) get a [`LocalPort`]: a loopback listener that lives as long as the step
//! that needs it, so no port is left open after the run.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::vocab::{ErrorClass, StepError};

/// A byte stream both ways: a TCP connection, a TLS session, a forwarded port.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A boxed [`Io`]. A struct rather than an alias: the compiler proves `'static` bounds on
/// it inside async functions, which it fails to do for `Box<dyn Io>` (tokio-postgres's TLS
/// connector wants one).
pub struct Stream(Box<dyn Io>);

impl Stream {
    pub fn new(io: impl Io + 'static) -> Stream {
        Stream(Box::new(io))
    }
}

impl AsyncRead for Stream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}

/// Opens connections to one port of something out of reach (a pod's port).
pub trait Tunnel: Send + Sync {
    /// For messages: `postgres-0:5432 (port-forward)`.
    fn describe(&self) -> String;
    /// A new connection to the port.
    fn open(&self) -> BoxFuture<'_, Result<Stream, StepError>>;
}

impl std::fmt::Debug for dyn Tunnel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// `port_forward:` in a `postgres:` or `redis:` section: reach the server through the
/// Kubernetes API server's portforward subresource, as `kubectl port-forward` does, but
/// without kubectl and without a local port left open.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(try_from = "PortForwardFields", into = "PortForwardFields")]
pub struct PortForward {
    pub to: ForwardTo,
    /// The port: the pod's, or the service's (mapped to its target port).
    pub port: u16,
}

/// What a port-forward goes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ForwardTo {
    Pod(String),
    /// Resolved to one of its ready pods when the step runs.
    Service(String),
}

/// `port_forward:` as written: exactly one of `pod` and `service`, and a port.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PortForwardFields {
    /// A pod in the instance's Kubernetes namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// A service in the instance's namespace; one of its ready pods is used, and the
    /// service's port is mapped to that pod's target port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The pod's port, or the service's.
    pub port: u16,
}

impl TryFrom<PortForwardFields> for PortForward {
    type Error = String;

    fn try_from(f: PortForwardFields) -> Result<PortForward, String> {
        let to = match (f.pod, f.service) {
            (Some(p), None) if !p.is_empty() => ForwardTo::Pod(p),
            (None, Some(s)) if !s.is_empty() => ForwardTo::Service(s),
            (Some(_), Some(_)) => return Err("`port_forward` takes one of `pod` and `service`, not both".into()),
            _ => return Err("`port_forward` needs `pod: NAME` or `service: NAME`".into()),
        };
        if f.port == 0 {
            return Err("`port_forward.port` cannot be 0".into());
        }
        Ok(PortForward { to, port: f.port })
    }
}

impl From<PortForward> for PortForwardFields {
    fn from(p: PortForward) -> PortForwardFields {
        let (pod, service) = match p.to {
            ForwardTo::Pod(n) => (Some(n), None),
            ForwardTo::Service(n) => (None, Some(n)),
        };
        PortForwardFields { pod, service, port: p.port }
    }
}

/// A loopback port whose connections each go through a tunnel, for programs that connect
/// by address. Dropping it stops listening and ends the connections it carries.
pub struct LocalPort {
    pub port: u16,
    /// Why the last connection could not be forwarded, for the program's error message.
    last_error: Arc<Mutex<Option<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl LocalPort {
    /// Listens on 127.0.0.1 (a free port) and forwards every connection through `tunnel`.
    pub async fn open(tunnel: Arc<dyn Tunnel>) -> Result<LocalPort, StepError> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| StepError::error(format!("cannot listen on a loopback port for {}: {}", tunnel.describe(), crate::error::io_reason(&e))))?;
        let port = listener.local_addr().map_err(|e| StepError::error(format!("loopback listener: {e}")))?.port();
        let last_error = Arc::new(Mutex::new(None));
        let errors = last_error.clone();
        let task = tokio::spawn(async move {
            // Dropped (and with it every connection) when the listener task is aborted.
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((mut local, _)) = listener.accept().await else {
                    // Out of file descriptors, say: wait rather than spin.
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                };
                let (tunnel, errors) = (tunnel.clone(), errors.clone());
                connections.spawn(async move {
                    match tunnel.open().await {
                        Ok(mut remote) => {
                            if let Err(e) = tokio::io::copy_bidirectional(&mut local, &mut remote).await
                                && e.kind() == std::io::ErrorKind::ConnectionAborted
                            {
                                // The far end's reason (see Explained).
                                *errors.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                            }
                        }
                        Err(e) => {
                            tracing::warn!("cannot forward a connection to {}: {}", tunnel.describe(), e.message);
                            *errors.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.message);
                        }
                    }
                });
                while connections.try_join_next().is_some() {}
            }
        });
        Ok(LocalPort { port, last_error, task })
    }

    /// Why the last connection could not be forwarded, readable after this is gone.
    pub fn errors(&self) -> ForwardErrors {
        ForwardErrors(self.last_error.clone())
    }
}

/// Why a [`LocalPort`]'s last connection could not be forwarded, if one could not.
#[derive(Clone)]
pub struct ForwardErrors(Arc<Mutex<Option<String>>>);

impl ForwardErrors {
    pub fn get(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for LocalPort {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A forwarded stream whose far end may say why it closed (the API server's error channel):
/// at the end of the stream, that reason becomes the read error.
pub struct Explained<S> {
    inner: S,
    why: Option<BoxFuture<'static, Option<String>>>,
}

impl<S> Explained<S> {
    pub fn new(inner: S, why: BoxFuture<'static, Option<String>>) -> Explained<S> {
        Explained { inner, why: Some(why) }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Explained<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if buf.filled().len() == before => {
                // The end: if the far end said why, that is the error.
                if let Some(why) = this.why.as_mut()
                    && let Poll::Ready(reason) = why.as_mut().poll(cx)
                {
                    this.why = None;
                    if let Some(reason) = reason.filter(|r| !r.trim().is_empty()) {
                        return Poll::Ready(Err(std::io::Error::new(std::io::ErrorKind::ConnectionAborted, reason)));
                    }
                }
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Explained<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// An error for a tunnel that could not be opened in time.
pub fn open_timeout(what: &str, after: std::time::Duration) -> StepError {
    StepError::new(ErrorClass::Timeout, format!("{what} did not open within {}", crate::duration::short(after)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_one_of_pod_and_service() {
        let f = |pod: Option<&str>, service: Option<&str>, port| {
            PortForward::try_from(PortForwardFields { pod: pod.map(Into::into), service: service.map(Into::into), port })
        };
        assert_eq!(f(Some("pg-0"), None, 5432).unwrap(), PortForward { to: ForwardTo::Pod("pg-0".into()), port: 5432 });
        assert_eq!(f(None, Some("redis"), 6379).unwrap().to, ForwardTo::Service("redis".into()));
        assert_eq!(f(Some("a"), Some("b"), 1).unwrap_err(), "`port_forward` takes one of `pod` and `service`, not both");
        assert_eq!(f(None, None, 1).unwrap_err(), "`port_forward` needs `pod: NAME` or `service: NAME`");
        assert_eq!(f(Some("a"), None, 0).unwrap_err(), "`port_forward.port` cannot be 0");
    }

    #[test]
    fn the_far_ends_reason_is_the_read_error_at_the_end() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            use tokio::io::AsyncReadExt;
            let (a, b) = tokio::io::duplex(64);
            drop(b);
            let mut s = Explained::new(a, Box::pin(async { Some("dial tcp4 127.0.0.1:5432: connect: connection refused".to_string()) }));
            let mut buf = Vec::new();
            let err = s.read_to_end(&mut buf).await.unwrap_err();
            assert_eq!(err.to_string(), "dial tcp4 127.0.0.1:5432: connect: connection refused");
            let (a, b) = tokio::io::duplex(64);
            drop(b);
            let mut s = Explained::new(a, Box::pin(async { None }));
            assert_eq!(s.read_to_end(&mut buf).await.unwrap(), 0);
        });
    }
}
