//! `postgres.restore`: restore a verified backup, then check what was restored.
//!
//! Before anything is touched: the backup's checksum and `pg_restore --list`, the target
//! server's major version (never older than the source), pg_restore's version, and who is
//! connected to the database (nobody may be, unless `disconnect: true`).
//!
//! Two ways to restore (the default is the safe one):
//! - **swap** (default): restore into a new database `<db>__restore_<time>`, ANALYZE it,
//!   check every table of the backup is there with its rows, then rename the current
//!   database to `<db>_before_<time>` and the new one to `<db>`. If anything fails before the
//!   swap, the current database was never touched. The previous one is kept unless
//!   `keep_previous: false`. Needs the CREATEDB privilege and room for two copies.
//! - **clean** (`clean: true`): `pg_restore --clean --if-exists` into the existing database.
//!   Needs no extra privilege or space, but a failure half-way leaves a half-restored
//!   database.

use std::time::Instant;

use schemars::JsonSchema;
use serde::Deserialize;

use super::backup::{DUMP_FILE, PostgresSource, list_dump, program, source, table_rows};
use super::conn::{ConnInfo, query_error};
use super::quote_ident;
use crate::backup::{self, Manifest};
use crate::helpers::text::plural;
use crate::helpers::transport::{Program, Transport, parse_version, run, run_feeding};
use crate::kind::{StepContext, StepKind};
use crate::units::human_bytes;
use crate::vocab::{Effect, ErrorClass, Outcome, Output, StepError, Verdict};

/// Restore a backup into the instance's database.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Restore {
    /// The backup id (`opsctl backup list`).
    pub from: String,
    /// Restore into this database instead of the instance's.
    #[serde(default)]
    pub database: Option<String>,
    /// Restore in place (`pg_restore --clean --if-exists`) instead of into a new database
    /// swapped in afterwards.
    #[serde(default)]
    pub clean: bool,
    /// Swap mode: keep the replaced database as `<db>_before_<time>`. Default true.
    #[serde(default = "yes")]
    pub keep_previous: bool,
    /// Terminate sessions connected to the database instead of refusing.
    #[serde(default)]
    pub disconnect: bool,
    /// pg_restore --jobs. Default 2.
    #[serde(default = "two")]
    pub jobs: u32,
    /// pg_restore --no-owner: objects belong to the restoring user.
    #[serde(default)]
    pub no_owner: bool,
}

fn yes() -> bool {
    true
}
fn two() -> u32 {
    2
}

/// Everything checked before a restore touches anything.
struct Ready {
    manifest: Manifest,
    /// Where the backup came from.
    source: PostgresSource,
    info: ConnInfo,
    admin: tokio_postgres::Client,
    pg_restore: Program,
    transport: Box<dyn Transport>,
    /// libpq settings for the programs, as the transport's side sees the server.
    env: Vec<(String, String)>,
    target_version: String,
    target: Option<Database>,
    sessions: Vec<(i32, String, String)>,
    /// The dump, verified, on this machine (downloaded if the store is remote).
    dump: crate::backup::Staged,
}

/// The target database as it is now.
struct Database {
    owner: String,
    encoding: String,
    collate: String,
    ctype: String,
}

async fn sessions(admin: &tokio_postgres::Client, db: &str) -> Result<Vec<(i32, String, String)>, StepError> {
    let rows = super::query(
        admin,
        // Client sessions only: an autovacuum worker is not an application to stop, and the
        // server ends it itself when the database is renamed or dropped.
        "SELECT pid, coalesce(usename, ''), coalesce(application_name, '') FROM pg_stat_activity \
         WHERE datname = $1 AND pid <> pg_backend_pid() AND backend_type = 'client backend' ORDER BY pid",
        &[&db],
        "reading pg_stat_activity",
    )
    .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
}

fn describe_sessions(s: &[(i32, String, String)]) -> String {
    s.iter()
        .take(5)
        .map(|(pid, user, app)| if app.is_empty() { format!("pid {pid} ({user})") } else { format!("pid {pid} ({user}, {app})") })
        .collect::<Vec<_>>()
        .join(", ")
        + if s.len() > 5 { ", …" } else { "" }
}

/// Drops a database the restore made when the step ends without keeping it — above all when
/// its future is dropped (an interrupt, a timeout), where nothing can be awaited: the drop is
/// handed to [`crate::helpers::cleanup`], which the run awaits before it ends.
struct DropOnCancel {
    info: ConnInfo,
    database: Option<String>,
}

impl DropOnCancel {
    /// The database stays (it was swapped in, or dropped already).
    fn keep(&mut self) {
        self.database = None;
    }
}

impl Drop for DropOnCancel {
    fn drop(&mut self) {
        let Some(db) = self.database.take() else { return };
        let info = self.info.clone();
        crate::helpers::cleanup::spawn(async move {
            let done = match admin(&info).await {
                Ok(admin) => admin.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(&db))).await.map_err(|e| e.to_string()),
                Err(e) => Err(e.message),
            };
            match done {
                Ok(()) => tracing::warn!("the restore was stopped: the half-restored database {db} was dropped; {} was not touched", info.database),
                Err(e) => tracing::warn!("the restore was stopped; the half-restored database {db} could not be dropped ({e}): drop it by hand; {} was not touched", info.database),
            }
        });
    }
}

/// Connects to a maintenance database on the target server (`postgres`, else `template1`).
async fn admin(info: &ConnInfo) -> Result<tokio_postgres::Client, StepError> {
    match info.with_database("postgres").connect("opsctl restore").await {
        Ok(c) => Ok(c),
        Err(e) if e.message.contains("does not exist") => info.with_database("template1").connect("opsctl restore").await,
        Err(e) => Err(e),
    }
}

impl Restore {
    async fn ready(&self, ctx: &StepContext) -> Result<Ready, StepError> {
        let store = ctx.backup_store()?;
        let manifest = backup::find(store.as_ref(), &self.from).await.map_err(StepError::invalid)?;
        let source = source(&manifest)?;
        let staged = store
            .stage(&manifest, DUMP_FILE)
            .await
            .map_err(|e| StepError::new(ErrorClass::Failed, format!("refusing to restore: {e}; nothing was touched")))?;
        list_dump(ctx, &manifest, &staged.path)
            .await
            .map_err(|e| StepError::new(ErrorClass::Failed, format!("refusing to restore: {}; nothing was touched", e.message)))?;
        let info = super::conn_info(ctx, self.database.as_deref()).await?;
        let admin = admin(&info).await?;
        let (target_num, target_version) = super::server_version(&admin).await?;
        let (src_major, dst_major) = (source.server_version_num / 10_000, target_num / 10_000);
        if src_major > dst_major {
            return Err(StepError::invalid(format!(
                "backup {} comes from PostgreSQL {}, and {} runs {target_version}: a dump cannot be restored into an older major version; nothing was touched",
                manifest.id, source.server_version, info.target()
            )));
        }
        let (transport, env) = super::transport(ctx, &info).await?;
        let pg_restore = program(ctx, transport.as_ref(), "pg_restore", dst_major).await?;
        let dump_major = parse_version(&format!("pg_dump {}", source.pg_dump_version)).map_or(0, |(_, m)| m);
        if pg_restore.major < dump_major {
            return Err(StepError::invalid(format!(
                "pg_restore {} cannot read a dump written by pg_dump {}; install the PostgreSQL {dump_major} client or set `postgres.bin_dir`",
                pg_restore.version, source.pg_dump_version
            )));
        }
        let target = super::query(
            &admin,
            "SELECT pg_get_userbyid(datdba), pg_encoding_to_char(encoding), datcollate, datctype FROM pg_database WHERE datname = $1",
            &[&info.database],
            "reading pg_database",
        )
        .await?
        .first()
        .map(|r| Database { owner: r.get(0), encoding: r.get(1), collate: r.get(2), ctype: r.get(3) });
        let sessions = sessions(&admin, &info.database).await?;
        Ok(Ready { manifest, source, info, admin, pg_restore, transport, env, target_version, target, sessions, dump: staged })
    }

    async fn pg_restore(&self, ready: &Ready, database: &str) -> Result<(), StepError> {
        let mut args = vec!["--no-password".to_string(), "--exit-on-error".to_string(), format!("--dbname={database}")];
        if self.clean {
            args.push("--clean".into());
            args.push("--if-exists".into());
        }
        if self.no_owner {
            args.push("--no-owner".into());
        }
        let mut env = ready.env.clone();
        for (k, v) in env.iter_mut() {
            if k == "PGDATABASE" {
                *v = database.to_string();
            }
        }
        let (_, exit) = if ready.transport.local_files() {
            // Several jobs need a file to seek in.
            if self.jobs > 1 {
                args.push(format!("--jobs={}", self.jobs));
            }
            args.push(ready.dump.path.display().to_string());
            run(ready.transport.as_ref(), &ready.pg_restore, &args, &env).await?
        } else {
            let input = super::backup::open_local(&ready.dump.path).await?;
            run_feeding(ready.transport.as_ref(), &ready.pg_restore, &args, &env, input).await?
        };
        if !exit.success() {
            return Err(StepError::error(format!("pg_restore into {database} failed: {}", exit.reason())));
        }
        Ok(())
    }

    /// ANALYZE the restored database and compare its tables with the backup's.
    async fn verify(&self, ready: &Ready, database: &str) -> Result<(Vec<String>, i64), StepError> {
        let client = ready.info.with_database(database).connect("opsctl restore").await?;
        client.batch_execute("ANALYZE").await.map_err(|e| query_error(&e, "ANALYZE"))?;
        let restored = table_rows(&client).await?;
        let source = &ready.source;
        let mut problems = Vec::new();
        let mut missing = Vec::new();
        for t in &source.tables {
            match restored.iter().find(|r| r.name == t.name) {
                None => missing.push(t.name.clone()),
                Some(r) if t.rows_estimate >= 0 => {
                    let (a, b) = (t.rows_estimate as f64, r.rows_estimate.max(0) as f64);
                    if (a - b).abs() > (a * 0.1).max(1000.0) {
                        problems.push(format!("{}: ~{} rows in the backup, ~{} restored", t.name, t.rows_estimate, r.rows_estimate));
                    }
                }
                Some(_) => {}
            }
        }
        if !missing.is_empty() {
            return Err(StepError::new(
                ErrorClass::Failed,
                format!("the restored database lacks {} table(s) of the backup: {}", missing.len(), missing.join(", ")),
            ));
        }
        Ok((problems, restored.iter().map(|r| r.rows_estimate.max(0)).sum()))
    }

    async fn disconnect_or_refuse(&self, ready: &Ready) -> Result<(), StepError> {
        let now = sessions(&ready.admin, &ready.info.database).await?;
        if now.is_empty() {
            return Ok(());
        }
        if !self.disconnect {
            return Err(StepError::new(
                ErrorClass::Failed,
                format!(
                    "{} session(s) are connected to {}: {}; stop the application first (or set `disconnect: true`); nothing was touched",
                    now.len(),
                    ready.info.database,
                    describe_sessions(&now)
                ),
            ));
        }
        for (pid, _, _) in &now {
            ready.admin.execute("SELECT pg_terminate_backend($1)", &[pid]).await.map_err(|e| query_error(&e, "terminating a session"))?;
        }
        Ok(())
    }
}

impl StepKind for Restore {
    const NAME: &'static str = "postgres.restore";
    const PERMISSIONS: &'static [crate::vocab::Permission] = {
        use crate::vocab::*;
        &[aws(&["s3:GetObject", "s3:ListBucket"], AwsOn::Bucket)]
    };
    const SUMMARY: &'static str = "verify a backup, then restore it (into a new database swapped in, or in place) and check the tables";
    const EFFECT: Effect = Effect::Destroy;
    const LEASES: &'static [&'static str] = &[super::lease::NAME];
    const OUTPUTS: &'static [Output] = &[
        Output { name: "backup", ty: "string", help: "the backup restored" },
        Output { name: "database", ty: "string", help: "the database restored into" },
        Output { name: "previous", ty: "string", help: "swap mode: the replaced database kept under this name, or null" },
        Output { name: "tables", ty: "int", help: "tables restored" },
        Output { name: "rows_estimate", ty: "int", help: "rows restored, estimated after ANALYZE" },
    ];

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let started = Instant::now();
        let ready = self.ready(ctx).await?;
        self.disconnect_or_refuse(&ready).await?;
        let db = ready.info.database.clone();
        let stamp = jiff::Timestamp::now().strftime("%Y%m%d%H%M%S").to_string();
        let source = ready.source.clone();
        let (warnings, rows, previous) = if self.clean {
            if ready.target.is_none() {
                ready
                    .admin
                    .batch_execute(&format!("CREATE DATABASE {}", quote_ident(&db)))
                    .await
                    .map_err(|e| query_error(&e, "creating the database"))?;
            }
            self.pg_restore(&ready, &db).await?;
            let (w, rows) = self.verify(&ready, &db).await?;
            (w, rows, None)
        } else {
            let fresh = format!("{}__restore_{stamp}", truncate_name(&db, 40));
            let mut create = format!("CREATE DATABASE {} TEMPLATE template0", quote_ident(&fresh));
            if let Some(t) = &ready.target {
                create.push_str(&format!(
                    " OWNER {} ENCODING '{}' LC_COLLATE '{}' LC_CTYPE '{}'",
                    quote_ident(&t.owner),
                    t.encoding.replace('\'', "''"),
                    t.collate.replace('\'', "''"),
                    t.ctype.replace('\'', "''")
                ));
            }
            // Armed before the database exists: a stop while it is being created drops it too.
            let mut guard = DropOnCancel { info: ready.info.clone(), database: Some(fresh.clone()) };
            if let Err(e) = ready.admin.batch_execute(&create).await {
                guard.keep();
                return Err(query_error(&e, "creating the database to restore into"));
            }
            let drop_fresh = || async {
                let _ = ready.admin.batch_execute(&format!("DROP DATABASE IF EXISTS {}", quote_ident(&fresh))).await;
            };
            let restored = async {
                self.pg_restore(&ready, &fresh).await?;
                self.verify(&ready, &fresh).await
            }
            .await;
            let (w, rows) = match restored {
                Ok(v) => v,
                Err(e) => {
                    drop_fresh().await;
                    guard.keep();
                    return Err(StepError::new(e.class, format!("{}; {db} was not touched", e.message)));
                }
            };
            if let Err(e) = self.disconnect_or_refuse(&ready).await {
                drop_fresh().await;
                guard.keep();
                return Err(e);
            }
            // From here the databases are renamed: a stop leaves each under a name that says
            // what it is (`<db>__restore_…`, `<db>_before_…`), never a half-swapped one dropped.
            guard.keep();
            let mut previous = None;
            if ready.target.is_some() {
                let old = format!("{}_before_{stamp}", truncate_name(&db, 40));
                ready
                    .admin
                    .batch_execute(&format!("ALTER DATABASE {} RENAME TO {}", quote_ident(&db), quote_ident(&old)))
                    .await
                    .map_err(|e| query_error(&e, &format!("renaming {db} aside (the restored copy stays as {fresh})")))?;
                previous = Some(old);
            }
            if let Err(e) = ready.admin.batch_execute(&format!("ALTER DATABASE {} RENAME TO {}", quote_ident(&fresh), quote_ident(&db))).await {
                if let Some(old) = &previous {
                    let _ = ready.admin.batch_execute(&format!("ALTER DATABASE {} RENAME TO {}", quote_ident(old), quote_ident(&db))).await;
                }
                return Err(query_error(&e, &format!("swapping {fresh} in as {db} (put the previous database back)")));
            }
            if let (Some(old), false) = (&previous, self.keep_previous) {
                ready
                    .admin
                    .batch_execute(&format!("DROP DATABASE {}", quote_ident(old)))
                    .await
                    .map_err(|e| query_error(&e, &format!("dropping the previous database {old}")))?;
                previous = None;
            }
            (w, rows, previous)
        };
        let mut message = format!(
            "restored {} ({}, ~{rows} rows, PostgreSQL {} → {}) into {db} in {}",
            ready.manifest.id,
            plural(source.tables.len() as i64, "table", "tables"),
            source.server_version,
            ready.target_version,
            crate::duration::short(started.elapsed())
        );
        if let Some(p) = &previous {
            message.push_str(&format!("; the previous database is kept as {p}"));
        }
        let verdict = if warnings.is_empty() {
            Verdict::Passed
        } else {
            message.push_str(&format!("; row estimates differ: {}", warnings.join("; ")));
            Verdict::Warned
        };
        Ok(Outcome::new(verdict, message)
            .value(plural(source.tables.len() as i64, "table", "tables"))
            .output("backup", ready.manifest.id.clone())
            .output("database", db)
            .output("previous", previous)
            .output("tables", source.tables.len())
            .output("rows_estimate", rows))
    }

    async fn plan(&self, ctx: &StepContext) -> Result<String, StepError> {
        let ready = self.ready(ctx).await?;
        let source = &ready.source;
        let db = &ready.info.database;
        let how = match (self.clean, ready.target.is_some()) {
            (true, true) => format!("in place into {db} (pg_restore --clean --if-exists)"),
            (true, false) => format!("into a new database {db}"),
            (false, true) => format!(
                "into a new database swapped in for {db} ({db} {})",
                if self.keep_previous { format!("kept as {db}_before_<time>") } else { "dropped".to_string() }
            ),
            (false, false) => format!("into a new database {db} (it does not exist yet)"),
        };
        let mut s = format!(
            "would restore {} ({}, {}, ~{} rows, {}, from PostgreSQL {}) on {} (PostgreSQL {}) {how}; its checksum and archive are verified",
            ready.manifest.id,
            source.database,
            plural(source.tables.len() as i64, "table", "tables"),
            source.rows_estimate,
            human_bytes(ready.manifest.bytes),
            source.server_version,
            ready.info.target(),
            ready.target_version
        );
        if !ready.sessions.is_empty() {
            s.push_str(&format!(
                "; {} session(s) are connected now ({}) and would {}",
                ready.sessions.len(),
                describe_sessions(&ready.sessions),
                if self.disconnect { "be terminated" } else { "make it refuse" }
            ));
        }
        Ok(s)
    }
}

/// A database name cut so that suffixes keep it within PostgreSQL's 63 bytes.
fn truncate_name(name: &str, max: usize) -> String {
    name.chars().take(max).collect()
}

/// Restore a backup into a scratch database of its own, check every table and its rows,
/// measure how long it took (the RTO) and how old the backup is (the RPO), and drop the
/// scratch database — the instance's database is never touched. The weekly backup test and
/// the monthly restore drill.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreTest {
    /// The backup id. Default: the newest PostgreSQL backup in the instance's store.
    #[serde(default)]
    pub from: Option<String>,
    /// Fail when the restore takes longer than this (the RTO target, e.g. 15m).
    #[serde(default)]
    pub max_rto: Option<crate::duration::Duration>,
    /// Fail when the backup is older than this (the RPO target, e.g. 26h).
    #[serde(default)]
    pub max_rpo: Option<crate::duration::Duration>,
    /// pg_restore --jobs. Default 2.
    #[serde(default = "two")]
    pub jobs: u32,
    /// pg_restore --no-owner: objects belong to the restoring user.
    #[serde(default)]
    pub no_owner: bool,
}

/// The scratch databases `postgres.restore_test` makes start so.
pub const SCRATCH_PREFIX: &str = "opsctl_drill_";

impl RestoreTest {
    async fn backup_id(&self, ctx: &StepContext) -> Result<String, StepError> {
        if let Some(id) = &self.from {
            return Ok(id.clone());
        }
        let store = ctx.backup_store()?;
        let all = store.list().await.map_err(|e| StepError::error(e.to_string()))?;
        all.iter()
            .filter(|m| m.kind == "postgres")
            .max_by_key(|m| m.created_at)
            .map(|m| m.id.clone())
            .ok_or_else(|| StepError::new(ErrorClass::Failed, format!("no PostgreSQL backup in {} to test", store.describe())))
    }

    fn restore(&self, from: String, scratch: &str) -> Restore {
        Restore { from, database: Some(scratch.to_string()), clean: false, keep_previous: false, disconnect: false, jobs: self.jobs, no_owner: self.no_owner }
    }
}

impl StepKind for RestoreTest {
    const NAME: &'static str = "postgres.restore_test";
    const PERMISSIONS: &'static [crate::vocab::Permission] = {
        use crate::vocab::*;
        &[aws(&["s3:GetObject", "s3:ListBucket"], AwsOn::Bucket)]
    };
    const SUMMARY: &'static str = "restore a backup (default the newest) into a scratch database, check its tables and rows, measure RTO and RPO, drop it; the instance's database is not touched";
    const EFFECT: Effect = Effect::Mutate;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "backup", ty: "string", help: "the backup restored" },
        Output { name: "database", ty: "string", help: "the scratch database (dropped)" },
        Output { name: "tables", ty: "int", help: "tables restored and checked" },
        Output { name: "rows_estimate", ty: "int", help: "rows restored, estimated after ANALYZE" },
        Output { name: "rto_seconds", ty: "float", help: "how long the restore took" },
        Output { name: "rpo_seconds", ty: "int", help: "the backup's age: the data a restore now would lose" },
    ];

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let id = self.backup_id(ctx).await?;
        let stamp = jiff::Timestamp::now().strftime("%Y%m%d%H%M%S").to_string();
        let scratch = format!("{SCRATCH_PREFIX}{}_{stamp}", ctx.run.run_id.rsplit('-').next().unwrap_or_default().to_lowercase());
        let restore = self.restore(id, &scratch);
        let started = Instant::now();
        let ready = restore.ready(ctx).await?;
        if ready.target.is_some() {
            return Err(StepError::invalid(format!("the scratch database {scratch} already exists; nothing was touched")));
        }
        ready.admin.batch_execute(&format!("CREATE DATABASE {} TEMPLATE template0", quote_ident(&scratch))).await.map_err(|e| query_error(&e, "creating the scratch database"))?;
        let restored = async {
            restore.pg_restore(&ready, &scratch).await?;
            restore.verify(&ready, &scratch).await
        }
        .await;
        let rto = started.elapsed();
        // The scratch database goes whatever happened.
        let dropped = ready.admin.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(&scratch))).await;
        let dropped = match dropped {
            Err(_) => ready.admin.batch_execute(&format!("DROP DATABASE IF EXISTS {}", quote_ident(&scratch))).await,
            ok => ok,
        };
        let drop_note = match &dropped {
            Ok(()) => format!("{scratch} dropped"),
            Err(e) => format!("{scratch} could not be dropped ({}); drop it by hand", query_error(e, "dropping").message),
        };
        let (warnings, rows) = restored.map_err(|e| StepError::new(e.class, format!("{}; {drop_note}", e.message)))?;
        let rpo = (jiff::Timestamp::now().as_second() - ready.manifest.created_at.as_second()).max(0);
        let tables = ready.source.tables.len();
        let mut problems = warnings.clone();
        if let Some(max) = self.max_rto.filter(|m| rto > m.std()) {
            problems.push(format!("the restore took {}, more than max_rto {max}", crate::duration::short(rto)));
        }
        if let Some(max) = self.max_rpo.filter(|m| rpo as u64 > m.std().as_secs()) {
            problems.push(format!("the backup is {} old, more than max_rpo {max}", crate::duration::age(rpo)));
        }
        let target_missed = self.max_rto.is_some_and(|m| rto > m.std()) || self.max_rpo.is_some_and(|m| rpo as u64 > m.std().as_secs());
        let verdict = if target_missed || dropped.is_err() {
            Verdict::Failed
        } else if !warnings.is_empty() {
            Verdict::Warned
        } else {
            Verdict::Passed
        };
        let mut message = format!(
            "restored {} ({}, ~{rows} rows) into {scratch} and checked every table in {} (RTO); the backup is {} old (RPO); {drop_note}",
            ready.manifest.id,
            plural(tables as i64, "table", "tables"),
            crate::duration::short(rto),
            crate::duration::age(rpo)
        );
        if !problems.is_empty() {
            message.push_str(&format!("; {}", problems.join("; ")));
        }
        Ok(Outcome::new(verdict, message)
            .value(format!("RTO {}", crate::duration::short(rto)))
            .output("backup", ready.manifest.id.clone())
            .output("database", scratch)
            .output("tables", tables)
            .output("rows_estimate", rows)
            .output("rto_seconds", (rto.as_secs_f64() * 1000.0).round() / 1000.0)
            .output("rpo_seconds", rpo))
    }

    async fn plan(&self, ctx: &StepContext) -> Result<String, StepError> {
        let id = self.backup_id(ctx).await?;
        let restore = self.restore(id, &format!("{SCRATCH_PREFIX}plan"));
        let ready = restore.ready(ctx).await?;
        Ok(format!(
            "would restore {} ({}, ~{} rows) into a scratch database {SCRATCH_PREFIX}… on {}, check every table, measure RTO and RPO, and drop it; its checksum and archive are verified",
            ready.manifest.id,
            plural(ready.source.tables.len() as i64, "table", "tables"),
            ready.source.rows_estimate,
            ready.info.target()
        ))
    }
}
