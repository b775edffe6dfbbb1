//! `gatekeeper serve [--config FILE]`: load the settings and the first
//! policy (from the file or PostgreSQL), then run the listeners until
//! SIGTERM or SIGINT stops them; SIGHUP reloads the policy.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;

use gatekeeper::app::{App, Deps, Source};
use gatekeeper::clock::SystemClock;
use gatekeeper::config::Config;
use gatekeeper::core::policy::Policy;
use gatekeeper::signals;

use super::{usage, CommandError};

pub async fn run(config_flag: Option<PathBuf>) -> Result<(), CommandError> {
    let mut config = Config::from_env()?;
    if config_flag.is_some() {
        config.file = config_flag;
    }
    gatekeeper::logging::init(config.log_format, &config.log_level);
    // A typo (GATEKEEPER_LOG_LEVL) would otherwise be ignored in silence.
    for variable in gatekeeper::config::unknown_variables(&std::env::vars().collect()) {
        tracing::warn!(%variable, "not a gatekeeper setting (a typo?); ignored");
    }
    raise_open_file_limit();
    let (source, policy) = match config.database_url.clone() {
        Some(url) => postgres_source(&config, url.0).await?,
        None => file_source(&config)?,
    };
    if let Some(audit) = &config.audit {
        gatekeeper::audit::check_database(audit).await?;
    }
    let metrics = gatekeeper::metrics::install().context("cannot set up metrics")?;
    let deps = Deps {
        source,
        policy,
        clock: Arc::new(SystemClock::default()),
        metrics,
        // Before anything listens: from here on a SIGHUP reloads instead
        // of stopping the process.
        hangups: signals::hangup(),
    };
    let app = App::build(config, deps).map_err(|e| usage(format!("{e:#}")))?;
    tracing::info!(authz = %app.authz_addr, admin = %app.admin_addr, "listening");
    let _ = std::io::stdout().flush();
    Ok(app.run(signals::terminate()).await?)
}

/// The soft open-file limit up to the hard one, before anything opens a
/// descriptor: the `/authz` connection bound is derived from it
/// (`http::connections`). Failing to raise it is not fatal: the bound is
/// derived from whatever limit holds.
fn raise_open_file_limit() {
    match gatekeeper::http::connections::raise_open_file_limit() {
        Ok((before, after)) if before != after => {
            tracing::info!(
                before,
                after,
                "raised the open-file limit to its hard limit"
            );
        }
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "cannot raise the open-file limit"),
    }
}

fn file_source(config: &Config) -> Result<(Source, Policy), CommandError> {
    let Some(file) = config.file.clone() else {
        return Err(usage(
            "GATEKEEPER_CONFIG: set it (or --config) to the declarative file, or set GATEKEEPER_DATABASE_URL",
        ));
    };
    let policy = gatekeeper::sources::file::load_policy(&file, config.allow_empty_policy)
        .map_err(|errors| CommandError::invalid_file(&file, errors))?;
    Ok((Source::File(file), policy))
}

/// PostgreSQL mode: the schema must be current, the master key valid when
/// given, and the first snapshot must load before anything listens.
async fn postgres_source(config: &Config, url: String) -> Result<(Source, Policy), CommandError> {
    if config.file.is_some() {
        return Err(usage(
            "GATEKEEPER_CONFIG: PostgreSQL mode reads the database; use `gatekeeper apply FILE` to load a file into it",
        ));
    }
    let master_key = config.sealing_key()?;
    gatekeeper::db::migrate::ensure_current(&url).await?;
    // A URL the pool cannot use is a bad setting, not an outage.
    let pool = gatekeeper::db::pool(&url, config.db_pool_size).map_err(|e| usage(e.to_string()))?;
    let policy = gatekeeper::sources::postgres::load_policy(&pool, master_key.as_ref())
        .await
        .context("cannot load the policy from PostgreSQL")?;
    Ok((
        Source::Postgres {
            url,
            pool,
            master_key,
        },
        policy,
    ))
}
