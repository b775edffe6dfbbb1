//! Redis as the state replicas share (DESIGN §2, §5, §6, §10), against the
//! real binary and the real Redis, each test in a key prefix of its own:
//! one rate limit across replicas, a `Retry-After` that tells the truth,
//! the failed-credential throttle, HMAC nonces and the logical database.
//! The second-level credential cache is in `redis_keys.rs`.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::hmac::{OPS_POLICY, OPS_SECRET};
use common::redis::TestRedis;
use common::{bcrypt_hash, metric, Gatekeeper, Key, Req, Response};

// ── Harness ─────────────────────────────────────────────────────────────────

/// A checksum-valid `gk_` key, made in process (a thousand CLI runs would
/// dominate the brute-force tests).
fn new_key() -> Key {
    let g = gatekeeper::core::apikey::generate().expect("a key");
    Key {
        key: g.key.expose().to_owned(),
        id: g.public_id,
        digest: format!("sha256:{}", hex::encode(g.digest.0)),
    }
}

fn route(id: &str, path: &str, methods: &str) -> String {
    format!(
        "[[route]]\nid = \"{id}\"\ndomain = \"*\"\npath = \"{path}\"\nservice = \"test\"\n[route.methods]\n{methods}\n\n"
    )
}

fn client(id: &str, extra: &str, keys: &[(&Key, &str)]) -> String {
    let mut t = format!("[[client]]\nid = \"{id}\"\nname = \"Client {id}\"\n{extra}\n\n");
    for (key, status) in keys {
        t += &key.toml(status, None);
    }
    t
}

fn grant(client: &str, route: &str, methods: &str, extra: &str) -> String {
    format!(
        "[[grant]]\nclient = \"{client}\"\nroute = \"{route}\"\nmethods = {methods}\n{extra}\n\n"
    )
}

/// `POST /v1/*` with an API key, the route most tests use.
fn chat_policy(client_extra: &str, grant_extra: &str, key: &Key) -> String {
    route("chat", "/v1/*", "POST = [\"api_key\"]")
        + &client("team", client_extra, &[(key, "active")])
        + &grant("team", "chat", "[\"POST\"]", grant_extra)
}

/// A file-mode instance, sharing `redis` when given.
fn start(policy: &str, redis: Option<&TestRedis>, extra: &[(&str, &str)]) -> Gatekeeper {
    let owned = redis.map(TestRedis::env).unwrap_or_default();
    let mut env: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.extend_from_slice(extra);
    Gatekeeper::start_with_env(policy, &env)
}

fn chat_req(key: &str) -> Req {
    Req::new("POST", "/v1/chat/completions").bearer(key)
}

fn chat(gk: &Gatekeeper, key: &str) -> Response {
    gk.send(&chat_req(key))
}

#[track_caller]
fn assert_rate_limited(r: &Response) {
    assert_eq!(
        (r.status, r.auth_status(), r.reason()),
        (403, 429, "rate_limited"),
        "{r:?}"
    );
    assert!(r.num("retry-after") >= 1, "{r:?}");
}

fn counter(gk: &Gatekeeper, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric(&gk.metrics(), name, labels)
}

fn sleep_until(t: Instant) {
    std::thread::sleep(t.saturating_duration_since(Instant::now()));
}

// ── Shared rate limits ──────────────────────────────────────────────────────

#[test]
fn two_replicas_sharing_redis_admit_the_client_limit_once_between_them() {
    let redis = TestRedis::new();
    let key = new_key();
    let policy = chat_policy("limit = \"100/1m\"", "", &key);
    let replicas = [
        start(&policy, Some(&redis), &[]),
        start(&policy, Some(&redis), &[]),
    ];
    let admitted = [AtomicUsize::new(0), AtomicUsize::new(0)];
    let started = Instant::now();
    std::thread::scope(|s| {
        for thread in 0..4 {
            let (replicas, admitted, key) = (&replicas, &admitted, &key);
            s.spawn(move || {
                for i in 0..75 {
                    let which = (thread + i) % 2;
                    let r = chat(&replicas[which], &key.key);
                    if r.status == 200 {
                        admitted[which].fetch_add(1, Ordering::Relaxed);
                    } else {
                        assert_rate_limited(&r);
                    }
                }
            });
        }
    });
    let elapsed = started.elapsed();
    let per_replica = admitted.map(AtomicUsize::into_inner);
    let total = per_replica[0] + per_replica[1];
    // 100 back to back, then one every 0.6 s: a slow run may see refills.
    let refills = (elapsed.as_millis() / 600) as usize;
    assert!(
        (99..=101 + refills).contains(&total),
        "admitted {per_replica:?} of 300 in {elapsed:?}; in-process limits would admit 200"
    );
    assert!(per_replica.iter().all(|n| *n > 0), "{per_replica:?}");
}

#[test]
fn retry_after_says_when_the_next_request_is_admitted_on_any_replica() {
    let redis = TestRedis::new();
    let key = new_key();
    let policy = chat_policy("", "limit = \"2/4s\"", &key);
    let (a, b) = (
        start(&policy, Some(&redis), &[]),
        start(&policy, Some(&redis), &[]),
    );
    for _ in 0..2 {
        assert_eq!(chat(&a, &key.key).status, 200);
    }
    let refused = chat(&b, &key.key);
    let refused_at = Instant::now();
    assert_rate_limited(&refused);
    let retry = refused.num("retry-after");
    assert_eq!(
        retry, 2,
        "2/4s admits one request every 2 s after the burst"
    );
    let retry = Duration::from_secs(retry);

    sleep_until(refused_at + retry - Duration::from_millis(500));
    let early = chat(&a, &key.key);
    assert_rate_limited(&early);
    assert_eq!(early.num("retry-after"), 1, "{early:?}");

    sleep_until(refused_at + retry + Duration::from_millis(150));
    let r = chat(&b, &key.key);
    assert_eq!(r.status, 200, "admitted once Retry-After has passed: {r:?}");
}

#[test]
fn requests_denied_before_the_limit_check_consume_no_quota() {
    let redis = TestRedis::new();
    let (good, revoked) = (new_key(), new_key());
    let data = "GET = [\"api_key\"]\nPOST = [\"api_key\"]";
    let policy = route("data", "/data/*", data)
        + &route("other", "/other/*", "GET = [\"api_key\"]")
        + &client(
            "metered",
            "limit = \"3/1h\"",
            &[(&good, "active"), (&revoked, "revoked")],
        )
        + &grant("metered", "data", "[\"GET\"]", "limit = \"3/1h\"");
    let gk = start(&policy, Some(&redis), &[]);
    let wrong = new_key();
    let denied = [
        ("GET", "/data/x", &revoked.key, "key_revoked"),
        ("GET", "/data/x", &wrong.key, "invalid_credentials"),
        ("GET", "/other/x", &good.key, "no_permission"),
        ("POST", "/data/x", &good.key, "method_not_allowed"),
        ("DELETE", "/data/x", &good.key, "method_not_configured"),
    ];
    for (method, uri, key, reason) in denied {
        let req = Req::new(method, uri)
            .bearer(key)
            .header("X-Real-IP", "10.9.8.1");
        for _ in 0..4 {
            assert_eq!(gk.send(&req).reason(), reason);
        }
    }
    for limit in ["rl:c:*", "rl:g:*"] {
        assert_eq!(redis.keys(limit), Vec::<String>::new(), "nothing charged");
    }
    for remaining in [2, 1, 0] {
        let r = gk.send(&Req::get("/data/x").bearer(&good.key));
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.num("x-ratelimit-remaining"), remaining);
    }
    assert_rate_limited(&gk.send(&Req::get("/data/x").bearer(&good.key)));
}

#[test]
fn the_logical_database_in_the_url_is_honoured() {
    let redis = TestRedis::in_db(5);
    let key = new_key();
    let gk = start(
        &chat_policy("limit = \"10/1m\"", "", &key),
        Some(&redis),
        &[],
    );
    let r = chat(&gk, &key.key);
    assert_eq!((r.status, r.num("x-ratelimit-limit")), (200, 10));
    let state = format!("{}rl:c:team#10/60000000000ns/10", redis.prefix);
    assert_eq!(redis.keys_in_db(5, "rl:c:team#*"), vec![state]);
    assert_eq!(
        redis.keys_in_db(0, "*"),
        Vec::<String>::new(),
        "nothing in db 0"
    );
}

// ── Failed-credential throttle ──────────────────────────────────────────────

const ATTACKER: &str = "10.9.9.9";
const BYSTANDER: &str = "10.9.9.10";

/// A thousand wrong keys from one address: the first ~20 are verified,
/// the rest refused unverified, while another address is unaffected.
fn a_thousand_wrong_keys_are_throttled(redis: Option<&TestRedis>) {
    let good = new_key();
    let gk = start(&chat_policy("", "", &good), redis, &[]);
    let checks = || {
        counter(
            &gk,
            "gatekeeper_credential_checks_total",
            &[("type", "api_key")],
        )
    };
    let before = checks();
    let (mut verified, mut throttled, mut good_uses) = (0, 0, 0);
    for i in 0..1000 {
        let r = gk.send(&chat_req(&new_key().key).header("X-Real-IP", ATTACKER));
        match r.reason() {
            "invalid_credentials" => verified += 1,
            _ => {
                assert_rate_limited(&r);
                throttled += 1;
            }
        }
        if i % 50 == 0 {
            let ok = gk.send(&chat_req(&good.key).header("X-Real-IP", BYSTANDER));
            assert_eq!(ok.status, 200, "another address is not throttled: {ok:?}");
            good_uses += 1;
        }
    }
    let work = checks() - before - f64::from(good_uses);
    assert!(work <= 25.0, "{work} wrong keys verified");
    assert!(
        (20..=25).contains(&verified),
        "{verified} answered invalid_credentials"
    );
    assert_eq!(verified + throttled, 1000);
    let refused = counter(&gk, "gatekeeper_failed_auth_throttled_total", &[]);
    assert!(refused >= f64::from(throttled), "{refused} < {throttled}");
    let other = gk.send(&chat_req(&new_key().key).header("X-Real-IP", BYSTANDER));
    assert_eq!(other.reason(), "invalid_credentials");
}

#[test]
fn brute_force_from_one_address_is_throttled_through_redis() {
    let redis = TestRedis::new();
    a_thousand_wrong_keys_are_throttled(Some(&redis));
    assert!(
        !redis.keys(&format!("rl:f:{ATTACKER}#*")).is_empty(),
        "counted in Redis"
    );
}

#[test]
fn brute_force_from_one_address_is_throttled_in_process_without_redis() {
    a_thousand_wrong_keys_are_throttled(None);
}

#[test]
fn wrong_basic_secrets_from_one_address_run_bcrypt_at_most_twenty_one_times() {
    const SECRET: &str = "right-basic-secret";
    let redis = TestRedis::new();
    let hash = format!("secret_hash = \"{}\"", bcrypt_hash(SECRET));
    let policy = route("basic", "/basic/*", "GET = [\"basic\"]")
        + &client("app", &hash, &[])
        + &grant("app", "basic", "[\"GET\"]", "");
    let gk = start(&policy, Some(&redis), &[]);
    let bcrypt = || counter(&gk, "gatekeeper_bcrypt_verifications_total", &[]);
    let before = bcrypt();
    for i in 0..100 {
        let wrong = Req::get("/basic/x")
            .basic("app", &format!("guess-{i}"))
            .header("X-Real-IP", "10.9.9.11");
        let r = gk.send(&wrong);
        if r.reason() != "invalid_credentials" {
            assert_rate_limited(&r);
        }
    }
    let work = bcrypt() - before;
    assert!(
        work <= 21.0,
        "bcrypt ran {work} times for 100 wrong secrets"
    );
    let right = Req::get("/basic/x")
        .basic("app", SECRET)
        .header("X-Real-IP", "10.9.9.12");
    assert_eq!(gk.send(&right).status, 200);
}

#[test]
fn replicas_sharing_redis_count_failures_together() {
    let redis = TestRedis::new();
    let good = new_key();
    let policy = chat_policy("", "", &good);
    let replicas = [
        start(&policy, Some(&redis), &[]),
        start(&policy, Some(&redis), &[]),
    ];
    let mut throttled_by = [0, 0];
    for i in 0..60 {
        let r = replicas[i % 2].send(&chat_req(&new_key().key).header("X-Real-IP", ATTACKER));
        if r.reason() != "invalid_credentials" {
            assert_rate_limited(&r);
            throttled_by[i % 2] += 1;
        }
    }
    let checks: f64 = replicas
        .iter()
        .map(|gk| {
            counter(
                gk,
                "gatekeeper_credential_checks_total",
                &[("type", "api_key")],
            )
        })
        .sum();
    assert!(
        checks <= 25.0,
        "{checks} keys verified; counted apart, each replica would verify 20"
    );
    assert!(throttled_by.iter().all(|n| *n > 10), "{throttled_by:?}");
}

#[test]
fn ipv6_failures_count_per_64_bit_prefix() {
    let redis = TestRedis::new();
    let good = new_key();
    let gk = start(&chat_policy("", "", &good), Some(&redis), &[]);
    let hosts = ["2001:db8:1:2::1", "2001:db8:1:2:ffff::9"];
    let mut verified = 0;
    for i in 0..40 {
        let r = gk.send(&chat_req(&new_key().key).header("X-Real-IP", hosts[i % 2]));
        if r.reason() == "invalid_credentials" {
            verified += 1;
        } else {
            assert_rate_limited(&r);
        }
    }
    assert!(verified <= 21, "{verified} verified: one /64 is one source");
    let elsewhere = chat_req(&new_key().key).header("X-Real-IP", "2001:db8:1:3::1");
    assert_eq!(gk.send(&elsewhere).reason(), "invalid_credentials");
}

// ── HMAC nonces ─────────────────────────────────────────────────────────────

/// The `Authorization` value `gatekeeper sign` prints for a GET of `path`.
fn sign(path: &str, nonce: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    common::hmac::sign(dir.path(), "GET", path, b"", common::hmac::now(), nonce)
}

#[test]
fn a_signed_request_accepted_by_one_replica_is_a_replay_on_another() {
    let redis = TestRedis::new();
    let env = [("OPS_SECRET", OPS_SECRET)];
    let (a, b) = (
        start(OPS_POLICY, Some(&redis), &env),
        start(OPS_POLICY, Some(&redis), &env),
    );
    let auth = sign("/api/tags", "replica-nonce-1");
    let signed = Req::get("/api/tags").header("Authorization", &auth);
    let first = a.send(&signed);
    assert_eq!(first.status, 200, "{first:?}");
    let replay = b.send(&signed);
    assert_eq!((replay.status, replay.reason()), (401, "replayed_request"));
    let nonces = redis.keys("nonce:*");
    assert_eq!(nonces.len(), 1, "{nonces:?}");
    let ttl = redis.ttl_of(&nonces[0]);
    // The timestamp is accepted through the last second of its window; the
    // nonce outlives that second (a truncated clock, Redis's own count).
    assert!(
        (300..=302).contains(&ttl),
        "a nonce lives as long as its window and two seconds: {ttl}"
    );
    assert!(
        !nonces[0].contains("replica-nonce-1"),
        "the nonce is hashed"
    );
}
