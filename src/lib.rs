//! opsctl: operational procedures as typed YAML runbooks, run by one binary.
//!
//! Read in this order:
//! - [`source`], [`diagnostic`]: positions and the errors that carry them.
//! - [`yaml`]: YAML as a span-carrying node tree, and serde over it.
//! - [`template`]: `{{ }}` rendering and reference extraction (minijinja).
//! - [`runbook`]: the runbook language, loaded and checked; [`inventory`]: instances.
//! - [`steps`]: every step kind, listed in [`steps::KINDS`].
//! - [`engine`]: executes a checked runbook; [`report`]: what it did, and the renderers.
//! - [`backup`]: backup stores, manifests, verification, retention.
//! - [`history`], [`lock`]: the audit log and the instance lock.
//! - [`cli`]: the command line; `main.rs` only calls [`cli::main`].
//!
//! The runbook model knows nothing about tokio or backends; the engine never sees YAML
//! text, only nodes; renderers never see the engine.

pub mod backup;
pub mod catalog;
pub mod cli;
pub mod diagnostic;
pub mod duration;
pub mod engine;
pub mod error;
pub mod history;
pub mod inventory;
pub mod lock;
pub mod pattern;
pub mod report;
pub mod runbook;
pub mod schema;
pub mod secret;
pub mod source;
pub mod steps;
pub mod sysinfo;
pub mod template;
pub mod yaml;
