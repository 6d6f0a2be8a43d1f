//! Backups in a local directory: `<root>/<id>/<files>` and `<root>/<id>/manifest.json`.
//!
//! A backup is first written to `<root>/.partial-<id>/`: each file to a `.tmp` name,
//! fsynced and renamed; then the manifest the same way; then the directory is renamed to
//! `<id>` and the root fsynced. A crash at any point leaves at most a `.partial-*`
//! directory, which `list` never shows and the next backup of the same store clears away
//! after a day.

use std::path::{Path, PathBuf};

use tokio::io::{AsyncRead, AsyncWriteExt};

use super::{FileEntry, Hashing, MANIFEST_FILE, Manifest, PendingBackup, StoreError};

pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    pub fn new(root: PathBuf) -> LocalStore {
        LocalStore { root }
    }

    fn dir(&self, id: &str) -> Result<PathBuf, StoreError> {
        if id.is_empty() || id.starts_with('.') || id.contains(['/', '\\']) || id.contains("..") {
            return Err(StoreError::NotFound(format!("`{id}` is not a backup id")));
        }
        Ok(self.root.join(id))
    }

    /// Removes `.partial-*` directories older than a day (a crashed or killed backup).
    fn clear_stale(&self) {
        let Ok(entries) = std::fs::read_dir(&self.root) else { return };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let old = e.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok()).is_some_and(|age| age.as_secs() > 86_400);
            if name.starts_with(".partial-") && old {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

fn io(context: String, e: std::io::Error) -> StoreError {
    StoreError::Io(format!("{context}: {}", crate::error::io_reason(&e)))
}

/// A write into the store that failed; a full disk is said as such, naming the store.
fn write_error(root: &Path, context: String, e: std::io::Error) -> StoreError {
    if e.kind() == std::io::ErrorKind::StorageFull {
        return StoreError::Io(format!("no space left on {} ({context}); the partial backup was removed", root.display()));
    }
    io(context, e)
}

fn fsync_dir(dir: &Path) {
    if let Ok(f) = std::fs::File::open(dir) {
        let _ = f.sync_all();
    }
}

struct LocalPending {
    root: PathBuf,
    id: String,
    partial: PathBuf,
    committed: bool,
}

#[async_trait::async_trait]
impl PendingBackup for LocalPending {
    async fn put_file(&mut self, name: &str, format: &str, data: &mut (dyn AsyncRead + Send + Unpin)) -> Result<FileEntry, StoreError> {
        let tmp = self.partial.join(format!("{name}.tmp"));
        let fin = self.partial.join(name);
        let root = self.root.clone();
        let mut file = tokio::fs::File::create(&tmp).await.map_err(|e| write_error(&root, format!("cannot create {}", tmp.display()), e))?;
        let mut hashing = Hashing::new(data);
        let mut writer = tokio::io::BufWriter::with_capacity(256 * 1024, &mut file);
        tokio::io::copy_buf(&mut tokio::io::BufReader::with_capacity(256 * 1024, &mut hashing), &mut writer)
            .await
            .map_err(|e| write_error(&root, format!("writing {}", tmp.display()), e))?;
        writer.flush().await.map_err(|e| write_error(&root, format!("writing {}", tmp.display()), e))?;
        file.sync_all().await.map_err(|e| write_error(&root, format!("fsync {}", tmp.display()), e))?;
        drop(file);
        tokio::fs::rename(&tmp, &fin).await.map_err(|e| io(format!("rename {}", tmp.display()), e))?;
        let (bytes, sha256) = hashing.finish();
        Ok(FileEntry { name: name.to_string(), bytes, sha256, format: format.to_string() })
    }

    async fn commit(mut self: Box<Self>, manifest: &Manifest) -> Result<String, StoreError> {
        let json = serde_json::to_vec_pretty(manifest).map_err(|e| StoreError::Io(e.to_string()))?;
        let tmp = self.partial.join(format!("{MANIFEST_FILE}.tmp"));
        let mut f = tokio::fs::File::create(&tmp).await.map_err(|e| io(format!("cannot create {}", tmp.display()), e))?;
        f.write_all(&json).await.map_err(|e| io(format!("writing {}", tmp.display()), e))?;
        f.sync_all().await.map_err(|e| io(format!("fsync {}", tmp.display()), e))?;
        drop(f);
        tokio::fs::rename(&tmp, self.partial.join(MANIFEST_FILE)).await.map_err(|e| io("rename manifest".into(), e))?;
        fsync_dir(&self.partial);
        let dest = self.root.join(&self.id);
        tokio::fs::rename(&self.partial, &dest).await.map_err(|e| io(format!("rename to {}", dest.display()), e))?;
        fsync_dir(&self.root);
        self.committed = true;
        Ok(dest.display().to_string())
    }
}

impl Drop for LocalPending {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.partial);
        }
    }
}

#[async_trait::async_trait]
impl super::BackupStore for LocalStore {
    fn describe(&self) -> String {
        format!("dir {}", self.root.display())
    }

    async fn begin(&self, id: &str) -> Result<Box<dyn PendingBackup>, StoreError> {
        let dest = self.dir(id)?;
        tokio::fs::create_dir_all(&self.root).await.map_err(|e| io(format!("cannot create {}", self.root.display()), e))?;
        self.clear_stale();
        if dest.exists() {
            return Err(StoreError::Io(format!("a backup `{id}` already exists in {}", self.root.display())));
        }
        let partial = self.root.join(format!(".partial-{id}"));
        let _ = tokio::fs::remove_dir_all(&partial).await;
        tokio::fs::create_dir(&partial).await.map_err(|e| io(format!("cannot create {}", partial.display()), e))?;
        Ok(Box::new(LocalPending { root: self.root.clone(), id: id.to_string(), partial, committed: false }))
    }

    async fn list(&self) -> Result<Vec<Manifest>, StoreError> {
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io(format!("cannot list {}", self.root.display()), e)),
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            // No manifest, no backup.
            let Ok(text) = std::fs::read(e.path().join(MANIFEST_FILE)) else { continue };
            match serde_json::from_slice::<Manifest>(&text) {
                Ok(m) => out.push(m),
                Err(err) => tracing::warn!("{}: unreadable manifest ({err}); skipped", e.path().display()),
            }
        }
        out.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    async fn manifest(&self, id: &str) -> Result<Manifest, StoreError> {
        let path = self.dir(id)?.join(MANIFEST_FILE);
        let text = match tokio::fs::read(&path).await {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::NotFound(format!("no backup `{id}` in {}", self.describe())));
            }
            Err(e) => return Err(io(format!("cannot read {}", path.display()), e)),
        };
        serde_json::from_slice(&text).map_err(|e| StoreError::Corrupt(format!("{} is not a valid manifest: {e}", path.display())))
    }

    async fn open(&self, id: &str, file: &str) -> Result<Box<dyn AsyncRead + Send + Unpin>, StoreError> {
        let path = self.dir(id)?.join(file);
        let f = tokio::fs::File::open(&path).await.map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => StoreError::Corrupt(format!("{file} of backup {id} is missing ({})", path.display())),
            _ => io(format!("cannot open {}", path.display()), e),
        })?;
        Ok(Box::new(tokio::io::BufReader::with_capacity(256 * 1024, f)))
    }

    fn local_path(&self, id: &str, file: &str) -> Option<PathBuf> {
        self.dir(id).ok().map(|d| d.join(file))
    }

    async fn delete(&self, id: &str) -> Result<(), StoreError> {
        let dir = self.dir(id)?;
        tokio::fs::remove_file(dir.join(MANIFEST_FILE)).await.map_err(|e| io(format!("cannot delete backup {id}"), e))?;
        tokio::fs::remove_dir_all(&dir).await.map_err(|e| io(format!("cannot delete {}", dir.display()), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use super::super::{BackupStore, MANIFEST_SCHEMA};

    fn manifest(id: &str, files: Vec<FileEntry>) -> Manifest {
        Manifest {
            schema: MANIFEST_SCHEMA.into(),
            id: id.into(),
            instance: "a".into(),
            kind: "postgres".into(),
            created_at: jiff::Timestamp::now(),
            duration_ms: 1.0,
            opsctl_version: "0".into(),
            bytes: files.iter().map(|f| f.bytes).sum(),
            files,
            sources: serde_json::Map::new(),
        }
    }

    #[tokio::test]
    async fn a_backup_exists_only_once_committed() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path().join("a"));
        let mut p = store.begin("b1").await.unwrap();
        let entry = p.put_file("data", "raw", &mut &b"hello"[..]).await.unwrap();
        assert_eq!(entry.bytes, 5);
        assert!(store.list().await.unwrap().is_empty(), "not committed yet");
        p.commit(&manifest("b1", vec![entry])).await.unwrap();
        let listed = store.list().await.unwrap();
        assert_eq!(listed.len(), 1);
        super::super::verify_checksums(&store, &listed[0]).await.unwrap();

        // Dropped before commit: nothing is left.
        let mut p = store.begin("b2").await.unwrap();
        p.put_file("data", "raw", &mut &b"partial"[..]).await.unwrap();
        drop(p);
        assert_eq!(std::fs::read_dir(dir.path().join("a")).unwrap().count(), 1);

        // A flipped byte is caught.
        let path = store.local_path("b1", "data").unwrap();
        std::fs::write(&path, b"hellO").unwrap();
        let err = super::super::verify_checksums(&store, &listed[0]).await.unwrap_err();
        assert!(err.contains("does not match its checksum"), "{err}");
        std::fs::write(&path, b"hell").unwrap();
        let err = super::super::verify_checksums(&store, &listed[0]).await.unwrap_err();
        assert!(err.contains("is 4 bytes, the manifest says 5"), "{err}");

        store.delete("b1").await.unwrap();
        assert!(store.list().await.unwrap().is_empty());
        assert!(matches!(store.manifest("../x").await, Err(StoreError::NotFound(_))));
    }
}
