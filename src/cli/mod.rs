//! The command line: parse, load, check, run, render, record. `main.rs` calls [`main`].

pub mod args;
mod explain;
mod listing;

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
use args::{Cli, ColorChoice, Command, Format, Global, OutputSpec, RunArgs};

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    // One TLS crypto provider for the whole process (reqwest, and later kube and the AWS
    // SDK, would otherwise disagree and panic).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
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
        Command::Check { instance, all, selector } => {
            let inventory = Inventory::discover(g.config.as_deref())?;
            let instances = if all {
                let chosen = inventory.select(&selector);
                if chosen.is_empty() {
                    return Err(crate::diagnostic::Diagnostic::new("no instance matches the selector").help("see the labels with `opsctl list instances`").into());
                }
                chosen
            } else {
                // `--instance a,b,c`: those, in that order, each once.
                let mut names: Vec<&str> = instance.as_deref().unwrap_or_default().split(',').map(str::trim).filter(|n| !n.is_empty()).collect();
                let mut seen = std::collections::HashSet::new();
                names.retain(|n| seen.insert(*n));
                names.iter().map(|n| inventory.instance(n)).collect::<Result<Vec<_>, _>>()?
            };
            let source = catalog::find("check", &inventory)?;
            let runbook = Runbook::load(source).map_err(Error::Invalid)?;
            let prepared = instances
                .into_iter()
                .map(|i| procedures::prepare(&runbook, i, &[]))
                .collect::<Result<Vec<_>, _>>()?;
            execute(g, ui, &runbook, prepared, g.dry_run)
        }
        Command::Backup(b) => match b.action {
            None => {
                let Some(instance) = b.instance else {
                    return Err(crate::diagnostic::Diagnostic::new("`opsctl backup` needs --instance NAME")
                        .help("or one of: opsctl backup list | backup verify ID | backup prune --instance NAME")
                        .into());
                };
                let what = match b.what {
                    args::BackupWhat::All => "all",
                    args::BackupWhat::Postgres => "postgres",
                    args::BackupWhat::Dynamodb => "dynamodb",
                    args::BackupWhat::Redis => "redis",
                };
                run_named(g, ui, "backup", &instance, &[("what", what.to_string())], g.dry_run)
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
            Some(args::BackupAction::Prune { instance }) => run_named(g, ui, "backup-prune", &instance, &[], g.dry_run),
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
        Command::Routine { name, instance } => routine(g, ui, &name, &instance),
        Command::Triage { instance, since, fail_on_findings } => {
            let args = RunArgs { runbook: "triage".into(), instance, params: vec![("since".into(), since)] };
            let (exit, warned) = run_counting(g, ui, &args, g.dry_run)?;
            Ok(if fail_on_findings && warned > 0 { Exit::worst([exit, Exit::Failed]) } else { exit })
        }
        Command::Logs { instance, since, component } => {
            let mut params = Vec::new();
            if let Some(s) = since {
                params.push(("since", s));
            }
            if let Some(c) = component {
                params.push(("component", c));
            }
            run_named(g, ui, "logs", &instance, &params, g.dry_run)
        }
        Command::Gate { instance } => run_named(g, ui, "gate", &instance, &[], g.dry_run),
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
            sequence(g, ui, "deploy", &instance, entries)
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
        Command::History { instance, runbook, limit } => listing::history(g, ui, instance.as_deref(), runbook.as_deref(), limit),
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
    run_counting(g, ui, a, dry_run).map(|(exit, _)| exit)
}

/// [`run`], also saying how many steps warned.
fn run_counting(g: &Global, ui: &Ui, a: &RunArgs, dry_run: bool) -> Result<(Exit, usize), Error> {
    let inventory = Inventory::discover(g.config.as_deref())?;
    let instance = inventory.instance(&a.instance)?;
    let source = catalog::find(&a.runbook, &inventory)?;
    let runbook = Runbook::load(source).map_err(Error::Invalid)?;
    let prepared = procedures::prepare(&runbook, instance, &a.params)?;
    execute_counting(g, ui, &runbook, vec![prepared], dry_run)
}

/// Confirmations on the terminal, when there is one to ask on.
fn tty_confirm(ui: &Ui) -> TtyConfirm {
    TtyConfirm { interactive: sysinfo::stdin_is_tty() && ui.stderr_tty, lock: Default::default() }
}

/// A run's sinks: the log, and a progress line on a terminal unless -q or -v.
fn sinks(g: &Global, ui: &Ui) -> impl Fn() -> Box<dyn Sink> + use<> {
    let progress_line = ui.stderr_tty && !g.quiet && g.verbose == 0;
    move || -> Box<dyn Sink> {
        let mut sinks: Vec<Box<dyn Sink>> = vec![Box::new(LogSink)];
        if progress_line {
            sinks.push(Box::new(progress::Progress::new()));
        }
        Box::new(Sinks(sinks))
    }
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
    let args = RunArgs {
        runbook: name.to_string(),
        instance: instance.to_string(),
        params: params.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
    };
    run(g, ui, &args, dry_run)
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

fn routine(g: &Global, ui: &Ui, name: &str, instance: &str) -> Result<Exit, Error> {
    let inventory = Inventory::discover(g.config.as_deref())?;
    let inst = inventory.instance(instance)?;
    let entries: Vec<Entry> = match inst.routines.get(name) {
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
                return Err(d.help(format!("routines of {instance}: {}; add others under `routines:` in the inventory", known.join(", "))).into());
            }
        },
    };
    sequence(g, ui, &format!("routine {name}"), instance, entries)
}

/// Loads and binds every runbook of a sequence (refusing before anything runs when one is
/// wrong), runs them in order, and renders one report.
fn sequence(g: &Global, ui: &Ui, name: &str, instance: &str, entries: Vec<Entry>) -> Result<Exit, Error> {
    let inventory = Inventory::discover(g.config.as_deref())?;
    let inst = inventory.instance(instance)?;
    let mut queue = Vec::new();
    let mut not_run = Vec::new();
    for e in entries {
        let source = catalog::find(&e.runbook, &inventory)?;
        let runbook = Runbook::load(source).map_err(Error::Invalid)?;
        match procedures::prepare(&runbook, inst.clone(), &e.params) {
            Ok(prepared) => queue.push(procedures::Queued { runbook, prepared, stop_on_failure: e.stop_on_failure }),
            Err(Error::Refused(why)) if e.optional => {
                let reason = why.split_once(": ").map_or(why.as_str(), |(_, r)| r).to_string();
                not_run.push(crate::report::NotRun { runbook: e.runbook.clone(), reason: format!("does not apply: {reason}") });
            }
            Err(err) => return Err(err),
        }
    }
    let outputs = check_outputs(g)?;
    let confirm = tty_confirm(ui);
    let options = Options { dry_run: g.dry_run, yes: g.yes, parallel: g.parallel as usize };
    for q in &queue {
        procedures::refuse_unconfirmable(&q.runbook, &options, confirm.interactive(), std::slice::from_ref(&q.prepared))?;
    }
    let state_dir = sysinfo::state_dir();
    let sink = sinks(g, ui);
    let (reports, mut skipped) = runtime()?.block_on(async {
        let interrupts = Interrupts::default();
        spawn_signal_handler(interrupts.clone());
        procedures::run_sequence(queue, &options, &confirm, &interrupts, &state_dir, &sink).await
    })?;
    not_run.append(&mut skipped);
    let seq = crate::report::SequenceReport::new(name.to_string(), instance.to_string(), reports, not_run);
    render_sequence(g, ui, &outputs, &seq)?;
    Ok(Exit::worst(seq.runs.iter().map(|r| r.status.exit())))
}

fn render_sequence(g: &Global, ui: &Ui, outputs: &[OutputSpec], seq: &crate::report::SequenceReport) -> Result<(), Error> {
    for spec in outputs {
        let text = match spec.format {
            Format::Table => {
                let opts = table_options(g, ui, spec);
                let mut parts: Vec<String> = seq.runs.iter().map(|r| table::render(r, opts)).collect();
                parts.push(format!("{}\n", table::sequence_summary(seq, opts.color)));
                parts.join("\n")
            }
            Format::Json => {
                let mut doc = serde_json::to_value(seq).unwrap_or_default();
                if let Some(runs) = doc.get_mut("runs") {
                    *runs = serde_json::Value::Array(seq.runs.iter().map(|r| serde_json::from_str(&json::render(r)).unwrap_or_default()).collect());
                }
                let mut s = serde_json::to_string_pretty(&doc).unwrap_or_default();
                s.push('\n');
                s
            }
            Format::Junit => junit::render_many(&seq.runs),
        };
        spec.dest.write(&text)?;
    }
    Ok(())
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

/// Runs a runbook on one or more instances, renders the outputs.
fn execute(g: &Global, ui: &Ui, runbook: &Runbook, prepared: Vec<Prepared>, dry_run: bool) -> Result<Exit, Error> {
    execute_counting(g, ui, runbook, prepared, dry_run).map(|(exit, _)| exit)
}

/// [`execute`], also saying how many steps warned.
fn execute_counting(g: &Global, ui: &Ui, runbook: &Runbook, prepared: Vec<Prepared>, dry_run: bool) -> Result<(Exit, usize), Error> {
    let outputs = check_outputs(g)?;
    let confirm = tty_confirm(ui);
    let options = Options { dry_run, yes: g.yes, parallel: g.parallel as usize };
    procedures::refuse_unconfirmable(runbook, &options, confirm.interactive(), &prepared)?;
    let state_dir = sysinfo::state_dir();
    let sink = sinks(g, ui);
    let reports: Vec<RunReport> = runtime()?.block_on(async {
        let interrupts = Interrupts::default();
        spawn_signal_handler(interrupts.clone());
        let max_errors = g.max_errors.map(|m| m.of(prepared.len()));
        let run = procedures::Run { runbook, options, confirm: &confirm, interrupts, state_dir: &state_dir, sink: &sink, max_concurrency: g.max_concurrency as usize, max_errors };
        run.on(prepared).await
    })?;
    render(g, ui, &outputs, &reports)?;
    Ok((Exit::worst(reports.iter().map(|r| r.status.exit())), reports.iter().map(|r| r.summary.warned).sum()))
}

fn render(g: &Global, ui: &Ui, outputs: &[OutputSpec], reports: &[RunReport]) -> Result<(), Error> {
    for spec in outputs {
        let text = match spec.format {
            Format::Table => {
                let opts = table_options(g, ui, spec);
                if reports.len() > 1 {
                    let mut text = String::new();
                    if g.verbose > 0 {
                        text = reports.iter().filter(|r| r.status != crate::report::RunStatus::NotStarted).map(|r| table::render(r, opts)).collect::<Vec<_>>().join("\n");
                        text.push('\n');
                    }
                    text.push_str(&table::fleet(reports, opts));
                    text
                } else {
                    reports.iter().map(|r| table::render(r, opts)).collect::<Vec<_>>().join("\n")
                }
            }
            Format::Json if reports.len() == 1 => json::render(&reports[0]),
            Format::Json => {
                let docs: Vec<serde_json::Value> =
                    reports.iter().map(|r| serde_json::from_str(&json::render(r)).unwrap_or_default()).collect();
                let mut s = serde_json::to_string_pretty(&docs).unwrap_or_default();
                s.push('\n');
                s
            }
            Format::Junit => junit::render_many(reports),
        };
        spec.dest.write(&text)?;
    }
    Ok(())
}

fn spawn_signal_handler(interrupts: Interrupts) {
    use tokio::signal::unix::{SignalKind, signal};
    tokio::spawn(async move {
        let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
            return;
        };
        let mut count = 0;
        loop {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            count += 1;
            let mut err = std::io::stderr().lock();
            match count {
                1 => {
                    let _ = writeln!(err, "\r\x1b[Kinterrupted: stopping; `always` steps still run (interrupt again to stop them)");
                    interrupts.stop.cancel();
                }
                2 => {
                    let _ = writeln!(err, "interrupted again: stopping `always` steps");
                    interrupts.stop_always.cancel();
                }
                _ => std::process::exit(130),
            }
        }
    });
}
