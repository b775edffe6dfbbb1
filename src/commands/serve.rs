//! `gatekeeper serve [--config FILE]`: load the settings and the first
//! policy (from the file or PostgreSQL), then run the listeners until a
//! signal stops them.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use gatekeeper::app::Source;
use gatekeeper::clock::SystemClock;
use gatekeeper::config::Config;
use gatekeeper::core::policy::Policy;

use super::{fail, EXIT_CONFIG, EXIT_DATA};

pub async fn run(config_flag: Option<PathBuf>) -> ExitCode {
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
