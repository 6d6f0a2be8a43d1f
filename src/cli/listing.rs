//! `validate`, `list` and `history`: commands that read and print, never run steps.

use comfy_table::{ContentArrangement, Table, presets};

use super::args::{Format, Global, ListWhat};
use super::Ui;
use crate::diagnostic::Diagnostic;
use crate::error::{Error, Exit};
use crate::inventory::Inventory;
use crate::procedures::catalog;
use crate::{registry, sysinfo};
use crate::report::{Destination, RunReport, history};
use crate::runbook::{self, Runbook};

fn new_table(ui: &Ui, header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(presets::NOTHING);
    t.force_no_tty();
    match super::progress::terminal_width().filter(|_| ui.stdout_tty) {
        Some(w) => {
            t.set_content_arrangement(ContentArrangement::Dynamic);
            t.set_width(w);
        }
        None => {
            t.set_content_arrangement(ContentArrangement::Disabled);
        }
    }
    t.set_header(header.to_vec());
    t
}

fn wants_json(g: &Global) -> bool {
    g.output.iter().any(|o| o.format == Format::Json)
}

fn print(text: &str) -> Result<(), Error> {
    let mut text = text.to_string();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Destination::Stdout.write(&text)
}

/// `opsctl validate [PATH]...`
pub fn validate(g: &Global, _ui: &Ui, specs: &[String], instance: Option<&str>) -> Result<Exit, Error> {
    let inventory = Inventory::discover(g.config.as_deref())?;
    let instance = instance.map(|name| inventory.instance(name)).transpose()?;
    let sources: Vec<Result<std::sync::Arc<crate::source::SourceFile>, Diagnostic>> = if specs.is_empty() {
        catalog::entries(&inventory).iter().map(|e| e.source()).collect()
    } else {
        specs.iter().map(|s| catalog::find(s, &inventory)).collect()
    };
    let mut errors: Vec<Diagnostic> = Vec::new();
    let mut lines = Vec::new();
    for source in sources {
        let file = match source {
            Ok(f) => f,
            Err(d) => {
                errors.push(d);
                continue;
            }
        };
        let result = Runbook::load(file.clone()).and_then(|rb| {
            let refs = runbook::check::references(&rb, instance.as_deref());
            if refs.is_empty() { Ok(rb) } else { Err(refs) }
        });
        match result {
            Ok(rb) => lines.push(format!("ok    {} ({}, {} steps)", rb.name, file.name, rb.steps().count())),
            Err(mut ds) => {
                lines.push(format!("error {} ({} problem{})", file.name, ds.len(), if ds.len() == 1 { "" } else { "s" }));
                errors.append(&mut ds);
            }
        }
    }
    if !g.quiet {
        print(&lines.join("\n"))?;
    }
    if errors.is_empty() { Ok(Exit::Passed) } else { Err(Error::Invalid(errors)) }
}

/// `opsctl list runbooks|instances|kinds`
pub fn list(g: &Global, ui: &Ui, what: ListWhat) -> Result<Exit, Error> {
    match what {
        ListWhat::Kinds => {
            let kinds = registry::KINDS;
            if wants_json(g) {
                let v: Vec<_> = kinds
                    .iter()
                    .map(|k| serde_json::json!({ "kind": k.name, "effect": k.effect, "summary": k.summary, "outputs": k.outputs.iter().map(|o| o.name).collect::<Vec<_>>() }))
                    .collect();
                return print(&serde_json::to_string_pretty(&v).unwrap_or_default()).map(|_| Exit::Passed);
            }
            let mut t = new_table(ui, &["KIND", "EFFECT", "SUMMARY", "OUTPUTS"]);
            for k in kinds {
                t.add_row(vec![k.name.to_string(), k.effect.to_string(), k.summary.to_string(), k.outputs.iter().map(|o| o.name).collect::<Vec<_>>().join(", ")]);
            }
            print(&t.trim_fmt())?;
        }
        ListWhat::Instances => {
            let inventory = Inventory::discover(g.config.as_deref())?;
            if wants_json(g) {
                let v: Vec<_> = inventory.instances.values().map(|i| i.template_value()).collect();
                return print(&serde_json::to_string_pretty(&v).unwrap_or_default()).map(|_| Exit::Passed);
            }
            let mut t = new_table(ui, &["INSTANCE", "LABELS", "BACKENDS"]);
            for i in inventory.instances.values() {
                let labels = i.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
                t.add_row(vec![i.name.clone(), labels, i.backends().join(", ")]);
            }
            print(&t.trim_fmt())?;
        }
        ListWhat::Runbooks => {
            let inventory = Inventory::discover(g.config.as_deref())?;
            let entries = catalog::entries(&inventory);
            let mut rows = Vec::new();
            for e in &entries {
                let (summary, params) = match e.source().ok().map(Runbook::load) {
                    Some(Ok(rb)) => (
                        rb.summary.clone().unwrap_or_default(),
                        rb.params
                            .iter()
                            .map(|p| if p.decl.required { format!("{}*", p.name) } else { p.name.clone() })
                            .collect::<Vec<_>>()
                            .join(", "),
                    ),
                    _ => ("(does not load; run `opsctl validate`)".to_string(), String::new()),
                };
                rows.push((e.name.clone(), e.location(), summary, params));
            }
            if wants_json(g) {
                let v: Vec<_> = rows
                    .iter()
                    .map(|(n, l, s, p)| serde_json::json!({ "name": n, "source": l, "summary": s, "params": p }))
                    .collect();
                return print(&serde_json::to_string_pretty(&v).unwrap_or_default()).map(|_| Exit::Passed);
            }
            let mut t = new_table(ui, &["RUNBOOK", "SOURCE", "SUMMARY", "PARAMS (* required)"]);
            for (n, l, s, p) in rows {
                t.add_row(vec![n, l, s, p]);
            }
            print(&t.trim_fmt())?;
        }
    }
    Ok(Exit::Passed)
}

/// `opsctl history`: newest first, reading only as far back as the filters and the limit need.
pub fn history(g: &Global, ui: &Ui, a: &super::args::HistoryArgs) -> Result<Exit, Error> {
    let dir = sysinfo::state_dir();
    const STATUSES: &[&str] = &["passed", "failed", "interrupted", "refused", "not_started", "locked", "not_applicable"];
    if let Some(s) = a.status.as_deref().filter(|s| !STATUSES.contains(s)) {
        let mut d = Diagnostic::new(format!("unknown status `{s}`"));
        if let Some(m) = crate::diagnostic::did_you_mean(s, STATUSES.iter().copied()) {
            d = d.help(format!("did you mean `{m}`?"));
        }
        return Err(d.help(format!("one of: {}", STATUSES.join(", "))).into());
    }
    let since = match a.since.as_deref() {
        None => None,
        Some(text) => Some(match text.parse::<jiff::Timestamp>() {
            Ok(t) => t,
            Err(_) => {
                let d = crate::duration::Duration::parse(text).map_err(|e| {
                    Diagnostic::new(format!("--since `{text}`: {e}")).help("give a duration back from now (24h, 7d) or a time (2026-11-30T08:00:00Z)")
                })?;
                jiff::Timestamp::now() - jiff::SignedDuration::try_from(d.std()).unwrap_or_default()
            }
        }),
    };
    let mut bad = 0;
    let mut shown: Vec<RunReport> = Vec::new();
    for r in history::newest_first(&dir) {
        let Ok(r) = r else {
            bad += 1;
            continue;
        };
        // Runs are appended as they finish: past `since`, everything older follows.
        if since.is_some_and(|t| r.finished_at < t) {
            break;
        }
        let status = serde_json::to_value(r.status).ok();
        if a.instance.as_deref().is_some_and(|i| r.instance != i)
            || a.runbook.as_deref().is_some_and(|n| r.runbook != n)
            || a.status.as_deref().is_some_and(|s| status.as_ref().and_then(|v| v.as_str()) != Some(s))
            || since.is_some_and(|t| r.started_at < t)
        {
            continue;
        }
        shown.push(r);
        if shown.len() >= a.limit {
            break;
        }
    }
    if bad > 0 {
        tracing::warn!("{bad} line(s) of the history in {} could not be read", dir.display());
    }
    if wants_json(g) {
        return print(&serde_json::to_string_pretty(&shown).unwrap_or_default()).map(|_| Exit::Passed);
    }
    if shown.is_empty() {
        print(&format!("no runs recorded in {} match", history::path(&dir).display()))?;
        return Ok(Exit::Passed);
    }
    let mut t = new_table(ui, &["RUN", "STARTED (UTC)", "WHO", "RUNBOOK", "INSTANCE", "STATUS", "STEPS", "TIME"]);
    for r in &shown {
        let s = &r.summary;
        let mut steps = format!("{} passed", s.passed);
        for (n, w) in [(s.warned, "warned"), (s.failed, "failed"), (s.skipped, "skipped"), (s.planned, "planned")] {
            if n > 0 {
                steps.push_str(&format!(", {n} {w}"));
            }
        }
        let status = if r.dry_run { format!("{} (dry run)", r.status.as_str()) } else { r.status.as_str().to_string() };
        t.add_row(vec![
            r.run_id.clone(),
            r.started_at.strftime("%Y-%m-%d %H:%M:%S").to_string(),
            format!("{}@{}", r.user, r.host),
            r.runbook.clone(),
            r.instance.clone(),
            status,
            steps,
            crate::duration::short(std::time::Duration::from_secs_f64(r.duration_ms / 1000.0)),
        ]);
    }
    print(&t.trim_fmt())?;
    Ok(Exit::Passed)
}

/// An instance's name and its backup store.
type NamedStore = (String, Box<dyn crate::backup::BackupStore>);

/// The instances that have a backup store.
fn stores(inventory: &Inventory, only: Option<&str>) -> Result<Vec<NamedStore>, Error> {
    let mut out = Vec::new();
    match only {
        Some(name) => {
            let i = inventory.instance(name)?;
            let store = registry::backup_store(&i).map_err(|e| Error::from(Diagnostic::new(e)))?;
            out.push((i.name.clone(), store));
        }
        None => {
            for i in inventory.instances.values() {
                if let Ok(store) = registry::backup_store(i) {
                    out.push((i.name.clone(), store));
                }
            }
        }
    }
    Ok(out)
}

fn block_on<F: std::future::Future>(f: F) -> Result<F::Output, Error> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| Error::io("cannot start the async runtime", &e))?;
    Ok(rt.block_on(f))
}

/// `opsctl backup list`
pub fn backups(g: &Global, ui: &Ui, instance: Option<&str>) -> Result<Exit, Error> {
    let inventory = Inventory::discover(g.config.as_deref())?;
    let stores = stores(&inventory, instance)?;
    let mut all = Vec::new();
    for (_, store) in &stores {
        let list = block_on(store.list())?.map_err(|e| Error::Io { context: store.describe(), reason: e.to_string() })?;
        all.extend(list);
    }
    if wants_json(g) {
        return print(&serde_json::to_string_pretty(&all).unwrap_or_default()).map(|_| Exit::Passed);
    }
    if all.is_empty() {
        let where_ = stores.iter().map(|(_, s)| s.describe()).collect::<Vec<_>>().join(", ");
        print(&if where_.is_empty() { "no instance has a backup store (`backups: { dir: … }`)".to_string() } else { format!("no backups in {where_}") })?;
        return Ok(Exit::Passed);
    }
    let mut t = new_table(ui, &["BACKUP", "INSTANCE", "KIND", "CREATED (UTC)", "SIZE", "SOURCE", "ROWS / ITEMS"]);
    for m in &all {
        let (source, rows) = registry::backup_format(&m.kind).and_then(|f| (f.describe)(m)).unwrap_or_default();
        t.add_row(vec![
            m.id.clone(),
            m.instance.clone(),
            m.kind.clone(),
            m.created_at.strftime("%Y-%m-%d %H:%M:%S").to_string(),
            crate::units::human_bytes(m.bytes),
            source,
            rows,
        ]);
    }
    print(&t.trim_fmt())?;
    Ok(Exit::Passed)
}

/// The instance whose store holds backup `id`.
pub fn owner_of_backup(g: &Global, id: &str) -> Result<String, Error> {
    let inventory = Inventory::discover(g.config.as_deref())?;
    let mut ids = Vec::new();
    for (name, store) in stores(&inventory, None)? {
        let list = block_on(store.list())?.unwrap_or_default();
        if list.iter().any(|m| m.id == id) {
            return Ok(name);
        }
        ids.extend(list.into_iter().map(|m| m.id));
    }
    let mut msg = format!("no backup `{id}` in any instance's store");
    if let Some(s) = crate::diagnostic::did_you_mean(id, ids.iter().map(String::as_str)) {
        msg.push_str(&format!("; did you mean `{s}`?"));
    }
    Err(Diagnostic::new(msg).help("give the instance with --instance NAME").into())
}

/// Refuses an unknown backup id before anything runs (exit 2), naming the nearest ids.
pub fn check_backup_exists(g: &Global, instance: &str, id: &str) -> Result<(), Error> {
    let inventory = Inventory::discover(g.config.as_deref())?;
    let i = inventory.instance(instance)?;
    let Ok(store) = registry::backup_store(&i) else {
        return Ok(()); // the step reports the missing store
    };
    block_on(crate::backup::find(store.as_ref(), id))?
        .map(|_| ())
        .map_err(|e| Diagnostic::new(e).help("list the backups with `opsctl backup list`").into())
}
