//! The one typed configuration, read once at start-up from `GATEKEEPER_*`
//! environment variables (and `*_FILE` variants for secrets).
//!
//! Parsing works on a plain map so tests never touch the process
//! environment. A bad value names the setting — never a secret's value — and
//! the binary exits with code 64.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::core::model::Limit;
use crate::core::seal::MasterKey;

mod cidr;

pub use cidr::Cidr;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:7843";
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:7844";
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(30);
pub const DEFAULT_CACHE_CAPACITY: usize = 100_000;
pub const DEFAULT_LIMITER_CAPACITY: usize = 1_000_000;
pub const DEFAULT_MAX_BODY: usize = 8 * 1024 * 1024;
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(1);
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
pub const DEFAULT_HMAC_WINDOW: Duration = Duration::from_secs(300);
pub const DEFAULT_MAX_STALENESS: Duration = Duration::from_secs(3600);
pub const DEFAULT_DB_RELOAD_INTERVAL: Duration = Duration::from_secs(60);
pub const DEFAULT_DB_POOL_SIZE: usize = 16;
pub const DEFAULT_LAST_USED_INTERVAL: Duration = Duration::from_secs(10);
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

/// Every setting `serve` reads, with a one-line description: `serve --help`
/// prints this table, so it is the reference.
pub const SETTINGS: &[(&str, &str)] = &[
    (
        "GATEKEEPER_CONFIG",
        "declarative file for DB-less mode (same as --config)",
    ),
    (
        "GATEKEEPER_LISTEN",
        "address for /authz: host:port or unix:/path.sock [127.0.0.1:7843]",
    ),
    (
        "GATEKEEPER_ADMIN_LISTEN",
        "address for /livez, /readyz, /metrics [127.0.0.1:7844]",
    ),
    (
        "GATEKEEPER_ALLOW_QUERY_KEY",
        "accept ?api_key= (lands in access logs) [false]",
    ),
    (
        "GATEKEEPER_TRUSTED_PROXIES",
        "CIDRs whose X-Real-IP is believed [127.0.0.0/8,::1/128]",
    ),
    (
        "GATEKEEPER_CACHE_TTL",
        "lifetime of a verified credential in the in-process cache [30s]",
    ),
    (
        "GATEKEEPER_CACHE_CAPACITY",
        "entries in the in-process credential cache [100000]",
    ),
    (
        "GATEKEEPER_LIMITER_CAPACITY",
        "rate-limit states kept in process [1000000]",
    ),
    (
        "GATEKEEPER_MAX_BODY",
        "largest forwarded body /authz reads, in bytes [8388608]",
    ),
    (
        "GATEKEEPER_HMAC_WINDOW",
        "accepted clock skew of HMAC timestamps [300s]",
    ),
    (
        "GATEKEEPER_RELOAD_INTERVAL",
        "how often the declarative file is checked for changes [1s]",
    ),
    (
        "GATEKEEPER_SHUTDOWN_GRACE",
        "time in-flight requests get on SIGTERM [10s]",
    ),
    ("GATEKEEPER_WORKERS", "HTTP worker threads [number of CPUs]"),
    (
        "GATEKEEPER_LOG_FORMAT",
        "json | pretty [json; pretty on a terminal]",
    ),
    (
        "GATEKEEPER_LOG_LEVEL",
        "error | warn | info | debug | trace, or a tracing filter [info]",
    ),
    (
        "GATEKEEPER_FAILED_AUTH_LIMIT",
        "failed credentials per source address before it gets 429 [20/1m]",
    ),
    (
        "GATEKEEPER_REDIS_URL",
        "Redis for state shared by replicas: limits, nonces, failures, L2 cache (or _FILE)",
    ),
    (
        "GATEKEEPER_REDIS_PREFIX",
        "prefix of every Redis key gatekeeper writes [gatekeeper:]",
    ),
    (
        "GATEKEEPER_REDIS_TIMEOUT",
        "longest a request waits on Redis before the fallback [100ms]",
    ),
    (
        "GATEKEEPER_REDIS_FAILURE",
        "Redis unreachable: local (in-process limits) | deny (store_unavailable) [local]",
    ),
    (
        "GATEKEEPER_REDIS_POOL_SIZE",
        "Redis connections per replica [16]",
    ),
    (
        "GATEKEEPER_REDIS_CACHE_TTL",
        "sliding lifetime of a credential record in Redis [5m]",
    ),
    (
        "GATEKEEPER_AUDIT",
        "off | postgres: write one audit row per decision [off]",
    ),
    (
        "GATEKEEPER_AUDIT_DATABASE_URL",
        "the audit log's PostgreSQL (or _FILE) [GATEKEEPER_DATABASE_URL]",
    ),
    (
        "GATEKEEPER_AUDIT_RETENTION_DAYS",
        "audit rows older than this are deleted by the service [30]",
    ),
    (
        "GATEKEEPER_AUDIT_QUEUE",
        "decisions waiting to be written; a full queue drops and counts [65536]",
    ),
];

/// The `Environment:` section of `serve --help`, from `SETTINGS`.
pub fn settings_help() -> String {
    let mut s = String::from("Environment:\n");
    for (name, what) in SETTINGS {
        s.push_str(&format!("  {name:<32} {what}\n"));
    }
    s
}

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
    pub last_used_interval: Duration,
    pub file: Option<PathBuf>,
    pub listen: Listen,
    pub admin_listen: SocketAddr,
    pub allow_query_key: bool,
    pub trusted_proxies: Vec<Cidr>,
    pub cache_ttl: Duration,
    pub cache_capacity: usize,
    pub limiter_capacity: usize,
    pub max_body: usize,
    pub hmac_window: Duration,
    pub reload_interval: Duration,
    pub shutdown_grace: Duration,
    pub workers: Option<usize>,
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

    pub fn from_map(env: &HashMap<String, String>) -> Result<Config, ConfigError> {
        let get = |name: &str| env.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
        let database_url = secret_setting(env, "GATEKEEPER_DATABASE_URL")?.map(SecretSetting);
        let audit_database_url = secret_setting(env, "GATEKEEPER_AUDIT_DATABASE_URL")?
            .map(SecretSetting)
            .or_else(|| database_url.clone());
        Ok(Config {
            audit: audit_settings(env, audit_database_url.as_ref())?,
            audit_database_url,
            redis: redis_settings(env)?,
            failed_auth_limit: Limit::parse(
                get("GATEKEEPER_FAILED_AUTH_LIMIT").unwrap_or(DEFAULT_FAILED_AUTH_LIMIT),
            )
            .ok_or_else(|| {
                err(
                    "GATEKEEPER_FAILED_AUTH_LIMIT",
                    "expected a limit such as 20/1m",
                )
            })?,
            database_url,
            master_key: secret_setting(env, "GATEKEEPER_MASTER_KEY")?.map(SecretSetting),
            max_staleness: duration(
                "GATEKEEPER_MAX_STALENESS",
                get("GATEKEEPER_MAX_STALENESS"),
                DEFAULT_MAX_STALENESS,
            )?,
            db_reload_interval: duration(
                "GATEKEEPER_DB_RELOAD_INTERVAL",
                get("GATEKEEPER_DB_RELOAD_INTERVAL"),
                DEFAULT_DB_RELOAD_INTERVAL,
            )?,
            last_used_interval: duration(
                "GATEKEEPER_LAST_USED_INTERVAL",
                get("GATEKEEPER_LAST_USED_INTERVAL"),
                DEFAULT_LAST_USED_INTERVAL,
            )?,
            db_pool_size: count(
                "GATEKEEPER_DB_POOL_SIZE",
                get("GATEKEEPER_DB_POOL_SIZE"),
                DEFAULT_DB_POOL_SIZE,
            )?,
            file: get("GATEKEEPER_CONFIG").map(PathBuf::from),
            listen: parse_listen(get("GATEKEEPER_LISTEN").unwrap_or(DEFAULT_LISTEN))?,
            admin_listen: get("GATEKEEPER_ADMIN_LISTEN")
                .unwrap_or(DEFAULT_ADMIN_LISTEN)
                .parse()
                .map_err(|_| err("GATEKEEPER_ADMIN_LISTEN", "expected host:port"))?,
            allow_query_key: parse_bool(
                "GATEKEEPER_ALLOW_QUERY_KEY",
                get("GATEKEEPER_ALLOW_QUERY_KEY"),
            )?,
            trusted_proxies: parse_cidrs(
                get("GATEKEEPER_TRUSTED_PROXIES").unwrap_or(DEFAULT_TRUSTED_PROXIES),
            )?,
            cache_ttl: duration(
                "GATEKEEPER_CACHE_TTL",
                get("GATEKEEPER_CACHE_TTL"),
                DEFAULT_CACHE_TTL,
            )?,
            cache_capacity: count(
                "GATEKEEPER_CACHE_CAPACITY",
                get("GATEKEEPER_CACHE_CAPACITY"),
                DEFAULT_CACHE_CAPACITY,
            )?,
            limiter_capacity: count(
                "GATEKEEPER_LIMITER_CAPACITY",
                get("GATEKEEPER_LIMITER_CAPACITY"),
                DEFAULT_LIMITER_CAPACITY,
            )?,
            max_body: count(
                "GATEKEEPER_MAX_BODY",
                get("GATEKEEPER_MAX_BODY"),
                DEFAULT_MAX_BODY,
            )?,
            hmac_window: duration(
                "GATEKEEPER_HMAC_WINDOW",
                get("GATEKEEPER_HMAC_WINDOW"),
                DEFAULT_HMAC_WINDOW,
            )?,
            reload_interval: duration(
                "GATEKEEPER_RELOAD_INTERVAL",
                get("GATEKEEPER_RELOAD_INTERVAL"),
                DEFAULT_RELOAD_INTERVAL,
            )?,
            shutdown_grace: duration(
                "GATEKEEPER_SHUTDOWN_GRACE",
                get("GATEKEEPER_SHUTDOWN_GRACE"),
                DEFAULT_SHUTDOWN_GRACE,
            )?,
            workers: get("GATEKEEPER_WORKERS")
                .map(|v| count("GATEKEEPER_WORKERS", Some(v), 1))
                .transpose()?,
            log_format: get("GATEKEEPER_LOG_FORMAT")
                .map(parse_log_format)
                .transpose()?,
            log_level: get("GATEKEEPER_LOG_LEVEL").unwrap_or("info").to_owned(),
        })
    }
}

/// A secret setting: `NAME`, or `NAME_FILE` naming a file that holds it
/// (one trailing newline removed). Both at once is an error.
fn secret_setting(
    env: &HashMap<String, String>,
    name: &'static str,
) -> Result<Option<String>, ConfigError> {
    let file_name = match name {
        "GATEKEEPER_DATABASE_URL" => "GATEKEEPER_DATABASE_URL_FILE",
        "GATEKEEPER_MASTER_KEY" => "GATEKEEPER_MASTER_KEY_FILE",
        "GATEKEEPER_REDIS_URL" => "GATEKEEPER_REDIS_URL_FILE",
        "GATEKEEPER_AUDIT_DATABASE_URL" => "GATEKEEPER_AUDIT_DATABASE_URL_FILE",
        _ => return Err(err(name, "has no _FILE variant")),
    };
    let direct = env.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
    let file = env
        .get(file_name)
        .map(|v| v.trim())
        .filter(|v| !v.is_empty());
    match (direct, file) {
        (Some(_), Some(_)) => Err(err(name, format!("set {name} or {file_name}, not both"))),
        (Some(v), None) => Ok(Some(v.to_owned())),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map(|v| Some(v.trim_end_matches(['\n', '\r']).to_owned()))
            .map_err(|e| err(file_name, format!("cannot read {path}: {e}"))),
        (None, None) => Ok(None),
    }
}

/// The Redis settings, when `GATEKEEPER_REDIS_URL` (or its file) is set.
/// The URL is checked here, so a typo stops start-up rather than every
/// request; the error never repeats it (it may hold a password).
fn redis_settings(env: &HashMap<String, String>) -> Result<Option<RedisSettings>, ConfigError> {
    let get = |name: &str| env.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
    let Some(url) = secret_setting(env, "GATEKEEPER_REDIS_URL")? else {
        return Ok(None);
    };
    if deadpool_redis::redis::IntoConnectionInfo::into_connection_info(url.as_str()).is_err() {
        return Err(err(
            "GATEKEEPER_REDIS_URL",
            "expected redis://[user:password@]host[:port][/db] or unix:///path",
        ));
    }
    let failure = match get("GATEKEEPER_REDIS_FAILURE") {
        None | Some("local") => RedisFailure::Local,
        Some("deny") => RedisFailure::Deny,
        Some(_) => return Err(err("GATEKEEPER_REDIS_FAILURE", "expected local or deny")),
    };
    Ok(Some(RedisSettings {
        url: SecretSetting(url),
        prefix: get("GATEKEEPER_REDIS_PREFIX")
            .unwrap_or(DEFAULT_REDIS_PREFIX)
            .to_owned(),
        timeout: duration(
            "GATEKEEPER_REDIS_TIMEOUT",
            get("GATEKEEPER_REDIS_TIMEOUT"),
            DEFAULT_REDIS_TIMEOUT,
        )?,
        failure,
        pool_size: count(
            "GATEKEEPER_REDIS_POOL_SIZE",
            get("GATEKEEPER_REDIS_POOL_SIZE"),
            DEFAULT_REDIS_POOL_SIZE,
        )?,
        cache_ttl: duration(
            "GATEKEEPER_REDIS_CACHE_TTL",
            get("GATEKEEPER_REDIS_CACHE_TTL"),
            DEFAULT_REDIS_CACHE_TTL,
        )?,
    }))
}

/// The audit settings, when `GATEKEEPER_AUDIT=postgres`; its other
/// settings are only read then. Auditing with no database to write to is
/// an error, not a silent `off`.
fn audit_settings(
    env: &HashMap<String, String>,
    url: Option<&SecretSetting>,
) -> Result<Option<AuditSettings>, ConfigError> {
    let get = |name: &str| env.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
    match get("GATEKEEPER_AUDIT")
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("off") => return Ok(None),
        Some("postgres") => {}
        Some(_) => return Err(err("GATEKEEPER_AUDIT", "expected off or postgres")),
    }
    let url = url.cloned().ok_or_else(|| {
        err(
            "GATEKEEPER_AUDIT",
            "postgres needs a database: set GATEKEEPER_AUDIT_DATABASE_URL or \
             GATEKEEPER_DATABASE_URL (or their _FILE variants)",
        )
    })?;
    let retention_days = match get("GATEKEEPER_AUDIT_RETENTION_DAYS") {
        None => DEFAULT_AUDIT_RETENTION_DAYS,
        Some(v) => v
            .parse::<u32>()
            .ok()
            .filter(|d| (1..=MAX_AUDIT_RETENTION_DAYS).contains(d))
            .ok_or_else(|| {
                err(
                    "GATEKEEPER_AUDIT_RETENTION_DAYS",
                    format!("expected a whole number of days from 1 to {MAX_AUDIT_RETENTION_DAYS}"),
                )
            })?,
    };
    let queue = count(
        "GATEKEEPER_AUDIT_QUEUE",
        get("GATEKEEPER_AUDIT_QUEUE"),
        DEFAULT_AUDIT_QUEUE,
    )?;
    if queue > MAX_AUDIT_QUEUE {
        return Err(err(
            "GATEKEEPER_AUDIT_QUEUE",
            format!("at most {MAX_AUDIT_QUEUE} records"),
        ));
    }
    Ok(Some(AuditSettings {
        url,
        retention_days,
        queue,
    }))
}

/// `GATEKEEPER_MASTER_KEY` as a key; a bad value names the setting, never
/// the value. The one place that turns the setting into a `MasterKey`.
pub fn parse_master_key(text: &str) -> Result<MasterKey, ConfigError> {
    MasterKey::parse(text).map_err(|e| err("GATEKEEPER_MASTER_KEY", e.to_string()))
}

impl Config {
    /// The master key, parsed, when one is set.
    pub fn sealing_key(&self) -> Result<Option<MasterKey>, ConfigError> {
        self.master_key
            .as_ref()
            .map(|k| parse_master_key(&k.0))
            .transpose()
    }
}

fn parse_listen(s: &str) -> Result<Listen, ConfigError> {
    if let Some(path) = s.strip_prefix("unix:") {
        if path.is_empty() {
            return Err(err("GATEKEEPER_LISTEN", "unix: needs a socket path"));
        }
        return Ok(Listen::Unix(PathBuf::from(path)));
    }
    s.parse()
        .map(Listen::Tcp)
        .map_err(|_| err("GATEKEEPER_LISTEN", "expected host:port or unix:/path.sock"))
}

fn parse_bool(setting: &'static str, v: Option<&str>) -> Result<bool, ConfigError> {
    match v.map(str::to_ascii_lowercase).as_deref() {
        None | Some("false" | "0" | "no" | "off") => Ok(false),
        Some("true" | "1" | "yes" | "on") => Ok(true),
        Some(_) => Err(err(setting, "expected true or false")),
    }
}

fn parse_cidrs(s: &str) -> Result<Vec<Cidr>, ConfigError> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            Cidr::parse(p).ok_or_else(|| {
                err(
                    "GATEKEEPER_TRUSTED_PROXIES",
                    format!("`{p}` is not an address or CIDR"),
                )
            })
        })
        .collect()
}

fn count(setting: &'static str, v: Option<&str>, default: usize) -> Result<usize, ConfigError> {
    match v {
        None => Ok(default),
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| err(setting, "expected a positive whole number")),
    }
}

fn duration(
    setting: &'static str,
    v: Option<&str>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match v {
        None => Ok(default),
        Some(v) => parse_duration(v)
            .ok_or_else(|| err(setting, "expected a duration such as 250ms, 30s, 5m or 1h")),
    }
}

/// `250ms`, `30s`, `5m`, `1h`; a bare number is seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.checked_mul(60)?),
        "h" => Duration::from_secs(n.checked_mul(3600)?),
        _ => return None,
    };
    (!d.is_zero()).then_some(d)
}

fn parse_log_format(s: &str) -> Result<LogFormat, ConfigError> {
    match s {
        "json" => Ok(LogFormat::Json),
        "pretty" => Ok(LogFormat::Pretty),
        _ => Err(err("GATEKEEPER_LOG_FORMAT", "expected json or pretty")),
    }
}

#[cfg(test)]
mod tests;
