//! Importing the predecessor's database (the Python/Flask "API Gatekeeper",
//! shared/api-gatekeeper-predecessor.md) from its real schema on the real
//! PostgreSQL: ids are kept, keys are stored by digest, every change of
//! meaning is reported, and the imported policy takes the decisions the
//! predecessor documented — without its defects.

mod pg;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gatekeeper::clock::Clock;
use gatekeeper::core::decision::{Decision, Deny, Reason};
use gatekeeper::core::limiter::LocalLimiter;
use gatekeeper::core::model::{
    ClientStatus, CredentialSet, CredentialType, Digest, DomainPattern, GrantMethods, KeyStatus,
    Limit, Method, MethodRule, PathPattern,
};
use gatekeeper::core::policy::Policy;
use gatekeeper::core::request::{AuthRequest, RawRequest};
use gatekeeper::core::signature;
use gatekeeper::decide::{Authorizer, Settings};
use gatekeeper::import::{read_api_gatekeeper, Import, ImportError, STATEMENTS};
use gatekeeper::state::bcrypt::BasicVerifier;
use gatekeeper::state::State;
use pg::TestDb;

const SCHEMA: &str = include_str!("fixtures/api_gatekeeper_schema.sql");

const R_OPEN: &str = "10000000-0000-4000-8000-000000000001";
const R_ITEMS: &str = "10000000-0000-4000-8000-000000000002";
const R_ADMIN: &str = "10000000-0000-4000-8000-000000000003";
const R_WILD: &str = "10000000-0000-4000-8000-000000000004";
const R_ANY: &str = "10000000-0000-4000-8000-000000000005";

const C_KEY: &str = "a1111111-0000-4000-8000-00000000000a";
const C_HMAC: &str = "b2222222-0000-4000-8000-00000000000b";
const C_BOTH: &str = "c3333333-0000-4000-8000-00000000000c";
const C_SUSPENDED: &str = "d4444444-0000-4000-8000-00000000000d";

const KEY_A: &str = "legacy-plaintext-key-alpha-0001";
const KEY_C: &str = "legacy-plaintext-key-charlie-0003";
const KEY_D: &str = "legacy-plaintext-key-delta-0004";
const SECRET_B: &str = "plaintext-hmac-secret-bravo";
const SECRET_C: &str = "plaintext-hmac-secret-charlie";

/// A predecessor installation as it is found in the wild: an exact and a
/// wildcard domain, `*`, prefix routes down to `/*`, every auth combination.
const SEED: &str = r#"
INSERT INTO routes (route_id, route_pattern, domain, service_name, methods, created_at) VALUES
 ('10000000-0000-4000-8000-000000000001', '/api/open/*', 'api.example.com', 'open data',
  '{"GET": {"auth_required": false}}', 1),
 ('10000000-0000-4000-8000-000000000002', '/api/items/*', 'API.Example.com', 'items',
  '{"GET": {"auth_required": false},
    "POST": {"auth_required": true, "auth_type": null},
    "PUT": {"auth_required": true},
    "DELETE": {"auth_required": true, "auth_type": "hmac"}}', 2),
 ('10000000-0000-4000-8000-000000000003', '/api/admin', 'api.example.com', 'admin',
  '{"GET": {"auth_required": true, "auth_type": "api_key"},
    "DELETE": {"auth_required": true, "auth_type": "hmac"}}', 3),
 ('10000000-0000-4000-8000-000000000004', '/v1/*', '*.example.com', 'llm',
  '{"GET": {"auth_required": false},
    "POST": {"auth_required": true, "auth_type": "api_key"}}', 4),
 ('10000000-0000-4000-8000-000000000005', '/*', '*', 'catch-all',
  '{"GET": {"auth_required": true}}', 5);

INSERT INTO clients (client_id, client_name, api_key, shared_secret, status) VALUES
 ('a1111111-0000-4000-8000-00000000000a', 'Key Only', 'legacy-plaintext-key-alpha-0001', NULL, 'active'),
 ('b2222222-0000-4000-8000-00000000000b', 'Signer', NULL, 'plaintext-hmac-secret-bravo', 'active'),
 ('c3333333-0000-4000-8000-00000000000c', 'Both', 'legacy-plaintext-key-charlie-0003',
  'plaintext-hmac-secret-charlie', 'active'),
 ('d4444444-0000-4000-8000-00000000000d', 'Suspended', 'legacy-plaintext-key-delta-0004', NULL, 'suspended');

INSERT INTO client_permissions (client_id, route_id, allowed_methods) VALUES
 ('a1111111-0000-4000-8000-00000000000a', '10000000-0000-4000-8000-000000000003', '{GET}'),
 ('a1111111-0000-4000-8000-00000000000a', '10000000-0000-4000-8000-000000000002', '{GET,POST}'),
 ('a1111111-0000-4000-8000-00000000000a', '10000000-0000-4000-8000-000000000004', '{POST}'),
 ('b2222222-0000-4000-8000-00000000000b', '10000000-0000-4000-8000-000000000003', '{GET,DELETE}'),
 ('b2222222-0000-4000-8000-00000000000b', '10000000-0000-4000-8000-000000000002', '{DELETE}'),
 ('c3333333-0000-4000-8000-00000000000c', '10000000-0000-4000-8000-000000000002', '{POST,PUT,DELETE}'),
 ('c3333333-0000-4000-8000-00000000000c', '10000000-0000-4000-8000-000000000005', '{GET}'),
 ('d4444444-0000-4000-8000-00000000000d', '10000000-0000-4000-8000-000000000003', '{GET}');

INSERT INTO rate_limits (client_id, requests_per_day) VALUES
 ('a1111111-0000-4000-8000-00000000000a', 1000),
 ('c3333333-0000-4000-8000-00000000000c', 2);
"#;

/// Rows a hand-edited predecessor database may hold that gatekeeper cannot
/// take as they are (the constraints that would have stopped some are
/// dropped first, as on an installation that never had them).
const UNMAPPABLE: &str = r#"
ALTER TABLE clients DROP CONSTRAINT clients_api_key_key;
ALTER TABLE client_permissions DROP CONSTRAINT client_permissions_allowed_methods_check;

INSERT INTO routes (route_id, route_pattern, domain, service_name, methods, created_at) VALUES
 ('20000000-0000-4000-8000-000000000001', '/bad/*/x', 'api.example.com', 's', '{}', 10),
 ('20000000-0000-4000-8000-000000000002', '/api/admin', 'API.EXAMPLE.COM', 's', '{}', 11),
 ('20000000-0000-4000-8000-000000000003', '/x', 'example.com:8080', 's', '{}', 12),
 ('20000000-0000-4000-8000-000000000004', '/mixed', 'api.example.com', 's',
  '{"GET": {"auth_required": true, "auth_type": "jwt"},
    "get": {"auth_required": false},
    "POST": {"auth_required": false}}', 13),
 ('20000000-0000-4000-8000-000000000005', '/no-methods', 'api.example.com', 's', '[]', 14);

INSERT INTO clients (client_id, client_name, api_key, shared_secret, status) VALUES
 ('e5555555-0000-4000-8000-00000000000e', '   ', 'legacy-key-of-a-nameless-client', NULL, 'active'),
 ('f6666666-0000-4000-8000-00000000000f', 'Copycat', 'legacy-plaintext-key-alpha-0001', NULL, 'active'),
 ('a7777777-0000-4000-8000-000000000007', 'Spaces', 'key with spaces', '', 'active'),
 ('a8888888-0000-4000-8000-000000000008', 'Fake gk', 'gk_not_a_real_key', 'ok-secret', 'active');

INSERT INTO client_permissions (permission_id, client_id, route_id, allowed_methods) VALUES
 ('30000000-0000-4000-8000-000000000001', 'e5555555-0000-4000-8000-00000000000e',
  '10000000-0000-4000-8000-000000000001', '{GET}'),
 ('30000000-0000-4000-8000-000000000002', 'f6666666-0000-4000-8000-00000000000f',
  '10000000-0000-4000-8000-000000000001', '{GET,get}'),
 ('30000000-0000-4000-8000-000000000003', 'f6666666-0000-4000-8000-00000000000f',
  '20000000-0000-4000-8000-000000000001', '{GET}'),
 ('30000000-0000-4000-8000-000000000004', 'a7777777-0000-4000-8000-000000000007',
  '10000000-0000-4000-8000-000000000001', '{patch}');

INSERT INTO rate_limits (client_id, requests_per_day) VALUES
 ('e5555555-0000-4000-8000-00000000000e', 10);
"#;

const PLAINTEXTS: [&str; 5] = [KEY_A, KEY_C, KEY_D, SECRET_B, SECRET_C];

/// A fresh database holding the predecessor's schema and `seed`.
async fn predecessor(seed: &[&str]) -> TestDb {
    let db = TestDb::empty().await;
    let client = db.client().await;
    client.batch_execute(SCHEMA).await.expect("the schema");
    for sql in seed {
        client.batch_execute(sql).await.expect("the seed");
    }
    db
}

async fn import(db: &TestDb) -> Import {
    read_api_gatekeeper(&db.client().await)
        .await
        .expect("the import")
}

fn only(t: CredentialType) -> MethodRule {
    MethodRule::Credentials(CredentialSet::EMPTY.with(t))
}

fn method(s: &str) -> Method {
    Method::parse(s).unwrap()
}

#[tokio::test]
async fn a_predecessor_database_imports_with_every_row_counted_and_ids_kept() {
    let db = predecessor(&[SEED]).await;
    let Import { document, report } = import(&db).await;

    let counts = (
        report.routes,
        report.clients,
        report.keys,
        report.hmac_secrets,
        report.grants,
        report.limits,
    );
    assert_eq!(counts, (5, 4, 3, 2, 8, 2), "{report:#?}");
    assert!(report.skipped.is_empty(), "{:#?}", report.skipped);
    let route_ids: Vec<&str> = document.routes.iter().map(|r| &*r.id).collect();
    assert_eq!(route_ids, [R_OPEN, R_ITEMS, R_ADMIN, R_WILD, R_ANY]);
    let mut client_ids: Vec<&str> = document.clients.iter().map(|c| &*c.id).collect();
    client_ids.sort();
    assert_eq!(client_ids, [C_KEY, C_HMAC, C_BOTH, C_SUSPENDED]);
    Policy::build(document.clone()).expect("the imported document builds a policy");
}

#[tokio::test]
async fn routes_map_patterns_domains_services_and_every_auth_combination() {
    let db = predecessor(&[SEED]).await;
    let doc = import(&db).await.document;
    let route = |id: &str| doc.routes.iter().find(|r| &*r.id == id).unwrap();

    let items = route(R_ITEMS);
    assert_eq!(items.domain, DomainPattern::Exact("api.example.com".into()));
    assert_eq!(items.path, PathPattern::Prefix("/api/items".into()));
    let both = CredentialSet::EMPTY
        .with(CredentialType::ApiKey)
        .with(CredentialType::Hmac);
    assert_eq!(items.methods[&method("GET")], MethodRule::Public);
    assert_eq!(
        items.methods[&method("POST")],
        MethodRule::Credentials(both)
    );
    assert_eq!(items.methods[&method("PUT")], MethodRule::Credentials(both));
    assert_eq!(items.methods[&method("DELETE")], only(CredentialType::Hmac));
    assert_eq!(items.any_method, None);
    assert_eq!(
        route(R_ADMIN).methods[&method("GET")],
        only(CredentialType::ApiKey)
    );
    assert_eq!(route(R_ADMIN).path, PathPattern::Exact("/api/admin".into()));
    assert_eq!(
        route(R_WILD).domain,
        DomainPattern::Suffix("example.com".into())
    );
    assert_eq!(route(R_ANY).domain, DomainPattern::Any);
    assert_eq!(route(R_ANY).path, PathPattern::Prefix(String::new()));
    assert_eq!(&*route(R_OPEN).service, "open-data");
    assert_eq!(&*route(R_ANY).service, "catch-all");
}

#[tokio::test]
async fn clients_keep_status_keys_by_digest_secrets_grants_and_daily_limits() {
    let db = predecessor(&[SEED]).await;
    let doc = import(&db).await.document;
    let client = |id: &str| doc.clients.iter().find(|c| &*c.id == id).unwrap();

    let key = doc
        .keys
        .iter()
        .find(|k| k.digest == Digest::of(KEY_A.as_bytes()))
        .expect("KEY_A by its digest");
    assert_eq!(&*key.id, "legacy-a1111111");
    assert_eq!(&*key.client_id, C_KEY);
    assert_eq!((key.status, key.expires_at), (KeyStatus::Active, None));
    assert!(doc
        .keys
        .iter()
        .any(|k| k.digest == Digest::of(KEY_D.as_bytes()) && &*k.client_id == C_SUSPENDED));

    assert_eq!(client(C_SUSPENDED).status, ClientStatus::Suspended);
    assert_eq!(&*client(C_KEY).name, "Key Only");
    let secret = client(C_HMAC).hmac_secret.as_ref().expect("a secret");
    assert_eq!(secret.expose(), SECRET_B.as_bytes());
    assert!(client(C_KEY).hmac_secret.is_none());
    assert_eq!(client(C_BOTH).limit, Limit::parse("2/1d"));
    assert_eq!(client(C_KEY).limit, Limit::parse("1000/1d"));
    assert_eq!(client(C_HMAC).limit, None);

    let grant = doc
        .grants
        .iter()
        .find(|g| &*g.client_id == C_BOTH && &*g.route_id == R_ITEMS)
        .unwrap();
    let expected = ["POST", "PUT", "DELETE"].map(method).to_vec();
    assert_eq!(grant.methods, GrantMethods::Only(expected));
    assert_eq!((&grant.models, grant.limit), (&None, None));
}

#[tokio::test]
async fn no_key_or_secret_appears_in_the_report_or_the_document_debug() {
    let db = predecessor(&[SEED, UNMAPPABLE]).await;
    let import = import(&db).await;
    let texts = [
        format!("{:?}", import.report),
        format!("{:#?}", import.report),
        serde_json::to_string(&import.report).unwrap(),
        format!("{:?}", import.document),
    ];
    for text in &texts {
        for plain in PLAINTEXTS
            .iter()
            .chain(&["key with spaces", "gk_not_a_real_key"])
        {
            assert!(!text.contains(plain), "`{plain}` leaked into: {text}");
        }
    }
}

#[tokio::test]
async fn widened_and_narrowed_methods_are_reported_for_the_right_routes() {
    let db = predecessor(&[SEED]).await;
    let report = import(&db).await.report;
    let lines_for = |lines: &[String], route: &str, method: &str| {
        let head = format!("route {route} {method}:");
        lines.iter().filter(|l| l.starts_with(&head)).count()
    };

    for (route, m) in [(R_ITEMS, "POST"), (R_ITEMS, "PUT"), (R_ANY, "GET")] {
        assert_eq!(lines_for(&report.widened, route, m), 1, "{report:#?}");
    }
    assert_eq!(report.widened.len(), 3, "{:#?}", report.widened);
    let narrowed_methods = [
        (R_ITEMS, "DELETE"),
        (R_ADMIN, "GET"),
        (R_ADMIN, "DELETE"),
        (R_WILD, "POST"),
    ];
    for (route, m) in narrowed_methods {
        assert_eq!(lines_for(&report.narrowed, route, m), 1, "{report:#?}");
    }
    // Prefix routes no longer match past a segment boundary; `/*` is unaffected.
    for route in [R_OPEN, R_ITEMS, R_WILD] {
        let head = format!("route {route} `");
        assert!(
            report.narrowed.iter().any(|l| l.starts_with(&head)),
            "{route}"
        );
    }
    assert_eq!(report.narrowed.len(), 7, "{:#?}", report.narrowed);
    assert_eq!(report.adjusted.len(), 1, "{:#?}", report.adjusted);
    assert!(report.adjusted[0].contains(R_OPEN));
}

#[tokio::test]
async fn unmappable_rows_are_skipped_with_a_reason_and_the_rest_still_builds() {
    let db = predecessor(&[SEED, UNMAPPABLE]).await;
    let Import { document, report } = import(&db).await;
    let skipped: Vec<(&str, &str)> = report
        .skipped
        .iter()
        .map(|s| (s.table, s.id.as_str()))
        .collect();
    #[rustfmt::skip]
    let expected = [
        ("routes", "20000000-0000-4000-8000-000000000001"),
        ("routes", "20000000-0000-4000-8000-000000000002"),
        ("routes", "20000000-0000-4000-8000-000000000003"),
        ("routes", "20000000-0000-4000-8000-000000000004 GET"),
        ("routes", "20000000-0000-4000-8000-000000000004 get"),
        ("routes", "20000000-0000-4000-8000-000000000005 methods"),
        ("clients", "a7777777-0000-4000-8000-000000000007 shared_secret"),
        ("clients", "a7777777-0000-4000-8000-000000000007 api_key"),
        ("clients", "a8888888-0000-4000-8000-000000000008 api_key"),
        ("clients", "e5555555-0000-4000-8000-00000000000e"),
        ("clients", "f6666666-0000-4000-8000-00000000000f api_key"),
        ("client_permissions", "30000000-0000-4000-8000-000000000001"),
        ("client_permissions", "30000000-0000-4000-8000-000000000002 get"),
        ("client_permissions", "30000000-0000-4000-8000-000000000003"),
        ("client_permissions", "30000000-0000-4000-8000-000000000004 patch"),
        ("client_permissions", "30000000-0000-4000-8000-000000000004"),
        ("rate_limits", "e5555555-0000-4000-8000-00000000000e"),
    ];
    assert_eq!(skipped, expected, "{:#?}", report.skipped);
    assert!(report.skipped.iter().all(|s| !s.reason.is_empty()));
    let duplicate = &report.skipped[1].reason;
    assert!(duplicate.contains(R_ADMIN), "{duplicate}");
    let copycat = &report.skipped[10].reason;
    assert!(copycat.contains(C_KEY), "{copycat}");

    // Partly readable rows still import, with only what could be read.
    let mixed = document
        .routes
        .iter()
        .find(|r| &*r.id == "20000000-0000-4000-8000-000000000004")
        .unwrap();
    assert_eq!(mixed.methods.len(), 1);
    assert_eq!(mixed.methods[&method("POST")], MethodRule::Public);
    let counts = (report.routes, report.clients, report.keys, report.grants);
    assert_eq!(counts, (7, 7, 3, 9), "{report:#?}");
    assert_eq!(report.hmac_secrets, 3);
    Policy::build(document).expect("what was imported builds a policy");
}

#[tokio::test]
async fn a_database_without_the_predecessor_tables_is_an_error_naming_the_table() {
    let db = TestDb::empty().await;
    let err = read_api_gatekeeper(&db.client().await).await.unwrap_err();
    assert!(matches!(
        err,
        ImportError::Read {
            table: "routes",
            ..
        }
    ));
    assert!(err.to_string().contains("`routes`"), "{err}");
}

#[tokio::test]
async fn every_import_statement_prepares_against_the_predecessor_schema() {
    let db = predecessor(&[]).await;
    db.assert_statements_prepare(&STATEMENTS).await;
}

// ---- The same decisions, without the predecessor's defects. ---------------

const NOW: i64 = 1_800_000_000;

struct FixedClock(AtomicI64);

impl Clock for FixedClock {
    fn unix_secs(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
    fn mono_nanos(&self) -> u64 {
        u64::try_from(self.0.load(Ordering::SeqCst)).unwrap_or(0) * 1_000_000_000
    }
}

async fn authorizer() -> (TestDb, Authorizer) {
    let db = predecessor(&[SEED]).await;
    let doc = import(&db).await.document;
    let authorizer = Authorizer::new(
        Policy::build(doc).unwrap(),
        State::in_process(
            BasicVerifier::new(Duration::from_secs(30), 10),
            LocalLimiter::new(100),
            NOW - 600,
        ),
        Arc::new(FixedClock(AtomicI64::new(NOW))),
        Settings {
            allow_query_key: false,
            hmac_window_secs: 300,
            ..Settings::default()
        },
    );
    (db, authorizer)
}

async fn decide(a: &Authorizer, host: &str, method: &str, uri: &str, auth: &str) -> Decision {
    let raw = RawRequest {
        method: Some(method.as_bytes()),
        uri: Some(uri.as_bytes()),
        host: Some(host.as_bytes()),
        authorization: (!auth.is_empty()).then_some(auth.as_bytes()),
        content_length: Some(b""),
        ..RawRequest::default()
    };
    match AuthRequest::parse(&raw) {
        Ok(req) => a.decide(&req).await.expect("no outage in process"),
        Err(reason) => Decision::Deny(Deny::new(reason)),
    }
}

/// The compatible HMAC header (DESIGN §5), signed with `secret`.
fn hmac(client: &str, secret: &str, method: &str, path: &str, nonce: &str) -> String {
    let sig = signature::sign(secret.as_bytes(), method, path, NOW, nonce, b"");
    format!(
        "HMAC client_id=\"{client}\", timestamp=\"{NOW}\", nonce=\"{nonce}\", signature=\"{sig}\""
    )
}

/// What happened: the reason, the route it landed on, and who was allowed.
type Outcome<'a> = (Reason, Option<&'a str>, Option<&'a str>);

fn outcome(d: &Decision) -> Outcome<'_> {
    let client = match d {
        Decision::Allow(allow) => allow.identity.as_ref().map(|i| &*i.client_id),
        Decision::Deny(_) => None,
    };
    (d.reason(), d.route_id().map(|r| &**r), client)
}

#[tokio::test]
async fn the_imported_policy_takes_the_predecessors_documented_decisions_without_its_defects() {
    let (_db, a) = authorizer().await;
    let api = "api.example.com";
    let bearer = |key: &str| format!("Bearer {key}");
    let hmac_admin = hmac(C_HMAC, SECRET_B, "GET", "/api/admin", "n1");
    let hmac_admin_delete = hmac(C_HMAC, SECRET_B, "DELETE", "/api/admin", "n2");
    let hmac_items_delete = hmac(C_BOTH, SECRET_C, "DELETE", "/api/items/7", "n3");
    use Reason::*;
    #[rustfmt::skip]
    let cases: Vec<(&str, &str, &str, String, Outcome)> = vec![
        // A public method looks at no credential.
        (api, "GET", "/api/open/data", String::new(), (NoAuthRequired, Some(R_OPEN), None)),
        // Domains compare lower-case; `/api/items/*` matches `/api/items` itself.
        ("API.EXAMPLE.COM", "GET", "/api/items", String::new(), (NoAuthRequired, Some(R_ITEMS), None)),
        // An API key with a permission; every accepted form of presenting it.
        (api, "GET", "/api/admin", bearer(KEY_A), (Authenticated, Some(R_ADMIN), Some(C_KEY))),
        (api, "POST", "/api/items/7", KEY_A.to_owned(), (Authenticated, Some(R_ITEMS), Some(C_KEY))),
        (api, "GET", "/api/admin", format!("ApiKey {KEY_C}"), (NoPermission, Some(R_ADMIN), None)),
        (api, "GET", "/api/admin", bearer(KEY_D), (ClientSuspended, Some(R_ADMIN), None)),
        (api, "PUT", "/api/items/7", bearer(KEY_A), (MethodNotAllowed, Some(R_ITEMS), None)),
        (api, "GET", "/api/admin", bearer("nobody-has-this-key"), (InvalidCredentials, Some(R_ADMIN), None)),
        // Defect not copied: `/api/items/*` no longer matches `/api/itemsXYZ`.
        (api, "GET", "/api/itemsXYZ", String::new(), (MissingCredentials, Some(R_ANY), None)),
        // Defect not copied: the path is normalised before matching.
        (api, "GET", "/api/open/../admin", String::new(), (MissingCredentials, Some(R_ADMIN), None)),
        // Defect not copied: a credential opens only methods of its type.
        (api, "DELETE", "/api/items/7", bearer(KEY_C), (CredentialTypeNotAllowed, Some(R_ITEMS), None)),
        (api, "GET", "/api/admin", hmac_admin, (CredentialTypeNotAllowed, Some(R_ADMIN), None)),
        (api, "DELETE", "/api/admin", hmac_admin_delete, (Authenticated, Some(R_ADMIN), Some(C_HMAC))),
        (api, "DELETE", "/api/items/7", hmac_items_delete, (Authenticated, Some(R_ITEMS), Some(C_BOTH))),
        // `*.example.com` matches subdomains but not the apex, which falls to `*`.
        ("a.example.com", "POST", "/v1/chat", bearer(KEY_A), (Authenticated, Some(R_WILD), Some(C_KEY))),
        ("example.com", "POST", "/v1/chat", bearer(KEY_A), (MethodNotConfigured, Some(R_ANY), None)),
        ("other.org", "GET", "/anything", KEY_C.to_owned(), (Authenticated, Some(R_ANY), Some(C_BOTH))),
    ];
    for (host, method, uri, auth, expected) in &cases {
        let d = decide(&a, host, method, uri, auth).await;
        assert_eq!(
            outcome(&d),
            *expected,
            "{method} {host}{uri} with `{auth}`: {d:?}"
        );
    }
}

#[tokio::test]
async fn an_imported_key_carries_the_legacy_key_id_and_client_name() {
    let (_db, a) = authorizer().await;
    let d = decide(
        &a,
        "api.example.com",
        "GET",
        "/api/admin",
        &format!("Bearer {KEY_A}"),
    )
    .await;
    let Decision::Allow(allow) = d else {
        panic!("expected an allow, got {d:?}");
    };
    let who = allow.identity.unwrap();
    assert_eq!(&*who.client_name, "Key Only");
    assert_eq!(who.key_id.as_deref(), Some("legacy-a1111111"));
    assert_eq!(&*allow.route_id, R_ADMIN);
}

#[tokio::test]
async fn a_daily_limit_admits_its_count_back_to_back_then_refuses() {
    let (_db, a) = authorizer().await;
    for _ in 0..2 {
        let d = decide(&a, "other.org", "GET", "/x", KEY_C).await;
        assert!(d.is_allow(), "{d:?}");
    }
    let d = decide(&a, "other.org", "GET", "/x", KEY_C).await;
    assert_eq!(d.reason(), Reason::RateLimited);
}
