//! `backup.verify` and `backup.prune`: the backup store, whatever the kind of backup.
//!
//! The structure of a backup is checked by the backend that wrote it, through its
//! `BackupFormat` (which the registry finds by the manifest's `kind`).

use schemars::JsonSchema;
use serde::Deserialize;

use crate::backup;
use crate::kind::{StepContext, StepKind};
use crate::units::human_bytes;
use crate::vocab::{Effect, ErrorClass, Outcome, Output, StepError};

/// Check a backup: every file against its size and SHA-256, then its structure
/// (`pg_restore --list` for PostgreSQL; every item parsed and counted for DynamoDB).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Verify {
    /// The backup id.
    pub id: String,
}

impl StepKind for Verify {
    const NAME: &'static str = "backup.verify";
    const SUMMARY: &'static str = "check a backup's checksums and structure (pg_restore --list, or every exported item)";
    const EFFECT: Effect = Effect::Read;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "id", ty: "string", help: "the backup" },
        Output { name: "kind", ty: "string", help: "postgres or dynamodb" },
        Output { name: "bytes", ty: "int", help: "total size" },
        Output { name: "created_at", ty: "string", help: "when it was made" },
    ];

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let store = ctx.backup_store()?;
        let manifest = backup::find(store.as_ref(), &self.id).await.map_err(StepError::invalid)?;
        // Each file is checked whole (a remote one downloaded) before its structure is.
        let mut staged = Vec::new();
        for f in &manifest.files {
            staged.push(store.stage(&manifest, &f.name).await.map_err(|e| StepError::new(ErrorClass::Failed, e.to_string()))?);
        }
        let path = |name: &str| manifest.files.iter().position(|f| f.name == name).map(|i| staged[i].path.clone());
        let missing = |name: &str| StepError::new(ErrorClass::Failed, format!("backup {} has no {name}", manifest.id));
        let detail = match ctx.run.backends.backup_format(&manifest.kind) {
            Some(format) => {
                let file = path(format.file).ok_or_else(|| missing(format.file))?;
                format!(", {} {}", (format.check)(ctx, &manifest, &file).await?, format.counts)
            }
            None => String::new(),
        };
        Ok(Outcome::passed(format!(
            "{} is intact: {} file(s), {}, checksums match{detail}",
            manifest.id,
            manifest.files.len(),
            human_bytes(manifest.bytes)
        ))
        .value(human_bytes(manifest.bytes))
        .output("id", manifest.id.clone())
        .output("kind", manifest.kind.clone())
        .output("bytes", manifest.bytes)
        .output("created_at", manifest.created_at.to_string()))
    }
}

/// Delete backups retention no longer keeps: those beyond the newest `keep_last` that are
/// also older than `keep_days` (the newest is never deleted). Defaults come from the
/// inventory's `backups:`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Prune {
    /// Override the inventory's keep_last.
    #[serde(default)]
    pub keep_last: Option<u32>,
    /// Override the inventory's keep_days.
    #[serde(default)]
    pub keep_days: Option<u32>,
}

impl Prune {
    async fn selected(&self, ctx: &StepContext) -> Result<(Box<dyn backup::BackupStore>, Vec<backup::Manifest>, usize, String), StepError> {
        let store = ctx.backup_store()?;
        let settings = ctx.instance.backups.clone().unwrap_or_default();
        let keep_last = self.keep_last.or(settings.keep_last);
        let keep_days = self.keep_days.or(settings.keep_days);
        let all = store.list().await.map_err(|e| StepError::error(e.to_string()))?;
        let doomed = backup::to_prune(&all, keep_last, keep_days, jiff::Timestamp::now());
        let rule = match (keep_last, keep_days) {
            (None, None) => "no retention is set (backups.keep_last / keep_days)".to_string(),
            (l, d) => {
                let mut parts = Vec::new();
                if let Some(l) = l {
                    parts.push(format!("keep the last {l}"));
                }
                if let Some(d) = d {
                    parts.push(format!("keep {d} days"));
                }
                parts.join(", ")
            }
        };
        Ok((store, doomed, all.len(), rule))
    }
}

fn ids(ms: &[backup::Manifest]) -> String {
    ms.iter().map(|m| m.id.as_str()).collect::<Vec<_>>().join(", ")
}

impl StepKind for Prune {
    const NAME: &'static str = "backup.prune";
    const SUMMARY: &'static str = "delete backups past retention (keep_last, keep_days); a dry run lists them";
    const EFFECT: Effect = Effect::Destroy;
    const OUTPUTS: &'static [Output] = &[
        Output { name: "deleted", ty: "list", help: "ids of the deleted backups" },
        Output { name: "kept", ty: "int", help: "backups left" },
    ];

    async fn run(&self, ctx: &StepContext) -> Result<Outcome, StepError> {
        let (store, doomed, total, rule) = self.selected(ctx).await?;
        for m in &doomed {
            store.delete(&m.id).await.map_err(|e| StepError::error(e.to_string()))?;
        }
        let kept = total - doomed.len();
        let message = if doomed.is_empty() {
            format!("nothing to delete ({rule}; {total} backup(s))")
        } else {
            format!("deleted {} ({rule}): {}; {kept} kept", doomed.len(), ids(&doomed))
        };
        Ok(Outcome::passed(message)
            .value(format!("{} deleted", doomed.len()))
            .output("deleted", doomed.iter().map(|m| m.id.clone()).collect::<Vec<_>>())
            .output("kept", kept))
    }

    async fn plan(&self, ctx: &StepContext) -> Result<String, StepError> {
        let (store, doomed, total, rule) = self.selected(ctx).await?;
        Ok(if doomed.is_empty() {
            format!("would delete nothing from {} ({rule}; {total} backup(s))", store.describe())
        } else {
            format!("would delete {} of {total} from {} ({rule}): {}", doomed.len(), store.describe(), ids(&doomed))
        })
    }
}
