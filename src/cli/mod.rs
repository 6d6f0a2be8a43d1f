//! The command line: parse, load, check, run, render, record. `main.rs` calls [`main`].

pub mod args;
mod explain;
mod listing;
mod serve;

use std::io::Write;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use crate::engine::{Confirm, Interrupts, Options};
use crate::error::{Error, Exit};
use crate::inventory::Inventory;
use crate::procedures::{self, Prepared, catalog};
use crate::report::{Destination, LogSink, RunReport, Sink, Sinks, json, junit, progress, table};
use crate::runbook::Runbook;
use crate::{secret, sysinfo};
use args::{Cli, ColorChoice, Command, Format, Global, OutputSpec, RunArgs, Targets};

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    // One TLS crypto provider for the whole process (reqwest, and later kube and the AWS
    // SDK, would otherwise disagree and panic).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    std::panic::set_hook(Box::new(panic_hook));
    let cli = Cli::parse();
    let ui = Ui::new(&cli.global);
    init_logging(&cli.global, ui.color_err);
    match dispatch(cli, &ui) {
        Ok(exit) => ExitCode::from(exit.code()),
        Err(e) => {
            let text = e.render(ui.color_err);
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(secret::scrub(&text).as_bytes());
            ExitCode::from(e.exit().code())
        }
    }
}

/// Says a panic is a bug, with its message and (under `RUST_BACKTRACE`) backtrace scrubbed
/// of every secret value: a panic's message may hold whatever the code had in hand.
fn panic_hook(info: &std::panic::PanicHookInfo) {
    let message = info.payload().downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| info.payload().downcast_ref::<String>().cloned()).unwrap_or_default();
    let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
    let thread = std::thread::current().name().unwrap_or("unnamed").to_string();
    let backtrace = std::backtrace::Backtrace::capture();
    let trace = match backtrace.status() {
        std::backtrace::BacktraceStatus::Captured => format!("\n{backtrace}"),
        _ => String::new(),
    };
    let text = format!(
        "opsctl panicked (thread {thread}){at}: {message}{trace}\nthis is a bug in opsctl: please report it with the command you ran (secrets in this message are masked)\n"
    );
    let _ = std::io::stderr().lock().write_all(secret::scrub(&text).as_bytes());
}

/// Terminal facts, decided once.
pub struct Ui {
    pub color_out: bool,
    pub color_err: bool,
    pub stdout_tty: bool,
    pub stderr_tty: bool,
}

impl Ui {
    fn new(g: &Global) -> Ui {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let pick = |tty: bool| match g.color {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => tty && !no_color,
        };
        let (stdout_tty, stderr_tty) = (sysinfo::stdout_is_tty(), sysinfo::stderr_is_tty());
        Ui { color_out: pick(stdout_tty), color_err: pick(stderr_tty), stdout_tty, stderr_tty }
    }
}

fn init_logging(g: &Global, color: bool) {
    use tracing_subscriber::filter::LevelFilter;
    let level = match (g.quiet, g.verbose) {
        (true, _) => LevelFilter::ERROR,
        (false, 0) => LevelFilter::WARN,
        (false, 1) => LevelFilter::INFO,
        (false, 2) => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    };
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_target(g.verbose >= 2)
        .with_ansi(color)
        .with_writer(|| secret::ScrubWriter(std::io::stderr()))
        .try_init();
}

fn dispatch(cli: Cli, ui: &Ui) -> Result<Exit, Error> {
    let g = &cli.global;
    match cli.command {
        Command::Run(a) => run(g, ui, &a, g.dry_run),
        Command::Plan(a) => run(g, ui, &a, true),
        Command::Check { targets } => run_on(g, ui, "check", &targets, Vec::new(), g.dry_run),
        Command::Backup(b) => match b.action {
            None => {
                if b.targets.instance.is_none() && !b.targets.all && b.targets.selector.is_empty() {
                    return Err(crate::diagnostic::Diagnostic::new("`opsctl backup` needs --instance NAME (or a,b,c, --all, --selector LABEL=VALUE)")
                        .help("or one of: opsctl backup list | backup verify ID | backup prune --instance NAME")
                        .into());
                }
                let what = match b.what {
                    args::BackupWhat::All => "all",
                    args::BackupWhat::Postgres => "postgres",
                    args::BackupWhat::Dynamodb => "dynamodb",
                    args::BackupWhat::Redis => "redis",
                };
                run_on(g, ui, "backup", &b.targets, vec![("what".into(), what.to_string())], g.dry_run)
            }
            Some(args::BackupAction::List { instance }) => listing::backups(g, ui, instance.as_deref()),
            Some(args::BackupAction::Verify { id, instance }) => {
                let instance = match instance {
                    Some(i) => i,
                    None => listing::owner_of_backup(g, &id)?,
                };
                listing::check_backup_exists(g, &instance, &id)?;
                run_named(g, ui, "backup-verify", &instance, &[("id", id)], g.dry_run)
            }
            Some(args::BackupAction::Prune { targets }) => run_on(g, ui, "backup-prune", &targets, Vec::new(), g.dry_run),
        },
        Command::Restore { instance, from } => {
            listing::check_backup_exists(g, &instance, &from)?;
            run_named(g, ui, "restore", &instance, &[("backup", from)], g.dry_run)
        }
        Command::Scale { instance, target, replicas, on } => {
            let mut params = vec![("target", target), ("replicas", replicas.to_string())];
            if let Some(on) = on {
                params.push(("on", on.as_str().to_string()));
            }
            run_named(g, ui, "scale", &instance, &params, g.dry_run)
        }
        Command::Rollback { instance, target, to_revision, on } => {
            let mut params = vec![("target", target)];
            if let Some(n) = to_revision {
                params.push(("to_revision", n.to_string()));
            }
            if let Some(on) = on {
                params.push(("on", on.as_str().to_string()));
            }
            run_named(g, ui, "rollback", &instance, &params, g.dry_run)
        }
        Command::Routine { name, targets } => routine(g, ui, &name, &targets),
        Command::Triage { targets, since, fail_on_findings } => {
            let (exit, warned) = run_counting(g, ui, "triage", &targets, vec![("since".into(), since)], g.dry_run)?;
            Ok(if fail_on_findings && warned > 0 { Exit::worst([exit, Exit::Failed]) } else { exit })
        }
        Command::Logs { targets, since, component } => {
            let mut params = Vec::new();
            if let Some(s) = since {
                params.push(("since".into(), s));
            }
            if let Some(c) = component {
                params.push(("component".into(), c));
            }
            run_on(g, ui, "logs", &targets, params, g.dry_run)
        }
        Command::Gate { targets } => run_on(g, ui, "gate", &targets, Vec::new(), g.dry_run),
        Command::Deploy { instance, target, image, container, no_gate, watch, timeout, on } => {
            let mut params = vec![("target", target), ("image", image), ("watch", watch), ("timeout", timeout)];
            if let Some(c) = container {
                params.push(("container", c));
            }
            if let Some(on) = on {
                params.push(("on", on.as_str().to_string()));
            }
            let mut entries = Vec::new();
            if !no_gate {
                entries.push(Entry { runbook: "gate".into(), params: Vec::new(), stop_on_failure: true, optional: false });
            }
            entries.push(Entry { runbook: "deploy".into(), params: params.into_iter().map(|(k, v)| (k.to_string(), v)).collect(), stop_on_failure: false, optional: false });
            let inventory = Inventory::discover(g.config.as_deref())?;
            let inst = inventory.instance(&instance)?;
            sequences(g, ui, &inventory, "deploy", vec![(inst, entries)], false)
        }
        Command::RotateSecret { instance, name, timeout } => {
            let inventory = Inventory::discover(g.config.as_deref())?;
            let inst = inventory.instance(&instance)?;
            if !inst.secrets.contains_key(&name) {
                let declared: Vec<&str> = inst.secrets.keys().map(String::as_str).collect();
                let mut d = crate::diagnostic::Diagnostic::new(format!("instance {instance} declares no secret `{name}`"));
                if let Some(s) = crate::diagnostic::did_you_mean(&name, declared.iter().copied()) {
                    d = d.help(format!("did you mean `{s}`?"));
                }
                d = d.help(if declared.is_empty() {
                    format!("declare it under `secrets:` in {instance}: `secrets: {{ {name}: {{ env_file: .env.prod, key: JWT_SECRET, restart: [api] }} }}`")
                } else {
                    format!("declared: {}", declared.join(", "))
                });
                return Err(d.into());
            }
            run_named(g, ui, "rotate-secret", &instance, &[("name", name), ("timeout", timeout)], g.dry_run)
        }
        Command::Validate { paths, instance } => listing::validate(g, ui, &paths, instance.as_deref()),
        Command::List { what } => listing::list(g, ui, what),
        Command::Explain { kind } => explain::explain(g, ui, &kind),
        Command::History(h) => listing::history(g, ui, &h),
        Command::Serve(a) => serve::serve(g, ui, &a),
        Command::Permissions { runbooks, routine, instance, format, service_account } => permissions(g, &runbooks, &routine, &instance, format, service_account.as_deref()),
        Command::Schema { what } => {
            let v = match what {
                args::SchemaWhat::Runbook => crate::schema::runbook(),
                args::SchemaWhat::Inventory => crate::schema::inventory(),
            };
            let mut text = serde_json::to_string_pretty(&v).unwrap_or_default();
            text.push('\n');
            Destination::Stdout.write(&text)?;
            Ok(Exit::Passed)
        }
        Command::Completions { shell } => {
            let mut cmd = Cli::command();
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut cmd, "opsctl", &mut buf);
            Destination::Stdout.write(&String::from_utf8_lossy(&buf))?;
            Ok(Exit::Passed)
        }
    }
}

fn run(g: &Global, ui: &Ui, a: &RunArgs, dry_run: bool) -> Result<Exit, Error> {
    run_on(g, ui, &a.runbook, &a.targets, a.params.clone(), dry_run)
}

/// Runs a runbook on the instances `targets` names.
fn run_on(g: &Global, ui: &Ui, runbook: &str, targets: &Targets, params: Vec<(String, String)>, dry_run: bool) -> Result<Exit, Error> {
    run_counting(g, ui, runbook, targets, params, dry_run).map(|(exit, _)| exit)
}

/// [`run_on`], also saying how many steps warned.
fn run_counting(g: &Global, ui: &Ui, runbook: &str, targets: &Targets, params: Vec<(String, String)>, dry_run: bool) -> Result<(Exit, usize), Error> {
    let inventory = Inventory::discover(g.config.as_deref())?;
    let instances = resolve(&inventory, targets, runbook)?;
    let source = catalog::find(runbook, &inventory)?;
    let runbook = Runbook::load(source).map_err(Error::Invalid)?;
    let fleet = targets.fleet();
    let order: std::collections::HashMap<String, usize> = instances.iter().enumerate().map(|(i, inst)| (inst.name.clone(), i)).collect();
    let mut prepared = Vec::new();
    let mut not_applicable = Vec::new();
    let mut invalid = Vec::new();
    for instance in instances {
        let name = instance.name.clone();
        match procedures::prepare(&runbook, instance, &params) {
            Ok(p) => prepared.push(p),
            // On several instances, one the runbook does not apply to is reported, not refused.
            Err(Error::Refused(why)) if fleet => {
                let reason = why.split_once(": ").map_or(why.as_str(), |(_, r)| r).to_string();
                not_applicable.push(procedures::not_run(&runbook, &name, dry_run, crate::report::RunStatus::NotApplicable, format!("does not apply: {reason}")));
            }
            // Every instance's problems are told at once, before any runs.
            Err(Error::Invalid(found)) if fleet => gather(&mut invalid, found),
            Err(e) => return Err(e),
        }
    }
    if !invalid.is_empty() {
        return Err(Error::Invalid(invalid));
    }
    if prepared.is_empty() && !not_applicable.is_empty() {
        return Err(Error::Refused(format!(
            "`{}` applies to none of the {} instances ({})",
            runbook.name,
            not_applicable.len(),
            not_applicable.iter().map(|r| format!("{}: {}", r.instance, r.reason.as_deref().unwrap_or_default())).collect::<Vec<_>>().join("; ")
        )));
    }
    execute_counting(g, ui, &runbook, prepared, not_applicable, dry_run, fleet, &|name| order.get(name).copied().unwrap_or(usize::MAX), inventory.history)
}

/// Adds problems found on one instance of several to those found before, each once (a
/// problem in the runbook is found on every instance).
fn gather(all: &mut Vec<crate::diagnostic::Diagnostic>, found: Vec<crate::diagnostic::Diagnostic>) {
    for d in found {
        if !all.iter().any(|a| a.message == d.message && a.position() == d.position()) {
            all.push(d);
        }
    }
}

/// The instances a command runs on: `--instance a,b,c` (those, in that order, each once),
/// `--all` (the inventory's instances; the built-in localhost only by name) or
/// `--selector` (the matching ones).
fn resolve(inventory: &Inventory, t: &Targets, what: &str) -> Result<Vec<std::sync::Arc<crate::instance::Instance>>, Error> {
    use crate::diagnostic::Diagnostic;
    if t.all || !t.selector.is_empty() {
        let chosen = inventory.select(&t.selector);
        if chosen.is_empty() {
            return Err(Diagnostic::new(if t.selector.is_empty() { "the inventory has no instances" } else { "no instance matches the selector" })
                .help("see the instances and their labels with `opsctl list instances`")
                .into());
        }
        return Ok(chosen);
    }
    let Some(list) = t.instance.as_deref() else {
        return Err(Diagnostic::new(format!("`{what}` needs an instance: --instance NAME (or several: a,b,c), --all, or --selector LABEL=VALUE"))
            .help("see the instances with `opsctl list instances`")
            .into());
    };
    let mut names: Vec<&str> = list.split(',').map(str::trim).filter(|n| !n.is_empty()).collect();
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(*n));
    if names.is_empty() {
        return Err(Diagnostic::new(format!("--instance `{list}` names no instance")).help("give a name, or several separated by commas: a,b,c").into());
    }
    Ok(names.iter().map(|n| inventory.instance(n)).collect::<Result<Vec<_>, _>>()?)
}

/// Confirmations on the terminal, when there is one to ask on.
fn tty_confirm(ui: &Ui) -> TtyConfirm {
    TtyConfirm { interactive: sysinfo::stdin_is_tty() && ui.stderr_tty, lock: Default::default() }
}

/// A run's sinks: the log, and a progress line on a terminal unless -q or -v.
fn sinks(g: &Global, ui: &Ui) -> impl Fn() -> Box<dyn Sink> + Sync + use<> {
    let progress_line = ui.stderr_tty && !g.quiet && g.verbose == 0;
    move || -> Box<dyn Sink> {
        let mut sinks: Vec<Box<dyn Sink>> = vec![Box::new(LogSink)];
        if progress_line {
            sinks.push(Box::new(progress::Progress::new()));
        }
        Box::new(Sinks(sinks))
    }
}

/// `--max-concurrency` and `--max-errors` for a command on `instances` instances.
fn fleet_limits(g: &Global, instances: usize) -> procedures::fleet::Limits {
    procedures::fleet::Limits { max_concurrency: g.max_concurrency.of(instances), max_errors: g.max_errors.map(|m| m.of(instances)) }
}

/// The command's async runtime.
fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().map_err(|e| Error::io("cannot start the async runtime", &e))
}

/// How a table goes to `spec`: coloured and wrapped only on a terminal.
fn table_options(g: &Global, ui: &Ui, spec: &OutputSpec) -> table::TableOptions {
    let to_stdout = spec.dest == Destination::Stdout;
    table::TableOptions {
        color: ui.color_out && to_stdout,
        quiet: g.quiet,
        width: if to_stdout && ui.stdout_tty { progress::terminal_width() } else { None },
    }
}

/// Runs a shipped (or overridden) runbook for a procedure command.
fn run_named(g: &Global, ui: &Ui, name: &str, instance: &str, params: &[(&str, String)], dry_run: bool) -> Result<Exit, Error> {
    run_on(g, ui, name, &Targets::one(instance), params.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(), dry_run)
}

/// The shipped routines, used when the instance's `routines:` does not name one.
const ROUTINES: &[(&str, &[&str])] = &[
    ("daily", &["check", "backup", "logs"]),
    ("weekly", &["db-maintenance", "utilisation", "backup-test"]),
    ("monthly", &["restore-drill", "backup-prune"]),
];

/// A runbook of a sequence, before it is loaded.
struct Entry {
    runbook: String,
    params: Vec<(String, String)>,
    stop_on_failure: bool,
    /// A shipped default: when it does not apply to the instance it is listed as not run
    /// instead of refusing the whole sequence.
    optional: bool,
}

fn routine(g: &Global, ui: &Ui, name: &str, targets: &Targets) -> Result<Exit, Error> {
    let inventory = Inventory::discover(g.config.as_deref())?;
    let instances = resolve(&inventory, targets, &format!("routine {name}"))?;
    let mut work = Vec::new();
    for inst in instances {
        let entries = routine_entries(&inst, name)?;
        work.push((inst, entries));
    }
    sequences(g, ui, &inventory, &format!("routine {name}"), work, targets.fleet())
}

/// The runbooks of routine `name` on `inst`: its `routines:` entry, else the shipped one.
fn routine_entries(inst: &crate::instance::Instance, name: &str) -> Result<Vec<Entry>, Error> {
    Ok(match inst.routines.get(name) {
        Some(list) => list
            .iter()
            .map(|e| Entry { runbook: e.runbook.clone(), params: e.params.iter().map(|(k, v)| (k.clone(), v.clone())).collect(), stop_on_failure: e.stop_on_failure, optional: false })
            .collect(),
        None => match ROUTINES.iter().find(|(n, _)| *n == name) {
            Some((_, list)) => list.iter().map(|r| Entry { runbook: r.to_string(), params: Vec::new(), stop_on_failure: false, optional: true }).collect(),
            None => {
                let mut known: Vec<String> = ROUTINES.iter().map(|(n, _)| n.to_string()).collect();
                known.extend(inst.routines.keys().filter(|k| !known.contains(k)).cloned().collect::<Vec<_>>());
                let mut d = crate::diagnostic::Diagnostic::new(format!("unknown routine `{name}`"));
                if let Some(s) = crate::diagnostic::did_you_mean(name, known.iter().map(String::as_str)) {
                    d = d.help(format!("did you mean `{s}`?"));
                }
                return Err(d.help(format!("routines of {}: {}; add others under `routines:` in the inventory", inst.name, known.join(", "))).into());
            }
        },
    })
}

/// Loads and binds every runbook of each instance's sequence (refusing before anything
/// runs when one is wrong), runs the sequences (the instances at once, under the fleet
/// limits; each sequence's runbooks in order), and renders one report.
fn sequences(g: &Global, ui: &Ui, inventory: &Inventory, name: &str, work: Vec<(std::sync::Arc<crate::instance::Instance>, Vec<Entry>)>, fleet: bool) -> Result<Exit, Error> {
    let mut loaded: std::collections::HashMap<String, std::sync::Arc<Runbook>> = std::collections::HashMap::new();
    let mut plans = Vec::new();
    let mut invalid = Vec::new();
    let confirm = tty_confirm(ui);
    let options = Options { dry_run: g.dry_run, yes: g.yes, parallel: g.parallel as usize };
    for (inst, entries) in work {
        let mut queue = Vec::new();
        let mut not_run = Vec::new();
        for e in entries {
            let runbook = match loaded.get(&e.runbook) {
                Some(r) => r.clone(),
                None => {
                    let r = std::sync::Arc::new(Runbook::load(catalog::find(&e.runbook, inventory)?).map_err(Error::Invalid)?);
                    loaded.insert(e.runbook.clone(), r.clone());
                    r
                }
            };
            match procedures::prepare(&runbook, inst.clone(), &e.params) {
                Ok(prepared) => queue.push(procedures::Queued { runbook, prepared, stop_on_failure: e.stop_on_failure }),
                Err(Error::Refused(why)) if e.optional => {
                    let reason = why.split_once(": ").map_or(why.as_str(), |(_, r)| r).to_string();
                    not_run.push(crate::report::NotRun { runbook: e.runbook.clone(), reason: format!("does not apply: {reason}") });
                }
                Err(Error::Invalid(found)) => gather(&mut invalid, found),
                Err(err) => return Err(err),
            }
        }
        for q in &queue {
            procedures::refuse_unconfirmable(&q.runbook, &options, confirm.interactive(), std::slice::from_ref(&q.prepared))?;
        }
        plans.push((inst, queue, not_run));
    }
    if !invalid.is_empty() {
        return Err(Error::Invalid(invalid));
    }
    let outputs = check_outputs(g)?;
    let state_dir = sysinfo::state_dir();
    let sink = sinks(g, ui);
    let limits = fleet_limits(g, plans.len());
    let results = runtime()?.block_on(async {
        let interrupts = Interrupts::default();
        spawn_signal_handler(interrupts.clone(), g.grace);
        let ctx = procedures::Context::new(options, &confirm, interrupts, &state_dir, &sink, inventory.history);
        let ctx = &ctx;
        procedures::fleet::fan_out(
            plans,
            limits,
            |(inst, queue, mut not_run)| async move {
                let (reports, mut skipped) = procedures::run_sequence(queue, ctx).await?;
                not_run.append(&mut skipped);
                Ok(crate::report::SequenceReport::new(name.to_string(), inst.name.clone(), reports, not_run))
            },
            |r: &Result<crate::report::SequenceReport, Error>| r.as_ref().map_or(true, |s| s.status == crate::report::RunStatus::Failed),
            |(inst, queue, _), n| {
                let reason = format!("not started: more than {n} instances failed (--max-errors {n})");
                let not_run = queue.iter().map(|q| crate::report::NotRun { runbook: q.runbook.name.clone(), reason: reason.clone() }).collect();
                let mut seq = crate::report::SequenceReport::new(name.to_string(), inst.name.clone(), Vec::new(), not_run);
                seq.status = crate::report::RunStatus::NotStarted;
                seq.exit_code = Exit::Failed.code();
                Ok(seq)
            },
        )
        .await
    });
    let seqs = results.into_iter().collect::<Result<Vec<_>, Error>>()?;
    render_sequences(g, ui, &outputs, name, &seqs, fleet)?;
    Ok(Exit::worst(seqs.iter().map(|s| if s.status == crate::report::RunStatus::NotStarted { Exit::Failed } else { Exit::worst(s.runs.iter().map(|r| r.status.exit())) })))
}

fn render_sequences(g: &Global, ui: &Ui, outputs: &[OutputSpec], name: &str, seqs: &[crate::report::SequenceReport], fleet: bool) -> Result<(), Error> {
    let sequence_json = |seq: &crate::report::SequenceReport| {
        let mut doc = serde_json::to_value(seq).unwrap_or_default();
        if let Some(runs) = doc.get_mut("runs") {
            *runs = serde_json::Value::Array(seq.runs.iter().map(|r| serde_json::from_str(&json::render(r)).unwrap_or_default()).collect());
        }
        doc
    };
    for spec in outputs {
        let text = match spec.format {
            Format::Table => {
                let opts = table_options(g, ui, spec);
                let mut parts = Vec::new();
                if !fleet || g.verbose > 0 {
                    for seq in seqs {
                        parts.extend(seq.runs.iter().map(|r| table::render(r, opts)));
                        parts.push(format!("{}\n", table::sequence_summary(seq, opts.color)));
                    }
                }
                if fleet {
                    let rows: Vec<_> = seqs.iter().map(|s| s.fleet_row()).collect();
                    parts.push(table::fleet(name, &rows, opts));
                }
                parts.join("\n")
            }
            Format::Json if !fleet => {
                let mut s = serde_json::to_string_pretty(&sequence_json(&seqs[0])).unwrap_or_default();
                s.push('\n');
                s
            }
            Format::Json => fleet_json(name, seqs.iter().map(|s| (s.status, sequence_json(s))).collect()),
            Format::Junit => junit::render_many(&seqs.iter().flat_map(|s| s.runs.iter().cloned()).collect::<Vec<_>>()),
            Format::Prometheus => crate::report::prometheus::render(&seqs.iter().flat_map(|s| s.runs.iter().cloned()).collect::<Vec<_>>()),
        };
        spec.dest.write(&text)?;
    }
    Ok(())
}

/// A command's result on several instances as one JSON document (`opsctl.fleet/v1`): the
/// command, its status and exit code (the worst), counts per status, a run (or sequence)
/// per instance.
fn fleet_json(command: &str, runs: Vec<(crate::report::RunStatus, serde_json::Value)>) -> String {
    let mut counts = serde_json::Map::new();
    for (status, _) in &runs {
        let key = status.as_str().replace(' ', "_");
        let n = counts.get(&key).and_then(|v| v.as_u64()).unwrap_or(0) + 1;
        counts.insert(key, n.into());
    }
    let exit = Exit::worst(runs.iter().map(|(s, _)| s.exit()));
    let doc = serde_json::json!({
        "schema": crate::report::FLEET_SCHEMA,
        "command": command,
        "instances": runs.len(),
        "exit_code": exit.code(),
        "counts": counts,
        "runs": runs.into_iter().map(|(_, v)| v).collect::<Vec<_>>(),
    });
    let mut s = serde_json::to_string_pretty(&doc).unwrap_or_default();
    s.push('\n');
    s
}

/// `opsctl permissions`: what the runbooks (and the routines' runbooks) need on the instance.
fn permissions(g: &Global, names: &[String], routines: &[String], instance: &str, format: Option<args::PermissionsFormat>, sa: Option<&str>) -> Result<Exit, Error> {
    use crate::diagnostic::Diagnostic;
    let inventory = Inventory::discover(g.config.as_deref())?;
    let inst = inventory.instance(instance)?;
    let mut wanted: Vec<String> = names.to_vec();
    for r in routines {
        wanted.extend(routine_entries(&inst, r)?.into_iter().map(|e| e.runbook));
    }
    if wanted.is_empty() {
        return Err(Diagnostic::new("`permissions` needs runbooks or --routine NAME").help("e.g. opsctl permissions check --routine daily --instance team-a").into());
    }
    let mut seen = std::collections::HashSet::new();
    wanted.retain(|w| seen.insert(w.clone()));
    let loaded = wanted.iter().map(|w| Runbook::load(catalog::find(w, &inventory)?).map_err(Error::Invalid)).collect::<Result<Vec<_>, _>>()?;
    // A runbook that does not apply to the instance (`requires:`) never runs there.
    let mut skipped = Vec::new();
    let refs: Vec<&Runbook> = loaded
        .iter()
        .filter(|rb| match procedures::prepare(rb, inst.clone(), &[]) {
            Err(Error::Refused(_)) => {
                skipped.push(rb.name.clone());
                false
            }
            _ => true,
        })
        .collect();
    let mut needs = procedures::permissions::compute(&refs, &inst);
    if !skipped.is_empty() {
        needs.notes.insert(format!("left out, not applicable to {instance}: {}", skipped.join(", ")));
    }
    let format = match format {
        Some(f) => f,
        None if inst.kubernetes.is_some() => args::PermissionsFormat::Kubernetes,
        None if inst.aws.is_some() => args::PermissionsFormat::Aws,
        None => {
            return Err(Diagnostic::new(format!("instance {instance} has neither `kubernetes:` nor `aws:`: there is no access control to compute"))
                .help("opsctl needs no permissions of its own for the other backends beyond their credentials")
                .into());
        }
    };
    let names: Vec<&str> = refs.iter().map(|r| r.name.as_str()).collect();
    let text = match format {
        args::PermissionsFormat::Kubernetes => {
            let Some(k) = &inst.kubernetes else {
                return Err(Diagnostic::new(format!("instance {instance} has no `kubernetes:`")).help("use --format aws, or an instance with Kubernetes").into());
            };
            let namespace = k.namespace.clone().unwrap_or_else(|| "default".into());
            let (sa_ns, sa_name) = match sa {
                Some(s) => s.split_once('/').map(|(a, b)| (a.to_string(), b.to_string())).ok_or_else(|| Diagnostic::new(format!("--service-account `{s}` is not NAMESPACE/NAME")))?,
                None => (namespace.clone(), "opsctl".to_string()),
            };
            let header = format!("What {} need(s) on instance {instance} (namespace {namespace}): `opsctl permissions` {}", names.join(", "), env!("CARGO_PKG_VERSION"));
            needs.kubernetes_yaml(&header, &namespace, (&sa_ns, &sa_name))
        }
        args::PermissionsFormat::Aws => {
            if inst.aws.is_none() {
                return Err(Diagnostic::new(format!("instance {instance} has no `aws:`")).help("use --format kubernetes, or an instance with AWS").into());
            }
            let mut t = serde_json::to_string_pretty(&needs.aws_policy(&inst)).unwrap_or_default();
            t.push('\n');
            t
        }
    };
    Destination::Stdout.write(&text)?;
    Ok(Exit::Passed)
}

/// Answers confirmations on the terminal.
struct TtyConfirm {
    interactive: bool,
    lock: std::sync::Mutex<()>,
}

impl Confirm for TtyConfirm {
    fn interactive(&self) -> bool {
        self.interactive
    }
    fn confirm(&self, question: &str) -> bool {
        let _one_at_a_time = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        progress::pause(true);
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[K{}\nType `yes` to continue: ", secret::scrub(question));
        let _ = err.flush();
        drop(err);
        let mut answer = String::new();
        let ok = std::io::stdin().read_line(&mut answer).is_ok() && matches!(answer.trim(), "yes" | "y" | "YES");
        progress::pause(false);
        ok
    }
}

fn check_outputs(g: &Global) -> Result<Vec<OutputSpec>, Error> {
    let mut specs = g.output.clone();
    let to_stdout = specs.iter().filter(|s| s.dest == Destination::Stdout).count();
    if to_stdout > 1 {
        return Err(Error::Refused(
            "only one --output can go to standard output; send the others to files (e.g. --output junit=report.xml)".into(),
        ));
    }
    if to_stdout == 0 {
        specs.insert(0, OutputSpec { format: Format::Table, dest: Destination::Stdout });
    }
    Ok(specs)
}

/// Runs a runbook on its instances, renders the outputs; says how many steps warned.
/// `not_applicable` are the instances of a fleet it does not apply to, reported as such;
/// `position` orders the reports as the instances were given.
#[allow(clippy::too_many_arguments)]
fn execute_counting(
    g: &Global,
    ui: &Ui,
    runbook: &Runbook,
    prepared: Vec<Prepared>,
    not_applicable: Vec<RunReport>,
    dry_run: bool,
    fleet: bool,
    position: &dyn Fn(&str) -> usize,
    history: crate::inventory::HistorySettings,
) -> Result<(Exit, usize), Error> {
    let outputs = check_outputs(g)?;
    let confirm = tty_confirm(ui);
    let options = Options { dry_run, yes: g.yes, parallel: g.parallel as usize };
    procedures::refuse_unconfirmable(runbook, &options, confirm.interactive(), &prepared)?;
    let state_dir = sysinfo::state_dir();
    let sink = sinks(g, ui);
    let limits = fleet_limits(g, prepared.len());
    let mut reports: Vec<RunReport> = runtime()?.block_on(async {
        let interrupts = Interrupts::default();
        spawn_signal_handler(interrupts.clone(), g.grace);
        let ctx = procedures::Context::new(options, &confirm, interrupts, &state_dir, &sink, history);
        procedures::Run { runbook, ctx: &ctx }.on(prepared, limits).await
    })?;
    reports.extend(not_applicable);
    reports.sort_by_key(|r| position(&r.instance));
    // One instance asked for by name: a lock held by another run is the command's error, as it
    // always was; in a fleet it is that instance's status.
    if !fleet
        && let [only] = reports.as_slice()
        && only.status == crate::report::RunStatus::Locked
    {
        let holder = only.reason.as_deref().unwrap_or_default().trim_start_matches("locked by ").to_string();
        return Err(Error::Locked { instance: only.instance.clone(), holder });
    }
    render(g, ui, &outputs, &reports, fleet)?;
    Ok((Exit::worst(reports.iter().map(|r| r.status.exit())), reports.iter().map(|r| r.summary.warned).sum()))
}

fn render(g: &Global, ui: &Ui, outputs: &[OutputSpec], reports: &[RunReport], fleet: bool) -> Result<(), Error> {
    use crate::report::RunStatus;
    for spec in outputs {
        let text = match spec.format {
            Format::Table => {
                let opts = table_options(g, ui, spec);
                if fleet {
                    let mut text = String::new();
                    if g.verbose > 0 {
                        let ran = reports.iter().filter(|r| !matches!(r.status, RunStatus::NotStarted | RunStatus::Locked | RunStatus::NotApplicable));
                        text = ran.map(|r| table::render(r, opts)).collect::<Vec<_>>().join("\n");
                        text.push('\n');
                    }
                    let rows: Vec<_> = reports.iter().map(|r| r.fleet_row()).collect();
                    text.push_str(&table::fleet(reports.first().map_or("", |r| r.runbook.as_str()), &rows, opts));
                    text
                } else {
                    reports.iter().map(|r| table::render(r, opts)).collect::<Vec<_>>().join("\n")
                }
            }
            Format::Json if !fleet => json::render(&reports[0]),
            Format::Json => fleet_json(
                reports.first().map_or("", |r| r.runbook.as_str()),
                reports.iter().map(|r| (r.status, serde_json::from_str(&json::render(r)).unwrap_or_default())).collect(),
            ),
            Format::Junit => junit::render_many(reports),
            Format::Prometheus => crate::report::prometheus::render(reports),
        };
        spec.dest.write(&text)?;
    }
    Ok(())
}

fn spawn_signal_handler(interrupts: Interrupts, grace: crate::duration::Duration) {
    use tokio::signal::unix::{SignalKind, signal};
    tokio::spawn(async move {
        let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
            return;
        };
        let mut count = 0;
        loop {
            let terminated = tokio::select! {
                _ = int.recv() => false,
                _ = term.recv() => true,
            };
            count += 1;
            let mut err = std::io::stderr().lock();
            match count {
                1 => {
                    if terminated {
                        crate::error::interrupted_by_sigterm();
                    }
                    let what = if terminated { "terminated" } else { "interrupted" };
                    let short = grace.to_string();
                    let _ = writeln!(err, "\r\x1b[K{what}: stopping; `always` and `on_cancel` steps still run, for {short} at most (--grace; interrupt again to stop them)");
                    interrupts.stop.cancel();
                    let hard = interrupts.stop_always.clone();
                    tokio::spawn(async move {
                        tokio::select! {
                            _ = tokio::time::sleep(grace.std()) => {
                                let _ = writeln!(std::io::stderr().lock(), "the grace period ({short}) is over: stopping `always` and `on_cancel` steps");
                                hard.cancel();
                            }
                            _ = hard.cancelled() => {}
                        }
                    });
                }
                2 => {
                    let _ = writeln!(err, "interrupted again: stopping `always` and `on_cancel` steps");
                    interrupts.stop_always.cancel();
                }
                _ => std::process::exit(Exit::Interrupted.code().into()),
            }
        }
    });
}
