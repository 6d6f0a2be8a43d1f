//! The exec subresource's channel protocol, full duplex.
//!
//! kube's `AttachedProcess` runs one loop that both forwards standard input and reads what
//! the server sends, and waits inside the loop for each write. A program that exits before
//! it has read all its input (`pg_restore --list` reads only an archive's table of
//! contents) then deadlocks it: the loop waits to send input nobody reads, never sees the
//! exit status, and a writer into its small stdin buffer waits forever. Here reading and
//! writing are separate tasks: the reader hands out stdout and stderr and the final
//! `Status`; when the program has ended, the writer is stopped and further writes to
//! standard input fail with `BrokenPipe` at once.
//!
//! Frames carry their channel in the first byte: 0 stdin, 1 stdout, 2 stderr, 3 the
//! final `Status`, 255 "close channel N" (v5.channel.k8s.io; on v4 the end of standard input
//! can only be said by closing the connection).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::api::AttachParams;
use tokio_tungstenite::tungstenite::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::oneshot;

use super::Kube;
use crate::vocab::StepError;

/// Buffered between the connection and the caller, each way.
const BUFFER: usize = 64 * 1024;

/// A started program in a pod.
pub struct ExecStream {
    /// Its standard input (when asked for); shut it down to close the program's input.
    pub stdin: Option<DuplexStream>,
    pub stdout: DuplexStream,
    pub stderr: DuplexStream,
    /// The final `Status`, or `None` when the connection ended without one.
    pub status: oneshot::Receiver<Option<Status>>,
}

/// Starts `argv` in `pod` (its `container`, else the first).
pub async fn exec(kube: &Kube, pod: &str, container: Option<&str>, argv: Vec<String>, stdin: bool) -> Result<ExecStream, StepError> {
    let what = format!("exec in pod {pod}");
    let mut params = AttachParams::default().stdin(stdin).stdout(true).stderr(true);
    if let Some(c) = container {
        params = params.container(c);
    }
    let url = <Pod as kube::Resource>::url_path(&(), Some(&kube.namespace));
    let mut request = kube::core::Request::new(url)
        .exec(pod, argv, &params)
        .map_err(|e| StepError::invalid(format!("{what}: cannot build the request: {e}")))?;
    request.extensions_mut().insert("exec");
    let connection = kube.client.connect(request).await.map_err(|e| kube.error(e, &what))?;
    let can_close = connection.supports_stream_close();
    let (mut sink, mut source) = connection.into_stream().split();

    let (stdout, mut out_w) = tokio::io::duplex(BUFFER);
    let (stderr, mut err_w) = tokio::io::duplex(BUFFER);
    let (status_tx, status) = oneshot::channel();
    let (caller_in, mut our_in) = tokio::io::duplex(BUFFER);
    let (ended_tx, mut ended) = oneshot::channel::<()>();

    // Standard input out, and a ping now and then so an idle connection stays open.
    tokio::spawn(async move {
        let mut buf = vec![0u8; BUFFER];
        let mut open = stdin;
        let mut ping = tokio::time::interval(Duration::from_secs(30));
        ping.tick().await;
        loop {
            tokio::select! {
                _ = &mut ended => break,
                _ = ping.tick() => {
                    if sink.send(Message::Ping(Default::default())).await.is_err() {
                        break;
                    }
                }
                read = our_in.read(&mut buf[1..]), if open => match read {
                    Ok(0) | Err(_) => {
                        open = false;
                        let end = if can_close { sink.send(Message::binary(vec![255u8, 0])).await } else { sink.close().await };
                        if end.is_err() {
                            break;
                        }
                    }
                    Ok(n) => {
                        buf[0] = 0;
                        if sink.send(Message::binary(buf[..=n].to_vec())).await.is_err() {
                            break;
                        }
                    }
                },
            }
        }
        // Dropping our end makes the caller's pending and later writes fail (BrokenPipe).
        drop(our_in);
    });

    // Everything the server sends, until the status or the end of the connection.
    tokio::spawn(async move {
        let mut status = None;
        while let Some(Ok(message)) = source.next().await {
            let Message::Binary(data) = message else {
                if matches!(message, Message::Close(_)) {
                    break;
                }
                continue;
            };
            match data.first() {
                // A reader that went away no longer gets the rest; the program still runs
                // to its end.
                Some(1) if data.len() > 1 => {
                    let _ = out_w.write_all(&data[1..]).await;
                }
                Some(2) if data.len() > 1 => {
                    let _ = err_w.write_all(&data[1..]).await;
                }
                Some(3) if data.len() > 1 => {
                    status = serde_json::from_slice::<Status>(&data[1..]).ok();
                    break;
                }
                _ => {}
            }
        }
        let _ = ended_tx.send(());
        let _ = out_w.shutdown().await;
        let _ = err_w.shutdown().await;
        let _ = status_tx.send(status);
    });

    Ok(ExecStream { stdin: stdin.then_some(caller_in), stdout, stderr, status })
}
