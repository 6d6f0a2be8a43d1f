//! `postgres.backup`: `pg_dump -Fc` streamed into the instance's backup store.
//!
//! The dump goes straight from pg_dump's standard output through a SHA-256 into the store
//! (memory stays flat whatever the size); the manifest — server and pg_dump versions,
//! database, row estimates per table, size, checksum — is written last. If pg_dump fails
//! or the server goes away, nothing is committed and nothing is listed.

use std::time::Instant;

use schemars::JsonSchema;
use serde::Deserialize;

use serde::Serialize;

use crate::backup::{self, Manifest};
use crate::helpers::text::plural;
use crate::helpers::transport::{Program, Transport, parse_version, run, run_feeding};
use crate::kind::{BackupFormat, StepContext, StepKind};
use crate::units::human_bytes;
use crate::vocab::{Effect, ErrorClass, Outcome, Output, StepError};

/// The file a PostgreSQL backup's dump is stored as.
pub const DUMP_FILE: &str = "postgres.dump";

/// Dump the instance's database into its backup store.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Backup {
    /// Another database on the instance's server.
    #[serde(default)]
    pub database: Option<String>,
    /// pg_dump's compression level, 0–9 (default pg_dump's own).
    #[serde(default)]
    pub compress: Option<u8>,
    /// Tables to leave out (pg_dump --exclude-table patterns).
    #[serde(default)]
    pub exclude_tables: Vec<String>,
}

/// What is known about the source before dumping.
struct Source {
    version_num: u32,
    version: String,
    database_bytes: i64,
    tables: Vec<TableRows>,
}

async fn read_source(client: &tokio_postgres::Client) -> Result<Source, StepError> {
    let (version_num, version) = super::server_version(client).await?;
    let database_bytes: i64 = client
        .query_one("SELECT pg_database_size(current_database())", &[])
        .await
        .map_err(|e| super::conn::query_error(&e, "reading the database size"))?
        .get(0);
    let tables = table_rows(client).await?;
    Ok(Source { version_num, version, database_bytes, tables })
}

/// Row estimates of the user tables, by name.
pub async fn table_rows(client: &tokio_postgres::Client) -> Result<Vec<TableRows>, StepError> {
    let rows = super::query(
        client,
        "SELECT n.nspname || '.' || c.relname, c.reltuples::bigint FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' \
           AND NOT c.relispartition ORDER BY 1",
        &[],
        "reading the tables",
    )
    .await?;
    Ok(rows.iter().map(|r| TableRows { name: r.get(0), rows_estimate: r.get(1) }).collect())
}

/// Finds pg_dump/pg_restore able to handle a server of `major`, where the transport runs
/// them.
pub async fn program(ctx: &StepContext, transport: &dyn Transport, name: &str, major: u32) -> Result<Program, StepError> {
    let settings = super::settings(ctx)?;
    let p = transport.find(name, settings.bin_dir.as_deref(), Some(major)).await?;
    if p.major < major {
        return Err(StepError::invalid(format!(
            "{name} {} cannot handle PostgreSQL {major}; install the PostgreSQL {major} client (Debian/Ubuntu: `apt-get install postgresql-client-{major}`) or set `postgres.bin_dir`",
            p.version
        )));
    }
    Ok(p)
}

/// The manifest's section for a PostgreSQL backup (`"postgres": {…}`).
pub const SOURCE: &str = "postgres";

/// Where a PostgreSQL backup came from.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PostgresSource {
    pub database: String,
    pub server_version: String,
    pub server_version_num: u32,
    pub pg_dump_version: String,
    pub database_bytes: u64,
    /// Row estimates per table (`pg_class.reltuples`; -1 when never analyzed).
    pub tables: Vec<TableRows>,
    pub rows_estimate: i64,
}

/// A table and its estimated rows.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TableRows {
    pub name: String,
    pub rows_estimate: i64,
}


/// Where a PostgreSQL backup came from, or why the backup is not one.
pub fn source(manifest: &Manifest) -> Result<PostgresSource, StepError> {
    manifest
        .source(SOURCE)
        .ok_or_else(|| StepError::invalid(format!("backup {} is a {} backup, not a PostgreSQL one", manifest.id, manifest.kind)))
}

/// PostgreSQL backups: checked with `pg_restore --list`, listed with their database and
/// server version.
pub const FORMAT: BackupFormat = BackupFormat {
    kind: SOURCE,
    file: DUMP_FILE,
    check: |ctx, manifest, dump| Box::pin(async move { list_dump(ctx, manifest, dump).await.map(|n| format!("{n} archive entries")) }),
    describe: |m| {
        let p: PostgresSource = m.source(SOURCE)?;
        Some((format!("{} @ PostgreSQL {}", p.database, p.server_version), p.rows_estimate.to_string()))
    },
};

/// Checks a dump's structure with `pg_restore --list`; returns the number of entries.
/// Reading an archive needs a pg_restore at least as new as the pg_dump that wrote it.
/// `dump` is the staged (verified) file.
pub async fn list_dump(ctx: &StepContext, manifest: &Manifest, dump: &std::path::Path) -> Result<usize, StepError> {
    let dump_major = manifest
        .source::<PostgresSource>(SOURCE)
        .and_then(|p| parse_version(&format!("pg_dump {}", p.pg_dump_version)))
        .map_or(0, |(_, m)| m);
    let transport = super::transport_only(ctx).await?;
    let pg_restore = program(ctx, transport.as_ref(), "pg_restore", dump_major).await?;
    let (out, exit) = if transport.local_files() {
        run(transport.as_ref(), &pg_restore, &["--list".into(), dump.display().to_string()], &[]).await?
    } else {
        let input = open_local(dump).await?;
        run_feeding(transport.as_ref(), &pg_restore, &["--list".into()], &[], input).await?
    };
    if !exit.success() {
        return Err(StepError::new(
            ErrorClass::Failed,
            format!("{DUMP_FILE} of backup {} is not a readable pg_dump archive: {}", manifest.id, exit.reason()),
        ));
    }
    Ok(out.lines().filter(|l| !l.starts_with(';') && !l.trim().is_empty()).count())
}

/// A staged file, to feed a program that cannot read this machine's files.
pub async fn open_local(path: &std::path::Path) -> Result<Box<dyn tokio::io::AsyncRead + Send + Unpin>, StepError> {
    let f = tokio::fs::File::open(path).await.map_err(|e| StepError::error(format!("cannot open {}: {}", path.display(), crate::error::io_reason(&e))))?;
    Ok(Box::new(tokio::io::BufReader::with_capacity(256 * 1024, f)))
}

impl StepKind for Backup {
    const NAME: &'static str = "postgres.backup";
    const PERMISSIONS: &'static [crate::vocab::Permission] = {
        use crate::vocab::*;
        &[aws(&["s3:PutObject", "s3:GetObject", "s3:ListBucket", "s3:AbortMultipartUpload"], AwsOn::Bucket)]
    };
    const SUMMARY: &'static str = "pg_dump -Fc streamed into the backup store with a sha256 and a manifest (written last)";
    const EFFECT: Effect = Effect::Mutate;
    const LEASES: &'static [&'static str] = &[super::lease::NAME];
    const OUTPUTS: &'static [Output] = &[
        Output { name: "id", ty: "string", help: "the backup id" },
        Output { name: "path", ty: "string", help: "where it is" },
        Output { name: "sha256", ty: "string", help: "of the dump" },
        Output { name: "bytes", ty: "int", help: "size of the dump" },
        Output { name: "database", ty: "string", help: "the database dumped" },
        Output { name: "server_version", ty: "string", help: "of the source server" },
        Output { name: "rows_estimate", ty: "int", help: "rows in all tables, estimated" },
    ];

    fn check(&self) -> Result<(), String> {
        match self.compress {
            Some(c) if c > 9 => Err(format!("`compress` is 0–9, not {c}")),
            _ => Ok(()),
        }
    }

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let started = Instant::now();
        let info = super::conn_info(ctx, self.database.as_deref()).await?;
        let store = ctx.backup_store()?;
        let client = info.connect("opsctl backup").await?;
        let source = read_source(&client).await?;
        drop(client);
        let (transport, env) = super::transport(ctx, &info).await?;
        let pg_dump = program(ctx, transport.as_ref(), "pg_dump", source.version_num / 10_000).await?;
        let id = backup::new_id(store.as_ref(), "postgres").await;
        let mut pending = store.begin(&id).await.map_err(|e| StepError::error(e.to_string()))?;
        let mut args = vec!["--format=custom".to_string(), "--no-password".to_string()];
        if let Some(c) = self.compress {
            args.push(format!("--compress={c}"));
        }
        for t in &self.exclude_tables {
            args.push(format!("--exclude-table={t}"));
        }
        let process = transport.spawn(&pg_dump, &args, &env, false).await?;
        let stdout = process.stdout;
        let write = async {
            // Owned here so the pipe closes as soon as writing stops (on a store error too),
            // and pg_dump ends instead of blocking on a full pipe.
            let mut stdout = stdout;
            pending.put_file(DUMP_FILE, "pg_dump custom", &mut stdout).await
        };
        let (written, exit) = tokio::join!(write, process.wait);
        // A store that could not take the dump (a full disk) closed the pipe, and pg_dump
        // died of it: the store's error is the cause.
        let written = match written {
            Err(e) => return Err(StepError::error(format!("writing the backup failed, none was kept: {e}"))),
            Ok(entry) => entry,
        };
        let exit = exit?;
        if !exit.success() {
            return Err(StepError::error(format!("pg_dump of {} failed, no backup was kept: {}", info.describe(), exit.reason())));
        }
        let entry = written;
        let rows: i64 = source.tables.iter().map(|t| t.rows_estimate.max(0)).sum();
        let recorded = PostgresSource {
            database: info.database.clone(),
            server_version: source.version.clone(),
            server_version_num: source.version_num,
            pg_dump_version: pg_dump.version.clone(),
            database_bytes: source.database_bytes.max(0) as u64,
            tables: source.tables.clone(),
            rows_estimate: rows,
        };
        let manifest = Manifest::of_one_file(&id, &ctx.instance.name, SOURCE, started.elapsed(), &entry, &recorded);
        let path = pending.commit(&manifest).await.map_err(|e| StepError::error(format!("committing the backup failed: {e}")))?;
        Ok(Outcome::passed(format!(
            "dumped {} (PostgreSQL {}, {}, ~{rows} rows) into {id}: {} in {}",
            info.database,
            source.version,
            plural(source.tables.len() as i64, "table", "tables"),
            human_bytes(entry.bytes),
            crate::duration::short(started.elapsed())
        ))
        .value(human_bytes(entry.bytes))
        .output("id", id)
        .output("path", path)
        .output("sha256", entry.sha256)
        .output("bytes", entry.bytes)
        .output("database", info.database.clone())
        .output("server_version", source.version)
        .output("rows_estimate", rows))
    }

    async fn plan(&self, ctx: &StepContext) -> Result<String, StepError> {
        let info = super::conn_info(ctx, self.database.as_deref()).await?;
        let store = ctx.backup_store()?;
        let client = info.connect("opsctl backup").await?;
        let source = read_source(&client).await?;
        let (transport, _) = super::transport(ctx, &info).await?;
        let pg_dump = program(ctx, transport.as_ref(), "pg_dump", source.version_num / 10_000).await?;
        Ok(format!(
            "would dump {} (PostgreSQL {}, {}, {}) with pg_dump {} on {} into {} as a new backup",
            info.database,
            source.version,
            human_bytes(source.database_bytes.max(0) as u64),
            plural(source.tables.len() as i64, "table", "tables"),
            pg_dump.version,
            transport.describe(),
            store.describe()
        ))
    }
}
