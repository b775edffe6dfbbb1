//! Whole decisions, in process, with a clock the test moves.

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::throttle::bucket as throttle_key;
use super::*;
use crate::core::decision::Reason;
use crate::core::limiter::LocalLimiter;
use crate::core::model::{Digest, KeyRecord};
use crate::core::request::RawRequest;
use crate::core::signature;
use crate::error::{Dependency, Outage};
use crate::state::bcrypt::BasicVerifier;
use crate::state::nonces::redis_nonce_ttl;
use crate::state::{KeyLookup, KeyStore};

const NOW: i64 = 1_800_000_000;
const KEY: &str = "legacy-key-for-tests";

struct FixedClock(AtomicI64);

impl Clock for FixedClock {
    fn unix_secs(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
    fn mono_nanos(&self) -> u64 {
        u64::try_from(self.0.load(Ordering::SeqCst)).unwrap_or(0) * 1_000_000_000
    }
}

fn file() -> String {
    format!(
        r#"
[[route]]
id = "chat"
domain = "*"
path = "/v1/*"
service = "openai"
[route.methods]
POST = ["api_key", "hmac"]
GET = ["hmac"]

[[client]]
id = "c1"
name = "Client one"
hmac_secret = {{ env = "SECRET" }}
[[client.key]]
id = "k1"
digest = "{digest}"
expires_at = "2030-01-01T00:00:00Z"

[[grant]]
client = "c1"
route = "chat"
methods = ["POST", "GET"]
models = ["llama3*"]
"#,
        digest = Digest::of(KEY.as_bytes())
    )
}

/// The test policy, in process; with `store`, in PostgreSQL mode.
fn authorizer_with(
    clock: Arc<FixedClock>,
    failed_auth_limit: &str,
    store: Option<Arc<dyn KeyStore>>,
) -> Authorizer {
    let env = |name: &str| (name == "SECRET").then(|| "s3cret".to_owned());
    let doc = crate::sources::file_format::parse_document(&file(), &env, Path::new(".")).unwrap();
    let mut state = State::in_process(
        BasicVerifier::new(Duration::from_secs(30), 10),
        LocalLimiter::new(100),
        clock.unix_secs() - 600,
    );
    if let Some(store) = store {
        state = state.managed(store, Duration::from_secs(3600));
    }
    let settings = Settings {
        allow_query_key: false,
        hmac_window_secs: 300,
        hmac_max_ahead_secs: 5,
        failed_auth_limit: Limit::parse(failed_auth_limit).unwrap(),
    };
    Authorizer::new(Policy::build(doc).unwrap(), state, clock, settings)
}

fn setup() -> (Arc<FixedClock>, Authorizer) {
    setup_limited("20/1m")
}

fn setup_limited(failed_auth_limit: &str) -> (Arc<FixedClock>, Authorizer) {
    let clock = Arc::new(FixedClock(AtomicI64::new(NOW)));
    (
        clock.clone(),
        authorizer_with(clock, failed_auth_limit, None),
    )
}

/// What `http::authz` answers: an outage is refused as `store_unavailable`.
fn answer(result: Result<Decision, Outage>) -> Decision {
    result.unwrap_or_else(|outage| Decision::Deny(outage.refusal()))
}

async fn decide(
    a: &Authorizer,
    method: &str,
    uri: &str,
    auth: &str,
    body: Option<&[u8]>,
    length: &str,
) -> Decision {
    let raw = RawRequest {
        method: Some(method.as_bytes()),
        uri: Some(uri.as_bytes()),
        authorization: Some(auth.as_bytes()),
        content_length: Some(length.as_bytes()),
        body_marker: body.map(|_| &b"present"[..]),
        body,
        ..RawRequest::default()
    };
    match AuthRequest::parse(&raw) {
        Ok(req) => answer(a.decide(&req).await),
        Err(reason) => Decision::Deny(Deny::new(reason)),
    }
}

fn hmac(method: &str, path: &str, ts: i64, nonce: &str, body: &[u8]) -> String {
    let sig = signature::sign(b"s3cret", method, path, ts, nonce, body);
    format!("HMAC client_id=\"c1\", timestamp=\"{ts}\", nonce=\"{nonce}\", signature=\"{sig}\"")
}

const BODY: &[u8] = br#"{"model":"llama3:8b","messages":[]}"#;

#[tokio::test]
async fn an_api_key_is_refused_once_its_expiry_passes() {
    let (clock, a) = setup();
    const EXPIRY: i64 = 1_893_456_000; // 2030-01-01T00:00:00Z
    clock.0.store(EXPIRY - 1, Ordering::SeqCst);
    let bearer = format!("Bearer {KEY}");
    let d = decide(&a, "POST", "/v1/chat", &bearer, Some(BODY), "36").await;
    assert!(d.is_allow(), "{d:?}");
    clock.0.store(EXPIRY, Ordering::SeqCst);
    let d = decide(&a, "POST", "/v1/chat", &bearer, Some(BODY), "36").await;
    assert_eq!(d.reason(), Reason::KeyExpired);
}

#[tokio::test]
async fn a_signed_post_verifies_over_the_forwarded_body_once() {
    let (_, a) = setup();
    let auth = hmac("POST", "/v1/chat", NOW, "n-1", BODY);
    let d = decide(&a, "POST", "/v1/chat?stream=1", &auth, Some(BODY), "36").await;
    match &d {
        Decision::Allow(allow) => {
            let who = allow.identity.as_ref().unwrap();
            assert_eq!(&*who.client_id, "c1");
            assert_eq!(who.key_id, None);
        }
        other => panic!("expected an allow, got {other:?}"),
    }
    let again = decide(&a, "POST", "/v1/chat", &auth, Some(BODY), "36").await;
    assert_eq!(again.reason(), Reason::ReplayedRequest);
}

#[tokio::test]
async fn a_body_changed_after_signing_is_refused() {
    let (_, a) = setup();
    let auth = hmac("POST", "/v1/chat", NOW, "n-2", BODY);
    let tampered = br#"{"model":"llama3:70b","messages":[]}"#;
    let d = decide(&a, "POST", "/v1/chat", &auth, Some(tampered), "37").await;
    assert_eq!(d.reason(), Reason::InvalidCredentials);
}

#[tokio::test]
async fn a_signed_post_whose_body_was_not_forwarded_is_body_required() {
    let (_, a) = setup();
    let auth = hmac("POST", "/v1/chat", NOW, "n-3", BODY);
    let d = decide(&a, "POST", "/v1/chat", &auth, None, "36").await;
    assert_eq!(d.reason(), Reason::BodyRequired);
    assert_eq!(d.reason().client_status(), 400);
}

#[tokio::test]
async fn the_timestamp_window_is_300_behind_and_5_ahead() {
    let (_, a) = setup();
    for (offset, nonce, expected) in [
        (5, "a", None),
        (-300, "b", None),
        (6, "c", Some(Reason::StaleSignature)),
        (-301, "d", Some(Reason::StaleSignature)),
    ] {
        let auth = hmac("GET", "/v1/models", NOW + offset, nonce, b"");
        let d = decide(&a, "GET", "/v1/models", &auth, None, "").await;
        match expected {
            None => assert!(d.is_allow(), "offset {offset}: {d:?}"),
            Some(reason) => assert_eq!(d.reason(), reason, "offset {offset}"),
        }
    }
}

/// The nonces' memory began at NOW (a restart): what the clock admitted
/// until then — up to NOW + 5 — may have been accepted and forgotten.
#[tokio::test]
async fn a_signature_the_forgotten_memory_could_have_accepted_is_stale() {
    let clock = Arc::new(FixedClock(AtomicI64::new(NOW + 600)));
    let a = authorizer_with(clock.clone(), "20/1m", None);
    clock.0.store(NOW, Ordering::SeqCst);
    for (now, ts, nonce, allowed) in [
        (NOW, NOW, "r-1", false),
        (NOW, NOW + 5, "r-2", false),
        (NOW + 1, NOW + 5, "r-3", false),
        (NOW + 1, NOW + 6, "r-4", true),
        (NOW + 6, NOW + 6, "r-5", true),
        (NOW + 6, NOW - 1, "r-6", false),
    ] {
        clock.0.store(now, Ordering::SeqCst);
        let auth = hmac("GET", "/v1/models", ts, nonce, b"");
        let d = decide(&a, "GET", "/v1/models", &auth, None, "").await;
        match allowed {
            true => assert!(d.is_allow(), "{nonce}: {d:?}"),
            false => assert_eq!(d.reason(), Reason::StaleSignature, "{nonce}"),
        }
    }
}

#[tokio::test]
async fn a_stale_replay_is_stale_not_replayed_and_a_bad_signature_stores_no_nonce() {
    let (_, a) = setup();
    let bad = hmac("GET", "/v1/other", NOW, "n-4", b"");
    let d = decide(&a, "GET", "/v1/models", &bad, None, "").await;
    assert_eq!(d.reason(), Reason::InvalidCredentials);
    let good = hmac("GET", "/v1/models", NOW, "n-4", b"");
    assert!(decide(&a, "GET", "/v1/models", &good, None, "")
        .await
        .is_allow());
}

#[tokio::test]
async fn an_api_key_never_opens_an_hmac_only_method() {
    let (_, a) = setup();
    let d = decide(&a, "GET", "/v1/models", &format!("Bearer {KEY}"), None, "").await;
    assert_eq!(d.reason(), Reason::CredentialTypeNotAllowed);
}

#[tokio::test]
async fn model_checks_need_the_body_and_a_matching_model() {
    let (_, a) = setup();
    let bearer = format!("Bearer {KEY}");
    let cases: [(Option<&[u8]>, &str, Reason); 5] = [
        (None, "36", Reason::BodyRequired),
        (None, "chunked", Reason::BodyRequired),
        (
            Some(br#"{"model":"mistral"}"#),
            "19",
            Reason::ModelNotAllowed,
        ),
        (Some(b"not json"), "8", Reason::ModelNotAllowed),
        (Some(br#"{"messages":[]}"#), "15", Reason::ModelNotAllowed),
    ];
    for (body, length, reason) in cases {
        let d = decide(&a, "POST", "/v1/chat", &bearer, body, length).await;
        assert_eq!(d.reason(), reason, "{length}");
    }
}

#[tokio::test]
async fn every_model_a_request_names_is_checked_wherever_it_names_it() {
    let (_, a) = setup();
    let bearer = format!("Bearer {KEY}");
    let post = |uri: &'static str, body: &'static [u8]| {
        let (a, bearer) = (&a, bearer.clone());
        async move {
            let length = body.len().to_string();
            decide(a, "POST", uri, &bearer, Some(body), &length).await
        }
    };
    assert!(post("/v1/chat", BODY).await.is_allow());
    assert!(post("/v1/chat?model=llama3:70b", BODY).await.is_allow());
    for (uri, body) in [
        (
            "/v1/chat",
            &br#"{"model":"llama3:8b","Model":"mistral"}"#[..],
        ),
        ("/v1/chat", br#"{"model":"llama3:8b","model":"mistral"}"#),
        ("/v1/chat", br#"{"model":"llama3:8b"} {"model":"mistral"}"#),
        ("/v1/chat", br#"{"model":"llama3.evil.example/ns/m"}"#),
        ("/v1/chat?model=mistral", BODY),
        ("/v1/chat?a=1&mod%65l=mistral", BODY),
        ("/v1/models/mistral", BODY),
    ] {
        assert_eq!(
            post(uri, body).await.reason(),
            Reason::ModelNotAllowed,
            "{uri} {}",
            String::from_utf8_lossy(body)
        );
    }
}

#[tokio::test]
async fn a_body_on_a_get_is_checked_and_a_get_without_one_is_not() {
    let (_, a) = setup();
    let forbidden: &[u8] = br#"{"model":"mistral"}"#;
    let auth = hmac("GET", "/v1/chat", NOW, "get-1", forbidden);
    let d = decide(&a, "GET", "/v1/chat", &auth, Some(forbidden), "19").await;
    assert_eq!(d.reason(), Reason::ModelNotAllowed);
    let auth = hmac("GET", "/v1/chat", NOW, "get-2", forbidden);
    let d = decide(&a, "GET", "/v1/chat", &auth, None, "19").await;
    assert_eq!(d.reason(), Reason::BodyRequired);
    let auth = hmac("GET", "/v1/chat", NOW, "get-3", b"");
    assert!(decide(&a, "GET", "/v1/chat", &auth, Some(b""), "")
        .await
        .is_allow());
    let auth = hmac("GET", "/v1/chat", NOW, "get-4", b"");
    assert!(decide(&a, "GET", "/v1/chat", &auth, None, "")
        .await
        .is_allow());
}

/// A key store whose outage the test switches on and off.
struct FakeStore {
    key: KeyRecord,
    down: std::sync::atomic::AtomicBool,
}

impl KeyStore for FakeStore {
    fn find_key(&self, digest: Digest) -> KeyLookup<'_> {
        let down = self.down.load(Ordering::SeqCst);
        let found = (digest == self.key.digest).then(|| self.key.clone());
        Box::pin(async move {
            match down {
                true => Err(Outage::of(Dependency::Postgres)),
                false => Ok(found),
            }
        })
    }
}

const NEW_KEY: &str = "a-key-created-after-the-snapshot";

fn with_store(clock: Arc<FixedClock>) -> (Arc<FakeStore>, Authorizer) {
    let store = Arc::new(FakeStore {
        key: KeyRecord {
            id: "k2".parse().unwrap(),
            client_id: "c1".parse().unwrap(),
            digest: Digest::of(NEW_KEY.as_bytes()),
            status: crate::core::model::KeyStatus::Active,
            expires_at: None,
        },
        down: false.into(),
    });
    let a = authorizer_with(clock, "20/1m", Some(store.clone()));
    (store, a)
}

#[tokio::test]
async fn a_key_missing_from_the_snapshot_is_found_in_the_store_and_an_outage_fails_closed() {
    let clock = Arc::new(FixedClock(AtomicI64::new(NOW)));
    let (store, a) = with_store(clock);
    let bearer = format!("Bearer {NEW_KEY}");
    let d = decide(&a, "POST", "/v1/chat", &bearer, Some(BODY), "36").await;
    match &d {
        Decision::Allow(allow) => assert_eq!(
            allow.identity.as_ref().unwrap().key_id.as_deref(),
            Some("k2")
        ),
        other => panic!("expected an allow, got {other:?}"),
    }
    let unknown = decide(
        &a,
        "POST",
        "/v1/chat",
        "Bearer nobody-has-this",
        Some(BODY),
        "36",
    )
    .await;
    assert_eq!(unknown.reason(), Reason::InvalidCredentials);
    store.down.store(true, Ordering::SeqCst);
    let d = decide(&a, "POST", "/v1/chat", &bearer, Some(BODY), "36").await;
    assert_eq!(d.reason(), Reason::StoreUnavailable);
    let known = decide(
        &a,
        "POST",
        "/v1/chat",
        &format!("Bearer {KEY}"),
        Some(BODY),
        "36",
    )
    .await;
    assert!(
        known.is_allow(),
        "a key in the snapshot never waits on the store: {known:?}"
    );
}

#[tokio::test]
async fn a_snapshot_older_than_the_staleness_bound_refuses_credentials_but_not_public_routes() {
    let clock = Arc::new(FixedClock(AtomicI64::new(NOW)));
    let (_, a) = with_store(clock.clone());
    let bearer = format!("Bearer {KEY}");
    clock.0.store(NOW + 3600, Ordering::SeqCst);
    assert!(decide(&a, "POST", "/v1/chat", &bearer, Some(BODY), "36")
        .await
        .is_allow());
    clock.0.store(NOW + 3601, Ordering::SeqCst);
    let d = decide(&a, "POST", "/v1/chat", &bearer, Some(BODY), "36").await;
    assert_eq!(d.reason(), Reason::StoreUnavailable);
    a.confirm_fresh();
    assert!(decide(&a, "POST", "/v1/chat", &bearer, Some(BODY), "36")
        .await
        .is_allow());
}

async fn from(a: &Authorizer, source: &str, auth: &str) -> Decision {
    let raw = RawRequest {
        method: Some(b"POST"),
        uri: Some(b"/v1/chat"),
        authorization: Some(auth.as_bytes()),
        content_length: Some(b"36"),
        body_marker: Some(b"present"),
        body: Some(BODY),
        ..RawRequest::default()
    };
    let mut req = AuthRequest::parse(&raw).unwrap();
    req.source = source.parse().ok();
    answer(a.decide(&req).await)
}

#[tokio::test]
async fn an_address_that_fails_too_often_is_refused_until_a_failure_fits_again() {
    let (clock, a) = setup_limited("3/30s");
    let right = format!("Bearer {KEY}");
    for _ in 0..3 {
        let d = from(&a, "10.0.0.1", "Bearer wrong-key").await;
        assert_eq!(d.reason(), Reason::InvalidCredentials);
    }
    for auth in ["Bearer wrong-key", right.as_str()] {
        match from(&a, "10.0.0.1", auth).await {
            Decision::Deny(d) => {
                assert_eq!(d.reason, Reason::RateLimited);
                assert_eq!(d.retry_after, Some(10), "one failure every 10 s");
                assert_eq!(d.client_id, None, "nothing was verified");
            }
            other => panic!("expected a throttle, got {other:?}"),
        }
    }
    // Someone else's failures do not lock this address out, nor IPv4 mapped
    // into IPv6 escape its own.
    assert!(from(&a, "10.0.0.2", &right).await.is_allow());
    assert_eq!(
        from(&a, "::ffff:10.0.0.1", &right).await.reason(),
        Reason::RateLimited
    );
    clock.0.fetch_add(10, Ordering::SeqCst);
    assert!(from(&a, "10.0.0.1", &right).await.is_allow());
}

#[tokio::test]
async fn only_presented_wrong_credentials_count_as_failures() {
    let (_, a) = setup_limited("2/1m");
    let right = format!("Bearer {KEY}");
    for _ in 0..10 {
        // Missing credentials and a signature of the wrong age are not guesses.
        assert_eq!(
            from(&a, "10.0.0.3", "").await.reason(),
            Reason::MissingCredentials
        );
        let old = hmac("POST", "/v1/chat", NOW - 1000, "n", BODY);
        assert_eq!(
            from(&a, "10.0.0.3", &old).await.reason(),
            Reason::StaleSignature
        );
        assert!(from(&a, "10.0.0.3", &right).await.is_allow());
    }
    // Without a known source there is nothing to throttle on.
    for _ in 0..10 {
        assert_eq!(
            from(&a, "", "Bearer wrong").await.reason(),
            Reason::InvalidCredentials
        );
    }
}

#[tokio::test]
async fn an_ipv6_host_is_throttled_by_its_64() {
    let (_, a) = setup_limited("2/1m");
    assert_eq!(
        from(&a, "2001:db8:1:2::1", "Bearer x").await.reason(),
        Reason::InvalidCredentials
    );
    assert_eq!(
        from(&a, "2001:db8:1:2::ffff", "Bearer x").await.reason(),
        Reason::InvalidCredentials
    );
    assert_eq!(
        from(&a, "2001:db8:1:2:aaaa::9", "Bearer x").await.reason(),
        Reason::RateLimited
    );
    assert_eq!(
        from(&a, "2001:db8:1:3::1", "Bearer x").await.reason(),
        Reason::InvalidCredentials
    );
}

#[test]
fn a_throttle_bucket_is_the_v4_address_or_the_v6_slash_64() {
    let key = |ip: &str| throttle_key(ip.parse().expect("an address")).0;
    assert_eq!(&*key("203.0.113.7"), "f:203.0.113.7");
    assert_eq!(&*key("0.0.0.0"), "f:0.0.0.0");
    assert_eq!(&*key("255.255.255.255"), "f:255.255.255.255");
    // A v4-mapped address is its v4 address, so both forms share a bucket.
    assert_eq!(&*key("::ffff:10.0.0.1"), "f:10.0.0.1");
    assert_eq!(&*key("2001:db8:1:2:3:4:5:6"), "f:2001:db8:1:2::/64");
    assert_eq!(&*key("2001:db8:1:2::9"), "f:2001:db8:1:2::/64");
}

#[tokio::test]
async fn an_expired_key_counts_as_a_failed_credential_of_its_address() {
    let (clock, a) = setup_limited("2/1m");
    let right = format!("Bearer {KEY}");
    // k1 expires at 2030-01-01: from then on presenting it is a wrong guess.
    clock.0.store(1_900_000_000, Ordering::SeqCst);
    for _ in 0..2 {
        assert_eq!(
            from(&a, "10.0.0.9", &right).await.reason(),
            Reason::KeyExpired
        );
    }
    assert_eq!(
        from(&a, "10.0.0.9", &right).await.reason(),
        Reason::RateLimited
    );
    assert_eq!(
        from(&a, "10.0.0.10", &right).await.reason(),
        Reason::KeyExpired
    );
}

#[test]
fn a_redis_nonce_outlives_the_last_second_its_timestamp_is_accepted() {
    let window = 300;
    for ts in [NOW - window, NOW - window + 1, NOW, NOW + window] {
        let until = ts + window;
        for now in [ts - window, ts, until - 1, until] {
            let ttl = i64::try_from(redis_nonce_ttl(now, until)).unwrap();
            // The real time is somewhere in [now, now + 1); the signature is
            // accepted until the real time until + 1. Redis keeps the nonce
            // at least until now + ttl.
            assert!(now + ttl > until + 1, "ts {ts} now {now}: ttl {ttl}");
            assert!(now + ttl <= until + 2, "no longer than needed");
        }
    }
}

/// A request for `/v1/chat` with `bearer`, as `decide` answers it (an
/// outage stays an `Err`).
async fn raw_decide(a: &Authorizer, bearer: &str) -> Result<Decision, Outage> {
    let raw = RawRequest {
        method: Some(b"POST"),
        uri: Some(b"/v1/chat"),
        authorization: Some(bearer.as_bytes()),
        content_length: Some(b"36"),
        body_marker: Some(b"present"),
        body: Some(BODY),
        ..RawRequest::default()
    };
    a.decide(&AuthRequest::parse(&raw).unwrap()).await
}

#[tokio::test]
async fn a_store_outage_is_an_outage_naming_postgres_with_the_route_it_happened_on() {
    let clock = Arc::new(FixedClock(AtomicI64::new(NOW)));
    let (store, a) = with_store(clock);
    store.down.store(true, Ordering::SeqCst);
    let outage = raw_decide(&a, &format!("Bearer {NEW_KEY}"))
        .await
        .unwrap_err();
    assert_eq!(outage.dependency, Dependency::Postgres);
    let deny = outage.refusal();
    assert_eq!(deny.reason, Reason::StoreUnavailable);
    assert_eq!(deny.route_id.as_deref(), Some("chat"));
}

#[tokio::test]
async fn a_stale_snapshot_is_an_outage_naming_the_policy_snapshot() {
    let clock = Arc::new(FixedClock(AtomicI64::new(NOW)));
    let (_, a) = with_store(clock.clone());
    clock.0.store(NOW + 3601, Ordering::SeqCst);
    let outage = raw_decide(&a, &format!("Bearer {KEY}")).await.unwrap_err();
    assert_eq!(outage.dependency, Dependency::PolicySnapshot);
}

#[tokio::test]
async fn a_key_whose_client_is_newer_than_the_snapshot_is_refused_for_a_retry_but_is_no_outage() {
    let clock = Arc::new(FixedClock(AtomicI64::new(NOW)));
    let store = Arc::new(FakeStore {
        key: KeyRecord {
            id: "k9".parse().unwrap(),
            client_id: "c-created-since".parse().unwrap(),
            digest: Digest::of(NEW_KEY.as_bytes()),
            status: crate::core::model::KeyStatus::Active,
            expires_at: None,
        },
        down: false.into(),
    });
    let a = authorizer_with(clock, "2/1m", Some(store));
    let bearer = format!("Bearer {NEW_KEY}");
    let decision = raw_decide(&a, &bearer)
        .await
        .expect("a decision, not an outage");
    match decision {
        Decision::Deny(deny) => {
            assert_eq!(deny.reason, Reason::StoreUnavailable, "a retry will pass");
        }
        other => panic!("expected a deny, got {other:?}"),
    }
    // Not a wrong credential: it never counts against the address.
    for _ in 0..5 {
        let d = from(&a, "10.0.0.9", &bearer).await;
        assert_eq!(d.reason(), Reason::StoreUnavailable);
    }
}
