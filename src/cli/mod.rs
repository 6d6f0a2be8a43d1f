//! The command line: parse, load, check, run, render, record. `main.rs` calls [`main`].

pub mod args;
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
                vec![inventory.instance(instance.as_deref().unwrap_or_default())?]
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
        Command::Validate { paths, instance } => listing::validate(g, ui, &paths, instance.as_deref()),
        Command::List { what } => listing::list(g, ui, what),
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
    let inventory = Inventory::discover(g.config.as_deref())?;
    let instance = inventory.instance(&a.instance)?;
    let source = catalog::find(&a.runbook, &inventory)?;
    let runbook = Runbook::load(source).map_err(Error::Invalid)?;
    let prepared = procedures::prepare(&runbook, instance, &a.params)?;
    execute(g, ui, &runbook, vec![prepared], dry_run)
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
    let outputs = check_outputs(g)?;
    let confirm = TtyConfirm { interactive: sysinfo::stdin_is_tty() && ui.stderr_tty, lock: Default::default() };
    let options = Options { dry_run, yes: g.yes, parallel: g.parallel as usize };
    procedures::refuse_unconfirmable(runbook, &options, confirm.interactive())?;
    let state_dir = sysinfo::state_dir();
    let progress_line = ui.stderr_tty && !g.quiet && g.verbose == 0;
    let sink = || -> Box<dyn Sink> {
        let mut sinks: Vec<Box<dyn Sink>> = vec![Box::new(LogSink)];
        if progress_line {
            sinks.push(Box::new(progress::Progress::new()));
        }
        Box::new(Sinks(sinks))
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::io("cannot start the async runtime", &e))?;
    let reports: Vec<RunReport> = runtime.block_on(async {
        let interrupts = Interrupts::default();
        spawn_signal_handler(interrupts.clone());
        let run = procedures::Run { runbook, options, confirm: &confirm, interrupts, state_dir: &state_dir, sink: &sink };
        run.on(prepared).await
    })?;
    render(g, ui, &outputs, &reports)?;
    Ok(Exit::worst(reports.iter().map(|r| r.status.exit())))
}

fn render(g: &Global, ui: &Ui, outputs: &[OutputSpec], reports: &[RunReport]) -> Result<(), Error> {
    for spec in outputs {
        let to_tty = spec.dest == Destination::Stdout && ui.stdout_tty;
        let text = match spec.format {
            Format::Table => {
                let opts = table::TableOptions {
                    color: ui.color_out && spec.dest == Destination::Stdout,
                    quiet: g.quiet,
                    width: if to_tty { progress::terminal_width() } else { None },
                };
                reports.iter().map(|r| table::render(r, opts)).collect::<Vec<_>>().join("\n")
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
