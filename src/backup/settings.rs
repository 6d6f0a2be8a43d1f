//! The `backups:` section of an instance: where its backups go, and retention.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where an instance keeps its backups, and for how long.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupSettings {
    /// A local directory; backups go to `<dir>/<instance>/<id>/`.
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// Retention: always keep this many of the newest backups.
    #[serde(default)]
    pub keep_last: Option<u32>,
    /// Retention: keep backups younger than this many days.
    #[serde(default)]
    pub keep_days: Option<u32>,
    /// How old the newest backup may be before `check` and `gate` fail (`backup.fresh`).
    /// Default 26h: a nightly backup with two hours to spare.
    #[serde(default)]
    pub max_age: Option<crate::duration::Duration>,
    /// An S3 bucket; when set, backups go there (`s3://<bucket>/<prefix><instance>/<id>/`),
    /// and `dir`, if also set, is where restores stage their downloads.
    #[serde(default)]
    pub s3: Option<S3Settings>,
}

/// Where in S3 an instance's backups go. Reached with the instance's `aws` settings.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct S3Settings {
    pub bucket: String,
    /// A key prefix, e.g. `opsctl/`.
    #[serde(default)]
    pub prefix: Option<String>,
}
