//! `Config::from_map` against the contract: defaults, every bad value naming
//! its setting, secrets never printed.

use super::*;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn defaults_apply_when_nothing_is_set() {
    let c = Config::from_map(&env(&[])).unwrap();
    assert_eq!(c.listen, Listen::Tcp("127.0.0.1:7843".parse().unwrap()));
    assert_eq!(c.admin_listen, "127.0.0.1:7844".parse().unwrap());
    assert!(!c.allow_query_key);
    assert_eq!(c.cache_ttl, DEFAULT_CACHE_TTL);
    assert!(c
        .trusted_proxies
        .iter()
        .any(|p| p.contains("127.0.0.1".parse().unwrap())));
    assert!(c
        .trusted_proxies
        .iter()
        .any(|p| p.contains("::1".parse().unwrap())));
    assert!(!c
        .trusted_proxies
        .iter()
        .any(|p| p.contains("10.0.0.1".parse().unwrap())));
}

#[test]
fn a_bad_value_names_its_setting() {
    let cases = [
        ("GATEKEEPER_LISTEN", "nowhere"),
        ("GATEKEEPER_ADMIN_LISTEN", "unix:/x"),
        ("GATEKEEPER_ALLOW_QUERY_KEY", "maybe"),
        ("GATEKEEPER_TRUSTED_PROXIES", "10.0.0.0/33"),
        ("GATEKEEPER_CACHE_TTL", "30 parsecs"),
        ("GATEKEEPER_CACHE_CAPACITY", "-1"),
        ("GATEKEEPER_WORKERS", "0"),
        ("GATEKEEPER_LOG_FORMAT", "xml"),
        ("GATEKEEPER_LOG_FORMAT", "JSON"),
        ("GATEKEEPER_LOG_LEVEL", "warning"),
        ("GATEKEEPER_REDIS_URL", "http://:hunter2@cache/0"),
        ("GATEKEEPER_FAILED_AUTH_LIMIT", "lots"),
        ("GATEKEEPER_DATABASE_URL_FILE", "/nonexistent/db-url"),
    ];
    for (setting, value) in cases {
        let e = Config::from_map(&env(&[(setting, value)])).unwrap_err();
        assert_eq!(e.setting, setting);
        assert!(!e.to_string().contains("hunter2"));
    }
}

#[test]
fn unix_listeners_and_durations_parse() {
    let c = Config::from_map(&env(&[
        ("GATEKEEPER_LISTEN", "unix:/run/gk.sock"),
        ("GATEKEEPER_CACHE_TTL", "250ms"),
        ("GATEKEEPER_ALLOW_QUERY_KEY", "true"),
    ]))
    .unwrap();
    assert_eq!(c.listen, Listen::Unix("/run/gk.sock".into()));
    assert_eq!(c.cache_ttl, Duration::from_millis(250));
    assert!(c.allow_query_key);
    assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
    assert_eq!(parse_duration("0s"), None);
}

#[test]
fn hmac_timestamps_may_be_allowed_no_time_ahead_at_all() {
    let ahead = |v: &str| Config::from_map(&env(&[("GATEKEEPER_HMAC_MAX_AHEAD", v)]));
    assert_eq!(ahead("0s").unwrap().hmac_max_ahead, Duration::ZERO);
    assert_eq!(ahead("00").unwrap().hmac_max_ahead, Duration::ZERO);
    assert_eq!(ahead("2s").unwrap().hmac_max_ahead, Duration::from_secs(2));
    for bad in ["s", "0x", "-1s"] {
        assert_eq!(ahead(bad).unwrap_err().setting, "GATEKEEPER_HMAC_MAX_AHEAD");
    }
}

#[test]
fn the_database_url_comes_from_the_variable_or_its_file_and_never_prints() {
    let url = "postgres://gk:hunter2@db/gk";
    let c = Config::from_map(&env(&[("GATEKEEPER_DATABASE_URL", url)])).unwrap();
    assert_eq!(c.database_url.as_ref().map(|u| u.0.as_str()), Some(url));
    assert!(!format!("{c:?}").contains("hunter2"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("url");
    std::fs::write(&path, format!("{url}\n")).unwrap();
    let p = path.to_str().unwrap();
    let c = Config::from_map(&env(&[("GATEKEEPER_DATABASE_URL_FILE", p)])).unwrap();
    assert_eq!(c.database_url.map(|u| u.0), Some(url.to_owned()));
    let both = [
        ("GATEKEEPER_DATABASE_URL", url),
        ("GATEKEEPER_DATABASE_URL_FILE", p),
    ];
    let e = Config::from_map(&env(&both)).unwrap_err();
    assert_eq!(e.setting, "GATEKEEPER_DATABASE_URL");
    assert!(!e.to_string().contains("hunter2"));
}

#[test]
fn redis_settings_parse_with_defaults_and_never_print_the_url() {
    let url = "redis://:hunter2@cache:6380/5";
    let c = Config::from_map(&env(&[("GATEKEEPER_REDIS_URL", url)])).unwrap();
    let r = c.redis.as_ref().unwrap();
    assert_eq!(r.url.0, url);
    assert_eq!(r.prefix, DEFAULT_REDIS_PREFIX);
    assert_eq!(r.timeout, DEFAULT_REDIS_TIMEOUT);
    assert_eq!(r.failure, RedisFailure::Local);
    assert_eq!(r.cache_ttl, DEFAULT_REDIS_CACHE_TTL);
    assert!(!format!("{c:?}").contains("hunter2"));
    assert_eq!(c.failed_auth_limit, Limit::parse("20/1m").unwrap());

    let c = Config::from_map(&env(&[
        ("GATEKEEPER_REDIS_URL", url),
        ("GATEKEEPER_REDIS_FAILURE", "deny"),
        ("GATEKEEPER_REDIS_TIMEOUT", "40ms"),
        ("GATEKEEPER_REDIS_PREFIX", "gk-a:"),
        ("GATEKEEPER_FAILED_AUTH_LIMIT", "5/10s"),
    ]))
    .unwrap();
    let r = c.redis.unwrap();
    assert_eq!(r.failure, RedisFailure::Deny);
    assert_eq!(r.timeout, Duration::from_millis(40));
    assert_eq!(r.prefix, "gk-a:");
    assert_eq!(c.failed_auth_limit, Limit::parse("5/10s").unwrap());
    assert!(Config::from_map(&env(&[])).unwrap().redis.is_none());
}

#[test]
fn audit_is_off_by_default_and_postgres_uses_the_audit_or_the_policy_database() {
    let c = Config::from_map(&env(&[])).unwrap();
    assert!(c.audit.is_none() && c.audit_database_url.is_none());
    let policy = "postgres://gk:hunter2@db/gk";
    let audit = "postgres://gk:hunter2@audit-db/audit";
    let c = Config::from_map(&env(&[
        ("GATEKEEPER_AUDIT", "postgres"),
        ("GATEKEEPER_DATABASE_URL", policy),
    ]))
    .unwrap();
    let a = c.audit.as_ref().unwrap();
    assert_eq!(a.url.0, policy);
    assert_eq!(a.retention_days, DEFAULT_AUDIT_RETENTION_DAYS);
    assert_eq!(a.queue, DEFAULT_AUDIT_QUEUE);
    assert!(!format!("{c:?}").contains("hunter2"));
    let c = Config::from_map(&env(&[
        ("GATEKEEPER_AUDIT", "postgres"),
        ("GATEKEEPER_DATABASE_URL", policy),
        ("GATEKEEPER_AUDIT_DATABASE_URL", audit),
        ("GATEKEEPER_AUDIT_RETENTION_DAYS", "7"),
        ("GATEKEEPER_AUDIT_QUEUE", "16"),
    ]))
    .unwrap();
    let a = c.audit.unwrap();
    assert_eq!(
        (a.url.0.as_str(), a.retention_days, a.queue),
        (audit, 7, 16)
    );
    assert_eq!(c.audit_database_url.unwrap().0, audit);
    // Readable for `audit tail|query` even where this process does not audit.
    let c = Config::from_map(&env(&[("GATEKEEPER_AUDIT_DATABASE_URL", audit)])).unwrap();
    assert!(c.audit.is_none());
    assert_eq!(c.audit_database_url.unwrap().0, audit);
}

#[test]
fn bad_audit_settings_name_the_setting() {
    let e = Config::from_map(&env(&[("GATEKEEPER_AUDIT", "postgres")])).unwrap_err();
    assert_eq!(e.setting, "GATEKEEPER_AUDIT");
    assert!(
        e.to_string().contains("GATEKEEPER_AUDIT_DATABASE_URL"),
        "{e}"
    );
    let url = ("GATEKEEPER_DATABASE_URL", "postgres://db/gk");
    for (setting, value) in [
        ("GATEKEEPER_AUDIT", "syslog"),
        ("GATEKEEPER_AUDIT_RETENTION_DAYS", "0"),
        ("GATEKEEPER_AUDIT_RETENTION_DAYS", "a month"),
        ("GATEKEEPER_AUDIT_RETENTION_DAYS", "99999"),
        ("GATEKEEPER_AUDIT_QUEUE", "0"),
        ("GATEKEEPER_AUDIT_QUEUE", "999999999"),
    ] {
        let pairs = [("GATEKEEPER_AUDIT", "postgres"), url, (setting, value)];
        assert_eq!(Config::from_map(&env(&pairs)).unwrap_err().setting, setting);
    }
    let e = Config::from_map(&env(&[(
        "GATEKEEPER_AUDIT_DATABASE_URL_FILE",
        "/nonexistent/audit-url",
    )]))
    .unwrap_err();
    assert_eq!(e.setting, "GATEKEEPER_AUDIT_DATABASE_URL_FILE");
}

#[test]
fn redis_failure_mode_and_timeout_are_checked_only_with_a_url() {
    for (setting, value) in [
        ("GATEKEEPER_REDIS_FAILURE", "maybe"),
        ("GATEKEEPER_REDIS_TIMEOUT", "soon"),
        ("GATEKEEPER_REDIS_POOL_SIZE", "0"),
    ] {
        let pairs = [
            ("GATEKEEPER_REDIS_URL", "redis://127.0.0.1/0"),
            (setting, value),
        ];
        assert_eq!(Config::from_map(&env(&pairs)).unwrap_err().setting, setting);
    }
}

#[test]
fn a_log_level_is_a_level_or_a_tracing_filter_and_a_bare_word_must_be_a_level() {
    let level = |v: &str| Config::from_map(&env(&[("GATEKEEPER_LOG_LEVEL", v)]));
    for (given, kept) in [
        ("error", "error"),
        ("warn", "warn"),
        ("info", "info"),
        ("debug", "debug"),
        ("TRACE", "TRACE"),
        ("off", "off"),
        ("gatekeeper=debug,info", "gatekeeper=debug,info"),
        ("trace,gatekeeper=trace", "trace,gatekeeper=trace"),
        ("info, tokio_postgres=warn", "info,tokio_postgres=warn"),
        (
            "warn,gatekeeper[authz]=debug",
            "warn,gatekeeper[authz]=debug",
        ),
    ] {
        assert_eq!(level(given).unwrap().log_level, kept, "{given}");
    }
    assert_eq!(Config::from_map(&env(&[])).unwrap().log_level, "info");
    for bad in [
        "warning",
        "verbose",
        "info,warning",
        "gatekeeper=verbose",
        "gatekeeper=debug,loud",
        "[unclosed",
        ",",
    ] {
        let e = level(bad).unwrap_err();
        assert_eq!(e.setting, "GATEKEEPER_LOG_LEVEL", "{bad}");
    }
    let e = level("warning").unwrap_err().to_string();
    assert!(
        e.starts_with("GATEKEEPER_LOG_LEVEL: `warning` is not a level"),
        "{e}"
    );
}

#[test]
fn a_staleness_bound_shorter_than_two_reloads_is_refused_in_postgres_mode() {
    let db = ("GATEKEEPER_DATABASE_URL", "postgres://gk@127.0.0.1/gk");
    let case = |staleness: &str, reload: &str| {
        Config::from_map(&env(&[
            db,
            ("GATEKEEPER_MAX_STALENESS", staleness),
            ("GATEKEEPER_DB_RELOAD_INTERVAL", reload),
        ]))
    };
    let e = case("30s", "60s").unwrap_err();
    assert_eq!(e.setting, "GATEKEEPER_MAX_STALENESS", "{e}");
    assert!(
        e.to_string().contains("GATEKEEPER_DB_RELOAD_INTERVAL"),
        "{e}"
    );
    assert!(case("119s", "60s").is_err());
    assert!(case("2m", "60s").is_ok());
    assert!(case("2s", "1s").is_ok());
    // The defaults (1h, 60s) pass, and DB-less mode has no reloads to wait for.
    assert!(Config::from_map(&env(&[db])).is_ok());
    let file = Config::from_map(&env(&[("GATEKEEPER_MAX_STALENESS", "1s")]));
    assert!(file.is_ok());
}
