//! The table of every `GATEKEEPER_*` setting: its name, its default as
//! shown, one line of help, and whether it is a secret with a `_FILE`
//! variant.
//!
//! The table is the single reference: `Config::from_map` reads a value only
//! through an entry of it (`env::Env`), `serve --help` prints it, the README's
//! table is checked against it, and a variable with the prefix that is not
//! in it is reported by [`unknown_variables`]; tests (`settings_tests.rs`)
//! hold all four to it.
//!
//! Help texts may hold `code` spans (the README renders them; `--help`
//! drops the backticks) but no `|`.

use std::collections::HashMap;

/// Every setting's name starts with it.
pub const PREFIX: &str = "GATEKEEPER_";

/// One `GATEKEEPER_*` variable.
#[derive(Debug)]
pub struct Setting {
    pub name: &'static str,
    pub default: Shown,
    pub help: &'static str,
    /// A secret's second variable: a file holding the value (`NAME_FILE`).
    pub file_variant: Option<&'static str>,
}

/// A setting's default as `--help` and the README show it.
#[derive(Debug)]
pub enum Shown {
    /// Unset means "not used" (no file, no database, no Redis).
    Unset,
    /// A value the parser accepts; leaving the variable unset behaves
    /// exactly as setting it to this (a test checks every one).
    Value(&'static str),
    /// Worked out when unset (the number of CPUs, another setting).
    Derived(&'static str),
}

const fn plain(name: &'static str, default: Shown, help: &'static str) -> Setting {
    Setting {
        name,
        default,
        help,
        file_variant: None,
    }
}

const fn secret(
    name: &'static str,
    file_variant: &'static str,
    default: Shown,
    help: &'static str,
) -> Setting {
    Setting {
        name,
        default,
        help,
        file_variant: Some(file_variant),
    }
}

use Shown::{Derived, Unset, Value};

// ── Policy source and listeners ─────────────────────────────────────────────

pub const CONFIG: Setting = plain(
    "GATEKEEPER_CONFIG",
    Unset,
    "the declarative file (same as `--config`)",
);
pub const DATABASE_URL: Setting = secret(
    "GATEKEEPER_DATABASE_URL",
    "GATEKEEPER_DATABASE_URL_FILE",
    Unset,
    "PostgreSQL mode (≥ 15): `migrate`, and `serve` from the database",
);
pub const MASTER_KEY: Setting = secret(
    "GATEKEEPER_MASTER_KEY",
    "GATEKEEPER_MASTER_KEY_FILE",
    Unset,
    "32 bytes (64 hex or base64) sealing HMAC secrets in PostgreSQL",
);
pub const LISTEN: Setting = plain(
    "GATEKEEPER_LISTEN",
    Value(super::DEFAULT_LISTEN),
    "`/authz`: `host:port` or `unix:/path.sock`",
);
pub const ADMIN_LISTEN: Setting = plain(
    "GATEKEEPER_ADMIN_LISTEN",
    Value(super::DEFAULT_ADMIN_LISTEN),
    "`/livez`, `/readyz`, `/metrics` — never expose through nginx",
);
pub const WORKERS: Setting = plain(
    "GATEKEEPER_WORKERS",
    Derived("number of CPUs"),
    "HTTP worker threads",
);
pub const MAX_CONNECTIONS: Setting = plain(
    "GATEKEEPER_MAX_CONNECTIONS",
    Derived("from the open-file limit"),
    "open `/authz` connections; one more gets a 503 at once (see Connection limits)",
);
pub const BACKLOG: Setting = plain(
    "GATEKEEPER_BACKLOG",
    Value("512"),
    "connections the kernel queues for `/authz` until they are accepted",
);
pub const SHUTDOWN_GRACE: Setting = plain(
    "GATEKEEPER_SHUTDOWN_GRACE",
    Value("10s"),
    "time in-flight requests get on SIGTERM/SIGINT",
);

// ── Requests ────────────────────────────────────────────────────────────────

pub const ALLOW_QUERY_KEY: Setting = plain(
    "GATEKEEPER_ALLOW_QUERY_KEY",
    Value("false"),
    "accept `?api_key=` (query strings land in access logs)",
);
pub const TRUSTED_PROXIES: Setting = plain(
    "GATEKEEPER_TRUSTED_PROXIES",
    Value(super::DEFAULT_TRUSTED_PROXIES),
    "peers whose `X-Real-IP` is believed",
);
pub const MAX_BODY: Setting = plain(
    "GATEKEEPER_MAX_BODY",
    Value("8388608"),
    "largest forwarded body `/authz` reads (bytes)",
);
pub const HMAC_WINDOW: Setting = plain(
    "GATEKEEPER_HMAC_WINDOW",
    Value("300s"),
    "accepted clock skew of HMAC timestamps",
);
pub const HMAC_MAX_AHEAD: Setting = plain(
    "GATEKEEPER_HMAC_MAX_AHEAD",
    Value("5s"),
    "how far ahead of the clock an HMAC timestamp may be (at most the window); also how long HMAC is refused after a start without Redis or a Redis data loss",
);
pub const FAILED_AUTH_LIMIT: Setting = plain(
    "GATEKEEPER_FAILED_AUTH_LIMIT",
    Value(super::DEFAULT_FAILED_AUTH_LIMIT),
    "failed credentials per source address before it gets 429",
);

// ── In-process state ────────────────────────────────────────────────────────

pub const CACHE_TTL: Setting = plain(
    "GATEKEEPER_CACHE_TTL",
    Value("30s"),
    "lifetime of a verified Basic credential, and of a key record (PostgreSQL mode), in memory",
);
pub const CACHE_CAPACITY: Setting = plain(
    "GATEKEEPER_CACHE_CAPACITY",
    Value("100000"),
    "entries in each of those caches",
);
pub const LIMITER_CAPACITY: Setting = plain(
    "GATEKEEPER_LIMITER_CAPACITY",
    Value("1000000"),
    "rate-limit states kept in process",
);
pub const ALLOW_EMPTY_POLICY: Setting = plain(
    "GATEKEEPER_ALLOW_EMPTY_POLICY",
    Value("false"),
    "serve a declarative file with no route (every request `no_route_match`); refused otherwise",
);
pub const RELOAD_INTERVAL: Setting = plain(
    "GATEKEEPER_RELOAD_INTERVAL",
    Value("1s"),
    "how often the declarative file is checked for changes",
);

// ── PostgreSQL mode ─────────────────────────────────────────────────────────

pub const MAX_STALENESS: Setting = plain(
    "GATEKEEPER_MAX_STALENESS",
    Value("1h"),
    "how long a snapshot serves credentials without reaching PostgreSQL (at least twice DB_RELOAD_INTERVAL)",
);
pub const DB_RELOAD_INTERVAL: Setting = plain(
    "GATEKEEPER_DB_RELOAD_INTERVAL",
    Value("60s"),
    "safety-net full reload from PostgreSQL",
);
pub const DB_POOL_SIZE: Setting = plain(
    "GATEKEEPER_DB_POOL_SIZE",
    Value("16"),
    "PostgreSQL connections per replica",
);
pub const DB_TIMEOUT: Setting = plain(
    "GATEKEEPER_DB_TIMEOUT",
    Value("1s"),
    "how long a request waits on PostgreSQL (pool, key look-up) before `store_unavailable`",
);
pub const LAST_USED_INTERVAL: Setting = plain(
    "GATEKEEPER_LAST_USED_INTERVAL",
    Value("10s"),
    "how often keys' `last_used_at` is written",
);

// ── Logs ────────────────────────────────────────────────────────────────────

pub const LOG_FORMAT: Setting = plain(
    "GATEKEEPER_LOG_FORMAT",
    Derived("`json` (pretty on a terminal)"),
    "`json` or `pretty`",
);
pub const LOG_LEVEL: Setting = plain(
    "GATEKEEPER_LOG_LEVEL",
    Value("info"),
    "a level (`error`, `warn`, `info`, `debug`, `trace`) or a `tracing` filter; decisions: deny at \
     info, allow at debug; a bare `debug`/`trace` raises gatekeeper's logs only (libraries stay at \
     info)",
);

// ── Redis ───────────────────────────────────────────────────────────────────

pub const REDIS_URL: Setting = secret(
    "GATEKEEPER_REDIS_URL",
    "GATEKEEPER_REDIS_URL_FILE",
    Unset,
    "`redis://[user:pass@]host[:port][/db]`, `redis+sentinel://[user:pass@]host[:port][,…]/master[/db]` \
     or `redis+cluster://[user:pass@]host[:port][,…]`: state shared by replicas (limits, nonces, \
     failures, L2 cache)",
);
pub const REDIS_PREFIX: Setting = plain(
    "GATEKEEPER_REDIS_PREFIX",
    Value(super::DEFAULT_REDIS_PREFIX),
    "prefix of every Redis key gatekeeper writes",
);
pub const REDIS_TIMEOUT: Setting = plain(
    "GATEKEEPER_REDIS_TIMEOUT",
    Value("100ms"),
    "longest a request waits on Redis (connection included)",
);
pub const REDIS_FAILURE: Setting = plain(
    "GATEKEEPER_REDIS_FAILURE",
    Value("local"),
    "Redis unreachable: `local` (in-process limits and nonces) or `deny` (`store_unavailable`)",
);
pub const REDIS_POOL_SIZE: Setting = plain(
    "GATEKEEPER_REDIS_POOL_SIZE",
    Value("16"),
    "Redis connections per replica",
);
pub const REDIS_CACHE_TTL: Setting = plain(
    "GATEKEEPER_REDIS_CACHE_TTL",
    Value("5m"),
    "sliding lifetime of a key record in Redis",
);

// ── Audit log ───────────────────────────────────────────────────────────────

pub const AUDIT: Setting = plain(
    "GATEKEEPER_AUDIT",
    Value("off"),
    "`postgres`: one row per decision in `gk_audit`",
);
pub const AUDIT_DATABASE_URL: Setting = secret(
    "GATEKEEPER_AUDIT_DATABASE_URL",
    "GATEKEEPER_AUDIT_DATABASE_URL_FILE",
    Derived("`GATEKEEPER_DATABASE_URL`"),
    "where the audit rows go, and what `audit tail` and `audit query` read (file mode can audit \
     too; `gatekeeper migrate` creates the table)",
);
pub const AUDIT_RETENTION_DAYS: Setting = plain(
    "GATEKEEPER_AUDIT_RETENTION_DAYS",
    Value("30"),
    "rows older than this are deleted by the service (at start, then hourly)",
);
pub const AUDIT_QUEUE: Setting = plain(
    "GATEKEEPER_AUDIT_QUEUE",
    Value("65536"),
    "records waiting to be written; a full queue drops and counts, never slows a decision",
);

/// Every setting, in the order `--help` and the README list them.
pub const SETTINGS: &[&Setting] = &[
    &CONFIG,
    &DATABASE_URL,
    &MASTER_KEY,
    &LISTEN,
    &ADMIN_LISTEN,
    &WORKERS,
    &MAX_CONNECTIONS,
    &BACKLOG,
    &SHUTDOWN_GRACE,
    &ALLOW_QUERY_KEY,
    &TRUSTED_PROXIES,
    &MAX_BODY,
    &HMAC_WINDOW,
    &HMAC_MAX_AHEAD,
    &FAILED_AUTH_LIMIT,
    &CACHE_TTL,
    &CACHE_CAPACITY,
    &LIMITER_CAPACITY,
    &RELOAD_INTERVAL,
    &ALLOW_EMPTY_POLICY,
    &MAX_STALENESS,
    &DB_RELOAD_INTERVAL,
    &DB_POOL_SIZE,
    &DB_TIMEOUT,
    &LAST_USED_INTERVAL,
    &LOG_FORMAT,
    &LOG_LEVEL,
    &REDIS_URL,
    &REDIS_PREFIX,
    &REDIS_TIMEOUT,
    &REDIS_FAILURE,
    &REDIS_POOL_SIZE,
    &REDIS_CACHE_TTL,
    &AUDIT,
    &AUDIT_DATABASE_URL,
    &AUDIT_RETENTION_DAYS,
    &AUDIT_QUEUE,
];

pub(super) fn listed(name: &str) -> bool {
    SETTINGS.iter().any(|s| s.name == name)
}

/// The variables in `env` that start with `GATEKEEPER_` but name no
/// setting (nor a secret's `_FILE` variant), sorted: most likely typos,
/// which parsing would otherwise ignore in silence; for start-up to warn
/// about. Other commands' settings are in the table too, so a shared
/// environment reports none of them.
pub fn unknown_variables(env: &HashMap<String, String>) -> Vec<String> {
    let known = |name: &str| {
        SETTINGS
            .iter()
            .any(|s| s.name == name || s.file_variant == Some(name))
    };
    let mut unknown: Vec<String> = env
        .keys()
        .filter(|name| name.starts_with(PREFIX) && !known(name))
        .cloned()
        .collect();
    unknown.sort();
    unknown
}
