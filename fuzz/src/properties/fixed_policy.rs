//! The fixed policy the `path` target judges URIs against, and the decision
//! it takes on one URI in one request context (`Authorizer::decide`, as
//! `/authz` does after `AuthRequest::parse`).

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use gatekeeper::clock::SystemClock;
use gatekeeper::core::decision::{Decision, Reason};
use gatekeeper::core::limiter::LocalLimiter;
use gatekeeper::core::model::{
    Client, ClientStatus, CredentialSet, CredentialType, Digest, Document, DomainPattern, Grant,
    GrantMethods, KeyRecord, KeyStatus, Method, MethodRule, PathPattern, Route,
};
use gatekeeper::core::policy::Policy;
use gatekeeper::core::request::{AuthRequest, RawRequest};
use gatekeeper::decide::{Authorizer, Settings};
use gatekeeper::state::bcrypt::BasicVerifier;
use gatekeeper::state::State;

/// The legacy key of client `team-a` in the fixed policy.
pub const KEY: &str = "fuzz-legacy-key-team-a";
pub const HOST: &str = "api.example.com";

/// What is compared between two decisions.
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    pub allow: bool,
    pub reason: Reason,
    pub route: Option<String>,
}

/// A request context: method, `X-Original-Host`, `Authorization`.
pub type Context = (&'static str, Option<&'static str>, Option<&'static str>);

/// The request contexts each URI is judged in.
pub const CONTEXTS: &[Context] = &[
    ("GET", Some(HOST), None),
    (
        "GET",
        Some("API.Example.com.:443"),
        Some("Bearer fuzz-legacy-key-team-a"),
    ),
    ("POST", Some(HOST), Some("fuzz-legacy-key-team-a")),
    ("GET", None, None),
];

/// The fixed policy's route for a (lower-cased) host and a normalised path,
/// by scanning its routes as DESIGN §10 states the rules.
pub fn expected_route(host: Option<&str>, path: &str) -> Option<&'static str> {
    let under = |stem: &str| path == stem || path.starts_with(&format!("{stem}/"));
    match host {
        Some(HOST) if under("/public") => Some("public"),
        Some(HOST) if under("/admin") => Some("admin"),
        Some(HOST) => Some("protected"),
        _ if path == "/v1/models" => Some("models"),
        _ => None,
    }
}

/// The decision for `uri` as `X-Original-URI` in `context`; a request
/// refused while parsing is a deny with that reason and no route.
pub fn decide((method, host, auth): Context, uri: &[u8]) -> Outcome {
    let raw = RawRequest {
        method: Some(method.as_bytes()),
        uri: Some(uri),
        host: host.map(str::as_bytes),
        authorization: auth.map(str::as_bytes),
        ..RawRequest::default()
    };
    let fixture = fixture();
    let decision = match AuthRequest::parse(&raw) {
        Ok(req) => match fixture.rt.block_on(fixture.authorizer.decide(&req)) {
            Ok(decision) => decision,
            // An outage is answered as a deny (`http::authz`): never an allow.
            Err(outage) => Decision::Deny(outage.refusal()),
        },
        Err(reason) => {
            return Outcome {
                allow: false,
                reason,
                route: None,
            }
        }
    };
    Outcome {
        allow: decision.is_allow(),
        reason: decision.reason(),
        route: decision_route(&decision),
    }
}

fn decision_route(decision: &Decision) -> Option<String> {
    decision.route_id().map(|id| id.to_string())
}

struct Fixture {
    authorizer: Authorizer,
    rt: tokio::runtime::Runtime,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| Fixture {
        authorizer: Authorizer::new(
            Policy::build(document()).expect("the fixed policy is valid"),
            State::in_process(
                BasicVerifier::new(Duration::from_secs(60), 16),
                LocalLimiter::new(1024),
                0,
            ),
            Arc::new(SystemClock::default()),
            Settings {
                allow_query_key: true,
                hmac_window_secs: 300,
                ..Settings::default()
            },
        ),
        rt: tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a tokio runtime"),
    })
}

/// On `api.example.com`: `/public/*` (GET public), `/admin/*` and `/*` (any
/// method, API key); on any host `/v1/models` (GET public). Client `team-a`
/// holds `KEY` and may GET `/*` only.
fn document() -> Document {
    let key = MethodRule::Credentials(CredentialSet::EMPTY.with(CredentialType::ApiKey));
    Document {
        routes: vec![
            route("public", HOST, "/public/*", Some("GET"), MethodRule::Public),
            route("protected", HOST, "/*", None, key),
            route("admin", HOST, "/admin/*", None, key),
            route("models", "*", "/v1/models", Some("GET"), MethodRule::Public),
        ],
        clients: vec![Client {
            id: "team-a".parse().expect("an id"),
            name: "Team A".into(),
            status: ClientStatus::Active,
            limit: None,
            secret_hash: None,
            hmac_secret: None,
        }],
        keys: vec![KeyRecord {
            id: "k1".parse().expect("an id"),
            client_id: "team-a".parse().expect("an id"),
            digest: Digest::of(KEY.as_bytes()),
            status: KeyStatus::Active,
            expires_at: None,
        }],
        grants: vec![Grant {
            client_id: "team-a".parse().expect("an id"),
            route_id: "protected".parse().expect("an id"),
            methods: GrantMethods::Only(vec![Method::parse("GET").expect("a method")]),
            models: None,
            limit: None,
        }],
    }
}

fn route(id: &str, domain: &str, path: &str, method: Option<&str>, rule: MethodRule) -> Route {
    let methods: BTreeMap<Method, MethodRule> = method
        .and_then(Method::parse)
        .map(|m| (m, rule))
        .into_iter()
        .collect();
    Route {
        id: id.parse().expect("an id"),
        domain: DomainPattern::parse(domain).expect("a domain"),
        path: PathPattern::parse(path).expect("a path"),
        service: "upstream".into(),
        priority: 0,
        any_method: method.is_none().then_some(rule),
        methods,
    }
}
