//! Command-line arguments (clap). No I/O here; `dispatch` in the CLI's root acts on them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::report::Destination;

#[derive(Debug, Parser)]
#[command(
    name = "opsctl",
    version,
    about = "Typed operational runbooks: health checks, backups, restores, scaling, rollbacks",
    long_about = "opsctl runs operational procedures written as YAML runbooks of typed steps against an instance's \
                  backends, and reports what it did.\n\nExit codes: 0 passed (warnings allowed), 1 a step failed, \
                  2 invalid input or refused, 3 instance locked by another run, 130 interrupted (SIGINT), 143 terminated \
                  (SIGTERM).",
    max_term_width = 110
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// The inventory file [default: $OPSCTL_CONFIG, else ./opsctl.yaml if present]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Output format, to stdout or `=FILE`; repeat for several: --output table --output junit=report.xml --output prometheus=/var/lib/node_exporter/opsctl.prom
    #[arg(long, short = 'o', global = true, value_name = "FORMAT[=FILE]", value_parser = parse_output)]
    pub output: Vec<OutputSpec>,
    /// Plan only: run read-only steps, show what every other step would change, change nothing
    #[arg(long, global = true)]
    pub dry_run: bool,
    /// Answer yes to confirmations (needed for destructive steps without a terminal)
    #[arg(long, short = 'y', global = true)]
    pub yes: bool,
    /// Steps run at once, at most, in parallel blocks and for_each
    #[arg(long, global = true, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub parallel: u16,
    /// After an interrupt, how long `always` and `on_cancel` steps may run before they are stopped too (a second interrupt stops them at once)
    #[arg(long, global = true, value_name = "DURATION", default_value = "30s", value_parser = crate::duration::Duration::parse)]
    pub grace: crate::duration::Duration,
    /// Instances run at once, at most, or P% of them (--all, a,b,c)
    #[arg(long, global = true, value_name = "N|P%", default_value = "16", value_parser = parse_concurrency)]
    pub max_concurrency: Concurrency,
    /// Stop launching instances once more than N (or P% of them) have failed; 0 = after the first failure. Runs in flight finish; the rest are `not started`
    #[arg(long, global = true, value_name = "N|P%", value_parser = parse_max_errors)]
    pub max_errors: Option<MaxErrors>,
    /// More logging on stderr: -v steps, -vv requests and details
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Only problems: failed and warned steps, errors
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,
    /// Colour: auto uses colour on a terminal unless NO_COLOR is set
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Junit,
    Prometheus,
}

/// `table`, `json`, `junit=report.xml`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputSpec {
    pub format: Format,
    pub dest: Destination,
}

fn parse_output(s: &str) -> Result<OutputSpec, String> {
    let (name, file) = match s.split_once('=') {
        Some((n, "")) => return Err(format!("`{n}=` needs a file name after `=`")),
        Some((n, f)) => (n, Some(PathBuf::from(f))),
        None => (s, None),
    };
    let format = match name {
        "table" => Format::Table,
        "json" => Format::Json,
        "junit" => Format::Junit,
        "prometheus" => Format::Prometheus,
        other => return Err(format!("unknown output format `{other}`; use table, json, junit or prometheus (optionally =FILE)")),
    };
    Ok(OutputSpec { format, dest: file.map_or(Destination::Stdout, Destination::File) })
}

/// `--max-errors 3` or `--max-errors 10%`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MaxErrors {
    Count(usize),
    Percent(f64),
}

impl MaxErrors {
    /// The count for `instances` instances (a percentage rounds down).
    pub fn of(self, instances: usize) -> usize {
        match self {
            MaxErrors::Count(n) => n,
            MaxErrors::Percent(p) => ((instances as f64) * p / 100.0).floor() as usize,
        }
    }
}

fn parse_max_errors(s: &str) -> Result<MaxErrors, String> {
    match s.strip_suffix('%') {
        Some(p) => match p.trim().parse::<f64>() {
            Ok(v) if (0.0..=100.0).contains(&v) => Ok(MaxErrors::Percent(v)),
            _ => Err(format!("`{s}` is not a percentage from 0% to 100%")),
        },
        None => s.trim().parse::<usize>().map(MaxErrors::Count).map_err(|_| format!("`{s}` is not a count (3) or a percentage (10%)")),
    }
}

/// `--max-concurrency 16` or `--max-concurrency 25%`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Concurrency {
    Count(usize),
    Percent(f64),
}

impl Concurrency {
    /// The count for `instances` instances: a percentage rounds down, and at least one runs.
    pub fn of(self, instances: usize) -> usize {
        match self {
            Concurrency::Count(n) => n,
            Concurrency::Percent(p) => ((instances as f64) * p / 100.0).floor() as usize,
        }
        .max(1)
    }
}

fn parse_concurrency(s: &str) -> Result<Concurrency, String> {
    match s.strip_suffix('%') {
        Some(p) => match p.trim().parse::<f64>() {
            Ok(v) if v > 0.0 && v <= 100.0 => Ok(Concurrency::Percent(v)),
            _ => Err(format!("`{s}` is not a percentage above 0% and up to 100%")),
        },
        None => match s.trim().parse::<usize>() {
            Ok(n) if (1..=4096).contains(&n) => Ok(Concurrency::Count(n)),
            _ => Err(format!("`{s}` is not a count from 1 to 4096 (16) or a percentage (25%)")),
        },
    }
}

/// Which instances a command runs on: `--instance a,b,c`, `--all`, `--selector k=v`.
#[derive(Clone, Debug, Default, Args)]
pub struct Targets {
    /// The instance, or several: a,b,c (see `opsctl list instances`)
    #[arg(long, short = 'i', value_name = "NAME[,NAME…]", conflicts_with = "all")]
    pub instance: Option<String>,
    /// Every instance in the inventory (not the built-in localhost)
    #[arg(long)]
    pub all: bool,
    /// Only instances with this label (repeatable; all must match); implies --all
    #[arg(long, value_name = "LABEL=VALUE", value_parser = parse_selector, conflicts_with = "instance")]
    pub selector: Vec<(String, String)>,
}

impl Targets {
    /// One instance by name.
    pub fn one(name: &str) -> Targets {
        Targets { instance: Some(name.to_string()), ..Targets::default() }
    }

    /// Asked for several instances (`--all`, `--selector`, `a,b`): the output is a fleet's
    /// (a summary table, one JSON document with a run per instance) however many match.
    pub fn fleet(&self) -> bool {
        self.all || !self.selector.is_empty() || self.instance.as_deref().is_some_and(|i| i.contains(','))
    }
}

/// `key=value` for `-p`.
fn parse_param(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("expected NAME=VALUE, found `{s}`")),
    }
}

fn parse_selector(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected LABEL=VALUE, found `{s}`")),
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// A runbook name (see `opsctl list runbooks`) or a path to a YAML file
    pub runbook: String,
    #[command(flatten)]
    pub targets: Targets,
    /// A parameter: -p backup=20261123-0200 (repeatable)
    #[arg(short = 'p', long = "param", value_name = "NAME=VALUE", value_parser = parse_param)]
    pub params: Vec<(String, String)>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a runbook against an instance
    Run(RunArgs),
    /// Show what a runbook would do, changing nothing (= run --dry-run)
    Plan(RunArgs),
    /// Check an instance's health (the `check` runbook)
    Check {
        #[command(flatten)]
        targets: Targets,
    },
    /// Back up an instance (the `backup` runbook), or list, verify and prune backups
    #[command(args_conflicts_with_subcommands = true)]
    Backup(BackupArgs),
    /// Restore a backup into an instance (the `restore` runbook): verified first, confirmed
    Restore {
        /// The instance to restore into
        #[arg(long, short = 'i', value_name = "NAME")]
        instance: String,
        /// The backup id (`opsctl backup list`)
        #[arg(long, value_name = "ID")]
        from: String,
    },
    /// Scale a Kubernetes workload, a Compose service or an ECS service (the `scale` runbook) and wait until ready
    Scale {
        /// The instance
        #[arg(long, short = 'i', value_name = "NAME")]
        instance: String,
        /// `deployment/NAME` (or `NAME`), `statefulset/NAME`; a Compose or ECS service
        target: String,
        /// The replicas wanted
        #[arg(long, value_name = "N")]
        replicas: u32,
        /// The platform, when the instance has several [default: Kubernetes, else Compose, else ECS]
        #[arg(long, value_enum)]
        on: Option<Platform>,
    },
    /// Roll a Kubernetes deployment, an ECS service or a Compose service back (the `rollback` runbook) and wait until healthy
    Rollback {
        /// The instance
        #[arg(long, short = 'i', value_name = "NAME")]
        instance: String,
        /// `deployment/NAME` (or `NAME`); a Compose or ECS service
        target: String,
        /// The revision to go back to (Kubernetes, ECS); default the previous
        #[arg(long, value_name = "N")]
        to_revision: Option<u32>,
        /// The platform, when the instance has several [default: Kubernetes, else Compose, else ECS]
        #[arg(long, value_enum)]
        on: Option<Platform>,
    },
    /// Run a routine (the instance's `routines:` list, else the shipped one): daily, weekly, monthly
    Routine {
        /// `daily` (check, backup, logs), `weekly` (db-maintenance, utilisation, backup-test),
        /// `monthly` (restore-drill, backup-prune), or a routine the inventory names
        name: String,
        #[command(flatten)]
        targets: Targets,
    },
    /// The pre-deploy gate (the `gate` runbook): exit 0 pass, 1 fail
    Gate {
        #[command(flatten)]
        targets: Targets,
    },
    /// Gate, deploy an image, verify, and roll back automatically when verification fails
    Deploy {
        /// The instance
        #[arg(long, short = 'i', value_name = "NAME")]
        instance: String,
        /// `deployment/NAME` (or `NAME`), `statefulset/NAME`; a Compose or ECS service
        target: String,
        /// The image to deploy
        #[arg(long, value_name = "IMAGE")]
        image: String,
        /// The container (Kubernetes, ECS) [default: the only one]
        #[arg(long, value_name = "NAME")]
        container: Option<String>,
        /// Skip the pre-deploy gate
        #[arg(long)]
        no_gate: bool,
        /// How long errors are watched after the rollout
        #[arg(long, value_name = "DURATION", default_value = "30s")]
        watch: String,
        /// How long the rollout may take
        #[arg(long, value_name = "DURATION", default_value = "5m")]
        timeout: String,
        /// The platform, when the instance has several [default: Kubernetes, else Compose, else ECS]
        #[arg(long, value_enum)]
        on: Option<Platform>,
    },
    /// Rotate a secret the inventory declares (`secrets:`), restart what reads it, verify health, roll back on failure
    RotateSecret {
        /// The instance
        #[arg(long, short = 'i', value_name = "NAME")]
        instance: String,
        /// The secret's name under the instance's `secrets:`
        name: String,
        /// How long restarted consumers may take to be healthy
        #[arg(long, value_name = "DURATION", default_value = "5m")]
        timeout: String,
    },
    /// P0/P1 triage, read-only (the `triage` runbook): what is wrong and what changed, with a timeline
    Triage {
        #[command(flatten)]
        targets: Targets,
        /// How far back
        #[arg(long, value_name = "DURATION", default_value = "1h")]
        since: String,
        /// Exit 1 when anything was found (findings are warnings; triage exits 0 otherwise)
        #[arg(long)]
        fail_on_findings: bool,
    },
    /// Review the logs (the `logs` runbook): error lines per component, the top messages grouped, 401/403/429
    Logs {
        #[command(flatten)]
        targets: Targets,
        /// How far back [default: the inventory's logs.since, else 24h]
        #[arg(long, value_name = "DURATION")]
        since: Option<String>,
        /// One component: deployment/NAME, cronjob/NAME, pod/NAME, a Compose service, a CloudWatch log group
        component: Option<String>,
    },
    /// Check runbooks without running them (every known runbook when no path is given)
    Validate {
        /// Runbook files or names
        paths: Vec<String>,
        /// Also check references to this instance's vars and settings
        #[arg(long, short = 'i', value_name = "NAME")]
        instance: Option<String>,
    },
    /// A step kind's reference: what it does, its effect, parameters, outputs, what it needs, an example
    Explain {
        /// The kind (`opsctl list kinds`), e.g. k8s.scale
        kind: String,
    },
    /// List runbooks, instances or step kinds
    List {
        #[arg(value_enum)]
        what: ListWhat,
    },
    /// Show past runs from the audit history, newest first
    History(HistoryArgs),
    /// The least privilege runbooks need on an instance: a Kubernetes Role (and ClusterRole) or an AWS IAM policy
    Permissions {
        /// Runbook names or paths
        runbooks: Vec<String>,
        /// Also every runbook of this routine (repeatable): daily, weekly, monthly or one the inventory names
        #[arg(long, value_name = "NAME")]
        routine: Vec<String>,
        /// The instance
        #[arg(long, short = 'i', value_name = "NAME")]
        instance: String,
        /// What to print [default: kubernetes when the instance has Kubernetes, else aws]
        #[arg(long, value_enum)]
        format: Option<PermissionsFormat>,
        /// The identity the Role is bound to [default: <the instance's namespace>/opsctl]
        #[arg(long, value_name = "NAMESPACE/NAME")]
        service_account: Option<String>,
    },
    /// Serve /healthz (the check runbook, cached, single-flight), /healthz/<instance> and /metrics over HTTP
    Serve(ServeArgs),
    /// Print the JSON Schema of runbooks or of the inventory
    Schema {
        #[arg(value_enum, default_value_t = SchemaWhat::Runbook)]
        what: SchemaWhat,
    },
    /// Print shell completions
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The address to listen on (port 0: any free port, printed at start)
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:9187")]
    pub listen: String,
    /// How long a check's results answer requests before the next request runs it again
    #[arg(long, value_name = "DURATION", default_value = "10s")]
    pub cache: String,
    /// The instances served [default: --all]
    #[command(flatten)]
    pub targets: Targets,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Only runs on this instance
    #[arg(long, short = 'i', value_name = "NAME")]
    pub instance: Option<String>,
    /// Only runs of this runbook
    #[arg(long, value_name = "NAME")]
    pub runbook: Option<String>,
    /// Only runs that ended so: passed, failed, interrupted, refused, not_started, locked, not_applicable
    #[arg(long, value_name = "STATUS")]
    pub status: Option<String>,
    /// Only runs since: a duration back from now (24h, 7d) or a time (2026-11-30T08:00:00Z)
    #[arg(long, value_name = "DURATION|TIME")]
    pub since: Option<String>,
    /// How many runs, newest first
    #[arg(long, short = 'n', default_value_t = 20)]
    pub limit: usize,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    #[command(subcommand)]
    pub action: Option<BackupAction>,
    #[command(flatten)]
    pub targets: Targets,
    /// What to back up
    #[arg(long, value_enum, default_value_t = BackupWhat::All)]
    pub what: BackupWhat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackupWhat {
    /// Every database the instance has: PostgreSQL, DynamoDB tables, Redis
    All,
    /// The instance's PostgreSQL database (pg_dump)
    Postgres,
    /// Every table in the instance's `dynamodb.tables` (parallel-scan exports)
    Dynamodb,
    /// The instance's Redis (an RDB snapshot)
    Redis,
}

#[derive(Debug, Subcommand)]
pub enum BackupAction {
    /// List backups (of every instance with a backup store, or of one)
    List {
        #[arg(long, short = 'i', value_name = "NAME")]
        instance: Option<String>,
    },
    /// Check a backup's checksums and structure
    Verify {
        /// The backup id
        id: String,
        /// The instance it belongs to [default: the one whose store has it]
        #[arg(long, short = 'i', value_name = "NAME")]
        instance: Option<String>,
    },
    /// Delete backups past retention (keep_last, keep_days); --dry-run lists them
    Prune {
        #[command(flatten)]
        targets: Targets,
    },
}

/// Where a workload runs, for commands that work on several platforms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Platform {
    Kubernetes,
    Compose,
    Ecs,
}

impl Platform {
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Kubernetes => "kubernetes",
            Platform::Compose => "compose",
            Platform::Ecs => "ecs",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PermissionsFormat {
    /// Role, RoleBinding, and a ClusterRole and binding for cluster-wide reads (YAML)
    Kubernetes,
    /// An IAM policy document (JSON)
    Aws,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ListWhat {
    Runbooks,
    Instances,
    Kinds,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SchemaWhat {
    Runbook,
    Inventory,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn outputs_parse_with_and_without_files() {
        assert_eq!(parse_output("json").unwrap(), OutputSpec { format: Format::Json, dest: Destination::Stdout });
        assert_eq!(parse_output("junit=r.xml").unwrap().dest, Destination::File("r.xml".into()));
        assert!(parse_output("xml").is_err());
        assert!(parse_output("junit=").is_err());
    }

    #[test]
    fn concurrency_is_a_count_or_a_percentage_and_at_least_one() {
        assert_eq!(parse_concurrency("8").unwrap().of(100), 8);
        assert_eq!(parse_concurrency("25%").unwrap().of(10), 2);
        assert_eq!(parse_concurrency("1%").unwrap().of(10), 1);
        assert!(parse_concurrency("0").is_err());
        assert!(parse_concurrency("0%").is_err());
        assert!(parse_concurrency("120%").is_err());
    }

    #[test]
    fn params_need_an_equals_sign() {
        assert_eq!(parse_param("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert!(parse_param("ab").is_err());
    }
}
