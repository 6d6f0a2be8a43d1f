//! Backups in S3: `s3://<bucket>/<prefix><instance>/<id>/<file>` and `…/<id>/manifest.json`.
//!
//! Files are streamed up in 8 MiB parts (a multipart upload once a file outgrows one
//! part; a single PUT otherwise), hashed on the way; the manifest is put last and is the
//! commit marker, as in the local store: objects without a manifest are not a backup and
//! `list` never shows them. A failed upload is aborted; a backup dropped before its
//! manifest has its objects deleted (best effort — a killed process can leave some, which
//! are invisible; a bucket lifecycle rule for incomplete multipart uploads cleans those).
//! Reads are checked against the manifest's size and SHA-256 as they finish, and restores
//! stage a verified download before they read anything.

use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

use super::sdk_error;
use crate::backup::{BackupStore, FileEntry, Hashing, MANIFEST_FILE, Manifest, PendingBackup, StoreError};
use crate::backup::settings::S3Settings;
use crate::steps::aws::settings::AwsSettings;

/// The size of one uploaded part; S3's minimum is 5 MiB.
const PART: usize = 8 * 1024 * 1024;

pub struct S3Store {
    bucket: String,
    /// `<prefix><instance>/`
    prefix: String,
    settings: AwsSettings,
    client: tokio::sync::OnceCell<(aws_sdk_s3::Client, aws_config::SdkConfig)>,
    staging: Option<PathBuf>,
}

impl S3Store {
    pub fn new(s3: &S3Settings, instance: &str, settings: AwsSettings, staging: Option<PathBuf>) -> Result<S3Store, String> {
        if s3.bucket.is_empty() || s3.bucket.contains('/') {
            return Err(format!("instance {instance}: `backups.s3.bucket` is a bucket name, such as `team-a-backups`, not `{}`", s3.bucket));
        }
        let mut prefix = s3.prefix.clone().unwrap_or_default().trim_start_matches('/').to_string();
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        prefix.push_str(instance);
        prefix.push('/');
        Ok(S3Store { bucket: s3.bucket.clone(), prefix, settings, client: tokio::sync::OnceCell::new(), staging })
    }

    async fn client(&self) -> (aws_sdk_s3::Client, aws_config::SdkConfig) {
        self.client
            .get_or_init(|| async {
                let config = super::load(&self.settings).await;
                // An emulator or S3-compatible endpoint is reached by path, not by a
                // bucket subdomain.
                let path_style = config.endpoint_url().is_some();
                let conf = aws_sdk_s3::config::Builder::from(&config).force_path_style(path_style).build();
                (aws_sdk_s3::Client::from_conf(conf), config)
            })
            .await
            .clone()
    }

    fn key(&self, id: &str, file: &str) -> Result<String, StoreError> {
        if id.is_empty() || id.starts_with('.') || id.contains(['/', '\\']) || id.contains("..") {
            return Err(StoreError::NotFound(format!("`{id}` is not a backup id")));
        }
        Ok(format!("{}{id}/{file}", self.prefix))
    }

    fn url(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    async fn get(&self, key: &str) -> Result<Option<ByteStream>, StoreError> {
        let (client, config) = self.client().await;
        match client.get_object().bucket(&self.bucket).key(key).send().await {
            Ok(out) => Ok(Some(out.body)),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
            Err(e) => Err(io(sdk_error(e, &format!("reading {}", self.url(key)), &config))),
        }
    }

    async fn read_manifest(&self, key: &str) -> Result<Option<Manifest>, StoreError> {
        let Some(body) = self.get(key).await? else { return Ok(None) };
        let bytes = body.collect().await.map_err(|e| StoreError::Io(format!("reading {}: {e}", self.url(key))))?.into_bytes();
        serde_json::from_slice(&bytes).map(Some).map_err(|e| StoreError::Corrupt(format!("{} is not a valid manifest: {e}", self.url(key))))
    }

    /// Every key under `prefix`.
    async fn keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let (client, config) = self.client().await;
        let mut keys = Vec::new();
        let mut pages = client.list_objects_v2().bucket(&self.bucket).prefix(prefix).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| io(sdk_error(e, &format!("listing {}", self.url(prefix)), &config)))?;
            keys.extend(page.contents().iter().filter_map(|o| o.key().map(str::to_string)));
        }
        Ok(keys)
    }

    async fn delete_keys(client: &aws_sdk_s3::Client, bucket: &str, keys: Vec<String>) -> Result<(), String> {
        for chunk in keys.chunks(1000) {
            let objects = chunk.iter().map(|k| ObjectIdentifier::builder().key(k).build().map_err(|e| e.to_string())).collect::<Result<Vec<_>, _>>()?;
            let delete = Delete::builder().set_objects(Some(objects)).quiet(true).build().map_err(|e| e.to_string())?;
            let out = client.delete_objects().bucket(bucket).delete(delete).send().await.map_err(|e| crate::helpers::errors::chain(&e))?;
            if let Some(err) = out.errors().first() {
                return Err(format!("{} could not be deleted: {}", err.key().unwrap_or("?"), err.message().unwrap_or("?")));
            }
        }
        Ok(())
    }
}

fn io(e: crate::vocab::StepError) -> StoreError {
    StoreError::Io(e.message)
}

struct S3Pending {
    client: aws_sdk_s3::Client,
    config: aws_config::SdkConfig,
    bucket: String,
    dir: String,
    uploaded: Vec<String>,
    committed: bool,
}

impl S3Pending {
    fn url(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    async fn multipart(&mut self, key: &str, first: Vec<u8>, data: &mut Hashing<&mut (dyn AsyncRead + Send + Unpin)>) -> Result<(), StoreError> {
        let create = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| io(sdk_error(e, &format!("starting the upload of {}", self.url(key)), &self.config)))?;
        let upload_id = create.upload_id().unwrap_or_default().to_string();
        let result = self.parts(key, &upload_id, first, data).await;
        match result {
            Ok(parts) => {
                self.client
                    .complete_multipart_upload()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(&upload_id)
                    .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
                    .send()
                    .await
                    .map_err(|e| io(sdk_error(e, &format!("completing the upload of {}", self.url(key)), &self.config)))?;
                Ok(())
            }
            Err(e) => {
                let _ = self.client.abort_multipart_upload().bucket(&self.bucket).key(key).upload_id(&upload_id).send().await;
                Err(e)
            }
        }
    }

    /// Uploads parts while the next one is read: one part in flight, one being filled.
    async fn parts(&self, key: &str, upload_id: &str, first: Vec<u8>, data: &mut Hashing<&mut (dyn AsyncRead + Send + Unpin)>) -> Result<Vec<CompletedPart>, StoreError> {
        let mut parts = Vec::new();
        let mut chunk = first;
        let mut number = 1;
        let mut inflight: Option<tokio::task::JoinHandle<Result<CompletedPart, StoreError>>> = None;
        loop {
            let upload = {
                let (client, config, bucket, key, upload_id) = (self.client.clone(), self.config.clone(), self.bucket.clone(), key.to_string(), upload_id.to_string());
                let body = ByteStream::from(std::mem::take(&mut chunk));
                let url = self.url(&key);
                tokio::spawn(async move {
                    let out = client
                        .upload_part()
                        .bucket(bucket)
                        .key(key)
                        .upload_id(upload_id)
                        .part_number(number)
                        .body(body)
                        .send()
                        .await
                        .map_err(|e| io(sdk_error(e, &format!("uploading part {number} of {url}"), &config)))?;
                    Ok(CompletedPart::builder().part_number(number).set_e_tag(out.e_tag).build())
                })
            };
            if let Some(prev) = inflight.replace(upload) {
                parts.push(join(prev).await?);
            }
            chunk = fill(data, PART).await.map_err(|e| StoreError::Io(format!("reading the data for {}: {e}", self.url(key))))?;
            if chunk.is_empty() {
                break;
            }
            number += 1;
        }
        if let Some(last) = inflight {
            parts.push(join(last).await?);
        }
        Ok(parts)
    }
}

async fn join(h: tokio::task::JoinHandle<Result<CompletedPart, StoreError>>) -> Result<CompletedPart, StoreError> {
    h.await.map_err(|e| StoreError::Io(format!("an upload task failed: {e}")))?
}

/// Reads up to `size` bytes (less only at the end of the data).
async fn fill<R: AsyncRead + Unpin + ?Sized>(r: &mut R, size: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(size);
    while buf.len() < size {
        let n = (&mut *r).take((size - buf.len()) as u64).read_to_end(&mut buf).await?;
        if n == 0 {
            break;
        }
    }
    Ok(buf)
}

#[async_trait::async_trait]
impl PendingBackup for S3Pending {
    async fn put_file(&mut self, name: &str, format: &str, data: &mut (dyn AsyncRead + Send + Unpin)) -> Result<FileEntry, StoreError> {
        let key = format!("{}{name}", self.dir);
        let mut hashing = Hashing::new(data);
        let first = fill(&mut hashing, PART).await.map_err(|e| StoreError::Io(format!("reading the data for {}: {e}", self.url(&key))))?;
        self.uploaded.push(key.clone());
        if first.len() < PART {
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(&key)
                .body(ByteStream::from(first))
                .send()
                .await
                .map_err(|e| io(sdk_error(e, &format!("uploading {}", self.url(&key)), &self.config)))?;
        } else {
            self.multipart(&key, first, &mut hashing).await?;
        }
        let (bytes, sha256) = hashing.finish();
        Ok(FileEntry { name: name.to_string(), bytes, sha256, format: format.to_string() })
    }

    async fn commit(mut self: Box<Self>, manifest: &Manifest) -> Result<String, StoreError> {
        let json = serde_json::to_vec_pretty(manifest).map_err(|e| StoreError::Io(e.to_string()))?;
        let key = format!("{}{MANIFEST_FILE}", self.dir);
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .content_type("application/json")
            .body(ByteStream::from(json))
            .send()
            .await
            .map_err(|e| io(sdk_error(e, &format!("writing the manifest {}", self.url(&key)), &self.config)))?;
        self.committed = true;
        Ok(self.url(&self.dir))
    }
}

impl Drop for S3Pending {
    fn drop(&mut self) {
        if self.committed || self.uploaded.is_empty() {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let (client, bucket, keys) = (self.client.clone(), self.bucket.clone(), std::mem::take(&mut self.uploaded));
            rt.spawn(async move {
                if let Err(e) = S3Store::delete_keys(&client, &bucket, keys).await {
                    tracing::warn!("could not clean up an unfinished backup in s3://{bucket}: {e}");
                }
            });
        }
    }
}

/// A reader that fails at the end if what it read does not match the manifest.
struct Verifying<R> {
    inner: Hashing<R>,
    id: String,
    entry: FileEntry,
}

impl<R: AsyncRead + Unpin> AsyncRead for Verifying<R> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &poll
            && buf.filled().len() == before
            && buf.remaining() > 0
        {
            let (bytes, sha) = self.inner.so_far();
            if let Err(e) = crate::backup::check_entry(&self.id, &self.entry, bytes, &sha) {
                return Poll::Ready(Err(std::io::Error::other(e.to_string())));
            }
        }
        poll
    }
}

#[async_trait::async_trait]
impl BackupStore for S3Store {
    fn describe(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }

    async fn begin(&self, id: &str) -> Result<Box<dyn PendingBackup>, StoreError> {
        let manifest_key = self.key(id, MANIFEST_FILE)?;
        if self.read_manifest(&manifest_key).await?.is_some() {
            return Err(StoreError::Io(format!("a backup `{id}` already exists in {}", self.describe())));
        }
        let (client, config) = self.client().await;
        Ok(Box::new(S3Pending { client, config, bucket: self.bucket.clone(), dir: format!("{}{id}/", self.prefix), uploaded: Vec::new(), committed: false }))
    }

    async fn list(&self) -> Result<Vec<Manifest>, StoreError> {
        let keys = self.keys(&self.prefix).await?;
        let manifests: Vec<String> = keys
            .into_iter()
            .filter(|k| k.strip_prefix(&self.prefix).and_then(|rest| rest.strip_suffix(&format!("/{MANIFEST_FILE}"))).is_some_and(|id| !id.is_empty() && !id.contains('/')))
            .collect();
        use futures_util::StreamExt;
        let read: Vec<Result<Option<Manifest>, StoreError>> =
            futures_util::stream::iter(manifests).map(|k| async move { self.read_manifest(&k).await }).buffer_unordered(8).collect().await;
        let mut out = Vec::new();
        for r in read {
            match r {
                Ok(Some(m)) => out.push(m),
                Ok(None) => {}
                Err(StoreError::Corrupt(e)) => tracing::warn!("{e}; skipped"),
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    async fn manifest(&self, id: &str) -> Result<Manifest, StoreError> {
        let key = self.key(id, MANIFEST_FILE)?;
        self.read_manifest(&key).await?.ok_or_else(|| StoreError::NotFound(format!("no backup `{id}` in {}", self.describe())))
    }

    async fn open(&self, id: &str, file: &str) -> Result<Box<dyn AsyncRead + Send + Unpin>, StoreError> {
        let manifest = self.manifest(id).await?;
        let entry = manifest.file(file).cloned().ok_or_else(|| StoreError::Corrupt(format!("backup {id} has no file {file} in its manifest")))?;
        let key = self.key(id, file)?;
        let body = self.get(&key).await?.ok_or_else(|| StoreError::Corrupt(format!("{file} of backup {id} is missing ({})", self.url(&key))))?;
        let reader = tokio::io::BufReader::with_capacity(256 * 1024, body.into_async_read());
        Ok(Box::new(Verifying { inner: Hashing::new(reader), id: id.to_string(), entry }))
    }

    fn local_path(&self, _id: &str, _file: &str) -> Option<PathBuf> {
        None
    }

    fn staging_root(&self) -> Option<PathBuf> {
        self.staging.clone()
    }

    async fn delete(&self, id: &str) -> Result<(), StoreError> {
        let manifest_key = self.key(id, MANIFEST_FILE)?;
        let (client, config) = self.client().await;
        client
            .delete_object()
            .bucket(&self.bucket)
            .key(&manifest_key)
            .send()
            .await
            .map_err(|e| io(sdk_error(e, &format!("deleting {}", self.url(&manifest_key)), &config)))?;
        let rest = self.keys(&format!("{}{id}/", self.prefix)).await?;
        S3Store::delete_keys(&client, &self.bucket, rest).await.map_err(|e| StoreError::Io(format!("deleting backup {id}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_prefixed_by_instance() {
        let s = S3Store::new(&S3Settings { bucket: "b".into(), prefix: Some("/opsctl".into()) }, "team-a", AwsSettings::default(), None).unwrap();
        assert_eq!(s.key("20261123T020000Z-postgres", "postgres.dump").unwrap(), "opsctl/team-a/20261123T020000Z-postgres/postgres.dump");
        assert_eq!(s.describe(), "s3://b/opsctl/team-a/");
        assert!(matches!(s.key("../x", "f"), Err(StoreError::NotFound(_))));
        let bare = S3Store::new(&S3Settings { bucket: "b".into(), prefix: None }, "a", AwsSettings::default(), None).unwrap();
        assert_eq!(bare.key("i", "f").unwrap(), "a/i/f");
        assert!(S3Store::new(&S3Settings { bucket: "s3://b".into(), prefix: None }, "a", AwsSettings::default(), None).is_err());
    }

    #[tokio::test]
    async fn fill_reads_whole_parts() {
        let data = [7u8; 10];
        let mut r = &data[..];
        assert_eq!(fill(&mut r, 4).await.unwrap().len(), 4);
        assert_eq!(fill(&mut r, 4).await.unwrap().len(), 4);
        assert_eq!(fill(&mut r, 4).await.unwrap().len(), 2);
        assert!(fill(&mut r, 4).await.unwrap().is_empty());
    }
}
