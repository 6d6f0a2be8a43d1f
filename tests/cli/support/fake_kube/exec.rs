//! The exec subresource over WebSocket (`v5.channel.k8s.io`, else `v4.channel.k8s.io`): the
//! fake's containers are this machine, so the argv runs here as a local process, with the
//! container's plain `env` values. Frames carry the channel in their first byte (0 stdin,
//! 1 stdout, 2 stderr, 3 the final `Status`, 255 close in v5); a non-zero exit is a
//! `NonZeroExitCode` Status with the code in its causes, as the kubelet reports it.

use std::process::Stdio;
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::store::{ApiError, Cluster, type_of};

/// An API error as the API server answers an upgrade it refuses.
pub(super) fn bad(e: ApiError) -> Response<Full<Bytes>> {
    Response::builder()
        .status(e.code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(e.status().to_string())))
        .expect("response")
}

pub fn upgrade(cluster: &Arc<Mutex<Cluster>>, mut req: Request<Incoming>, path: &str, q: &[(String, String)]) -> Response<Full<Bytes>> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (ns, name) = match segs.as_slice() {
        ["api", "v1", "namespaces", ns, "pods", name, "exec"] => (ns.to_string(), name.to_string()),
        _ => return bad(ApiError::new(404, "NotFound", "the server could not find the requested resource")),
    };
    let pod = match cluster.lock().unwrap().get(type_of("pods"), &ns, &name) {
        Ok(p) => p,
        Err(e) => return bad(e),
    };
    let containers: Vec<Value> = pod["spec"]["containers"].as_array().cloned().unwrap_or_default();
    let wanted = q.iter().find(|(k, _)| k == "container").map(|(_, v)| v.clone());
    let container = match wanted {
        Some(c) => match containers.iter().find(|ct| ct["name"] == c.as_str()) {
            Some(ct) => ct.clone(),
            None => return bad(ApiError::new(400, "BadRequest", format!("container {c} is not valid for pod {name}"))),
        },
        None => containers.first().cloned().unwrap_or_default(),
    };
    let argv: Vec<String> = q.iter().filter(|(k, _)| k == "command").map(|(_, v)| v.clone()).collect();
    if argv.is_empty() {
        return bad(ApiError::new(400, "BadRequest", "you must specify at least 1 command"));
    }
    let stdin = q.iter().any(|(k, v)| k == "stdin" && v == "true");
    let env: Vec<(String, String)> = container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| Some((e["name"].as_str()?.to_string(), e["value"].as_str()?.to_string())))
        .collect();
    let offered = req.headers().get("sec-websocket-protocol").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let protocol = ["v5.channel.k8s.io", "v4.channel.k8s.io"].into_iter().find(|p| offered.split(',').any(|o| o.trim() == *p));
    let Some(protocol) = protocol else {
        return bad(ApiError::new(400, "BadRequest", "the fake serves only the v5.channel.k8s.io and v4.channel.k8s.io exec protocols"));
    };
    let Some(key) = req.headers().get("sec-websocket-key").map(|k| k.as_bytes().to_vec()) else {
        return bad(ApiError::new(400, "BadRequest", "exec needs a WebSocket upgrade"));
    };
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(&key);
    tokio::spawn(async move {
        let Ok(upgraded) = hyper::upgrade::on(&mut req).await else { return };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        run(ws, argv, env, stdin).await;
    });
    Response::builder()
        .status(101)
        .header("upgrade", "websocket")
        .header("connection", "Upgrade")
        .header("sec-websocket-accept", accept)
        .header("sec-websocket-protocol", protocol)
        .body(Full::new(Bytes::new()))
        .expect("response")
}

/// A binary frame on `channel` (its first byte).
pub(super) fn frame(channel: u8, data: &[u8]) -> Message {
    let mut v = Vec::with_capacity(data.len() + 1);
    v.push(channel);
    v.extend_from_slice(data);
    Message::binary(v)
}

async fn run(ws: WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>, argv: Vec<String>, env: Vec<(String, String)>, stdin: bool) {
    let (mut tx, mut rx) = ws.split();
    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.args(&argv[1..]).envs(env).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    cmd.stdin(if stdin { Stdio::piped() } else { Stdio::null() });
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let status = json!({"metadata": {}, "status": "Failure", "reason": "InternalError", "code": 500,
                                "message": format!("Internal error occurred: error executing command in container: exec: {:?}: {e}", argv[0])});
            let _ = tx.send(frame(3, status.to_string().as_bytes())).await;
            let _ = tx.close().await;
            return;
        }
    };
    let (frames_tx, mut frames_rx) = tokio::sync::mpsc::channel::<Message>(64);
    for (channel, mut reader) in [(1u8, Box::new(child.stdout.take().expect("piped")) as Box<dyn tokio::io::AsyncRead + Unpin + Send>), (2u8, Box::new(child.stderr.take().expect("piped")))] {
        let frames_tx = frames_tx.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match reader.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if frames_tx.send(frame(channel, &buf[..n])).await.is_err() {
                            break;
                        }
                    }
                }
            }
        });
    }
    drop(frames_tx);
    let mut child_stdin = child.stdin.take();
    let sender = tokio::spawn(async move {
        while let Some(f) = frames_rx.recv().await {
            if tx.send(f).await.is_err() {
                break;
            }
        }
        tx
    });
    // Standard input from the client until it closes it (or the program ends).
    let input = tokio::spawn(async move {
        while let Some(Ok(msg)) = rx.next().await {
            let Message::Binary(data) = msg else {
                if matches!(msg, Message::Close(_)) {
                    break;
                }
                continue;
            };
            match data.first() {
                Some(0) => {
                    if let Some(s) = child_stdin.as_mut()
                        && s.write_all(&data[1..]).await.is_err() {
                            child_stdin = None;
                        }
                }
                Some(255) if data.get(1) == Some(&0) => break,
                _ => {}
            }
        }
        drop(child_stdin);
    });
    let status = child.wait().await;
    input.abort();
    let Ok(mut tx) = sender.await else { return };
    let code = status.ok().and_then(|s| s.code()).unwrap_or(-1);
    let status = if code == 0 {
        json!({"metadata": {}, "status": "Success"})
    } else {
        json!({"metadata": {}, "status": "Failure", "reason": "NonZeroExitCode",
               "message": format!("command terminated with non-zero exit code: error executing command {argv:?}: exit status {code}"),
               "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]}})
    };
    let _ = tx.send(frame(3, status.to_string().as_bytes())).await;
    let _ = tx.close().await;
}
