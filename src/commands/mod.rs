//! The command line (DESIGN §7): the clap tree, the dispatch, and the one
//! place where a failed command becomes an exit code. Each command lives
//! in a module of its own and returns `Result<(), CommandError>`; `main`
//! only parses and calls [`run`].

pub mod apply;
pub mod audit;
pub mod check;
pub mod healthcheck;
pub mod import;
pub mod key;
pub mod manage;
pub mod migrate;
pub mod secret;
pub mod serve;
pub mod sign;

use std::fmt::Display;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use gatekeeper::apply::ApplyError;
use gatekeeper::config::{settings_help, Config, ConfigError};
use gatekeeper::db::store::StoreError;
use gatekeeper::db::DbError;

/// Invalid environment or flags (sysexits' `EX_USAGE`).
pub const EXIT_USAGE: u8 = 64;
/// An invalid declarative file (sysexits' `EX_DATAERR`).
pub const EXIT_DATA: u8 = 65;
/// Anything else: the database, the network, the output.
pub const EXIT_FAILED: u8 = 1;

#[derive(Parser)]
#[command(
    name = "gatekeeper",
    version,
    about = "The authorization decision service for nginx auth_request"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Serve /authz and the admin endpoints.
    #[command(after_help = settings_help())]
    Serve {
        /// The declarative file (DB-less mode); overrides GATEKEEPER_CONFIG.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Validate a declarative file and print a summary.
    Check {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Apply pending schema migrations to GATEKEEPER_DATABASE_URL (and to
    /// GATEKEEPER_AUDIT_DATABASE_URL when that is another database).
    Migrate,
    /// Make the database match a declarative file, in one transaction.
    Apply {
        file: PathBuf,
        /// Print the plan; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Also delete what the database has and the file does not.
        #[arg(long)]
        prune: bool,
        #[arg(long)]
        json: bool,
    },
    /// Import from another system (dry run unless --apply).
    #[command(subcommand)]
    Import(ImportCommand),
    /// Exit 0 when the local service answers /readyz (GATEKEEPER_ADMIN_LISTEN).
    Healthcheck,
    /// API keys: generate one for a file; in PostgreSQL mode create, list,
    /// show, revoke, delete, rotate.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Routes (PostgreSQL mode).
    #[command(subcommand)]
    Route(crate::commands::manage::RouteCommand),
    /// Clients and their secrets (PostgreSQL mode).
    #[command(subcommand)]
    Client(crate::commands::manage::ClientCommand),
    /// Grants (PostgreSQL mode).
    #[command(subcommand)]
    Grant(crate::commands::manage::GrantCommand),
    /// Rate limits (PostgreSQL mode).
    #[command(subcommand)]
    Limit(crate::commands::manage::LimitCommand),
    /// Client secrets.
    #[command(subcommand)]
    Secret(SecretCommand),
    /// Print an `Authorization: HMAC …` header for a request (client side).
    Sign(sign::SignArgs),
    /// Read the audit log (GATEKEEPER_AUDIT_DATABASE_URL, else
    /// GATEKEEPER_DATABASE_URL).
    #[command(subcommand)]
    Audit(crate::commands::audit::AuditCommand),
}

#[derive(Subcommand)]
pub enum KeyCommand {
    /// Print a new key (shown once) and the lines to paste into the file.
    Generate {
        #[arg(long)]
        json: bool,
    },
    #[command(flatten)]
    Manage(crate::commands::manage::KeyCommand),
}

#[derive(Subcommand)]
pub enum ImportCommand {
    /// From a Python API Gatekeeper database: ids kept, keys as digests,
    /// shared secrets sealed; reports what was widened, narrowed or skipped.
    ApiGatekeeper {
        /// The API Gatekeeper database URL.
        #[arg(long)]
        from: String,
        /// Write into GATEKEEPER_DATABASE_URL (default: report only).
        #[arg(long)]
        apply: bool,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum SecretCommand {
    /// Read a secret from standard input and print its bcrypt hash.
    Hash {
        #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(u32).range(4..=31))]
        cost: u32,
    },
}

/// Runs the command the line asked for: its exit code, and on failure its
/// message on standard error.
pub fn run(cli: Cli) -> ExitCode {
    match dispatch(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => report(e),
    }
}

fn dispatch(command: Command) -> Result<(), CommandError> {
    match command {
        Command::Check { file, json } => check::run(&file, json),
        Command::Key(KeyCommand::Generate { json }) => key::generate(json),
        Command::Key(KeyCommand::Manage(cmd)) => block_on(manage::key(cmd)),
        Command::Route(cmd) => block_on(manage::route(cmd)),
        Command::Client(cmd) => block_on(manage::client(cmd)),
        Command::Grant(cmd) => block_on(manage::grant(cmd)),
        Command::Limit(cmd) => block_on(manage::limit(cmd)),
        Command::Secret(SecretCommand::Hash { cost }) => secret::hash(cost),
        Command::Sign(args) => sign::run(&args),
        Command::Healthcheck => block_on(healthcheck::run()),
        Command::Migrate => block_on(migrate::run()),
        Command::Import(ImportCommand::ApiGatekeeper { from, apply, json }) => {
            block_on(import::run(&from, apply, json))
        }
        Command::Apply {
            file,
            dry_run,
            prune,
            json,
        } => block_on(apply::run(&file, dry_run, prune, json)),
        Command::Audit(cmd) => block_on(audit::run(cmd)),
        Command::Serve { config } => block_on(serve::run(config)),
    }
}

/// The commands that talk to a database or a socket run on a runtime of
/// their own; the others never start one. Once the command is done the
/// runtime is dropped without waiting on blocking work still running (a
/// DNS look-up for a database that is gone): `serve` has already stopped
/// within its grace period, and exiting must not wait longer.
fn block_on(command: impl Future<Output = Result<(), CommandError>>) -> Result<(), CommandError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let result = runtime.block_on(command);
    runtime.shutdown_background();
    result
}

/// Why a command failed, which decides its exit code (DESIGN §10).
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// A missing or invalid setting or flag: exit 64. The message names it.
    #[error("{0}")]
    Usage(String),
    /// An invalid declarative file: exit 65. The message names the place.
    #[error("{0}")]
    Data(String),
    /// Anything else: exit 1. Printed with its whole cause chain,
    /// `: `-joined, so a connection error says why.
    #[error("{0:#}")]
    Failed(anyhow::Error),
}

impl CommandError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CommandError::Usage(_) => EXIT_USAGE,
            CommandError::Data(_) => EXIT_DATA,
            CommandError::Failed(_) => EXIT_FAILED,
        }
    }

    /// `FILE is invalid:` and the problems, one per line.
    pub fn invalid_file(file: &Path, errors: impl Display) -> CommandError {
        CommandError::Data(format!("{} is invalid:\n{errors}", file.display()))
    }

    /// What was being done when something failed (exit 1). Usage and data
    /// errors already say what to fix and are left as they are.
    pub fn context(self, doing: impl Display + Send + Sync + 'static) -> CommandError {
        match self {
            CommandError::Failed(e) => CommandError::Failed(e.context(doing)),
            other => other,
        }
    }
}

/// The one mapping from a failed command to what the operator sees.
fn report(e: CommandError) -> ExitCode {
    eprintln!("gatekeeper: {e}");
    ExitCode::from(e.exit_code())
}

/// A usage error (exit 64) with this message.
pub fn usage(message: impl Into<String>) -> CommandError {
    CommandError::Usage(message.into())
}

/// A failure (exit 1) with this message: its text, without causes.
pub fn failed(message: impl Display) -> CommandError {
    CommandError::Failed(anyhow::anyhow!("{message}"))
}

impl From<anyhow::Error> for CommandError {
    fn from(e: anyhow::Error) -> CommandError {
        CommandError::Failed(e)
    }
}

/// A bad setting names itself (`GATEKEEPER_LISTEN: …`).
impl From<ConfigError> for CommandError {
    fn from(e: ConfigError) -> CommandError {
        usage(e.to_string())
    }
}

impl From<StoreError> for CommandError {
    fn from(e: StoreError) -> CommandError {
        CommandError::Failed(e.into())
    }
}

impl From<DbError> for CommandError {
    fn from(e: DbError) -> CommandError {
        CommandError::Failed(e.into())
    }
}

/// A failed `BEGIN`/`COMMIT`: reported like any other store failure, never
/// with the database's detail.
impl From<tokio_postgres::Error> for CommandError {
    fn from(e: tokio_postgres::Error) -> CommandError {
        StoreError::from(e).into()
    }
}

/// The `?` on a write to the command's output. Files and standard input a
/// command reads are mapped where they are read, naming the flag.
impl From<std::io::Error> for CommandError {
    fn from(e: std::io::Error) -> CommandError {
        CommandError::Failed(anyhow::Error::new(e).context("writing the output failed"))
    }
}

impl From<ApplyError> for CommandError {
    fn from(e: ApplyError) -> CommandError {
        match e {
            ApplyError::Invalid(errors) => CommandError::Data(errors),
            e @ ApplyError::MasterKeyMissing { .. } => usage(format!("GATEKEEPER_MASTER_KEY: {e}")),
            e => CommandError::Failed(e.into()),
        }
    }
}

/// The database URL, or a usage error naming GATEKEEPER_DATABASE_URL and
/// what the command needs it `for_what`.
pub fn database_url(config: &Config, for_what: &str) -> Result<String, CommandError> {
    match &config.database_url {
        Some(url) => Ok(url.0.clone()),
        None => Err(usage(format!(
            "GATEKEEPER_DATABASE_URL: set it (or GATEKEEPER_DATABASE_URL_FILE) to {for_what}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use clap::CommandFactory;

    use super::*;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }

    #[test]
    fn without_a_database_url_a_command_exits_64_naming_it() {
        let config = Config::from_map(&HashMap::new()).unwrap();
        let e = database_url(&config, "migrate").unwrap_err();
        assert_eq!(e.exit_code(), EXIT_USAGE);
        assert!(
            e.to_string().starts_with("GATEKEEPER_DATABASE_URL: "),
            "{e}"
        );
    }

    #[test]
    fn each_kind_of_failure_has_its_exit_code() {
        let file = Path::new("policy.toml");
        assert_eq!(CommandError::invalid_file(file, "x").exit_code(), 65);
        assert_eq!(usage("--flag: bad").exit_code(), 64);
        assert_eq!(failed("not ready").exit_code(), 1);
        let missing = ApplyError::MasterKeyMissing { client: "c".into() };
        assert_eq!(CommandError::from(missing).exit_code(), 64);
        assert_eq!(CommandError::from(ApplyError::Concurrent).exit_code(), 1);
    }

    #[test]
    fn a_failure_prints_its_causes_and_its_context() {
        let io = std::io::Error::new(std::io::ErrorKind::BrokenPipe, "pipe closed");
        let e = CommandError::from(io).context("printing the plan");
        assert_eq!(
            e.to_string(),
            "printing the plan: writing the output failed: pipe closed"
        );
        let e = usage("--flag: bad").context("ignored");
        assert_eq!(e.to_string(), "--flag: bad");
    }
}
