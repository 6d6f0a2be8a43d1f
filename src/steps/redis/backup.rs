//! `redis.backup`: an RDB snapshot of the instance's Redis into its backup store, taken as
//! `redis-cli --rdb` takes it — the way a replica is fed: `REPLCONF rdb-only 1`, then `SYNC`
//! — and streamed through a SHA-256 into the store, the manifest written last. The server
//! makes the snapshot as it does for a replica (on its disk, or straight onto the socket
//! with `repl-diskless-sync`); opsctl reads nothing from the server's disk, and its memory
//! stays flat whatever the size.
//!
//! Restoring an RDB means stopping the server and putting the file in its `dir`: the README
//! gives the procedure; opsctl does not pretend to do it online.

use std::collections::BTreeMap;
use std::time::Instant;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::backup::{self, Manifest};
use crate::kind::{BackupFormat, StepContext, StepKind};
use crate::units::human_bytes;
use crate::vocab::{Effect, ErrorClass, Outcome, Output, StepError};

/// The file a Redis backup's snapshot is stored as.
pub const RDB_FILE: &str = "dump.rdb";
/// The manifest's section for a Redis backup (`"redis": {…}`).
pub const SOURCE: &str = "redis";

/// Where a Redis backup came from.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RedisSource {
    /// `redis://host:6379/0`, without credentials.
    pub server: String,
    pub version: String,
    /// Keys per database at the time of the snapshot (`INFO keyspace`).
    pub databases: BTreeMap<String, u64>,
    pub keys: u64,
    pub used_memory: u64,
}

/// Redis backups: checked by their header, EOF opcode and CRC64; listed with their server.
pub const FORMAT: BackupFormat = BackupFormat {
    kind: SOURCE,
    file: RDB_FILE,
    check: |_, manifest, rdb| Box::pin(async move { super::rdb::check(rdb, &manifest.id).await }),
    describe: |m| {
        let r: RedisSource = m.source(SOURCE)?;
        Some((format!("{} @ Redis {}", r.server, r.version), r.keys.to_string()))
    },
};

/// Snapshot the instance's Redis (RDB) into its backup store.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Backup {}

/// How the server frames the snapshot.
enum Framing {
    /// `$<length>`: that many bytes.
    Length(u64),
    /// `$EOF:<40 bytes>` (a diskless transfer): until those 40 bytes.
    Mark(Vec<u8>),
}

impl StepKind for Backup {
    const NAME: &'static str = "redis.backup";
    const PERMISSIONS: &'static [crate::vocab::Permission] = {
        use crate::vocab::*;
        &[aws(&["s3:PutObject", "s3:GetObject", "s3:ListBucket", "s3:AbortMultipartUpload"], AwsOn::Bucket)]
    };
    const SUMMARY: &'static str = "an RDB snapshot over the replication protocol (as redis-cli --rdb), streamed into the backup store with a sha256 and a manifest (written last)";
    const EFFECT: Effect = Effect::Mutate;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "id", ty: "string", help: "the backup" },
        Output { name: "path", ty: "string", help: "where it is" },
        Output { name: "sha256", ty: "string", help: "of the RDB" },
        Output { name: "bytes", ty: "int", help: "its size" },
        Output { name: "keys", ty: "int", help: "keys when it was taken" },
    ];

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let started = Instant::now();
        let store = ctx.backup_store()?;
        let mut conn = super::connect(ctx).await?;
        let info = conn.info().await?;
        let databases: BTreeMap<String, u64> = info
            .0
            .iter()
            .filter(|(k, _)| k.starts_with("db") && k[2..].chars().all(|c| c.is_ascii_digit()))
            .map(|(k, v)| (k.clone(), v.split(',').find_map(|kv| kv.strip_prefix("keys=")).and_then(|n| n.parse().ok()).unwrap_or(0)))
            .collect();
        let source = RedisSource {
            server: conn.shown.clone(),
            version: info.get("redis_version").unwrap_or("?").to_string(),
            keys: databases.values().sum(),
            databases,
            used_memory: info.num("used_memory").unwrap_or(0.0) as u64,
        };
        // Only the snapshot, not the stream of commands a replica gets after it (Redis ≥ 7;
        // an older server says no, and the connection is closed after the snapshot anyway).
        let _ = conn.call(&["REPLCONF", "rdb-only", "1"]).await?;
        conn.send(&["SYNC"]).await?;
        let framing = loop {
            let line = conn.read_line().await?;
            if line.is_empty() {
                continue; // the server's keepalive while it prepares the snapshot
            }
            if let Some(mark) = line.strip_prefix("$EOF:") {
                break Framing::Mark(mark.as_bytes().to_vec());
            }
            if let Some(n) = line.strip_prefix('$').and_then(|n| n.parse().ok()) {
                break Framing::Length(n);
            }
            let said = line.trim_start_matches('-');
            let why = if said.starts_with("NOPERM") { format!("{said}; the ACL user needs SYNC and REPLCONF (+sync +replconf, or +@admin)") } else { said.to_string() };
            return Err(StepError::new(ErrorClass::Error, format!("Redis at {} did not send a snapshot: {why}", conn.shown)));
        };
        let id = backup::new_id(store.as_ref(), SOURCE).await;
        let mut pending = store.begin(&id).await.map_err(|e| StepError::error(e.to_string()))?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(8);
        let shown = conn.shown.clone();
        let feed = async {
            let result = feed(&mut conn, framing, &tx).await;
            if let Err(e) = &result {
                let _ = tx.send(Err(std::io::Error::other(e.message.clone()))).await;
            }
            drop(tx);
            result
        };
        let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
        let mut reader = tokio_util::io::StreamReader::new(stream);
        let write = pending.put_file(RDB_FILE, "redis-rdb", &mut reader);
        let (fed, written) = tokio::join!(feed, write);
        fed?;
        let entry = written.map_err(|e| StepError::error(format!("writing the backup failed, none was kept: {e}")))?;
        let manifest = Manifest::of_one_file(&id, &ctx.instance.name, SOURCE, started.elapsed(), &entry, &source);
        let path = pending.commit(&manifest).await.map_err(|e| StepError::error(format!("committing the backup failed: {e}")))?;
        Ok(Outcome::passed(format!(
            "snapshot of Redis {} at {shown} ({} keys) into {id}: {} in {}",
            source.version,
            source.keys,
            human_bytes(entry.bytes),
            crate::duration::short(started.elapsed())
        ))
        .value(human_bytes(entry.bytes))
        .output("id", id)
        .output("path", path)
        .output("sha256", entry.sha256)
        .output("bytes", entry.bytes)
        .output("keys", source.keys))
    }

    async fn plan(&self, ctx: &StepContext) -> Result<String, StepError> {
        let store = ctx.backup_store()?;
        let mut conn = super::connect(ctx).await?;
        let info = conn.info().await?;
        Ok(format!(
            "would snapshot Redis {} at {} ({} used) into {}",
            info.get("redis_version").unwrap_or("?"),
            conn.shown,
            human_bytes(info.num("used_memory").unwrap_or(0.0) as u64),
            store.describe()
        ))
    }
}

/// Reads the snapshot off the connection into the channel; returns its size.
async fn feed(conn: &mut super::conn::Conn, framing: Framing, tx: &tokio::sync::mpsc::Sender<std::io::Result<bytes::Bytes>>) -> Result<u64, StepError> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut sent = 0u64;
    let closed = || StepError::error("writing the backup stopped");
    match framing {
        Framing::Length(total) => {
            while sent < total {
                let want = buf.len().min((total - sent) as usize);
                let n = conn.read_some(&mut buf[..want]).await?;
                if n == 0 {
                    return Err(StepError::new(ErrorClass::Unavailable, format!("Redis closed the connection after {sent} of {total} bytes of the snapshot")));
                }
                tx.send(Ok(bytes::Bytes::copy_from_slice(&buf[..n]))).await.map_err(|_| closed())?;
                sent += n as u64;
            }
        }
        Framing::Mark(mark) => {
            // The last 40 bytes might be the mark: held back until more comes, or it does.
            let mut held: Vec<u8> = Vec::new();
            loop {
                let n = conn.read_some(&mut buf).await?;
                if n == 0 {
                    return Err(StepError::new(ErrorClass::Unavailable, format!("Redis closed the connection after {sent} bytes, before the end of the snapshot")));
                }
                held.extend_from_slice(&buf[..n]);
                let done = held.ends_with(&mark);
                let keep = if done { mark.len() } else { mark.len().min(held.len()) };
                let out: Vec<u8> = held.drain(..held.len() - keep).collect();
                if !out.is_empty() {
                    sent += out.len() as u64;
                    tx.send(Ok(bytes::Bytes::from(out))).await.map_err(|_| closed())?;
                }
                if done {
                    break;
                }
            }
        }
    }
    Ok(sent)
}
