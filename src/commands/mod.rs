//! The command line (DESIGN §7): `serve`, `check`, `healthcheck`, `key
//! generate`, `secret hash`, `sign`. Each command is a small function that
//! returns an exit code; `main` only dispatches.

pub mod apply;
pub mod audit;
pub mod import;
pub mod manage;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use gatekeeper::app::Source;
use gatekeeper::clock::SystemClock;
use gatekeeper::config::{settings_help, Config};
use gatekeeper::core::model::without_line_end;
use gatekeeper::core::policy::Policy;
use gatekeeper::core::{apikey, signature};
use gatekeeper::sources::file_format::Summary;

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
    Sign(SignArgs),
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

#[derive(Args)]
pub struct SignArgs {
    #[arg(long)]
    client: String,
    /// File holding the shared secret (one trailing newline is ignored).
    #[arg(long)]
    secret_file: PathBuf,
    #[arg(long)]
    method: String,
    /// The raw path as sent, without the query.
    #[arg(long)]
    path: String,
    #[arg(long)]
    body_file: Option<PathBuf>,
    /// Unix seconds; defaults to now.
    #[arg(long)]
    timestamp: Option<i64>,
    /// Defaults to a random one.
    #[arg(long)]
    nonce: Option<String>,
}

pub fn fail(code: u8, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("gatekeeper: {message}");
    ExitCode::from(code)
}

pub fn check(file: &Path, json: bool) -> ExitCode {
    let result = gatekeeper::sources::file_format::load(file)
        .map_err(|e| e.to_string())
        .and_then(|doc| {
            let summary = Summary::of(&doc);
            let warnings = gatekeeper::core::lint::warnings(&doc);
            gatekeeper::core::policy::Policy::build(doc)
                .map(|_| (summary, warnings))
                .map_err(|e| e.to_string())
        });
    match result {
        Ok((summary, warnings)) if json => {
            let out = serde_json::json!({"valid": true, "routes": summary.routes, "clients": summary.clients, "keys": summary.keys, "grants": summary.grants, "warnings": warnings});
            println!("{out}");
            ExitCode::SUCCESS
        }
        Ok((summary, warnings)) => {
            println!("{}: valid ({summary})", file.display());
            for warning in warnings {
                println!("warning: {warning}");
            }
            ExitCode::SUCCESS
        }
        Err(errors) => fail(
            EXIT_DATA,
            format!("{} is invalid:\n{errors}", file.display()),
        ),
    }
}

pub fn key_generate(json: bool) -> ExitCode {
    let key = match apikey::generate() {
        Ok(key) => key,
        Err(e) => return fail(1, e),
    };
    if json {
        let out = serde_json::json!({"key": key.key.expose(), "id": key.public_id, "digest": key.digest.to_string()});
        println!("{out}");
    } else {
        println!("key:    {}", key.key.expose());
        println!("        (shown once: give it to the client now; only its digest is stored)");
        println!();
        println!("[[client.key]]");
        println!("id = \"{}\"", key.public_id);
        println!("digest = \"{}\"", key.digest);
    }
    ExitCode::SUCCESS
}

pub fn secret_hash(cost: u32) -> ExitCode {
    let mut secret = String::new();
    if std::io::stdin().read_to_string(&mut secret).is_err() {
        return fail(EXIT_CONFIG, "cannot read the secret from standard input");
    }
    // Line ends are ASCII, so the cut is on a character boundary.
    let secret = &secret[..without_line_end(secret.as_bytes()).len()];
    if secret.is_empty() {
        return fail(EXIT_CONFIG, "the secret on standard input is empty");
    }
    match bcrypt::hash(secret, cost) {
        Ok(hash) => {
            println!("{hash}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(1, e),
    }
}

pub fn sign(args: &SignArgs) -> ExitCode {
    let secret = match std::fs::read(&args.secret_file) {
        Ok(s) => without_line_end(&s).to_vec(),
        Err(e) => {
            return fail(
                EXIT_CONFIG,
                format!("--secret-file {}: {e}", args.secret_file.display()),
            )
        }
    };
    let body = match &args.body_file {
        Some(p) => match std::fs::read(p) {
            Ok(b) => b,
            Err(e) => return fail(EXIT_CONFIG, format!("--body-file {}: {e}", p.display())),
        },
        None => Vec::new(),
    };
    let timestamp = args
        .timestamp
        .unwrap_or_else(|| time::OffsetDateTime::now_utc().unix_timestamp());
    let nonce = match &args.nonce {
        Some(n) => n.clone(),
        None => {
            let mut b = [0u8; 16];
            if getrandom::getrandom(&mut b).is_err() {
                return fail(1, "no randomness for a nonce");
            }
            hex::encode(b)
        }
    };
    let sig = signature::sign(&secret, &args.method, &args.path, timestamp, &nonce, &body);
    println!(
        "Authorization: HMAC client_id=\"{}\",timestamp=\"{timestamp}\",nonce=\"{nonce}\",signature=\"{sig}\"",
        args.client
    );
    ExitCode::SUCCESS
}

pub async fn migrate() -> ExitCode {
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => return fail(EXIT_CONFIG, e),
    };
    // The audit log may live in a database of its own (file mode, or kept
    // apart from the policy): it gets the same schema.
    let audit = config
        .audit_database_url
        .filter(|a| Some(a) != config.database_url.as_ref());
    let targets: Vec<(&str, String)> = [("", config.database_url), ("audit database: ", audit)]
        .into_iter()
        .filter_map(|(label, url)| Some((label, url?.0)))
        .collect();
    if targets.is_empty() {
        return fail(
            EXIT_CONFIG,
            "GATEKEEPER_DATABASE_URL: set it (or GATEKEEPER_DATABASE_URL_FILE) to migrate",
        );
    }
    for (label, url) in targets {
        match gatekeeper::db::migrate::run(&url).await {
            Ok(applied) if applied.is_empty() => println!("{label}the schema is up to date"),
            Ok(applied) => {
                let list: Vec<String> = applied.iter().map(|v| format!("{v:04}")).collect();
                println!("{label}applied migrations: {}", list.join(", "));
            }
            Err(e) => return fail(1, format!("{label}{e:#}")),
        }
    }
    ExitCode::SUCCESS
}

/// `GET /readyz` on the admin listener, bounded in time.
pub async fn healthcheck() -> ExitCode {
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => return fail(EXIT_CONFIG, e),
    };
    match tokio::time::timeout(Duration::from_secs(3), probe(config.admin_listen)).await {
        Ok(Ok(true)) => ExitCode::SUCCESS,
        Ok(Ok(false)) => fail(1, "not ready"),
        Ok(Err(e)) => fail(1, format!("cannot reach {}: {e}", config.admin_listen)),
        Err(_) => fail(
            1,
            format!("{} did not answer within 3 s", config.admin_listen),
        ),
    }
}

async fn probe(addr: std::net::SocketAddr) -> std::io::Result<bool> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(
            format!("GET /readyz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).await?;
    Ok(head.starts_with(b"HTTP/1.1 200") || head.starts_with(b"HTTP/1.0 200"))
}

pub async fn serve(config_flag: Option<PathBuf>) -> ExitCode {
    let mut config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => return fail(EXIT_CONFIG, e),
    };
    if config_flag.is_some() {
        config.file = config_flag;
    }
    gatekeeper::logging::init(config.log_format, &config.log_level);
    let prepared = match config.database_url.clone() {
        Some(url) => postgres_source(&config, url.0).await,
        None => file_source(&config),
    };
    let (source, policy) = match prepared {
        Ok(ready) => ready,
        Err((code, message)) => return fail(code, message),
    };
    if let Some(audit) = &config.audit {
        if let Err(e) = gatekeeper::audit::check_database(audit).await {
            return fail(1, format!("{e:#}"));
        }
    }
    let metrics = match gatekeeper::metrics::install() {
        Ok(m) => m,
        Err(e) => return fail(1, format!("cannot set up metrics: {e}")),
    };
    let clock = Arc::new(SystemClock::default());
    let app = match gatekeeper::app::App::build(config, source, policy, clock, metrics) {
        Ok(app) => app,
        Err(e) => return fail(EXIT_CONFIG, format!("{e:#}")),
    };
    tracing::info!(authz = %app.authz_addr, admin = %app.admin_addr, "listening");
    let _ = std::io::stdout().flush();
    match app.run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(1, format!("{e:#}")),
    }
}

type Prepared = Result<(Source, Policy), (u8, String)>;

fn file_source(config: &Config) -> Prepared {
    let Some(file) = config.file.clone() else {
        return Err((
            EXIT_CONFIG,
            "GATEKEEPER_CONFIG: set it (or --config) to the declarative file, or set GATEKEEPER_DATABASE_URL".into(),
        ));
    };
    match gatekeeper::sources::file::load_policy(&file) {
        Ok(policy) => Ok((Source::File(file), policy)),
        Err(errors) => Err((
            EXIT_DATA,
            format!("{} is invalid:\n{errors}", file.display()),
        )),
    }
}

/// PostgreSQL mode: the schema must be current, the master key valid when
/// given, and the first snapshot must load before anything listens.
async fn postgres_source(config: &Config, url: String) -> Prepared {
    if config.file.is_some() {
        return Err((
            EXIT_CONFIG,
            "GATEKEEPER_CONFIG: PostgreSQL mode reads the database; use `gatekeeper apply FILE` to load a file into it".into(),
        ));
    }
    let master_key = config
        .sealing_key()
        .map_err(|e| (EXIT_CONFIG, e.to_string()))?;
    gatekeeper::db::migrate::ensure_current(&url)
        .await
        .map_err(|e| (1, format!("{e:#}")))?;
    let pool = gatekeeper::db::pool(&url, config.db_pool_size)
        .map_err(|e| (EXIT_CONFIG, e.to_string()))?;
    let policy = gatekeeper::sources::postgres::load_policy(&pool, master_key.as_ref())
        .await
        .map_err(|e| (1, format!("cannot load the policy from PostgreSQL: {e:#}")))?;
    Ok((
        Source::Postgres {
            url,
            pool,
            master_key,
        },
        policy,
    ))
}
