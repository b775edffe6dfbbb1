//! HMAC request signing over HTTP, against an App in this process, with
//! requests signed by the CLI signer (`gatekeeper sign`) as a client would.

mod common;

use common::hmac::{now, OPS_POLICY, OPS_SECRET};
use common::{spawn_app_with_env, Req, TestApp};

fn start() -> TestApp {
    spawn_app_with_env(OPS_POLICY, &[("OPS_SECRET", OPS_SECRET)])
}

/// The `Authorization` value `gatekeeper sign` prints.
fn sign(
    gk: &TestApp,
    method: &str,
    path: &str,
    body: &[u8],
    timestamp: i64,
    nonce: &str,
) -> String {
    let dir = gk.config_path().parent().unwrap();
    common::hmac::sign(dir, method, path, body, timestamp, nonce)
}

fn signed(method: &str, uri: &str, auth: &str) -> Req {
    Req::new(method, uri).header("authorization", auth)
}

#[test]
fn a_signed_get_is_allowed_once_and_its_replay_refused() {
    let gk = start();
    let auth = sign(&gk, "GET", "/api/tags", b"", now(), "n-get-1");
    let r = gk.send(&signed("GET", "/api/tags?verbose=1", &auth));
    assert_eq!(r.status, 200, "{}", r.reason());
    assert_eq!(r.header("x-auth-client-id"), Some("ops"));
    let again = gk.send(&signed("GET", "/api/tags?verbose=1", &auth));
    assert_eq!((again.status, again.reason()), (401, "replayed_request"));
}

#[test]
fn a_signed_post_verifies_over_the_forwarded_body() {
    let gk = start();
    let body = br#"{"name":"llama3:8b"}"#;
    let auth = sign(&gk, "POST", "/api/pull", body, now(), "n-post-1");
    let len = body.len().to_string();
    let forwarded = signed("POST", "/api/pull", &auth)
        .header("x-original-content-length", &len)
        .body(body);
    assert_eq!(gk.send(&forwarded).status, 200);

    let auth = sign(&gk, "POST", "/api/pull", body, now(), "n-post-2");
    let tampered = br#"{"name":"llama3:70b"}"#;
    let r = gk.send(
        &signed("POST", "/api/pull", &auth)
            .header("x-original-content-length", &len)
            .body(tampered),
    );
    assert_eq!((r.status, r.reason()), (401, "invalid_credentials"));
}

#[test]
fn a_signed_post_whose_body_was_not_forwarded_is_refused_with_body_required() {
    let gk = start();
    let body = br#"{"name":"llama3:8b"}"#;
    let auth = sign(&gk, "POST", "/api/pull", body, now(), "n-post-3");
    let r = gk.send(&signed("POST", "/api/pull", &auth).header("x-original-content-length", "20"));
    assert_eq!(
        (r.status, r.auth_status(), r.reason()),
        (403, 400, "body_required")
    );
}

#[test]
fn stale_signatures_upper_case_hex_and_api_keys_are_refused() {
    let gk = start();
    let stale = sign(&gk, "GET", "/api/tags", b"", now() - 301, "n-stale");
    let r = gk.send(&signed("GET", "/api/tags", &stale));
    assert_eq!((r.status, r.reason()), (401, "stale_signature"));

    let fresh = sign(&gk, "GET", "/api/tags", b"", now(), "n-upper");
    let (head, sig) = fresh.rsplit_once("signature=\"").unwrap();
    let upper = format!("{head}signature=\"{}", sig.to_uppercase());
    let r = gk.send(&signed("GET", "/api/tags", &upper));
    assert_eq!((r.status, r.reason()), (401, "invalid_credentials"));

    let r = gk.send(&Req::get("/api/tags").bearer("any-api-key"));
    assert_eq!((r.status, r.reason()), (401, "credential_type_not_allowed"));
    assert!(r
        .header("www-authenticate")
        .unwrap_or("")
        .starts_with("HMAC"));
}
