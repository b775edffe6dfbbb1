//! Bring-your-own-token (DESIGN §3 `provider_token`, the nginx bundle's
//! OpenAI site): a method that lists `provider_token` beside a credential
//! type tells nginx, on allow, to send the client's `X-Provider-Token`
//! upstream instead of the operator's key. It authenticates nobody.

mod common;

use common::{generate_key, run, spawn_app, Key, Req};

fn policy(key: &Key) -> String {
    format!(
        r#"
[[route]]
id = "byo"
domain = "*"
path = "/byo/*"
service = "openai"
[route.methods]
POST = ["api_key", "provider_token"]

[[route]]
id = "operator"
domain = "*"
path = "/operator/*"
service = "openai"
[route.methods]
POST = ["api_key"]

[[client]]
id = "team"
name = "Team"
{key}
[[grant]]
client = "team"
route = "byo"
methods = ["POST"]

[[grant]]
client = "team"
route = "operator"
methods = ["POST"]
"#,
        key = key.toml("active", None)
    )
}

fn post(path: &str, key: Option<&str>, token: Option<&str>) -> Req {
    let mut r = Req::new("POST", path);
    if let Some(k) = key {
        r = r.bearer(k);
    }
    if let Some(t) = token {
        r = r.header("x-provider-token", t);
    }
    r
}

#[test]
fn a_provider_token_is_forwarded_only_where_the_method_allows_it_and_only_after_authentication() {
    let key = generate_key();
    let gk = spawn_app(&policy(&key));

    let r = gk.send(&post("/byo/chat", Some(&key.key), Some("sk-client-own")));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("x-auth-provider-token"), Some("forward"));
    assert_eq!(r.header("x-auth-client-id"), Some("team"));

    // Without a token, or with an empty one: the operator's key goes upstream.
    for token in [None, Some(""), Some("   ")] {
        let r = gk.send(&post("/byo/chat", Some(&key.key), token));
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.header("x-auth-provider-token"), None, "{token:?}");
    }
    // A route that does not allow it never says forward.
    let r = gk.send(&post(
        "/operator/chat",
        Some(&key.key),
        Some("sk-client-own"),
    ));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("x-auth-provider-token"), None);
    // The token is not a credential: without a key the request is refused.
    let r = gk.send(&post("/byo/chat", None, Some("sk-client-own")));
    assert_eq!((r.status, r.reason()), (401, "missing_credentials"));
    let r = gk.send(&post("/byo/chat", Some("wrong"), Some("sk-client-own")));
    assert_eq!((r.status, r.reason()), (401, "invalid_credentials"));
    assert!(r.header("x-auth-provider-token").is_none());
    // And it never reaches a log line (of any App in this test binary,
    // gatekeeper's debug lines included).
    assert!(!gk.logs().iter().any(|l| l.contains("sk-client-own")));
}

#[test]
fn provider_token_alone_is_refused_when_the_file_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gatekeeper.toml");
    let alone = "[[route]]\nid = \"r\"\ndomain = \"*\"\npath = \"/x\"\nservice = \"s\"\n[route.methods]\nPOST = [\"provider_token\"]\n";
    std::fs::write(&path, alone).unwrap();
    let out = run(&["check", path.to_str().unwrap()], &[], None);
    assert_eq!(out.status.code(), Some(65));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("methods.POST"), "{stderr}");
    assert!(stderr.contains("provider_token"), "{stderr}");
}
