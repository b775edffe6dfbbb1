//! The command line (DESIGN §7): the clap tree and one module per command.
//! Each command is a small function that returns an exit code; `main` only
//! dispatches.

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

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use gatekeeper::config::settings_help;

/// Invalid environment or flags.
pub const EXIT_CONFIG: u8 = 64;
/// Invalid declarative file.
pub const EXIT_DATA: u8 = 65;

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

pub fn fail(code: u8, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("gatekeeper: {message}");
    ExitCode::from(code)
}
