//! `dynamodb.export`: parallel Scan segments → JSON Lines in the backup store.
//!
//! Each segment scans its share of the table page by page; a page becomes a block of
//! lines, `{"Item":{"id":{"S":"u1"},…}}` (the format of DynamoDB's own export to S3), sent
//! through a small bounded channel to the one writer, which streams it through a SHA-256
//! into the store. Memory is bounded by the pages in flight — at most 8 fetched at once,
//! 4 waiting to be written — whatever the table's size or the number of segments.
//! Throttling the SDK could not absorb is waited out with exponential backoff and jitter
//! and counted in the step's message. The manifest — table, key
//! schema, exact item count (counted while writing), segments — is written last.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use schemars::JsonSchema;
use serde::Deserialize;
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use tokio::io::AsyncBufReadExt;

use super::{client, describe};
use crate::backup::{self, Manifest};
use crate::kind::{BackupFormat, StepContext, StepKind};
use crate::steps::aws::sdk_error;
use crate::units::human_bytes;
use crate::vocab::{Effect, ErrorClass, Outcome, Output, StepError};

/// The file an export's items are stored as.
pub const ITEMS_FILE: &str = "items.jsonl";
/// Its format, in the manifest.
pub const ITEMS_FORMAT: &str = "dynamodb-json-lines";
/// The manifest's section for a DynamoDB export (`"dynamodb": {…}`).
pub const SOURCE: &str = "dynamodb";

/// Where a DynamoDB export came from: enough to recreate the table and check a restore.
#[derive(Clone, Debug, serde::Serialize, Deserialize, PartialEq)]
pub struct DynamoSource {
    pub table: String,
    pub region: String,
    /// Items written to the export (exact: counted while scanning).
    pub item_count: u64,
    pub segments: u32,
    /// The table's key: partition key first, then the sort key if any.
    pub key: Vec<KeyAttribute>,
    /// `on_demand` or `provisioned`.
    pub billing_mode: String,
}

/// One attribute of a table's key.
#[derive(Clone, Debug, serde::Serialize, Deserialize, PartialEq)]
pub struct KeyAttribute {
    pub name: String,
    /// `HASH` or `RANGE`.
    pub key_type: String,
    /// `S`, `N` or `B`.
    pub attribute_type: String,
}


/// Where a DynamoDB export came from, if the backup is one.
pub fn source(manifest: &Manifest) -> Option<DynamoSource> {
    manifest.source(SOURCE)
}

/// DynamoDB exports: every line parsed and counted, listed with their table and region.
pub const FORMAT: BackupFormat = BackupFormat {
    kind: SOURCE,
    file: ITEMS_FILE,
    check: |_, manifest, items| Box::pin(async move { check_export(manifest, items).await.map(|n| format!("{n} items")) }),
    describe: |m| {
        let d = source(m)?;
        Some((format!("{} @ DynamoDB {}", d.table, d.region), d.item_count.to_string()))
    },
};

/// Scan a table in parallel segments into the backup store as JSON Lines, with a manifest.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Export {
    pub table: String,
    /// Parallel Scan segments, 1–64. Default 4.
    #[serde(default = "four")]
    pub segments: u32,
    /// Items per Scan page (default: DynamoDB's 1 MB pages).
    #[serde(default)]
    pub page_size: Option<u32>,
    /// Strongly consistent reads (twice the read capacity).
    #[serde(default)]
    pub consistent_read: bool,
}

fn four() -> u32 {
    4
}

/// An attribute value, serialized as DynamoDB's typed JSON without building a tree.
struct Typed<'a>(&'a AttributeValue);
/// An item: its attributes, sorted by name so exports of the same data are identical.
struct TypedItem<'a>(&'a HashMap<String, AttributeValue>);

impl Serialize for TypedItem<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut keys: Vec<&String> = self.0.keys().collect();
        keys.sort_unstable();
        let mut m = s.serialize_map(Some(keys.len()))?;
        for k in keys {
            m.serialize_entry(k, &Typed(&self.0[k]))?;
        }
        m.end()
    }
}

struct B64<'a>(&'a [u8]);
impl Serialize for B64<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&aws_smithy_types::base64::encode(self.0))
    }
}

impl Serialize for Typed<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(1))?;
        match self.0 {
            AttributeValue::S(v) => m.serialize_entry("S", v)?,
            AttributeValue::N(v) => m.serialize_entry("N", v)?,
            AttributeValue::B(v) => m.serialize_entry("B", &B64(v.as_ref()))?,
            AttributeValue::Bool(v) => m.serialize_entry("BOOL", v)?,
            AttributeValue::Null(v) => m.serialize_entry("NULL", v)?,
            AttributeValue::Ss(v) => m.serialize_entry("SS", v)?,
            AttributeValue::Ns(v) => m.serialize_entry("NS", v)?,
            AttributeValue::Bs(v) => m.serialize_entry("BS", &Seq(v.iter().map(|b| B64(b.as_ref())).collect()))?,
            AttributeValue::L(v) => m.serialize_entry("L", &Seq(v.iter().map(Typed).collect()))?,
            AttributeValue::M(v) => m.serialize_entry("M", &TypedItem(v))?,
            other => return Err(serde::ser::Error::custom(format!("an attribute type this opsctl does not know: {other:?}"))),
        }
        m.end()
    }
}

struct Seq<T>(Vec<T>);
impl<T: Serialize> Serialize for Seq<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut q = s.serialize_seq(Some(self.0.len()))?;
        for v in &self.0 {
            q.serialize_element(v)?;
        }
        q.end()
    }
}

/// One export line: `{"Item":{…}}` and a newline.
pub fn write_line(out: &mut Vec<u8>, item: &HashMap<String, AttributeValue>) -> Result<(), String> {
    struct Line<'a>(&'a HashMap<String, AttributeValue>);
    impl Serialize for Line<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut m = s.serialize_map(Some(1))?;
            m.serialize_entry("Item", &TypedItem(self.0))?;
            m.end()
        }
    }
    serde_json::to_writer(&mut *out, &Line(item)).map_err(|e| e.to_string())?;
    out.push(b'\n');
    Ok(())
}

/// Backoff for throttling the SDK's own retries did not absorb: 200 ms doubling to 10 s,
/// with jitter; gives up after `MAX_BACKOFFS` in a row.
pub const MAX_BACKOFFS: u32 = 10;

pub fn backoff(attempt: u32) -> Duration {
    let base = 200u64.saturating_mul(1 << attempt.min(6)).min(10_000);
    Duration::from_millis(base / 2 + fastrand::u64(0..=base / 2))
}

type Chunk = Result<bytes::Bytes, std::io::Error>;

/// Scan pages being fetched or turned into lines at once, whatever the number of segments:
/// what bounds memory (a page is at most 1 MB of JSON, a few MB once parsed).
const PAGES_IN_FLIGHT: usize = 8;

struct Segment<'a> {
    client: &'a aws_sdk_dynamodb::Client,
    config: &'a aws_config::SdkConfig,
    params: &'a Export,
    throttled: &'a std::sync::atomic::AtomicU64,
    pages: &'a tokio::sync::Semaphore,
}

impl Segment<'_> {
    /// Scans one segment into the channel; returns the items it sent.
    async fn run(&self, segment: i32, tx: tokio::sync::mpsc::Sender<Chunk>) -> Result<u64, StepError> {
        let table = &self.params.table;
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        let mut sent = 0u64;
        let mut backoffs = 0;
        loop {
            let _permit = self.pages.acquire().await.map_err(|_| StepError::error("the export was stopped"))?;
            let out = match self
                .client
                .scan()
                .table_name(table)
                .segment(segment)
                .total_segments(self.params.segments as i32)
                .set_limit(self.params.page_size.map(|p| p as i32))
                .consistent_read(self.params.consistent_read)
                .set_exclusive_start_key(start.clone())
                .send()
                .await
            {
                Ok(out) => {
                    backoffs = 0;
                    out
                }
                Err(e) => {
                    let err = sdk_error(e, &format!("scanning {table} (segment {segment})"), self.config);
                    if err.class == ErrorClass::Throttled && backoffs < MAX_BACKOFFS {
                        self.throttled.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        tokio::time::sleep(backoff(backoffs)).await;
                        backoffs += 1;
                        continue;
                    }
                    return Err(err);
                }
            };
            let items = out.items();
            let mut block = Vec::with_capacity(items.len() * 128);
            for item in items {
                write_line(&mut block, item).map_err(|e| StepError::error(format!("exporting {table}: {e}")))?;
            }
            sent += items.len() as u64;
            if !block.is_empty() && tx.send(Ok(block.into())).await.is_err() {
                // The writer stopped; its error is the one to report.
                return Ok(sent);
            }
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(sent),
            }
        }
    }
}

/// The table's key, for the manifest.
pub fn key_of(t: &aws_sdk_dynamodb::types::TableDescription) -> Vec<KeyAttribute> {
    let types: HashMap<&str, &str> = t.attribute_definitions().iter().map(|a| (a.attribute_name(), a.attribute_type().as_str())).collect();
    let mut key: Vec<KeyAttribute> = t
        .key_schema()
        .iter()
        .map(|k| KeyAttribute {
            name: k.attribute_name().to_string(),
            key_type: k.key_type().as_str().to_string(),
            attribute_type: types.get(k.attribute_name()).copied().unwrap_or("S").to_string(),
        })
        .collect();
    key.sort_by_key(|k| k.key_type != "HASH");
    key
}

impl StepKind for Export {
    const NAME: &'static str = "dynamodb.export";
    const PERMISSIONS: &'static [crate::vocab::Permission] = {
        use crate::vocab::*;
        &[aws(&["dynamodb:DescribeTable", "dynamodb:Scan"], AwsOn::Tables), aws(&["s3:PutObject", "s3:GetObject", "s3:ListBucket", "s3:AbortMultipartUpload"], AwsOn::Bucket)]
    };
    const SUMMARY: &'static str = "parallel Scan segments into the backup store as JSON Lines, with item count and sha256 in a manifest";
    const EFFECT: Effect = Effect::Mutate;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "id", ty: "string", help: "the backup id (for dynamodb.restore from_export)" },
        Output { name: "path", ty: "string", help: "where it is" },
        Output { name: "items", ty: "int", help: "items exported" },
        Output { name: "bytes", ty: "int", help: "size of the export" },
        Output { name: "sha256", ty: "string", help: "of the export" },
    ];

    fn check(&self) -> Result<(), String> {
        if !(1..=64).contains(&self.segments) {
            return Err(format!("`segments` is 1–64, not {}", self.segments));
        }
        if self.page_size == Some(0) {
            return Err("`page_size` must be at least 1".into());
        }
        Ok(())
    }

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let started = Instant::now();
        let store = ctx.backup_store()?;
        let (client, config, retries) = client(ctx).await?;
        let table = describe(&client, &config, &self.table).await?;
        let id = backup::new_id(store.as_ref(), &format!("dynamodb-{}", self.table)).await;
        let mut pending = store.begin(&id).await.map_err(|e| StepError::error(e.to_string()))?;

        let (tx, mut rx) = tokio::sync::mpsc::channel::<Chunk>(4);
        let throttled = std::sync::atomic::AtomicU64::new(0);
        let pages = tokio::sync::Semaphore::new(PAGES_IN_FLIGHT);
        let seg = Segment { client: &client, config: &config, params: self, throttled: &throttled, pages: &pages };
        let scan = async {
            let results = futures_util::future::join_all((0..self.segments as i32).map(|s| seg.run(s, tx.clone()))).await;
            let mut total = 0;
            for r in results {
                match r {
                    Ok(n) => total += n,
                    Err(e) => {
                        let _ = tx.send(Err(std::io::Error::other(e.message.clone()))).await;
                        drop(tx);
                        return Err(e);
                    }
                }
            }
            drop(tx);
            Ok(total)
        };
        let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
        let mut reader = tokio_util::io::StreamReader::new(stream);
        let write = pending.put_file(ITEMS_FILE, ITEMS_FORMAT, &mut reader);
        let (scanned, written) = tokio::join!(scan, write);
        let items = scanned?;
        let entry = written.map_err(|e| StepError::error(format!("writing the export of {} failed: {e}", self.table)))?;

        let region = config.region().map_or(String::new(), |r| r.to_string());
        let source = DynamoSource {
            table: self.table.clone(),
            region,
            item_count: items,
            segments: self.segments,
            key: key_of(&table),
            billing_mode: match table.billing_mode_summary().and_then(|b| b.billing_mode()) {
                Some(aws_sdk_dynamodb::types::BillingMode::PayPerRequest) => "on_demand".into(),
                _ => "provisioned".into(),
            },
        };
        let manifest = Manifest::of_one_file(&id, &ctx.instance.name, SOURCE, started.elapsed(), &entry, &source);
        let path = pending.commit(&manifest).await.map_err(|e| StepError::error(format!("committing the export failed: {e}")))?;
        let waited = throttled.load(std::sync::atomic::Ordering::Relaxed);
        let waited = if waited > 0 { format!("; waited out throttling {waited} time(s)") } else { String::new() };
        Ok(Outcome::passed(format!(
            "exported {items} items of {} into {id}: {} in {} ({} segments){waited}{}",
            self.table,
            human_bytes(entry.bytes),
            crate::duration::short(started.elapsed()),
            self.segments,
            retries.note()
        ))
        .value(format!("{items} items"))
        .output("id", id)
        .output("path", path)
        .output("items", items)
        .output("bytes", entry.bytes)
        .output("sha256", entry.sha256))
    }

    async fn plan(&self, ctx: &StepContext) -> Result<String, StepError> {
        let store = ctx.backup_store()?;
        let (client, config, _) = client(ctx).await?;
        let t = describe(&client, &config, &self.table).await?;
        Ok(format!(
            "would export {} (~{} items, {}) into {} with {} segments",
            self.table,
            t.item_count().unwrap_or(0),
            human_bytes(t.table_size_bytes().unwrap_or(0) as u64),
            store.describe(),
            self.segments
        ))
    }
}

/// Reads an export line by line: every line must be `{"Item": {typed values}}`; the count
/// must match the manifest's. Returns the count.
pub async fn check_export(manifest: &Manifest, path: &Path) -> Result<u64, StepError> {
    let expected = source(manifest).map(|d| d.item_count);
    let f = tokio::fs::File::open(path).await.map_err(|e| StepError::error(format!("cannot open {}: {}", path.display(), crate::error::io_reason(&e))))?;
    let mut lines = tokio::io::BufReader::with_capacity(256 * 1024, f).lines();
    let mut n = 0u64;
    while let Some(line) = lines.next_line().await.map_err(|e| StepError::error(format!("reading {}: {e}", path.display())))? {
        n += 1;
        parse_line(&line).map_err(|e| StepError::new(ErrorClass::Failed, format!("{ITEMS_FILE} of backup {}, line {n}: {e}", manifest.id)))?;
    }
    if let Some(expected) = expected.filter(|e| *e != n) {
        return Err(StepError::new(ErrorClass::Failed, format!("{ITEMS_FILE} of backup {} holds {n} items, the manifest says {expected}", manifest.id)));
    }
    Ok(n)
}

/// One line of an export.
pub fn parse_line(line: &str) -> Result<HashMap<String, AttributeValue>, String> {
    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let item = v.get("Item").ok_or("expected {\"Item\": {...}}")?;
    super::item_from_json(item)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_typed_json_with_sorted_attributes() {
        let item = HashMap::from([
            ("z".to_string(), AttributeValue::N("1.5".into())),
            ("id".to_string(), AttributeValue::S("u\"1".into())),
            ("l".to_string(), AttributeValue::L(vec![AttributeValue::Bool(true), AttributeValue::Null(true)])),
            ("b".to_string(), AttributeValue::Bs(vec![aws_smithy_types::Blob::new(vec![1u8])])),
        ]);
        let mut out = Vec::new();
        write_line(&mut out, &item).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text, "{\"Item\":{\"b\":{\"BS\":[\"AQ==\"]},\"id\":{\"S\":\"u\\\"1\"},\"l\":{\"L\":[{\"BOOL\":true},{\"NULL\":true}]},\"z\":{\"N\":\"1.5\"}}}\n");
        assert_eq!(parse_line(text.trim_end()).unwrap(), item);
        assert!(parse_line("{\"Items\":[]}").unwrap_err().contains("expected"));
        assert!(parse_line("{").unwrap_err().starts_with("not JSON"));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff(0) <= Duration::from_millis(200));
        assert!(backoff(3) >= Duration::from_millis(800));
        assert!(backoff(30) <= Duration::from_secs(10));
    }
}
