//! Backups: a set of files plus a manifest, in a store.
//!
//! A backup is written file by file — each streamed through a SHA-256 as it goes, to a
//! temporary name, fsynced, renamed — and its `manifest.json` is written last: the manifest
//! is the commit marker, and a backup without one does not exist. Listing, verification
//! (checksums, then a structural check by kind, e.g. `pg_restore --list`), and retention
//! (`keep_last`, `keep_days`) work the same on every store. [`BackupStore`] is the trait;
//! [`local::LocalStore`] keeps backups in a directory; the AWS backend adds S3, and the
//! registry picks an instance's store.
//!
//! This layer knows no backend: what a PostgreSQL dump or a DynamoDB export records about
//! its source is the backend's own section of the manifest ([`Manifest::source`]), and
//! how such a backup is checked beyond its checksums is the backend's
//! (`crate::kind::BackupFormat`).

pub mod local;
pub mod settings;

use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, ReadBuf};

use crate::diagnostic::did_you_mean;

/// The manifest's `schema`.
pub const MANIFEST_SCHEMA: &str = "opsctl.backup/v1";
pub const MANIFEST_FILE: &str = "manifest.json";

/// What a backup holds and where it came from.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub schema: String,
    pub id: String,
    pub instance: String,
    /// `postgres` or `dynamodb`.
    pub kind: String,
    pub created_at: jiff::Timestamp,
    pub duration_ms: f64,
    pub opsctl_version: String,
    pub files: Vec<FileEntry>,
    /// Total size of the files.
    pub bytes: u64,
    /// Where the backup came from, in its backend's words, under the backend's key
    /// (`"postgres": {database, server_version, …}`, `"dynamodb": {table, item_count, …}`).
    #[serde(flatten)]
    pub sources: serde_json::Map<String, serde_json::Value>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FileEntry {
    pub name: String,
    pub bytes: u64,
    pub sha256: String,
    pub format: String,
}

impl Manifest {
    pub fn file(&self, name: &str) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.name == name)
    }

    /// The backend's section `key`, read as `T`; `None` when it has none or it does not
    /// read as `T`.
    pub fn source<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        self.sources.get(key).and_then(|v| T::deserialize(v).ok())
    }

    /// The manifest of a backup of one file, finished now: `kind` names the backend, and its
    /// section `source` is kept under the same key.
    pub fn of_one_file(id: &str, instance: &str, kind: &str, took: std::time::Duration, entry: &FileEntry, source: &impl Serialize) -> Manifest {
        let mut m = Manifest {
            schema: MANIFEST_SCHEMA.into(),
            id: id.into(),
            instance: instance.into(),
            kind: kind.into(),
            created_at: jiff::Timestamp::now(),
            duration_ms: took.as_secs_f64() * 1000.0,
            opsctl_version: env!("CARGO_PKG_VERSION").into(),
            bytes: entry.bytes,
            files: vec![entry.clone()],
            sources: serde_json::Map::new(),
        };
        m.set_source(kind, source);
        m
    }

    /// Sets the backend's section `key`.
    pub fn set_source(&mut self, key: &str, source: &impl Serialize) {
        self.sources.insert(key.to_string(), serde_json::to_value(source).unwrap_or_default());
    }
}

/// What can go wrong with a store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Io(String),
    #[error("{0}")]
    Corrupt(String),
}

/// A backup being written. Dropping it without [`PendingBackup::commit`] removes what was
/// written.
#[async_trait::async_trait]
pub trait PendingBackup: Send {
    /// Streams one file into the backup; returns its size and SHA-256.
    async fn put_file(&mut self, name: &str, format: &str, data: &mut (dyn AsyncRead + Send + Unpin)) -> Result<FileEntry, StoreError>;
    /// Writes the manifest, last, which makes the backup exist.
    async fn commit(self: Box<Self>, manifest: &Manifest) -> Result<String, StoreError>;
}

/// Where backups live.
#[async_trait::async_trait]
pub trait BackupStore: Send + Sync {
    /// `dir /var/backups/opsctl/team-a`.
    fn describe(&self) -> String;
    /// Starts a backup with this id.
    async fn begin(&self, id: &str) -> Result<Box<dyn PendingBackup>, StoreError>;
    /// Committed backups, oldest first.
    async fn list(&self) -> Result<Vec<Manifest>, StoreError>;
    async fn manifest(&self, id: &str) -> Result<Manifest, StoreError>;
    /// Reads a file of a backup.
    async fn open(&self, id: &str, file: &str) -> Result<Box<dyn AsyncRead + Send + Unpin>, StoreError>;
    /// The file's path on this machine, when the store keeps it here.
    fn local_path(&self, id: &str, file: &str) -> Option<PathBuf>;
    /// Removes a backup (its manifest first, so a half-deleted backup does not exist).
    async fn delete(&self, id: &str) -> Result<(), StoreError>;

    /// A file of a backup as a path on this machine, checked whole against the manifest's
    /// size and SHA-256 first: the file itself for a local store, a download for a remote
    /// one (removed when the [`Staged`] drops). Restores read only staged files, so nothing
    /// is restored from a file that has not been verified.
    async fn stage(&self, manifest: &Manifest, file: &str) -> Result<Staged, StoreError> {
        let entry = manifest.file(file).ok_or_else(|| StoreError::Corrupt(format!("backup {} has no file {file} in its manifest", manifest.id)))?;
        let reader = self.open(&manifest.id, file).await?;
        let mut hashing = Hashing::new(reader);
        let staged = match self.local_path(&manifest.id, file) {
            Some(path) => {
                tokio::io::copy(&mut hashing, &mut tokio::io::sink())
                    .await
                    .map_err(|e| StoreError::Io(format!("reading {file} of backup {}: {e}", manifest.id)))?;
                Staged { path, _dir: None }
            }
            None => {
                let dir = staging_dir(self.staging_root().as_deref())?;
                let path = dir.path().join(file);
                let mut out = tokio::fs::File::create(&path)
                    .await
                    .map_err(|e| StoreError::Io(format!("cannot create {}: {}", path.display(), crate::error::io_reason(&e))))?;
                tokio::io::copy(&mut hashing, &mut out)
                    .await
                    .map_err(|e| StoreError::Io(format!("downloading {file} of backup {}: {e}", manifest.id)))?;
                out.sync_all().await.map_err(|e| StoreError::Io(format!("fsync {}: {e}", path.display())))?;
                Staged { path, _dir: Some(dir) }
            }
        };
        let (bytes, sha) = hashing.finish();
        check_entry(&manifest.id, entry, bytes, &sha)?;
        Ok(staged)
    }

    /// Where [`BackupStore::stage`] downloads to (default: the system's temp directory).
    fn staging_root(&self) -> Option<PathBuf> {
        None
    }
}

/// A backup file on this machine; a download is removed on drop.
pub struct Staged {
    pub path: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

fn staging_dir(root: Option<&std::path::Path>) -> Result<tempfile::TempDir, StoreError> {
    let mut b = tempfile::Builder::new();
    b.prefix("opsctl-restore-");
    let made = match root {
        Some(r) => std::fs::create_dir_all(r).and_then(|_| b.tempdir_in(r)),
        None => b.tempdir(),
    };
    made.map_err(|e| StoreError::Io(format!("cannot create a staging directory: {}", crate::error::io_reason(&e))))
}

/// Compares what was read with the manifest's entry.
pub fn check_entry(id: &str, entry: &FileEntry, bytes: u64, sha: &str) -> Result<(), StoreError> {
    if bytes != entry.bytes {
        return Err(StoreError::Corrupt(format!(
            "{} of backup {id} is {bytes} bytes, the manifest says {}: the file is truncated or was replaced",
            entry.name, entry.bytes
        )));
    }
    if sha != entry.sha256 {
        return Err(StoreError::Corrupt(format!(
            "{} of backup {id} does not match its checksum (sha256 {}, expected {}): the file is corrupt",
            entry.name,
            &sha[..12],
            &entry.sha256[..12.min(entry.sha256.len())]
        )));
    }
    Ok(())
}

/// A new backup id, unique in the store: `20261123T020000Z-postgres` (then `…-postgres-2`
/// for a second one within the same second).
pub async fn new_id(store: &dyn BackupStore, kind: &str) -> String {
    let base = format!("{}-{kind}", jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ"));
    let mut id = base.clone();
    let mut n = 1;
    while store.manifest(&id).await.is_ok() {
        n += 1;
        id = format!("{base}-{n}");
    }
    id
}

/// The manifest for `id`, or an error naming the nearest ids.
pub async fn find(store: &dyn BackupStore, id: &str) -> Result<Manifest, String> {
    match store.manifest(id).await {
        Ok(m) => Ok(m),
        Err(StoreError::NotFound(_)) => {
            let all = store.list().await.map_err(|e| e.to_string())?;
            let ids: Vec<&str> = all.iter().map(|m| m.id.as_str()).collect();
            let mut msg = format!("no backup `{id}` in {}", store.describe());
            if let Some(s) = did_you_mean(id, ids.iter().copied()) {
                msg.push_str(&format!("; did you mean `{s}`?"));
            }
            if ids.is_empty() {
                msg.push_str(" (it has no backups)");
            } else {
                let latest: Vec<&str> = ids.iter().rev().take(5).copied().collect();
                msg.push_str(&format!("; latest: {}", latest.join(", ")));
            }
            Err(msg)
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Reads every file of a backup and compares size and SHA-256 with the manifest.
pub async fn verify_checksums(store: &dyn BackupStore, manifest: &Manifest) -> Result<(), String> {
    for f in &manifest.files {
        let mut reader = store.open(&manifest.id, &f.name).await.map_err(|e| e.to_string())?;
        let mut hashing = Hashing::new(&mut reader);
        tokio::io::copy(&mut hashing, &mut tokio::io::sink())
            .await
            .map_err(|e| format!("reading {} of backup {}: {e}", f.name, manifest.id))?;
        let (bytes, sha) = hashing.finish();
        check_entry(&manifest.id, f, bytes, &sha).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// A reader that counts and hashes what passes through it.
pub struct Hashing<R> {
    inner: R,
    ctx: aws_lc_rs::digest::Context,
    bytes: u64,
}

impl<R> Hashing<R> {
    pub fn new(inner: R) -> Hashing<R> {
        Hashing { inner, ctx: aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256), bytes: 0 }
    }

    /// Bytes read and their SHA-256, hex.
    pub fn finish(self) -> (u64, String) {
        let digest = self.ctx.finish();
        (self.bytes, digest.as_ref().iter().map(|b| format!("{b:02x}")).collect())
    }

    /// Bytes read so far and their SHA-256, without ending the hash.
    pub fn so_far(&self) -> (u64, String) {
        let digest = self.ctx.clone().finish();
        (self.bytes, digest.as_ref().iter().map(|b| format!("{b:02x}")).collect())
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Hashing<R> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &poll {
            let new = &buf.filled()[before..];
            self.bytes += new.len() as u64;
            let this = &mut *self;
            this.ctx.update(new);
        }
        poll
    }
}

/// Which backups retention would remove: not among the newest `keep_last`, and older than
/// `keep_days`. With neither set, none. The newest backup is never removed.
pub fn to_prune(backups: &[Manifest], keep_last: Option<u32>, keep_days: Option<u32>, now: jiff::Timestamp) -> Vec<Manifest> {
    if keep_last.is_none() && keep_days.is_none() {
        return Vec::new();
    }
    let mut newest_first: Vec<&Manifest> = backups.iter().collect();
    newest_first.sort_by_key(|m| std::cmp::Reverse(m.created_at));
    let keep_n = keep_last.map_or(1, |n| n.max(1) as usize);
    newest_first
        .into_iter()
        .skip(keep_n)
        .filter(|m| match keep_days {
            Some(days) => now.duration_since(m.created_at).as_secs() > i64::from(days) * 86_400,
            None => true,
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: &str, days_ago: i64) -> Manifest {
        Manifest {
            schema: MANIFEST_SCHEMA.into(),
            id: id.into(),
            instance: "a".into(),
            kind: "postgres".into(),
            created_at: jiff::Timestamp::from_second(1_800_000_000 - days_ago * 86_400).unwrap(),
            duration_ms: 0.0,
            opsctl_version: "0".into(),
            files: vec![],
            bytes: 0,
            sources: serde_json::Map::new(),
        }
    }

    #[test]
    fn retention_keeps_the_newest_and_the_young() {
        let now = jiff::Timestamp::from_second(1_800_000_000).unwrap();
        let all = vec![m("d40", 40), m("d35", 35), m("d20", 20), m("d2", 2), m("d1", 1)];
        let ids = |v: Vec<Manifest>| v.into_iter().map(|m| m.id).collect::<Vec<_>>();
        assert_eq!(ids(to_prune(&all, Some(2), None, now)), ["d20", "d35", "d40"]);
        assert_eq!(ids(to_prune(&all, None, Some(30), now)), ["d35", "d40"]);
        assert_eq!(ids(to_prune(&all, Some(4), Some(30), now)), ["d40"]);
        assert!(to_prune(&all, None, None, now).is_empty());
        // Everything old: the newest one stays anyway.
        assert_eq!(ids(to_prune(&[m("d90", 90), m("d60", 60)], None, Some(30), now)), ["d90"]);
    }

    #[tokio::test]
    async fn hashing_counts_and_digests() {
        let data = b"abc".to_vec();
        let mut h = Hashing::new(&data[..]);
        tokio::io::copy(&mut h, &mut tokio::io::sink()).await.unwrap();
        let (n, sha) = h.finish();
        assert_eq!(n, 3);
        assert_eq!(sha, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
