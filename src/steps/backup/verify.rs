//! `backup.verify`: a backup's checksums, then its structure, whatever its kind.
//!
//! The structure is checked by the backend that wrote the backup, through its
//! `BackupFormat` (the registry finds it by the manifest's `kind`).

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
    const PERMISSIONS: &'static [crate::vocab::Permission] = {
        use crate::vocab::*;
        &[aws(&["s3:GetObject", "s3:ListBucket"], AwsOn::Bucket)]
    };
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
                format!(", {}", (format.check)(ctx, &manifest, &file).await?)
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
