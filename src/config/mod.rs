//! The one typed configuration, read once at start-up from `GATEKEEPER_*`
//! environment variables (and `*_FILE` variants for secrets).
//!
//! Parsing works on a plain map so tests never touch the process
//! environment, and reads each value through its entry in the settings
//! table (`settings.rs`), which `serve --help` and the README also show. A
//! bad value names the setting — never a secret's value — and the binary
//! exits with code 64.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::core::model::Limit;
use crate::core::seal::MasterKey;

mod cidr;
mod env;
mod help;
pub mod redis_url;
pub mod settings;
mod values;

pub use cidr::Cidr;
pub use help::{settings_help, settings_markdown};
pub use redis_url::RedisTarget;
pub use settings::{unknown_variables, Setting, SETTINGS};
pub use values::parse_duration;

use env::Env;
use values::{count, duration, duration_or_zero};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:7843";
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:7844";
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(30);
pub const DEFAULT_CACHE_CAPACITY: usize = 100_000;
pub const DEFAULT_LIMITER_CAPACITY: usize = 1_000_000;
pub const DEFAULT_MAX_BODY: usize = 8 * 1024 * 1024;
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(1);
/// The `/authz` accept queue: nginx's own default (511), rounded. A
/// connection over `GATEKEEPER_MAX_CONNECTIONS` is accepted and refused,
/// so the queue only fills while every worker is at its share of the
/// open-file budget.
pub const DEFAULT_BACKLOG: usize = 512;
/// `listen(2)` takes an int; the kernel caps it at `net.core.somaxconn`.
pub const MAX_BACKLOG: u32 = 65_535;
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
pub const DEFAULT_HMAC_WINDOW: Duration = Duration::from_secs(300);
pub const DEFAULT_HMAC_MAX_AHEAD: Duration = Duration::from_secs(5);
pub const DEFAULT_MAX_STALENESS: Duration = Duration::from_secs(3600);
pub const DEFAULT_DB_RELOAD_INTERVAL: Duration = Duration::from_secs(60);
pub const DEFAULT_DB_POOL_SIZE: usize = 16;
/// nginx waits on the auth subrequest: a silent database must cost a
/// request about a second, not the whole outage.
pub const DEFAULT_DB_TIMEOUT: Duration = Duration::from_secs(1);
pub const DEFAULT_LAST_USED_INTERVAL: Duration = Duration::from_secs(10);
pub const DEFAULT_LOG_LEVEL: &str = "info";
pub const DEFAULT_TRUSTED_PROXIES: &str = "127.0.0.0/8,::1/128";
pub const DEFAULT_FAILED_AUTH_LIMIT: &str = "20/1m";
pub const DEFAULT_REDIS_PREFIX: &str = "gatekeeper:";
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_millis(100);
pub const DEFAULT_REDIS_POOL_SIZE: usize = 16;
pub const DEFAULT_REDIS_CACHE_TTL: Duration = Duration::from_secs(300);
pub const DEFAULT_AUDIT_RETENTION_DAYS: u32 = 30;
/// A hundred years: beyond that, "keep forever" is what is meant.
pub const MAX_AUDIT_RETENTION_DAYS: u32 = 36_525;
pub const DEFAULT_AUDIT_QUEUE: usize = 65_536;
/// Queued records cost ~200 bytes each before their strings: 16 Mi of them
/// is already gigabytes.
pub const MAX_AUDIT_QUEUE: usize = 1 << 24;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listen {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

/// What a decision does when Redis cannot be asked (DESIGN §6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedisFailure {
    /// Rate limits and nonces fall back to the in-process stores.
    Local,
    /// Requests that need Redis are denied with `store_unavailable`.
    Deny,
}

#[derive(Clone, Debug)]
pub struct RedisSettings {
    pub url: SecretSetting,
    /// The topology the URL names (`config::redis_url`).
    pub target: RedisTarget,
    pub prefix: String,
    pub timeout: Duration,
    pub failure: RedisFailure,
    pub pool_size: usize,
    pub cache_ttl: Duration,
}

/// The audit log, when `GATEKEEPER_AUDIT=postgres` (DESIGN §7).
#[derive(Clone, Debug)]
pub struct AuditSettings {
    /// `GATEKEEPER_AUDIT_DATABASE_URL`, else `GATEKEEPER_DATABASE_URL`.
    pub url: SecretSetting,
    pub retention_days: u32,
    /// Records the queue holds before new ones are dropped.
    pub queue: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

/// A secret setting (a database URL with its password, a master key): its
/// `Debug` prints nothing.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretSetting(pub String);

impl std::fmt::Debug for SecretSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    pub database_url: Option<SecretSetting>,
    /// Its text; `sealing_key` parses it where a command needs it.
    pub master_key: Option<SecretSetting>,
    pub max_staleness: Duration,
    pub db_reload_interval: Duration,
    pub db_pool_size: usize,
    /// The longest a request waits on PostgreSQL (pool checkout and key
    /// look-up together); also bounds the listener's health check.
    pub db_timeout: Duration,
    pub last_used_interval: Duration,
    pub file: Option<PathBuf>,
    pub listen: Listen,
    pub admin_listen: SocketAddr,
    pub allow_query_key: bool,
    /// DB-less mode: a file with no route may be served.
    pub allow_empty_policy: bool,
    pub trusted_proxies: Vec<Cidr>,
    pub cache_ttl: Duration,
    pub cache_capacity: usize,
    pub limiter_capacity: usize,
    pub max_body: usize,
    pub hmac_window: Duration,
    /// How far ahead of the clock an HMAC timestamp may be; also how long
    /// after the nonces' memory begins signatures are refused (`decide`).
    pub hmac_max_ahead: Duration,
    pub reload_interval: Duration,
    pub shutdown_grace: Duration,
    pub workers: Option<usize>,
    /// Open `/authz` connections; derived from the open-file limit when
    /// unset (`http::connections`).
    pub max_connections: Option<usize>,
    /// The `/authz` listener's accept queue.
    pub backlog: u32,
    pub log_format: Option<LogFormat>,
    pub log_level: String,
    /// Failed credentials a source address may present before it is
    /// throttled; with or without Redis.
    pub failed_auth_limit: Limit,
    pub redis: Option<RedisSettings>,
    /// Where the audit log lives, whether or not this process writes it
    /// (`audit tail|query` read it): `GATEKEEPER_AUDIT_DATABASE_URL`, else
    /// `GATEKEEPER_DATABASE_URL`.
    pub audit_database_url: Option<SecretSetting>,
    /// Set when decisions are audited.
    pub audit: Option<AuditSettings>,
}

/// A setting with a bad value. Never carries the value of a secret.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{setting}: {problem}")]
pub struct ConfigError {
    pub setting: &'static str,
    pub problem: String,
}

fn err(setting: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        setting,
        problem: problem.into(),
    }
}

impl Config {
    /// Reads the settings from the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_map(&std::env::vars().collect())
    }

    /// Reads every setting through its entry in `settings::SETTINGS`.
    pub fn from_map(vars: &HashMap<String, String>) -> Result<Config, ConfigError> {
        Config::read(&Env::new(vars))
    }

    fn read(env: &Env) -> Result<Config, ConfigError> {
        use settings as s;
        let database_url = env.secret(&s::DATABASE_URL)?.map(SecretSetting);
        let audit_database_url = env
            .secret(&s::AUDIT_DATABASE_URL)?
            .map(SecretSetting)
            .or_else(|| database_url.clone());
        Config {
            audit: audit_settings(env, audit_database_url.as_ref())?,
            audit_database_url,
            redis: redis_settings(env)?,
            failed_auth_limit: limit(env, &s::FAILED_AUTH_LIMIT, DEFAULT_FAILED_AUTH_LIMIT)?,
            database_url,
            master_key: env.secret(&s::MASTER_KEY)?.map(SecretSetting),
            max_staleness: duration(env, &s::MAX_STALENESS, DEFAULT_MAX_STALENESS)?,
            db_reload_interval: duration(env, &s::DB_RELOAD_INTERVAL, DEFAULT_DB_RELOAD_INTERVAL)?,
            last_used_interval: duration(env, &s::LAST_USED_INTERVAL, DEFAULT_LAST_USED_INTERVAL)?,
            db_pool_size: count(env, &s::DB_POOL_SIZE, DEFAULT_DB_POOL_SIZE)?,
            db_timeout: duration(env, &s::DB_TIMEOUT, DEFAULT_DB_TIMEOUT)?,
            file: env.get(&s::CONFIG).map(PathBuf::from),
            listen: values::listen(env, &s::LISTEN, DEFAULT_LISTEN)?,
            admin_listen: env
                .get(&s::ADMIN_LISTEN)
                .unwrap_or(DEFAULT_ADMIN_LISTEN)
                .parse()
                .map_err(|_| err(s::ADMIN_LISTEN.name, "expected host:port"))?,
            allow_query_key: values::flag(env, &s::ALLOW_QUERY_KEY)?,
            allow_empty_policy: values::flag(env, &s::ALLOW_EMPTY_POLICY)?,
            trusted_proxies: values::cidrs(env, &s::TRUSTED_PROXIES, DEFAULT_TRUSTED_PROXIES)?,
            cache_ttl: duration(env, &s::CACHE_TTL, DEFAULT_CACHE_TTL)?,
            cache_capacity: count(env, &s::CACHE_CAPACITY, DEFAULT_CACHE_CAPACITY)?,
            limiter_capacity: count(env, &s::LIMITER_CAPACITY, DEFAULT_LIMITER_CAPACITY)?,
            max_body: count(env, &s::MAX_BODY, DEFAULT_MAX_BODY)?,
            hmac_window: duration(env, &s::HMAC_WINDOW, DEFAULT_HMAC_WINDOW)?,
            hmac_max_ahead: duration_or_zero(env, &s::HMAC_MAX_AHEAD, DEFAULT_HMAC_MAX_AHEAD)?,
            reload_interval: duration(env, &s::RELOAD_INTERVAL, DEFAULT_RELOAD_INTERVAL)?,
            shutdown_grace: duration(env, &s::SHUTDOWN_GRACE, DEFAULT_SHUTDOWN_GRACE)?,
            workers: values::optional_count(env, &s::WORKERS)?,
            max_connections: values::optional_count(env, &s::MAX_CONNECTIONS)?,
            backlog: u32::try_from(count(env, &s::BACKLOG, DEFAULT_BACKLOG)?)
                .ok()
                .filter(|n| *n <= MAX_BACKLOG)
                .ok_or_else(|| err(s::BACKLOG.name, format!("at most {MAX_BACKLOG}")))?,
            log_format: values::log_format(env, &s::LOG_FORMAT)?,
            log_level: values::log_level(env, &s::LOG_LEVEL, DEFAULT_LOG_LEVEL)?,
        }
        .checked()
    }

    /// Settings that are each valid but wrong together.
    fn checked(self) -> Result<Config, ConfigError> {
        // A snapshot is confirmed fresh by each periodic reload: a bound
        // shorter than two reloads refuses good requests between them (and
        // after one slow reload) while the database is healthy.
        let reloads = self.db_reload_interval.saturating_mul(2);
        if self.database_url.is_some() && self.max_staleness < reloads {
            return Err(err(
                settings::MAX_STALENESS.name,
                format!(
                    "must be at least twice GATEKEEPER_DB_RELOAD_INTERVAL ({}s), or a healthy \
                     database would answer store_unavailable between reloads",
                    self.db_reload_interval.as_secs_f64()
                ),
            ));
        }
        Ok(self)
    }

    /// The master key, parsed, when one is set.
    pub fn sealing_key(&self) -> Result<Option<MasterKey>, ConfigError> {
        self.master_key
            .as_ref()
            .map(|k| parse_master_key(&k.0))
            .transpose()
    }
}

fn limit(env: &Env, s: &'static Setting, default: &str) -> Result<Limit, ConfigError> {
    Limit::parse(env.get(s).unwrap_or(default))
        .ok_or_else(|| err(s.name, "expected a limit such as 20/1m"))
}

/// The Redis settings, when `GATEKEEPER_REDIS_URL` (or its file) is set.
/// The URL is checked here, so a typo stops start-up rather than every
/// request; the error never repeats it (it may hold a password).
fn redis_settings(env: &Env) -> Result<Option<RedisSettings>, ConfigError> {
    use settings as s;
    let Some(url) = env.secret(&s::REDIS_URL)? else {
        return Ok(None);
    };
    let target = redis_url::parse(&url).map_err(|why| err(s::REDIS_URL.name, why))?;
    let failure = match env.get(&s::REDIS_FAILURE) {
        None | Some("local") => RedisFailure::Local,
        Some("deny") => RedisFailure::Deny,
        Some(_) => return Err(err(s::REDIS_FAILURE.name, "expected local or deny")),
    };
    Ok(Some(RedisSettings {
        url: SecretSetting(url),
        target,
        prefix: env
            .get(&s::REDIS_PREFIX)
            .unwrap_or(DEFAULT_REDIS_PREFIX)
            .to_owned(),
        timeout: duration(env, &s::REDIS_TIMEOUT, DEFAULT_REDIS_TIMEOUT)?,
        failure,
        pool_size: count(env, &s::REDIS_POOL_SIZE, DEFAULT_REDIS_POOL_SIZE)?,
        cache_ttl: duration(env, &s::REDIS_CACHE_TTL, DEFAULT_REDIS_CACHE_TTL)?,
    }))
}

/// The audit settings, when `GATEKEEPER_AUDIT=postgres`; its other
/// settings are only read then. Auditing with no database to write to is
/// an error, not a silent `off`.
fn audit_settings(
    env: &Env,
    url: Option<&SecretSetting>,
) -> Result<Option<AuditSettings>, ConfigError> {
    use settings as s;
    match env.get(&s::AUDIT).map(str::to_ascii_lowercase).as_deref() {
        None | Some("off") => return Ok(None),
        Some("postgres") => {}
        Some(_) => return Err(err(s::AUDIT.name, "expected off or postgres")),
    }
    let url = url.cloned().ok_or_else(|| {
        err(
            s::AUDIT.name,
            "postgres needs a database: set GATEKEEPER_AUDIT_DATABASE_URL or \
             GATEKEEPER_DATABASE_URL (or their _FILE variants)",
        )
    })?;
    Ok(Some(AuditSettings {
        url,
        retention_days: retention_days(env, &s::AUDIT_RETENTION_DAYS)?,
        queue: audit_queue(env, &s::AUDIT_QUEUE)?,
    }))
}

fn retention_days(env: &Env, s: &'static Setting) -> Result<u32, ConfigError> {
    let Some(v) = env.get(s) else {
        return Ok(DEFAULT_AUDIT_RETENTION_DAYS);
    };
    v.parse::<u32>()
        .ok()
        .filter(|d| (1..=MAX_AUDIT_RETENTION_DAYS).contains(d))
        .ok_or_else(|| {
            err(
                s.name,
                format!("expected a whole number of days from 1 to {MAX_AUDIT_RETENTION_DAYS}"),
            )
        })
}

fn audit_queue(env: &Env, s: &'static Setting) -> Result<usize, ConfigError> {
    let queue = count(env, s, DEFAULT_AUDIT_QUEUE)?;
    if queue > MAX_AUDIT_QUEUE {
        return Err(err(s.name, format!("at most {MAX_AUDIT_QUEUE} records")));
    }
    Ok(queue)
}

/// `GATEKEEPER_MASTER_KEY` as a key; a bad value names the setting, never
/// the value. The one place that turns the setting into a `MasterKey`.
pub fn parse_master_key(text: &str) -> Result<MasterKey, ConfigError> {
    MasterKey::parse(text).map_err(|e| err(settings::MASTER_KEY.name, e.to_string()))
}

#[cfg(test)]
mod settings_tests;
#[cfg(test)]
mod tests;
