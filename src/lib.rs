//! opsctl: operational procedures as typed YAML runbooks, run by one binary.
//!
//! # Layers
//!
//! Top to bottom. A module imports only from its own layer or the layers below it, never
//! from one above; a backend folder under `steps/` never imports another (what two
//! backends share goes down into `helpers`, and what one asks of another goes through
//! [`kind::Backends`], which the registry answers); no two modules import each other, even
//! through others. `tests/cli/architecture.rs` reads `src/` and holds every import to this
//! table — a new module goes into it there too.
//!
//! | layer | modules | holds |
//! |---|---|---|
//! | cli | [`cli`], [`fuzz`] | argument parsing, dispatch, terminal, rendering choice; the fuzz targets' entry points |
//! | procedures | [`procedures`] | what a command does with runbooks: find, bind, lock and lease, run, record |
//! | engine | [`engine`], [`report`] | one runbook on one instance: plan, execute, events to sinks; the report, its renderers and the history |
//! | model | [`runbook`], [`inventory`], [`schema`] | the runbook language and the inventory, loaded and checked with positions; JSON Schema (no tokio, no SDK) |
//! | registry | [`registry`] | every step kind, type-erased; the leases; the answers to [`kind::Backends`] |
//! | backends | [`steps`] | one folder per backend (`steps::<backend>`): one file per step kind, its client, its lease |
//! | contract | [`kind`], [`lease`] | what a step kind implements and sees when it runs; what a lease implements |
//! | data | [`instance`], `steps::<backend>::settings` | an instance and each backend's inventory section: serde + schemars only |
//! | helpers | [`helpers`] | what backends share: thresholds, log scanning, exec capture and judging, process transports, HTTP clients, TLS, error chains, text, random values |
//! | storage | [`backup`] | backups: the store trait, manifests, retention, the local store; no backend |
//! | vocabulary | [`vocab`] | what a step is and says: effect, error class, verdict, outcome, outputs, a kind's description (`KindSpec`); pure data |
//! | base | [`template`], [`yaml`], [`secret`], [`duration`], [`pattern`], [`units`], [`sysinfo`], [`diagnostic`], [`error`], [`source`] | text with positions, YAML and templates, secrets, units, errors |
//!
//! Read from the bottom: [`source`] and [`diagnostic`] (positions and the errors that carry
//! them), [`yaml`] (a span-carrying node tree and serde over it), [`vocab`] and [`kind`]
//! (what a step is), a backend such as [`steps::host`], [`registry`], [`runbook`],
//! [`engine`], [`procedures`], and [`cli`]; `main.rs` only calls [`cli::main`].

pub mod backup;
pub mod cli;
pub mod diagnostic;
pub mod duration;
pub mod engine;
pub mod error;
pub mod fuzz;
pub mod helpers;
pub mod instance;
pub mod inventory;
pub mod kind;
pub mod lease;
pub mod pattern;
pub mod procedures;
pub mod registry;
pub mod report;
pub mod runbook;
pub mod schema;
pub mod secret;
pub mod source;
pub mod steps;
pub mod sysinfo;
pub mod template;
pub mod units;
pub mod vocab;
pub mod yaml;
