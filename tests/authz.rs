//! The `/authz` contract (DESIGN §4, §9, §10, §11) over real HTTP: one
//! behaviour per test, each against its own instance. The instance is an
//! App in this process (`spawn_app`), except where the test is about what
//! only a process shows: counters on `/metrics` without a label of their
//! own (the recorder is one per process), its log output, its exit codes,
//! and `serve` on a Unix socket; those start the real binary.

mod common;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{
    basic_value, bcrypt_hash, generate_key, metric, poll_until, run, spawn_app, spawn_app_with_env,
    Gatekeeper, Key, Req, TestApp,
};

const HOST: &str = "api.test";
const SECRET: &str = "team-a-basic-s3cret";

/// Keys generated once per test binary, shared by every instance.
struct Keys {
    good: Key,
    revoked: Key,
    expired: Key,
    bystander: Key,
    suspended: Key,
    revoked_client: Key,
    limited: Key,
    resetting: Key,
    secret_hash: String,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys {
        good: generate_key(),
        revoked: generate_key(),
        expired: generate_key(),
        bystander: generate_key(),
        suspended: generate_key(),
        revoked_client: generate_key(),
        limited: generate_key(),
        resetting: generate_key(),
        secret_hash: bcrypt_hash(SECRET),
    })
}

fn route(id: &str, domain: &str, path: &str, methods: &str) -> String {
    format!(
        "[[route]]\nid = \"{id}\"\ndomain = \"{domain}\"\npath = \"{path}\"\nservice = \"test\"\n[route.methods]\n{methods}\n\n"
    )
}

fn client(id: &str, status: &str, extra: &str, key: &Key) -> String {
    format!(
        "[[client]]\nid = \"{id}\"\nname = \"Client {id}\"\nstatus = \"{status}\"\n{extra}\n{}",
        key.toml("active", None)
    )
}

fn grant(client: &str, route: &str, methods: &str, extra: &str) -> String {
    format!(
        "[[grant]]\nclient = \"{client}\"\nroute = \"{route}\"\nmethods = {methods}\n{extra}\n\n"
    )
}

/// One policy covering every case below.
fn policy() -> String {
    let k = keys();
    let mut t = String::new();
    t += &route("public", HOST, "/public/*", "GET = [\"public\"]");
    t += &route("admin", HOST, "/admin/*", "GET = [\"api_key\"]");
    let data_methods = "GET = [\"api_key\"]\nPOST = [\"api_key\"]\nDELETE = [\"api_key\"]";
    t += &route("data", HOST, "/data/*", data_methods);
    t += &route("basic-only", HOST, "/basic/*", "GET = [\"basic\"]");
    t += &route("llm", HOST, "/v1/*", "POST = [\"api_key\"]");
    t += &route("exact", "shop.test", "/where", "GET = [\"public\"]");
    t += &route("wild", "*.shop.test", "/where", "GET = [\"public\"]");
    t += &route("any", "*", "/where", "GET = [\"public\"]");
    let hash = format!("limit = \"1000/1m\"\nsecret_hash = \"{}\"", k.secret_hash);
    t += &client("team-a", "active", &hash, &k.good);
    t += &k.revoked.toml("revoked", None);
    t += &k.expired.toml("active", Some("2020-01-01T00:00:00Z"));
    t += &client("bystander", "active", "", &k.bystander);
    t += &client("suspended", "suspended", "", &k.suspended);
    t += &client("gone", "revoked", "", &k.revoked_client);
    t += &client("limited", "active", "", &k.limited);
    t += &client("resetting", "active", "", &k.resetting);
    t += &grant("team-a", "data", "[\"GET\", \"POST\"]", "");
    t += &grant("team-a", "admin", "[\"GET\"]", "");
    t += &grant("team-a", "basic-only", "[\"GET\"]", "");
    t += &grant("team-a", "llm", "[\"POST\"]", "models = [\"llama3*\"]");
    for c in ["suspended", "gone"] {
        t += &grant(c, "data", "[\"GET\"]", "");
    }
    t += &grant("limited", "data", "[\"GET\"]", "limit = \"3/1m\"");
    t += &grant("resetting", "data", "[\"GET\"]", "limit = \"2/2s\"");
    t
}

fn start() -> TestApp {
    spawn_app(&policy())
}

/// The real binary, for a test that counts on `/metrics` what every App of
/// this test binary would add to.
fn start_process() -> Gatekeeper {
    Gatekeeper::start(&policy())
}

fn get(path: &str) -> Req {
    Req::get(path).host(HOST)
}

#[track_caller]
fn assert_deny(r: &common::Response, status: u16, auth_status: u16, reason: &str) {
    assert_eq!(
        (r.status, r.auth_status(), r.reason()),
        (status, auth_status, reason),
        "{r:?}"
    );
    assert!(r.body.is_empty(), "a deny has an empty body");
}

// ── Allow ───────────────────────────────────────────────────────────────────

#[test]
fn a_public_route_is_allowed_without_identity_headers() {
    let gk = start();
    let r = gk.send(&get("/public/readme"));
    assert_eq!(
        (r.status, r.reason(), r.route()),
        (200, "no_auth_required", "public")
    );
    for name in [
        "x-auth-client-id",
        "x-auth-client-name",
        "x-auth-key-id",
        "x-ratelimit-limit",
    ] {
        assert!(r.header(name).is_none(), "{name} on a public allow: {r:?}");
    }
}

#[test]
fn a_public_method_ignores_even_a_bad_credential() {
    let gk = start();
    let r = gk.send(&get("/public/readme").bearer("gk_garbage"));
    assert_eq!((r.status, r.reason()), (200, "no_auth_required"), "{r:?}");
}

#[test]
fn a_key_with_permission_is_allowed_with_identity_and_rate_headers() {
    let gk = start();
    let k = &keys().good;
    let r = gk.send(&get("/data/items").bearer(&k.key));
    assert_eq!(
        (r.status, r.reason(), r.route()),
        (200, "authenticated", "data")
    );
    assert_eq!(r.header("x-auth-client-id"), Some("team-a"));
    assert_eq!(r.header("x-auth-client-name"), Some("Client team-a"));
    assert_eq!(r.header("x-auth-key-id"), Some(k.id.as_str()));
    assert_eq!(r.num("x-ratelimit-limit"), 1000);
    assert_eq!(r.num("x-ratelimit-remaining"), 999);
    r.num("x-ratelimit-reset");
}

#[test]
fn allow_and_deny_responses_have_empty_bodies() {
    let gk = start();
    let allowed = gk.send(&get("/data/x").bearer(&keys().good.key));
    let unauthorized = gk.send(&get("/data/x"));
    let forbidden = gk.send(&get("/nowhere"));
    assert_eq!(
        [allowed.status, unauthorized.status, forbidden.status],
        [200, 401, 403]
    );
    for r in [allowed, unauthorized, forbidden] {
        assert!(r.body.is_empty(), "{r:?}");
    }
}

// ── Credentials ─────────────────────────────────────────────────────────────

#[test]
fn a_key_without_a_grant_on_the_route_is_forbidden() {
    let gk = start();
    let r = gk.send(&get("/data/x").bearer(&keys().bystander.key));
    assert_deny(&r, 403, 403, "no_permission");
}

#[test]
fn a_wrong_key_is_unauthorized_with_a_challenge() {
    let gk = start();
    let r = gk.send(&get("/data/x").bearer("not-a-key-we-know"));
    assert_deny(&r, 401, 401, "invalid_credentials");
    assert!(
        r.header("www-authenticate").is_some_and(|v| !v.is_empty()),
        "{r:?}"
    );
}

#[test]
fn a_gk_key_with_a_typo_is_unauthorized() {
    let gk = start();
    let key = &keys().good.key;
    let last = key.len() - 1;
    let typo = format!(
        "{}{}",
        &key[..last],
        if key.ends_with('A') { 'B' } else { 'A' }
    );
    let r = gk.send(&get("/data/x").bearer(&typo));
    assert_deny(&r, 401, 401, "invalid_credentials");
}

#[test]
fn no_credential_is_unauthorized_as_missing() {
    let gk = start();
    let r = gk.send(&get("/data/x"));
    assert_deny(&r, 401, 401, "missing_credentials");
    assert!(r.header("www-authenticate").is_some(), "{r:?}");
}

#[test]
fn a_suspended_client_is_forbidden() {
    let gk = start();
    let r = gk.send(&get("/data/x").bearer(&keys().suspended.key));
    assert_deny(&r, 403, 403, "client_suspended");
}

#[test]
fn a_revoked_client_is_forbidden() {
    let gk = start();
    let r = gk.send(&get("/data/x").bearer(&keys().revoked_client.key));
    assert_deny(&r, 403, 403, "client_revoked");
}

#[test]
fn a_revoked_key_is_unauthorized() {
    let gk = start();
    let r = gk.send(&get("/data/x").bearer(&keys().revoked.key));
    assert_deny(&r, 401, 401, "key_revoked");
}

#[test]
fn an_expired_key_is_unauthorized() {
    let gk = start();
    let r = gk.send(&get("/data/x").bearer(&keys().expired.key));
    assert_deny(&r, 401, 401, "key_expired");
}

#[test]
fn every_key_form_is_accepted_x_api_key_apikey_bare_and_lower_case_bearer() {
    let gk = start();
    let key = &keys().good.key;
    let forms = [
        ("X-API-Key", key.clone()),
        ("Authorization", format!("ApiKey {key}")),
        ("Authorization", format!("bearer {key}")),
        ("Authorization", key.clone()),
    ];
    for (name, value) in forms {
        let r = gk.send(&get("/data/x").header(name, &value));
        assert_eq!(
            (r.status, r.reason()),
            (200, "authenticated"),
            "{name}: {r:?}"
        );
    }
}

#[test]
fn an_api_key_on_a_basic_only_method_is_refused_as_the_wrong_type() {
    let gk = start();
    let r = gk.send(&get("/basic/x").bearer(&keys().good.key));
    assert_deny(&r, 401, 401, "credential_type_not_allowed");
    let challenge = r.header("www-authenticate").unwrap_or("");
    assert!(challenge.to_ascii_lowercase().contains("basic"), "{r:?}");
}

#[test]
fn basic_on_an_api_key_only_method_is_refused_as_the_wrong_type() {
    let gk = start();
    let r = gk.send(&get("/data/x").basic("team-a", SECRET));
    assert_deny(&r, 401, 401, "credential_type_not_allowed");
}

#[test]
fn basic_with_the_right_secret_is_allowed_without_a_key_id() {
    let gk = start();
    let r = gk.send(&get("/basic/x").basic("team-a", SECRET));
    assert_eq!(
        (r.status, r.reason(), r.route()),
        (200, "authenticated", "basic-only")
    );
    assert_eq!(r.header("x-auth-client-id"), Some("team-a"));
    assert!(r.header("x-auth-key-id").is_none(), "{r:?}");
}

#[test]
fn basic_with_a_wrong_secret_is_unauthorized() {
    let gk = start();
    let r = gk.send(&get("/basic/x").basic("team-a", "not-the-secret"));
    assert_deny(&r, 401, 401, "invalid_credentials");
}

#[test]
fn twenty_basic_requests_with_the_right_secret_run_bcrypt_once() {
    let gk = start_process();
    let before = metric(&gk.metrics(), "gatekeeper_bcrypt_verifications_total", &[]);
    for _ in 0..20 {
        assert_eq!(
            gk.send(&get("/basic/x").basic("team-a", SECRET)).status,
            200
        );
    }
    let after = metric(&gk.metrics(), "gatekeeper_bcrypt_verifications_total", &[]);
    assert_eq!(after - before, 1.0);
}

/// A cold credential arriving 100 times at once (a client's burst after a
/// deploy) costs one bcrypt: concurrent misses wait for the first.
#[test]
fn a_hundred_concurrent_requests_with_a_cold_basic_credential_run_bcrypt_once() {
    let gk = start_process();
    let before = metric(&gk.metrics(), "gatekeeper_bcrypt_verifications_total", &[]);
    let barrier = std::sync::Barrier::new(100);
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..100)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    gk.send(&get("/basic/x").basic("team-a", SECRET)).status
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let after = metric(&gk.metrics(), "gatekeeper_bcrypt_verifications_total", &[]);
    assert_eq!(
        after - before,
        1.0,
        "bcrypt runs for 100 concurrent cold requests"
    );
}

#[test]
fn a_bad_authorization_header_does_not_fall_through_to_a_good_x_api_key() {
    let gk = start();
    let req = get("/data/x")
        .bearer("wrong-key")
        .header("X-API-Key", &keys().good.key);
    assert_deny(&gk.send(&req), 401, 401, "invalid_credentials");
}

#[test]
fn a_good_authorization_header_wins_over_a_bad_x_api_key() {
    let gk = start();
    let req = get("/data/x")
        .bearer(&keys().good.key)
        .header("X-API-Key", "wrong-key");
    assert_eq!(gk.send(&req).status, 200);
}

#[test]
fn the_query_key_is_not_a_credential_by_default() {
    let gk = start();
    let uri = format!("/data/x?api_key={}", keys().good.key);
    assert_deny(&gk.send(&get(&uri)), 401, 401, "missing_credentials");
}

#[test]
fn the_query_key_is_accepted_when_enabled() {
    let gk = spawn_app_with_env(&policy(), &[("GATEKEEPER_ALLOW_QUERY_KEY", "true")]);
    let uri = format!("/data/x?api_key={}", keys().good.key);
    let r = gk.send(&get(&uri));
    assert_eq!((r.status, r.reason()), (200, "authenticated"), "{r:?}");
}

// ── Routes and methods ──────────────────────────────────────────────────────

#[test]
fn a_method_without_a_rule_is_forbidden_as_not_configured() {
    let gk = start();
    let r = gk.send(
        &Req::new("PUT", "/data/x")
            .host(HOST)
            .bearer(&keys().good.key),
    );
    assert_deny(&r, 403, 403, "method_not_configured");
}

#[test]
fn a_method_the_grant_lacks_is_forbidden() {
    let gk = start();
    let r = gk.send(
        &Req::new("DELETE", "/data/x")
            .host(HOST)
            .bearer(&keys().good.key),
    );
    assert_deny(&r, 403, 403, "method_not_allowed");
}

#[test]
fn a_path_no_route_covers_is_forbidden_as_no_route_match() {
    let gk = start();
    let r = gk.send(&get("/elsewhere").bearer(&keys().good.key));
    assert_deny(&r, 403, 403, "no_route_match");
}

#[test]
fn the_most_specific_domain_wins_exact_then_wildcard_then_any() {
    let gk = start();
    let cases = [
        (Some("shop.test"), "exact"),
        (Some("a.shop.test"), "wild"),
        (Some("a.b.shop.test"), "wild"),
        (Some("other.test"), "any"),
        (Some("xshop.test"), "any"),
        (Some(""), "any"),
        (None, "any"),
    ];
    for (host, expected) in cases {
        let req = Req::get("/where");
        let req = match host {
            Some(h) => req.host(h),
            None => req,
        };
        let r = gk.send(&req);
        assert_eq!((r.status, r.route()), (200, expected), "host {host:?}");
    }
}

#[test]
fn the_host_is_matched_without_its_port_case_or_trailing_dot() {
    let gk = start();
    for host in [
        "SHOP.TEST",
        "shop.test:8443",
        "Shop.Test.:443",
        "A.Shop.TEST:80",
    ] {
        let r = gk.send(&Req::get("/where").host(host));
        let expected = if host.starts_with('A') {
            "wild"
        } else {
            "exact"
        };
        assert_eq!((r.status, r.route()), (200, expected), "host {host}");
    }
}

#[test]
fn a_host_that_is_not_a_dns_name_is_a_bad_request() {
    let gk = start();
    for host in ["shop.test..", "shop.test:port", "sh op.test"] {
        assert_deny(
            &gk.send(&Req::get("/where").host(host)),
            403,
            400,
            "bad_request",
        );
    }
}

#[test]
fn missing_original_method_or_uri_is_a_bad_request() {
    let gk = start();
    let no_method = get("/public/x").without("X-Original-Method");
    let no_uri = get("/public/x").without("X-Original-URI");
    for req in [no_method, no_uri] {
        assert_deny(&gk.send(&req), 403, 400, "bad_request");
    }
}

/// `(X-Original-URI, X-Original-Path, status, X-Auth-Status, reason, route)`;
/// every request carries the good key, so an allow shows where it landed.
type PathCase = (
    &'static str,
    Option<&'static str>,
    u16,
    u16,
    &'static str,
    &'static str,
);

const PATHS: &[PathCase] = &[
    ("/public/readme", None, 200, 0, "no_auth_required", "public"),
    ("/public/a/../b", None, 200, 0, "no_auth_required", "public"),
    ("//public///./b", None, 200, 0, "no_auth_required", "public"),
    (
        "/public/x?q=%2e%2e%2F",
        None,
        200,
        0,
        "no_auth_required",
        "public",
    ),
    (
        "/public/caf%C3%A9",
        None,
        200,
        0,
        "no_auth_required",
        "public",
    ),
    ("/public/../admin", None, 200, 0, "authenticated", "admin"),
    (
        "/public/../admin",
        Some("/admin"),
        200,
        0,
        "authenticated",
        "admin",
    ),
    ("/publicx", None, 403, 403, "no_route_match", ""),
    ("/Public/readme", None, 403, 403, "no_route_match", ""),
    ("/public/%2e%2e/admin", None, 403, 400, "ambiguous_path", ""),
    ("/public/%2E%2e/admin", None, 403, 400, "ambiguous_path", ""),
    ("/public/.%2e/admin", None, 403, 400, "ambiguous_path", ""),
    ("/public%2Fadmin", None, 403, 400, "ambiguous_path", ""),
    ("/public%2fadmin", None, 403, 400, "ambiguous_path", ""),
    (
        "/public/%5c..%5cadmin",
        None,
        403,
        400,
        "ambiguous_path",
        "",
    ),
    ("/public\\..\\admin", None, 403, 400, "ambiguous_path", ""),
    ("/public;/../admin", None, 403, 400, "ambiguous_path", ""),
    ("/public/x%3b", None, 403, 400, "ambiguous_path", ""),
    ("/public/x%00", None, 403, 400, "ambiguous_path", ""),
    (
        "/public/%c0%ae%c0%ae/admin",
        None,
        403,
        400,
        "ambiguous_path",
        "",
    ),
    (
        "/public/%252e%252e/admin",
        None,
        403,
        400,
        "ambiguous_path",
        "",
    ),
    ("/..", None, 403, 400, "ambiguous_path", ""),
    ("/public/../../admin", None, 403, 400, "ambiguous_path", ""),
    ("/public/x", Some("/admin"), 403, 400, "ambiguous_path", ""),
    ("/public/%zz", None, 403, 400, "bad_request", ""),
    ("/public/%2", None, 403, 400, "bad_request", ""),
    ("/public/x%", None, 403, 400, "bad_request", ""),
    ("/public/%u002e", None, 403, 400, "bad_request", ""),
    ("public/x", None, 403, 400, "bad_request", ""),
];

#[test]
fn the_path_confusion_table_holds_over_http() {
    let gk = start();
    let key = &keys().good.key;
    let mut failures = Vec::new();
    for &(uri, path, status, auth_status, reason, route) in PATHS {
        let mut req = get(uri).bearer(key);
        if let Some(p) = path {
            req = req.header("X-Original-Path", p);
        }
        let r = gk.send(&req);
        let got = (r.status, r.auth_status(), r.reason(), r.route());
        if got != (status, auth_status, reason, route) {
            failures.push(format!("{uri} (path {path:?}): got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

// ── Limits ──────────────────────────────────────────────────────────────────

#[test]
fn a_three_per_minute_grant_admits_three_then_refuses_with_retry_after() {
    let gk = start();
    let req = get("/data/x").bearer(&keys().limited.key);
    let remaining: Vec<u64> = (0..3)
        .map(|_| {
            let r = gk.send(&req);
            assert_eq!((r.status, r.num("x-ratelimit-limit")), (200, 3), "{r:?}");
            r.num("x-ratelimit-remaining")
        })
        .collect();
    assert_eq!(remaining, [2, 1, 0]);
    let r = gk.send(&req);
    assert_deny(&r, 403, 429, "rate_limited");
    assert!(r.num("retry-after") >= 1, "{r:?}");
}

#[test]
fn a_limited_client_is_admitted_again_after_retry_after_but_not_before() {
    let gk = start();
    let req = get("/data/x").bearer(&keys().resetting.key);
    assert_eq!([gk.send(&req).status, gk.send(&req).status], [200, 200]);
    let denied = gk.send(&req);
    let refused_at = Instant::now();
    assert_deny(&denied, 403, 429, "rate_limited");
    let retry_after = denied.num("retry-after");
    assert!(retry_after >= 1);
    let deadline = Duration::from_secs(retry_after + 1);
    assert!(
        poll_until(deadline, || gk.send(&req).status == 200),
        "never admitted again"
    );
    let waited = refused_at.elapsed();
    assert!(
        waited >= Duration::from_millis(500),
        "admitted again after only {waited:?}"
    );
}

// ── Models and bodies ───────────────────────────────────────────────────────

fn chat(model: &str) -> Req {
    Req::new("POST", "/v1/chat/completions")
        .host(HOST)
        .bearer(&keys().good.key)
        .body(format!("{{\"model\":\"{model}\",\"messages\":[]}}").as_bytes())
}

#[test]
fn an_allowed_model_passes_the_allow_list() {
    let gk = start();
    let r = gk.send(&chat("llama3:8b"));
    assert_eq!((r.status, r.route()), (200, "llm"), "{r:?}");
}

#[test]
fn a_model_outside_the_allow_list_is_forbidden() {
    let gk = start();
    assert_deny(&gk.send(&chat("gpt-4o")), 403, 403, "model_not_allowed");
}

#[test]
fn an_announced_body_that_was_not_forwarded_is_required() {
    let gk = start();
    let req = Req::new("POST", "/v1/chat/completions")
        .host(HOST)
        .bearer(&keys().good.key)
        .header("X-Original-Content-Length", "42");
    assert_deny(&gk.send(&req), 403, 400, "body_required");
}

// ── Operations surface ──────────────────────────────────────────────────────

#[test]
fn metrics_count_decisions_by_reason_and_route() {
    let gk = start_process();
    let no_route = [
        ("decision", "deny"),
        ("reason", "no_route_match"),
        ("route", "none"),
    ];
    let public = [
        ("decision", "allow"),
        ("reason", "no_auth_required"),
        ("route", "public"),
    ];
    let name = "gatekeeper_decisions_total";
    let before = gk.metrics();
    for _ in 0..3 {
        gk.send(&get("/nowhere"));
    }
    gk.send(&get("/public/x"));
    let after = gk.metrics();
    assert_eq!(
        metric(&after, name, &no_route) - metric(&before, name, &no_route),
        3.0
    );
    assert_eq!(
        metric(&after, name, &public) - metric(&before, name, &public),
        1.0
    );
    let first_bucket = "gatekeeper_decision_duration_seconds_bucket{le=\"0.00001\"}";
    assert!(after.contains(first_bucket), "{after}");
}

#[test]
fn readyz_reports_ready_with_the_policy_counts() {
    let gk = start();
    let ready = gk.readyz();
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["policy"]["routes"], 8);
    assert_eq!(ready["reload"]["rejected"], 0);
    assert_eq!(gk.admin_get("/livez").status, 200);
}

#[test]
fn check_accepts_a_valid_file_and_rejects_an_invalid_one_naming_the_place() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&good, policy()).unwrap();
    let broken = policy() + &grant("team-a", "no-such-route", "[\"GET\"]", "");
    std::fs::write(&bad, broken).unwrap();
    let ok = run(&["check", good.to_str().unwrap()], &[], None);
    assert_eq!(ok.status.code(), Some(0), "{ok:?}");
    let invalid = run(&["check", bad.to_str().unwrap()], &[], None);
    assert_eq!(invalid.status.code(), Some(65), "{invalid:?}");
    assert!(
        String::from_utf8_lossy(&invalid.stderr).contains("no-such-route"),
        "{invalid:?}"
    );
}

#[test]
fn serve_exits_64_naming_a_bad_listen_setting() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gatekeeper.toml");
    std::fs::write(&file, policy()).unwrap();
    let env = [("GATEKEEPER_LISTEN", "nowhere")];
    let out = run(&["serve", "--config", file.to_str().unwrap()], &env, None);
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("GATEKEEPER_LISTEN"),
        "{out:?}"
    );
}

#[test]
fn serve_exits_64_on_a_log_level_that_is_not_one() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gatekeeper.toml");
    std::fs::write(&file, policy()).unwrap();
    // `warning` is not a tracing level: it must not silently turn logs off.
    let env = [("GATEKEEPER_LOG_LEVEL", "warning")];
    let out = run(&["serve", "--config", file.to_str().unwrap()], &env, None);
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("GATEKEEPER_LOG_LEVEL"),
        "{out:?}"
    );
}

#[test]
fn serve_exits_64_when_the_staleness_bound_is_shorter_than_two_reloads() {
    let env = [
        (
            "GATEKEEPER_DATABASE_URL",
            "postgres://gk@127.0.0.1:1/never-reached",
        ),
        ("GATEKEEPER_MAX_STALENESS", "30s"),
        ("GATEKEEPER_DB_RELOAD_INTERVAL", "60s"),
    ];
    let out = run(&["serve"], &env, None);
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("GATEKEEPER_MAX_STALENESS"), "{stderr}");
}

#[test]
fn serve_warns_about_a_gatekeeper_variable_that_is_no_setting() {
    let gk = Gatekeeper::start_with_env(&policy(), &[("GATEKEEPER_LOG_LEVL", "debug")]);
    let warned = |gk: &Gatekeeper| {
        gk.logs().iter().any(|line| {
            line.contains("WARN")
                && line.contains("GATEKEEPER_LOG_LEVL")
                && line.contains("not a gatekeeper setting")
        })
    };
    assert!(
        poll_until(Duration::from_secs(5), || warned(&gk)),
        "{:?}",
        gk.logs()
    );
    let settings_reported = gk
        .logs()
        .iter()
        .filter(|l| l.contains("not a gatekeeper setting"))
        .count();
    assert_eq!(settings_reported, 1, "only the typo: {:?}", gk.logs());
}

#[test]
fn serve_exits_65_on_a_file_with_no_route_unless_that_is_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gatekeeper.toml");
    // What a truncated file looks like: valid, and serving nothing.
    std::fs::write(&file, "[[client]]\nid = \"x\"\nname = \"X\"\n").unwrap();
    let out = run(&["serve", "--config", file.to_str().unwrap()], &[], None);
    assert_eq!(out.status.code(), Some(65), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("GATEKEEPER_ALLOW_EMPTY_POLICY"),
        "{out:?}"
    );
    let toml = std::fs::read_to_string(&file).unwrap();
    let gk = Gatekeeper::start_with_env(&toml, &[("GATEKEEPER_ALLOW_EMPTY_POLICY", "true")]);
    assert_eq!(gk.send(&Req::get("/v1/x")).reason(), "no_route_match");
}

#[test]
fn serve_exits_65_on_an_invalid_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gatekeeper.toml");
    std::fs::write(&file, "[[route]]\nid = \"x\"\n").unwrap();
    let out = run(&["serve", "--config", file.to_str().unwrap()], &[], None);
    assert_eq!(out.status.code(), Some(65), "{out:?}");
}

#[test]
fn neither_the_key_nor_the_basic_secret_appears_in_logs_or_metrics() {
    let gk = Gatekeeper::start_with_env(&policy(), &[("GATEKEEPER_LOG_LEVEL", "debug")]);
    let key = &keys().good.key;
    let wrong_key = format!("{key}x");
    let requests = [
        get("/data/x").bearer(key),
        get("/data/x").bearer(&wrong_key),
        get("/basic/x").basic("team-a", SECRET),
        get("/basic/x").basic("team-a", &format!("{SECRET}!")),
        get("/data/x").header("X-API-Key", key),
    ];
    for req in &requests {
        gk.send(req);
    }
    let denies_logged = || {
        gk.logs()
            .iter()
            .filter(|l| l.contains("\"decision\""))
            .count()
            >= 5
    };
    assert!(
        poll_until(Duration::from_secs(5), denies_logged),
        "{:#?}",
        gk.logs()
    );
    let everything = gk.logs().join("\n") + &gk.metrics();
    let secret_part = key.rsplit('_').next().unwrap();
    let basic_token = basic_value("team-a", SECRET);
    let basic_token = basic_token.trim_start_matches("Basic ");
    for needle in [key.as_str(), secret_part, SECRET, basic_token] {
        assert!(
            !everything.contains(needle),
            "a credential leaked: {needle}"
        );
    }
}

// ── The listener ────────────────────────────────────────────────────────────

#[test]
fn only_authz_by_get_post_or_head_is_answered_anything_else_is_not_found() {
    let gk = start();
    let bearer = format!("Bearer {}", keys().good.key);
    let headers: [(&str, &[u8]); 4] = [
        ("X-Original-Method", b"GET"),
        ("X-Original-URI", b"/data/x"),
        ("X-Original-Host", HOST.as_bytes()),
        ("Authorization", bearer.as_bytes()),
    ];
    let ask = |method: &str, target: &str| {
        let r = common::http(gk.authz_addr, method, target, &headers, None).unwrap();
        (r.status, r.header("x-auth-reason").map(str::to_owned))
    };
    for method in ["GET", "POST", "HEAD"] {
        let (status, reason) = ask(method, "/authz");
        assert_eq!(status, 200, "{method} /authz");
        assert_eq!(reason.as_deref(), Some("authenticated"), "{method} /authz");
    }
    for (method, target) in [
        ("GET", "/"),
        ("GET", "/authz/"),
        ("GET", "/authz/x"),
        ("GET", "/AUTHZ"),
        ("PUT", "/authz"),
        ("DELETE", "/authz"),
        ("OPTIONS", "/authz"),
    ] {
        assert_eq!(ask(method, target), (404, None), "{method} {target}");
    }
}

#[test]
fn authz_listens_on_a_unix_socket() {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gatekeeper.toml");
    std::fs::write(&config, policy()).unwrap();
    let socket = dir.path().join("authz.sock");
    let listen = format!("unix:{}", socket.display());
    let mut child = common::gatekeeper_command(&[("GATEKEEPER_LISTEN", listen.as_str())])
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let ask = |key: &str| -> Option<String> {
        let mut s = UnixStream::connect(&socket).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let request = format!(
            "GET /authz HTTP/1.1\r\nHost: gatekeeper\r\nX-Original-Method: GET\r\n\
             X-Original-URI: /data/x\r\nX-Original-Host: {HOST}\r\n\
             Authorization: Bearer {key}\r\nConnection: close\r\n\r\n"
        );
        s.write_all(request.as_bytes()).ok()?;
        let mut answer = String::new();
        s.read_to_string(&mut answer).ok()?;
        Some(answer)
    };
    let connected = poll_until(Duration::from_secs(10), || ask(&keys().good.key).is_some());
    let allowed = ask(&keys().good.key).unwrap_or_default();
    let refused = ask(&generate_key().key).unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();
    assert!(connected, "no answer on {}", socket.display());
    assert!(allowed.starts_with("HTTP/1.1 200"), "{allowed}");
    assert!(
        allowed
            .to_ascii_lowercase()
            .contains("x-auth-client-id: team-a"),
        "{allowed}"
    );
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
}
