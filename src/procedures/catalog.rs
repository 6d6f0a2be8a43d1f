//! Where runbooks come from: a path, the inventory's `runbooks_dir`, or the runbooks shipped
//! inside the binary (`runbooks/` in the repository, embedded at build time). A runbook in
//! `runbooks_dir` overrides a shipped one of the same name, so a team can adapt `check`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::diagnostic::{Diagnostic, did_you_mean};
use crate::inventory::Inventory;
use crate::source::SourceFile;
use crate::yaml;

include!(concat!(env!("OUT_DIR"), "/embedded_runbooks.rs"));

/// Where a runbook was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    Embedded(&'static str),
    File(PathBuf),
}

/// A runbook known by name.
#[derive(Clone, Debug)]
pub struct Entry {
    pub name: String,
    pub origin: Origin,
}

impl Entry {
    pub fn source(&self) -> Result<Arc<SourceFile>, Diagnostic> {
        match &self.origin {
            Origin::Embedded(text) => Ok(SourceFile::new(format!("<embedded>/{}.yaml", self.name), *text)),
            Origin::File(path) => yaml::read_source(path, "runbook"),
        }
    }

    pub fn location(&self) -> String {
        match &self.origin {
            Origin::Embedded(_) => format!("<embedded>/{}.yaml", self.name),
            Origin::File(p) => p.display().to_string(),
        }
    }
}

/// Every runbook known by name: the inventory's directory first, then the shipped ones.
pub fn entries(inventory: &Inventory) -> Vec<Entry> {
    let mut out: Vec<Entry> = Vec::new();
    if let Some(dir) = &inventory.runbooks_dir
        && let Ok(read) = std::fs::read_dir(dir) {
            let mut files: Vec<PathBuf> = read
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
                .collect();
            files.sort();
            for p in files {
                let name = p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
                out.push(Entry { name, origin: Origin::File(p) });
            }
        }
    for (name, _, text) in EMBEDDED {
        if !out.iter().any(|e| e.name == *name) {
            out.push(Entry { name: name.to_string(), origin: Origin::Embedded(text) });
        }
    }
    out
}

/// A runbook by name (`check`) or by path (`./deploy.yaml`).
pub fn find(spec: &str, inventory: &Inventory) -> Result<Arc<SourceFile>, Diagnostic> {
    let looks_like_path = spec.contains('/') || spec.ends_with(".yaml") || spec.ends_with(".yml");
    if looks_like_path || Path::new(spec).is_file() {
        return yaml::read_source(Path::new(spec), "runbook");
    }
    let all = entries(inventory);
    if let Some(e) = all.iter().find(|e| e.name == spec) {
        return e.source();
    }
    let mut d = Diagnostic::new(format!("unknown runbook `{spec}`"));
    if let Some(s) = did_you_mean(spec, all.iter().map(|e| e.name.as_str())) {
        d = d.help(format!("did you mean `{s}`?"));
    }
    d = d.help(format!("known runbooks: {}", all.iter().map(|e| e.name.as_str()).collect::<Vec<_>>().join(", ")));
    Err(d.help("give a path (./my-runbook.yaml) to run a file"))
}
