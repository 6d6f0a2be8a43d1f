//! The `compose:` section of an instance: its Docker Compose project.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How to reach an instance's compose project.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ComposeSettings {
    /// Compose files, in order (relative to the inventory file).
    pub files: Vec<PathBuf>,
    /// The project name. Default: the first file's directory name, as compose does.
    #[serde(default)]
    pub project: Option<String>,
    /// The env file compose reads for interpolation (`--env-file`).
    #[serde(default)]
    pub env_file: Option<PathBuf>,
}
