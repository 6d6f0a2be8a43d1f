//! `backup.prune`: delete backups past retention (`keep_last`, `keep_days`); a dry run lists
//! them.

use schemars::JsonSchema;
use serde::Deserialize;

use crate::backup;
use crate::kind::{StepContext, StepKind};
use crate::vocab::{Effect, Outcome, Output, StepError};

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
    const PERMISSIONS: &'static [crate::vocab::Permission] = {
        use crate::vocab::*;
        &[aws(&["s3:ListBucket", "s3:DeleteObject"], AwsOn::Bucket)]
    };
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
