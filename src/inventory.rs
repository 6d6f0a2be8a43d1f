//! The inventory: `opsctl.yaml`, the instances opsctl can act on.
//!
//! ```yaml
//! runbooks_dir: ./runbooks           # extra runbooks, next to the shipped ones
//! instances:
//!   team-a:
//!     labels: { tier: prod }
//!     vars: { api: virtual-coffee-api }
//!     http:
//!       base_url: https://api.team-a.example.com
//!       headers: { Authorization: { env: TEAM_A_TOKEN } }
//!       health: [/health, { path: /ready, expect_status: 204 }]
//! ```
//!
//! Found at `--config`, else `$OPSCTL_CONFIG`, else `./opsctl.yaml` if it exists. Without
//! one there is still the built-in `localhost` instance (the machine opsctl runs on), so
//! `opsctl check --instance localhost` works on a fresh machine. An instance itself is pure
//! data ([`Instance`], each backend's section in that backend's `settings.rs`); this module
//! finds the file, loads it with positions for its errors, and selects instances.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::Deserialize;

use crate::diagnostic::{Diagnostic, did_you_mean};
use crate::source::{SourceFile, Span};
use crate::yaml::de::{Mode, from_node};
use crate::yaml::{self, Node};

pub use crate::instance::Instance;

/// The file as written.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InventoryFile {
    /// A directory of extra runbooks, relative to the inventory file.
    #[serde(default)]
    pub runbooks_dir: Option<PathBuf>,
    /// Instances by name.
    #[serde(default)]
    pub instances: IndexMap<String, Instance>,
    /// How much of the audit history is kept.
    #[serde(default)]
    pub history: HistorySettings,
}

/// `history:` — the audit history's retention. The history is appended to one live
/// segment; a full segment is sealed (renamed, never rewritten) and the sealed ones are
/// deleted when their newest run is older than `keep_days` or, oldest first, while the
/// history is larger than `max_bytes`.
#[derive(Clone, Copy, Debug, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HistorySettings {
    /// Days of runs kept (90).
    #[serde(default = "default_keep_days")]
    pub keep_days: u32,
    /// The history's size at most, every segment counted (512MiB).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: crate::units::ByteSize,
}

fn default_keep_days() -> u32 {
    90
}

fn default_max_bytes() -> crate::units::ByteSize {
    crate::units::ByteSize(512 * 1024 * 1024)
}

impl Default for HistorySettings {
    fn default() -> Self {
        HistorySettings { keep_days: default_keep_days(), max_bytes: default_max_bytes() }
    }
}

/// The loaded inventory.
#[derive(Debug)]
pub struct Inventory {
    /// `None` when there is no inventory file.
    pub file: Option<Arc<SourceFile>>,
    pub runbooks_dir: Option<PathBuf>,
    pub instances: IndexMap<String, Arc<Instance>>,
    pub history: HistorySettings,
    /// Where each instance is declared, for messages.
    spans: IndexMap<String, Span>,
    instances_span: Span,
}

/// The name of the instance that always exists.
pub const LOCALHOST: &str = "localhost";

impl Inventory {
    /// No file: only `localhost`.
    pub fn builtin() -> Inventory {
        let mut inv = Inventory {
            file: None,
            runbooks_dir: None,
            instances: IndexMap::new(),
            history: HistorySettings::default(),
            spans: IndexMap::new(),
            instances_span: Span::default(),
        };
        inv.add_localhost();
        inv
    }

    fn add_localhost(&mut self) {
        if !self.instances.contains_key(LOCALHOST) {
            let local = Instance {
                name: LOCALHOST.into(),
                labels: BTreeMap::from([("builtin".to_string(), "true".to_string())]),
                ..Instance::default()
            };
            self.instances.insert(LOCALHOST.into(), Arc::new(local));
        }
    }

    /// Finds and loads the inventory: `--config`, `$OPSCTL_CONFIG`, `./opsctl.yaml`.
    pub fn discover(explicit: Option<&Path>) -> Result<Inventory, Diagnostic> {
        if let Some(path) = explicit {
            return Inventory::load(path);
        }
        if let Some(path) = std::env::var_os("OPSCTL_CONFIG").filter(|p| !p.is_empty()) {
            return Inventory::load(Path::new(&path)).map_err(|d| d.help("the path comes from $OPSCTL_CONFIG"));
        }
        let local = Path::new("opsctl.yaml");
        if local.exists() {
            return Inventory::load(local);
        }
        Ok(Inventory::builtin())
    }

    pub fn load(path: &Path) -> Result<Inventory, Diagnostic> {
        let file = yaml::read_source(path, "inventory")?;
        Inventory::from_source(file, path.parent())
    }

    /// Parses inventory text; `base` resolves relative paths.
    pub fn from_source(file: Arc<SourceFile>, base: Option<&Path>) -> Result<Inventory, Diagnostic> {
        let root = yaml::parse(&file)?;
        if root.is_null() {
            return Err(Diagnostic::new(format!("inventory {} is empty", file.name))
                .help("an inventory needs an `instances:` mapping; see `opsctl schema inventory`"));
        }
        // Top-level `x-…` keys are the file's own (anchors shared by instances), as in a
        // Compose file; aliases to them are already resolved.
        let mut root = root;
        if let crate::yaml::Value::Map(entries) = &mut root.value {
            entries.retain(|(k, _)| !k.as_str().is_some_and(|k| k.starts_with("x-")));
        }
        let parsed: InventoryFile = from_node(&root, Mode::Strict).map_err(|e| e.diagnostic(&file, root.span))?;
        if let (Some(dir), Some(node)) = (&parsed.runbooks_dir, root.get("runbooks_dir")) {
            let resolved = match base {
                Some(b) if dir.is_relative() => b.join(dir),
                _ => dir.clone(),
            };
            if !resolved.is_dir() {
                return Err(Diagnostic::new(format!("runbooks_dir `{}` is not a directory", dir.display()))
                    .at(&file, node.span)
                    .label(format!("looked for {}", resolved.display()))
                    .help("a relative path is taken from the inventory file's directory"));
            }
        }
        let instances_node = root.get("instances");
        let mut spans = IndexMap::new();
        if let Some(entries) = instances_node.and_then(Node::as_map) {
            for (k, _) in entries {
                spans.insert(k.as_str().unwrap_or_default().to_string(), k.span);
            }
        }
        if parsed.history.max_bytes.0 < 1024 * 1024
            && let Some(node) = root.get("history").and_then(|h| h.get("max_bytes"))
        {
            return Err(Diagnostic::new("history.max_bytes is below 1MiB").at(&file, node.span).help("keep at least 1MiB of history (the default is 512MiB)"));
        }
        let mut inv = Inventory {
            history: parsed.history,
            runbooks_dir: parsed.runbooks_dir.map(|d| match base {
                Some(b) if d.is_relative() => b.join(d),
                _ => d,
            }),
            instances: parsed
                .instances
                .into_iter()
                .map(|(name, mut i)| {
                    i.name = name.clone();
                    if let (Some(k), Some(b)) = (i.kubernetes.as_mut(), base)
                        && let Some(f) = k.kubeconfig.as_mut().filter(|f| f.is_relative()) {
                            *f = b.join(&*f);
                        }
                    let ca_files = [
                        i.prometheus.as_mut().and_then(|p| p.ca_file.as_mut()),
                        i.alertmanager.as_mut().and_then(|a| a.ca_file.as_mut()),
                        i.redis.as_mut().and_then(|r| r.ca_file.as_mut()),
                    ];
                    for f in ca_files.into_iter().flatten() {
                        if let Some(b) = base.filter(|_| f.is_relative()) {
                            *f = b.join(&*f);
                        }
                    }
                    for s in i.secrets.values_mut() {
                        if let (Some(f), Some(b)) = (s.env_file.as_mut(), base)
                            && f.is_relative()
                        {
                            *f = b.join(&*f);
                        }
                    }
                    if let (Some(c), Some(b)) = (i.compose.as_mut(), base) {
                        for f in c.files.iter_mut().chain(c.env_file.as_mut()) {
                            if f.is_relative() {
                                *f = b.join(&*f);
                            }
                        }
                    }
                    let node = instances_node.and_then(|n| n.get(&name));
                    let local_refs = node.and_then(Node::as_map).unwrap_or_default().iter().flat_map(|(section, v)| {
                        let mut found = Vec::new();
                        crate::yaml::local_secret_refs(v, &mut found);
                        let section = section.as_str().unwrap_or_default().to_string();
                        found.into_iter().map(move |(reference, span)| crate::instance::LocalRef { section: section.clone(), reference, span })
                    });
                    i.origin = Some(Arc::new(crate::instance::Origin { file: file.clone(), local_refs: local_refs.collect() }));
                    (name, Arc::new(i))
                })
                .collect(),
            spans,
            instances_span: instances_node.map(|n| n.span).unwrap_or(root.span),
            file: Some(file),
        };
        inv.check_secrets(&root)?;
        inv.add_localhost();
        Ok(inv)
    }

    /// Each declared secret names one place (`env_file`, `k8s_secret` or `aws_secret`), and
    /// a key where the place holds several.
    fn check_secrets(&self, root: &Node) -> Result<(), Diagnostic> {
        let Some(file) = &self.file else { return Ok(()) };
        for (name, i) in &self.instances {
            for (secret, d) in &i.secrets {
                let node = root.get("instances").and_then(|n| n.get(name)).and_then(|n| n.get("secrets")).and_then(|n| n.get(secret));
                let span = node.map_or(self.instances_span, |n| n.span);
                let places = [d.env_file.is_some(), d.k8s_secret.is_some(), d.aws_secret.is_some()].iter().filter(|b| **b).count();
                let problem = match places {
                    0 => Some("names no place: give one of `env_file`, `k8s_secret` or `aws_secret`"),
                    1 if d.key.is_none() && d.aws_secret.is_none() => Some("needs `key`: the variable (env file) or key (Secret) to rotate"),
                    1 => None,
                    _ => Some("names more than one place: give one of `env_file`, `k8s_secret` or `aws_secret`"),
                };
                if let Some(p) = problem {
                    return Err(Diagnostic::new(format!("secret `{secret}` of instance {name} {p}")).at(file, span));
                }
                if let Some(l) = d.length.filter(|l| !(16..=256).contains(l)) {
                    return Err(Diagnostic::new(format!("secret `{secret}` of instance {name}: `length` is {l}; use 16 to 256 characters")).at(file, span));
                }
            }
        }
        Ok(())
    }

    /// The named instance, or an error listing the known ones.
    pub fn instance(&self, name: &str) -> Result<Arc<Instance>, Diagnostic> {
        if let Some(i) = self.instances.get(name) {
            return Ok(i.clone());
        }
        let known: Vec<&str> = self.instances.keys().map(String::as_str).collect();
        let mut d = Diagnostic::new(format!("unknown instance `{name}`"));
        if let Some(file) = &self.file {
            d = d.at(file, self.instances_span).label(format!("`{name}` is not declared here"));
        }
        if let Some(s) = did_you_mean(name, known.iter().copied()) {
            d = d.help(format!("did you mean `{s}`?"));
        }
        d = d.help(format!("known instances: {}", known.join(", ")));
        if self.file.is_none() {
            d = d.help("no inventory was found (--config, $OPSCTL_CONFIG or ./opsctl.yaml); only `localhost` exists");
        }
        Err(d)
    }

    /// Where an instance is declared.
    pub fn span_of(&self, name: &str) -> Option<Span> {
        self.spans.get(name).copied()
    }

    /// Instances whose labels match every `key=value` in `selector`.
    /// The instances `--all` (with `--selector`) means: with an inventory file, its own —
    /// the built-in `localhost` only by name; without one, `localhost`.
    pub fn select(&self, selector: &[(String, String)]) -> Vec<Arc<Instance>> {
        let builtin_only = self.instances.values().all(|i| i.labels.get("builtin").is_some_and(|b| b == "true"));
        self.instances
            .values()
            .filter(|i| builtin_only || i.labels.get("builtin").is_none_or(|b| b != "true"))
            .filter(|i| selector.iter().all(|(k, v)| i.labels.get(k) == Some(v)))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Inventory, Diagnostic> {
        Inventory::from_source(SourceFile::new("opsctl.yaml", text), None)
    }

    #[test]
    fn builtin_has_localhost() {
        let inv = Inventory::builtin();
        assert!(inv.instance("localhost").is_ok());
    }

    #[test]
    fn loads_instances_with_http_settings() {
        let inv = load(
            "instances:\n  team-a:\n    labels: { tier: prod }\n    vars: { api: coffee }\n    http:\n      base_url: http://127.0.0.1:1\n      headers: { Authorization: { env: TOKEN } }\n      health: [/health, { path: /ready, expect_status: 204 }]\n",
        )
        .unwrap();
        let a = inv.instance("team-a").unwrap();
        assert_eq!(a.name, "team-a");
        let http = a.http.as_ref().unwrap();
        assert_eq!(http.health.len(), 2);
        assert_eq!(http.health[1].expect_status, Some(204));
        assert!(inv.instance("localhost").is_ok());
        assert_eq!(inv.select(&[("tier".into(), "prod".into())]).len(), 1);
    }

    #[test]
    fn unknown_instance_lists_known_ones() {
        let inv = load("instances:\n  team-a: {}\n  team-b: {}\n").unwrap();
        let err = inv.instance("team-c").unwrap_err();
        assert_eq!(err.message, "unknown instance `team-c`");
        assert_eq!(err.position().unwrap(), "opsctl.yaml:2:3");
        assert!(err.help.iter().any(|h| h == "known instances: team-a, team-b, localhost"), "{:?}", err.help);
    }

    #[test]
    fn a_missing_runbooks_dir_is_an_error() {
        let err = load("runbooks_dir: /no/such/dir\ninstances: {}\n").unwrap_err();
        assert_eq!(err.message, "runbooks_dir `/no/such/dir` is not a directory");
        assert_eq!(err.position().unwrap(), "opsctl.yaml:1:15");
    }

    #[test]
    fn unknown_fields_are_positioned() {
        let err = load("instances:\n  team-a:\n    htpp: {}\n").unwrap_err();
        assert_eq!(err.message, "unknown field `htpp`");
        assert_eq!(err.position().unwrap(), "opsctl.yaml:3:5");
        assert_eq!(err.label.as_deref(), Some("did you mean `http`?"));
    }
}
