//! The portforward subresource over WebSocket, as the API server serves it to WebSocket
//! clients (`v4.channel.k8s.io`; kubectl's SPDY is not served): `?ports=5432[,6379]`; for
//! the i-th port, channel 2i carries data both ways and channel 2i+1 the error text; the
//! first frame the server sends on each channel is the port number (two bytes, little
//! endian). The fake's pods are this machine: a pod's port N is 127.0.0.1:N unless the test
//! mapped it elsewhere ([`Cluster::forwards`]), which is how a pod's 5432 reaches the
//! test's PostgreSQL on a free port. Like the kubelet, a port that refuses the connection
//! gets its reason on the error channel, and the WebSocket closes when every port's
//! connection has ended. The pod must exist and be Running; `create pods/portforward` can be
//! forbidden, and a test can let only so many connections through
//! ([`Cluster::forward_budget`]).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::exec::{bad, frame};
use super::store::{ApiError, Cluster, type_of};

pub fn upgrade(cluster: &Arc<Mutex<Cluster>>, mut req: Request<Incoming>, path: &str, q: &[(String, String)]) -> Response<Full<Bytes>> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (ns, name) = match segs.as_slice() {
        ["api", "v1", "namespaces", ns, "pods", name, "portforward"] => (ns.to_string(), name.to_string()),
        _ => return bad(ApiError::new(404, "NotFound", "the server could not find the requested resource")),
    };
    let (pod, targets, refused) = {
        let mut c = cluster.lock().unwrap();
        if c.forbidden.iter().any(|(v, r)| v == "create" && r == "pods/portforward") {
            return bad(ApiError::new(
                403,
                "Forbidden",
                format!("pods \"{name}\" is forbidden: User \"opsctl\" cannot create resource \"pods/portforward\" in API group \"\" in the namespace \"{ns}\""),
            ));
        }
        let pod = match c.get(type_of("pods"), &ns, &name) {
            Ok(p) => p,
            Err(e) => return bad(e),
        };
        let refused = c.forward_budget == Some(0);
        if let Some(b) = c.forward_budget.as_mut() {
            *b = b.saturating_sub(1);
        }
        (pod, c.forwards.clone(), refused)
    };
    if pod["status"]["phase"] != "Running" {
        return bad(ApiError::new(400, "BadRequest", format!("pod {name} is not running: cannot forward ports")));
    }
    let mut ports = Vec::new();
    for p in q.iter().filter(|(k, _)| k == "ports").flat_map(|(_, v)| v.split(',')) {
        match p.trim().parse::<u16>() {
            Ok(n) if n > 0 => ports.push(n),
            _ => return bad(ApiError::new(400, "BadRequest", format!("invalid port {p:?}"))),
        }
    }
    if ports.is_empty() {
        return bad(ApiError::new(400, "BadRequest", "query parameter \"ports\" is required"));
    }
    let offered = req.headers().get("sec-websocket-protocol").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    if !offered.split(',').any(|o| o.trim() == "v4.channel.k8s.io") {
        return bad(ApiError::new(400, "BadRequest", "the fake serves port-forwarding only over the v4.channel.k8s.io WebSocket protocol"));
    }
    let Some(key) = req.headers().get("sec-websocket-key").map(|k| k.as_bytes().to_vec()) else {
        return bad(ApiError::new(400, "BadRequest", "port-forwarding needs a WebSocket upgrade"));
    };
    let uid = pod["metadata"]["uid"].as_str().unwrap_or_default().to_string();
    let addrs: Vec<SocketAddr> = ports
        .iter()
        .map(|p| targets.get(&(ns.clone(), name.clone(), *p)).copied().unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], *p))))
        .collect();
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(&key);
    tokio::spawn(async move {
        let Ok(upgraded) = hyper::upgrade::on(&mut req).await else { return };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        run(ws, name, uid, ports, addrs, refused).await;
    });
    Response::builder()
        .status(101)
        .header("upgrade", "websocket")
        .header("connection", "Upgrade")
        .header("sec-websocket-accept", accept)
        .header("sec-websocket-protocol", "v4.channel.k8s.io")
        .body(Full::new(Bytes::new()))
        .expect("response")
}

async fn run(ws: WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>, pod: String, uid: String, ports: Vec<u16>, addrs: Vec<SocketAddr>, refused: bool) {
    let (mut tx, mut rx) = ws.split();
    let (frames_tx, mut frames_rx) = tokio::sync::mpsc::channel::<Message>(64);
    // Each channel opens with its port number.
    for (i, port) in ports.iter().enumerate() {
        for ch in [2 * i as u8, 2 * i as u8 + 1] {
            if tx.send(frame(ch, &port.to_le_bytes())).await.is_err() {
                return;
            }
        }
    }
    let mut writers = Vec::new();
    let mut readers = Vec::new();
    for (i, (port, addr)) in ports.iter().zip(&addrs).enumerate() {
        let data = 2 * i as u8;
        let connected = if refused {
            Err(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
        } else {
            tokio::net::TcpStream::connect(addr).await
        };
        match connected {
            Ok(conn) => {
                let (mut r, w) = conn.into_split();
                writers.push(Some(w));
                let frames_tx = frames_tx.clone();
                readers.push(tokio::spawn(async move {
                    let mut buf = vec![0u8; 32 * 1024];
                    while let Ok(n) = r.read(&mut buf).await {
                        if n == 0 || frames_tx.send(frame(data, &buf[..n])).await.is_err() {
                            break;
                        }
                    }
                }));
            }
            Err(e) => {
                writers.push(None);
                let why = format!(
                    "error forwarding port {port} to pod {pod}, uid {uid}: failed to connect to localhost:{port} inside namespace of pod {pod}: dial tcp4 {addr}: connect: {}",
                    if e.kind() == std::io::ErrorKind::ConnectionRefused { "connection refused".to_string() } else { e.to_string() }
                );
                let _ = frames_tx.send(frame(data + 1, why.as_bytes())).await;
            }
        }
    }
    drop(frames_tx);
    // From the pods to the client, until every port's connection has ended.
    let sender = tokio::spawn(async move {
        while let Some(f) = frames_rx.recv().await {
            if tx.send(f).await.is_err() {
                return;
            }
        }
        let _ = tx.close().await;
    });
    // From the client to the pods, until it closes.
    while let Some(Ok(msg)) = rx.next().await {
        match msg {
            Message::Binary(data) if data.len() > 1 && data[0] % 2 == 0 => {
                if let Some(Some(w)) = writers.get_mut(usize::from(data[0] / 2))
                    && w.write_all(&data[1..]).await.is_err()
                {
                    writers[usize::from(data[0] / 2)] = None;
                }
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    // The client is gone: end the pods' connections.
    for w in writers.iter_mut().flatten() {
        let _ = w.shutdown().await;
    }
    drop(writers);
    for r in readers {
        r.abort();
    }
    let _ = sender.await;
}
