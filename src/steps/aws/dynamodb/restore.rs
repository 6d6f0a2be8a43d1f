//! `dynamodb.restore`: from an on-demand backup or a point in time into a new table (the
//! DynamoDB APIs), or from an export or a `backup.json` file through BatchWriteItem.
//!
//! Before anything is written, the source is checked whole: an export's checksum (after
//! staging it, from S3 too) and every line; a file's every item. Writes go 25 items a
//! batch, several batches at once; unprocessed items are retried with backoff until none
//! is left, and throttling the SDK could not absorb is waited out. Afterwards the target's
//! items are counted with a consistent scan and compared with what the source held.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, PutRequest, ScalarAttributeType, WriteRequest,
};
use schemars::JsonSchema;
use serde::Deserialize;
use tokio::io::AsyncBufReadExt;

use super::export::{ITEMS_FILE, KeyAttribute, MAX_BACKOFFS, backoff, check_export, parse_line, source};
use super::{build, client, count_items, describe, exists, wait_active};
use crate::backup;
use crate::duration::Duration;
use crate::kind::{StepContext, StepKind};
use crate::steps::aws::{sdk_error, target};
use crate::vocab::{Effect, ErrorClass, Outcome, Output, StepError, Verdict};

/// Restore a table: from an on-demand backup or a point in time into a new table, or from
/// an export (`dynamodb.export`) or a `backup.json` file into a table, new or existing.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Restore {
    /// An on-demand backup's ARN (`dynamodb.backup`'s `arn`); restores into the new `table`.
    #[serde(default)]
    pub from_backup: Option<String>,
    /// A time (RFC 3339) or `latest`: restores `source_table` as it was then into the new `table`.
    #[serde(default)]
    pub point_in_time: Option<String>,
    /// The table whose point-in-time recovery to use.
    #[serde(default)]
    pub source_table: Option<String>,
    /// An export's backup id (`dynamodb.export`'s `id`); default target: the exported table.
    #[serde(default)]
    pub from_export: Option<String>,
    /// A file of items: JSON Lines of `{"Item": …}` (an export's items.jsonl) or the JSON
    /// `aws dynamodb scan` prints (`{"Items": [...]}`). The target table must exist.
    #[serde(default)]
    pub from_file: Option<PathBuf>,
    /// The table to restore into. Created (same key, on-demand billing) when an export's
    /// target is missing; existing items with the same key are overwritten.
    #[serde(default)]
    pub table: Option<String>,
    /// BatchWriteItem calls in flight. Default 4.
    #[serde(default = "four")]
    pub writers: u32,
    /// How long to wait for a restored table to become ACTIVE. Default 30m.
    #[serde(default = "thirty_minutes")]
    pub wait_timeout: Duration,
}

fn four() -> u32 {
    4
}

fn thirty_minutes() -> Duration {
    Duration::from_secs(1800)
}

enum Source<'a> {
    Backup(&'a str),
    PointInTime { source: &'a str, at: &'a str },
    Export(&'a str),
    File(&'a Path),
}

impl Restore {
    fn source(&self) -> Source<'_> {
        match (&self.from_backup, &self.point_in_time, &self.from_export, &self.from_file) {
            (Some(arn), ..) => Source::Backup(arn),
            (_, Some(at), ..) => Source::PointInTime { source: self.source_table.as_deref().unwrap_or_default(), at },
            (_, _, Some(id), _) => Source::Export(id),
            (_, _, _, Some(f)) => Source::File(f),
            _ => unreachable!("check() requires one source"),
        }
    }

    fn new_table(&self) -> &str {
        self.table.as_deref().unwrap_or_default()
    }
}

impl StepKind for Restore {
    const NAME: &'static str = "dynamodb.restore";
    const PERMISSIONS: &'static [crate::vocab::Permission] = {
        use crate::vocab::*;
        &[aws(&["dynamodb:DescribeTable", "dynamodb:BatchWriteItem", "dynamodb:Scan"], AwsOn::Tables), aws(&["s3:GetObject", "s3:ListBucket"], AwsOn::Bucket)]
    };
    const SUMMARY: &'static str = "restore from an on-demand backup or a point in time (new table), or from an export/backup.json via BatchWriteItem; verifies item counts";
    const EFFECT: Effect = Effect::Destroy;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "table", ty: "string", help: "the table restored into" },
        Output { name: "items_written", ty: "int", help: "items written (export and file restores)" },
        Output { name: "item_count", ty: "int", help: "items in the table afterwards (consistent scan)" },
    ];

    /// A restore into a new table creates; one from an export or file overwrites items.
    fn effect(&self) -> Effect {
        if self.from_export.is_some() || self.from_file.is_some() { Effect::Destroy } else { Effect::Mutate }
    }

    fn check(&self) -> Result<(), String> {
        let given = [self.from_backup.is_some(), self.point_in_time.is_some(), self.from_export.is_some(), self.from_file.is_some()];
        match given.iter().filter(|g| **g).count() {
            0 => return Err("give one of `from_backup` (an ARN), `point_in_time` (with `source_table`), `from_export` (a backup id) or `from_file`".into()),
            1 => {}
            _ => return Err("give only one of `from_backup`, `point_in_time`, `from_export`, `from_file`".into()),
        }
        if self.point_in_time.is_some() && self.source_table.is_none() {
            return Err("`point_in_time` needs `source_table`, the table whose point-in-time recovery to use".into());
        }
        if let Some(at) = &self.point_in_time
            && at != "latest"
            && at.parse::<jiff::Timestamp>().is_err()
        {
            return Err(format!("`point_in_time` is an RFC 3339 time such as 2026-11-23T02:00:00Z, or `latest`; not `{at}`"));
        }
        if (self.from_backup.is_some() || self.point_in_time.is_some()) && self.table.is_none() {
            return Err("`table` is required: DynamoDB restores a backup or a point in time into a new table".into());
        }
        if self.from_file.is_some() && self.table.is_none() {
            return Err("`table` is required with `from_file`".into());
        }
        if !(1..=32).contains(&self.writers) {
            return Err(format!("`writers` is 1–32, not {}", self.writers));
        }
        Ok(())
    }

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let started = Instant::now();
        let (client, config, retries) = client(ctx).await?;
        let c = Ctx { client: &client, config: &config, params: self };
        let outcome = match self.source() {
            Source::Backup(arn) => c.restore_backup(arn).await?,
            Source::PointInTime { source, at } => c.point_in_time(source, at).await?,
            Source::Export(id) => c.restore_export(ctx, id).await?,
            Source::File(path) => c.restore_file(path).await?,
        };
        Ok(Outcome { message: format!("{} in {}{}", outcome.message, crate::duration::short(started.elapsed()), retries.note()), ..outcome })
    }

    async fn plan(&self, ctx: &StepContext) -> Result<String, StepError> {
        let (client, config, _) = client(ctx).await?;
        let (client, config) = (&client, &config);
        let new_table = |what: String| async move {
            if exists(client, config, self.new_table()).await? {
                return Err(refuse_existing(self.new_table()));
            }
            Ok::<String, StepError>(format!("would restore {what} into a new table {}", self.new_table()))
        };
        match self.source() {
            Source::Backup(arn) => new_table(format!("backup {arn}")).await,
            Source::PointInTime { source, at } => new_table(format!("{source} as of {at}")).await,
            Source::Export(id) => {
                let store = ctx.backup_store()?;
                let m = backup::find(store.as_ref(), id).await.map_err(StepError::invalid)?;
                let d = source(&m).ok_or_else(|| not_dynamodb(&m))?;
                let table = self.table.clone().unwrap_or(d.table.clone());
                Ok(if exists(client, config, &table).await? {
                    format!("would write the {} items of {id} into {table}, overwriting items with the same key", d.item_count)
                } else {
                    format!("would create {table} (key {}) and write the {} items of {id}", describe_key(&d.key), d.item_count)
                })
            }
            Source::File(path) => {
                let items = read_file(path).await?;
                describe(client, config, self.new_table()).await?;
                Ok(format!("would write {} items from {} into {}, overwriting items with the same key", items.len(), path.display(), self.new_table()))
            }
        }
    }
}

fn refuse_existing(table: &str) -> StepError {
    StepError::invalid(format!("table {table} already exists; DynamoDB restores into a new table: give `table` a name that is not taken (nothing was changed)"))
}

fn not_dynamodb(m: &backup::Manifest) -> StepError {
    StepError::invalid(format!("backup {} is a {} backup, not a DynamoDB export", m.id, m.kind))
}

fn describe_key(key: &[KeyAttribute]) -> String {
    key.iter().map(|k| format!("{} {}", k.name, k.attribute_type)).collect::<Vec<_>>().join(", ")
}

struct Ctx<'a> {
    client: &'a aws_sdk_dynamodb::Client,
    config: &'a aws_config::SdkConfig,
    params: &'a Restore,
}

impl Ctx<'_> {
    async fn restore_backup(&self, arn: &str) -> Result<Outcome, StepError> {
        let table = self.params.new_table();
        if exists(self.client, self.config, table).await? {
            return Err(refuse_existing(table));
        }
        let backup = self
            .client
            .describe_backup()
            .backup_arn(arn)
            .send()
            .await
            .map_err(|e| {
                if e.as_service_error().is_some_and(|s| s.is_backup_not_found_exception()) {
                    StepError::invalid(format!("no backup {arn} in {}", target(self.config)))
                } else {
                    sdk_error(e, &format!("reading backup {arn}"), self.config)
                }
            })?
            .backup_description;
        let source_items = backup.as_ref().and_then(|b| b.source_table_details()).and_then(|s| s.item_count());
        let source_name = backup.as_ref().and_then(|b| b.source_table_details()).map_or("?".to_string(), |s| s.table_name().to_string());
        self.client
            .restore_table_from_backup()
            .backup_arn(arn)
            .target_table_name(table)
            .send()
            .await
            .map_err(|e| sdk_error(e, &format!("restoring backup {arn} into {table}"), self.config))?;
        wait_active(self.client, self.config, table, self.params.wait_timeout.std()).await?;
        let count = count_items(self.client, self.config, table, 4, true).await?;
        let (verdict, check) = match source_items {
            Some(n) if n == count => (Verdict::Passed, format!("as many as {source_name} had at backup time")),
            Some(n) => (
                Verdict::Warned,
                format!("{source_name} had ~{n} at backup time (DynamoDB's item count is an estimate, refreshed about every 6 hours)"),
            ),
            None => (Verdict::Passed, "the backup does not record an item count".to_string()),
        };
        Ok(Outcome::new(verdict, format!("restored backup {arn} into {table}: {count} items, {check}"))
            .value(format!("{count} items"))
            .output("table", table)
            .output("items_written", serde_json::Value::Null)
            .output("item_count", count))
    }

    async fn point_in_time(&self, source: &str, at: &str) -> Result<Outcome, StepError> {
        let table = self.params.new_table();
        if exists(self.client, self.config, table).await? {
            return Err(refuse_existing(table));
        }
        describe(self.client, self.config, source).await?;
        let (on, _, _) = super::pitr::pitr_state(self.client, self.config, source).await?;
        if !on {
            return Err(StepError::new(
                ErrorClass::Failed,
                format!("point-in-time recovery is off for {source}; turn it on with dynamodb.pitr (restores reach back only to when it was turned on); nothing was changed"),
            ));
        }
        let mut req = self.client.restore_table_to_point_in_time().source_table_name(source).target_table_name(table);
        req = if at == "latest" {
            req.use_latest_restorable_time(true)
        } else {
            let t: jiff::Timestamp = at.parse().map_err(|e| StepError::invalid(format!("point_in_time: {e}")))?;
            req.restore_date_time(aws_smithy_types::DateTime::from_secs(t.as_second()))
        };
        req.send().await.map_err(|e| {
            if e.as_service_error().is_some_and(|s| s.is_point_in_time_recovery_unavailable_exception()) {
                StepError::new(ErrorClass::Failed, format!("point-in-time recovery is off for {source}; turn it on with dynamodb.pitr (restores reach back only to when it was turned on)"))
            } else if e.as_service_error().is_some_and(|s| s.is_invalid_restore_time_exception()) {
                StepError::invalid(format!("{at} is outside the restorable window of {source}; dynamodb.pitr reports the window"))
            } else {
                sdk_error(e, &format!("restoring {source} as of {at} into {table}"), self.config)
            }
        })?;
        wait_active(self.client, self.config, table, self.params.wait_timeout.std()).await?;
        let count = count_items(self.client, self.config, table, 4, true).await?;
        Ok(Outcome::passed(format!("restored {source} as of {at} into {table}: {count} items"))
            .value(format!("{count} items"))
            .output("table", table)
            .output("items_written", serde_json::Value::Null)
            .output("item_count", count))
    }

    async fn restore_export(&self, ctx: &StepContext, id: &str) -> Result<Outcome, StepError> {
        let store = ctx.backup_store()?;
        let manifest = backup::find(store.as_ref(), id).await.map_err(StepError::invalid)?;
        let source = source(&manifest).ok_or_else(|| not_dynamodb(&manifest))?;
        let refuse = |e: String| StepError::new(ErrorClass::Failed, format!("refusing to restore: {e}; nothing was written"));
        let staged = store.stage(&manifest, ITEMS_FILE).await.map_err(|e| refuse(e.to_string()))?;
        check_export(&manifest, &staged.path).await.map_err(|e| refuse(e.message))?;
        let table = self.params.table.clone().unwrap_or(source.table.clone());
        let created = if exists(self.client, self.config, &table).await? {
            false
        } else {
            self.create_table(&table, &source.key).await?;
            true
        };
        let written = self.write(&table, Items::Lines(staged.path.clone())).await?;
        self.verify(&table, written, created, &format!("backup {id}")).await
    }

    async fn restore_file(&self, path: &Path) -> Result<Outcome, StepError> {
        let items = read_file(path).await?;
        let table = self.params.new_table();
        describe(self.client, self.config, table).await.map_err(|e| {
            if e.class == ErrorClass::Failed { StepError::invalid(format!("{}; create it first (restoring from a file needs the table's key)", e.message)) } else { e }
        })?;
        let written = self.write(table, Items::Loaded(items)).await?;
        self.verify(table, written, false, &path.display().to_string()).await
    }

    async fn create_table(&self, table: &str, key: &[KeyAttribute]) -> Result<(), StepError> {
        let mut req = self.client.create_table().table_name(table).billing_mode(BillingMode::PayPerRequest);
        for k in key {
            req = req
                .attribute_definitions(build(
                    AttributeDefinition::builder().attribute_name(&k.name).attribute_type(ScalarAttributeType::from(k.attribute_type.as_str())).build(),
                )?)
                .key_schema(build(KeySchemaElement::builder().attribute_name(&k.name).key_type(KeyType::from(k.key_type.as_str())).build())?);
        }
        req.send().await.map_err(|e| sdk_error(e, &format!("creating table {table}"), self.config))?;
        wait_active(self.client, self.config, table, self.params.wait_timeout.std()).await?;
        Ok(())
    }

    /// Writes every item, `writers` batches at a time; returns how many.
    async fn write(&self, table: &str, items: Items) -> Result<u64, StepError> {
        let (tx, rx) = tokio::sync::mpsc::channel::<Vec<HashMap<String, AttributeValue>>>(self.params.writers as usize * 2);
        let rx = tokio::sync::Mutex::new(rx);
        let produce = async move {
            let mut batch = Vec::with_capacity(25);
            let send = |item: HashMap<String, AttributeValue>, batch: &mut Vec<_>| {
                batch.push(item);
                (batch.len() == 25).then(|| std::mem::replace(batch, Vec::with_capacity(25)))
            };
            match items {
                Items::Lines(path) => {
                    let f = tokio::fs::File::open(&path).await.map_err(|e| StepError::error(format!("cannot open {}: {e}", path.display())))?;
                    let mut lines = tokio::io::BufReader::with_capacity(256 * 1024, f).lines();
                    let mut n = 0;
                    while let Some(line) = lines.next_line().await.map_err(|e| StepError::error(format!("reading {}: {e}", path.display())))? {
                        n += 1;
                        let item = parse_line(&line).map_err(|e| StepError::error(format!("{}:{n}: {e}", path.display())))?;
                        if let Some(full) = send(item, &mut batch)
                            && tx.send(full).await.is_err()
                        {
                            return Ok(());
                        }
                    }
                }
                Items::Loaded(list) => {
                    for item in list {
                        if let Some(full) = send(item, &mut batch)
                            && tx.send(full).await.is_err()
                        {
                            return Ok(());
                        }
                    }
                }
            }
            if !batch.is_empty() {
                let _ = tx.send(batch).await;
            }
            Ok::<(), StepError>(())
        };
        let writer = || async {
            let mut written = 0u64;
            loop {
                let Some(batch) = rx.lock().await.recv().await else { return Ok::<u64, StepError>(written) };
                written += batch.len() as u64;
                self.batch_write(table, batch).await?;
            }
        };
        let writers = futures_util::future::try_join_all((0..self.params.writers).map(|_| writer()));
        // A writer that fails drops its share of the receiver; the producer then stops.
        let (produced, written) = tokio::join!(produce, writers);
        let written: u64 = written?.into_iter().sum();
        produced?;
        Ok(written)
    }

    /// One BatchWriteItem of up to 25 items, retried until DynamoDB has processed all.
    async fn batch_write(&self, table: &str, items: Vec<HashMap<String, AttributeValue>>) -> Result<(), StepError> {
        let mut requests = items
            .into_iter()
            .map(|item| Ok(WriteRequest::builder().put_request(build(PutRequest::builder().set_item(Some(item)).build())?).build()))
            .collect::<Result<Vec<_>, StepError>>()?;
        let mut tries = 0;
        loop {
            match self.client.batch_write_item().request_items(table, requests.clone()).send().await {
                Ok(out) => {
                    let left = out.unprocessed_items.and_then(|mut m| m.remove(table)).unwrap_or_default();
                    if left.is_empty() {
                        return Ok(());
                    }
                    requests = left;
                }
                Err(e) => {
                    let err = sdk_error(e, &format!("writing items into {table}"), self.config);
                    if err.class != ErrorClass::Throttled {
                        return Err(err);
                    }
                }
            }
            tries += 1;
            if tries > MAX_BACKOFFS {
                return Err(StepError::new(
                    ErrorClass::Throttled,
                    format!("DynamoDB left {} item(s) unprocessed after {tries} tries; raise the write capacity of {table} or lower `writers`", requests.len()),
                ));
            }
            tokio::time::sleep(backoff(tries)).await;
        }
    }

    async fn verify(&self, table: &str, written: u64, created: bool, from: &str) -> Result<Outcome, StepError> {
        let count = count_items(self.client, self.config, table, 4, true).await?;
        let outcome = |v: Verdict, m: String| Outcome::new(v, m).value(format!("{count} items")).output("table", table).output("items_written", written).output("item_count", count);
        if created && count as u64 != written {
            return Ok(outcome(Verdict::Failed, format!("wrote {written} items of {from} into the new table {table}, but it holds {count}")).class(ErrorClass::Failed));
        }
        if (count as u64) < written {
            return Ok(outcome(Verdict::Failed, format!("wrote {written} items of {from} into {table}, but it holds only {count}")).class(ErrorClass::Failed));
        }
        let note = match (created, count as u64 - written) {
            (true, _) => format!("created {table}; "),
            (false, 0) => String::new(),
            (false, extra) => format!("{extra} item(s) not in the backup were kept; "),
        };
        Ok(outcome(Verdict::Passed, format!("restored {written} items of {from} into {table}: {note}{count} items now")))
    }
}

/// Items to write: an export's lines (read as they are written), or a file's, loaded.
enum Items {
    Lines(PathBuf),
    Loaded(Vec<HashMap<String, AttributeValue>>),
}

/// Reads and checks a file of items: JSON Lines of `{"Item": …}`, or `{"Items": [...]}`.
async fn read_file(path: &Path) -> Result<Vec<HashMap<String, AttributeValue>>, StepError> {
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| StepError::invalid(format!("cannot read {}: {}", path.display(), crate::error::io_reason(&e))))?;
    let bad = |line: usize, e: String| StepError::invalid(format!("{}:{line}: {e}; nothing was written", path.display()));
    let trimmed = text.trim_start();
    if trimmed.starts_with("{\"Item\"") || trimmed.starts_with("{ \"Item\"") {
        let mut items = Vec::new();
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            items.push(parse_line(line).map_err(|e| bad(i + 1, e))?);
        }
        return Ok(items);
    }
    let doc: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.line(), format!("not JSON: {e}")))?;
    let list = doc
        .get("Items")
        .and_then(|v| v.as_array())
        .ok_or_else(|| bad(1, "expected the JSON `aws dynamodb scan` prints, {\"Items\": [...]}, or JSON Lines of {\"Item\": {...}}".into()))?;
    list.iter()
        .enumerate()
        .map(|(i, v)| super::item_from_json(v).map_err(|e| StepError::invalid(format!("{}: item {}: {e}; nothing was written", path.display(), i + 1))))
        .collect()
}
