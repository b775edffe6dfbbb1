//! One parser per kind of value (address, flag, count, duration, …), each
//! reading its setting through the table and naming it in its error.

use std::path::PathBuf;
use std::time::Duration;

use tracing_subscriber::filter::{EnvFilter, LevelFilter};

use super::env::Env;
use super::settings::Setting;
use super::{err, Cidr, ConfigError, Listen, LogFormat};

pub(super) fn listen(env: &Env, s: &'static Setting, default: &str) -> Result<Listen, ConfigError> {
    let v = env.get(s).unwrap_or(default);
    if let Some(path) = v.strip_prefix("unix:") {
        if path.is_empty() {
            return Err(err(s.name, "unix: needs a socket path"));
        }
        return Ok(Listen::Unix(PathBuf::from(path)));
    }
    v.parse()
        .map(Listen::Tcp)
        .map_err(|_| err(s.name, "expected host:port or unix:/path.sock"))
}

pub(super) fn flag(env: &Env, s: &'static Setting) -> Result<bool, ConfigError> {
    match env.get(s).map(str::to_ascii_lowercase).as_deref() {
        None | Some("false" | "0" | "no" | "off") => Ok(false),
        Some("true" | "1" | "yes" | "on") => Ok(true),
        Some(_) => Err(err(s.name, "expected true or false")),
    }
}

pub(super) fn cidrs(
    env: &Env,
    s: &'static Setting,
    default: &str,
) -> Result<Vec<Cidr>, ConfigError> {
    env.get(s)
        .unwrap_or(default)
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            Cidr::parse(p).ok_or_else(|| err(s.name, format!("`{p}` is not an address or CIDR")))
        })
        .collect()
}

/// A positive whole number.
pub(super) fn count(env: &Env, s: &'static Setting, default: usize) -> Result<usize, ConfigError> {
    env.get(s).map_or(Ok(default), |v| positive(s, v))
}

/// A positive whole number with no default (`None` when unset).
pub(super) fn optional_count(env: &Env, s: &'static Setting) -> Result<Option<usize>, ConfigError> {
    env.get(s).map(|v| positive(s, v)).transpose()
}

fn positive(s: &'static Setting, v: &str) -> Result<usize, ConfigError> {
    v.parse::<usize>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| err(s.name, "expected a positive whole number"))
}

pub(super) fn duration(
    env: &Env,
    s: &'static Setting,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match env.get(s) {
        None => Ok(default),
        Some(v) => parse_duration(v)
            .ok_or_else(|| err(s.name, "expected a duration such as 250ms, 30s, 5m or 1h")),
    }
}

/// As [`duration`], where `0s` (none at all) is a value too.
pub(super) fn duration_or_zero(
    env: &Env,
    s: &'static Setting,
    default: Duration,
) -> Result<Duration, ConfigError> {
    let zero = |v: &str| {
        let digits = v.find(|c: char| c != '0').unwrap_or(v.len());
        digits > 0 && ["", "ms", "s", "m", "h"].contains(&&v[digits..])
    };
    match env.get(s) {
        Some(v) if zero(v) => Ok(Duration::ZERO),
        _ => duration(env, s, default),
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

pub(super) fn log_format(env: &Env, s: &'static Setting) -> Result<Option<LogFormat>, ConfigError> {
    match env.get(s) {
        None => Ok(None),
        Some("json") => Ok(Some(LogFormat::Json)),
        Some("pretty") => Ok(Some(LogFormat::Pretty)),
        Some(_) => Err(err(s.name, "expected json or pretty")),
    }
}

/// A level, or a `tracing` filter, for `logging`. `tracing` takes a bare
/// word that is not a level for a target (`warning` would log nothing but
/// a target of that name), and a space after a comma into the next target:
/// here a bare word must be a level, the directives are kept without
/// surrounding spaces, and the whole must be a filter `tracing` accepts.
pub(super) fn log_level(
    env: &Env,
    s: &'static Setting,
    default: &str,
) -> Result<String, ConfigError> {
    let directives: Vec<&str> = env
        .get(s)
        .unwrap_or(default)
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect();
    if directives.is_empty() {
        return Err(err(s.name, "expected a level or a tracing filter"));
    }
    for directive in &directives {
        let bare = !directive.contains(['=', '[']);
        if bare && directive.parse::<LevelFilter>().is_err() {
            return Err(err(
                s.name,
                format!(
                    "`{directive}` is not a level: expected error, warn, info, debug, trace or \
                     off, or a tracing filter such as gatekeeper=debug,info"
                ),
            ));
        }
    }
    let filter = directives.join(",");
    EnvFilter::builder()
        .parse(&filter)
        .map_err(|e| err(s.name, format!("not a tracing filter: {e}")))?;
    Ok(filter)
}
